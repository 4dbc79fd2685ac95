// Unified likelihood-ratio (ULR) estimator: Jiang et al., "One Forward is Enough for Neural Network
// Training via Likelihood Ratio Method", ICLR 2024, section 3 (the LR gradient of a layer with noise on its
// pre-activation) and section 4 (variance reduction: antithetic pairs, baselines). METHOD.md is our summary.
//
// Each of B samples runs as K noisy copies (R = B K rows) through one forward pass with noise in every dense
// pre-activation:   V~_l = A_{l-1} W_l^T + b_l + sigma_l E_l,   A_l = phi_l(V~_l),   E_l ~ N(0, I)
// Per-row losses l[r] give weights  w[r] = (l[r] - beta[r]) / (B K)  (beta: leave-one-out mean of the other
// copies of the same sample, leaving out the antithetic partner too), and for every layer at once:
//   grad W_l = (1 / sigma_l) (diag(w) E_l)^T A_{l-1}      grad b_l = (1 / sigma_l) sum_r w[r] E_l[r, :]
// (score of the normal density: s(e) = e). No derivative of phi or of the loss is used.
//
// Performance rules (METHOD.md section 3): the first layer's clean GEMM runs once per sample (B rows) and its
// gradient is reduced over copies first (G = sum_k w E_1, then G^T X: B rows, not B K); the noise is a pure
// function of (seed, step, layer, row, neuron), either kept from the forward pass or regenerated in the
// gradient pass (store_noise = false) -- both give the same bits, because the gradient pass always reduces
// rows in the same fixed chunks.
#include <algorithm>
#include <climits>
#include <cmath>

#include "core/shape.h"
#include "estimators/estimator.h"

