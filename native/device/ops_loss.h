// Device kernels (ops.h): per-row losses (softmax cross-entropy, 0-1, MSE; grouped labels) and d(mean loss)/dy, and
// the LR row weights w = (loss - baseline) scale from each sample's copies' losses, its float64 loss sum taken over
// chunks of kCopyChunk copies in order (for K <= 64 the CPU's sequential sum). The CPU runs the same row bodies
// (kernels/cpu/loss.cpp) and row_weight (lr_reduce.cpp).
#pragma once
#include <cmath>
#include <cstdint>

#include "core/host_device.h"
#include "kernels/cpu/ops.h"

namespace of::dev {

// Losses of y (R, C) against the targets of sample r / rep: softmax cross-entropy or 0-1 against labels, or MSE
// against values. With groups P > 1 a row's C outputs are P groups of C / P classes, each with its own label
// (-1: unlabeled), and a row's loss is the mean over its labeled groups. Softmax subtracts the max and takes
// log-sum-exp in float32. loss_rows: loss[r] and hit[r] (groups whose arg-max matches); loss_grad:
// dy = d(mean loss over R rows)/dy (rep 1). One index per row.
struct LossArgs {
    float* loss;  // loss_rows: per-row losses (R); loss_grad: dy (R, C)
    int* hit;
    const float* y;
    const int32_t* labels;
    const float* values;
    int R, C, rep;
    LossKind kind;
    int groups = 1;
};
OF_HOST_DEVICE float class_loss(const float* y, int C, int label, LossKind kind, bool* hit) {
    int arg = 0;
    float mx = y[0];
    for (int c = 1; c < C; c++)
        if (y[c] > mx) mx = y[c], arg = c;
    *hit = arg == label;
    if (kind == LossKind::ZeroOne) return float(arg != label);
    float s = 0.0f;
    for (int c = 0; c < C; c++) s += expf(y[c] - mx);
    return logf(s) + mx - y[label];
}
// loss[r]; returns the row's hits
OF_HOST_DEVICE int loss_row(const LossArgs& a, int64_t r) {
    const float* yr = a.y + r * a.C;
    const int64_t b = int(r) / a.rep;  // the row's sample (32-bit division: r < R)
    if (a.kind == LossKind::Mse) {
        const float* tr = a.values + b * a.C;
        float s = 0.0f;
        for (int c = 0; c < a.C; c++) s += (yr[c] - tr[c]) * (yr[c] - tr[c]);
        a.loss[r] = s / float(a.C);
        return 0;
    }
    const int32_t* lr = a.labels + b * a.groups;
    const int Cg = a.C / a.groups;
    float sum = 0.0f;
    int n = 0, hits = 0;
    for (int p = 0; p < a.groups; p++) {
        if (lr[p] < 0) continue;
        bool hit = false;
        sum += class_loss(yr + p * Cg, Cg, lr[p], a.kind, &hit);
        hits += hit, n++;
    }
    a.loss[r] = n > 0 ? sum / float(n) : 0.0f;
    return hits;
}
OF_HOST_DEVICE void loss_rows_at(const LossArgs& a, int64_t r) { a.hit[r] = loss_row(a, r); }
// (softmax - onehot) / (R n), n labeled groups of the row; MSE: 2 (y - t) / (R C)
OF_HOST_DEVICE void loss_grad_at(const LossArgs& a, int64_t r) {
    const float* yr = a.y + r * a.C;
    float* d = a.loss + r * a.C;
    const float inv_r = 1.0f / float(a.R);
    if (a.kind == LossKind::CrossEntropy) {
        const int32_t* lr = a.labels + r * a.groups;
        const int Cg = a.C / a.groups;
        int n = 0;
        for (int p = 0; p < a.groups; p++) n += lr[p] >= 0;
        for (int c = 0; c < a.C; c++) d[c] = 0.0f;
        for (int p = 0; p < a.groups; p++) {
            if (lr[p] < 0) continue;
            const float* yp = yr + p * Cg;
            float* dp = d + p * Cg;
            float mx = yp[0];
            for (int c = 1; c < Cg; c++) mx = yp[c] > mx ? yp[c] : mx;
            float s = 0.0f;
            for (int c = 0; c < Cg; c++) s += (dp[c] = expf(yp[c] - mx));
            const float inv = inv_r / float(n) / s;
            for (int c = 0; c < Cg; c++) dp[c] *= inv;
            dp[lr[p]] -= inv_r / float(n);
        }
        return;
    }
    const float* tr = a.values + r * a.C;
    const float k = 2.0f * inv_r / float(a.C);
    for (int c = 0; c < a.C; c++) d[c] = k * (yr[c] - tr[c]);
}

// LR row weights (cpu::lr_row_weights): w[b K + k] = (loss - baseline) scale. A sample's loss sum is the float64 sum
// of its copy chunks [64 c, 64 c + 64), the chunks added in order (for K <= 64 the CPU's sequential sum, bit for bit).
// Up to kSampleWeightsK copies one index per sample does it all (sample_weights); beyond, three stages keep every
// thread's loop short: row_sums (one index per chunk), row_totals (per sample), row_weights (per row).
constexpr int kSampleWeightsK = 2048;
constexpr int kCopyChunk = 64;
struct RowWeightArgs {
    float* w;
    double* part;
    const float* loss;
    float running;  // Baseline::Running: the running average of earlier steps' losses
    int K;
    Baseline baseline;
    int antithetic;
    float scale;
    const float* clean = nullptr;  // Baseline::Clean: each sample's noise-free loss (B values)
    double* sums = nullptr;        // each sample's loss sum (B values): row_totals from the chunks' partial sums
};
OF_HOST_DEVICE int copy_chunks(int K) { return (K + kCopyChunk - 1) / kCopyChunk; }
OF_HOST_DEVICE void row_sums_at(const RowWeightArgs& a, int64_t i) {
    const int chunks = copy_chunks(a.K);
    const int64_t b = i / chunks;
    const int k0 = int(i % chunks) * kCopyChunk, k1 = k0 + kCopyChunk < a.K ? k0 + kCopyChunk : a.K;
    double sum = 0.0;
    for (int k = k0; k < k1; k++) sum += a.loss[b * a.K + k];
    a.part[i] = sum;
}
OF_HOST_DEVICE void row_totals_at(const RowWeightArgs& a, int64_t b) {  // one index per sample, its chunks in order
    const int chunks = copy_chunks(a.K);
    double sum = 0.0;
    for (int c = 0; c < chunks; c++) sum += a.part[b * chunks + c];
    a.sums[b] = sum;
}
// Copy k of sample b, whose losses are l and loss sum `sum` (float64: K losses of similar size, cancellation in
// sum - l[k]). LeaveOneOut: beta = the mean loss of the sample's other copies. It must not depend on copy k's own noise
// (docs/method.md section 1), so with antithetic pairs the partner (noise -eps_k) is left out too: the mean over the
// other K - 2 copies. A pair then shares one beta, which cancels in (l(eps) - beta) eps + (l(-eps) - beta)(-eps) =
// (l(eps) - l(-eps)) eps: with pairs the baseline only guards float cancellation. (Leaving only the copy itself out
// would bias the estimate by K / (K - 1).)
OF_HOST_DEVICE float row_weight(const RowWeightArgs& a, int64_t b, int k, const float* l, double sum) {
    double beta = 0.0;
    if (a.baseline == Baseline::LeaveOneOut) {
        if (!a.antithetic) beta = (sum - l[k]) / double(a.K - 1);
        else if (a.K > 2) beta = (sum - l[k] - l[k ^ 1]) / double(a.K - 2);
    } else if (a.baseline == Baseline::BatchMean) {
        beta = sum / double(a.K);
    } else if (a.baseline == Baseline::Running) {
        beta = a.running;
    } else if (a.baseline == Baseline::Clean) {
        beta = a.clean[b];
    }
    return float((double(l[k]) - beta) * a.scale);
}
OF_HOST_DEVICE void row_weights_at(const RowWeightArgs& a, int64_t r) {
    const int64_t b = r / a.K;
    const int k = int(r % a.K);
    a.w[r] = row_weight(a, b, k, a.loss + b * a.K, a.sums[b]);
}
OF_HOST_DEVICE void sample_weights_at(const RowWeightArgs& a, int64_t b) {  // one index per sample
    const float* l = a.loss + b * a.K;
    double sum = 0.0;
    for (int k0 = 0; k0 < a.K; k0 += kCopyChunk) {
        double chunk = 0.0;
        for (int k = k0; k < k0 + kCopyChunk && k < a.K; k++) chunk += l[k];
        sum += chunk;
    }
    for (int k = 0; k < a.K; k++) a.w[b * a.K + k] = row_weight(a, b, k, l, sum);
}

#define OF_LOSS_KERNELS(X)           \
    X(loss_rows, LossArgs)           \
    X(loss_grad, LossArgs)           \
    X(row_sums, RowWeightArgs)       \
    X(row_totals, RowWeightArgs)     \
    X(sample_weights, RowWeightArgs) \
    X(row_weights, RowWeightArgs)

}  // namespace of::dev
