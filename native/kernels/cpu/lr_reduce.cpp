// The likelihood-ratio reductions (docs/method.md section 1, batched form; paper section 3):
//   w[r]      = (loss[r] - beta[r]) / (B K)                        row weights, one pass over the losses
//   grad W[l] = (1 / sigma_l) (diag(w) S(E_l))^T A_{l-1}            done by gemm() with kscale = w
//   grad b[l] = (1 / sigma_l) sum_r w[r] S(E_l)[r, :]               lr_bias_reduce
// and for the first noisy layer the shared-prefix form: G[b] = sum_k w[b, k] E_1[b, k] (B, O), then
// grad W1 = (1 / sigma_1) G^T X with B rows instead of B K (docs/method.md section 3.1). S(e) = e for normal noise.
// Reductions over rows run in a fixed order per output column, so results never depend on thread count.
#include <algorithm>

#include "core/clones.h"
#include "core/thread_pool.h"
#include "device/ops_loss.h"
#include "kernels/cpu/ops.h"
#include "kernels/score.h"

namespace of::cpu {

// The row weights of the device's row_weight (device/ops_loss.h), each sample's loss sum in float64 in copy order.
// Running reads clean[b], as Clean does: the caller fills it with the running average.
void lr_row_weights(float* w, const float* loss, const float* clean, int B, int K, Baseline baseline, bool antithetic,
                    float scale) {
    const Baseline given = baseline == Baseline::Running ? Baseline::Clean : baseline;
    const dev::RowWeightArgs a{w, nullptr, loss, 0.0f, K, given, antithetic, scale, clean};
    for (int b = 0; b < B; b++) {
        const float* l = loss + int64_t(b) * K;
        double sum = 0.0;
        for (int k = 0; k < K; k++) sum += l[k];
        for (int k = 0; k < K; k++) w[int64_t(b) * K + k] = dev::row_weight(a, b, k, l, sum);
    }
}

// s(e) of kernels/score.h in place, one loop per density and score (constants inside, so each loop vectorizes, in
// clones per ISA: elementwise, the same bits); the exact normal score is e itself.
template <Density D, Score S>
void score_loop(float* e, int64_t n) {
    for (int64_t i = 0; i < n; i++) e[i] = score_of(e[i], D, S);
}
OF_FLAT_CLONES void score_transform(float* e, int64_t n, Density density, Score score) {
    if (score == Score::Sign) {
        if (density == Density::Normal) score_loop<Density::Normal, Score::Sign>(e, n);
        if (density == Density::Laplace) score_loop<Density::Laplace, Score::Sign>(e, n);
        if (density == Density::Logistic) score_loop<Density::Logistic, Score::Sign>(e, n);
    } else {
        if (density == Density::Laplace) score_loop<Density::Laplace, Score::Exact>(e, n);
        if (density == Density::Logistic) score_loop<Density::Logistic, Score::Exact>(e, n);
    }
}

void lr_copy_sum(float* G, const float* w, const float* S, int B, int K, int O) {
    ThreadPool::instance().parallel_for(
        B,
        [&](int b) {
            float* g = G + int64_t(b) * O;
            std::fill(g, g + O, 0.0f);
            for (int k = 0; k < K; k++) {
                float wk = w[int64_t(b) * K + k];
                const float* e = S + (int64_t(b) * K + k) * O;
                for (int o = 0; o < O; o++) g[o] += wk * e[o];
            }
        },
        int64_t(B) * K * O);
}

void lr_bias_reduce(float* db, const float* w, const float* E, int R, int O, float alpha, bool accumulate) {
    constexpr int kCols = 64;
    int tasks = (O + kCols - 1) / kCols;
    auto body = [&](int t) {
        int o0 = t * kCols, o1 = std::min(O, o0 + kCols);
        float acc[kCols] = {};
        for (int r = 0; r < R; r++) {
            const float* e = E + int64_t(r) * O;
            for (int o = o0; o < o1; o++) acc[o - o0] += w[r] * e[o];
        }
        for (int o = o0; o < o1; o++) db[o] = accumulate ? db[o] + alpha * acc[o - o0] : alpha * acc[o - o0];
    };
    if (int64_t(R) * O < (1 << 16)) {  // small: a pool round trip costs more than the work
        for (int t = 0; t < tasks; t++) body(t);
    } else {
        ThreadPool::instance().parallel_for(tasks, body);
    }
}

void col_sum(float* db, const float* d, int R, int O) {
    std::fill(db, db + O, 0.0f);
    for (int r = 0; r < R; r++)
        for (int o = 0; o < O; o++) db[o] += d[int64_t(r) * O + o];
}

}  // namespace of::cpu
