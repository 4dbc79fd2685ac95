// Model construction (spec -> units and slab layout, seeded init), clean forward and evaluation.
#include "model/model.h"

#include <algorithm>
#include <cmath>

#include "core/shape.h"
#include "rng/normal.h"

namespace of {

int Model::max_width() const {
    int w = inputs;
    for (const auto& u : units) w = std::max(w, u.O);
    return w;
}

Status Model::create(const ModelSpec& spec, std::unique_ptr<Model>* out) {
    OF_TRY(check_positive(spec.inputs, "inputs"));
    OF_CHECK(!spec.layers.empty(), Config, "a model needs at least one layer");
    OF_CHECK(spec.layers[0].kind == LayerSpec::Kind::Dense, Config,
             "the first layer must be dense (an activation needs a layer before it)");
    auto m = std::make_unique<Model>();
    m->inputs = spec.inputs;
    m->loss = spec.loss;
    m->seed = spec.seed;
    int width = spec.inputs;
    uint64_t total = 0;
    for (size_t i = 0; i < spec.layers.size(); i++) {
        const LayerSpec& l = spec.layers[i];
        if (l.kind == LayerSpec::Kind::Dense) {
            OF_TRY(check_positive(l.units, "dense units"));
            uint64_t wn = 0;
            OF_TRY(checked_mul(uint64_t(width), uint64_t(l.units), &wn, "dense weight"));
            OF_CHECK(l.trainable || int(m->units.size()) == m->frozen, Config,
                     "layer " + std::to_string(i) + ": only a leading run of dense layers can be frozen");
            if (!l.trainable) m->frozen++;
            DenseUnit u{width, l.units, int64_t(total), -1};
            total += wn;
            if (l.bias) u.b_off = int64_t(total), total += uint64_t(l.units);
            OF_CHECK(total <= kMaxElements, Shape, "model has too many parameters");
            m->units.push_back(u);
            width = l.units;
        } else {
            DenseUnit& u = m->units.back();
            OF_CHECK(u.act == Act::Identity, Config,
                     "layer " + std::to_string(i) + ": two activations in a row are not supported");
            u.act = l.act;
            u.alpha = l.alpha;
        }
    }
    m->outputs = width;
    OF_CHECK(spec.loss != LossKind::CrossEntropy || width >= 2, Config,
             "cross-entropy needs at least 2 outputs, the last layer has " + std::to_string(width));
    m->n_params = int64_t(total);
    m->params = std::make_shared<Buffer>();
    OF_TRY(m->params->reserve(size_t(total)));
    OF_TRY(m->grads.reserve(size_t(total)));
    // Glorot-uniform weights, zero biases; uniforms from Philox (stream init, counter = layer, element).
    for (size_t li = 0; li < m->units.size(); li++) {
        const DenseUnit& u = m->units[li];
        float bound = std::sqrt(6.0f / float(u.I + u.O));
        float* w = m->params->data() + u.w_off;
        int64_t n = int64_t(u.I) * u.O;
        for (int64_t g = 0; g < (n + 3) / 4; g++) {
            U32x4 r = philox4x32_10(uint32_t(g), uint32_t(g >> 32), philox_stream(kStreamInit, uint32_t(li)), 0,
                                    uint32_t(spec.seed), uint32_t(spec.seed >> 32));
            for (int j = 0; j < 4 && 4 * g + j < n; j++)
                w[4 * g + j] = (2.0f * (float(r.v[j] >> 8) * (1.0f / 16777216.0f)) - 1.0f) * bound;
        }
    }
    *out = std::move(m);
    return {};
}

Status Model::forward(float* out, const float* x, int64_t rows, InferScratch& sc) const {
    return forward_with(params->data(), out, x, rows, sc);
}

Status Model::forward_with(const float* theta, float* out, const float* x, int64_t rows, InferScratch& sc) const {
    constexpr int64_t kChunk = 1024;  // rows per pass: bounded scratch for any data set size
    OF_TRY(sc.d0.reserve(size_t(std::min(rows, kChunk)) * size_t(max_width())));
    OF_TRY(sc.d1.reserve(size_t(std::min(rows, kChunk)) * size_t(max_width())));
    for (int64_t r0 = 0; r0 < rows; r0 += kChunk) {
        const int n = int(std::min(kChunk, rows - r0));
        const float* in = x + r0 * inputs;
        for (size_t i = 0; i < units.size(); i++) {
            const DenseUnit& u = units[i];
            float* dst = i + 1 == units.size() ? out + r0 * outputs : (i % 2 ? sc.d1.data() : sc.d0.data());
            k->gemm_nt(dst, in, theta + u.w_off, n, u.O, u.I, 1.0f, 0.0f);
            k->bias_act_forward(dst, dst, u.b_off < 0 ? nullptr : theta + u.b_off, n, u.O, u.act, u.alpha);
            in = dst;
        }
    }
    return {};
}

Status Model::evaluate(const float* x, const Targets& y, int64_t rows, double* loss_out, double* acc_out,
                       InferScratch& sc) const {
    constexpr int kChunk = 1024;
    OF_TRY(sc.out.reserve(size_t(kChunk) * outputs));
    OF_TRY(sc.loss.reserve(kChunk));
    double sum = 0.0;
    int64_t correct = 0;
    for (int64_t r0 = 0; r0 < rows; r0 += kChunk) {
        int n = int(std::min<int64_t>(kChunk, rows - r0));
        OF_TRY(forward(sc.out.data(), x + r0 * inputs, n, sc));
        Targets t{y.labels ? y.labels + r0 : nullptr, y.values ? y.values + r0 * outputs : nullptr};
        correct += k->loss_forward(sc.loss.data(), sc.out.data(), t.labels, t.values, n, outputs, 1, loss);
        for (int i = 0; i < n; i++) sum += sc.loss.data()[i];
    }
    *loss_out = rows > 0 ? sum / double(rows) : 0.0;
    *acc_out = rows > 0 && loss == LossKind::CrossEntropy ? double(correct) / double(rows) : 0.0;
    return {};
}

Status validate_data(const Model& m, const float* x, int64_t x_len, const Targets& y, int64_t y_len, int64_t rows) {
    OF_CHECK(rows > 0, Data, "data set has no rows");
    OF_CHECK(x_len == rows * m.inputs, Shape,
             "x has " + std::to_string(x_len) + " values, expected rows x inputs = " + std::to_string(rows) + " x " +
                 std::to_string(m.inputs));
    for (int64_t i = 0; i < x_len; i++)
        if (!std::isfinite(x[i]))
            return {StatusCode::Data, "x contains a non-finite value at row " + std::to_string(i / m.inputs) +
                                          ", column " + std::to_string(i % m.inputs)};
    if (m.loss == LossKind::CrossEntropy) {
        OF_CHECK(y.labels, Data, "cross-entropy needs integer class labels (Int32Array)");
        OF_CHECK(y_len == rows, Shape,
                 "y has " + std::to_string(y_len) + " labels, expected one per row (" + std::to_string(rows) + ")");
        for (int64_t i = 0; i < rows; i++)
            if (y.labels[i] < 0 || y.labels[i] >= m.outputs)
                return {StatusCode::Data, "label " + std::to_string(y.labels[i]) + " at row " + std::to_string(i) +
                                              " is out of range [0, " + std::to_string(m.outputs) + ")"};
    } else {
        OF_CHECK(y.values, Data, "mse needs float targets (Float32Array, rows x outputs)");
        OF_CHECK(y_len == rows * m.outputs, Shape,
                 "y has " + std::to_string(y_len) + " values, expected rows x outputs = " + std::to_string(rows) +
                     " x " + std::to_string(m.outputs));
        for (int64_t i = 0; i < y_len; i++)
            if (!std::isfinite(y.values[i]))
                return {StatusCode::Data, "y contains a non-finite value at index " + std::to_string(i)};
    }
    return {};
}

}  // namespace of
