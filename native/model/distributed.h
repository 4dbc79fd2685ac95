// Distributed fit (model.fit's `distributed` option): every rank runs fit's own epoch loop (train.cpp) on the same
// data set, so the ranks shuffle alike and see the same batches in the single-process order; per step each rank
// computes its part of the step, an all-reduce (a sum over ranks that the caller provides) joins the parts, and every
// rank applies the same update. With one rank, modes data and seeds are the plain step bit for bit.
//   data   (bp, ulr): rank r of R estimates rows [rB/R, (r+1)B/R) of the batch with the noise rows and dropout masks a
//          single process uses for them (sample_base), times its share of the rows. sum_r shares = the batch's
//          estimate up to the order of the float sums. One all-reduce of parameterCount floats.
//   copies (ulr): rank r runs its slice of the K copies of every sample. The losses are all-reduced (B K floats),
//          then each rank reduces its copies with row weights from every copy's loss (parameterCount floats).
//   seeds  (spsa, es): rank r evaluates its slice of the P directions; only the 2P losses are all-reduced, and every
//          rank replays all P directions from their seeds. Equal to one process bit for bit.
// Every all-reduce also carries, in one slot per rank, that rank's step statistics and a stop flag: a cancel or an
// error on one rank stops every rank at the same step (dropped everywhere) instead of leaving the others waiting.
#pragma once
#include "model/train.h"

namespace of {

// Checks that the configuration trains the same on any number of ranks (Config errors name what does not).
Status validate_distributed(const Model& m, const FitConfig& cfg, const LossHook* hook);

// Once per fit, before the first step: every rank's data set size, batch, epochs, counters, seed and parameters
// (a hash) against every other rank's, so that replicas which would diverge, or wait for each other forever,
// fail at once with a Config error on every rank.
Status distributed_handshake(const Model& m, const DataRef& train, const FitConfig& cfg);

// One step of batch x (B, inputs): this rank's part, the all-reduce(s), the checks and the update, as train_step;
// *stats are the whole batch's. cancel: this rank's stop request, honored at the step's all-reduce.
Status distributed_step(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e,
                        const FitConfig& cfg, const std::atomic<bool>* cancel, StepStats* stats);

// Copy-parallel ULR's halves for copies [k0, k1) of K = e.ulr.copies. Losses: every sample's losses of these copies
// into losses (B, K), at columns k0..k1-1 (the rest untouched); *stats: their sum, rows and hits. Gradients: this
// slice's share of the estimate into m.grads, with row weights (and the baseline) from all K losses (B, K).
Status copy_slice_losses(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, int k0, int k1,
                         float* losses, StepStats* stats);
Status copy_slice_gradients(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, int k0, int k1,
                            const float* losses);

}  // namespace of
