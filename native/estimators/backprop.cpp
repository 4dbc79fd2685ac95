// Exact backpropagation: the baseline every estimate is measured against, in the same engine; and BP over a range of
// units, which local module training (hybrid.cpp) runs inside each module.
//   forward:  V_l = A_{l-1} W_l^T + b_l,  A_l = phi(V_l)           (rows, O_l) each, kept for the backward
//   backward: dV_l = dA_l * phi'(V_l);  dW_l = dV_l^T A_{l-1};  db_l = colsum(dV_l);  dA_{l-1} = dV_l W_l
// (each layer kind's own map in place of the GEMM: model/units.h). step and sign have no derivative: such models are
// refused (use ulr()).
#include <algorithm>
#include <climits>
#include <cmath>
#include <string>

#include "core/shape.h"
#include "device/ops_norm.h"
#include "estimators/bp.h"
#include "estimators/estimator.h"
#include "model/units.h"

namespace of {
namespace {

SeqCtx seq_ctx(const BpTape& t, int l) {
    return SeqCtx{t.aux[size_t(l)].data(), t.seq.data(), t.dP.data(), t.wexp.data()};
}

// Unit l's training context in this mode (skip: its block's input, for a concat unit).
TrainCtx train_ctx(const BpMode& mode, int l, const float* skip) {
    return {skip, 1, mode.rep, mode.sample0, mode.seed, mode.step, uint32_t(l), mode.stats == BpMode::Stats::Batch};
}

// Unit u's parameter gradient (dW, nullptr: none) and input gradient (din, nullptr: none) from dv at its
// pre-activation, in training mode but in inference (dropout's mask). batchNorm with its statistics held constant is
// the affine map per channel gain (x - mean) / sqrt(var + eps): its input gradient is dv gain / sqrt(var + eps); gain
// and bias take the same gradients with any statistics held.
void unit_grads(const KernelTable& k, const Unit& u, const float* theta, const BpMode& mode, const TrainCtx& tc,
                const float* in, int rows, const float* dv, float* dW, float* din, float* cols, const SeqCtx* sq) {
    if (!u.running || mode.stats == BpMode::Stats::Batch) {  // running: a unit with batch statistics
        if (mode.inference()) unit_backward(k, u, theta, in, rows, dv, dW, din, cols, sq);
        else unit_train_backward(k, u, theta, in, rows, dv, dW, din, cols, sq, tc);
        return;
    }
    if (dW && !mode.inference()) unit_backward(k, u, theta, in, rows, dv, dW, nullptr, cols, sq);
    if (!din) return;
    const dev::BatchApplyArgs a{din,    dv, (mode.inference() ? *u.running : *u.batch).data(), theta + u.w_off, 0,
                                u.g.Co, 1};
    for (int64_t i = 0; i < int64_t(rows) * u.O; i++) dev::bn_held_backward_at(a, i);
}

}  // namespace

Status bp_tape_reserve(const Model& m, const BpTape& t, int rows, int s, int e) {
    const size_t L = m.units.size();
    for (auto* v : {&t.v, &t.a, &t.aux, &t.inner, &t.sum, &t.pending}) v->resize(L);
    for (int l = s; l < e; l++) {
        const Unit& u = m.units[size_t(l)];
        OF_TRY(t.v[size_t(l)].reserve(size_t(rows) * u.O));
        OF_TRY(t.a[size_t(l)].reserve(size_t(rows) * u.O));
        if (u.recurrent()) OF_TRY(t.aux[size_t(l)].reserve(size_t(rows) * size_t(seq_aux_width(u))));
        if (u.skip_from < 0) continue;
        OF_TRY(t.inner[size_t(l)].reserve(size_t(rows) * u.O));
        OF_TRY(t.sum[size_t(l)].reserve(size_t(rows) * u.O));
        OF_TRY(t.pending[size_t(u.skip_from)].reserve(size_t(rows) * m.units[size_t(u.skip_from)].I));
    }
    OF_TRY(t.d0.reserve(size_t(rows) * size_t(m.max_width())));
    OF_TRY(t.d1.reserve(size_t(rows) * size_t(m.max_width())));
    OF_TRY(t.cols.reserve(size_t(rows) * size_t(std::max<int64_t>(m.patch_width(), 1))));
    if (m.seq_scratch_width() == 0) return {};
    OF_TRY(t.seq.reserve(size_t(rows) * size_t(m.seq_scratch_width())));
    OF_TRY(t.dP.reserve(size_t(rows) * size_t(m.max_noise_width())));
    return t.wexp.reserve(size_t(rows) * size_t(m.max_positions()));
}

void bp_range_forward(const Model& m, const float* theta, const BpTape& t, const BpMode& mode, int s, int e,
                      const float* x, int rows) {
    const KernelTable& k = *m.k;
    auto input_of = [&](int l) { return l == s ? x : t.a[size_t(l - 1)].data(); };
    for (int l = s; l < e; l++) {
        const Unit& u = m.units[size_t(l)];
        const float* in = input_of(l);
        float* v = t.v[size_t(l)].data();
        float* a = t.a[size_t(l)].data();
        const SeqCtx sq = seq_ctx(t, l);
        const TrainCtx tc = train_ctx(mode, l, u.skip_from >= 0 ? input_of(u.skip_from) : nullptr);
        // inference: dropout is the identity, batchNorm uses its running statistics; a concat unit still joins
        if (mode.inference() && !u.concat()) unit_linear(k, u, theta, in, rows, v, t.cols.data(), &sq);
        else unit_train_linear(k, u, theta, in, rows, v, t.cols.data(), &sq, tc);
        if (mode.sigma > 0.0f && u.param()) {  // noise injection: ULR's noise rows (sample, unit, value), K = 1
            float* e = t.d0.data();            // backward scratch, free during the forward
            k.noise_fill(e, rows, u.O, NoiseSpec{mode.seed, mode.step, uint32_t(l), uint32_t(mode.sample0), false});
            for (int64_t i = 0; i < int64_t(rows) * u.O; i++) v[i] += mode.sigma * e[i];
        }
        if (!u.ends_residual()) {
            unit_bias_act(k, u, theta, a, v, rows);
            continue;
        }
        // a residual block's end: a = post_act(act(v) + block input)
        float* inner = t.inner[size_t(l)].data();
        float* sum = t.sum[size_t(l)].data();
        const float* src = input_of(u.skip_from);
        unit_bias_act(k, u, theta, inner, v, rows);
        for (int64_t i = 0; i < int64_t(rows) * u.O; i++) sum[i] = inner[i] + src[i];
        k.bias_act_forward(a, sum, nullptr, rows, u.O, u.post_act, u.post_alpha);
    }
}

void bp_range_backward(const Model& m, const float* theta, const BpTape& t, const BpMode& mode, int s, int e,
                       const float* x, int rows, const std::function<float*(int)>& dest, float* dx) {
    const KernelTable& k = *m.k;
    auto input_of = [&](int l) { return l == s ? x : t.a[size_t(l - 1)].data(); };
    float* dA = t.d0.data();
    float* dV = t.d1.data();
    // the skip path's gradient joins the input gradient of the unit that starts its block
    auto join_skip = [&](int l, float* din) {
        if (!m.units[size_t(l)].starts_block || !din) return;
        const float* p = t.pending[size_t(l)].data();
        for (int64_t i = 0; i < int64_t(rows) * m.units[size_t(l)].I; i++) din[i] += p[i];
    };
    for (int l = e; l-- > s;) {
        const Unit& u = m.units[size_t(l)];
        const int64_t n = int64_t(rows) * u.O;
        const float* v = t.v[size_t(l)].data();
        float* din = l > s ? dA : dx;
        if (u.concat()) {  // split: f's part goes on, the block input's part waits at the block's start
            k.act_backward(dV, dA, v, t.a[size_t(l)].data(), n, u.act, u.alpha);
            concat_backward(u, dV, din ? din : dA, t.pending[size_t(u.skip_from)].data(), rows);
            continue;
        }
        if (u.ends_residual()) {  // through post_act to the sum; the sum's gradient also waits at the block's start
            k.act_backward(dA, dA, t.sum[size_t(l)].data(), t.a[size_t(l)].data(), n, u.post_act, u.post_alpha);
            std::copy(dA, dA + n, t.pending[size_t(u.skip_from)].data());
            k.act_backward(dV, dA, v, t.inner[size_t(l)].data(), n, u.act, u.alpha);
        } else {
            k.act_backward(dV, dA, v, t.a[size_t(l)].data(), n, u.act, u.alpha);
        }
        const SeqCtx sq = seq_ctx(t, l);
        unit_grads(k, u, theta, mode, train_ctx(mode, l, nullptr), input_of(l), rows, dV, u.param() ? dest(l) : nullptr,
                   din, t.cols.data(), &sq);
        join_skip(l, din);  // (a concat unit cannot start a block: it is never l here)
    }
}

void bp_input_gradient(const Model& m, const float* theta, const BpTape& t, const BpMode& mode, int l, const float* in,
                       int rows, const float* dv, float* din) {
    const Unit& u = m.units[size_t(l)];
    if (u.recurrent()) {  // din (rows T, F) = dv (rows T, G H) W (G H, F)
        m.k->gemm_nn(din, dv, theta + u.w_off, rows * u.q.T, u.q.F, u.q.G * u.q.H, 1.0f, 0.0f);
        return;
    }
    const SeqCtx sq = seq_ctx(t, l);
    unit_grads(*m.k, u, theta, mode, train_ctx(mode, l, nullptr), in, rows, dv, nullptr, din, t.cols.data(), &sq);
}

Status bp_gradients(Model& m, const float* x, const Targets& y, int B, StepStats* stats, float* dx,
                    uint32_t sample_base, float sigma) {
    OF_CHECK(m.loss != LossKind::ZeroOne, Config,
             "the 0-1 loss has no gradient: backprop (and input gradients) need a differentiable loss");
    OF_CHECK(!dx || m.token_vocab == 0, Config,
             "input gradients are undefined for a model that reads token ids (its first layer is an embedding)");
    for (const Unit& u : m.units)
        OF_CHECK(act_differentiable(u.act), Config,
                 std::string("backprop cannot differentiate the '") + act_name(u.act) + "' activation");
    const KernelTable& k = *m.k;
    const int L = int(m.units.size());
    auto& ws = m.ws;
    if (m.has_quant) OF_TRY(ws.eff.reserve(size_t(m.n_params)));
    const float* theta = m.effective(m.params->data(), ws.eff);
    const BpTape t = workspace_tape(ws);
    OF_TRY(bp_tape_reserve(m, t, B, 0, L));
    OF_TRY(ws.loss.reserve(size_t(B)));
    // training mode, but not for input gradients (attacks see the deployed model)
    BpMode mode{dx ? BpMode::Stats::Running : BpMode::Stats::Batch, m.seed, m.step, int(sample_base), 1, sigma};
    bp_range_forward(m, theta, t, mode, 0, L, x, B);
    const float* out = ws.a[size_t(L - 1)].data();
    stats->correct = k.loss_forward(ws.loss.data(), out, y.labels, y.values, B, m.outputs, 1, m.loss, m.groups);
    double sum = 0.0;
    for (int r = 0; r < B; r++) sum += ws.loss.data()[r];
    stats->loss = sum / B;
    stats->rows = B;
    k.loss_backward(ws.d0.data(), out, y.labels, y.values, B, m.outputs, m.loss, m.groups);
    bp_range_backward(
        m, theta, t, mode, 0, L, x, B, [&](int l) { return m.grads.data() + m.units[size_t(l)].w_off; }, dx);
    return {};
}

}  // namespace of
