// Device kernels (ops.h): the LR score s(e) of a density and what uses it. score_rows forms diag(w) S(E) in place
// (alone, or fused with the first stage of the column sum); the shared-prefix copy sum G[b] = sum_k w s(e); the
// float64 per-row terms of the learned sigma's gradient and of layer-wise 'auto' copies' variances.
#pragma once
#include <cmath>
#include <cstdint>

#include "device/ops_reduce.h"
#include "kernels/cpu/ops.h"
#include "kernels/score.h"

namespace of::dev {

// The learned sigma's gradient, stage 1 (estimators/ulr.cpp): per row r, w[r] sum_j (e_j s(e_j) - 1) in float64, with
// the density's exact score s; one index per row, before the score replaces e. Stage 2 sums the rows (DSumArgs).
struct SigmaGradArgs {
    double* row;
    const float* E;
    const float* w;
    int O;
    Density density;
};
// One row's sum_j (e_j s(e_j) - 1) over its O noise values e (the CPU's loop runs it too).
OF_HOST_DEVICE double sigma_grad_row(const float* e, int O, Density density) {
    double v = 0.0;
    for (int j = 0; j < O; j++) v += double(e[j]) * score_of(e[j], density, Score::Exact) - 1.0;
    return v;
}
OF_HOST_DEVICE void sigma_grad_at(const SigmaGradArgs& a, int64_t r) {
    a.row[r] = double(a.w[r]) * sigma_grad_row(a.E + r * a.O, a.O, a.density);
}
// Layer-wise copies 'auto' (estimators/ulr.cpp, record_layer_var): row r's share of the variance of its layer's
// estimate, w_r^2 |s(E_r)|^2 |x_{r / rep}|^2, x the layer's clean input; from the noise before score_rows. One index
// per row.
struct VarRowsArgs {
    double* row;
    const float* E;
    const float* w;
    const float* x;
    int O, I, rep;
    Density density;
    Score score;
};
OF_HOST_DEVICE void var_rows_at(const VarRowsArgs& a, int64_t r) {
    const float* e = a.E + r * a.O;
    double sn = 0.0;
    for (int j = 0; j < a.O; j++) {
        const double sj = score_of(e[j], a.density, a.score);
        sn += sj * sj;
    }
    const float* x = a.x + (r / a.rep) * a.I;
    double xn = 0.0;
    for (int i = 0; i < a.I; i++) xn += double(x[i]) * x[i];
    a.row[r] = double(a.w[r]) * a.w[r] * sn * xn;
}

// The LR score times the row weight, in place: E[r, o] = s(E[r, o]) w[r] (s / sigma_o with per-channel sigma); one
// index per element (O per row).
struct ScoreRowsArgs {
    float* E;
    const float* w;
    int O;
    Density density;
    Score score;
    const float* sigmas = nullptr;  // per-channel sigma: the score also divided by sigma_o (the reductions then use 1)
};
OF_HOST_DEVICE void score_rows_at(const ScoreRowsArgs& a, int64_t i) {
    float e = score_of(a.E[i], a.density, a.score);
    if (a.sigmas) e = e / a.sigmas[i % a.O];
    a.E[i] = e * a.w[i / a.O];
}
// score_rows and the first stage of the column sum of the scores (a dense unit's bias gradient) in one pass: one index
// per (chunk t of kReduceRows rows, column o) scores its rows in place, in row order, and writes their sum to
// part[t, o]: the same values and sums as score_rows, then col_sum_partial.
struct ScoreColsArgs {
    ScoreRowsArgs s;
    float* part;
    int R;
};
OF_HOST_DEVICE void score_cols_at(const ScoreColsArgs& a, int64_t i) {
    const int O = a.s.O;
    const int64_t t = i / O, o = i % O;
    const int r0 = int(t) * kReduceRows, r1 = r0 + kReduceRows < a.R ? r0 + kReduceRows : a.R;
    float acc = 0.0f;
    for (int r = r0; r < r1; r++) {
        const int64_t at = int64_t(r) * O + o;
        score_rows_at(a.s, at);
        acc += a.s.E[at];
    }
    a.part[i] = acc;
}

// Shared-prefix copy sum (cpu::lr_copy_sum): G[b, o] = sum_k S[b K + k, o], one index per (b, o). S holds weighted
// scores; or, with w given, the raw noise, scored and weighted on the fly as score_rows_at would (the same bits, and no
// pass over the B K rows that only this sum reads).
struct CopySumArgs {
    float* G;
    const float* S;
    int K, O;
    const float* w = nullptr;
    Density density = Density::Normal;
    Score score = Score::Exact;
    const float* sigmas = nullptr;
};
OF_HOST_DEVICE void copy_sum_at(const CopySumArgs& a, int64_t i) {
    const int64_t b = i / a.O, o = i % a.O;
    const float* s = a.S + b * a.K * a.O + o;
    float acc = 0.0f;
    for (int k = 0; k < a.K; k++) {
        float v = s[int64_t(k) * a.O];
        if (a.w) {
            v = score_of(v, a.density, a.score);
            if (a.sigmas) v = v / a.sigmas[o];
            v = v * a.w[b * a.K + k];
        }
        acc += v;
    }
    a.G[i] = acc;
}

#define OF_SCORE_KERNELS(X)      \
    X(score_rows, ScoreRowsArgs) \
    X(score_cols, ScoreColsArgs) \
    X(sigma_grad, SigmaGradArgs) \
    X(var_rows, VarRowsArgs)     \
    X(copy_sum, CopySumArgs)

}  // namespace of::dev
