// Layer-wise injection for ULR (Jiang et al., ICLR 2024, section 4 on variance reduction): instead of one
// group of K copies with noise in every layer, each dense layer l gets its own group of K_l copies per sample
// in which only layer l is perturbed and every other layer runs clean. A layer's estimate then carries no
// noise from the other layers. The clean path is shared (the generalized shared-prefix rule):
//   1. one clean forward of the B samples keeps every layer's pre-activation V_l and activation A_l;
//   2. group l starts from V_l (B rows) + sigma_l eps (B K_l rows), runs layers > l clean, scores the loss;
//   3. G_l[b] = sum_k w[b, k] s(eps[b, k]) (leave-one-out weights within the group), and
//      grad W_l = (1 / sigma_l) G_l^T A_{l-1}, grad b_l = (1 / sigma_l) colsum(G_l)  -- B rows, not B K_l.
// Work runs in blocks of whole samples as in the all-layer path; noise counters use the group's own rows and
// the layer's stream, so every value is still a pure function of (seed, step, layer, row, neuron).
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
struct GroupScratch {
    Buffer a, b, e, loss, w;
    std::vector<Buffer> ga, ge;  // per layer of a multi-layer block: noisy activations and noise
};
}  // namespace

namespace {
// Copies 'auto': the cost of one copy of layer l (noise + activation of layer l, then the clean layers after it),
// and the clamp of an allocation.
std::vector<double> copy_costs(const Model& m) {
    const int L = int(m.units.size());
    std::vector<double> cost(static_cast<size_t>(L), 0.0);
    for (int l = 0; l < L; l++) {
        cost[size_t(l)] = double(m.units[size_t(l)].O);
        for (int j = l + 1; j < L; j++) cost[size_t(l)] += double(m.units[size_t(j)].I) * m.units[size_t(j)].O;
    }
    return cost;
}
int clamp_copies(const UlrConfig& c, double k) {
    int ki = int(std::min(4096.0, std::max(2.0, std::round(k))));
    return c.antithetic ? std::max(2, ki / 2 * 2) : ki;
}
}  // namespace

std::vector<int> layerwise_copies(const Model& m, const UlrConfig& c) {
    const int L = int(m.units.size());
    std::vector<int> kl(static_cast<size_t>(L), c.copies);
    if (!c.copies_per_layer.empty()) kl = c.copies_per_layer;
    if (c.auto_copies && m.layer_var.size() == size_t(L)) {
        const std::vector<double> cost = copy_costs(m);
        double uniform = 0.0, norm = 0.0;
        for (int l = 0; l < L; l++) {
            uniform += double(c.copies) * cost[size_t(l)];
            norm += std::sqrt(std::max(m.layer_var[size_t(l)], 1e-30) * cost[size_t(l)]);
        }
        for (int l = 0; l < L; l++)
            kl[size_t(l)] = clamp_copies(c, uniform * std::sqrt(std::max(m.layer_var[size_t(l)], 1e-30) / cost[size_t(l)]) / norm);
    }
    return kl;
}

std::vector<int> layerwise_copies_bound(const Model& m, const UlrConfig& c) {
    std::vector<int> kl = layerwise_copies(m, c);
    if (!c.auto_copies) return kl;
    // K_l = U sqrt(V_l / c_l) / sum_j sqrt(V_j c_j) <= U sqrt(V_l / c_l) / sqrt(V_l c_l) = U / c_l, U = copies sum_j c_j
    const std::vector<double> cost = copy_costs(m);
    double uniform = 0.0;
    for (double cl : cost) uniform += double(c.copies) * cl;
    for (size_t l = 0; l < kl.size(); l++) kl[l] = std::max({kl[l], c.copies, clamp_copies(c, std::ceil(uniform / cost[l]))});
    return kl;
}

void record_layer_var(Model& m, const UlrConfig& c, const std::vector<int>& kl, std::vector<double> var, StepStats* stats) {
    const size_t L = var.size();
    for (size_t l = 0; l < L; l++) var[l] *= double(kl[l]);  // per copy: K_l x the variance of this step's estimate
    stats->layer_var = var;
    if (c.training) {
        if (m.layer_var.size() != L) m.layer_var = var;
        else
            for (size_t l = 0; l < L; l++) m.layer_var[l] = 0.9 * m.layer_var[l] + 0.1 * var[l];
    }
    stats->copies.assign(kl.begin(), kl.end());
}

