// Unified likelihood-ratio (ULR) estimator: Jiang et al., "One Forward is Enough for Neural Network
// Training via Likelihood Ratio Method", ICLR 2024, section 3 (the LR gradient of a layer with noise on its
// pre-activation) and section 4 (variance reduction: antithetic pairs, baselines). docs/method.md is our summary.
//
// Each of B samples runs as K noisy copies (R = B K rows) through one forward pass with noise in every dense
// pre-activation:   V~_l = A_{l-1} W_l^T + b_l + sigma_l E_l,   A_l = phi_l(V~_l),   E_l ~ N(0, I)
// Per-row losses l[r] give weights  w[r] = (l[r] - beta[r]) / (B K)  (beta: leave-one-out mean of the other
// copies of the same sample, leaving out the antithetic partner too), and for every layer at once:
//   grad W_l = (1 / sigma_l) (diag(w) E_l)^T A_{l-1}      grad b_l = (1 / sigma_l) sum_r w[r] E_l[r, :]
// (score of the normal density: s(e) = e; Laplace and logistic noise and the sign-compressed score of the
// approximated-LR paper, arXiv 2403.12320, swap in their s(e)). No derivative of phi or of the loss is used.
//
// Performance rules (docs/method.md section 3): the first layer's clean GEMM runs once per sample (B rows) and its
// gradient is reduced over copies first (G = sum_k w E_1, then G^T X: B rows, not B K). Everything else runs
// in blocks of whole samples (about 256 rows): one task takes a block through every layer, computes its
// losses, its row weights (the leave-one-out baseline needs only the sample's own copies), its rows of G and
// its partial weight gradients, while the block's activations and noise are still in cache. Nothing of size
// B K x width is ever stored. The noise is a pure function of (seed, step, layer, row, neuron): the block keeps
// it from its forward pass, or regenerates it for the gradient (store_noise = false); same bits either way.
// Partial gradients are summed in block order, so results do not depend on the thread count.
#include <algorithm>
#include <climits>
#include <cmath>

#include "core/shape.h"
#include "core/thread_pool.h"
#include "core/thread_scratch.h"
#include "estimators/blocks.h"
#include "estimators/estimator.h"

