// A unit kind's passes on the device: the entries its file in native/units/ defines beside its CPU ops and names in
// UnitKind::device (nullptr: the device does not run the kind), launching its kernels (device/ops_*.h). BP, ULR and
// module training run every unit through them (unit_passes.cpp). Entries left out make a GEMM unit: v = X W^T in its
// GEMM view (Unit::gemm_rows, gemm_cols, fan_in), X its input or the patches gathered from it.
#pragma once
#include <functional>

#include "device/trainer.h"

namespace of {

// One unit's pass on `rows` rows.
struct UnitPass {
    DeviceTrainer& t;
    Device* d;
    const Model& m;
    const Unit& u;
    int l, rows;
    bool tf32;
    bool batch_stats = false;  // batchNorm: this batch's statistics from x first (a training step's clean forward)
    bool held_stats = false;   // batchNorm's BP with its statistics held constant (module training)
    // dropout: row r is sample sample0 + r / rep of the step's masks (seed, step)
    int rep = 1;
    uint32_t sample0 = 0, step = 0;
    uint64_t seed = 0;
    const float* skip = nullptr;  // a concat unit: the block's input (row r reads row r / skip_rep) ...
    int skip_rep = 1;
    float* skip_grad = nullptr;  // ... and its gradient (BP)
    DeviceBuffer& buffer(int slot) const { return t.unit_buffer(l, slot); }
    const float* weights() const { return t.theta() + u.w_off; }  // the forward's
    int64_t values() const { return int64_t(rows) * u.O; }        // of its output
};

// The device engine of BP's walks (estimators/bp_walk.h): the tape in e_ (v), out (a_, or a module's copy rows ga_),
// inner_, sum_ and skip_ (pending); pass(l): unit l's pass (its rows, dropout's masks, batchNorm's statistics).
struct DeviceTrainer::BpEngine {
    DeviceTrainer& t;
    std::vector<std::unique_ptr<DeviceBuffer>>& out;
    std::function<UnitPass(int)> pass;
    float* v(int l) const { return t.e_[size_t(l)]->f(); }
    float* a(int l) const { return out[size_t(l)]->f(); }
    float* inner(int l) const { return t.inner_[size_t(l)]->f(); }
    float* sum(int l) const { return t.sum_[size_t(l)]->f(); }
    float* pending(int l) const { return t.skip_[size_t(l)]->f(); }
    Status forward(int l, const float* in, const float* skip, float* v, float* act) const {
        UnitPass p = pass(l);
        p.skip = skip;
        return t.forward_act(p, in, v, act);
    }
    Status residual(const Unit& u, const float* inner, const float* src, float* sum, float* a, int rows) const {
        return t.dev_->skip_add(dev::SkipArgs{a, sum, inner, src, u.O, 1, u.post_act, u.post_alpha},
                                int64_t(rows) * u.O);
    }
    Status act_backward(float* dv, const float* da, const float* v, const float* a, int64_t n, Act act,
                        float alpha) const {
        return t.dev_->act_backward(dev::ActBackArgs{dv, da, v, a, act, alpha}, n);
    }
    Status backward(int l, const float* in, const float* dv, float* din) const {
        UnitPass p = pass(l);
        if (p.u.skip_from >= 0) p.skip_grad = pending(p.u.skip_from);  // a concat unit splits dv into it
        return t.backward(p, in, dv, 1.0f, p.u.param(), din);
    }
    Status add(float* y, const float* x, int64_t n) const { return t.dev_->add(dev::AddArgs{y, x, 1}, n); }
};

// What module training (ulr_modules.cpp) asks of the group runner: a boundary's reduction (weights false: the copy
// sum G of the first alone), a unit's pass on `rows` rows with dropout's rows `rep` per sample, and a noisy unit's
// score scale alpha (1 / sigma, or 1 with per-channel sigma).
struct ModulePasses {
    std::function<Status(int l, bool weights)> reduce;
    std::function<UnitPass(int l, int rows, int rep)> pass;
    std::function<float(int l)> alpha;
};

struct DeviceUnitOps {
    bool pipelines;  // its passes keep no state outside the trainer's activations and patches: pipelined modules
    // v (rows, O): the pre-activation without bias (a unit with parameters) or the output (without) from x
    Status (*forward)(const UnitPass& p, const float* x, float* v);
    // from dv at its pre-activation: with `weights`, its parameters' gradients times alpha into the slab; with din,
    // the gradient at its input x (BP asks for both, ULR's reduction for the first, module training for each)
    Status (*backward)(const UnitPass& p, const float* x, const float* dv, float alpha, bool weights, float* din);
    // a conv-like unit's patches (gemm_rows, fan_in) of x into cols, and their adjoint into din
    Status (*patches)(const UnitPass& p, const float* x, float* cols);
    Status (*patches_adjoint)(const UnitPass& p, const float* dcols, float* din);
    // once per batch, from its B rows of input on the host (the embedding's token index)
    Status (*batch)(const UnitPass& p, const float* x);
};

}  // namespace of
