// The likelihood-ratio reductions (docs/method.md section 1, batched form; paper section 3):
//   w[r]      = (loss[r] - beta[r]) / (B K)                        row weights, one pass over the losses
//   grad W[l] = (1 / sigma_l) (diag(w) S(E_l))^T A_{l-1}            done by gemm() with kscale = w
//   grad b[l] = (1 / sigma_l) sum_r w[r] S(E_l)[r, :]               lr_bias_reduce
// and for the first noisy layer the shared-prefix form: G[b] = sum_k w[b, k] E_1[b, k] (B, O), then
// grad W1 = (1 / sigma_1) G^T X with B rows instead of B K (docs/method.md section 3.1). S(e) = e for normal noise.
// Reductions over rows run in a fixed order per output column, so results never depend on thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/fastmath.h"
#include "core/thread_pool.h"
#include "kernels/cpu/ops.h"

namespace of::cpu {

// baseline LeaveOneOut: beta[b, k] = mean loss of the sample's other copies. It must not depend on copy k's
// own noise (docs/method.md section 1), so with antithetic pairs the partner (whose noise is -eps_k) is left out
// too: beta = mean over the other K - 2 copies. The two copies of a pair then share one beta, which cancels
// in (l(eps) - beta) eps + (l(-eps) - beta)(-eps) = (l(eps) - l(-eps)) eps: with pairs the baseline only
// guards float cancellation. (Leaving only the copy itself out would bias the estimate by K / (K - 1).)
void lr_row_weights(float* w, const float* loss, const float* clean, int B, int K, Baseline baseline, bool antithetic,
                    float scale) {
    for (int b = 0; b < B; b++) {
        const float* l = loss + int64_t(b) * K;
        float* wb = w + int64_t(b) * K;
        double sum = 0.0;  // float64: K losses of similar size, cancellation in sum - l[k]
        for (int k = 0; k < K; k++) sum += l[k];
        for (int k = 0; k < K; k++) {
            double beta = 0.0;
            if (baseline == Baseline::LeaveOneOut) {
                if (!antithetic) beta = (sum - l[k]) / double(K - 1);
                else if (K > 2) beta = (sum - l[k] - l[k ^ 1]) / double(K - 2);
            } else if (baseline == Baseline::BatchMean) {
                beta = sum / double(K);
            } else if (baseline == Baseline::Clean || baseline == Baseline::Running) {
                beta = clean[b];
            }
            wb[k] = float((double(l[k]) - beta) * scale);
        }
    }
}

// Scores. logistic: tanh(e / 2) (= 2u - 1 for e = log(u / (1 - u))); Laplace: sign(e). The sign-compressed
// score divides by E|e| (normal sqrt(2 / pi), logistic 2 ln 2, Laplace 1) so that, to first order in sigma,
// E[l sign(e)] / (sigma E|e|) is the gradient -- exactly so for a quadratic loss.
void score_transform(float* e, int64_t n, Density density, Score score) {
    if (score == Score::Sign) {
        const float c = density == Density::Normal     ? 1.2533141373155003f
                        : density == Density::Logistic ? 0.7213475204444817f
                                                       : 1.0f;
        for (int64_t i = 0; i < n; i++) e[i] = e[i] > 0.0f ? c : (e[i] < 0.0f ? -c : 0.0f);
        return;
    }
    if (density == Density::Logistic)
        for (int64_t i = 0; i < n; i++) e[i] = tanh_f32(0.5f * e[i]);
    else if (density == Density::Laplace)
        for (int64_t i = 0; i < n; i++) e[i] = e[i] > 0.0f ? 1.0f : (e[i] < 0.0f ? -1.0f : 0.0f);
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
