// DeviceTrainer: a model's training steps on a Device (CUDA, or its host simulation), for every unit kind: ULR
// (docs/method.md: the K-copy noisy forward, leave-one-out row weights, the shared-prefix copy sum for the first noisy
// unit, one weight-gradient GEMM per unit with diag(w) S(E) formed by a kernel) and BP, then the fused optimizer
// update, as a fixed sequence of launches. fit's steps need no wait (launch_step / flush); the others wait once, for
// their loss. Buffers are allocated on the first step of a shape and reused. The parameters, the optimizer state
// and batchNorm's running statistics live on the device between begin() and end(): fit() brackets its epochs with
// them, so parameters(), save() and validation always see the host copy that end() (or an epoch end) wrote.
//
// What it does not run (unsupported() says why) stays on the CPU estimators: layer kinds without device kernels, a JS
// loss outside ULR, and modules outside dense, conv and pooling models with real weights.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "device/device.h"
#include "estimators/estimator.h"
#include "kernels/cpu/optimizer.h"
#include "model/train.h"

namespace of {

// v grown to at least n entries, the new ones default-made (the trainer's per-unit buffers)
template <class T>
void grow(std::vector<std::unique_ptr<T>>& v, size_t n) {
    while (v.size() < n) v.push_back(std::make_unique<T>());
}

struct UnitPass;  // device/unit_pass.h
struct ModulePasses;
struct UlrPlan;  // estimators/ulr_plan.h

class DeviceTrainer {
   public:
    // tf32: -1 TF32 GEMMs for ULR only (the default), 0 never, 1 for ULR and BP.
    DeviceTrainer(std::unique_ptr<Device> device, int tf32) : dev_(std::move(device)), tf32_(tf32) {}
    ~DeviceTrainer() { (void)dev_->sync(); }  // nothing queued may outlive the buffers it reads
    DeviceTrainer(const DeviceTrainer&) = delete;
    DeviceTrainer& operator=(const DeviceTrainer&) = delete;
    DeviceInfo info() const { return dev_->info(); }
    bool tf32_for(EstimatorConfig::Kind k) const {
        return tf32_ == 1 || (tf32_ < 0 && k == EstimatorConfig::Kind::Ulr);
    }

    // Empty when this model and estimator run on the device; otherwise why they run on the CPU.
    static std::string unsupported(const Model& m, const EstimatorConfig& e, const LossHook* hook);
    static bool pipelines(const Model& m, const UlrConfig& c);  // pipelined modules run here (ulr_modules.cpp)

    // The host's parameters (and optimizer state, reset first when `o` names another kind) to the device.
    Status begin(Model& m, const OptimizerConfig* o);
    // The device's parameters and optimizer state back to the host; end() also closes the bracket.
    Status download(Model& m);
    Status end(Model& m);
    bool active() const { return active_; }

    // Gradient estimate into the device's gradient slab (the model's step counter is not moved). fetch: also copy it
    // to m.grads. Needs begin().
    Status gradients(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, uint32_t step,
                     StepStats* stats, bool fetch, const LossHook* hook = nullptr);
    // One training step (train.h train_step's contract): the estimate, the checks, the update, the counters.
    Status train_step(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e,
                      const OptimizerConfig& o, StepStats* stats, double max_grad_norm, const LossHook* hook = nullptr);

    // fit's steps without a wait. launch_step() enqueues a whole step (batch `batch` of the epoch) and advances the
    // counters at once; flush() waits for the launched steps and adds their statistics to *t. A step whose loss was
    // non-finite closes a gate on the device: it and every later step change nothing. flush() then rolls the counters
    // back to that step, sets t->failed_batch and returns ERR_NUMERIC. Only where nothing needs a step's result on
    // the host before the next step (async_ok): no maxGradNorm, JS loss, running baseline, learned sigma, copies 'auto'
    // or SPSA/ES.
    static bool async_ok(const EstimatorConfig& e, double max_grad_norm, const LossHook* hook) {
        const bool ulr = e.kind == EstimatorConfig::Kind::Ulr,
                   wp = e.kind == EstimatorConfig::Kind::Spsa || e.kind == EstimatorConfig::Kind::Es;
        return max_grad_norm <= 0.0 && !hook && !wp &&
               !(ulr && (e.ulr.baseline == Baseline::Running || e.ulr.learn_sigma || e.ulr.auto_copies));
    }
    struct Tally {
        double loss_sum = 0.0;  // sum over steps of the step's mean loss times its samples
        int64_t correct = 0, rows = 0;
        int64_t failed_batch = -1;
    };
    Status launch_step(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e,
                       const OptimizerConfig& o, int64_t batch);
    Status flush(Model& m, Tally* t);
    // fit's validation on the device (Model::evaluate's contract: mean loss, accuracy). Needs begin().
    Status evaluate(Model& m, const DataRef& data, double* loss, double* accuracy);
    size_t pending() const { return pending_.size(); }

