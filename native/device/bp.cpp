// Backprop on the device, and its clean forward, which is also every other path's clean pass: batch statistics
// before ULR's noisy copies, the clean prefix, weight perturbation's losses, validation.
#include "device/unit_pass.h"
#include "estimators/bp_walk.h"

namespace of {

// The buffers of residual and concat blocks ending before unit `end`, for `rows` rows: at a block's end act(v) and the
// sum before post_act (inner_, sum_), at its start the skip gradient (skip_, for BP).
Status DeviceTrainer::reserve_blocks(const Model& m, int end, int64_t rows) {
    Device* d = dev_.get();
    grow(inner_, m.units.size()), grow(sum_, m.units.size()), grow(skip_, m.units.size());
    for (int l = 0; l < end; l++) {
        const Unit& u = m.units[size_t(l)];
        if (u.skip_from < 0) continue;
        OF_TRY(skip_[size_t(u.skip_from)]->reserve(d, size_t(rows) * m.units[size_t(u.skip_from)].I * sizeof(float)));
        if (!u.ends_residual()) continue;
        OF_TRY(inner_[size_t(l)]->reserve(d, size_t(rows) * u.O * sizeof(float)));
        OF_TRY(sum_[size_t(l)]->reserve(d, size_t(rows) * u.O * sizeof(float)));
    }
    return {};
}

// The clean forward of units [0, end) on B rows (every estimator's clean pass: BP's forward, ULR's clean prefix and
// batch statistics, module training's first module, validation) into BpEngine's tape; dropout's masks from (seed,
// step), samples from sample0.
Status DeviceTrainer::clean_forward(const Model& m, int end, int B, const float* x, uint32_t sample0, uint64_t seed,
                                    uint32_t step, bool tf32) {
    Device* d = dev_.get();
    const size_t L = m.units.size();
    grow(a_, L), grow(e_, L);
    for (int l = 0; l < end; l++) {
        OF_TRY(a_[size_t(l)]->reserve(d, size_t(B) * m.units[size_t(l)].O * sizeof(float)));
        OF_TRY(e_[size_t(l)]->reserve(d, size_t(B) * m.units[size_t(l)].O * sizeof(float)));
    }
    OF_TRY(reserve_blocks(m, end, B));
    auto pass_of = [&](int l) {
        UnitPass p = pass(m, l, B, tf32);
        p.batch_stats = !inference_, p.sample0 = sample0, p.seed = seed, p.step = step;
        return p;
    };
    return bp_walk_forward(BpEngine{*this, a_, pass_of}, m, 0, end, x, B);
}

// BP (backprop.cpp's math): the clean forward, the loss and its gradient, then the backward walk.
Status DeviceTrainer::bp(Model& m, int B, const float* x, uint32_t sample_base, bool forward_only) {
    Device* d = dev_.get();
    const int L = int(m.units.size()), C = m.outputs;
    const bool tf32 = tf32_for(EstimatorConfig::Kind::Bp);
    OF_TRY(loss_.reserve(d, size_t(B) * sizeof(float)));  // the callers of the forward alone read the losses too
    OF_TRY(hit_.reserve(d, size_t(B) * sizeof(int)));
    OF_TRY(clean_forward(m, L, B, x, sample_base, m.seed, m.step, tf32));
    if (forward_only) return {};
    OF_TRY(d0_.reserve(d, size_t(B) * m.max_width() * sizeof(float)));  // the walk's scratch, as the CPU's
    OF_TRY(d1_.reserve(d, size_t(B) * m.max_width() * sizeof(float)));
    const float* out = a_[size_t(L - 1)]->f();
    OF_TRY(d->loss_rows(
        dev::LossArgs{loss_.f(), hit_.as<int>(), out, labels_.as<int32_t>(), values_.f(), B, C, 1, m.loss, m.groups},
        B));
    OF_TRY(d->loss_grad(
        dev::LossArgs{d0_.f(), nullptr, out, labels_.as<int32_t>(), values_.f(), B, C, 1, m.loss, m.groups}, B));
    auto pass_of = [&](int l) {  // dropout: the model's seed and step counter, as backprop.cpp
        UnitPass p = pass(m, l, B, tf32);
        p.sample0 = sample_base, p.seed = m.seed, p.step = m.step;
        return p;
    };
    return bp_walk_backward(BpEngine{*this, a_, pass_of}, m, 0, L, x, B, d0_.f(), d1_.f(), nullptr);
}

}  // namespace of
