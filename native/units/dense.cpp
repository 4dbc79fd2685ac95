// dense: out (rows, O) = in (rows, I) W^T + b, W (O, I) then b (O) in the slab. Glorot-uniform weights, zero bias.
// A leading run of dense layers may be frozen (fine-tuning); the forward may use binary or ternary weights. On a
// sequence it acts per position (the conv-like math of units/conv.h, over a 1x1 window of T positions).
//
// With a low-rank adapter (LoRA, Hu et al. 2021), for fine-tuning a pretrained layer:
//   y = x W^T + s (x A^T) B^T + b,   s = alpha / r,   A (r, I), B (O, r)
// W (O, I) and b are frozen (a frozen range of the model: no gradient, no update); A and B train. A starts uniform in
// +-1/sqrt(I), B at zero (Hu et al.'s convention, and PEFT's lora_A / lora_B shapes), so a fresh adapter changes
// nothing. Slab: W, b, then A, B (tensors .weight, .bias, .lora_a, .lora_b). With H = x A^T (rows, r):
//   BP:  P = dv B (rows, r);  dA = s P^T x;  dB = s dv^T H;  din = dv W + s P A
//   LR:  the same with S = diag(w) scores in place of dv, times the reduction's alpha
// Never the full (O, I) gradient: every product goes through the rank r. On a sequence the same maps act on each of
// the T positions: rows x T GEMM rows of I / T inputs and O / T outputs. cols: rows x T (2 r + 1) floats (H, P, and
// the row weights repeated over the positions).
#include <algorithm>
#include <cmath>

#include "core/shape.h"
#include "device/unit_pass.h"
#include "units/conv.h"

namespace of {

extern const UnitKind dense_kind, seq_dense_kind, adapter_kind, seq_adapter_kind;

namespace {

// The adapter's pieces (its layout comes first: build reads it)
// The GEMM view: positions per row (1, or T on a sequence), inputs and outputs per position.
int positions(const Unit& u) { return std::max(1, u.g.Ho); }
int fan_in(const Unit& u) { return u.I / positions(u); }
int fan_out(const Unit& u) { return u.O / positions(u); }

const float* factor_a(const Unit& u, const float* theta) { return theta + u.w_off; }
const float* factor_b(const Unit& u, const float* theta) { return theta + u.w_off + int64_t(u.rank) * fan_in(u); }

void adapter_init(const Unit& u, float* theta, uint64_t seed, uint32_t unit) {
    const int I = fan_in(u), O = fan_out(u);
    fill_uniform(theta + u.base_off, int64_t(O) * I, std::sqrt(6.0f / float(I + O)), seed, unit, 0);  // dense's
    fill_uniform(theta + u.w_off, int64_t(u.rank) * I, 1.0f / std::sqrt(float(I)), seed, unit, 1);
    std::fill(theta + u.w_off + int64_t(u.rank) * I, theta + u.w_off + u.n_par, 0.0f);
}

void adapter_tensors(const Unit& u, const std::string& name, std::vector<UnitTensor>& out) {
    const int I = fan_in(u), O = fan_out(u);
    out.push_back({name + ".weight", u.base_off, {O, I}});
    if (u.b_off >= 0) out.push_back({name + ".bias", u.b_off, {O}});
    out.push_back({name + ".lora_a", u.w_off, {u.rank, I}});
    out.push_back({name + ".lora_b", u.w_off + int64_t(u.rank) * I, {O, u.rank}});
}

void adapter_forward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, float* out,
                     float* cols, const SeqCtx*) {
    const int R = rows * positions(u), I = fan_in(u), O = fan_out(u);
    k.gemm_nt(out, in, theta + u.base_off, R, O, I, 1.0f, 0.0f);
    k.gemm_nt(cols, in, factor_a(u, theta), R, u.rank, I, 1.0f, 0.0f);  // H
    k.gemm_nt(out, cols, factor_b(u, theta), R, O, u.rank, u.scale, 1.0f);
}

// The factors' gradients from D (rows, O) with row weights w (nullptr: 1), times f: dA = f P^T x, dB = f D^T H.
void factor_grads(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, const float* D,
                  const float* w, float f, float* dW, float* cols) {
    const int T = positions(u), R = rows * T, I = fan_in(u), O = fan_out(u);
    float* H = cols;
    float* P = cols + int64_t(R) * u.rank;
    if (w && T > 1) {  // a weight per GEMM row: the row's weight at each of its positions
        float* wexp = cols + 2 * int64_t(R) * u.rank;
        expand_row_weights(wexp, w, rows, T);
        w = wexp;
    }
    k.gemm_nt(H, in, factor_a(u, theta), R, u.rank, I, 1.0f, 0.0f);
    k.gemm_nn(P, D, factor_b(u, theta), R, u.rank, O, 1.0f, 0.0f);
    k.gemm_tn(dW, P, in, w, u.rank, I, R, f, 0.0f);
    k.gemm_tn(dW + int64_t(u.rank) * I, D, H, w, O, u.rank, R, f, 0.0f);
}

void adapter_backward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows,
                      const float* dv, float* dW, float* din, float* cols, const SeqCtx*) {
    if (dW) factor_grads(k, u, theta, in, rows, dv, nullptr, u.scale, dW, cols);
    if (!din) return;
    const int R = rows * positions(u), I = fan_in(u), O = fan_out(u);
    float* P = cols + int64_t(R) * u.rank;
    if (!dW) k.gemm_nn(P, dv, factor_b(u, theta), R, u.rank, O, 1.0f, 0.0f);
    k.gemm_nn(din, dv, theta + u.base_off, R, I, O, 1.0f, 0.0f);
    k.gemm_nn(din, P, factor_a(u, theta), R, I, u.rank, u.scale, 1.0f);
}

