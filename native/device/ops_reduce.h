// Device kernels (ops.h): two-stage reductions, fixed chunks of kReduceRows rows and then the chunks in order, so the
// sums do not depend on the launch: the step statistics (loss sum, hits, the optimizer's gate), sums of float64
// values, and column sums.
#pragma once
#include <cstdint>

#include "core/host_device.h"

namespace of::dev {

constexpr int kReduceRows = 256;  // rows per chunk of the two-stage column and loss reductions

// Step statistics, stage 1: chunk t of kReduceRows rows -> part[2 t] = sum of losses (float64), part[2 t + 1] =
// hits. Stage 2 (one index): stats[0] = loss sum, stats[1] = hits, stats[2] = the optimizer's gate: 1 when the sum is
// finite, else 0 (a non-finite loss leaves the parameters untouched). With an accumulator (fit's steps without a
// wait) the step also adds its loss mean times `samples`, hits and rows to acc[0..2]; acc[3] is the first failed
// step's id (-1: none), and once it is set every later step's gate stays closed too.
struct StatsArgs {
    double* part;
    double* stats;
    const float* loss;
    const int* hit;
    int R;
    double* acc;     // nullptr: no accumulation
    double samples;  // the step's samples (the epoch loss weights each step's mean loss by them)
    double id;       // the step's id among the steps not yet read back
    int direct = 0;  // one chunk (R <= kReduceRows): stage 1 closes the step itself (0 + x is x: the same bits)
};
OF_HOST_DEVICE void stats_close(const StatsArgs& a, double s, double h) {
    a.stats[0] = s, a.stats[1] = h;
    bool ok = s - s == 0.0;  // finite (inf - inf and NaN are NaN)
    if (a.acc) {
        if (!ok && a.acc[3] < 0.0) a.acc[3] = a.id;
        ok = ok && a.acc[3] < 0.0;
        if (ok) a.acc[0] += s / a.R * a.samples, a.acc[1] += h, a.acc[2] += a.R;
    }
    a.stats[2] = ok ? 1.0 : 0.0;
}
OF_HOST_DEVICE void stats_partial_at(const StatsArgs& a, int64_t t) {
    const int r0 = int(t) * kReduceRows, r1 = r0 + kReduceRows < a.R ? r0 + kReduceRows : a.R;
    double s = 0.0, h = 0.0;
    for (int r = r0; r < r1; r++) s += a.loss[r], h += a.hit[r];
    if (a.direct) stats_close(a, s, h);
    else a.part[2 * t] = s, a.part[2 * t + 1] = h;
}
OF_HOST_DEVICE void stats_final_at(const StatsArgs& a, int64_t) {
    const int chunks = (a.R + kReduceRows - 1) / kReduceRows;
    double s = 0.0, h = 0.0;
    for (int t = 0; t < chunks; t++) s += a.part[2 * t], h += a.part[2 * t + 1];
    stats_close(a, s, h);
}

// out[0] = sum of x (n float64 values): chunks of kReduceRows in order (one index per chunk), then the chunks (one).
struct DSumArgs {
    double* part;
    double* out;
    const double* x;
    int64_t n;
};
OF_HOST_DEVICE void dsum_partial_at(const DSumArgs& a, int64_t t) {
    const int64_t i0 = t * kReduceRows, i1 = i0 + kReduceRows < a.n ? i0 + kReduceRows : a.n;
    double s = 0.0;
    for (int64_t i = i0; i < i1; i++) s += a.x[i];
    a.part[t] = s;
}
OF_HOST_DEVICE void dsum_final_at(const DSumArgs& a, int64_t) {
    double s = 0.0;
    for (int64_t t = 0; t < (a.n + kReduceRows - 1) / kReduceRows; t++) s += a.part[t];
    a.out[0] = s;
}

// Column sums out[o] = alpha sum_r d[r, o] in two stages: part[t, o] over chunk t of kReduceRows rows (one index per
// (t, o)), then out[o] over the chunks in order (one index per o).
struct ColSumArgs {
    float* out;
    float* part;
    const float* d;
    int R, O;
    float alpha;
    const float* mul = nullptr;  // sums d mul (elementwise) instead of d
    int direct = 0;              // one chunk (R <= kReduceRows): stage 1 writes out itself (0 + x is x: the same bits)
};
OF_HOST_DEVICE void col_sum_partial_at(const ColSumArgs& a, int64_t i) {
    const int64_t t = i / a.O, o = i % a.O;
    const int r0 = int(t) * kReduceRows, r1 = r0 + kReduceRows < a.R ? r0 + kReduceRows : a.R;
    float acc = 0.0f;
    for (int r = r0; r < r1; r++) {
        const int64_t at = int64_t(r) * a.O + o;
        acc += a.mul ? a.d[at] * a.mul[at] : a.d[at];
    }
    if (a.direct) a.out[i] = a.alpha * acc;
    else a.part[i] = acc;
}
OF_HOST_DEVICE void col_sum_final_at(const ColSumArgs& a, int64_t o) {
    const int chunks = (a.R + kReduceRows - 1) / kReduceRows;
    float acc = 0.0f;
    for (int t = 0; t < chunks; t++) acc += a.part[int64_t(t) * a.O + o];
    a.out[o] = a.alpha * acc;
}

#define OF_REDUCE_KERNELS(X)       \
    X(stats_partial, StatsArgs)    \
    X(stats_final, StatsArgs)      \
    X(dsum_partial, DSumArgs)      \
    X(dsum_final, DSumArgs)        \
    X(col_sum_partial, ColSumArgs) \
    X(col_sum_final, ColSumArgs)

}  // namespace of::dev
