// The estimator interface: given a batch, write the gradient estimate of the mean batch loss into the
// model's gradient slab (same layout as the parameters, overwritten). bp = exact backprop (baseline);
// ulr = unified likelihood ratio (Jiang et al., ICLR 2024), forward passes only.
#pragma once
#include <cmath>
#include <functional>
#include <memory>
#include <vector>

#include "kernels/schedule.h"
#include "model/model.h"

namespace of {

struct UlrConfig {
    int copies = 32;  // K noisy copies per sample
    // Per-layer lists count the layers with parameters (frozen ones included; their entries are unused).
    std::vector<float> sigma{0.1f};  // noise scale, one value or one per layer
    std::vector<std::vector<float>>
        sigma_channels;       // per layer: empty, or one sigma per noise channel (noise_channels)
    bool antithetic = false;  // copies in pairs (eps, -eps)
    Baseline baseline = Baseline::LeaveOneOut;
    Density density = Density::Normal;  // noise density
    Score score = Score::Exact;         // exact score of the density, or sign-compressed
    bool shared_prefix = true;          // first layer's clean GEMM once per sample (docs/method.md 3.1)
    bool layerwise = false;             // one group of copies per layer, only that layer perturbed
    std::vector<int> copies_per_layer;  // layer-wise only; empty: `copies` for every layer
    // layer-wise only: copies per layer chosen each step to minimize the total variance for the cost of
    // `copies` per layer (Neyman allocation K_l ~ sqrt(V_l / c_l), V_l a running per-copy variance).
    bool auto_copies = false;
    std::vector<int> blocks;  // layer-wise only: sizes of consecutive layer groups perturbed together (empty: 1 each)
    bool training = false;    // set by train_step: the estimate is for a training step (moves the running baseline)
    // sigma schedule over fit's epochs (e = epoch index from 0, E = fit's epochs), the learning-rate schedules' kinds
    // (kernels/schedule.h): constant; step: gamma^floor(e / every); exponential: gamma^e; cosine: min + (1 - min)(1 +
    // cos(pi e / E)) / 2.
    ScheduleKind schedule = ScheduleKind::Constant;
    int every = 1;
    float gamma = 0.5f, min_factor = 0.0f;
    // learnable log sigma per layer: its LR gradient E[(l - b) sum_j (e_j s(e_j) - 1)] (the score of the scale),
    // one SGD step of sigma_lr per training step; starts from `sigma`, then lives in the model (Model::log_sigma).
    bool qmc = false;  // quasi-Monte Carlo normal noise (randomized Sobol points across the copies)
    bool learn_sigma = false;
    float sigma_lr = 0.01f;
    bool store_noise = true;  // false: regenerate eps in the gradient pass (docs/method.md 3.2)
    // The products of the noisy copies' forward (every unit from a group's first noisy pre-activation on, over B K
    // rows; recurrent units excepted): float32, or bfloat16 operands with float32 sums (kernels/cpu/bf16.h). The
    // clean forward and shared prefix, the LR reductions and BP stay float32. CPU only.
    enum class Precision { Float32, Bf16 } precision = Precision::Float32;
    // Local module training (ulr.cpp): exclusive end of each module, in layers with parameters (last = their count).
    // Empty: plain ULR. Noise only on each module's last pre-activation; BP inside the modules.
    std::vector<int> modules;
    bool concurrent = true;       // the layers' block sums run as concurrent tasks after the blocks (else in a loop)
    bool pipeline = false;        // modules, training only: module 0's backward overlaps the next step's forward
    bool exact_boundary = false;  // modules, test hook: the exact boundary gradient instead of its LR estimate
    uint64_t seed = 0;            // noise key; 0 -> the model's seed
    bool has_seed = false;
    // Data-parallel shards: this batch's first sample is sample `sample_base` of the global batch, so its noise
    // rows (and dropout masks) are those a single process would use for it.
    uint32_t sample_base = 0;
    // Copy-parallel slices: `copies` are copies [slice_offset, slice_offset + copies) of slice_total per sample
    // (0: not sliced), with the noise rows a single process with slice_total copies would use.
    uint32_t slice_total = 0, slice_offset = 0;
};

// SPSA / ES settings (weight-space perturbation).
struct WeightPerturbationConfig {
    int population = 16;       // SPSA: perturbation pairs; ES: population (pairs count once each)
    float sigma = 1e-3f;       // SPSA epsilon / ES sigma, in parameter units
    bool antithetic = true;    // ES only (SPSA always uses pairs)
    bool rank_shaping = true;  // ES only
};

// bp() with noise injection: Gaussian noise sigma E on every pre-activation of a unit with parameters in the training
// forward, and the exact gradient of that noisy loss (the control for ULR's noise: the same noise, no likelihood
// ratio). 0: plain BP.
struct BpConfig {
    float sigma = 0.0f;
};

struct EstimatorConfig {
    enum class Kind { Bp, Ulr, Spsa, Es } kind = Kind::Bp;
    BpConfig bp;
    UlrConfig ulr;
    WeightPerturbationConfig wp;
};

struct StepStats {
    double loss = 0.0;    // mean loss over the rows the estimator evaluated (noisy rows for ULR)
    int64_t correct = 0;  // rows whose argmax matched the label
    int64_t rows = 0;
    std::vector<double> sigma_grad;  // ULR with learn_sigma: d(loss)/d(log sigma_l), per dense layer
    std::vector<double> layer_var;   // layer-wise auto copies: per-copy variance of each layer's estimate
    std::vector<int> copies;         // layer-wise auto copies: the allocation this step used
};

// A loss computed outside the engine (a JS callback: a reward, a black-box metric). Given the R x C outputs
// of one step (row r belongs to sample r / rep, whose targets are in y), it writes R per-row losses. Only
// ULR can use it: it needs loss values, never their derivatives.
using LossHook = std::function<Status(const float* outputs, const Targets& y, int R, int C, int rep, float* loss)>;

Status validate_estimator(const Model& m, const EstimatorConfig& e, const LossHook* hook = nullptr);

// The gradient estimate of a step, the entry of every estimator (estimate.cpp): the estimator of e.kind, honoring a
// frozen prefix (zero gradients for frozen layers). trainable_offset: the first slab index the optimizer may change.
Status estimate(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, uint32_t step,
                StepStats* stats, const LossHook* hook = nullptr);
int64_t trainable_offset(const Model& m);
// The ULR settings of a dense model's trainable tail after `f` frozen layers of L: per-layer lists lose their frozen
// entries and module ends shift (modules inside the prefix vanish); Config for what the tail does not support.
Status frozen_tail_config(size_t L, int f, UlrConfig* c);
// Module ends in units (ulr_plan.cpp): `modules` counts layers with parameters, and a module ends right after its last
// one (pools before a layer belong to its module). The same numbers for a model of dense layers.
std::vector<int> module_unit_ends(const Model& m, const std::vector<int>& modules);
// Layer-wise copies 'auto' (ulr_plan.cpp), after a step: its variances var_l of each layer's estimate, per copy
// (K_l var_l) into stats and, training, into the model's running ones that allocate the copies.
void record_layer_var(Model& m, const UlrConfig& c, const std::vector<int>& kl, std::vector<double> var,
                      StepStats* stats);

// The noise channels of a unit, each with its own sigma (per-channel sigma): a dense unit's outputs, a conv's or a
// norm's channels (shared by the positions), a recurrent unit's gate units (shared by the steps).
int noise_channels(const Unit& u);
// QMC: the first Sobol dimension of unit l's noise, the noise widths of the units with parameters before it.
uint32_t qmc_dim0(const Model& m, int l);

// The sigma multiplier of the schedule at epoch e (from 0) of E.
inline float sigma_factor(const UlrConfig& c, int e, int E) {
    switch (c.schedule) {
        case ScheduleKind::Constant: return 1.0f;
        case ScheduleKind::Step: return float(std::pow(double(c.gamma), double(e / std::max(1, c.every))));
        case ScheduleKind::Exponential: return float(std::pow(double(c.gamma), double(e)));
        case ScheduleKind::Cosine:
            return c.min_factor +
                   (1.0f - c.min_factor) * float(0.5 * (1.0 + std::cos(3.14159265358979323846 * e / std::max(1, E))));
    }
    return 1.0f;
}

// dx (B, inputs), when given, receives d(mean loss)/dx: the input gradient white-box attacks use. sigma: noise
// injection (BpConfig), never with dx.
Status bp_gradients(Model& m, const float* x, const Targets& y, int B, StepStats* stats, float* dx = nullptr,
                    uint32_t sample_base = 0, float sigma = 0.0f);
Status ulr_gradients(Model& m, const float* x, const Targets& y, int B, const UlrConfig& c, uint32_t step,
                     StepStats* stats, const LossHook* hook = nullptr);

struct StepMemory;
// The floats a ULR step holds (its plan's, ulr_plan.cpp), into r (model/train.h step_memory); the most rows a GEMM of
// the step sees into gemm_rows.
void ulr_step_floats(const Model& m, const UlrConfig& c, int B, double threads, StepMemory* r, double* gemm_rows);

// The running-average baseline after a step: EMA (factor 0.9) of the steps' mean losses. Only estimates
// made for training (train_step) should move it; gradients() calls leave it alone.
inline void update_running_baseline(Model& m, const UlrConfig& c, double mean_loss) {
    if (c.baseline != Baseline::Running || !c.training || !std::isfinite(mean_loss)) return;
    m.running_loss = m.has_running ? 0.9 * m.running_loss + 0.1 * mean_loss : mean_loss;
    m.has_running = true;
}

// SPSA / ES (weight_perturbation.cpp), written once over an engine: the parameter slab theta0, a direction z and the
// gradient g in its own memory, and its own kernels (the CPU's there, a device's in device/perturbation.cpp).
// z_p: noise row p of layer id kWeightLayer over the whole slab, at the step, from the model's seed.
constexpr uint32_t kWeightLayer = 0xfffe;  // noise stream id of weight-space directions (units use 0..)
struct PerturbationEngine {
    explicit PerturbationEngine(Model& m) : m(m) {}
    virtual ~PerturbationEngine() = default;
    virtual Status direction(int p) = 0;                            // z = z_p
    virtual Status zero_direction(int64_t begin, int64_t end) = 0;  // z = 0 on [begin, end)
    virtual Status loss_at(float s, float* loss) = 0;  // the mean batch loss at theta0 + s z, rounded to float
    virtual Status zero_grads() = 0;                   // g = 0
    virtual Status accumulate(float c) = 0;            // g += c z
    Model& m;                                          // its seed, slab and frozen ranges
};
// The halves (seed replay across ranks): the losses of directions [p0, p1) into plus / minus (P each; minus is 0
// without pairs); then, with every direction's losses, the gradient g = sum_p coef_p z_p. The step's statistics: the
// mean of the losses evaluated over B rows. perturbation_gradients: all three, for one process.
Status perturbation_losses(PerturbationEngine& w, const EstimatorConfig& e, int p0, int p1, float* plus, float* minus);
Status perturbation_replay(PerturbationEngine& w, const EstimatorConfig& e, const float* plus, const float* minus);
void perturbation_stats(const EstimatorConfig& e, int B, const float* plus, const float* minus, StepStats* stats);
Status perturbation_gradients(PerturbationEngine& w, const EstimatorConfig& e, int B, StepStats* stats);
// The CPU's engine (g in m.grads) on the batch x, y of B rows (none for the replay).
std::unique_ptr<PerturbationEngine> cpu_perturbation(Model& m, const float* x, const Targets& y, int B, uint32_t step);

}  // namespace of
