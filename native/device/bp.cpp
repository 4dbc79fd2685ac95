// Backprop on the device, and its clean forward, which is also every other path's clean pass: batch statistics
// before ULR's noisy copies, the clean prefix, weight perturbation's losses, validation.
#include <algorithm>

#include "device/unit_pass.h"

namespace of {

// The buffers of residual and concat blocks ending before unit `end`, for `rows` rows: at a block's end act(v) and the
// sum before post_act (inner_, sum_), at its start the skip gradient (skip_, for BP).
Status DeviceTrainer::reserve_blocks(const Model& m, int end, int64_t rows) {
    Device* d = dev_.get();
    while (inner_.size() < m.units.size())
        inner_.push_back(std::make_unique<DeviceBuffer>()), sum_.push_back(std::make_unique<DeviceBuffer>()),
            skip_.push_back(std::make_unique<DeviceBuffer>());
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
// batch statistics, module training's first module, validation): v in e_, the activations in a_, a residual block's
// act(v) and sum before post_act in inner_ and sum_; dropout's masks from (seed, step), samples from sample0.
Status DeviceTrainer::clean_forward(const Model& m, int end, int B, const float* x, uint32_t sample0, uint64_t seed,
                                    uint32_t step, bool tf32) {
    Device* d = dev_.get();
    const size_t L = m.units.size();
    while (a_.size() < L)
        a_.push_back(std::make_unique<DeviceBuffer>()), e_.push_back(std::make_unique<DeviceBuffer>());
    for (int l = 0; l < end; l++) {
        OF_TRY(a_[size_t(l)]->reserve(d, size_t(B) * m.units[size_t(l)].O * sizeof(float)));
        OF_TRY(e_[size_t(l)]->reserve(d, size_t(B) * m.units[size_t(l)].O * sizeof(float)));
    }
    OF_TRY(reserve_blocks(m, end, B));
    auto input = [&](int l) { return l == 0 ? x : a_[size_t(l - 1)]->f(); };
    for (int l = 0; l < end; l++) {
        const Unit& u = m.units[size_t(l)];
        UnitPass p = pass(m, l, B, tf32);
        p.batch_stats = !inference_, p.sample0 = sample0, p.seed = seed, p.step = step;
        if (u.skip_from >= 0) p.skip = input(u.skip_from);
        float* act = u.ends_residual() ? inner_[size_t(l)]->f() : a_[size_t(l)]->f();
        OF_TRY(forward_act(p, input(l), e_[size_t(l)]->f(), act));
        if (u.ends_residual())  // a = post_act(act(v) + block input)
            OF_TRY(d->skip_add(dev::SkipArgs{a_[size_t(l)]->f(), sum_[size_t(l)]->f(), act, input(u.skip_from), u.O, 1,
                                             u.post_act, u.post_alpha},
                               int64_t(B) * u.O));
    }
    return {};
}

// BP (backprop.cpp's math): the clean forward, the loss and its gradient, then bp_backward.
Status DeviceTrainer::bp(Model& m, int B, const float* x, uint32_t sample_base, bool forward_only) {
    Device* d = dev_.get();
    const int L = int(m.units.size()), C = m.outputs;
    const bool tf32 = tf32_for(EstimatorConfig::Kind::Bp);
    OF_TRY(loss_.reserve(d, size_t(B) * sizeof(float)));  // the callers of the forward alone read the losses too
    OF_TRY(hit_.reserve(d, size_t(B) * sizeof(int)));
    OF_TRY(clean_forward(m, L, B, x, sample_base, m.seed, m.step, tf32));
    if (forward_only) return {};
    int64_t width = m.inputs, patches = 1;
    for (const Unit& u : m.units) {
        width = std::max<int64_t>(width, std::max(u.I, u.O));
        if (u.convlike()) patches = std::max<int64_t>(patches, u.g.positions() * u.g.patch());
    }
    OF_TRY(d0_.reserve(d, size_t(B) * width * sizeof(float)));
    OF_TRY(d1_.reserve(d, size_t(B) * width * sizeof(float)));
    OF_TRY(dcols_.reserve(d, size_t(B) * patches * sizeof(float)));
    const float* out = a_[size_t(L - 1)]->f();
    OF_TRY(d->loss_rows(
        dev::LossArgs{loss_.f(), hit_.as<int>(), out, labels_.as<int32_t>(), values_.f(), B, C, 1, m.loss, m.groups},
        B));
    OF_TRY(d->loss_grad(
        dev::LossArgs{d0_.f(), nullptr, out, labels_.as<int32_t>(), values_.f(), B, C, 1, m.loss, m.groups}, B));
    auto input = [&](int l) { return l == 0 ? x : a_[size_t(l - 1)]->f(); };
    // dropout: the model's seed and step counter, as backprop.cpp; a concat unit: its block's input and its gradient
    auto pass_of = [&](int l) {
        UnitPass p = pass(m, l, B, tf32);
        p.sample0 = sample_base, p.seed = m.seed, p.step = m.step;
        if (p.u.skip_from >= 0) p.skip = input(p.u.skip_from), p.skip_grad = skip_[size_t(p.u.skip_from)]->f();
        return p;
    };
    const BpView tape{input, [&](int l) { return e_[size_t(l)]->f(); }, [&](int l) { return a_[size_t(l)]->f(); },
                      pass_of};
    return bp_backward(m, 0, L, tape, d0_.f(), d1_.f());
}

Status DeviceTrainer::bp_backward(const Model& m, int s, int e, const BpView& t, float* dcur, float* dnext) {
    Device* d = dev_.get();
    auto pending = [&](int l) { return skip_[size_t(l)]->f(); };  // a block start's skip gradient
    for (int l = e - 1; l >= s; l--) {
        const UnitPass p = t.pass(l);
        const Unit& u = p.u;
        const int64_t values = int64_t(p.rows) * u.O;
        if (u.ends_residual()) {  // through post_act to the sum, which is also the skip path's gradient
            OF_TRY(d->act_backward(dev::ActBackArgs{dcur, dcur, sum_[size_t(l)]->f(), t.a(l), u.post_act, u.post_alpha},
                                   values));
            OF_TRY(d->add(dev::AddArgs{pending(u.skip_from), dcur, 0}, values));
        }
        const float* act = u.ends_residual() ? inner_[size_t(l)]->f() : t.a(l);
        OF_TRY(d->act_backward(dev::ActBackArgs{dcur, dcur, t.v(l), act, u.act, u.alpha}, values));
        OF_TRY(backward(p, t.in(l), dcur, 1.0f, u.param(), l > s ? dnext : nullptr));
        if (l == s) break;
        if (m.units[size_t(l)].starts_block)  // the skip gradient joins the input gradient of the block's first unit
            OF_TRY(d->add(dev::AddArgs{dnext, pending(l), 1}, int64_t(p.rows) * u.I));
        std::swap(dcur, dnext);
    }
    return {};
}

}  // namespace of
