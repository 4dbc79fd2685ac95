// Optimizer updates (see optimizer.h): the device's element bodies and gradient-norm chunks (device/ops_optimizer.h),
// run here in spans of kReduceChunk elements over the thread pool.
#include "kernels/cpu/optimizer.h"

#include <algorithm>
#include <vector>

#include "core/clones.h"
#include "core/thread_pool.h"
#include "device/ops_optimizer.h"

namespace of::cpu {
namespace {
using dev::kReduceChunk;

// norm[0] = |g|, norm[1] = the clipping factor min(1, clip / |g|) (1 when clip is 0): chunk sums, then their sum
void sum_squares(const float* g, int64_t n, float clip, double norm[2]) {
    std::vector<double> part(size_t((n + kReduceChunk - 1) / kReduceChunk));
    const dev::SumSqArgs a{part.data(), norm, g, n, clip};
    ThreadPool::instance().parallel_for(int(part.size()), [&](int t) { dev::sumsq_partial_at(a, t); });
    dev::sumsq_final_at(a, 0);
}

// The element loops: restrict-qualified, cloned per ISA so they vectorize. IEEE add/mul/div/sqrt round the same in
// every clone, so updates are bit-identical across CPUs.
OF_CLONES void sgd_span(const dev::OptArgs a, float gs, float* __restrict p, const float* __restrict g,
                        float* __restrict buf, int64_t n) {
    for (int64_t i = 0; i < n; i++) dev::sgd_update(a, gs, p, g, buf, i);
}
OF_CLONES void adam_span(const dev::OptArgs a, float gs, float* __restrict p, const float* __restrict g,
                         float* __restrict m, float* __restrict v, int64_t n) {
    for (int64_t i = 0; i < n; i++) dev::adam_update(a, gs, p, g, m, v, i);
}
}  // namespace

double grad_norm(const float* g, int64_t n) {
    double norm[2];
    sum_squares(g, n, 0.0f, norm);
    return norm[0];
}

float clip_factor(const float* g, int64_t n, float clip) {
    if (clip <= 0.0f) return 1.0f;
    double norm[2];
    sum_squares(g, n, clip, norm);
    return float(norm[1]);
}

void optimizer_step(float* params, float* grads, float* m, float* v, int64_t n, const OptimizerConfig& c, int64_t t) {
    const float gs = clip_factor(grads, n, c.clip_norm);
    const dev::OptArgs a = dev::optimizer_args(c, t, params, grads, m, v, nullptr, nullptr);
    ThreadPool::instance().parallel_for(int((n + kReduceChunk - 1) / kReduceChunk), [&](int chunk) {
        const int64_t i0 = int64_t(chunk) * kReduceChunk, len = std::min(kReduceChunk, n - i0);
        if (c.kind == OptKind::Sgd) sgd_span(a, gs, params + i0, grads + i0, m + i0, len);
        else adam_span(a, gs, params + i0, grads + i0, m + i0, v + i0, len);
    });
}

}  // namespace of::cpu
