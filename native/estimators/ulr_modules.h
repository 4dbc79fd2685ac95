// Local module training's pieces of the ULR runner (ulr.cpp runs modules as one group noisy only at the
// boundaries; ulr_modules.cpp holds the math): the first module's clean forward and backward on B rows, and BP inside
// a module from its boundary's LR estimate. Not a second orchestration: ulr.cpp calls these from its one loop.
#pragma once
#include <functional>

#include "estimators/bp.h"
#include "estimators/estimator.h"

namespace of {

// The first module's clean forward on B rows: BP's tape of units [0, e0 - 1) into the record m.ws.first[first_cur]
// (kept for its backward, a step later when pipelined: then x is copied into the record), and its boundary's
// pre-activation without bias into the record's v[e0 - 1] (a recurrent boundary: its input projections X W^T). With
// batchNorm first a clean forward for the batch's statistics, which every pass of the step then holds.
Status first_module_forward(Model& m, const float* theta, const float* x, int B, const UlrConfig& c, uint64_t seed,
                            uint32_t step, int e0);

// BP inside module [s, e) from D = alpha diag(w) S at its boundary's pre-activation (unit e - 1; w nullptr: 1) down to
// x, the module's input rows. dest(l): where unit l's gradient goes; dx (nullptr: not wanted): the gradient at x.
void module_backward(const Model& m, const float* theta, const BpTape& t, const BpMode& mode, int s, int e,
                     const float* S, const float* w, float alpha, int rows, const float* x,
                     const std::function<float*(int)>& dest, float* dx);

// The first module's reduction from its record f (G = sum_k w s(E) at its boundary, summed by the blocks): the
// boundary's gradient from G (clean_rows_gradient; a recurrent one's U and b from f.ub), then BP inside the module,
// into m.grads. x: the module's input (the record's copy when pipelined); alpha: the boundary's score factor.
Status first_module_backward(Model& m, const float* theta, Model::Workspace::FirstModule& f, const float* x,
                             float alpha, uint64_t seed);

// Unit u's gradient from D (B rows of its noise width) at its pre-activation and its clean input rows `in`: alpha D^T A
// in its GEMM view into g (weights, then bias; overwritten); a recurrent unit's W only, over its B T (sample, step)
// rows. D: a group start's G = sum_k w s(E), or the exact boundary gradient.
void clean_rows_gradient(const KernelTable& k, const Unit& u, const float* theta, const float* in, int B,
                         const float* G, float alpha, float* g, float* cols, float* wexp);

// The test hook exactBoundary: the exact gradient at every boundary (BP's forward and loss gradient, no noise) into
// each module's own backward, chained from the loss down; it must give BP.
Status exact_boundary_gradients(Model& m, const float* x, const Targets& y, int B, const UlrConfig& c,
                                StepStats* stats);

}  // namespace of