    // Seed replay across ranks (weight_perturbation.cpp's halves, with the frozen-prefix rules of estimate()): the
    // losses of directions [p0, p1) of the model's step into plus / minus; then, with every direction's losses, the
    // gradient by seed replay and the optimizer update (step counters advanced).
    Status seed_replay_losses(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, int p0,
                              int p1, float* plus, float* minus);
    Status seed_replay_update(Model& m, const EstimatorConfig& e, const OptimizerConfig& o, const float* plus,
                              const float* minus, int rows);
    void reset_pipeline() { pipe_.pending = false; }  // pipelined modules: no first module waits (every fit starts so)

    // For the unit kinds' passes (device/unit_pass.h): theta, the parameters the forward computes with (binary or
    // ternary weights applied), and per unit its own buffers, kept between passes and steps (running statistics,
    // Unit::running, in kRunning and the batch's in kBatch: begin(), download() and update() move them).
    static constexpr int kRunning = 0, kBatch = 1;
    const float* theta() const { return theta_; }
    const float* params() const { return params_.f(); }
    float* grads() const { return grads_.f(); }
    bool inference() const { return inference_; }
    int batch_rows() const { return batch_rows_; }
    DeviceBuffer& unit_buffer(int l, int slot);
    Status col_sum(float* out, const float* d, int R, int O, float alpha, const float* mul = nullptr);  // of d (x mul)
    // recurrent units (units/recurrent.cpp): the forward on `rows` rows (noise E times sigma on every gate, or times
    // sigmas, one per gate value; or none; xw: the shared X W^T of ULR's first unit, row r reading row r / rep), the
    // gradient reduction from S (rows, T GH) into the unit's slab (with_w: also dW from `in`), and backprop through
    // time (din: nullptr for none)
    Status seq_buffers(const Model& m, int l, int rows);
    Status seq_forward(const Model& m, int l, int rows, const float* in, float* out, const float* E, float sigma,
                       const float* xw, int rep, bool tf32, const float* sigmas = nullptr);
    Status seq_reduce(const Model& m, int l, int rows, const float* in, const float* S, float alpha, bool with_w,
                      bool tf32);
    Status seq_backward(const Model& m, int l, int rows, const float* in, const float* dout, float* din, bool tf32);

   private:
    Status upload_batch(const Model& m, const float* x, const Targets& y, int B);
    // Upload, estimate and the step statistics (accumulated under `id` when id >= 0); *rows: the rows evaluated. hook:
    // a JS loss (ULR only), called once with every copy's outputs.
    Status estimate(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, uint32_t step,
                    double id, int* rows, const LossHook* hook = nullptr);
    // The estimators over m.units, whose first layer reads x (B rows on the device); y, hook: the host targets and a
    // JS loss (or nullptr). ulr: the plan's groups (estimators/ulr_plan.h); *rows: every group's rows.
    Status ulr(Model& m, int B, const UlrConfig& c, uint32_t step, const float* x, const Targets& y,
               const LossHook* hook, int* rows);
    Status bp(Model& m, int B, const float* x, uint32_t sample_base,
              bool forward_only);                                  // forward_only: batch statistics
    Status reserve_blocks(const Model& m, int end, int64_t rows);  // inner_, sum_, skip_ (bp.cpp)
    // the clean forward of units [0, end) on B rows: BP's forward walk into e_ (v), a_, inner_ and sum_ (bp.cpp)
    Status clean_forward(const Model& m, int end, int B, const float* x, uint32_t sample0, uint64_t seed, uint32_t step,
                         bool tf32);
    struct BpEngine;  // BP's walks (estimators/bp_walk.h) on the device: device/unit_pass.h
    // local modules, after ulr()'s forward, losses and row weights: the boundaries' reductions and BP inside each
    // module
    Status module_reductions(const Model& m, const std::vector<int>& ends, int B, int K, const UlrConfig& c,
                             const float* x, bool tf32, const ModulePasses& mp);
    Status js_losses(const float* out, const Targets& y, int R, int C, int K, const LossHook& hook, float* loss);
    Status row_weights(int B, int K, const float* loss, float running, const UlrConfig& c, float scale);
    dev::CopySumArgs scored_sum(const float* E, int K, int O, const UlrConfig& c, const float* sigmas);
    Status step_stats(dev::StatsArgs a);
    Status noise_forward(const dev::NoisyArgs& na, int qmc_K, uint32_t qmc_dim = 0);
    Status channel_sigmas(const UlrPlan& plan, std::vector<const float*>* out);  // per unit
    // One unit's passes (unit_passes.cpp) on p.rows rows, through its kind's entries (device/unit_pass.h, which
    // says what they compute): forward; forward_act, the forward and then a = act(v + b) (a may be v); backward.
    UnitPass pass(const Model& m, int l, int rows, bool tf32);
    Status forward(const UnitPass& p, const float* x, float* v);
    Status forward_act(const UnitPass& p, const float* x, float* v, float* a);
    Status backward(const UnitPass& p, const float* x, const float* dv, float alpha, bool weights, float* din);
    Status frozen_forward(Model& m, int B, EstimatorConfig::Kind kind, const float** in);
    Status grad_norm(int64_t off, int64_t n,
                     float clip);  // of grads[off, off + n): norm_[0] = |g|, norm_[1] = clip factor
    // the optimizer and batchNorm's running statistics, gated by the step statistics (B: the step's samples)
    Status update(const Model& m, const OptimizerConfig& o, int64_t t, int B);
    Status zero_frozen_ranges(const Model& m);  // their gradients (an adapter's base W and b)
    Status read_stats(StepStats* stats, int rows);
    Status inference_sums(Model& m, int B, const float* x, double* sums);  // summed loss, hits (trainer.cpp)
    // learnSigma: per layer with parameters; layer-wise copies 'auto' (sg_: the sigma gradients, then the variances)
    Status read_sigma_grad(const Model& m, const EstimatorConfig& e, StepStats* stats);
    Status read_layer_var(Model& m, const EstimatorConfig& e, StepStats* stats);
    Status reset_tally();
    Status effective(const Model& m, const float* base);  // theta_: base, or its binary / ternary version
    // SPSA / ES (perturbation.cpp): estimators/weight_perturbation.cpp on this engine (Perturbation), with the step
    // statistics; with wp_range_, only the losses of its directions
    struct Perturbation;
    Status perturbation(Model& m, int B, const EstimatorConfig& e, uint32_t step, const float* x);
    struct WpRange {  // seed_replay_losses: the directions [p0, p1) whose losses estimate() computes, and where they go
        int p0, p1;
        float* plus;
        float* minus;
    };
    const WpRange* wp_range_ = nullptr;
    bool inference_ = false;  // the forward in inference mode (evaluate): dropout off, batchNorm running

