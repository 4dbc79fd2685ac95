// Estimators for models with convolution and pooling units (model/units.h): exact BP, and ULR with noise on the
// pre-activation of every unit that has parameters (dense and conv), all at once. Same method as
// likelihood_ratio.cpp (Jiang et al., ICLR 2024, section 3): per-row weights w = (l - baseline) / (B K) from one
// noisy forward, then for every noisy unit  grad = (1 / sigma) (diag(w) S(E))^T  (its input, in the unit's GEMM
// view). For a convolution that view is the im2row patches (every output position of a row shares the row's
// weight), so the LR reduction is the BP weight-gradient GEMM with the row weights as its row scale.
// The first noisy unit's input is clean (the input, or a clean prefix of pools): its linear part runs once per
// sample and its gradient is reduced over copies first, G = sum_k w S (docs/method.md 3.1). Blocks of whole samples
// (~256 rows) run forward, losses, row weights and partial reductions in cache; partials are summed in block
// order, so results do not depend on the thread count.
#include <algorithm>
#include <climits>
#include <cmath>

#include "core/shape.h"
#include "core/thread_pool.h"
#include "core/thread_scratch.h"
#include "estimators/blocks.h"
#include "estimators/estimator.h"
#include "model/units.h"

namespace of {
namespace {

struct NetScratch {
    std::vector<Buffer> a, e, aux;
    Buffer loss, w, cols, wexp, seq;
};

// Per-unit aux for recurrent units (rows each) and the state scratch.
Status reserve_seq(const Model& m, std::vector<Buffer>& aux, Buffer& seq, int rows, int from) {
    aux.resize(m.units.size());
    for (size_t l = size_t(from); l < m.units.size(); l++)
        if (seq_aux_width(m.units[l]) > 0) OF_TRY(aux[l].reserve(size_t(rows) * size_t(seq_aux_width(m.units[l]))));
    return seq.reserve(size_t(rows) * size_t(std::max<int64_t>(m.seq_scratch_width(), 1)));
}

}  // namespace

// BP's forward on B rows, keeping every unit's pre-activation and output (ws.v, ws.a) and what recurrent units and
// residual blocks need for the backward. Training mode (dropout masks, batch statistics for batchNorm) unless
// `inference` (input gradients for attacks: the deployed model).
static Status bp_forward(Model& m, const float* x, int B, bool inference, uint32_t sample_base = 0) {
    const KernelTable& k = *m.k;
    const size_t L = m.units.size();
    if (m.has_quant) OF_TRY(m.ws.eff.reserve(size_t(m.n_params)));
    const float* theta = m.effective(m.params->data(), m.ws.eff);
    auto& ws = m.ws;
    ws.a.resize(L), ws.v.resize(L);
    const size_t cap = size_t(B) * size_t(m.max_width());
    for (size_t l = 0; l < L; l++) {
        OF_TRY(ws.v[l].reserve(size_t(B) * m.units[l].O));
        OF_TRY(ws.a[l].reserve(size_t(B) * m.units[l].O));
    }
    OF_TRY(ws.d0.reserve(cap));
    OF_TRY(ws.d1.reserve(cap));
    OF_TRY(ws.loss.reserve(size_t(B)));
    OF_TRY(ws.cols.reserve(size_t(B) * size_t(std::max<int64_t>(m.patch_width(), 1))));
    const bool recurrent = m.seq_scratch_width() > 0;
    if (recurrent) {
        OF_TRY(reserve_seq(m, ws.aux, ws.seq, B, 0));
        OF_TRY(ws.dP.reserve(size_t(B) * size_t(m.max_noise_width())));
        OF_TRY(ws.wexp.reserve(size_t(B) * size_t(m.max_positions())));
    }
    auto ctx = [&](size_t l) {
        return SeqCtx{recurrent && l < ws.aux.size() ? ws.aux[l].data() : nullptr, ws.seq.data(), ws.dP.data(), ws.wexp.data()};
    };
    // residual block ends keep act(v) (inner) and the sum before post_act; block starts collect the skip gradient
    ws.inner.resize(L), ws.sum.resize(L), ws.pending.resize(L);
    for (size_t l = 0; l < L; l++) {
        const DenseUnit& u = m.units[l];
        if (u.skip_from < 0) continue;
        OF_TRY(ws.inner[l].reserve(size_t(B) * u.O));
        OF_TRY(ws.sum[l].reserve(size_t(B) * u.O));
        OF_TRY(ws.pending[size_t(u.skip_from)].reserve(size_t(B) * m.units[size_t(u.skip_from)].I));
    }
    auto input_of = [&](size_t l) { return l == 0 ? x : ws.a[l - 1].data(); };
    const float* in = x;
    for (size_t l = 0; l < L; l++) {
        const DenseUnit& u = m.units[l];
        const SeqCtx sq = ctx(l);
        if (u.kind == UnitKind::Dropout) {  // training mode, but not for input gradients (attacks see the deployed model)
            if (inference) std::copy(in, in + int64_t(B) * u.O, ws.v[l].data());
            else dropout_apply(u, ws.v[l].data(), in, B, 1, int(sample_base), m.seed, m.step, uint32_t(l));
            unit_bias_act(k, u, theta, ws.a[l].data(), ws.v[l].data(), B);
            in = ws.a[l].data();
            continue;
        }
        if (u.kind == UnitKind::BatchNorm && !inference) {  // training mode: this batch's statistics
            batch_norm_stats(u, in, B);
            batch_norm_apply(u, theta, in, B, ws.v[l].data());
            unit_bias_act(k, u, theta, ws.a[l].data(), ws.v[l].data(), B);
            in = ws.a[l].data();
            continue;
        }
        if (u.kind == UnitKind::Concat) {  // [block input, f(x)], then its activation
            concat_forward(u, ws.v[l].data(), in, input_of(size_t(u.skip_from)), B, 1);
            unit_bias_act(k, u, theta, ws.a[l].data(), ws.v[l].data(), B);
            in = ws.a[l].data();
            continue;
        }
        unit_linear(k, u, theta, in, B, ws.v[l].data(), ws.cols.data(), &sq);
        if (u.skip_from >= 0) {  // a = post_act(act(v) + block input)
            unit_bias_act(k, u, theta, ws.inner[l].data(), ws.v[l].data(), B);
            const float* src = input_of(size_t(u.skip_from));
            float* sm = ws.sum[l].data();
            for (int64_t i = 0; i < int64_t(B) * u.O; i++) sm[i] = ws.inner[l].data()[i] + src[i];
            k.bias_act_forward(ws.a[l].data(), sm, nullptr, B, u.O, u.post_act, u.post_alpha);
        } else {
            unit_bias_act(k, u, theta, ws.a[l].data(), ws.v[l].data(), B);
        }
        in = ws.a[l].data();
    }
    return {};
}

Status net_bp_gradients(Model& m, const float* x, const Targets& y, int B, StepStats* stats, float* dx, uint32_t sample_base) {
    OF_CHECK(m.loss != LossKind::ZeroOne, Config, "the 0-1 loss has no gradient: backprop (and input gradients) need a differentiable loss");
    for (const DenseUnit& u : m.units)
        OF_CHECK(act_differentiable(u.act), Config, std::string("backprop cannot differentiate the '") + act_name(u.act) + "' activation");
    OF_TRY(bp_forward(m, x, B, dx != nullptr, sample_base));
    const KernelTable& k = *m.k;
    const size_t L = m.units.size();
    if (m.has_quant) OF_TRY(m.ws.eff.reserve(size_t(m.n_params)));
    const float* theta = m.effective(m.params->data(), m.ws.eff);
    auto& ws = m.ws;
    const bool recurrent = m.seq_scratch_width() > 0;
    auto ctx = [&](size_t l) {
        return SeqCtx{recurrent && l < ws.aux.size() ? ws.aux[l].data() : nullptr, ws.seq.data(), ws.dP.data(), ws.wexp.data()};
    };
    auto input_of = [&](size_t l) { return l == 0 ? x : ws.a[l - 1].data(); };
    const float* out = ws.a[L - 1].data();
    stats->correct = k.loss_forward(ws.loss.data(), out, y.labels, y.values, B, m.outputs, 1, m.loss, m.groups);
    double sum = 0.0;
    for (int r = 0; r < B; r++) sum += ws.loss.data()[r];
    stats->loss = sum / B;
    stats->rows = B;
    float* dA = ws.d0.data();
    float* dV = ws.d1.data();
    k.loss_backward(dA, out, y.labels, y.values, B, m.outputs, m.loss, m.groups);
    // the skip path's gradient joins the input gradient of the unit that starts its block
    auto join_skip = [&](size_t l, float* din) {
        if (!m.units[l].starts_block || !din) return;
        const float* p = ws.pending[l].data();
        for (int64_t i = 0; i < int64_t(B) * m.units[l].I; i++) din[i] += p[i];
    };
    for (size_t l = L; l-- > 0;) {
        const DenseUnit& u = m.units[l];
        const int64_t n = int64_t(B) * u.O;
        float* din = l > 0 ? dA : dx;
        if (u.kind == UnitKind::Dropout) {
            k.act_backward(dV, dA, ws.v[l].data(), ws.a[l].data(), n, u.act, u.alpha);
            if (dx) std::copy(dV, dV + n, din ? din : dA);
            else dropout_apply(u, din ? din : dA, dV, B, 1, int(sample_base), m.seed, m.step, uint32_t(l));
            join_skip(l, din);
            continue;
        }
        if (u.kind == UnitKind::BatchNorm && dx) {  // inference mode: an affine map per channel
            k.act_backward(dV, dA, ws.v[l].data(), ws.a[l].data(), n, u.act, u.alpha);
            const int C = u.g.Co;
            const float* gain = theta + u.w_off;
            for (int64_t i = 0; i < n; i++) dA[i] = dV[i] * gain[i % C] / std::sqrt((*u.running)[size_t(C + i % C)] + 1e-5f);
            if (l == 0) std::copy(dA, dA + n, dx);
            join_skip(l, din);
            continue;
        }
        if (u.kind == UnitKind::Concat) {  // split: f's part goes on, the block input's part waits at the block's start
            k.act_backward(dV, dA, ws.v[l].data(), ws.a[l].data(), n, u.act, u.alpha);
            concat_backward(u, dV, din ? din : dA, ws.pending[size_t(u.skip_from)].data(), B);
            continue;
        }
        if (u.skip_from >= 0 && u.kind != UnitKind::Concat) {  // through post_act to the sum; the sum's gradient also waits at the block's start
            k.act_backward(dA, dA, ws.sum[l].data(), ws.a[l].data(), n, u.post_act, u.post_alpha);
            std::copy(dA, dA + n, ws.pending[size_t(u.skip_from)].data());
            k.act_backward(dV, dA, ws.v[l].data(), ws.inner[l].data(), n, u.act, u.alpha);
        } else {
            k.act_backward(dV, dA, ws.v[l].data(), ws.a[l].data(), n, u.act, u.alpha);
        }
        const float* a_prev = input_of(l);
        const SeqCtx sq = ctx(l);
        unit_backward(k, u, theta, a_prev, B, dV, u.param() ? m.grads.data() + u.w_off : nullptr, din, ws.cols.data(), &sq);
        join_skip(l, din);  // (a concat unit cannot start a block: it is never l here)
    }
    return {};
}

Status net_ulr_gradients(Model& m, const float* x, const Targets& y, int B, const UlrConfig& c, uint32_t step,
                         StepStats* stats, const LossHook* hook) {
    const KernelTable& k = *m.k;
    const int K = c.copies;
    int R = 0;
    OF_TRY(step_rows(B, K, &R));
    const int L = int(m.units.size());
    const int C = m.outputs;
    if (m.has_quant) OF_TRY(m.ws.eff.reserve(size_t(m.n_params)));
    const float* theta = m.effective(m.params->data(), m.ws.eff);
    const uint64_t seed = c.has_seed ? c.seed : m.seed;
    auto noise = [&](int l, int row0) {
        NoiseSpec ns{seed, step, uint32_t(l), c.sample_base * uint32_t(K) + uint32_t(row0), c.antithetic, c.density, 0u};
        if (c.slice_total) ns.slice_local = uint32_t(K), ns.slice_total = c.slice_total, ns.slice_offset = c.slice_offset;
        return ns;
    };
    const bool plain_score = c.density == Density::Normal && c.score == Score::Exact;

    // per noisy unit: its sigma; dense and conv units also their bias and sigma as one value per output (conv: per
    // channel, repeated) for the fused noisy kernel. Recurrent units add noise inside their recurrence.
    // frozen units (fine-tuning) stay clean and run in the B-row prefix: noise starts after them
    int first = -1;
    const int fe = m.frozen_end();
    std::vector<float> sigma(size_t(L), 0.0f);
    std::vector<std::vector<float>> bias_row(static_cast<size_t>(L)), sig_row(static_cast<size_t>(L));
    for (int l = 0, p = 0; l < L; l++) {
        const DenseUnit& u = m.units[size_t(l)];
        if (!u.param()) continue;
        if (l < fe) {
            p++;
            continue;
        }
        if (first < 0) first = l;
        sigma[size_t(l)] = c.sigma.size() == 1 ? c.sigma[0] : c.sigma[size_t(p)];
        p++;
        if (u.recurrent()) continue;
        bias_row[size_t(l)].resize(size_t(u.O));
        unit_bias_row(u, theta, bias_row[size_t(l)].data());
        sig_row[size_t(l)].assign(size_t(u.O), sigma[size_t(l)]);
    }
    OF_CHECK(first >= 0, Config, "the model has no layer with parameters to train");
    const DenseUnit& u0 = m.units[size_t(first)];
    // The first noisy unit's input is clean: a dense or conv unit runs its linear part once per sample; a recurrent
    // one (noise inside its recurrence) runs per copy, but its input projections X W^T are computed once per sample
    // and its W gradient is reduced over copies first (G = sum_k w S, then G^T X over B T rows).
    const bool shared = !u0.recurrent();
    const bool seq0 = u0.recurrent();
    const int GH0 = seq0 ? u0.q.G * u0.q.H : 0;
    auto& ws = m.ws;

    // batchNorm: the noisy copies normalize with the clean batch's statistics (a clean B-row forward, 1/K of the
    // noisy pass), as the paper's code keeps batch norm in evaluation mode in its noisy passes
    if (m.has_batch_norm) OF_TRY(bp_forward(m, x, B, false, c.sample_base));
    // the clean prefix on B rows: parameter-free units before the first noisy unit, then (shared) its linear part
    ws.a.resize(size_t(L));
    const int64_t pw = std::max<int64_t>(m.patch_width(), 1);
    OF_TRY(ws.cols.reserve(size_t(B) * size_t(pw)));
    OF_TRY(ws.seq.reserve(size_t(B) * size_t(std::max<int64_t>(m.seq_scratch_width(), 1))));
    const SeqCtx prefix_ctx{nullptr, ws.seq.data(), nullptr, nullptr};
    const float* in0 = x;
    for (int l = 0; l < first; l++) {
        OF_TRY(ws.a[size_t(l)].reserve(size_t(B) * m.units[size_t(l)].O));
        const int s0 = m.units[size_t(l)].skip_from;
        if (m.units[size_t(l)].kind == UnitKind::BatchNorm) batch_norm_apply(m.units[size_t(l)], theta, in0, B, ws.a[size_t(l)].data());
        else if (m.units[size_t(l)].kind == UnitKind::Dropout) dropout_apply(m.units[size_t(l)], ws.a[size_t(l)].data(), in0, B, 1, int(c.sample_base), seed, step, uint32_t(l));
        else if (m.units[size_t(l)].kind == UnitKind::Concat) concat_forward(m.units[size_t(l)], ws.a[size_t(l)].data(), in0, s0 == 0 ? x : ws.a[size_t(s0 - 1)].data(), B, 1);
        else unit_linear(k, m.units[size_t(l)], theta, in0, B, ws.a[size_t(l)].data(), ws.cols.data(), &prefix_ctx);
        unit_bias_act(k, m.units[size_t(l)], theta, ws.a[size_t(l)].data(), ws.a[size_t(l)].data(), B);
        if (s0 >= 0 && m.units[size_t(l)].kind != UnitKind::Concat) residual_add(k, m.units[size_t(l)], ws.a[size_t(l)].data(), s0 == 0 ? x : ws.a[size_t(s0 - 1)].data(), B, 1);
        in0 = ws.a[size_t(l)].data();
    }
    if (shared) {
        OF_TRY(ws.v0.reserve(size_t(B) * u0.O));
        OF_TRY(ws.g.reserve(size_t(B) * u0.O));
        if (u0.kind == UnitKind::BatchNorm) batch_norm_apply(u0, theta, in0, B, ws.v0.data());
        else unit_linear(k, u0, theta, in0, B, ws.v0.data(), ws.cols.data());
    } else {  // X W^T of every sample and step: (B T, F) x (G H, F)^T
        OF_TRY(ws.v0.reserve(size_t(B) * u0.noise_width()));
        OF_TRY(ws.g.reserve(size_t(B) * u0.noise_width()));
        k.gemm_nt(ws.v0.data(), in0, theta + u0.w_off, B * u0.q.T, GH0, u0.q.F, 1.0f, 0.0f);
    }

    const int S = lr_block_samples(K);
    const int T = (B + S - 1) / S;
    int64_t partial_size = 0;
    std::vector<int64_t> partial_off(size_t(L), 0);
    for (int l = shared ? first + 1 : first; l < L; l++)
        if (m.units[size_t(l)].param()) partial_off[size_t(l)] = partial_size, partial_size += param_size(m.units[size_t(l)]);
    OF_TRY(ws.partials.reserve(size_t(T) * size_t(std::max<int64_t>(partial_size, 1))));
    float* partials = ws.partials.data();
    std::vector<double> loss_sum(size_t(T), 0.0);
    std::vector<int64_t> correct(size_t(T), 0);
    std::vector<Status> status(static_cast<size_t>(T));
    const float inv_r = 1.0f / float(R);
    const int64_t max_pos = m.max_positions();
    float* hook_loss = nullptr;

    auto block = [&](int t, bool forward_only) {
        NetScratch& sc = thread_scratch<NetScratch>();
        const int b0 = t * S, s = std::min(S, B - b0), rows = s * K, r0 = b0 * K;
        Status& st = status[size_t(t)];
        sc.a.resize(size_t(L)), sc.e.resize(size_t(L));
        for (int l = first; l < L && st.ok(); l++) {
            st = sc.a[size_t(l)].reserve(size_t(rows) * m.units[size_t(l)].O);
            if (st.ok() && m.units[size_t(l)].param()) st = sc.e[size_t(l)].reserve(size_t(rows) * m.units[size_t(l)].noise_width());
        }
        if (st.ok()) st = sc.loss.reserve(size_t(rows));
        if (st.ok()) st = sc.w.reserve(size_t(rows));
        if (st.ok()) st = sc.cols.reserve(size_t(rows) * size_t(pw));
        if (st.ok()) st = sc.wexp.reserve(size_t(rows) * size_t(max_pos));
        if (st.ok()) st = reserve_seq(m, sc.aux, sc.seq, rows, first);
        if (!st.ok()) return;

        auto input = [&](int l) { return l == first ? nullptr : sc.a[size_t(l - 1)].data(); };
        if (shared) {
            k.noisy_bias_act_forward(sc.a[size_t(first)].data(), sc.e[size_t(first)].data(), ws.v0.data() + int64_t(b0) * u0.O,
                                     bias_row[size_t(first)].data(), sig_row[size_t(first)].data(), rows, u0.O, K, u0.act,
                                     u0.alpha, noise(first, r0));
        }
        // a residual block's end adds its input: from the B-row prefix (row r / K) when the block starts at or before
        // the first noisy unit, else from the block's rows
        auto skip = [&](int l) {
            const DenseUnit& u = m.units[size_t(l)];
            if (u.skip_from < 0 || u.kind == UnitKind::Concat) return;
            const int s0 = u.skip_from;
            if (s0 <= first) residual_add(k, u, sc.a[size_t(l)].data(), (s0 == 0 ? x : ws.a[size_t(s0 - 1)].data()) + int64_t(b0) * u.O, rows, K);
            else residual_add(k, u, sc.a[size_t(l)].data(), sc.a[size_t(s0 - 1)].data(), rows, 1);
        };
        if (shared) skip(first);
        for (int l = shared ? first + 1 : first; l < L; l++) {
            const DenseUnit& u = m.units[size_t(l)];
            float* a = sc.a[size_t(l)].data();
            const SeqCtx sq{sc.aux[size_t(l)].data(), sc.seq.data(), nullptr, nullptr};
            if (u.kind == UnitKind::Dropout) {  // one mask per sample, shared by its copies
                dropout_apply(u, a, input(l), rows, K, int(c.sample_base) + b0, seed, step, uint32_t(l));
                unit_bias_act(k, u, theta, a, a, rows);
                skip(l);
                continue;
            }
            if (u.kind == UnitKind::Concat) {
                const int s0 = u.skip_from;
                if (s0 <= first) concat_forward(u, a, input(l), (s0 == 0 ? x : ws.a[size_t(s0 - 1)].data()) + int64_t(b0) * m.units[size_t(s0)].I, rows, K);
                else concat_forward(u, a, input(l), sc.a[size_t(s0 - 1)].data(), rows, 1);
                unit_bias_act(k, u, theta, a, a, rows);
                continue;
            }
            if (u.recurrent()) {  // noise on every gate at every step, inside the recurrence
                k.noise_fill(sc.e[size_t(l)].data(), rows, u.noise_width(), noise(l, r0));
                seq_forward(k, u, theta, input(l), rows, a, sc.aux[size_t(l)].data(), sc.e[size_t(l)].data(), sigma[size_t(l)],
                            sc.seq.data(), l == first ? ws.v0.data() + int64_t(b0) * u.noise_width() : nullptr, K);
                unit_bias_act(k, u, theta, a, a, rows);
            } else {
                if (u.kind == UnitKind::BatchNorm) batch_norm_apply(u, theta, input(l), rows, a);
                else unit_linear(k, u, theta, input(l), rows, a, sc.cols.data(), &sq);
                if (u.param())
                    k.noisy_bias_act_forward(a, sc.e[size_t(l)].data(), a, bias_row[size_t(l)].data(), sig_row[size_t(l)].data(), rows,
                                             u.O, 1, u.act, u.alpha, noise(l, r0));
                else
                    unit_bias_act(k, u, theta, a, a, rows);
            }
            skip(l);
        }
        const float* out = sc.a[size_t(L - 1)].data();
        if (forward_only) {
            std::copy(out, out + int64_t(rows) * C, ws.outputs.data() + int64_t(r0) * C);
            return;
        }
        loss_sum[size_t(t)] = block_losses(m, y, out, b0, s, K, r0, hook_loss, sc.loss.data(), &correct[size_t(t)]);
        float* running = sc.wexp.data();  // the running baseline per sample (earlier steps only)
        if (c.baseline == Baseline::Running) std::fill(running, running + s, m.has_running ? float(m.running_loss) : 0.0f);
        float* w = sc.w.data();
        k.lr_row_weights(w, sc.loss.data(), running, s, K, c.baseline, c.antithetic, inv_r);
        for (int l = first; l < L; l++) {
            const DenseUnit& u = m.units[size_t(l)];
            if (!u.param()) continue;
            float* e = sc.e[size_t(l)].data();
            if (!plain_score) k.score_transform(e, int64_t(rows) * u.noise_width(), c.density, c.score);
            if (l == first && shared) {
                k.lr_copy_sum(ws.g.data() + int64_t(b0) * u.O, w, e, s, K, u.O);
                continue;
            }
            float* p = partials + int64_t(t) * partial_size + partial_off[size_t(l)];
            if (l == first)  // the W part over copies first; U and b per row below
                k.lr_copy_sum(ws.g.data() + int64_t(b0) * u.noise_width(), w, e, s, K, u.noise_width());
            if (u.recurrent())
                seq_reduce(k, u, input(l), rows, sc.aux[size_t(l)].data(), e, w, 1.0f / sigma[size_t(l)], p, sc.wexp.data(), l != first);
            else
                unit_lr_reduce(k, u, input(l), rows, e, w, 1.0f / sigma[size_t(l)], p, p + int64_t(u.gemm_cols()) * u.fan_in(),
                               sc.cols.data(), sc.wexp.data());
        }
    };
    const int64_t cycles = int64_t(R) * m.max_width() * 8;
    OF_TRY(run_loss_hook(m, hook, y, R, K, T, status, cycles, [&](int t) { block(t, true); }, &hook_loss));
    ThreadPool::instance().parallel_for(T, [&](int t) { block(t, false); }, cycles);
    OF_CHECK(!ThreadPool::cancelled(), Abort, "training was cancelled");  // the blocks were skipped: sum nothing
    for (const Status& st : status) OF_TRY(st);

    float* grads = m.grads.data();
    for (int l = shared ? first + 1 : first; l < L; l++) {
        const DenseUnit& u = m.units[size_t(l)];
        if (!u.param()) continue;
        const int64_t skip = l == first ? int64_t(GH0) * u.q.F : 0;  // a first recurrent unit's W: from G below
        sum_block_partials(grads + u.w_off + skip, partials, partial_off[size_t(l)] + skip, partial_size, T, param_size(u) - skip);
    }
    if (seq0)  // dW = G^T X / sigma over the B T (sample, step) rows
        k.gemm_tn(grads + u0.w_off, ws.g.data(), in0, nullptr, GH0, u0.q.F, B * u0.q.T, 1.0f / sigma[size_t(first)], 0.0f);
    if (shared) {
        Buffer wexp;
        OF_TRY(wexp.reserve(size_t(B) * size_t(max_pos)));
        unit_lr_reduce(k, u0, in0, B, ws.g.data(), nullptr, 1.0f / sigma[size_t(first)], grads + u0.w_off,
                       grads + u0.w_off + int64_t(u0.gemm_cols()) * u0.fan_in(), ws.cols.data(), wexp.data());
    }
    finish_stats(m, c, loss_sum, correct, R, stats);
    return {};
}

}  // namespace of
