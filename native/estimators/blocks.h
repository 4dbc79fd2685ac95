// Pieces of the block-structured ULR runner (ulr.cpp) that its step's memory estimate (ulr_plan.cpp) shares: the block
// size, a block's per-row losses, the step's statistics, and summing the blocks' partial gradients in block order (the
// order fixes the bits for any thread count).
#pragma once
#include <algorithm>
#include <vector>

#include "estimators/estimator.h"

namespace of {

// Samples per block of the LR estimators (~256 rows of K copies each); fixed by K only, so results do not
// depend on the thread count. step_memory (model/train.cpp) sizes the per-block scratch with it.
inline int lr_block_samples(int K) { return std::max(1, 256 / K); }

// The step's statistics from the blocks' loss sums and hits (R rows), and the running baseline's update.
inline void finish_stats(Model& m, const UlrConfig& c, const std::vector<double>& loss_sum,
                         const std::vector<int64_t>& correct, int R, StepStats* stats) {
    double total = 0.0;
    int64_t hits = 0;
    for (size_t t = 0; t < loss_sum.size(); t++) total += loss_sum[t], hits += correct[t];
    stats->loss = total / R;
    update_running_baseline(m, c, stats->loss);
    stats->correct = hits;
    stats->rows = R;
}

// Per-row losses of a block of s samples x K copies (rows r0.. of the step) from its outputs, or the hook's
// losses when it answered; returns their sum and the rows whose arg-max matched (correct).
inline double block_losses(const Model& m, const Targets& y, const float* out, int b0, int s, int K, int r0,
                           const float* hook_loss, float* loss, int64_t* correct) {
    const int C = m.outputs, rows = s * K;
    *correct = m.k->loss_forward(loss, out, y.labels ? y.labels + int64_t(b0) * m.groups : nullptr,
                                 y.values ? y.values + int64_t(b0) * C : nullptr, rows, C, K, m.loss, m.groups);
    if (hook_loss) std::copy(hook_loss + r0, hook_loss + r0 + rows, loss);
    double sum = 0.0;
    for (int r = 0; r < rows; r++) sum += loss[r];
    return sum;
}

// g (n) = sum over blocks t of partials[t * stride + off .. + n], in block order; overwritten.
inline void sum_block_partials(float* g, const float* partials, int64_t off, int64_t stride, int T, int64_t n) {
    const float* p0 = partials + off;
    std::copy(p0, p0 + n, g);
    for (int t = 1; t < T; t++) {
        const float* p = partials + int64_t(t) * stride + off;
        for (int64_t i = 0; i < n; i++) g[i] += p[i];
    }
}

}  // namespace of
