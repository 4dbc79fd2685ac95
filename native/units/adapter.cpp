// adapter: a dense layer with a low-rank adapter (LoRA, Hu et al. 2021), for fine-tuning a pretrained layer:
//   y = x W^T + s (x A^T) B^T + b,   s = alpha / r,   A (r, I), B (O, r)
// W (O, I) and b are frozen (a frozen range of the model: no gradient, no update); A and B train. A starts uniform in
// +-1/sqrt(I), B at zero (Hu et al.'s convention, and PEFT's lora_A / lora_B shapes), so a fresh adapter changes
// nothing. Slab: W, b, then A, B (tensors .weight, .bias, .lora_a, .lora_b). With H = x A^T (rows, r):
//   BP:  P = dv B (rows, r);  dA = s P^T x;  dB = s dv^T H;  din = dv W + s P A
//   LR:  the same with S = diag(w) scores in place of dv, times the reduction's alpha
// Never the full (O, I) gradient: every product goes through the rank r. cols: rows x 2 r floats (H, P).
#include <algorithm>
#include <cmath>

#include "core/shape.h"
#include "units/unit.h"

namespace of {
namespace {

const float* factor_a(const Unit& u, const float* theta) { return theta + u.w_off; }
const float* factor_b(const Unit& u, const float* theta) { return theta + u.w_off + int64_t(u.rank) * u.I; }

void init(const Unit& u, float* theta, uint64_t seed, uint32_t unit) {
    fill_uniform(theta + u.base_off, int64_t(u.O) * u.I, std::sqrt(6.0f / float(u.I + u.O)), seed, unit, 0);  // dense's
    fill_uniform(theta + u.w_off, int64_t(u.rank) * u.I, 1.0f / std::sqrt(float(u.I)), seed, unit, 1);
    std::fill(theta + u.w_off + int64_t(u.rank) * u.I, theta + u.w_off + u.n_par, 0.0f);
}

void tensors(const Unit& u, const std::string& name, std::vector<UnitTensor>& out) {
    out.push_back({name + ".weight", u.base_off, {u.O, u.I}});
    if (u.b_off >= 0) out.push_back({name + ".bias", u.b_off, {u.O}});
    out.push_back({name + ".lora_a", u.w_off, {u.rank, u.I}});
    out.push_back({name + ".lora_b", u.w_off + int64_t(u.rank) * u.I, {u.O, u.rank}});
}

void forward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, float* out,
             float* cols, const SeqCtx*) {
    k.gemm_nt(out, in, theta + u.base_off, rows, u.O, u.I, 1.0f, 0.0f);
    k.gemm_nt(cols, in, factor_a(u, theta), rows, u.rank, u.I, 1.0f, 0.0f);  // H
    k.gemm_nt(out, cols, factor_b(u, theta), rows, u.O, u.rank, u.scale, 1.0f);
}

// The factors' gradients from D (rows, O) with row weights w (nullptr: 1), times f: dA = f P^T x, dB = f D^T H.
void factor_grads(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, const float* D,
                  const float* w, float f, float* dW, float* cols) {
    float* H = cols;
    float* P = cols + int64_t(rows) * u.rank;
    k.gemm_nt(H, in, factor_a(u, theta), rows, u.rank, u.I, 1.0f, 0.0f);
    k.gemm_nn(P, D, factor_b(u, theta), rows, u.rank, u.O, 1.0f, 0.0f);
    k.gemm_tn(dW, P, in, w, u.rank, u.I, rows, f, 0.0f);
    k.gemm_tn(dW + int64_t(u.rank) * u.I, D, H, w, u.O, u.rank, rows, f, 0.0f);
}

void backward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, const float* dv,
              float* dW, float* din, float* cols, const SeqCtx*) {
    if (dW) factor_grads(k, u, theta, in, rows, dv, nullptr, u.scale, dW, cols);
    if (!din) return;
    float* P = cols + int64_t(rows) * u.rank;
    if (!dW) k.gemm_nn(P, dv, factor_b(u, theta), rows, u.rank, u.O, 1.0f, 0.0f);
    k.gemm_nn(din, dv, theta + u.base_off, rows, u.I, u.O, 1.0f, 0.0f);
    k.gemm_nn(din, P, factor_a(u, theta), rows, u.I, u.rank, u.scale, 1.0f);
}

void lr_reduce(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, const float* S,
               const float* w, float alpha, float* dW, float* cols) {
    factor_grads(k, u, theta, in, rows, S, w, alpha * u.scale, dW, cols);
}

}  // namespace

Status adapter_layout(const LayerSpec& l, ModelBuilder& b, Unit& u) {
    const int r = l.adapter_rank;
    OF_CHECK(!l.quant, Config, b.where + ": an adapter needs real weights (not binary or ternary)");
    OF_CHECK(r <= std::min(u.I, u.O), Config,
             b.where + ": adapter rank " + std::to_string(r) +
                 " is more than min(inputs, units) = " + std::to_string(std::min(u.I, u.O)));
    const float alpha = l.adapter_alpha > 0.0f ? l.adapter_alpha : float(r);
    u.kind = UnitKind::Adapter, u.rank = r, u.scale = alpha / float(r);
    OF_TRY(b.params(u, uint64_t(u.O) * uint64_t(u.I), l.bias ? uint64_t(u.O) : 0));  // the base: W, then b
    u.base_off = u.w_off;
    OF_TRY(b.params(u, uint64_t(r) * (uint64_t(u.I) + uint64_t(u.O)), 0));  // then the factors
    b.m.frozen_ranges.push_back({u.base_off, u.w_off});
    return {};
}

extern const UnitOps adapter_unit{UnitFamily::Plain, "dense", init,    tensors, forward,
                                  backward,          nullptr, nullptr, nullptr, lr_reduce};

}  // namespace of