Status ulr_layerwise_gradients(Model& m, const float* x, const Targets& y, int B, const UlrConfig& c, uint32_t step,
                               StepStats* stats, const LossHook* hook) {
    const KernelTable& k = *m.k;
    const int L = int(m.units.size());
    const int C = m.outputs;
    const uint64_t seed = c.has_seed ? c.seed : m.seed;
    auto sigma = [&](int l) { return c.sigma.size() == 1 ? c.sigma[0] : c.sigma[size_t(l)]; };
    const std::vector<int> kl = layerwise_copies(m, c);
    auto copies = [&](int l) { return kl[size_t(l)]; };
    // Groups of consecutive layers perturbed together (blocks); by default one layer per group. A group uses
    // the copies of its first layer. Its first layer reduces through G (shared clean input); later layers of
    // the group see noisy inputs, so they reduce per row into block partials, as in the all-layer mode.
    std::vector<int> gstart;
    if (c.blocks.empty()) {
        for (int l = 0; l < L; l++) gstart.push_back(l);
    } else {
        int at = 0;
        for (int n : c.blocks) gstart.push_back(at), at += n;
    }
    const int NG = int(gstart.size());
    auto gend = [&](int g) { return g + 1 < NG ? gstart[size_t(g) + 1] : L; };
    std::vector<char> inner(size_t(L), 0);
    for (int g = 0; g < NG; g++)
        for (int l = gstart[size_t(g)] + 1; l < gend(g); l++) inner[size_t(l)] = 1;
    int64_t partial_size = 0;
    std::vector<int64_t> partial_off(size_t(L), 0);
    for (int l = 0; l < L; l++)
        if (inner[size_t(l)]) {
            partial_off[size_t(l)] = partial_size;
            partial_size += int64_t(m.units[size_t(l)].O) * m.units[size_t(l)].I + m.units[size_t(l)].O;
        }
    const bool plain_score = c.density == Density::Normal && c.score == Score::Exact;
    const std::vector<std::vector<float>> sig = channel_sigmas(m, c);
    auto per_channel = [&](int l) { return l < int(c.sigma_channels.size()) && !c.sigma_channels[size_t(l)].empty(); };
    int64_t total_rows = 0;
    for (int g = 0; g < NG; g++) {
        const int l = gstart[size_t(g)];
        uint64_t r;
        OF_TRY(checked_mul(uint64_t(B), uint64_t(copies(l)), &r, "batch x copies"));
        OF_CHECK(r <= uint64_t(INT_MAX) / 4, Shape, "batch x copies is too large");
        total_rows += int64_t(r);
    }

    // 1. clean forward of the B samples: V_l (pre-activations) and A_l, kept for every layer
    auto& ws = m.ws;
    ws.v.resize(size_t(L)), ws.a.resize(size_t(L));
    for (int l = 0; l < L; l++) {
        OF_TRY(ws.v[size_t(l)].reserve(size_t(B) * m.units[size_t(l)].O));
        OF_TRY(ws.a[size_t(l)].reserve(size_t(B) * m.units[size_t(l)].O));
    }
    OF_TRY(ws.loss.reserve(size_t(B)));
    const float* in = x;
    for (int l = 0; l < L; l++) {
        const DenseUnit& u = m.units[size_t(l)];
        k.gemm_nt(ws.v[size_t(l)].data(), in, m.W(u), B, u.O, u.I, 1.0f, 0.0f);
        k.bias_act_forward(ws.a[size_t(l)].data(), ws.v[size_t(l)].data(), m.b(u), B, u.O, u.act, u.alpha);
        in = ws.a[size_t(l)].data();
    }
    if (c.baseline == Baseline::Clean)
        k.loss_forward(ws.loss.data(), ws.a[size_t(L - 1)].data(), y.labels, y.values, B, C, 1, m.loss, 1);
    if (c.baseline == Baseline::Running)  // earlier steps only: independent of this step's noise
        std::fill(ws.loss.data(), ws.loss.data() + B, m.has_running ? float(m.running_loss) : 0.0f);

    // G_l (B x O_l) for every layer, in one buffer
    std::vector<int64_t> g_off(size_t(L) + 1, 0);
    for (int l = 0; l < L; l++) g_off[size_t(l) + 1] = g_off[size_t(l)] + int64_t(B) * m.units[size_t(l)].O;
    OF_TRY(ws.g.reserve(size_t(g_off[size_t(L)])));

    // 2. noisy groups, in blocks of whole samples (~256 rows per group)
    int kmax = 1;
    for (int l = 0; l < L; l++) kmax = std::max(kmax, copies(l));
    const int S = lr_block_samples(kmax);
    const int T = (B + S - 1) / S;
    std::vector<double> loss_sum(size_t(T), 0.0);
    std::vector<int64_t> correct(size_t(T), 0);
    std::vector<Status> status(static_cast<size_t>(T));
    std::vector<double> var_part(c.auto_copies ? size_t(T) * size_t(L) : 0, 0.0);
    OF_TRY(ws.partials.reserve(size_t(T) * size_t(std::max<int64_t>(partial_size, 1))));
    float* partials = ws.partials.data();
    // Row offsets of the groups in one step-wide output buffer (used with a loss hook: the forward runs once
    // to collect every group's outputs, the hook answers per group, and a second pass -- same bits -- reduces).
    std::vector<int64_t> go(size_t(NG) + 1, 0);
    for (int g = 0; g < NG; g++) go[size_t(g) + 1] = go[size_t(g)] + int64_t(B) * copies(gstart[size_t(g)]);
    float* hook_loss = nullptr;
    auto block = [&](int t, bool forward_only) {
        GroupScratch& sc = thread_scratch<GroupScratch>();
        const int b0 = t * S, s = std::min(S, B - b0);
        Status& st = status[size_t(t)];
        for (int g = 0; g < NG && st.ok(); g++) {
            const int l = gstart[size_t(g)], lend = gend(g);
            const DenseUnit& u = m.units[size_t(l)];
            const int K = copies(l), rows = s * K, r0 = b0 * K;
            auto spec = [&](int j) {
                return NoiseSpec{seed, step, uint32_t(j), uint32_t(r0), c.antithetic, c.density,
                                 c.qmc ? uint32_t(c.antithetic ? K / 2 : K) : 0u};
            };
            const NoiseSpec ns = spec(l);
            const int width = m.max_width();
            st = sc.a.reserve(size_t(rows) * width);
            if (st.ok()) st = sc.b.reserve(size_t(rows) * width);
            if (st.ok()) st = sc.e.reserve(size_t(rows) * u.O);
            if (st.ok()) st = sc.loss.reserve(size_t(rows));
            if (st.ok()) st = sc.w.reserve(size_t(rows));
            sc.ga.resize(size_t(L)), sc.ge.resize(size_t(L));
            for (int j = l; j < lend && st.ok(); j++) {
                st = sc.ga[size_t(j)].reserve(size_t(rows) * m.units[size_t(j)].O);
                if (st.ok()) st = sc.ge[size_t(j)].reserve(size_t(rows) * m.units[size_t(j)].O);
            }
            if (!st.ok()) return;
            // the group's first layer noisy from the clean pre-activation (bias already in V_l), its other
            // layers noisy from their noisy inputs, everything after the group clean
            float* cur = sc.ga[size_t(l)].data();
            k.noisy_bias_act_forward(cur, c.store_noise ? sc.e.data() : nullptr, ws.v[size_t(l)].data() + int64_t(b0) * u.O,
                                     nullptr, sig[size_t(l)].data(), rows, u.O, K, u.act, u.alpha, ns);
            for (int j = l + 1; j < lend; j++) {
                const DenseUnit& uj = m.units[size_t(j)];
                float* nxt = sc.ga[size_t(j)].data();
                k.gemm_nt(nxt, cur, m.W(uj), rows, uj.O, uj.I, 1.0f, 0.0f);
                k.noisy_bias_act_forward(nxt, c.store_noise ? sc.ge[size_t(j)].data() : nullptr, nxt, m.b(uj),
                                         sig[size_t(j)].data(), rows, uj.O, 1, uj.act, uj.alpha, spec(j));
                cur = nxt;
            }
            float* other = cur == sc.a.data() ? sc.b.data() : sc.a.data();
            if (lend < L) {  // the clean rest ping-pongs between a and b
                const DenseUnit& uj = m.units[size_t(lend)];
                k.gemm_nt(sc.a.data(), cur, m.W(uj), rows, uj.O, uj.I, 1.0f, 0.0f);
                k.bias_act_forward(sc.a.data(), sc.a.data(), m.b(uj), rows, uj.O, uj.act, uj.alpha);
                cur = sc.a.data();
                other = sc.b.data();
            }
            for (int j = lend + 1; j < L; j++) {
                const DenseUnit& uj = m.units[size_t(j)];
                k.gemm_nt(other, cur, m.W(uj), rows, uj.O, uj.I, 1.0f, 0.0f);
                k.bias_act_forward(other, other, m.b(uj), rows, uj.O, uj.act, uj.alpha);
                std::swap(cur, other);
            }
            if (forward_only) {
                std::copy(cur, cur + int64_t(rows) * C, ws.outputs.data() + (go[size_t(g)] + r0) * C);
                continue;
            }
            correct[size_t(t)] += k.loss_forward(sc.loss.data(), cur, y.labels ? y.labels + b0 : nullptr,
                                                 y.values ? y.values + int64_t(b0) * C : nullptr, rows, C, K, m.loss, 1);
            if (hook_loss) std::copy(hook_loss + go[size_t(g)] + r0, hook_loss + go[size_t(g)] + r0 + rows, sc.loss.data());
            for (int r = 0; r < rows; r++) loss_sum[size_t(t)] += sc.loss.data()[r];
            k.lr_row_weights(sc.w.data(), sc.loss.data(), ws.loss.data() + b0, s, K, c.baseline, c.antithetic,
                             1.0f / float(int64_t(B) * K));
            if (!c.store_noise) k.noise_fill(sc.e.data(), rows, u.O, ns);
            if (!plain_score) k.score_transform(sc.e.data(), int64_t(rows) * u.O, c.density, c.score);
            if (c.auto_copies) {  // variance of this block's share: sum_r w_r^2 |s_r|^2 |a_{l-1}(sample)|^2 / sigma^2
                const int I = u.I;
                double acc = 0.0;
                for (int b = 0; b < s; b++) {
                    const float* a = (l == 0 ? x : ws.a[size_t(l - 1)].data()) + int64_t(b0 + b) * I;
                    double an = 0.0;
                    for (int i = 0; i < I; i++) an += double(a[i]) * a[i];
                    for (int kk = 0; kk < K; kk++) {
                        const int r = b * K + kk;
                        const float* er = sc.e.data() + int64_t(r) * u.O;
                        double sn = 0.0;
                        for (int o = 0; o < u.O; o++) sn += double(er[o]) * er[o];
                        acc += double(sc.w.data()[r]) * sc.w.data()[r] * sn * an;
                    }
                }
                var_part[size_t(t) * L + size_t(l)] = acc / (double(sigma(l)) * sigma(l));
            }
            if (per_channel(l)) scale_by_channel(sc.e.data(), rows, sig[size_t(l)]);
            k.lr_copy_sum(ws.g.data() + g_off[size_t(l)] + int64_t(b0) * u.O, sc.w.data(), sc.e.data(), s, K, u.O);
            for (int j = l + 1; j < lend; j++) {  // the group's later layers: per-row reductions into partials
                const DenseUnit& uj = m.units[size_t(j)];
                float* e = sc.ge[size_t(j)].data();
                if (!c.store_noise) k.noise_fill(e, rows, uj.O, spec(j));
                if (!plain_score) k.score_transform(e, int64_t(rows) * uj.O, c.density, c.score);
                if (per_channel(j)) scale_by_channel(e, rows, sig[size_t(j)]);
                float* p = partials + int64_t(t) * partial_size + partial_off[size_t(j)];
                const float inv_sigma = per_channel(j) ? 1.0f : 1.0f / sigma(j);
                k.gemm_tn(p, e, sc.ga[size_t(j - 1)].data(), sc.w.data(), uj.O, uj.I, rows, inv_sigma, 0.0f);
                k.lr_bias_reduce(p + int64_t(uj.O) * uj.I, sc.w.data(), e, rows, uj.O, inv_sigma, false);
            }
        }
    };
    const int64_t cycles = total_rows * m.max_width() * 8;
    if (hook) {
        OF_TRY(ws.outputs.reserve(size_t(total_rows) * C));
        OF_TRY(ws.hook_loss.reserve(size_t(total_rows)));
        ThreadPool::instance().parallel_for(T, [&](int t) { block(t, true); }, cycles);
        OF_CHECK(!ThreadPool::cancelled(), Abort, "training was cancelled");  // never hand JS a half-computed step
        for (const Status& st : status) OF_TRY(st);
        for (int g = 0; g < NG; g++) {  // one call per group: its rows are (sample, copy) with its own K
            const int K = copies(gstart[size_t(g)]);
            OF_TRY((*hook)(ws.outputs.data() + go[size_t(g)] * C, y, B * K, C, K, ws.hook_loss.data() + go[size_t(g)]));
        }
        hook_loss = ws.hook_loss.data();
        for (int64_t r = 0; r < total_rows; r++)
            OF_CHECK(std::isfinite(hook_loss[r]), Data, "the loss function returned a non-finite value for row " + std::to_string(r));
    }
    ThreadPool::instance().parallel_for(T, [&](int t) { block(t, false); }, cycles);
    OF_CHECK(!ThreadPool::cancelled(), Abort, "training was cancelled");  // the blocks were skipped: sum nothing
    for (const Status& st : status) OF_TRY(st);

    // 3. per layer: grad W_l = G_l^T A_{l-1} / sigma_l and grad b_l = colsum(G_l) / sigma_l, on B rows
    OF_TRY(ws.ones.reserve(size_t(B)));
    std::fill(ws.ones.data(), ws.ones.data() + B, 1.0f);
    for (int l = 0; l < L; l++) {
        const DenseUnit& u = m.units[size_t(l)];
        if (inner[size_t(l)]) {  // partials summed in block order
            const int64_t nw = int64_t(u.O) * u.I;
            float* dW = m.grads.data() + u.w_off;
            float* db = u.b_off >= 0 ? m.grads.data() + u.b_off : nullptr;
            for (int t = 0; t < T; t++) {
                const float* p = partials + int64_t(t) * partial_size + partial_off[size_t(l)];
                for (int64_t i = 0; i < nw; i++) dW[i] = t ? dW[i] + p[i] : p[i];
                if (db)
                    for (int o = 0; o < u.O; o++) db[o] = t ? db[o] + p[nw + o] : p[nw + o];
            }
            continue;
        }
        const float* g = ws.g.data() + g_off[size_t(l)];
        const float* a_prev = l == 0 ? x : ws.a[size_t(l - 1)].data();
        const float inv_sigma = per_channel(l) ? 1.0f : 1.0f / sigma(l);
        k.gemm_tn(m.grads.data() + u.w_off, g, a_prev, nullptr, u.O, u.I, B, inv_sigma, 0.0f);
        if (u.b_off >= 0) k.lr_bias_reduce(m.grads.data() + u.b_off, ws.ones.data(), g, B, u.O, inv_sigma, false);
    }
    double total = 0.0;
    int64_t hits = 0;
    for (int t = 0; t < T; t++) total += loss_sum[size_t(t)], hits += correct[size_t(t)];
    stats->loss = total / double(total_rows);
    update_running_baseline(m, c, stats->loss);
    if (c.auto_copies) {
        std::vector<double> var(size_t(L), 0.0);
        for (int t = 0; t < T; t++)
            for (int l = 0; l < L; l++) var[size_t(l)] += var_part[size_t(t) * L + size_t(l)];
        record_layer_var(m, c, kl, std::move(var), stats);
    }
    stats->correct = hits;
    stats->rows = total_rows;
    return {};
}

}  // namespace of