void adapter_lr_reduce(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows,
                       const float* S, const float* w, float alpha, float* dW, float* cols) {
    factor_grads(k, u, theta, in, rows, S, w, alpha * u.scale, dW, cols);
}

// On a device, the same products as GEMMs, H = x A^T and P = D B in the unit's buffers 0 and 1 (the backward
// recomputes H: the buffer may hold another pass's rows by then).
Status adapter_device_forward(const UnitPass& p, const float* x, float* v) {
    const Unit& u = p.u;
    const int R = p.rows * positions(u), I = fan_in(u), O = fan_out(u), r = u.rank;
    const float* th = p.t.theta();
    DeviceBuffer& H = p.buffer(0);
    OF_TRY(H.reserve(p.d, size_t(R) * r * sizeof(float)));
    OF_TRY(p.d->gemm(false, true, R, O, I, 1.0f, x, I, th + u.base_off, I, 0.0f, v, O, p.tf32));
    OF_TRY(p.d->gemm(false, true, R, r, I, 1.0f, x, I, factor_a(u, th), I, 0.0f, H.f(), r, p.tf32));
    return p.d->gemm(false, true, R, O, r, u.scale, H.f(), r, factor_b(u, th), r, 1.0f, v, O, p.tf32);
}
Status adapter_device_backward(const UnitPass& p, const float* x, const float* dv, float alpha, bool weights,
                               float* din) {
    const Unit& u = p.u;
    const int R = p.rows * positions(u), I = fan_in(u), O = fan_out(u), r = u.rank;
    const float* th = p.t.params();
    DeviceBuffer &H = p.buffer(0), &P = p.buffer(1);
    OF_TRY(H.reserve(p.d, size_t(R) * r * sizeof(float)));
    OF_TRY(P.reserve(p.d, size_t(R) * r * sizeof(float)));
    OF_TRY(p.d->gemm(false, false, R, r, O, 1.0f, dv, O, factor_b(u, th), r, 0.0f, P.f(), r, p.tf32));
    if (weights) {  // dA = alpha s P^T x, dB = alpha s D^T H
        float* G = p.t.grads() + u.w_off;
        OF_TRY(p.d->gemm(false, true, R, r, I, 1.0f, x, I, factor_a(u, th), I, 0.0f, H.f(), r, p.tf32));
        OF_TRY(p.d->gemm(true, false, r, I, R, alpha * u.scale, P.f(), r, x, I, 0.0f, G, I, p.tf32));
        OF_TRY(p.d->gemm(true, false, O, r, R, alpha * u.scale, dv, O, H.f(), r, 0.0f, G + int64_t(r) * I, r, p.tf32));
    }
    if (!din) return {};
    OF_TRY(p.d->gemm(false, false, R, I, O, 1.0f, dv, O, th + u.base_off, I, 0.0f, din, I, p.tf32));
    return p.d->gemm(false, false, R, I, r, u.scale, P.f(), r, factor_a(u, th), I, 1.0f, din, I, p.tf32);
}
const DeviceUnitOps adapter_device{true, adapter_device_forward, adapter_device_backward};
const DeviceUnitOps seq_adapter_device{false, adapter_device_forward, adapter_device_backward};

