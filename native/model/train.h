// Training: one step (estimate, check, optimizer update) and the whole epoch loop, both native. fit() runs
// on whatever thread calls it (the addon gives it a dedicated one); it reports through hooks and checks a
// cancel flag between steps and, on the CPU, inside a step's tasks: a cancelled step is dropped whole, so a
// cancelled run keeps the parameters of its last completed step.
#pragma once
#include <atomic>
#include <functional>
#include <string>

#include "estimators/estimator.h"
#include "kernels/cpu/optimizer.h"

namespace of {

struct DataRef {
    const float* x = nullptr;
    Targets y;
    int64_t rows = 0;
};

// model.fit's `distributed` option (model/distributed.h). size 0: one process, no all-reduce.
struct DistributedConfig {
    enum class Mode { Data, Copies, Seeds } mode = Mode::Data;
    int rank = 0, size = 0;
    // Replaces values[0, n) by their sum over the ranks, on every rank; returns once every rank has called it.
    std::function<Status(float* values, size_t n)> allreduce;
};

struct FitConfig {
    int epochs = 1;
    int batch = 32;
    bool shuffle = true;
    bool resume = false;  // continue the model's counters: `epochs` is the total, a cut-short epoch continues
    EstimatorConfig estimator;
    OptimizerConfig optimizer;
    LossHook loss_hook;          // empty: the model's built-in loss
    double max_grad_norm = 0.0;  // > 0: a larger gradient norm stops training as an exploding update
    DistributedConfig distributed;
};

struct ProgressEvent {
    int epoch = 0, epochs = 0;
    int64_t step = 0, steps = 0;  // within the epoch
    double loss = 0.0;            // running mean over the epoch so far
    double accuracy = 0.0;        // running, on the rows the estimator evaluated (noisy rows for ULR)
    double samples_per_sec = 0.0;
    double elapsed = 0.0;  // seconds since fit started
    double eta = 0.0;      // estimated seconds to the end of fit, from the pace so far
    double lr = 0.0;       // the learning rate of the last update
};

struct BatchEvent {                  // one optimizer step of fit
    int epoch = 0;                   // 1-based, as in ProgressEvent
    int64_t batch = 0, batches = 0;  // 1-based within the epoch; steps per epoch
    double loss = 0.0;               // this batch's mean loss
    double accuracy = 0.0;           // on the rows the estimator evaluated (noisy rows for ULR)
    double lr = 0.0;                 // the learning rate of this step's update
};

struct EpochStats {
    int epoch = 0;  // 1-based; counts the model's earlier epochs when resuming
    double loss = 0.0, accuracy = 0.0;
    bool has_val = false;
    double val_loss = 0.0, val_accuracy = 0.0;
    double seconds = 0.0;  // training time of the epoch (validation excluded)
    int64_t steps = 0;
    double lr = 0.0;  // the learning rate of the epoch's last update
};

struct FitHooks {
    std::function<void(const ProgressEvent&)> progress;  // at most every ~100 ms, and at each epoch end
    std::function<void(const EpochStats&)> epoch;
    // After every step, in order (empty: none, and device steps need not wait for their loss).
    std::function<void(const BatchEvent&)> batch;
    // Training stopped on a non-finite loss: called once with the reason before fit returns ERR_NUMERIC.
    std::function<void(const std::string& reason, int epoch, int64_t step)> diverged;
    const std::atomic<bool>* cancel = nullptr;  // set: stop (ERR_ABORT); the step in flight is dropped, not applied
};

// One optimizer step on a batch x (B, inputs): gradients at the model's step counter, then the update.
// A non-finite loss is ERR_NUMERIC and leaves the parameters untouched; so does a cancel of the calling thread's
// ThreadPool::CancelScope during the estimate (ERR_ABORT).
Status train_step(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, const OptimizerConfig& o,
                  StepStats* stats, const LossHook* hook = nullptr, double max_grad_norm = 0.0);

// gradients() and trainStep() outside fit: on the model's device when it runs this estimator (device/trainer.h),
// else on the CPU (estimate, train_step). Either way the host holds the parameters afterwards.
Status placed_gradients(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, uint32_t step,
                        StepStats* stats, const LossHook* hook);
Status placed_train_step(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e,
                         const OptimizerConfig& o, StepStats* stats);
// Seed replay across ranks, where the model's steps run: the losses of directions [p0, p1) of this step (plus /
// minus, P each), then the update from every direction's losses (gradient by seed replay, frozen prefix untouched).
Status placed_seed_replay_losses(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, int p0,
                                 int p1, float* plus, float* minus);
Status placed_seed_replay_update(Model& m, const EstimatorConfig& e, const OptimizerConfig& o, const float* plus,
                                 const float* minus, int rows);

Status fit(Model& m, const DataRef& train, const DataRef* val, const FitConfig& cfg, const FitHooks& hooks);

// What one CPU training step of B rows holds in memory, in bytes, from the sizes the estimators reserve (their
// buffers grow to the largest step and stay until the model is disposed). An upper-side estimate: every pool
// thread is counted with a full block of scratch, and a residual or recurrent unit's extras at their widest.
// Not counted: the data set, fit's shuffle order (8 bytes a row) and GEMM packing (a few hundred KB a thread).
struct StepMemory {
    double parameters = 0.0;  // the parameter slab
    double gradients = 0.0;   // the gradient slab
    double optimizer = 0.0;   // optimizer state: two slabs (momentum / Adam's moments)
    double activations =
        0.0;                // what the forward keeps: activations, pre-activations, stored noise (every thread's block)
    double partials = 0.0;  // LR estimators: per-block partial gradients, summed in block order
    double workspace = 0.0;  // the rest: the batch, the clean first layer and G, losses, conv patches, recurrent state
    double total() const { return parameters + gradients + optimizer + activations + partials + workspace; }
};
Status step_memory(const Model& m, const EstimatorConfig& e, int B, StepMemory* out);
// Pieces of it that the ULR plan's accounting (ulr_plan.cpp ulr_step_floats) reads too: the floats of BP's forward and
// backward on B rows, and those BP's tape (estimators/bp.h) holds per row for units [s, e) (scratch: its backward's).
void bp_floats(const Model& m, double B, StepMemory* r);
double tape_floats(const Model& m, int s, int e, bool scratch);

// The update half of a step: the optimizer on the gradients in m.grads (a frozen prefix untouched), batchNorm's
// running statistics from the last estimate's batch, and the step counter. Data-parallel training calls it with
// all-reduced gradients.
Status apply_update(Model& m, const OptimizerConfig& o, int B);

Status validate_optimizer(const OptimizerConfig& o);
// The learning rate of the model's last update (of its first, before any): schedule_lr at the model's step count.
double current_lr(const Model& m, const OptimizerConfig& o);

// A training step's estimator: marked as training, and with a learned sigma (learnSigma) its current values from
// m.log_sigma (initialized from the configured sigma). learn_sigma_step then moves log sigma by its gradient.
EstimatorConfig training_estimator(Model& m, const EstimatorConfig& e);
void learn_sigma_step(Model& m, const EstimatorConfig& e, const StepStats& stats);

// The ERR_NUMERIC errors of a step: a non-finite loss; a gradient norm above maxGradNorm (ok when it is not).
Status nonfinite_loss(const Model& m);
Status check_grad_norm(const Model& m, double norm, double max_grad_norm);

}  // namespace of
