// Device kernels (ops.h): the gradient norm (a float64 sum of squares in cpu::grad_norm's chunks, then the clipping
// factor min(1, clip / |g|)) and the optimizer update per element in cpu::optimizer_step's order of operations, both
// skipped when the step's loss was non-finite.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/host_device.h"
#include "kernels/cpu/optimizer.h"

namespace of::dev {

constexpr int64_t kReduceChunk = 1 << 14;  // elements per chunk of the sum of squares (cpu::grad_norm's chunks)

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

// One optimizer update per element (cpu::optimizer_step's formulas and order of operations). gscale: the clipping
// factor (norm[1] of SumSqArgs) or nullptr; gate: a step-statistics block whose [2] is 0 when the loss was
// non-finite (the update is then skipped), or nullptr.
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
OF_HOST_DEVICE void optimizer_at(const OptArgs& a, int64_t i) {
    if (a.gate && a.gate[2] == 0.0) return;
    const float gs = a.gscale ? float(a.gscale[1]) : 1.0f;
    if (a.kind == OptKind::Sgd) {
        if (a.mu == 0.0f) {
            a.p[i] -= a.lr * (a.g[i] * gs + a.wd * a.p[i]);
            return;
        }
        float gi = a.g[i] * gs + a.wd * a.p[i];
        float b = a.mu * a.m[i] + gi;
        a.m[i] = b;
        a.p[i] -= a.lr * (a.nesterov ? gi + a.mu * b : b);
        return;
    }
    const bool decoupled = a.kind == OptKind::AdamW;
    const float l2 = decoupled ? 0.0f : a.wd, decay = decoupled ? a.lr * a.wd : 0.0f;
    float pi = a.p[i] - decay * a.p[i];
    float gi = a.g[i] * gs + l2 * a.p[i];
    float mi = a.b1 * a.m[i] + (1.0f - a.b1) * gi;
    float vi = a.b2 * a.v[i] + (1.0f - a.b2) * gi * gi;
    a.m[i] = mi, a.v[i] = vi;
    a.p[i] = pi - a.step * mi / (sqrtf(vi) * a.inv_sqrt_bc2 + a.eps);
}

#define OF_OPTIMIZER_KERNELS(X) \
    X(sumsq_partial, SumSqArgs) \
    X(sumsq_final, SumSqArgs)   \
    X(optimizer, OptArgs)

}  // namespace of::dev
