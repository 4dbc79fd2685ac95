// Backpropagation over a range of units [s, e) (backprop.cpp): the one BP forward and backward, shared by bp() (the
// whole model, from the loss's gradient) and local module training (ulr_modules.cpp: inside each module, from the LR
// estimate at its boundary). Every layer kind goes through the unit functions of model/units.h; the range adds what
// spans units: residual and concat blocks (their skip path), dropout masks and batchNorm statistics.
#pragma once
#include <functional>
#include <vector>

#include "model/model.h"

namespace of {

// What BP's forward keeps per unit for its backward, on some rows (the caller owns the buffers): the pre-activation v
// and the output a (rows, O); a residual block end's act(v) (inner) and sum before post_act; a recurrent unit's aux.
// Backward scratch: d0, d1 (rows x Model::max_width), a block start's waiting skip gradient (pending, rows x its I),
// conv patches (cols), recurrent state (seq), pre-activation gradients (dP, rows x max_noise_width), step weights
// (wexp).
struct BpTape {
    std::vector<Buffer>&v, &a, &aux, &inner, &sum, &pending;
    Buffer &d0, &d1, &cols, &seq, &dP, &wexp;
};

// The tape in the model's BP workspace (bp(), and the clean B-row passes of module training).
inline BpTape workspace_tape(Model::Workspace& ws) {
    return {ws.v, ws.a, ws.aux, ws.inner, ws.sum, ws.pending, ws.d0, ws.d1, ws.cols, ws.seq, ws.dP, ws.wexp};
}

// The units whose training behaviour needs more than their input. Dropout: row r is sample sample0 + r / rep, its
// mask keyed by (seed, step, unit). BatchNorm: this batch's statistics, computed into u.batch and differentiated
// through (Batch); u.batch computed beforehand and held constant (Fixed: module training normalizes its noisy copies
// with the clean batch's, as ULR does). Inference (input gradients for attacks: the deployed model): dropout is the
// identity and batchNorm uses its running statistics, held constant.
struct BpMode {
    enum class Stats { Batch, Fixed, Running } stats = Stats::Batch;
    uint64_t seed = 0;
    uint32_t step = 0;
    int sample0 = 0, rep = 1;
    float sigma = 0.0f;  // noise injection (estimator.h BpConfig): sigma E on every parameter unit's pre-activation
    bool inference() const { return stats == Stats::Running; }
};

// Reserves the tape's records of units [s, e) and its scratch for `rows` rows.
Status bp_tape_reserve(const Model& m, const BpTape& t, int rows, int s, int e);

// Forward through units [s, e) on `rows` rows from x (the input of unit s), keeping the tape. A block's skip source
// must lie in the range (its start unit >= s). theta: the parameters the forward computes with.
void bp_range_forward(const Model& m, const float* theta, const BpTape& t, const BpMode& mode, int s, int e,
                      const float* x, int rows);

// Backward through units [s, e) (bp_walk.h) from t.d0, the gradient at unit e - 1's output (rows, O; overwritten,
// scratch). dest(l): where unit l's parameter gradient goes (overwritten); dx (rows, I of unit s; nullptr: not
// wanted): the gradient at x.
void bp_range_backward(const Model& m, const float* theta, const BpTape& t, const BpMode& mode, int s, int e,
                       const float* x, int rows, const std::function<float*(int)>& dest, float* dx);

// BP's forward through every unit on B rows (the tape in m.ws, reserved here) with the parameters the step computes
// with (*theta: binary or ternary weights applied), the mean loss and hits into stats, and the loss's gradient at the
// output into the tape's d0: the start of bp() and of the exact boundary test hook.
struct StepStats;  // estimator.h
Status bp_forward_loss(Model& m, const float* x, const Targets& y, int B, const BpMode& mode, StepStats* stats,
                       const float** theta);

// The gradient din at unit l's input (rows, I) from dv, the gradient at its pre-activation: its adjoint; a recurrent
// unit's dv holds every gate at every step (rows, T G H), and x_t enters only P_t = W x_t + ..., so din_t = dv_t W.
void bp_input_gradient(const Model& m, const float* theta, const BpTape& t, const BpMode& mode, int l, const float* in,
                       int rows, const float* dv, float* din);

}  // namespace of
