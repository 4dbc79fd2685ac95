// Device kernels (ops.h): layerNorm, groupNorm and batchNorm. One index per normalized set (or per channel for batch
// statistics) sums in float64 in the CPU's order: x^ = (x - mean) / sqrt(var + 1e-5), and the input gradient
// inv (dx^ - mean(dx^) - x^ mean(dx^ x^)); batchNorm also keeps running statistics (momentum 0.9).
#pragma once
#include <cmath>
#include <cstdint>

#include "core/host_device.h"

namespace of::dev {

// Normalization (units.cpp normalize / group_norm_xhat): x^ and 1 / sqrt(var + 1e-5) of each set, with float64 mean
// and variance in the CPU's order. layerNorm: a set is one position's C values (one index per position, P per row);
// groupNorm: all positions of one group's C / G channels in a row (one index per (row, group)). x (rows, P C).
struct NormArgs {
    float* xh;
    float* inv;  // one per set
    const float* x;
    int P, C, G;
};
OF_HOST_DEVICE void layer_norm_at(const NormArgs& a, int64_t p) {
    const float* x = a.x + p * a.C;
    float* xh = a.xh + p * a.C;
    double mu = 0.0, var = 0.0;
    for (int i = 0; i < a.C; i++) mu += x[i];
    mu /= a.C;
    for (int i = 0; i < a.C; i++) var += (x[i] - mu) * (x[i] - mu);
    const float inv = float(1.0 / sqrt(var / a.C + double(1e-5f)));
    for (int i = 0; i < a.C; i++) xh[i] = float(x[i] - mu) * inv;
    a.inv[p] = inv;
}
OF_HOST_DEVICE void group_norm_at(const NormArgs& a, int64_t s) {
    const int Cg = a.C / a.G;
    const int64_t r = s / a.G, g = s % a.G, base = r * a.P * a.C + g * Cg;
    const double n = double(a.P) * Cg;
    double mu = 0.0, var = 0.0;
    for (int p = 0; p < a.P; p++)
        for (int c = 0; c < Cg; c++) mu += a.x[base + int64_t(p) * a.C + c];
    mu /= n;
    for (int p = 0; p < a.P; p++)
        for (int c = 0; c < Cg; c++) {
            const float v = a.x[base + int64_t(p) * a.C + c];
            var += (v - mu) * (v - mu);
        }
    const float inv = float(1.0 / sqrt(var / n + double(1e-5f)));
    for (int p = 0; p < a.P; p++)
        for (int c = 0; c < Cg; c++) {
            const int64_t i = base + int64_t(p) * a.C + c;
            a.xh[i] = float(a.x[i] - mu) * inv;
        }
    a.inv[s] = inv;
}

// The input gradient of a normalization (units.cpp unit_backward): per set, with dx^ = dv gain,
// din = inv (dx^ - mean(dx^) - x^ mean(dx^ x^)), the means in float64. The sets as in NormArgs.
struct NormBackArgs {
    float* din;
    const float* dv;
    const float* xh;
    const float* inv;
    const float* gain;
    int P, C, G;
};
OF_HOST_DEVICE void layer_norm_backward_at(const NormBackArgs& a, int64_t p) {
    const float* g = a.dv + p * a.C;
    const float* xh = a.xh + p * a.C;
    double m1 = 0.0, m2 = 0.0;
    for (int c = 0; c < a.C; c++) m1 += g[c] * a.gain[c], m2 += g[c] * a.gain[c] * xh[c];
    m1 /= a.C, m2 /= a.C;
    float* d = a.din + p * a.C;
    for (int c = 0; c < a.C; c++) d[c] = a.inv[p] * float(g[c] * a.gain[c] - m1 - xh[c] * m2);
}
OF_HOST_DEVICE void group_norm_backward_at(const NormBackArgs& a, int64_t s) {
    const int Cg = a.C / a.G;
    const int64_t r = s / a.G, g = s % a.G, base = r * a.P * a.C + g * Cg;
    const double n = double(a.P) * Cg;
    double m1 = 0.0, m2 = 0.0;
    for (int p = 0; p < a.P; p++)
        for (int c = 0; c < Cg; c++) {
            const int64_t i = base + int64_t(p) * a.C + c;
            const double d = double(a.dv[i]) * a.gain[g * Cg + c];
            m1 += d, m2 += d * a.xh[i];
        }
    m1 /= n, m2 /= n;
    for (int p = 0; p < a.P; p++)
        for (int c = 0; c < Cg; c++) {
            const int64_t i = base + int64_t(p) * a.C + c;
            a.din[i] = a.inv[s] * float(double(a.dv[i]) * a.gain[g * Cg + c] - m1 - a.xh[i] * m2);
        }
}

// batchNorm (units.cpp batch_norm_*), channels-last (n positions of C channels). Batch statistics, one index per
// channel: stats[c] = mean, stats[C + c] = variance (biased), float64 sums over positions in order.
struct BatchStatsArgs {
    float* stats;
    const float* x;
    int64_t n;
    int C;
};
OF_HOST_DEVICE void bn_stats_at(const BatchStatsArgs& a, int64_t c) {
    double mu = 0.0, var = 0.0;
    for (int64_t p = 0; p < a.n; p++) mu += a.x[p * a.C + c];
    mu /= double(a.n);
    for (int64_t p = 0; p < a.n; p++) var += (a.x[p * a.C + c] - mu) * (a.x[p * a.C + c] - mu);
    a.stats[c] = float(mu), a.stats[a.C + c] = float(var / double(a.n));
}
// y = (x - mean) gain / sqrt(var + eps) (x^ instead when gain is nullptr: (x - mean) / sqrt(var + eps)); row r of y
// (P positions) reads row r / rep of x. One index per value.
struct BatchApplyArgs {
    float* y;
    const float* x;
    const float* stats;
    const float* gain;
    int P, C, rep;
};
OF_HOST_DEVICE void bn_apply_at(const BatchApplyArgs& a, int64_t i) {
    const int c = int(i % a.C);
    const int64_t row = i / (int64_t(a.P) * a.C), rest = i % (int64_t(a.P) * a.C);
    const float x = a.x[(row / a.rep) * a.P * a.C + rest];
    a.y[i] = a.gain ? (x - a.stats[c]) * (a.gain[c] / sqrtf(a.stats[a.C + c] + 1e-5f))
                    : (x - a.stats[c]) / sqrtf(a.stats[a.C + c] + 1e-5f);
}
// BP through the batch statistics, stage 1 (one index per channel): sg = sum dv, sgx = sum dv x^ (x^ with the
// reciprocal square root, as units.cpp's backward); the gain and bias gradients are float(sgx), float(sg).
struct BatchBackArgs {
    float* din;
    float* dgain;
    float* dbias;
    double* sums;  // 2 C: sg, sgx
    const float* dv;
    const float* x;
    const float* stats;
    const float* gain;
    int64_t n;
    int C;
};
OF_HOST_DEVICE void bn_backward_sums_at(const BatchBackArgs& a, int64_t c) {
    const float inv = 1.0f / sqrtf(a.stats[a.C + c] + 1e-5f);
    double sg = 0.0, sgx = 0.0;
    for (int64_t p = 0; p < a.n; p++) {
        const float xh = (a.x[p * a.C + c] - a.stats[c]) * inv;
        sg += a.dv[p * a.C + c], sgx += a.dv[p * a.C + c] * xh;
    }
    a.sums[c] = sg, a.sums[a.C + c] = sgx;
    a.dgain[c] = float(sgx), a.dbias[c] = float(sg);
}
// Stage 2, one index per value: din = gain inv (dv - sg / n - x^ sgx / n).
OF_HOST_DEVICE void bn_backward_at(const BatchBackArgs& a, int64_t i) {
    const int c = int(i % a.C);
    const float inv = 1.0f / sqrtf(a.stats[a.C + c] + 1e-5f);
    const float xh = (a.x[i] - a.stats[c]) * inv;
    a.din[i] = a.gain[c] * inv * float(a.dv[i] - a.sums[c] / a.n - xh * a.sums[a.C + c] / a.n);
}
// The running statistics after a training step (momentum 0.9, the variance unbiased), one index per channel; skipped
// when the step's gate is closed (its loss was non-finite).
struct RunningArgs {
    float* running;
    const float* stats;
    const double* gate;
    double n;
    int C;
};
OF_HOST_DEVICE void bn_running_at(const RunningArgs& a, int64_t c) {
    if (a.gate && a.gate[2] == 0.0) return;
    const double unbias = a.n > 1 ? a.n / (a.n - 1) : 1.0;
    a.running[c] = 0.9f * a.running[c] + 0.1f * a.stats[c];
    a.running[a.C + c] = 0.9f * a.running[a.C + c] + 0.1f * float(a.stats[a.C + c] * unbias);
}

#define OF_NORM_KERNELS(X)               \
    X(layer_norm, NormArgs)              \
    X(group_norm, NormArgs)              \
    X(layer_norm_backward, NormBackArgs) \
    X(group_norm_backward, NormBackArgs) \
    X(bn_stats, BatchStatsArgs)          \
    X(bn_apply, BatchApplyArgs)          \
    X(bn_backward_sums, BatchBackArgs)   \
    X(bn_backward, BatchBackArgs)        \
    X(bn_running, RunningArgs)

}  // namespace of::dev