namespace of {
namespace {
// Rows per gradient slice: a multiple of the GEMM's KC (256) and about 64K noise values, so regenerated noise
// needs a small buffer while narrow layers (an output layer of 10) run as one call. Depends on the shape
// only, so storing and regenerating the noise reduce in the same slices and give the same bits.
int row_chunk(int O) { return std::max(256, (65536 / std::max(O, 1)) / 256 * 256); }
}

Status ulr_gradients(Model& m, const float* x, const Targets& y, int B, const UlrConfig& c, uint32_t step,
                     StepStats* stats) {
    const KernelTable& k = *m.k;
    const int K = c.copies;
    uint64_t R64;
    OF_TRY(checked_mul(uint64_t(B), uint64_t(K), &R64, "batch x copies"));
    OF_CHECK(R64 <= uint64_t(INT_MAX) / 4, Shape, "batch x copies is too large");
    const int R = int(R64);
    const size_t L = m.units.size();
    const uint64_t seed = c.has_seed ? c.seed : m.seed;
    auto sigma = [&](size_t l) { return c.sigma.size() == 1 ? c.sigma[0] : c.sigma[l]; };
    auto noise = [&](size_t l, uint32_t row0) { return NoiseSpec{seed, step, uint32_t(l), row0, c.antithetic}; };

    auto& ws = m.ws;
    ws.a.resize(L), ws.e.resize(L);
    for (size_t l = 0; l < L; l++) {
        OF_TRY(ws.a[l].reserve(size_t(R) * m.units[l].O));
        if (c.store_noise) OF_TRY(ws.e[l].reserve(size_t(R) * m.units[l].O));
    }
    OF_TRY(ws.loss.reserve(size_t(R)));
    OF_TRY(ws.w.reserve(size_t(R)));
    OF_TRY(ws.d0.reserve(size_t(row_chunk(m.max_width())) * m.max_width() + 65536));
    auto E = [&](size_t l) { return c.store_noise ? ws.e[l].data() : nullptr; };

    // ---- forward: K noisy copies of every sample ----
    const DenseUnit& u0 = m.units[0];
    const float* x_rows = x;  // the first layer's input rows for the gradient (R rows unless shared prefix)
    if (c.shared_prefix) {
        OF_TRY(ws.v0.reserve(size_t(B) * u0.O));
        k.gemm_nt(ws.v0.data(), x, m.W(u0), B, u0.O, u0.I, 1.0f, 0.0f);
        k.noisy_bias_act_forward(ws.a[0].data(), E(0), ws.v0.data(), m.b(u0), sigma(0), R, u0.O, K, u0.act, u0.alpha,
                                 noise(0, 0));
    } else {
        OF_TRY(ws.x_rep.reserve(size_t(R) * u0.I));
        for (int r = 0; r < R; r++)
            std::copy(x + int64_t(r / K) * u0.I, x + int64_t(r / K + 1) * u0.I, ws.x_rep.data() + int64_t(r) * u0.I);
        x_rows = ws.x_rep.data();
        k.gemm_nt(ws.a[0].data(), x_rows, m.W(u0), R, u0.O, u0.I, 1.0f, 0.0f);
        k.noisy_bias_act_forward(ws.a[0].data(), E(0), ws.a[0].data(), m.b(u0), sigma(0), R, u0.O, 1, u0.act,
                                 u0.alpha, noise(0, 0));
    }
    for (size_t l = 1; l < L; l++) {
        const DenseUnit& u = m.units[l];
        k.gemm_nt(ws.a[l].data(), ws.a[l - 1].data(), m.W(u), R, u.O, u.I, 1.0f, 0.0f);
        k.noisy_bias_act_forward(ws.a[l].data(), E(l), ws.a[l].data(), m.b(u), sigma(l), R, u.O, 1, u.act, u.alpha,
                                 noise(l, 0));
    }
    float* loss = ws.loss.data();
    stats->correct = k.loss_forward(loss, ws.a[L - 1].data(), y.labels, y.values, R, m.outputs, K, m.loss);
    double sum = 0.0;
    for (int r = 0; r < R; r++) sum += loss[r];
    stats->loss = sum / R;
    stats->rows = R;

    // ---- row weights: loss minus baseline, over B K ----
    float* w = ws.w.data();
    k.lr_row_weights(w, loss, B, K, c.baseline, c.antithetic, 1.0f / float(R));

    // ---- gradients: one reduction per layer, all from the same row weights ----
    float* grads = m.grads.data();
    for (size_t l = 0; l < L; l++) {
        const DenseUnit& u = m.units[l];
        const float inv_sigma = 1.0f / sigma(l);
        float* dW = grads + u.w_off;
        float* db = u.b_off >= 0 ? grads + u.b_off : nullptr;
        if (l == 0 && c.shared_prefix) {
            // G[b] = sum_k w[b, k] E_1[b, k]  (B, O); grad W1 = G^T X / sigma; grad b1 = colsum(G) / sigma
            OF_TRY(ws.g.reserve(size_t(B) * u.O));
            OF_TRY(ws.ones.reserve(size_t(B)));
            NoiseSpec ns = noise(0, 0);
            k.lr_copy_sum(ws.g.data(), w, E(0), B, K, u.O, &ns);
            k.gemm_tn(dW, ws.g.data(), x, nullptr, u.O, u.I, B, inv_sigma, 0.0f);
            if (db) {
                std::fill(ws.ones.data(), ws.ones.data() + B, 1.0f);
                k.lr_bias_reduce(db, ws.ones.data(), ws.g.data(), B, u.O, inv_sigma, false);
            }
            continue;
        }
        const float* a_prev = l == 0 ? x_rows : ws.a[l - 1].data();
        const int chunk = row_chunk(u.O);
        for (int r0 = 0; r0 < R; r0 += chunk) {
            int rows = std::min(chunk, R - r0);
            const float* e = c.store_noise ? ws.e[l].data() + int64_t(r0) * u.O : ws.d0.data();
            if (!c.store_noise) k.noise_fill(ws.d0.data(), rows, u.O, noise(l, uint32_t(r0)));
            k.gemm_tn(dW, e, a_prev + int64_t(r0) * u.I, w + r0, u.O, u.I, rows, inv_sigma, r0 == 0 ? 0.0f : 1.0f);
            if (db) k.lr_bias_reduce(db, w + r0, e, rows, u.O, inv_sigma, r0 > 0);
        }
    }
    return {};
}

}  // namespace of
