// Exact backpropagation: the baseline every estimate is measured against, in the same engine; and BP over a range of
// units, which local module training (ulr_modules.cpp) runs inside each module: BP's walks (bp_walk.h, the math) on the
// CPU's tape, each layer kind's map through model/units.h. step and sign have no derivative: such models are refused
// (use ulr()).
#include <algorithm>
#include <string>

#include "device/ops_norm.h"
#include "estimators/bp.h"
#include "estimators/bp_walk.h"
#include "estimators/estimator.h"
#include "model/units.h"

namespace of {
namespace {

// The CPU engine of BP's walks (bp_walk.h): the tape t, mode's training behaviour; dest(l): where unit l's parameter
// gradient goes (overwritten; nullptr: none wanted).
struct CpuBp {
    const Model& m;
    const float* theta;
    const BpTape& t;
    const BpMode& mode;
    int rows;
    const std::function<float*(int)>* dest = nullptr;
    float* v(int l) const { return t.v[size_t(l)].data(); }
    float* a(int l) const { return t.a[size_t(l)].data(); }
    float* inner(int l) const { return t.inner[size_t(l)].data(); }
    float* sum(int l) const { return t.sum[size_t(l)].data(); }
    float* pending(int l) const { return t.pending[size_t(l)].data(); }
    SeqCtx seq(int l) const { return {t.aux[size_t(l)].data(), t.seq.data(), t.dP.data(), t.wexp.data()}; }
    TrainCtx train(int l, const float* skip) const {  // skip: a concat unit's block input
        return {skip, 1, mode.rep, mode.sample0, mode.seed, mode.step, uint32_t(l), mode.stats == BpMode::Stats::Batch};
    }
    Status forward(int l, const float* in, const float* skip, float* v, float* act) const {
        const Unit& u = m.units[size_t(l)];
        const SeqCtx sq = seq(l);
        // inference: dropout is the identity, batchNorm uses its running statistics; a concat unit still joins
        if (mode.inference() && !u.concat()) unit_linear(*m.k, u, theta, in, rows, v, t.cols.data(), &sq);
        else unit_train_linear(*m.k, u, theta, in, rows, v, t.cols.data(), &sq, train(l, skip));
        if (mode.sigma > 0.0f && u.param()) {  // noise injection: ULR's noise rows (sample, unit, value), K = 1
            float* e = t.d0.data();            // backward scratch, free during the forward
            m.k->noise_fill(e, rows, u.O, NoiseSpec{mode.seed, mode.step, uint32_t(l), uint32_t(mode.sample0), false});
            for (int64_t i = 0; i < int64_t(rows) * u.O; i++) v[i] += mode.sigma * e[i];
        }
        unit_bias_act(*m.k, u, theta, act, v, rows);
        return {};
    }
    Status residual(const Unit& u, const float* inner, const float* src, float* sum, float* a, int rows) const {
        for (int64_t i = 0; i < int64_t(rows) * u.O; i++) sum[i] = inner[i] + src[i];
        m.k->bias_act_forward(a, sum, nullptr, rows, u.O, u.post_act, u.post_alpha);
        return {};
    }
    Status act_backward(float* dv, const float* da, const float* v, const float* a, int64_t n, Act act,
                        float alpha) const {
        m.k->act_backward(dv, da, v, a, n, act, alpha);
        return {};
    }
    // With its statistics held (Fixed, Running) batchNorm is the affine map per channel gain (x - mean) / sqrt(var +
    // eps): din = dv gain / sqrt(var + eps), and gain and bias take the same gradients. A concat unit splits dv.
    Status backward(int l, const float* in, const float* dv, float* din) const {
        const Unit& u = m.units[size_t(l)];
        const SeqCtx sq = seq(l);
        float* dW = u.param() && dest ? (*dest)(l) : nullptr;
        if (u.concat()) {
            if (din) concat_backward(u, dv, din, pending(u.skip_from), rows);
        } else if (!u.running || mode.stats == BpMode::Stats::Batch) {  // running: a unit with batch statistics
            if (mode.inference()) unit_backward(*m.k, u, theta, in, rows, dv, dW, din, t.cols.data(), &sq);
            else unit_train_backward(*m.k, u, theta, in, rows, dv, dW, din, t.cols.data(), &sq, train(l, nullptr));
        } else {
            if (dW && !mode.inference()) unit_backward(*m.k, u, theta, in, rows, dv, dW, nullptr, t.cols.data(), &sq);
            if (!din) return {};
            const dev::BatchApplyArgs ba{
                din, dv, (mode.inference() ? *u.running : *u.batch).data(), theta + u.w_off, 0, u.g.Co, 1};
            for (int64_t i = 0; i < int64_t(rows) * u.O; i++) dev::bn_held_backward_at(ba, i);
        }
        return {};
    }
    Status add(float* y, const float* x, int64_t n) const {
        for (int64_t i = 0; i < n; i++) y[i] += x[i];
        return {};
    }
};

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
    (void)bp_walk_forward(CpuBp{m, theta, t, mode, rows}, m, s, e, x, rows);  // the CPU's operations return {}
}

void bp_range_backward(const Model& m, const float* theta, const BpTape& t, const BpMode& mode, int s, int e,
                       const float* x, int rows, const std::function<float*(int)>& dest, float* dx) {
    (void)bp_walk_backward(CpuBp{m, theta, t, mode, rows, &dest}, m, s, e, x, rows, t.d0.data(), t.d1.data(), dx);
}

void bp_input_gradient(const Model& m, const float* theta, const BpTape& t, const BpMode& mode, int l, const float* in,
                       int rows, const float* dv, float* din) {
    const Unit& u = m.units[size_t(l)];
    // a recurrent unit: din (rows T, F) = dv (rows T, G H) W (G H, F)
    if (u.recurrent()) m.k->gemm_nn(din, dv, theta + u.w_off, rows * u.q.T, u.q.F, u.q.G * u.q.H, 1.0f, 0.0f);
    else (void)CpuBp{m, theta, t, mode, rows}.backward(l, in, dv, din);
}

Status bp_forward_loss(Model& m, const float* x, const Targets& y, int B, const BpMode& mode, StepStats* stats,
                       const float** theta) {
    const KernelTable& k = *m.k;
    const int L = int(m.units.size());
    auto& ws = m.ws;
    if (m.has_quant) OF_TRY(ws.eff.reserve(size_t(m.n_params)));
    *theta = m.effective(m.params->data(), ws.eff);
    const BpTape t = workspace_tape(ws);
    OF_TRY(bp_tape_reserve(m, t, B, 0, L));
    OF_TRY(ws.loss.reserve(size_t(B)));
    bp_range_forward(m, *theta, t, mode, 0, L, x, B);
    const float* out = ws.a[size_t(L - 1)].data();
    stats->correct = k.loss_forward(ws.loss.data(), out, y.labels, y.values, B, m.outputs, 1, m.loss, m.groups);
    double sum = 0.0;
    for (int r = 0; r < B; r++) sum += ws.loss.data()[r];
    stats->loss = sum / B;
    stats->rows = B;
    k.loss_backward(ws.d0.data(), out, y.labels, y.values, B, m.outputs, m.loss, m.groups);
    return {};
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
    // training mode, but not for input gradients (attacks see the deployed model)
    const BpMode mode{dx ? BpMode::Stats::Running : BpMode::Stats::Batch, m.seed, m.step, int(sample_base), 1, sigma};
    const float* theta = nullptr;
    OF_TRY(bp_forward_loss(m, x, y, B, mode, stats, &theta));
    bp_range_backward(
        m, theta, workspace_tape(m.ws), mode, 0, int(m.units.size()), x, B,
        [&](int l) { return m.grads.data() + m.units[size_t(l)].w_off; }, dx);
    return {};
}

}  // namespace of