Status adapter_layout(const LayerSpec& l, ModelBuilder& b, Unit& u) {
    const int r = l.adapter_rank, I = fan_in(u), O = fan_out(u);
    OF_CHECK(!l.quant, Config, b.where + ": an adapter needs real weights (not binary or ternary)");
    OF_CHECK(r <= std::min(I, O), Config,
             b.where + ": adapter rank " + std::to_string(r) +
                 " is more than min(inputs, units) = " + std::to_string(std::min(I, O)));
    const float alpha = l.adapter_alpha > 0.0f ? l.adapter_alpha : float(r);
    u.kind = u.g.Ho > 0 ? &seq_adapter_kind : &adapter_kind, u.rank = r, u.scale = alpha / float(r);
    OF_TRY(b.params(u, uint64_t(O) * uint64_t(I), l.bias ? uint64_t(O) : 0));  // the base: W, then b
    u.base_off = u.w_off;
    OF_TRY(b.params(u, uint64_t(r) * (uint64_t(I) + uint64_t(O)), 0));  // then the factors
    b.m.frozen_ranges.push_back({u.base_off, u.w_off});
    return {};
}

void read(const LayerReader& r, LayerSpec& l) {
    l.units = int(r.integer("units", 1, 1 << 28));
    l.bias = r.flag_or("bias", true);
    l.trainable = r.flag_or("trainable", true);
    l.quant = read_quant(r);
    const double rank = r.number_or("adapterRank", 0.0), alpha = r.number_or("adapterAlpha", 0.0);
    if (rank != std::floor(rank) || rank < 0.0 || rank > double(1 << 28)) r.fail("adapterRank must be an integer >= 1");
    if (!(alpha >= 0.0)) r.fail("adapterAlpha must be positive");
    l.adapter_rank = int(rank), l.adapter_alpha = float(alpha);
}

Status build(const LayerSpec& l, ModelBuilder& b) {
    Model& m = b.m;
    OF_CHECK(!b.spatial, Config, b.where + ": dense needs a flat input; add flatten() after the spatial layers");
    OF_TRY(check_positive(l.units, "dense units"));
    if (b.seq) {  // per position: (T, F) -> (T, units), a conv-like unit (units/conv.h)
        OF_CHECK(l.trainable, Config, b.where + ": a dense layer on a sequence cannot be frozen");
        if (!l.adapter_rank) return add_position_linear(b, &seq_dense_kind, l.units, l.bias, l.quant);
        Unit u{b.width, 0, -1, -1};  // an adapter per position: T positions of F inputs
        u.g.H = u.g.Ho = b.T, u.g.W = u.g.Wo = 1, u.g.C = b.F, u.g.Co = l.units;
        OF_TRY(b.output(u, uint64_t(b.T), uint64_t(l.units)));
        OF_TRY(adapter_layout(l, b, u));
        b.F = l.units;
        b.add(u);
        return {};
    }
    uint64_t wn = 0;
    OF_TRY(checked_mul(uint64_t(b.width), uint64_t(l.units), &wn, "dense weight"));
    OF_CHECK(l.trainable || int(m.units.size()) == m.frozen, Config,
             b.where + ": only a leading run of dense layers can be frozen");
    if (!l.trainable) m.frozen++;
    Unit u{b.width, l.units, -1, -1};
    u.kind = &dense_kind, u.quant = l.quant;
    if (l.quant) m.has_quant = true;
    if (l.adapter_rank > 0) OF_TRY(adapter_layout(l, b, u));
    else OF_TRY(b.params(u, wn, l.bias ? uint64_t(l.units) : 0));
    b.add(u);
    return {};
}

