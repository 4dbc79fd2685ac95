// Optimizer update kernels (see optimizer.h). Formulas follow PyTorch's torch.optim definitions:
//   SGD:   g += wd p;  buf = mu buf + g;  g = nesterov ? g + mu buf : buf;  p -= lr g
//   Adam:  g += wd p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr mhat / (sqrt(vhat) + eps)
//   AdamW: p -= lr wd p;  then Adam without the L2 term
#include "kernels/cpu/optimizer.h"

#include <algorithm>
#include <cmath>
#include <vector>

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

void optimizer_step(float* params, float* grads, float* m, float* v, int64_t n, const OptimizerConfig& c, int64_t t) {
    float gscale = 1.0f;
    if (c.clip_norm > 0.0f) {
        double norm = grad_norm(grads, n);
        if (norm > c.clip_norm) gscale = float(c.clip_norm / (norm + 1e-12));
    }
    const float lr = c.lr, wd = c.weight_decay;
    if (c.kind == OptKind::Sgd) {
        for_chunks(n, [&](int64_t i0, int64_t i1, int) {
            for (int64_t i = i0; i < i1; i++) {
                float g = grads[i] * gscale + wd * params[i];
                if (c.momentum != 0.0f) {
                    m[i] = c.momentum * m[i] + g;
                    g = c.nesterov ? g + c.momentum * m[i] : m[i];
                }
                params[i] -= lr * g;
            }
        });
        return;
    }
    // Bias corrections in float64: beta^t underflows gracefully and 1 - beta^t keeps its digits.
    const float bc1 = float(1.0 - std::pow(double(c.beta1), double(t)));
    const float bc2 = float(1.0 - std::pow(double(c.beta2), double(t)));
    const float step = lr / bc1, inv_sqrt_bc2 = 1.0f / std::sqrt(bc2);
    const bool decoupled = c.kind == OptKind::AdamW;
    for_chunks(n, [&](int64_t i0, int64_t i1, int) {
        for (int64_t i = i0; i < i1; i++) {
            float g = grads[i] * gscale;
            if (decoupled) params[i] -= lr * wd * params[i];
            else g += wd * params[i];
            m[i] = c.beta1 * m[i] + (1.0f - c.beta1) * g;
            v[i] = c.beta2 * v[i] + (1.0f - c.beta2) * g * g;
            params[i] -= step * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + c.eps);
        }
    });
}

}  // namespace of::cpu
