// Exact backpropagation: the baseline every estimate is measured against, in the same engine.
//   forward:  V_l = A_{l-1} W_l^T + b_l,  A_l = phi(V_l)           (B, O_l) each, kept for the backward
//   backward: dV_l = dA_l * phi'(V_l);  dW_l = dV_l^T A_{l-1};  db_l = colsum(dV_l);  dA_{l-1} = dV_l W_l
// step and sign have no derivative: such models are refused (use ulr()).
#include <algorithm>
#include <climits>
#include <cmath>
#include <string>

#include "core/shape.h"
#include "estimators/estimator.h"
#include "model/units.h"

namespace of {
namespace {

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

Status bp_gradients(Model& m, const float* x, const Targets& y, int B, StepStats* stats, float* dx, uint32_t sample_base) {
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

}  // namespace of