    struct Pending {
        int64_t batch;
        uint32_t step;
        int64_t opt_t;
    };
    std::vector<Pending> pending_;

    std::unique_ptr<Device> dev_;
    int tf32_ = -1;
    bool active_ = false;
    DeviceBuffer params_, grads_, opt_m_, opt_v_;
    DeviceBuffer x_, labels_, values_, loss_, hit_, w_, row_part_, row_sum_, stats_part_, stats_, acc_, col_part_,
        norm_part_, norm_, v0_, g_, d0_, d1_, h0_, h1_, dcols_, eff_, clean_, clean_hit_, sg_rows_, sg_part_, sg_, z_,
        theta_p_;
    std::vector<float> hook_out_, hook_loss_;  // a JS loss's outputs and answers, on the host
    const float* theta_ =
        nullptr;  // the slab the forward computes with: params_, or eff_ with binary / ternary weights
    // per layer: activations (ULR: the clean B rows); noise (ULR) or pre-activations (BP); ULR: a group's activations
    std::vector<std::unique_ptr<DeviceBuffer>> a_, e_, ga_;
    std::vector<std::unique_ptr<DeviceBuffer>> cols_;                         // per conv unit: its input's patches
    std::vector<std::unique_ptr<std::array<DeviceBuffer, 3>>> unit_buffers_;  // unit_buffer()
    int batch_rows_ = 0;
    std::vector<int> lw_copies_;  // layer-wise: this step's copies per layer with parameters
    struct Pipe {  // pipelined modules: the first module's state from the previous training step, reduced in this one
        bool pending = false;
        int B = 0, end = 0;                                     // its samples; the first module's end (units)
        DeviceBuffer x, g;                                      // its input rows and boundary copy sums
        std::vector<std::unique_ptr<DeviceBuffer>> a, e, cols;  // per unit of the module: a_, e_ and cols_ of that step
    } pipe_;
    std::vector<std::unique_ptr<DeviceBuffer>> sigma_ch_;  // per unit with per-channel ULR sigma: its scale per value
    struct Dirs {  // per layer with QMC noise: the Sobol direction numbers of its width (32 per neuron)
        DeviceBuffer v;
        int width = 0;
        uint32_t dim0 = 0;  // its first Sobol dimension (estimator.h qmc_dim0)
    };
    std::vector<std::unique_ptr<Dirs>> qmc_dirs_;
    std::vector<std::unique_ptr<DeviceBuffer>> aux_;  // per recurrent unit: what its backward and reduction read
    DeviceBuffer seq_p_, seq_h_, seq_c_, seq_dh_, seq_dc_, seq_q_, seq_dp_;  // recurrent scratch
    // BP of residual blocks: act(v) and the sum before post_act at a block's end; the skip gradient at its start
    std::vector<std::unique_ptr<DeviceBuffer>> inner_, sum_, skip_;
    double stats_host_[4] = {};
};

}  // namespace of
