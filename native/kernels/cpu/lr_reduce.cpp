// The likelihood-ratio reductions (METHOD.md section 1, batched form; paper section 3):
//   w[r]      = (loss[r] - beta[r]) / (B K)                        row weights, one pass over the losses
//   grad W[l] = (1 / sigma_l) (diag(w) S(E_l))^T A_{l-1}            done by gemm() with kscale = w
//   grad b[l] = (1 / sigma_l) sum_r w[r] S(E_l)[r, :]               lr_bias_reduce
// and for the first noisy layer the shared-prefix form: G[b] = sum_k w[b, k] E_1[b, k] (B, O), then
// grad W1 = (1 / sigma_1) G^T X with B rows instead of B K (METHOD.md section 3.1). S(e) = e for normal noise.
// Reductions over rows run in a fixed order per output column, so results never depend on thread count.
#include <algorithm>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/ops.h"

namespace of::cpu {

// baseline LeaveOneOut: beta[b, k] = mean loss of the sample's other copies. It must not depend on copy k's
// own noise (METHOD.md section 1), so with antithetic pairs the partner (whose noise is -eps_k) is left out
// too: beta = mean over the other K - 2 copies. The two copies of a pair then share one beta, which cancels
// in (l(eps) - beta) eps + (l(-eps) - beta)(-eps) = (l(eps) - l(-eps)) eps: with pairs the baseline only
// guards float cancellation. (Leaving only the copy itself out would bias the estimate by K / (K - 1).)
void lr_row_weights(float* w, const float* loss, int B, int K, Baseline baseline, bool antithetic, float scale) {
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
            }
            wb[k] = float((double(l[k]) - beta) * scale);
        }
    }
}

void lr_copy_sum(float* G, const float* w, const float* E, int B, int K, int O, const NoiseSpec* regen) {
    const int64_t cycles = int64_t(B) * K * O * (E ? 1 : 6);
    ThreadPool::instance().parallel_for(B, [&](int b) {
        thread_local std::vector<float> scratch;
        float* g = G + int64_t(b) * O;
        std::fill(g, g + O, 0.0f);
        if (!E && scratch.size() < size_t(K) * O) scratch.resize(size_t(K) * O);
        const float* eb = E ? E + int64_t(b) * K * O : scratch.data();
        if (!E) {  // regenerate this sample's K noise rows: the same bits the forward pass used
            NoiseSpec ns = *regen;
            ns.row0 += uint32_t(b) * uint32_t(K);
            noise_fill_serial(scratch.data(), K, O, ns);
        }
        for (int k = 0; k < K; k++) {
            float wk = w[int64_t(b) * K + k];
            const float* e = eb + int64_t(k) * O;
            for (int o = 0; o < O; o++) g[o] += wk * e[o];
        }
    }, cycles);
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
