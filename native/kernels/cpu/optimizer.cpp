// Optimizer update kernels (see optimizer.h). Formulas follow PyTorch's torch.optim definitions:
//   SGD:   g += wd p;  buf = mu buf + g;  g = nesterov ? g + mu buf : buf;  p -= lr g
//   Adam:  g += wd p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr mhat / (sqrt(vhat) + eps)
//   AdamW: p -= lr wd p;  then Adam without the L2 term
// where lr is update t's scheduled rate (kernels/schedule.h).
#include "kernels/cpu/optimizer.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/clones.h"
#include "core/thread_pool.h"

namespace of::cpu {
namespace {
constexpr int64_t kChunk = 1 << 14;

template <class Fn>
void for_chunks(int64_t n, Fn&& fn) {
    int tasks = int((n + kChunk - 1) / kChunk);
    ThreadPool::instance().parallel_for(tasks, [&](int t) {
        int64_t i0 = int64_t(t) * kChunk;
        fn(i0, std::min(n, i0 + kChunk), t);
    });
}
}  // namespace

double grad_norm(const float* g, int64_t n) {
    std::vector<double> part(size_t((n + kChunk - 1) / kChunk), 0.0);
    for_chunks(n, [&](int64_t i0, int64_t i1, int t) {
        double s = 0.0;
        for (int64_t i = i0; i < i1; i++) s += double(g[i]) * g[i];
        part[size_t(t)] = s;
    });
    double s = 0.0;
    for (double p : part) s += p;
    return std::sqrt(s);
}

// The element loops: restrict-qualified, constants in registers, cloned per ISA so they vectorize. IEEE
// add/mul/div/sqrt round the same in every clone, so updates are bit-identical across CPUs.

OF_CLONES static void sgd_span(float* __restrict p, const float* __restrict g, float* __restrict buf, int64_t n,
                               float gscale, float lr, float wd, float mu, bool nesterov) {
    if (mu == 0.0f) {
        for (int64_t i = 0; i < n; i++) p[i] -= lr * (g[i] * gscale + wd * p[i]);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] * gscale + wd * p[i];
        float b = mu * buf[i] + gi;
        buf[i] = b;
        p[i] -= lr * (nesterov ? gi + mu * b : b);
    }
}

OF_CLONES static void adam_span(float* __restrict p, const float* __restrict g, float* __restrict m,
                                float* __restrict v, int64_t n, float gscale, float lr, float wd, bool decoupled,
                                float b1, float b2, float eps, float step, float inv_sqrt_bc2) {
    const float l2 = decoupled ? 0.0f : wd, decay = decoupled ? lr * wd : 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float pi = p[i] - decay * p[i];
        float gi = g[i] * gscale + l2 * p[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi, v[i] = vi;
        p[i] = pi - step * mi / (__builtin_sqrtf(vi) * inv_sqrt_bc2 + eps);
    }
}

void optimizer_step(float* params, float* grads, float* m, float* v, int64_t n, const OptimizerConfig& c, int64_t t) {
    const float lr = schedule_lr(c.schedule, c.lr, t);
    float gscale = 1.0f;
    if (c.clip_norm > 0.0f) {
        double norm = grad_norm(grads, n);
        if (norm > c.clip_norm) gscale = float(c.clip_norm / (norm + 1e-12));
    }
    if (c.kind == OptKind::Sgd) {
        for_chunks(n, [&](int64_t i0, int64_t i1, int) {
            sgd_span(params + i0, grads + i0, m + i0, i1 - i0, gscale, lr, c.weight_decay, c.momentum, c.nesterov);
        });
        return;
    }
    // Bias corrections in float64: beta^t underflows gracefully and 1 - beta^t keeps its digits.
    const float bc1 = float(1.0 - std::pow(double(c.beta1), double(t)));
    const float bc2 = float(1.0 - std::pow(double(c.beta2), double(t)));
    const float step = lr / bc1, inv_sqrt_bc2 = 1.0f / std::sqrt(bc2);
    for_chunks(n, [&](int64_t i0, int64_t i1, int) {
        adam_span(params + i0, grads + i0, m + i0, v + i0, i1 - i0, gscale, lr, c.weight_decay,
                  c.kind == OptKind::AdamW, c.beta1, c.beta2, c.eps, step, inv_sqrt_bc2);
    });
}

}  // namespace of::cpu
