// Model construction (spec -> units and slab layout, seeded init), clean forward and evaluation.
#include "model/model.h"

#include <algorithm>
#include <cmath>

#include "core/shape.h"
#include "model/recurrent.h"
#include "model/units.h"
#include "rng/normal.h"

namespace of {

int Model::max_width() const {
    int w = inputs;
    for (const auto& u : units) w = std::max(w, u.O);
    return w;
}

int64_t Model::patch_width() const {
    int64_t w = 0;
    for (const auto& u : units)
        if (u.convlike()) w = std::max(w, u.g.positions() * u.g.patch());
    return w;
}

int64_t Model::seq_scratch_width() const {
    int64_t w = 0;
    for (const auto& u : units)
        if (u.recurrent()) w = std::max<int64_t>(w, int64_t(u.q.G) * u.q.H + 3 * u.q.H);
    return w;
}

int64_t Model::max_noise_width() const {
    int64_t w = 0;
    for (const auto& u : units) w = std::max<int64_t>(w, u.noise_width());
    return w;
}

const float* Model::effective(const float* theta, Buffer& scratch) const {
    if (!has_quant) return theta;
    if (!scratch.reserve(size_t(n_params)).ok()) return theta;  // out of memory: the caller's reserve fails next
    float* e = scratch.data();
    std::copy(theta, theta + n_params, e);
    for (const DenseUnit& u : units) {
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
    int64_t p = 1;
    for (const DenseUnit& u : units) p = std::max<int64_t>(p, u.gemm_rows(1));
    return p;
}

int Model::param_units() const {
    int n = 0;
    for (const auto& u : units) n += u.param();
    return n;
}

namespace {

// Output size and top/left padding of a window over n inputs (TensorFlow's rule for 'same': out = ceil(n / s),
// the total padding split with the smaller half on top).
Status window(int n, int k, int s, int d, int pad, int* out, int* pad_out, const std::string& what) {
    const int eff = d * (k - 1) + 1;
    if (pad < 0) {
        *out = (n + s - 1) / s;
        *pad_out = std::max((*out - 1) * s + eff - n, 0) / 2;
    } else {
        OF_CHECK(n + 2 * pad >= eff, Shape, what + ": the window (" + std::to_string(eff) + ") is larger than the padded input (" +
                                                 std::to_string(n + 2 * pad) + ")");
        *out = (n + 2 * pad - eff) / s + 1;
        *pad_out = pad;
    }
    return {};
}

}  // namespace

Status Model::create(const ModelSpec& spec, std::unique_ptr<Model>* out, bool with_params) {
    OF_TRY(check_positive(spec.inputs, "inputs"));
    OF_CHECK(!spec.layers.empty(), Config, "a model needs at least one layer");
    auto m = std::make_unique<Model>();
    m->inputs = spec.inputs;
    m->loss = spec.loss;
    m->seed = spec.seed;
    int width = spec.inputs;
    bool spatial = spec.in_h > 0;
    int H = spec.in_h, W = spec.in_w, C = spec.in_c;
    bool seq = spec.in_t > 0;  // a sequence of T steps of F features
    int T = spec.in_t, F = spec.in_f;
    OF_CHECK(!seq || (F > 0 && int64_t(T) * F == spec.inputs), Shape, "sequence input shape does not match the number of inputs");
    if (spatial) {
        OF_CHECK(spec.in_w > 0 && spec.in_c > 0 && int64_t(H) * W * C == spec.inputs, Shape,
                 "input shape does not match the number of inputs");
    }
    uint64_t total = 0;
    bool have_unit = false;
    // residual block being read: its first unit, and the input shape its end must match
    int block_start = -1, block_width = 0, block_h = 0, block_w = 0, block_c = 0, block_t = 0, block_f = 0;
    bool block_spatial = false, block_seq = false, after_block = false;
    for (size_t i = 0; i < spec.layers.size(); i++) {
        const LayerSpec& l = spec.layers[i];
        const std::string where = "layer " + std::to_string(i);
        using K = LayerSpec::Kind;
        if (l.kind == K::ResidualBegin) {
            OF_CHECK(block_start < 0, Config, where + ": residual blocks do not nest yet");
            OF_CHECK(have_unit, Config, where + ": a residual block cannot be the first layer");
            block_start = int(m->units.size()), block_width = width;
            block_h = H, block_w = W, block_c = C, block_t = T, block_f = F, block_spatial = spatial, block_seq = seq;
            after_block = false;
            continue;
        }
        if (l.kind == K::ConcatEnd) {  // [x, f(x)] along the last axis: features, channels or per-step features
            OF_CHECK(block_start >= 0, Config, where + ": concat end without a beginning");
            OF_CHECK(int(m->units.size()) > block_start, Config, where + ": an empty concat block");
            OF_CHECK(spatial == block_spatial && seq == block_seq && (!spatial || (H == block_h && W == block_w)) && (!seq || T == block_t),
                     Shape, where + ": a concat block's output must keep its input's positions (image size, steps)");
            DenseUnit u{width, 0, -1, -1};
            u.kind = UnitKind::Concat;
            u.skip_from = block_start;
            m->units[size_t(block_start)].starts_block = true;
            const int P = spatial ? H * W : seq ? T : 1;
            u.g.Ho = P, u.g.Wo = 1, u.g.C = block_width / P, u.g.Co = width / P;
            u.O = width + block_width;
            if (spatial) C += block_c;
            if (seq) F += block_f;
            width = u.O;
            m->units.push_back(u);
            m->dense_only = false;
            block_start = -1;
            continue;
        }
        if (l.kind == K::ResidualEnd) {
            OF_CHECK(block_start >= 0, Config, where + ": residual end without a beginning");
            OF_CHECK(int(m->units.size()) > block_start, Config, where + ": an empty residual block");
            const bool same = width == block_width && spatial == block_spatial && seq == block_seq &&
                              (!spatial || (H == block_h && W == block_w && C == block_c)) && (!seq || (T == block_t && F == block_f));
            OF_CHECK(same, Shape, where + ": a residual block's output must have its input's shape");
            OF_CHECK(m->units.back().kind != UnitKind::Dropout, Config, where + ": a residual block cannot end with dropout");
            m->units.back().skip_from = block_start;
            m->units[size_t(block_start)].starts_block = true;
            m->dense_only = false;
            block_start = -1;
            after_block = true;
            continue;
        }
        if (l.kind == K::Activation && after_block) {  // relu(x + f(x)): applies to the sum
            m->units.back().post_act = l.act, m->units.back().post_alpha = l.alpha;
            after_block = false;
            continue;
        }
        after_block = false;
        if (l.kind == K::Activation) {
            OF_CHECK(have_unit, Config, "the first layer must be dense, conv2d or a pooling layer (an activation needs a layer before it)");
            DenseUnit& u = m->units.back();
            OF_CHECK(u.act == Act::Identity, Config, where + ": two activations in a row are not supported");
            u.act = l.act;
            u.alpha = l.alpha;
            continue;
        }
        if (l.kind == K::Flatten) {
            spatial = seq = false;
            continue;
        }
        if (l.kind == K::Rnn || l.kind == K::Gru || l.kind == K::Lstm || l.kind == K::Lif || l.kind == K::Repeat ||
            l.kind == K::TimeMean) {
            DenseUnit u{width, 0, -1, -1};
            SeqGeom& q = u.q;
            if (l.kind == K::Repeat) {
                OF_CHECK(!seq && !spatial, Config, where + ": repeat needs a flat input");
                OF_CHECK(l.steps >= 1 && l.steps <= 1 << 16, Config, where + ": repeat steps must be in [1, 65536]");
                u.kind = UnitKind::Repeat, q.T = l.steps, q.F = width;
                T = l.steps, F = width, seq = true;
            } else {
                OF_CHECK(seq, Config, where + ": this layer needs a sequence input (inputShape [steps, features] on the first layer, or repeat())");
                q.T = T, q.F = F;
                if (l.kind == K::TimeMean) {
                    u.kind = UnitKind::TimeMean;
                    seq = false;
                } else {
                    OF_TRY(check_positive(l.units, "recurrent units"));
                    u.kind = l.kind == K::Rnn ? UnitKind::Rnn : l.kind == K::Gru ? UnitKind::Gru : l.kind == K::Lstm ? UnitKind::Lstm : UnitKind::Lif;
                    q.H = l.units;
                    q.G = u.kind == UnitKind::Gru ? 3 : u.kind == UnitKind::Lstm ? 4 : 1;
                    q.has_u = u.kind != UnitKind::Lif;
                    q.return_sequences = l.return_sequences;
                    q.beta = l.beta, q.threshold = l.threshold, q.slope = l.slope;
                    OF_CHECK(q.beta >= 0.0f && q.beta <= 1.0f && std::isfinite(q.threshold) && q.slope > 0.0f, Config,
                             where + ": lif needs beta in [0, 1], a finite threshold and a positive slope");
                    const uint64_t GH = uint64_t(q.G) * q.H;
                    uint64_t wn = 0;
                    OF_TRY(checked_mul(GH, uint64_t(F) + (q.has_u ? uint64_t(q.H) : 0), &wn, "recurrent weights"));
                    u.w_off = int64_t(total);
                    total += wn;
                    u.b_off = int64_t(total);
                    total += GH;
                    OF_CHECK(total <= kMaxElements, Shape, "model has too many parameters");
                    u.n_par = int64_t(total) - u.w_off;
                    if (q.return_sequences) F = q.H;
                    else seq = false;
                }
            }
            uint64_t on = 0;
            if (u.kind == UnitKind::Repeat) OF_TRY(checked_mul(uint64_t(q.T), uint64_t(q.F), &on, "layer output"));
            else if (u.kind == UnitKind::TimeMean) on = uint64_t(q.F);
            else OF_TRY(checked_mul(uint64_t(q.return_sequences ? q.T : 1), uint64_t(q.H), &on, "layer output"));
            OF_CHECK(on <= uint64_t(1) << 28, Shape, where + ": output too large");
            u.O = int(on);
            width = u.O;
            m->units.push_back(u);
            m->dense_only = false;
            have_unit = true;
            continue;
        }
        if (l.kind == K::LayerNorm || l.kind == K::BatchNorm || l.kind == K::GroupNorm) {  // any shape, unchanged
            OF_CHECK(have_unit, Config, where + ": normalization needs a layer before it");
            DenseUnit u{width, width, int64_t(total), -1};
            u.kind = l.kind == K::LayerNorm ? UnitKind::LayerNorm : l.kind == K::BatchNorm ? UnitKind::BatchNorm : UnitKind::GroupNorm;
            const int last = spatial ? C : seq ? F : width;
            if (u.kind == UnitKind::GroupNorm) {
                OF_CHECK(l.groups >= 1 && last % l.groups == 0, Config,
                         where + ": groupNorm groups (" + std::to_string(l.groups) + ") must divide the channels (" + std::to_string(last) + ")");
                u.groups = l.groups;
            }
            u.g.Ho = width / last, u.g.Wo = 1, u.g.Co = last, u.g.C = last;
            u.b_off = int64_t(total) + last;
            total += 2 * uint64_t(last);
            OF_CHECK(total <= kMaxElements, Shape, "model has too many parameters");
            u.n_par = 2 * int64_t(last);
            if (u.kind == UnitKind::BatchNorm) {  // running mean 0, variance 1
                u.running = std::make_shared<std::vector<float>>(2 * size_t(last), 0.0f);
                std::fill(u.running->begin() + last, u.running->end(), 1.0f);
                u.batch = std::make_shared<std::vector<float>>(2 * size_t(last), 0.0f);
                m->has_batch_norm = true;
            }
            m->units.push_back(u);
            m->dense_only = false;
            continue;
        }
        if (l.kind == K::Dropout) {  // any shape, unchanged
            OF_CHECK(have_unit, Config, where + ": dropout needs a layer before it");
            OF_CHECK(l.rate >= 0.0f && l.rate < 1.0f, Config, where + ": dropout rate must be in [0, 1)");
            DenseUnit u{width, width, -1, -1};
            u.kind = UnitKind::Dropout;
            u.rate = l.rate;
            m->units.push_back(u);
            m->dense_only = false;
            continue;
        }
        if (l.kind == K::GraphConv) {  // node features (N, F) -> (N, H): A^ X W^T + b
            OF_CHECK(seq && T == l.nodes, Config,
                     where + ": graphConv needs node features [nodes, features] with nodes = " + std::to_string(l.nodes) +
                         " (inputShape on the first layer)");
            OF_TRY(check_positive(l.units, "graphConv units"));
            auto g = std::make_shared<Graph>();
            g->N = l.nodes;
            std::vector<std::vector<int>> adj(size_t(l.nodes));
            for (const auto& e : l.edges) {
                OF_CHECK(e.first >= 0 && e.first < l.nodes && e.second >= 0 && e.second < l.nodes, Config,
                         where + ": edge (" + std::to_string(e.first) + ", " + std::to_string(e.second) + ") names a node outside [0, " +
                             std::to_string(l.nodes) + ")");
                adj[size_t(e.first)].push_back(e.second);
                adj[size_t(e.second)].push_back(e.first);
            }
            std::vector<float> inv_sqrt_deg(size_t(l.nodes));
            for (int i = 0; i < l.nodes; i++) {
                auto& a = adj[size_t(i)];
                a.push_back(i);  // self-loop
                std::sort(a.begin(), a.end());
                a.erase(std::unique(a.begin(), a.end()), a.end());
                inv_sqrt_deg[size_t(i)] = 1.0f / std::sqrt(float(a.size()));
            }
            g->row_ptr.push_back(0);
            for (int i = 0; i < l.nodes; i++) {
                for (int j : adj[size_t(i)]) g->col.push_back(j), g->val.push_back(inv_sqrt_deg[size_t(i)] * inv_sqrt_deg[size_t(j)]);
                g->row_ptr.push_back(int(g->col.size()));
            }
            DenseUnit u{width, 0, int64_t(total), -1};
            u.kind = UnitKind::GraphConv;
            u.graph = g;
            u.g.H = l.nodes, u.g.W = 1, u.g.C = F, u.g.Ho = l.nodes, u.g.Wo = 1, u.g.Co = l.units;
            uint64_t wn = 0;
            OF_TRY(checked_mul(uint64_t(F), uint64_t(l.units), &wn, "graphConv weight"));
            total += wn;
            u.b_off = int64_t(total);
            total += uint64_t(l.units);
            OF_CHECK(total <= kMaxElements, Shape, "model has too many parameters");
            u.n_par = int64_t(total) - u.w_off;
            uint64_t on = 0;
            OF_TRY(checked_mul(uint64_t(l.nodes), uint64_t(l.units), &on, "layer output"));
            OF_CHECK(on <= uint64_t(1) << 28, Shape, where + ": output too large");
            u.O = int(on);
            F = l.units;
            width = u.O;
            m->units.push_back(u);
            m->dense_only = false;
            have_unit = true;
            continue;
        }
        if (l.kind == K::Dense) {
            OF_CHECK(!spatial, Config, where + ": dense needs a flat input; add flatten() after the spatial layers");
            OF_CHECK(!seq, Config, where + ": dense needs a flat input; add flatten(), timeMean() or a recurrent layer with returnSequences: false");
            OF_TRY(check_positive(l.units, "dense units"));
            uint64_t wn = 0;
            OF_TRY(checked_mul(uint64_t(width), uint64_t(l.units), &wn, "dense weight"));
            OF_CHECK(l.trainable || int(m->units.size()) == m->frozen, Config,
                     where + ": only a leading run of dense layers can be frozen");
            if (!l.trainable) m->frozen++;
            DenseUnit u{width, l.units, int64_t(total), -1};
            u.quant = l.quant;
            if (l.quant) m->has_quant = true, m->dense_only = false;
            total += wn;
            if (l.bias) u.b_off = int64_t(total), total += uint64_t(l.units);
            OF_CHECK(total <= kMaxElements, Shape, "model has too many parameters");
            u.n_par = int64_t(total) - u.w_off;
            m->units.push_back(u);
            width = l.units;
            have_unit = true;
            continue;
        }
        // conv2d and pooling: windows over an image
        OF_CHECK(spatial, Config, where + ": conv2d and pooling need an image input (give the first layer inputShape [H, W, C])");
        OF_CHECK(!seq, Config, where + ": conv2d and pooling need an image input, not a sequence");
        OF_CHECK(l.kh >= 1 && l.kw >= 1 && l.sh >= 1 && l.sw >= 1 && l.dh >= 1 && l.dw >= 1, Config,
                 where + ": kernel, stride and dilation must be positive");
        DenseUnit u{width, 0, -1, -1};
        ConvGeom& g = u.g;
        g.H = H, g.W = W, g.C = C;
        if (l.kind == K::GlobalAvgPool) {
            g.kh = H, g.kw = W;
        } else {
            g.kh = l.kh, g.kw = l.kw, g.sh = l.sh, g.sw = l.sw, g.dh = l.dh, g.dw = l.dw;
        }
        OF_TRY(window(H, g.kh, g.sh, g.dh, l.kind == K::GlobalAvgPool ? 0 : l.ph, &g.Ho, &g.ph, where));
        OF_TRY(window(W, g.kw, g.sw, g.dw, l.kind == K::GlobalAvgPool ? 0 : l.pw, &g.Wo, &g.pw, where));
        if (l.kind == K::Conv2d) {
            OF_TRY(check_positive(l.units, "conv2d filters"));
            u.kind = UnitKind::Conv2d;
            u.quant = l.quant;
            m->has_quant = m->has_quant || l.quant != 0;
            g.Co = l.units;
            uint64_t wn = 0;
            OF_TRY(checked_mul(uint64_t(g.patch()), uint64_t(g.Co), &wn, "conv2d kernel"));
            u.w_off = int64_t(total);
            total += wn;
            if (l.bias) u.b_off = int64_t(total), total += uint64_t(g.Co);
            OF_CHECK(total <= kMaxElements, Shape, "model has too many parameters");
            u.n_par = int64_t(total) - u.w_off;
            OF_CHECK(l.trainable, Config, where + ": only dense layers can be frozen");
        } else {
            u.kind = l.kind == K::MaxPool2d ? UnitKind::MaxPool2d : UnitKind::AvgPool2d;
            g.Co = C;
        }
        uint64_t on = 0;
        OF_TRY(checked_mul(uint64_t(g.positions()), uint64_t(g.Co), &on, "layer output"));
        OF_CHECK(on <= uint64_t(1) << 28, Shape, where + ": output too large");
        u.O = int(on);
        H = g.Ho, W = g.Wo, C = g.Co;
        width = u.O;
        if (l.kind == K::GlobalAvgPool) spatial = false;
        m->units.push_back(u);
        m->dense_only = false;
        have_unit = true;
    }
    OF_CHECK(have_unit, Config, "a model needs at least one dense, conv2d, pooling or recurrent layer");
    OF_CHECK(block_start < 0, Config, "a residual block is not closed");
    if (seq) {  // per-position outputs (sequence steps, graph nodes): one label per position, -1 = none
        OF_CHECK(spec.loss != LossKind::Mse, Config,
                 "the last layer gives a sequence or node set: classify each position (crossEntropy or zeroOne, one label per "
                 "position), or add timeMean(), flatten() or returnSequences: false and a dense layer");
        OF_CHECK(F >= 2, Config, "per-position classification needs at least 2 classes per position");
        m->groups = T;
    }
    OF_CHECK(!spatial, Config, "the last layer gives an image; add flatten() and a dense layer (or globalAvgPool)");
    m->outputs = width;
    OF_CHECK(spec.loss == LossKind::Mse || width >= 2 || m->groups > 1, Config,
             "cross-entropy needs at least 2 outputs, the last layer has " + std::to_string(width));
    m->n_params = int64_t(total);
    if (!with_params) {  // the layout alone (model/describe.h)
        *out = std::move(m);
        return {};
    }
    m->params = std::make_shared<Buffer>();
    OF_TRY(m->params->reserve(size_t(total)));
    OF_TRY(m->grads.reserve(size_t(total)));
    // Glorot-uniform weights, zero biases; uniforms from Philox (stream init, counter = layer, element).
    // Weights: Glorot-uniform (a conv kernel's fans are kh kw C in and kh kw Co out, as in tfjs); recurrent W and U
    // uniform in +-1/sqrt(H) (PyTorch's rule). Biases zero, but an lstm's forget gate starts at 1. Uniforms from
    // Philox (stream init, counter = unit, element).
    for (size_t li = 0; li < m->units.size(); li++) {
        const DenseUnit& u = m->units[li];
        if (!u.param()) continue;
        if (u.norm()) {  // gain 1, bias 0
            std::fill(m->params->data() + u.w_off, m->params->data() + u.b_off, 1.0f);
            continue;
        }
        float bound;
        if (u.convlike()) bound = std::sqrt(6.0f / float(u.g.patch() + u.g.kh * u.g.kw * u.g.Co));
        else if (u.kind == UnitKind::Lif) bound = std::sqrt(6.0f / float(u.q.F + u.q.H));
        else if (u.recurrent()) bound = 1.0f / std::sqrt(float(u.q.H));
        else bound = std::sqrt(6.0f / float(u.I + u.O));
        float* w = m->params->data() + u.w_off;
        const int64_t n = (u.b_off < 0 ? u.w_off + u.n_par : u.b_off) - u.w_off;
        for (int64_t g = 0; g < (n + 3) / 4; g++) {
            U32x4 r = philox4x32_10(uint32_t(g), uint32_t(g >> 32), philox_stream(kStreamInit, uint32_t(li)), 0,
                                    uint32_t(spec.seed), uint32_t(spec.seed >> 32));
            for (int j = 0; j < 4 && 4 * g + j < n; j++)
                w[4 * g + j] = (2.0f * (float(r.v[j] >> 8) * (1.0f / 16777216.0f)) - 1.0f) * bound;
        }
        if (u.kind == UnitKind::Lstm) std::fill(m->params->data() + u.b_off + u.q.H, m->params->data() + u.b_off + 2 * u.q.H, 1.0f);
    }
    *out = std::move(m);
    return {};
}

Status Model::forward(float* out, const float* x, int64_t rows, InferScratch& sc) const {
    return forward_with(params->data(), out, x, rows, sc);
}

int64_t Model::forward_aux_width() const {
    int64_t aux = 0;
    for (const DenseUnit& u : units) aux = std::max(aux, seq_aux_width(u));
    return aux;
}

int64_t Model::forward_skip_width() const {  // a residual block's input, kept while the block runs
    int64_t w = 0;
    for (const DenseUnit& u : units)
        if (u.skip_from >= 0) w = std::max<int64_t>(w, units[size_t(u.skip_from)].I);
    return w;
}

int64_t Model::forward_chunk() const {  // rows per pass: bounded scratch for any data set size (and conv patches)
    const int64_t per_row = std::max<int64_t>({int64_t(max_width()), patch_width(), forward_aux_width(), 1});
    return std::max<int64_t>(1, std::min<int64_t>(1024, (int64_t(1) << 24) / per_row));
}

double Model::forward_scratch_floats(int64_t rows) const {  // what forward_with reserves in its InferScratch
    const double n = double(std::min(rows, forward_chunk())), aux = double(forward_aux_width());
    return (has_quant ? double(n_params) : 0.0) + n * (2.0 * max_width() + double(patch_width()) + double(forward_skip_width())) +
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
            const DenseUnit& u = units[i];
            float* dst = i + 1 == units.size() ? out + r0 * outputs : (i % 2 ? sc.d1.data() : sc.d0.data());
            if (dense_only) {
                k->gemm_nt(dst, in, theta + u.w_off, n, u.O, u.I, 1.0f, 0.0f);
                k->bias_act_forward(dst, dst, u.b_off < 0 ? nullptr : theta + u.b_off, n, u.O, u.act, u.alpha);
            } else {
                if (u.starts_block) std::copy(in, in + int64_t(n) * u.I, sc.skip.data());  // the block's skip input
                if (u.kind == UnitKind::Concat) {
                    concat_forward(u, dst, in, sc.skip.data(), n, 1);
                    unit_bias_act(*k, u, theta, dst, dst, n);
                } else {
                    unit_linear(*k, u, theta, in, n, dst, sc.cols.data(), &sq);
                    unit_bias_act(*k, u, theta, dst, dst, n);
                    if (u.skip_from >= 0) residual_add(*k, u, dst, sc.skip.data(), n, 1);
                }
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
    int64_t labeled = rows;  // per-position labels: only the labeled positions count
    if (groups > 1) {
        labeled = 0;
        for (int64_t i = 0; i < rows * groups; i++) labeled += y.labels[i] >= 0;
    }
    *acc_out = labeled > 0 && loss != LossKind::Mse ? double(correct) / double(labeled) : 0.0;
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
    if (m.loss != LossKind::Mse) {
        const int P = m.groups, classes = m.outputs / P;
        OF_CHECK(y.labels, Data, "cross-entropy needs integer class labels (Int32Array)");
        if (P == 1)
            OF_CHECK(y_len == rows, Shape,
                     "y has " + std::to_string(y_len) + " labels, expected one per row (" + std::to_string(rows) + ")");
        else
            OF_CHECK(y_len == rows * P, Shape,
                     "y has " + std::to_string(y_len) + " labels, expected one per position: " + std::to_string(rows) + " rows x " +
                         std::to_string(P));
        const int lo = P > 1 ? -1 : 0;  // -1: an unlabeled position
        for (int64_t i = 0; i < rows * P; i++)
            if (y.labels[i] < lo || y.labels[i] >= classes)
                return {StatusCode::Data, "label " + std::to_string(y.labels[i]) + " at row " + std::to_string(i / P) +
                                              (P > 1 ? ", position " + std::to_string(i % P) : std::string()) + " is out of range [" +
                                              std::to_string(lo) + ", " + std::to_string(classes) + ")"};
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
