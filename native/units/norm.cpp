// The normalizations (shape unchanged; gain 1 and bias 0 at the start, one each per channel of the last axis):
//   layerNorm: gain x^ + bias, x^ over each position's channels; groupNorm: x^ over each (row, group) set, all
//   positions of the group's channels; batchNorm: gain (x - mean) / sqrt(var + eps) + bias per channel, with this
//   batch's statistics in training (ULR's noisy copies use the clean batch's) and running ones in inference.
// Means and variances accumulate in double. The arithmetic is the device's (device/ops_norm.h), run here in loops over
// the sets and channels. The bias comes with the activation (or the ULR noise), as for every unit.
#include <algorithm>
#include <cmath>

#include "device/ops_norm.h"
#include "device/unit_pass.h"
#include "units/unit.h"

namespace of {

extern const UnitKind layer_norm_kind, batch_norm_kind, group_norm_kind;

namespace {

// The normalization sets of a row: a layerNorm set is one position's channels, a groupNorm set one group's channels
// at every position.
int sets_per_row(const Unit& u) { return u.kind == &group_norm_kind ? u.groups : u.g.Ho; }

// layerNorm, groupNorm: x^ (rows, O) and 1 / sqrt(var + eps) per set
void xhat(const Unit& u, const float* in, int rows, float* xh, float* invs) {
    const dev::NormArgs a{xh, invs, in, u.g.Ho, u.g.Co, u.groups};
    const int64_t n = int64_t(rows) * sets_per_row(u);
    if (u.kind == &group_norm_kind)
        for (int64_t s = 0; s < n; s++) dev::group_norm_at(a, s);
    else
        for (int64_t s = 0; s < n; s++) dev::layer_norm_at(a, s);
}

// x^ (rows, O) of any norm: batchNorm's from the batch statistics
void xhat_of(const Unit& u, const float* in, int rows, std::vector<float>& xh) {
    xh.resize(size_t(rows) * size_t(u.O));
    if (u.kind != &batch_norm_kind) {
        std::vector<float> invs(size_t(rows) * size_t(sets_per_row(u)));
        return xhat(u, in, rows, xh.data(), invs.data());
    }
    const dev::BatchApplyArgs a{xh.data(), in, u.batch->data(), nullptr, u.g.Ho, u.g.Co, 1};
    for (int64_t v = 0; v < int64_t(rows) * u.g.Ho; v++) dev::bn_apply_span(a, v, 0, u.g.Co);
}

// gain (x - mean) / sqrt(var + eps) per channel, with the statistics `stats` (C means, then C variances); row r
// reads row r / rep of `in` (rep: copies)
void batch_norm_with(const Unit& u, const float* theta, const float* stats, const float* in, int rows, float* out,
                     int rep) {
    const int C = u.g.Co, P = u.g.Ho;
    std::vector<float> scale(static_cast<size_t>(C));
    for (int c = 0; c < C; c++) scale[size_t(c)] = dev::bn_scale(stats, theta + u.w_off, C, c);
    for (int r = 0; r < rows; r++)
        for (int p = 0; p < P; p++) {
            const float* x = in + (int64_t(r / rep) * P + p) * C;
            float* y = out + (int64_t(r) * P + p) * C;
            for (int c = 0; c < C; c++) y[c] = (x[c] - stats[c]) * scale[size_t(c)];
        }
}

// layerNorm, groupNorm: out = gain x^ (inference and training alike)
void forward(const KernelTable&, const Unit& u, const float* theta, const float* in, int rows, float* out, float*,
             const SeqCtx*) {
    std::vector<float> invs(size_t(rows) * size_t(sets_per_row(u)));
    xhat(u, in, rows, out, invs.data());
    const float* gain = theta + u.w_off;
    for (int64_t i = 0; i < int64_t(rows) * u.O; i++) out[i] *= gain[i % u.g.Co];
}

// layerNorm, groupNorm: d gain = sum dy x^, d bias = sum dy per channel; din through each set's statistics
void backward(const KernelTable&, const Unit& u, const float* theta, const float* in, int rows, const float* dv,
              float* dW, float* din, float*, const SeqCtx*) {
    const int C = u.g.Co;
    std::vector<float> xh(size_t(rows) * size_t(u.O)), invs(size_t(rows) * size_t(sets_per_row(u)));
    xhat(u, in, rows, xh.data(), invs.data());
    if (dW) {
        std::fill(dW, dW + 2 * C, 0.0f);
        for (int64_t i = 0; i < int64_t(rows) * u.O; i++) dW[i % C] += dv[i] * xh[size_t(i)], dW[C + i % C] += dv[i];
    }
    if (!din) return;
    const dev::NormBackArgs a{din, dv, xh.data(), invs.data(), theta + u.w_off, u.g.Ho, C, u.groups};
    for (int64_t s = 0; s < int64_t(rows) * sets_per_row(u); s++)
        u.kind == &group_norm_kind ? dev::group_norm_backward_at(a, s) : dev::layer_norm_backward_at(a, s);
}

// d gain = alpha sum w S x^, d bias = alpha sum w S (every position of a row shares its weight)
void lr_reduce(const KernelTable& k, const Unit& u, const float* in, int rows, const float* S, const float* w,
               float alpha, float* dW, float* db, float*, float* wexp) {
    const int C = u.g.Co;
    std::vector<float> xh;
    xhat_of(u, in, rows, xh);
    std::fill(dW, dW + C, 0.0f);
    for (int r = 0; r < rows; r++) {
        const float f = alpha * (w ? w[r] : 1.0f);
        for (int64_t i = int64_t(r) * u.O; i < int64_t(r + 1) * u.O; i++) dW[i % C] += f * S[i] * xh[size_t(i)];
    }
    expand_row_weights(wexp, w, rows, u.g.positions());
    k.lr_bias_reduce(db, wexp, S, int(u.gemm_rows(rows)), C, alpha, false);
}

// batchNorm in inference: the running statistics
void forward_batch(const KernelTable&, const Unit& u, const float* theta, const float* in, int rows, float* out, float*,
                   const SeqCtx*) {
    batch_norm_with(u, theta, u.running->data(), in, rows, out, 1);
}

// batchNorm in training, through the batch statistics: dx = gain inv (dy - mean(dy) - x^ mean(dy x^)) per channel
void backward_batch(const KernelTable&, const Unit& u, const float* theta, const float* in, int rows, const float* dv,
                    float* dW, float* din, float*, const SeqCtx*) {
    const int C = u.g.Co;
    std::vector<double> sums(2 * size_t(C));  // sums of dy and dy x^ per channel
    std::vector<float> inv(static_cast<size_t>(C));
    const dev::BatchBackArgs a{
        din, nullptr, nullptr, sums.data(), dv, in, u.batch->data(), theta + u.w_off, int64_t(rows) * u.g.Ho, C};
    dev::bn_backward_sums_span(a, 0, C, sums.data(), sums.data() + C, inv.data());
    if (dW)
        for (int c = 0; c < C; c++) dW[c] = float(sums[size_t(C + c)]), dW[C + c] = float(sums[size_t(c)]);
    if (din)
        for (int64_t p = 0; p < a.n; p++)
            for (int c = 0; c < C; c++) din[p * C + c] = dev::bn_din(a, p * C + c, c, inv[size_t(c)]);
}

void read_group_norm(const LayerReader& r, LayerSpec& l) { l.groups = int(r.integer("groups", 1, 1 << 20)); }

// Normalizes the last axis: channels (an image), features per step (a sequence), or all values (flat)
Status build(const LayerSpec& l, ModelBuilder& b) {
    OF_CHECK(!b.m.units.empty(), Config, b.where + ": normalization needs a layer before it");
    Unit u{b.width, b.width, -1, -1};
    u.kind = l.type->unit;
    const int last = b.spatial ? b.C : b.seq ? b.F : b.width;
    if (u.kind == &group_norm_kind) {
        OF_CHECK(l.groups >= 1 && last % l.groups == 0, Config,
                 b.where + ": groupNorm groups (" + std::to_string(l.groups) + ") must divide the channels (" +
                     std::to_string(last) + ")");
        u.groups = l.groups;
    }
    u.g.Ho = b.width / last, u.g.Wo = 1, u.g.Co = last, u.g.C = last;
    OF_TRY(b.params(u, uint64_t(last), uint64_t(last)));
    if (u.kind == &batch_norm_kind) {  // running mean 0, variance 1
        u.running = std::make_shared<std::vector<float>>(2 * size_t(last), 0.0f);
        std::fill(u.running->begin() + last, u.running->end(), 1.0f);
        u.batch = std::make_shared<std::vector<float>>(2 * size_t(last), 0.0f);
        b.m.uses_batch_stats = true;
    }
    b.add(u);
    return {};
}

void init(const Unit& u, float* theta, uint64_t, uint32_t) { std::fill(theta + u.w_off, theta + u.b_off, 1.0f); }

void tensors(const Unit& u, const std::string& name, std::vector<UnitTensor>& out) {
    out.push_back({name + ".weight", u.w_off, {u.g.Co}});
    out.push_back({name + ".bias", u.b_off, {u.g.Co}});
}

}  // namespace

void measure_batch_stats(const Unit& u, const float* in, int rows) {
    std::vector<double> mu(size_t(u.g.Co)), var(size_t(u.g.Co));
    dev::bn_stats_span(dev::BatchStatsArgs{u.batch->data(), in, int64_t(rows) * u.g.Ho, u.g.Co}, 0, u.g.Co, mu.data(),
                       var.data());
}

void update_running_stats(const Unit& u, int rows) {
    const dev::RunningArgs a{u.running->data(), u.batch->data(), nullptr, double(rows) * u.g.Ho, u.g.Co};
    for (int c = 0; c < u.g.Co; c++) dev::bn_running_at(a, c);
}

void apply_batch_stats(const Unit& u, const float* theta, const float* in, int rows, float* out, int rep) {
    batch_norm_with(u, theta, u.batch->data(), in, rows, out, rep);
}

namespace {
void train_batch(const Unit& u, const float* theta, const float* in, int rows, float* out, const TrainCtx& t) {
    if (t.batch_stats) measure_batch_stats(u, in, rows);
    apply_batch_stats(u, theta, in, rows, out);
}

// On a device (kernels in ops_norm.h). Every norm: d gain = alpha colsum(dv x^), d bias = alpha colsum(dv).
Status device_gain_bias_grads(const UnitPass& p, const float* xh, const float* dv, float alpha) {
    const Unit& u = p.u;
    float* G = p.t.grads();
    const int n = int(u.gemm_rows(p.rows));
    OF_TRY(p.t.col_sum(G + u.w_off, dv, n, u.g.Co, alpha, xh));
    return p.t.col_sum(G + u.b_off, dv, n, u.g.Co, alpha);
}

// layerNorm, groupNorm: x^ and 1 / sigma per set into the unit's buffers 0 and 1 (the gradients read them), then
// gain x^; the input gradient through the set's statistics
int64_t device_sets(const UnitPass& p) { return int64_t(p.rows) * sets_per_row(p.u); }
Status device_forward(const UnitPass& p, const float* x, float* out) {
    const Unit& u = p.u;
    DeviceBuffer &xh = p.buffer(0), &inv = p.buffer(1);
    OF_TRY(xh.reserve(p.d, size_t(p.rows) * u.O * sizeof(float)));
    OF_TRY(inv.reserve(p.d, size_t(device_sets(p)) * sizeof(float)));
    const dev::NormArgs a{xh.f(), inv.f(), x, u.g.Ho, u.g.Co, u.groups};
    OF_TRY(u.kind == &group_norm_kind ? p.d->group_norm(a, device_sets(p)) : p.d->layer_norm(a, device_sets(p)));
    return p.d->add(dev::AddArgs{out, xh.f(), 0, p.weights(), u.g.Co}, p.values());
}
Status device_backward(const UnitPass& p, const float*, const float* dv, float alpha, bool weights, float* din) {
    const Unit& u = p.u;
    const float *xh = p.buffer(0).f(), *inv = p.buffer(1).f(), *gain = p.t.params() + u.w_off;
    if (weights) OF_TRY(device_gain_bias_grads(p, xh, dv, alpha));
    if (!din) return {};
    const dev::NormBackArgs a{din, dv, xh, inv, gain, u.g.Ho, u.g.Co, u.groups};
    return u.kind == &group_norm_kind ? p.d->group_norm_backward(a, device_sets(p))
                                      : p.d->layer_norm_backward(a, device_sets(p));
}
const DeviceUnitOps device{false, device_forward, device_backward};

// batchNorm: its statistics in the trainer's buffers kBatch (this batch's, measured by a training step's clean forward)
// and kRunning (inference's); its buffer 2 is scratch: x^ for ULR's reduction, the channel sums for BP
Status device_batch_forward(const UnitPass& p, const float* x, float* out) {
    const Unit& u = p.u;
    float* batch = p.buffer(DeviceTrainer::kBatch).f();
    if (p.batch_stats) OF_TRY(p.d->bn_stats(dev::BatchStatsArgs{batch, x, int64_t(p.rows) * u.g.Ho, u.g.Co}, u.g.Co));
    const float* st = p.t.inference() ? p.buffer(DeviceTrainer::kRunning).f() : batch;
    return p.d->bn_apply(dev::BatchApplyArgs{out, x, st, p.weights(), u.g.Ho, u.g.Co, 1}, p.values());
}
// BP (din given) through the batch statistics: per-channel sums (and the gain and bias gradients), then the input
// gradient; ULR's reduction (no din): the gain's from x^
Status device_batch_backward(const UnitPass& p, const float* x, const float* dv, float alpha, bool weights,
                             float* din) {
    const Unit& u = p.u;
    const float* batch = p.buffer(DeviceTrainer::kBatch).f();
    if (!din || p.held_stats) {  // the gain's gradient from x^; with held statistics din = dv gain / sqrt(var + eps)
        DeviceBuffer& xh = p.buffer(2);
        OF_TRY(xh.reserve(p.d, size_t(p.values()) * sizeof(float)));
        OF_TRY(p.d->bn_apply(dev::BatchApplyArgs{xh.f(), x, batch, nullptr, u.g.Ho, u.g.Co, 1}, p.values()));
        if (weights) OF_TRY(device_gain_bias_grads(p, xh.f(), dv, alpha));
        if (!din) return {};
        const float* gain = p.t.params() + u.w_off;
        return p.d->bn_held_backward(dev::BatchApplyArgs{din, dv, batch, gain, u.g.Ho, u.g.Co, 1}, p.values());
    }
    const int n = int(u.gemm_rows(p.rows)), C = u.g.Co;
    OF_TRY(p.buffer(2).reserve(p.d, size_t(2 * C) * sizeof(double)));
    float* G = p.t.grads();
    const float* gain = p.t.params() + u.w_off;
    const dev::BatchBackArgs a{din, G + u.w_off, G + u.b_off, p.buffer(2).as<double>(), dv, x, batch, gain, n, C};
    OF_TRY(p.d->bn_backward_sums(a, C));
    return p.d->bn_backward(a, int64_t(n) * C);
}
const DeviceUnitOps batch_device{false, device_batch_forward, device_batch_backward};

}  // namespace

extern const LayerType layer_norm_layer{"layerNorm", &layer_norm_kind, nullptr, build};
extern const LayerType batch_norm_layer{"batchNorm", &batch_norm_kind, nullptr, build};
extern const LayerType group_norm_layer{"groupNorm", &group_norm_kind, read_group_norm, build};
extern const UnitKind layer_norm_kind{UnitFamily::Norm, "norm", &device, init, tensors, forward, backward, lr_reduce};
extern const UnitKind batch_norm_kind{UnitFamily::Norm, "batchnorm",    &batch_device, init,    tensors,
                                      forward_batch,    backward_batch, lr_reduce,     nullptr, train_batch};
extern const UnitKind group_norm_kind{UnitFamily::Norm, "groupnorm", &device,  init,
                                      tensors,          forward,     backward, lr_reduce};

}  // namespace of