void init(const Unit& u, float* theta, uint64_t seed, uint32_t unit) {
    init_uniform(u, theta, std::sqrt(6.0f / float(u.I + u.O)), seed, unit);
}

void tensors(const Unit& u, const std::string& name, std::vector<UnitTensor>& out) {
    out.push_back({name + ".weight", u.w_off, {u.O, u.I}});
    if (u.b_off >= 0) out.push_back({name + ".bias", u.b_off, {u.O}});
}

void forward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, float* out, float*,
             const SeqCtx*) {
    k.gemm_nt(out, in, theta + u.w_off, rows, u.O, u.I, 1.0f, 0.0f);
}

// dW = dv^T in, db = colsum(dv), din = dv W
void backward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, const float* dv,
              float* dW, float* din, float*, const SeqCtx*) {
    if (dW) {
        k.gemm_tn(dW, dv, in, nullptr, u.O, u.I, rows, 1.0f, 0.0f);
        if (u.b_off >= 0) k.col_sum(dW + int64_t(u.O) * u.I, dv, rows, u.O);
    }
    if (din) k.gemm_nn(din, dv, theta + u.w_off, rows, u.I, u.O, 1.0f, 0.0f);
}

// dW = alpha (diag(w) S)^T in, db = alpha colsum(diag(w) S)
void lr_reduce(const KernelTable& k, const Unit& u, const float* in, int rows, const float* S, const float* w,
               float alpha, float* dW, float* db, float*, float* wexp) {
    k.gemm_tn(dW, S, in, w, u.O, u.I, rows, alpha, 0.0f);
    if (u.b_off < 0) return;
    if (!w && alpha == 1.0f) return k.col_sum(db, S, rows, u.O);
    if (!w) std::fill(wexp, wexp + rows, 1.0f);
    k.lr_bias_reduce(db, w ? w : wexp, S, rows, u.O, alpha, false);
}

const DeviceUnitOps device{true};  // a GEMM unit

}  // namespace

extern const LayerType dense_layer{"dense", &dense_kind, read, build};
extern const UnitKind dense_kind{UnitFamily::Plain, "dense", &device, init, tensors, forward, backward, lr_reduce};
extern const UnitKind seq_dense_kind{UnitFamily::ConvLike, "dense",          &position_device,  convlike_init,
                                     position_tensors,     convlike_forward, convlike_backward, convlike_lr_reduce};
extern const UnitKind adapter_kind{UnitFamily::Plain, "dense",         &adapter_device,  adapter_init,
                                   adapter_tensors,   adapter_forward, adapter_backward, nullptr,
                                   nullptr,           nullptr,         adapter_lr_reduce};
// per position: the GEMM view of a 1x1 window over T positions (bias and noise channels per output feature)
extern const UnitKind seq_adapter_kind{UnitFamily::ConvLike,
                                       "dense",
                                       &seq_adapter_device,
                                       adapter_init,
                                       adapter_tensors,
                                       adapter_forward,
                                       adapter_backward,
                                       nullptr,
                                       nullptr,
                                       nullptr,
                                       adapter_lr_reduce};

}  // namespace of
