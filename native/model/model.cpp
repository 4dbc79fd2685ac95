// Model construction (spec -> units and slab layout through each layer type, seeded init), clean forward and
// evaluation.
#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/shape.h"
#include "units/unit.h"

namespace of {

namespace {
// The largest f(u) over the units, at least `least`.
template <class F>
int64_t max_over(const std::vector<Unit>& units, int64_t least, const F& f) {
    for (const Unit& u : units) least = std::max<int64_t>(least, f(u));
    return least;
}
}  // namespace

int Model::max_width() const {
    return int(max_over(units, inputs, [](const Unit& u) { return u.O; }));
}

int64_t Model::patch_width() const {
    return max_over(units, 0, [](const Unit& u) {  // an adapter: x A^T, S B and the row weights, at each position
        return u.rank > 0     ? int64_t(std::max(1, u.g.Ho)) * (2 * u.rank + 1)
               : u.convlike() ? u.g.positions() * u.g.patch()
                              : 0;
    });
}

void Model::zero_frozen(float* slab) const {
    for (const auto& [begin, end] : frozen_ranges) std::fill(slab + begin, slab + end, 0.0f);
}

int64_t Model::seq_scratch_width() const {
    return max_over(units, 0, [](const Unit& u) { return u.recurrent() ? int64_t(u.q.G) * u.q.H + 3 * u.q.H : 0; });
}

int64_t Model::max_noise_width() const {
    return max_over(units, 0, [](const Unit& u) { return u.noise_width(); });
}

const float* Model::effective(const float* theta, Buffer& scratch) const {
    if (!has_quant) return theta;
    if (!scratch.reserve(size_t(n_params)).ok()) return theta;  // out of memory: the caller's reserve fails next
    float* e = scratch.data();
    std::copy(theta, theta + n_params, e);
    for (const Unit& u : units) {
        if (!u.quant) continue;
        const int rows = u.gemm_cols(), cols = u.fan_in();
        for (int o = 0; o < rows; o++) {
            float* w = e + u.w_off + int64_t(o) * cols;
            double mean = 0.0;
            for (int i = 0; i < cols; i++) mean += std::fabs(w[i]);
            mean /= cols;
            if (u.quant == 1) {
                for (int i = 0; i < cols; i++) w[i] = w[i] >= 0.0f ? float(mean) : -float(mean);
                continue;
            }
            const double delta = 0.7 * mean;
            double kept = 0.0;
            int n = 0;
            for (int i = 0; i < cols; i++)
                if (std::fabs(w[i]) > delta) kept += std::fabs(w[i]), n++;
            const float a = n ? float(kept / n) : 0.0f;
            for (int i = 0; i < cols; i++) w[i] = std::fabs(w[i]) > delta ? (w[i] > 0.0f ? a : -a) : 0.0f;
        }
    }
    return e;
}

int Model::frozen_end() const {
    if (frozen <= 0) return 0;
    for (int l = 0, p = 0; l < int(units.size()); l++)
        if (units[size_t(l)].param() && ++p == frozen) return l + 1;
    return int(units.size());
}

int64_t Model::max_positions() const {
    return max_over(units, 1, [](const Unit& u) { return u.gemm_rows(1); });
}

int Model::param_units() const {
    int n = 0;
    for (const auto& u : units) n += u.param();
    return n;
}

Status Model::create(const ModelSpec& spec, std::unique_ptr<Model>* out, std::vector<LayerLayout>* layout) {
    OF_TRY(check_positive(spec.inputs, "inputs"));
    OF_CHECK(!spec.layers.empty(), Config, "a model needs at least one layer");
    auto m = std::make_unique<Model>();
    m->inputs = spec.inputs;
    m->loss = spec.loss;
    m->seed = spec.seed;
    ModelBuilder b{*m};
    b.width = spec.inputs;
    b.spatial = spec.in_h > 0, b.H = spec.in_h, b.W = spec.in_w, b.C = spec.in_c;
    b.seq = spec.in_t > 0, b.T = spec.in_t, b.F = spec.in_f;  // a sequence of T steps of F features
    OF_CHECK(!b.seq || (b.F > 0 && int64_t(b.T) * b.F == spec.inputs), Shape,
             "sequence input shape does not match the number of inputs");
    if (b.spatial) {
        OF_CHECK(spec.in_w > 0 && spec.in_c > 0 && int64_t(b.H) * b.W * b.C == spec.inputs, Shape,
                 "input shape does not match the number of inputs");
    }
    for (size_t i = 0; i < spec.layers.size(); i++) {  // each layer type infers its shapes and lays out its parameters
        b.index = int(i), b.where = "layer " + std::to_string(i);
        OF_TRY(spec.layers[i].type->build(spec.layers[i], b));
        if (layout)
            layout->push_back({b.spatial ? std::vector<int>{b.H, b.W, b.C}
                               : b.seq   ? std::vector<int>{b.T, b.F}
                                         : std::vector<int>{b.width},
                               int(m->units.size())});
    }
    OF_CHECK(!b.m.units.empty(), Config, "a model needs at least one dense, conv2d, pooling or recurrent layer");
    OF_CHECK(b.block_start < 0, Config, "a residual block is not closed");
    if (b.seq) {  // per-position outputs (sequence steps, graph nodes): one label per position, -1 = none
        OF_CHECK(spec.loss != LossKind::Mse, Config,
                 "the last layer gives a sequence or node set: classify each position (crossEntropy or zeroOne, one "
                 "label per "
                 "position), or add timeMean(), flatten() or returnSequences: false and a dense layer");
        OF_CHECK(b.F >= 2, Config, "per-position classification needs at least 2 classes per position");
        m->groups = b.T;
    }
    OF_CHECK(!b.spatial, Config, "the last layer gives an image; add flatten() and a dense layer (or globalAvgPool)");
    m->outputs = b.width;
    OF_CHECK(spec.loss == LossKind::Mse || b.width >= 2 || m->groups > 1, Config,
             "cross-entropy needs at least 2 outputs, the last layer has " + std::to_string(b.width));
    m->n_params = int64_t(b.total);
    if (layout) {  // the layout alone (model/describe.h)
        *out = std::move(m);
        return {};
    }
    m->params = std::make_shared<Buffer>();
    OF_TRY(m->params->reserve(size_t(b.total)));
    OF_TRY(m->grads.reserve(size_t(b.total)));
    // seeded: uniforms from Philox (stream init, counter = unit, element)
    for (size_t li = 0; li < m->units.size(); li++) {
        const Unit& u = m->units[li];
        if (u.param()) u.kind->init(u, m->params->data(), spec.seed, uint32_t(li));
    }
    *out = std::move(m);
    return {};
}

Status Model::forward(float* out, const float* x, int64_t rows, InferScratch& sc) const {
    return forward_with(params->data(), out, x, rows, sc);
}

int64_t Model::forward_aux_width() const { return max_over(units, 0, seq_aux_width); }

int64_t Model::forward_skip_width() const {  // a residual block's input, kept while the block runs
    return max_over(units, 0, [&](const Unit& u) { return u.skip_from >= 0 ? units[size_t(u.skip_from)].I : 0; });
}

int64_t Model::forward_chunk() const {  // rows per pass: bounded scratch for any data set size (and conv patches)
    const int64_t per_row = std::max<int64_t>({int64_t(max_width()), patch_width(), forward_aux_width(), 1});
    return std::max<int64_t>(1, std::min<int64_t>(1024, (int64_t(1) << 24) / per_row));
}

double Model::forward_scratch_floats(int64_t rows) const {  // what forward_with reserves in its InferScratch
    const double n = double(std::min(rows, forward_chunk())), aux = double(forward_aux_width());
    return (has_quant ? double(n_params) : 0.0) +
           n * (2.0 * max_width() + double(patch_width()) + double(forward_skip_width())) +
           (aux > 0 ? n * (aux + double(seq_scratch_width())) : 0.0);
}

Status Model::forward_with(const float* theta_in, float* out, const float* x, int64_t rows, InferScratch& sc) const {
    if (has_quant) OF_TRY(sc.eff.reserve(size_t(n_params)));
    const float* theta = effective(theta_in, sc.eff);
    const int64_t aux = forward_aux_width(), chunk = forward_chunk();
    OF_TRY(sc.d0.reserve(size_t(std::min(rows, chunk)) * size_t(max_width())));
    OF_TRY(sc.d1.reserve(size_t(std::min(rows, chunk)) * size_t(max_width())));
    if (patch_width() > 0) OF_TRY(sc.cols.reserve(size_t(std::min(rows, chunk)) * size_t(patch_width())));
    if (aux > 0) {
        OF_TRY(sc.aux.reserve(size_t(std::min(rows, chunk)) * size_t(aux)));
        OF_TRY(sc.seq.reserve(size_t(std::min(rows, chunk)) * size_t(seq_scratch_width())));
    }
    const SeqCtx sq{sc.aux.data(), sc.seq.data(), nullptr, nullptr};
    const int64_t skip_width = forward_skip_width();
    if (skip_width > 0) OF_TRY(sc.skip.reserve(size_t(std::min(rows, chunk)) * size_t(skip_width)));
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
        const int n = int(std::min(chunk, rows - r0));
        const float* in = x + r0 * inputs;
        for (size_t i = 0; i < units.size(); i++) {
            const Unit& u = units[i];
            float* dst = i + 1 == units.size() ? out + r0 * outputs : (i % 2 ? sc.d1.data() : sc.d0.data());
            if (mlp) {
                k->gemm_nt(dst, in, theta + u.w_off, n, u.O, u.I, 1.0f, 0.0f);
                k->bias_act_forward(dst, dst, u.b_off < 0 ? nullptr : theta + u.b_off, n, u.O, u.act, u.alpha);
            } else {
                if (u.starts_block) std::copy(in, in + int64_t(n) * u.I, sc.skip.data());  // the block's skip input
                unit_clean_forward(*k, u, theta, in, n, dst, sc.cols.data(), &sq, sc.skip.data());
            }
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
        Targets t{y.labels ? y.labels + r0 * groups : nullptr, y.values ? y.values + r0 * outputs : nullptr};
        correct += k->loss_forward(sc.loss.data(), sc.out.data(), t.labels, t.values, n, outputs, 1, loss, groups);
        for (int i = 0; i < n; i++) sum += sc.loss.data()[i];
    }
    *loss_out = rows > 0 ? sum / double(rows) : 0.0;
    *acc_out = accuracy_of(*this, y, rows, correct);
    return {};
}

double accuracy_of(const Model& m, const Targets& y, int64_t rows, int64_t correct) {
    int64_t labeled = rows;  // per-position labels: only the labeled positions count
    if (m.groups > 1) {
        labeled = 0;
        for (int64_t i = 0; i < rows * m.groups; i++) labeled += y.labels[i] >= 0;
    }
    return labeled > 0 && m.loss != LossKind::Mse ? double(correct) / double(labeled) : 0.0;
}

// The index of the first NaN or infinity in x[0, n), or -1. Blocks of 64 are tested branch-free (exponent bits all
// set), so the common all-finite case vectorizes; only a block that holds one is searched value by value.
static int64_t first_non_finite(const float* x, int64_t n) {
    for (int64_t b = 0; b < n; b += 64) {
        const int64_t e = std::min<int64_t>(n, b + 64);
        uint32_t bad = 0;
        for (int64_t i = b; i < e; i++) {
            uint32_t u;
            std::memcpy(&u, x + i, 4);
            bad |= uint32_t((u & 0x7f800000u) == 0x7f800000u);
        }
        if (bad)
            for (int64_t i = b; i < e; i++)
                if (!std::isfinite(x[i])) return i;
    }
    return -1;
}

Status validate_data(const Model& m, const float* x, int64_t x_len, const Targets& y, int64_t y_len, int64_t rows) {
    OF_CHECK(rows > 0, Data, "data set has no rows");
    OF_CHECK(x_len == rows * m.inputs, Shape,
             "x has " + std::to_string(x_len) + " values, expected rows x inputs = " + std::to_string(rows) + " x " +
                 std::to_string(m.inputs));
    if (int64_t i = first_non_finite(x, x_len); i >= 0)
        return {StatusCode::Data, "x contains a non-finite value at row " + std::to_string(i / m.inputs) + ", column " +
                                      std::to_string(i % m.inputs)};
    OF_TRY(validate_tokens(m, x, rows));
    if (m.loss != LossKind::Mse) {
        const int P = m.groups, classes = m.outputs / P;
        OF_CHECK(y.labels, Data, "cross-entropy needs integer class labels (Int32Array)");
        if (P == 1)
            OF_CHECK(y_len == rows, Shape,
                     "y has " + std::to_string(y_len) + " labels, expected one per row (" + std::to_string(rows) + ")");
        else
            OF_CHECK(y_len == rows * P, Shape,
                     "y has " + std::to_string(y_len) + " labels, expected one per position: " + std::to_string(rows) +
                         " rows x " + std::to_string(P));
        const int lo = P > 1 ? -1 : 0;  // -1: an unlabeled position
        for (int64_t i = 0; i < rows * P; i++)
            if (y.labels[i] < lo || y.labels[i] >= classes)
                return {StatusCode::Data, "label " + std::to_string(y.labels[i]) + " at row " + std::to_string(i / P) +
                                              (P > 1 ? ", position " + std::to_string(i % P) : std::string()) +
                                              " is out of range [" + std::to_string(lo) + ", " +
                                              std::to_string(classes) + ")"};
    } else {
        OF_CHECK(y.values, Data, "mse needs float targets (Float32Array, rows x outputs)");
        OF_CHECK(y_len == rows * m.outputs, Shape,
                 "y has " + std::to_string(y_len) + " values, expected rows x outputs = " + std::to_string(rows) +
                     " x " + std::to_string(m.outputs));
        if (int64_t i = first_non_finite(y.values, y_len); i >= 0)
            return {StatusCode::Data, "y contains a non-finite value at index " + std::to_string(i)};
    }
    return {};
}

Status validate_tokens(const Model& m, const float* x, int64_t rows) {
    const int vocab = m.token_vocab;
    if (vocab <= 0) return {};
    for (int64_t i = 0; i < rows * m.inputs; i++)
        if (!(x[i] >= 0.0f && x[i] < float(vocab) && x[i] == std::floor(x[i])))
            return {StatusCode::Data, "x holds token ids: the value " + std::to_string(x[i]) + " at row " +
                                          std::to_string(i / m.inputs) + ", position " + std::to_string(i % m.inputs) +
                                          " is not an integer in [0, " + std::to_string(vocab) + ")"};
    return {};
}

}  // namespace of
