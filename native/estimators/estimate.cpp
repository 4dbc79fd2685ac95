// The entry of every gradient estimate: the estimator of the config's kind (bp, spsa / es, ulr with or without
// modules), with the frozen prefix (fine-tuning) honored. Frozen layers get zero gradients, and the optimizer updates
// only the trainable suffix of the parameter slab. ULR keeps frozen units clean itself (ulr.cpp); in a dense model the
// frozen stack's clean forward runs once per sample (B rows -- the shared-prefix rule for a whole frozen stack), then
// the estimator runs on the trainable rest as if it were the model, reading the frozen stack's output as its input
// (BP and SPSA / ES then neither backpropagate through nor perturb the frozen layers).
// The frozen ranges (Model::frozen_ranges: an adapter's base) get zero gradients after any estimator.
#include <algorithm>

#include "estimators/estimator.h"

namespace of {
namespace {

Status by_kind(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, uint32_t step,
               StepStats* stats, const LossHook* hook) {
    if (e.kind == EstimatorConfig::Kind::Bp)
        return bp_gradients(m, x, y, B, stats, nullptr, e.ulr.sample_base, e.bp.sigma);
    if (e.kind == EstimatorConfig::Kind::Spsa || e.kind == EstimatorConfig::Kind::Es)
        return perturbation_gradients(*cpu_perturbation(m, x, y, B, step), e, B, stats);
    return ulr_gradients(m, x, y, B, e.ulr, step, stats, hook);
}

}  // namespace

int64_t trainable_offset(const Model& m) {
    if (m.frozen <= 0) return 0;
    for (int l = m.frozen_end(); l < int(m.units.size()); l++)
        if (m.units[size_t(l)].param()) return m.units[size_t(l)].w_off;
    return m.n_params;
}

Status frozen_tail_config(size_t L, int f, UlrConfig* c) {
    OF_CHECK(!c->learn_sigma && !c->auto_copies, Config,
             "learnSigma and copies: 'auto' do not support frozen layers yet");
    OF_CHECK(c->blocks.empty(), Config, "blocks do not support frozen layers yet");
    auto tail = [&](auto& v) {
        if (v.size() == L) v.erase(v.begin(), v.begin() + f);
    };
    tail(c->sigma), tail(c->sigma_channels), tail(c->copies_per_layer);
    if (!c->modules.empty()) {  // modules inside the frozen prefix vanish, one across its end starts at it
        std::vector<int> ends;
        for (int e : c->modules)
            if (e > f) ends.push_back(e - f);
        c->modules = ends;
    }
    return {};
}

namespace {

Status with_frozen_prefix(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, uint32_t step,
                          StepStats* stats, const LossHook* hook) {
    const int f = m.frozen;
    if (f <= 0) return by_kind(m, x, y, B, e, step, stats, hook);
    if (!m.mlp) {  // ULR starts its noise after the frozen units; the others zero their gradients
        OF_CHECK(m.frozen < m.param_units(), Config, "every layer is frozen: nothing to train");
        OF_TRY(by_kind(m, x, y, B, e, step, stats, hook));
        std::fill(m.grads.data(), m.grads.data() + trainable_offset(m), 0.0f);
        return {};
    }
    const size_t L = m.units.size();
    OF_CHECK(f < int(L), Config, "every layer is frozen: nothing to train");
    const KernelTable& k = *m.k;
    // 1. the frozen stack, clean, on B rows
    Buffer a, b;
    int width = m.inputs;
    for (int l = 0; l < f; l++) width = std::max(width, m.units[size_t(l)].O);
    OF_TRY(a.reserve(size_t(B) * width));
    OF_TRY(b.reserve(size_t(B) * width));
    const float* in = x;
    float* cur = a.data();
    for (int l = 0; l < f; l++) {
        const Unit& u = m.units[size_t(l)];
        k.gemm_nt(cur, in, m.W(u), B, u.O, u.I, 1.0f, 0.0f);
        k.bias_act_forward(cur, cur, m.b(u), B, u.O, u.act, u.alpha);
        in = cur;
        cur = cur == a.data() ? b.data() : a.data();
    }
    // 2. the estimator on the trainable layers as a model of their own (offsets into the slab unchanged)
    EstimatorConfig sub = e;
    if (e.kind == EstimatorConfig::Kind::Ulr) OF_TRY(frozen_tail_config(L, f, &sub.ulr));
    std::vector<Unit> all = m.units;
    const int inputs = m.inputs;
    m.units.assign(all.begin() + f, all.end());
    m.inputs = m.units.front().I;
    m.frozen = 0;  // the tail is the whole model now
    Status st = validate_estimator(m, sub, hook);
    if (st.ok()) st = by_kind(m, in, y, B, sub, step, stats, hook);
    m.units = std::move(all);
    m.inputs = inputs;
    m.frozen = f;
    OF_TRY(st);
    std::fill(m.grads.data(), m.grads.data() + trainable_offset(m), 0.0f);
    return {};
}

}  // namespace

Status estimate(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, uint32_t step,
                StepStats* stats, const LossHook* hook) {
    OF_TRY(with_frozen_prefix(m, x, y, B, e, step, stats, hook));
    m.zero_frozen(m.grads.data());  // frozen ranges: units leave them stale (an adapter writes only its factors)
    return {};
}

}  // namespace of