namespace of {
namespace {

// Per-thread scratch of one block: activations and noise per layer, replicated inputs, losses, weights.
struct BlockScratch {
    std::vector<Buffer> a, e;
    Buffer x_rep, loss, w, clean0, clean1, clean_loss;
};

}  // namespace

Status ulr_gradients(Model& m, const float* x, const Targets& y, int B, const UlrConfig& c, uint32_t step,
                     StepStats* stats, const LossHook* hook) {
    if (!m.dense_only) return net_ulr_gradients(m, x, y, B, c, step, stats, hook);
    const KernelTable& k = *m.k;
    const int K = c.copies;
    int R = 0;
    OF_TRY(step_rows(B, K, &R));
    const int L = int(m.units.size());
    const uint64_t seed = c.has_seed ? c.seed : m.seed;
    auto sigma = [&](int l) { return c.sigma.size() == 1 ? c.sigma[0] : c.sigma[size_t(l)]; };
    auto noise = [&](int l, int row0) {
        NoiseSpec ns{seed, step, uint32_t(l), uint32_t(c.sample_base) * uint32_t(K) + uint32_t(row0), c.antithetic, c.density,
                     c.qmc ? uint32_t(c.antithetic ? K / 2 : K) : 0u};
        if (c.slice_total) ns.slice_local = uint32_t(K), ns.slice_total = c.slice_total, ns.slice_offset = c.slice_offset;
        return ns;
    };
    const bool plain_score = c.density == Density::Normal && c.score == Score::Exact;  // s(e) = e
    const std::vector<std::vector<float>> sig = channel_sigmas(m, c);
    auto per_channel = [&](int l) { return l < int(c.sigma_channels.size()) && !c.sigma_channels[size_t(l)].empty(); };
    const DenseUnit& u0 = m.units[0];
    const int C = m.outputs;

    // Blocks of whole samples, ~256 rows each; fixed by (B, K) only.
    const int S = lr_block_samples(K);
    const int T = (B + S - 1) / S;
    const int first_partial = c.shared_prefix ? 1 : 0;  // layers whose gradient is summed from block partials
    int64_t partial_size = 0;
    std::vector<int64_t> partial_off(size_t(L), 0);
    for (int l = first_partial; l < L; l++) {
        partial_off[size_t(l)] = partial_size;
        partial_size += int64_t(m.units[size_t(l)].O) * m.units[size_t(l)].I + m.units[size_t(l)].O;
    }
    auto& ws = m.ws;
    OF_TRY(ws.partials.reserve(size_t(T) * size_t(std::max<int64_t>(partial_size, 1))));
    if (c.shared_prefix) {
        OF_TRY(ws.v0.reserve(size_t(B) * u0.O));
        OF_TRY(ws.g.reserve(size_t(B) * u0.O));
        OF_TRY(ws.ones.reserve(size_t(B)));
        k.gemm_nt(ws.v0.data(), x, m.W(u0), B, u0.O, u0.I, 1.0f, 0.0f);  // clean first layer, B rows
    }
    std::vector<double> loss_sum(size_t(T), 0.0);
    std::vector<int64_t> correct(size_t(T), 0);
    std::vector<Status> status(static_cast<size_t>(T));
    std::vector<double> sg_part(c.learn_sigma ? size_t(T) * size_t(L) : 0, 0.0);  // per block, per layer
    float* partials = ws.partials.data();
    const float inv_r = 1.0f / float(R);

    // One block: forward through every layer; then (full pass) losses, row weights, G rows and partials.
    // With a loss hook the forward runs twice: once to collect every row's output for the hook (one call per
    // step), once more (same bits) to reduce with the losses it returned.
    float* hook_loss = nullptr;
    auto block = [&](int t, bool forward_only) {
        BlockScratch& sc = thread_scratch<BlockScratch>();
        const int b0 = t * S, s = std::min(S, B - b0), rows = s * K, r0 = b0 * K;
        Status& st = status[size_t(t)];
        sc.a.resize(size_t(L)), sc.e.resize(size_t(L));
        for (int l = 0; l < L && st.ok(); l++) {
            st = sc.a[size_t(l)].reserve(size_t(rows) * m.units[size_t(l)].O);
            if (st.ok()) st = sc.e[size_t(l)].reserve(size_t(rows) * m.units[size_t(l)].O);
        }
        if (st.ok()) st = sc.loss.reserve(size_t(rows));
        if (st.ok()) st = sc.w.reserve(size_t(rows));
        if (st.ok() && !c.shared_prefix) st = sc.x_rep.reserve(size_t(rows) * u0.I);
        if (!st.ok()) return;
        auto E = [&](int l) { return c.store_noise ? sc.e[size_t(l)].data() : nullptr; };

        // forward: the block's K copies of each sample through every layer
        if (c.shared_prefix) {
            k.noisy_bias_act_forward(sc.a[0].data(), E(0), ws.v0.data() + int64_t(b0) * u0.O, m.b(u0), sig[0].data(), rows,
                                     u0.O, K, u0.act, u0.alpha, noise(0, r0));
        } else {
            for (int r = 0; r < rows; r++)
                std::copy(x + int64_t(b0 + r / K) * u0.I, x + int64_t(b0 + r / K + 1) * u0.I,
                          sc.x_rep.data() + int64_t(r) * u0.I);
            k.gemm_nt(sc.a[0].data(), sc.x_rep.data(), m.W(u0), rows, u0.O, u0.I, 1.0f, 0.0f);
            k.noisy_bias_act_forward(sc.a[0].data(), E(0), sc.a[0].data(), m.b(u0), sig[0].data(), rows, u0.O, 1, u0.act,
                                     u0.alpha, noise(0, r0));
        }
        for (int l = 1; l < L; l++) {
            const DenseUnit& u = m.units[size_t(l)];
            k.gemm_nt(sc.a[size_t(l)].data(), sc.a[size_t(l - 1)].data(), m.W(u), rows, u.O, u.I, 1.0f, 0.0f);
            k.noisy_bias_act_forward(sc.a[size_t(l)].data(), E(l), sc.a[size_t(l)].data(), m.b(u), sig[size_t(l)].data(), rows, u.O,
                                     1, u.act, u.alpha, noise(l, r0));
        }
        if (forward_only) {
            std::copy(sc.a[size_t(L - 1)].data(), sc.a[size_t(L - 1)].data() + int64_t(rows) * C,
                      ws.outputs.data() + int64_t(r0) * C);
            return;
        }
        loss_sum[size_t(t)] = block_losses(m, y, sc.a[size_t(L - 1)].data(), b0, s, K, r0, hook_loss, sc.loss.data(), &correct[size_t(t)]);

        // clean baseline: the noise-free loss of each of the block's samples (a forward of s rows, 1/K the cost)
        if (c.baseline == Baseline::Clean) {
            int width = m.max_width();
            st = sc.clean0.reserve(size_t(s) * width);
            if (st.ok()) st = sc.clean1.reserve(size_t(s) * width);
            if (st.ok()) st = sc.clean_loss.reserve(size_t(s));
            if (!st.ok()) return;
            float* cur = sc.clean0.data();
            float* other = sc.clean1.data();
            if (c.shared_prefix) {
                std::copy(ws.v0.data() + int64_t(b0) * u0.O, ws.v0.data() + int64_t(b0 + s) * u0.O, cur);
            } else {
                k.gemm_nt(cur, x + int64_t(b0) * u0.I, m.W(u0), s, u0.O, u0.I, 1.0f, 0.0f);
            }
            k.bias_act_forward(cur, cur, m.b(u0), s, u0.O, u0.act, u0.alpha);
            for (int l = 1; l < L; l++) {
                const DenseUnit& u = m.units[size_t(l)];
                k.gemm_nt(other, cur, m.W(u), s, u.O, u.I, 1.0f, 0.0f);
                k.bias_act_forward(other, other, m.b(u), s, u.O, u.act, u.alpha);
                std::swap(cur, other);
            }
            k.loss_forward(sc.clean_loss.data(), cur, y.labels ? y.labels + b0 : nullptr,
                           y.values ? y.values + int64_t(b0) * C : nullptr, s, C, 1, m.loss, 1);
        }

        if (c.baseline == Baseline::Running) {  // earlier steps only: independent of this step's noise
            st = sc.clean_loss.reserve(size_t(s));
            if (!st.ok()) return;
            std::fill(sc.clean_loss.data(), sc.clean_loss.data() + s, m.has_running ? float(m.running_loss) : 0.0f);
        }

        // row weights: loss minus baseline, over B K (the baseline uses only the sample's own copies)
        float* w = sc.w.data();
        k.lr_row_weights(w, sc.loss.data(), sc.clean_loss.data(), s, K, c.baseline, c.antithetic, inv_r);

        // gradients from the same row weights, every layer
        for (int l = 0; l < L; l++) {
            const DenseUnit& u = m.units[size_t(l)];
            float* e = sc.e[size_t(l)].data();  // noise kept from the forward pass, or regenerated now
            if (!c.store_noise) k.noise_fill(e, rows, u.O, noise(l, r0));
            if (c.learn_sigma) {  // d/d(log sigma): sum_r w[r] sum_j (e s(e) - 1), with the density's exact score
                double acc = 0.0;
                for (int r = 0; r < rows; r++) {
                    const float* er = e + int64_t(r) * u.O;
                    double row = 0.0;
                    for (int j = 0; j < u.O; j++) {
                        float ej = er[j];
                        float sj = c.density == Density::Normal ? ej : c.density == Density::Logistic ? std::tanh(0.5f * ej)
                                                                                                         : (ej > 0.0f ? 1.0f : ej < 0.0f ? -1.0f : 0.0f);
                        row += double(ej) * sj - 1.0;
                    }
                    acc += double(w[r]) * row;
                }
                sg_part[size_t(t) * L + size_t(l)] = acc;
            }
            if (!plain_score) k.score_transform(e, int64_t(rows) * u.O, c.density, c.score);  // e -> s(e)
            if (per_channel(l)) scale_by_channel(e, rows, sig[size_t(l)]);
            if (l == 0 && c.shared_prefix) {  // this block's rows of G = sum_k w s(E_1)
                k.lr_copy_sum(ws.g.data() + int64_t(b0) * u.O, w, e, s, K, u.O);
                continue;
            }
            const float* a_prev = l == 0 ? sc.x_rep.data() : sc.a[size_t(l - 1)].data();
            float* p = partials + int64_t(t) * partial_size + partial_off[size_t(l)];
            const float inv_sigma = per_channel(l) ? 1.0f : 1.0f / sigma(l);
            k.gemm_tn(p, e, a_prev, w, u.O, u.I, rows, inv_sigma, 0.0f);
            k.lr_bias_reduce(p + int64_t(u.O) * u.I, w, e, rows, u.O, inv_sigma, false);
        }
    };
    const int64_t cycles = int64_t(R) * m.max_width() * 8;
    OF_TRY(run_loss_hook(m, hook, y, R, K, T, status, cycles, [&](int t) { block(t, true); }, &hook_loss));
    ThreadPool::instance().parallel_for(T, [&](int t) { block(t, false); }, cycles);
    OF_CHECK(!ThreadPool::cancelled(), Abort, "training was cancelled");  // the blocks were skipped: sum nothing
    for (const Status& st : status) OF_TRY(st);

    // partial gradients summed in block order (deterministic for any thread count)
    float* grads = m.grads.data();
    for (int l = first_partial; l < L; l++) {
        const DenseUnit& u = m.units[size_t(l)];
        sum_block_partials(grads + u.w_off, partials, partial_off[size_t(l)], partial_size, T,
                           int64_t(u.O) * u.I + (u.b_off >= 0 ? u.O : 0));
    }
    if (c.shared_prefix) {  // grad W1 = G^T X / sigma; grad b1 = colsum(G) / sigma
        const float inv_sigma = per_channel(0) ? 1.0f : 1.0f / sigma(0);
        k.gemm_tn(grads + u0.w_off, ws.g.data(), x, nullptr, u0.O, u0.I, B, inv_sigma, 0.0f);
        if (u0.b_off >= 0) {
            std::fill(ws.ones.data(), ws.ones.data() + B, 1.0f);
            k.lr_bias_reduce(grads + u0.b_off, ws.ones.data(), ws.g.data(), B, u0.O, inv_sigma, false);
        }
    }
    finish_stats(m, c, loss_sum, correct, R, stats);
    if (c.learn_sigma) {
        stats->sigma_grad.assign(size_t(L), 0.0);
        for (int t = 0; t < T; t++)
            for (int l = 0; l < L; l++) stats->sigma_grad[size_t(l)] += sg_part[size_t(t) * L + size_t(l)];
    }
    return {};
}

}  // namespace of
