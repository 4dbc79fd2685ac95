// Device kernels (ops.h): layerNorm, groupNorm and batchNorm, the CPU engine's too (units/norm.cpp runs these bodies
// in its loops). One index per normalized set (or per channel for batch statistics) sums in float64:
// x^ = (x - mean) / sqrt(var + 1e-5), and the input gradient inv (dx^ - mean(dx^) - x^ mean(dx^ x^)); batchNorm also
// keeps running statistics (momentum 0.9).
#pragma once
#include <cmath>
#include <cstdint>

#include "core/host_device.h"

namespace of::dev {

// Normalization: x^ and 1 / sqrt(var + 1e-5) of each set, with float64 mean and variance. layerNorm: a set is one
// position's C values (one index per position, P per row); groupNorm: all positions of one group's C / G channels in
// a row (one index per (row, group)). x (rows, P C).
struct NormArgs {
    float* xh;
    float* inv;  // one per set
    const float* x;
    int P, C, G;
};
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
// layerNorm: groupNorm with each position a set of its own (P = G = 1), index p = the position over all rows
OF_HOST_DEVICE void layer_norm_at(const NormArgs& a, int64_t p) {
    group_norm_at(NormArgs{a.xh, a.inv, a.x, 1, a.C, 1}, p);
}

// The input gradient of a normalization: per set, with dx^ = dv gain,
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

// batchNorm, channels-last (n positions of C channels); stats: C means, then C variances. Per channel c:
// 1 / sqrt(var + eps), and gain / sqrt(var + eps).
OF_HOST_DEVICE float bn_inv(const float* stats, int C, int c) { return 1.0f / sqrtf(stats[C + c] + 1e-5f); }
OF_HOST_DEVICE float bn_scale(const float* stats, const float* gain, int C, int c) {
    return gain[c] / sqrtf(stats[C + c] + 1e-5f);
}
// Batch statistics (the variance biased) of channels c0 <= c < c1, float64 sums over the positions in order, the
// channels innermost (a device index: one channel; the CPU: all, one pass per moment); mu, var: c1 - c0 each.
struct BatchStatsArgs {
    float* stats;
    const float* x;
    int64_t n;
    int C;
};
OF_HOST_DEVICE void bn_stats_span(const BatchStatsArgs& a, int c0, int c1, double* mu, double* var) {
    for (int c = c0; c < c1; c++) mu[c - c0] = var[c - c0] = 0.0;
    for (int64_t p = 0; p < a.n; p++)
        for (int c = c0; c < c1; c++) mu[c - c0] += a.x[p * a.C + c];
    for (int c = c0; c < c1; c++) mu[c - c0] /= double(a.n);
    for (int64_t p = 0; p < a.n; p++)
        for (int c = c0; c < c1; c++) var[c - c0] += (a.x[p * a.C + c] - mu[c - c0]) * (a.x[p * a.C + c] - mu[c - c0]);
    for (int c = c0; c < c1; c++) a.stats[c] = float(mu[c - c0]), a.stats[a.C + c] = float(var[c - c0] / double(a.n));
}
OF_HOST_DEVICE void bn_stats_at(const BatchStatsArgs& a, int64_t c) {
    double mu, var;
    bn_stats_span(a, int(c), int(c) + 1, &mu, &var);
}
// y = (x - mean) gain / sqrt(var + eps) (x^ instead when gain is nullptr: (x - mean) / sqrt(var + eps)) at channels
// c0 <= c < c1 of position v (of P per row) of y; row r of y reads row r / rep of x. One index per value.
struct BatchApplyArgs {
    float* y;
    const float* x;
    const float* stats;
    const float* gain;
    int P, C, rep;
};
OF_HOST_DEVICE void bn_apply_span(const BatchApplyArgs& a, int64_t v, int c0, int c1) {
    const float* x = a.x + (v / a.P / a.rep * a.P + v % a.P) * a.C;
    float* y = a.y + v * a.C;
    for (int c = c0; c < c1; c++)
        y[c] = a.gain ? (x[c] - a.stats[c]) * bn_scale(a.stats, a.gain, a.C, c)
                      : (x[c] - a.stats[c]) / sqrtf(a.stats[a.C + c] + 1e-5f);
}
OF_HOST_DEVICE void bn_apply_at(const BatchApplyArgs& a, int64_t i) {
    bn_apply_span(a, i / a.C, int(i % a.C), int(i % a.C) + 1);
}
// BP with the statistics held constant (module training, estimators/backprop.cpp): y = x gain / sqrt(var + eps), x the
// gradient at the output. One index per value.
OF_HOST_DEVICE void bn_held_backward_at(const BatchApplyArgs& a, int64_t i) {
    const int c = int(i % a.C);
    a.y[i] = a.x[i] * a.gain[c] / sqrtf(a.stats[a.C + c] + 1e-5f);
}
// BP through the batch statistics, stage 1 (channels c0 <= c < c1, as bn_stats_span): sg = sum dv, sgx = sum dv x^
// (x^ with the reciprocal square root), and inv, c1 - c0 each; the gain and bias gradients are float(sgx), float(sg).
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
OF_HOST_DEVICE void bn_backward_sums_span(const BatchBackArgs& a, int c0, int c1, double* sg, double* sgx, float* inv) {
    for (int c = c0; c < c1; c++) inv[c - c0] = bn_inv(a.stats, a.C, c), sg[c - c0] = sgx[c - c0] = 0.0;
    for (int64_t p = 0; p < a.n; p++)
        for (int c = c0; c < c1; c++) {
            const float xh = (a.x[p * a.C + c] - a.stats[c]) * inv[c - c0];
            sg[c - c0] += a.dv[p * a.C + c], sgx[c - c0] += a.dv[p * a.C + c] * xh;
        }
}
OF_HOST_DEVICE void bn_backward_sums_at(const BatchBackArgs& a, int64_t c) {
    double sg, sgx;
    float inv;
    bn_backward_sums_span(a, int(c), int(c) + 1, &sg, &sgx, &inv);
    a.sums[c] = sg, a.sums[a.C + c] = sgx;
    a.dgain[c] = float(sgx), a.dbias[c] = float(sg);
}
// Stage 2, value i (channel c, inv its bn_inv): din = gain inv (dv - sg / n - x^ sgx / n). One index per value.
OF_HOST_DEVICE float bn_din(const BatchBackArgs& a, int64_t i, int c, float inv) {
    const float xh = (a.x[i] - a.stats[c]) * inv;
    return a.gain[c] * inv * float(a.dv[i] - a.sums[c] / a.n - xh * a.sums[a.C + c] / a.n);
}
OF_HOST_DEVICE void bn_backward_at(const BatchBackArgs& a, int64_t i) {
    const int c = int(i % a.C);
    a.din[i] = bn_din(a, i, c, bn_inv(a.stats, a.C, c));
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
    X(bn_held_backward, BatchApplyArgs)  \
    X(bn_backward_sums, BatchBackArgs)   \
    X(bn_backward, BatchBackArgs)        \
    X(bn_running, RunningArgs)

}  // namespace of::dev
