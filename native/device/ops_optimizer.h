// Device kernels (ops.h): the gradient norm (a float64 sum of squares in fixed chunks, then the clipping factor
// min(1, clip / |g|)) and the optimizer update per element, skipped when the step's loss was non-finite. The CPU
// (kernels/cpu/optimizer.cpp) runs the same bodies.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/host_device.h"
#include "kernels/cpu/optimizer.h"

namespace of::dev {

constexpr int64_t kReduceChunk = 1 << 14;  // elements per chunk of the sum of squares

// Gradient norm in two stages: part[t] = sum of squares of chunk t (float64), then norm[0] = sqrt of their sum,
// norm[1] = the clipping factor min(1, clip / norm) (1 when clip is 0).
struct SumSqArgs {
    double* part;
    double* norm;
    const float* g;
    int64_t n;
    float clip;
};
OF_HOST_DEVICE void sumsq_partial_at(const SumSqArgs& a, int64_t t) {
    const int64_t i0 = t * kReduceChunk, i1 = i0 + kReduceChunk < a.n ? i0 + kReduceChunk : a.n;
    double s = 0.0;
    for (int64_t i = i0; i < i1; i++) s += double(a.g[i]) * a.g[i];
    a.part[t] = s;
}
OF_HOST_DEVICE void sumsq_final_at(const SumSqArgs& a, int64_t) {
    const int64_t chunks = (a.n + kReduceChunk - 1) / kReduceChunk;
    double s = 0.0;
    for (int64_t t = 0; t < chunks; t++) s += a.part[t];
    const double norm = sqrt(s);
    a.norm[0] = norm;
    a.norm[1] = (a.clip > 0.0f && norm > a.clip) ? a.clip / (norm + 1e-12) : 1.0;
}

// One optimizer update per element. gscale: the clipping factor (norm[1] of SumSqArgs) or nullptr; gate: a
// step-statistics block whose [2] is 0 when the loss was non-finite (the update is then skipped), or nullptr.
struct OptArgs {
    float* p;
    const float* g;
    float* m;
    float* v;
    const double* gscale;
    const double* gate;
    OptKind kind;
    float lr, wd, mu;
    int nesterov;
    float b1, b2, eps, step, inv_sqrt_bc2;
};
// Update t's constants (1-based t): its scheduled rate (kernels/schedule.h) and Adam's bias corrections, the latter in
// float64 (beta^t underflows gracefully and 1 - beta^t keeps its digits). Host only.
inline OptArgs optimizer_args(const OptimizerConfig& o, int64_t t, float* p, const float* g, float* m, float* v,
                              const double* gscale, const double* gate) {
    const float bc1 = float(1.0 - std::pow(double(o.beta1), double(t)));
    const float bc2 = float(1.0 - std::pow(double(o.beta2), double(t)));
    OptArgs a{p, g, m, v, gscale, gate, o.kind, schedule_lr(o.schedule, o.lr, t), o.weight_decay, o.momentum};
    a.nesterov = o.nesterov ? 1 : 0, a.b1 = o.beta1, a.b2 = o.beta2, a.eps = o.eps;
    a.step = a.lr / bc1, a.inv_sqrt_bc2 = 1.0f / std::sqrt(bc2);
    return a;
}
// Element i's update from its gradient g[i] times the clipping factor gs (PyTorch's torch.optim formulas):
//   SGD:   g += wd p;  buf = mu buf + g;  g = nesterov ? g + mu buf : buf;  p -= lr g  (no buf without momentum)
//   Adam:  g += wd p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr mhat / (sqrt(vhat) + eps)
//   AdamW: p -= lr wd p;  then Adam without the L2 term
// The CPU runs these in its vectorized spans (kernels/cpu/optimizer.cpp).
OF_HOST_DEVICE void sgd_update(const OptArgs& a, float gs, float* p, const float* g, float* buf, int64_t i) {
    float gi = g[i] * gs + a.wd * p[i];
    if (a.mu != 0.0f) {
        const float b = a.mu * buf[i] + gi;
        buf[i] = b;
        gi = a.nesterov ? gi + a.mu * b : b;
    }
    p[i] -= a.lr * gi;
}
OF_HOST_DEVICE void adam_update(const OptArgs& a, float gs, float* p, const float* g, float* m, float* v, int64_t i) {
    const bool decoupled = a.kind == OptKind::AdamW;
    const float l2 = decoupled ? 0.0f : a.wd, decay = decoupled ? a.lr * a.wd : 0.0f;
    const float pi = p[i] - decay * p[i];
    const float gi = g[i] * gs + l2 * p[i];
    const float mi = a.b1 * m[i] + (1.0f - a.b1) * gi;
    const float vi = a.b2 * v[i] + (1.0f - a.b2) * gi * gi;
    m[i] = mi, v[i] = vi;
    p[i] = pi - a.step * mi / (sqrtf(vi) * a.inv_sqrt_bc2 + a.eps);
}
OF_HOST_DEVICE void optimizer_at(const OptArgs& a, int64_t i) {
    if (a.gate && a.gate[2] == 0.0) return;
    const float gs = a.gscale ? float(a.gscale[1]) : 1.0f;
    if (a.kind == OptKind::Sgd) sgd_update(a, gs, a.p, a.g, a.m, i);
    else adam_update(a, gs, a.p, a.g, a.m, a.v, i);
}

#define OF_OPTIMIZER_KERNELS(X) \
    X(sumsq_partial, SumSqArgs) \
    X(sumsq_final, SumSqArgs)   \
    X(optimizer, OptArgs)

}  // namespace of::dev
