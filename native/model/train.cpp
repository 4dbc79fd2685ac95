// The training step and the epoch loop: seeded shuffling (Philox, stream shuffle, counter = epoch), batch
// gathering into a contiguous buffer, throttled progress, validation after each epoch.
#include "model/train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "device/trainer.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/gemm.h"
#include "model/distributed.h"
#include "model/recurrent.h"
#include "model/units.h"
#include "rng/philox.h"

namespace of {

Status validate_optimizer(const OptimizerConfig& o) {
    OF_CHECK(o.lr > 0.0f && std::isfinite(o.lr), Config, "optimizer lr must be positive and finite");
    OF_CHECK(o.momentum >= 0.0f && o.momentum < 1.0f, Config, "optimizer momentum must be in [0, 1)");
    OF_CHECK(o.beta1 >= 0.0f && o.beta1 < 1.0f && o.beta2 >= 0.0f && o.beta2 < 1.0f, Config,
             "optimizer betas must be in [0, 1)");
    OF_CHECK(o.eps > 0.0f, Config, "optimizer eps must be positive");
    OF_CHECK(o.weight_decay >= 0.0f && std::isfinite(o.weight_decay), Config, "weight decay must be >= 0");
    OF_CHECK(o.clip_norm >= 0.0f && std::isfinite(o.clip_norm), Config, "clipNorm must be >= 0");
    const LrSchedule& c = o.schedule;
    OF_CHECK(c.warmup >= 0, Config, "schedule warmup must be >= 0");
    if (c.kind == ScheduleKind::Step) OF_CHECK(c.every >= 1, Config, "step schedule every must be >= 1");
    if (c.kind == ScheduleKind::Step || c.kind == ScheduleKind::Exponential)
        OF_CHECK(c.gamma > 0.0 && c.gamma <= 1.0, Config, "schedule gamma must be in (0, 1]");
    if (c.kind == ScheduleKind::Cosine) {
        OF_CHECK(c.steps >= 1, Config, "cosine schedule steps must be >= 1");
        OF_CHECK(c.min_lr >= 0.0 && c.min_lr <= double(o.lr), Config, "cosine schedule minLr must be in [0, lr]");
    }
    return {};
}

double current_lr(const Model& m, const OptimizerConfig& o) {
    return schedule_lr(o.schedule, o.lr, m.opt_kind == int(o.kind) ? m.opt_t : 0);
}

Status apply_update(Model& m, const OptimizerConfig& o, int B) {
    if (m.opt_kind != int(o.kind)) {  // new optimizer kind: fresh state
        OF_TRY(m.opt_m.reserve(size_t(m.n_params)));
        OF_TRY(m.opt_v.reserve(size_t(m.n_params)));
        m.opt_m.zero(), m.opt_v.zero();
        m.opt_t = 0;
        m.opt_kind = int(o.kind);
    }
    if (m.uses_batch_stats)  // running statistics follow this step's batch (BP's forward, or ULR's clean pass)
        for (const Unit& u : m.units)
            if (u.running) update_running_stats(u, B);
    m.opt_t++;
    // a frozen prefix and the frozen ranges are never touched, not even by weight decay: the update runs on the spans
    // between them, with the clipping factor of the whole gradient (zeroed on the frozen ranges: applyGradients may
    // bring values there) applied first
    const int64_t off = trainable_offset(m);
    m.zero_frozen(m.grads.data());
    auto update = [&](int64_t begin, int64_t end, const OptimizerConfig& c) {
        if (end > begin)
            m.k->optimizer_step(m.params->data() + begin, m.grads.data() + begin, m.opt_m.data() + begin,
                                m.opt_v.data() + begin, end - begin, c, m.opt_t);
    };
    if (m.frozen_ranges.empty()) {
        update(off, m.n_params, o);
    } else {
        OptimizerConfig spans = o;
        spans.clip_norm = 0.0f;
        if (o.clip_norm > 0.0f) {  // the factor optimizer_step would use, g[i] * factor rounded as it rounds it
            const float factor = cpu::clip_factor(m.grads.data() + off, m.n_params - off, o.clip_norm);
            for (int64_t i = off; i < m.n_params; i++) m.grads.data()[i] *= factor;
        }
        int64_t begin = off;
        for (const auto& [b, e] : m.frozen_ranges) update(begin, std::max(begin, b), spans), begin = std::max(begin, e);
        update(begin, m.n_params, spans);
    }
    m.step++;
    return {};
}

Status nonfinite_loss(const Model& m) {
    return {StatusCode::Numeric, "non-finite loss at step " + std::to_string(m.step) + " (seed " +
                                     std::to_string(m.seed) + "); lower the learning rate or sigma"};
}

Status check_grad_norm(const Model& m, double norm, double max_grad_norm) {
    if (norm <= max_grad_norm) return {};
    return {StatusCode::Numeric, "exploding update: gradient norm " + std::to_string(norm) + " > maxGradNorm " +
                                     std::to_string(max_grad_norm) + " at step " + std::to_string(m.step)};
}

EstimatorConfig training_estimator(Model& m, const EstimatorConfig& e) {
    EstimatorConfig est = e;
    est.ulr.training = true;
    if (e.kind != EstimatorConfig::Kind::Ulr || !e.ulr.learn_sigma) return est;
    const size_t L = size_t(m.param_units());  // the learned sigma replaces the configured one (initialized from it)
    if (m.log_sigma.size() != L) {
        m.log_sigma.resize(L);
        for (size_t l = 0; l < L; l++)
            m.log_sigma[l] = std::log(double(e.ulr.sigma.size() == 1 ? e.ulr.sigma[0] : e.ulr.sigma[l]));
    }
    est.ulr.sigma.resize(L);
    for (size_t l = 0; l < L; l++) est.ulr.sigma[l] = float(std::exp(m.log_sigma[l]));
    return est;
}

void learn_sigma_step(Model& m, const EstimatorConfig& e, const StepStats& stats) {
    if (e.kind != EstimatorConfig::Kind::Ulr || !e.ulr.learn_sigma) return;
    for (size_t l = 0; l < m.log_sigma.size() && l < stats.sigma_grad.size(); l++)
        m.log_sigma[l] -= double(e.ulr.sigma_lr) * stats.sigma_grad[l];
}

Status train_step(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, const OptimizerConfig& o,
                  StepStats* stats, const LossHook* hook, double max_grad_norm) {
    const EstimatorConfig est = training_estimator(m, e);
    // A cancel inside the estimate (ThreadPool::CancelScope) leaves it incomplete: the step is dropped whole,
    // with the state the estimate moves (running baseline, layer variances) put back, before any check or update.
    const double running_loss = m.running_loss;
    const bool has_running = m.has_running;
    const std::vector<double> layer_var = m.layer_var;
    Status s = estimate(m, x, y, B, est, m.step, stats, hook);
    if (ThreadPool::cancelled()) {
        m.running_loss = running_loss, m.has_running = has_running, m.layer_var = layer_var;
        return {StatusCode::Abort, "training was cancelled"};
    }
    OF_TRY(s);
    if (!std::isfinite(stats->loss)) return nonfinite_loss(m);
    if (max_grad_norm > 0.0) OF_TRY(check_grad_norm(m, cpu::grad_norm(m.grads.data(), m.n_params), max_grad_norm));
    learn_sigma_step(m, e, *stats);
    return apply_update(m, o, B);
}

namespace {

// The model's device when it runs this estimator, else nullptr; records where the work runs in m.placement.
DeviceTrainer* placement(Model& m, const EstimatorConfig& e, const LossHook* hook) {
    DeviceTrainer* dt = m.device.get();
    if (!dt) {
        m.placement = "cpu";
        return nullptr;
    }
    std::string why = DeviceTrainer::unsupported(m, e, hook);
    m.placement = why.empty() ? dt->info().name : "cpu (" + why + ")";
    return why.empty() ? dt : nullptr;
}

// begin(), the work, end(): the host holds the parameters afterwards, whatever the work returned.
template <class Fn>
Status on_device(DeviceTrainer* dt, Model& m, const OptimizerConfig* o, const Fn& fn) {
    OF_TRY(dt->begin(m, o));
    Status s = fn();
    Status back = dt->end(m);
    return s.ok() ? back : s;
}

}  // namespace

Status placed_gradients(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, uint32_t step,
                        StepStats* stats, const LossHook* hook) {
    DeviceTrainer* dt = placement(m, e, hook);
    if (!dt) return estimate(m, x, y, B, e, step, stats, hook);
    return on_device(dt, m, nullptr, [&] { return dt->gradients(m, x, y, B, e, step, stats, true, hook); });
}

Status placed_train_step(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e,
                         const OptimizerConfig& o, StepStats* stats) {
    DeviceTrainer* dt = placement(m, e, nullptr);
    if (!dt) return train_step(m, x, y, B, e, o, stats);
    return on_device(dt, m, &o, [&] { return dt->train_step(m, x, y, B, e, o, stats, 0.0); });
}

Status placed_seed_replay_losses(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, int p0,
                                 int p1, float* plus, float* minus) {
    DeviceTrainer* dt = placement(m, e, nullptr);
    if (dt)
        return on_device(dt, m, nullptr, [&] { return dt->seed_replay_losses(m, x, y, B, e, p0, p1, plus, minus); });
    return perturbation_losses(*cpu_perturbation(m, x, y, B, m.step), e, p0, p1, plus, minus);
}

Status placed_seed_replay_update(Model& m, const EstimatorConfig& e, const OptimizerConfig& o, const float* plus,
                                 const float* minus, int rows) {
    DeviceTrainer* dt = placement(m, e, nullptr);
    if (dt) return on_device(dt, m, &o, [&] { return dt->seed_replay_update(m, e, o, plus, minus, rows); });
    OF_TRY(perturbation_replay(*cpu_perturbation(m, nullptr, {}, 0, m.step), e, plus, minus));
    std::fill(m.grads.data(), m.grads.data() + trainable_offset(m), 0.0f);
    return apply_update(m, o, rows);
}

namespace {

void shuffle(std::vector<int64_t>& perm, uint64_t seed, uint32_t epoch) {
    int64_t n = int64_t(perm.size());
    for (int64_t i = 0; i < n; i++) perm[size_t(i)] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        U32x4 r = philox4x32_10(uint32_t(i), uint32_t(i >> 32), philox_stream(kStreamShuffle, 0), epoch, uint32_t(seed),
                                uint32_t(seed >> 32));
        uint64_t j = ((uint64_t(r.v[0]) << 32 | r.v[1]) % uint64_t(i + 1));  // 64-bit draw: bias < 2^-30
        std::swap(perm[size_t(i)], perm[size_t(j)]);
    }
}

}  // namespace

// Floats of the BP forward and backward on B rows (backprop.cpp): every unit's
// pre-activation and output, two gradient buffers, conv patches, recurrent state, residual sums.
void bp_floats(const Model& m, double B, StepMemory* r) {
    for (const Unit& u : m.units) {
        r->activations += 2.0 * B * u.O;
        if (u.skip_from >= 0)
            r->workspace += 2.0 * B * u.O + B * m.units[size_t(u.skip_from)].I;  // inner, sum, pending
        if (u.recurrent()) r->activations += B * double(seq_aux_width(u));
    }
    r->workspace += B * (2.0 * m.max_width() + 1.0 + double(std::max<int64_t>(m.patch_width(), 1)));
    if (m.seq_scratch_width() > 0)
        r->workspace += B * double(m.seq_scratch_width() + m.max_noise_width() + m.max_positions());
}

namespace {

// Floats of a clean forward over B rows in inference chunks (weight-perturbation estimators): its scratch
// (Model::forward_scratch_floats, the sizes forward_with reserves), the outputs and the losses.
void forward_floats(const Model& m, double B, StepMemory* r) {
    r->activations += m.forward_scratch_floats(int64_t(B));
    r->workspace += B * (m.outputs + 1.0);
}

}  // namespace

// Floats BP's tape (estimators/bp.h) holds per row: the records of units [s, e) (pre-activation and output; a
// recurrent unit's aux; a residual end's inner and sum, and the skip gradient at its block's start), and with
// `scratch` the backward's: two gradient buffers, conv patches, recurrent state, pre-activation gradients, step
// weights.
double tape_floats(const Model& m, int s, int e, bool scratch) {
    double f = 0.0;
    for (int l = s; l < e; l++) {
        const Unit& u = m.units[size_t(l)];
        f += 2.0 * u.O + double(u.recurrent() ? seq_aux_width(u) : 0);
        if (u.skip_from >= 0) f += 2.0 * u.O + m.units[size_t(u.skip_from)].I;
    }
    if (!scratch) return f;
    f += 2.0 * m.max_width() + double(std::max<int64_t>(m.patch_width(), 1));
    if (m.seq_scratch_width() > 0) f += double(m.seq_scratch_width() + m.max_noise_width() + m.max_positions());
    return f;
}

Status step_memory(const Model& m, const EstimatorConfig& e, int B, StepMemory* out) {
    OF_CHECK(B >= 1, Config, "batch size must be positive");
    OF_TRY(validate_estimator(m, e));
    StepMemory r;  // in floats until the end
    const double n = double(m.n_params), b = double(B);
    r.parameters = n, r.gradients = n, r.optimizer = 2.0 * n;
    r.workspace = b * (m.inputs + m.outputs) + (m.has_quant ? n : 0.0);  // fit's gathered batch; binary/ternary weights
    const UlrConfig& c = e.ulr;
    const double threads = ThreadPool::instance().threads();
    const int L = int(m.units.size());
    double gemm_rows = b;  // the most rows a GEMM of the step sees per input row's position
    if (e.kind == EstimatorConfig::Kind::Bp) {
        bp_floats(m, b, &r);
    } else if (e.kind == EstimatorConfig::Kind::Spsa || e.kind == EstimatorConfig::Kind::Es) {
        r.workspace += 2.0 * n;  // weight_perturbation.cpp: the perturbed slab and one direction
        forward_floats(m, b, &r);
    } else {
        ulr_step_floats(m, c, B, threads, &r, &gemm_rows);
    }
    // every Buffer rounds up to 64 bytes (16 floats): the step's own, and each thread's block scratch
    r.workspace += 16.0 * (8.0 * L + 32.0) + threads * 16.0 * (6.0 * L + 16.0);
    // every thread's GEMM packing space (kernels/cpu/gemm.cpp), for the largest product of the step
    double W = double(m.inputs);  // the widest GEMM column count or reduction length that is not a row count
    for (const Unit& u : m.units) {
        W = std::max({W, double(u.gemm_cols()), double(u.fan_in()), double(u.positional() ? 0 : u.I)});
        if (u.recurrent()) W = std::max({W, double(u.q.G) * u.q.H, double(u.q.F)});
    }
    r.workspace += threads * cpu::gemm_scratch_floats(gemm_rows * double(m.max_positions()), W);
    if (e.kind == EstimatorConfig::Kind::Ulr && c.precision == UlrConfig::Precision::Bf16) {
        // the largest weight matrix, and padded image of a direct convolution with its AMX scratch (packed weights, a
        // bfloat16 image)
        double weights = 0.0, padded = 0.0;
        for (const Unit& u : m.units) {
            const ConvGeom& g = u.g;
            weights = std::max(weights, double(u.n_par));
            if (u.image_conv())
                padded = std::max(padded, double(g.padded_h()) * g.padded_w() * g.C + cpu::conv_amx_scratch_floats(g));
        }
        r.workspace +=
            threads * cpu::gemm_bf16_scratch_floats(gemm_rows * double(m.max_positions()), W, weights + padded);
    }
    const double f = sizeof(float);
    *out = StepMemory{r.parameters * f,  r.gradients * f, r.optimizer * f,
                      r.activations * f, r.partials * f,  r.workspace * f};
    return {};
}

namespace {
Status fit_epochs(Model& m, const DataRef& train, const DataRef* val, const FitConfig& cfg, const FitHooks& hooks,
                  DeviceTrainer* dt, bool distributed);
}  // namespace

Status fit(Model& m, const DataRef& train, const DataRef* val, const FitConfig& cfg, const FitHooks& hooks) {
    OF_CHECK(cfg.epochs >= 0, Config, "epochs must be >= 0");
    OF_CHECK(cfg.batch > 0, Config, "batch size must be positive");
    const LossHook* hook = cfg.loss_hook ? &cfg.loss_hook : nullptr;
    OF_TRY(validate_estimator(m, cfg.estimator, hook));
    OF_TRY(validate_optimizer(cfg.optimizer));
    if (cfg.distributed.size > 0) OF_TRY(validate_distributed(m, cfg, hook));
    DeviceTrainer* dt = placement(m, cfg.estimator, hook);
    // Distributed steps run from the host (each estimate where the model runs, the update on the host), except one
    // rank on a device, which trains as fit without the option: the same steps, bit for bit.
    if (cfg.distributed.size > 1 || (cfg.distributed.size == 1 && !dt)) {
        OF_TRY(distributed_handshake(m, train, cfg));
        return fit_epochs(m, train, val, cfg, hooks, nullptr, true);
    }
    if (!dt) return fit_epochs(m, train, val, cfg, hooks, nullptr, false);
    return on_device(dt, m, &cfg.optimizer, [&] { return fit_epochs(m, train, val, cfg, hooks, dt, false); });
}

namespace {

// The epoch loop; with a device trainer its steps run there, and every epoch end brings the parameters back to the
// host before validation and the epoch hook (which may save them). distributed: each step is distributed_step, which
// also takes a cancel (at its all-reduce, so that every rank stops at the same step).
Status fit_epochs(Model& m, const DataRef& train, const DataRef* val, const FitConfig& cfg, const FitHooks& hooks,
                  DeviceTrainer* dt, bool distributed) {
    const LossHook* hook = cfg.loss_hook ? &cfg.loss_hook : nullptr;
    m.ws.first[0].pending = m.ws.first[1].pending = false;  // pipelining starts afresh with every fit
    if (dt) dt->reset_pipeline();
    const int64_t n = train.rows;
    const int I = m.inputs, C = m.outputs;
    std::vector<int64_t> perm(static_cast<size_t>(n));
    Buffer xb, yv;
    std::vector<int32_t> yl(size_t(cfg.batch) * size_t(m.groups));
    int64_t batch = std::min<int64_t>(cfg.batch, n);
    OF_TRY(xb.reserve(size_t(batch) * I));
    if (train.y.values) OF_TRY(yv.reserve(size_t(batch) * C));
    const int64_t steps = (n + batch - 1) / batch;
    using clock = std::chrono::steady_clock;
    const auto t_fit = clock::now();
    int64_t steps_done = 0;  // in this fit call, for the ETA
    auto since = [](clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); };

    // resume: `epochs` is the total to reach, counting the model's completed epochs, and an epoch cut short
    // (cancel, then save) continues at its next batch. Otherwise `epochs` more epochs, each from its start.
    const int first = cfg.resume ? int(m.epochs_run) : 0;
    const int last = cfg.epochs;  // exclusive end of the epoch index
    if (!cfg.resume) m.epoch_step = 0;
    for (int ep = first; ep < last; ep++) {
        const int64_t s0 = std::min<int64_t>(m.epoch_step, steps);
        EstimatorConfig est = cfg.estimator;  // this epoch's sigma, from the schedule
        if (est.kind == EstimatorConfig::Kind::Ulr) {
            float f = sigma_factor(est.ulr, ep, last);
            for (float& sg : est.ulr.sigma) sg *= f;
        }
        if (cfg.shuffle) shuffle(perm, m.seed, m.epochs_run);
        else
            for (int64_t i = 0; i < n; i++) perm[size_t(i)] = i;
        const auto t_epoch = clock::now();
        auto t_report = t_epoch;
        double loss_sum = 0.0;
        // Accuracy is over labeled positions: a per-position model (groups > 1) has up to `groups` labels a row
        // (-1 = none). An estimator reports the rows it evaluated, B samples times its copies of each, so a step
        // saw rows x labeled / B positions. launched_*: the steps a device has not reported yet.
        int64_t correct = 0, positions_seen = 0, samples = 0, launched_labeled = 0, launched_batch = 0;
        // On a device, steps are launched without waiting for their results; flush() collects them (statistics and
        // a failed step) at every progress report, every 64 steps, at the epoch's end and before a cancel returns.
        // A batch hook needs each step's loss when the step ends: then the device waits for every step.
        const bool async = dt && !hooks.batch && DeviceTrainer::async_ok(est, cfg.max_grad_norm, hook);
        int64_t flushed_samples = 0, launched_samples = 0;
        auto numeric = [&](Status status, int64_t s) {
            if (hooks.diverged) hooks.diverged(status.message, ep + 1, s + 1);
            status.message += " [epoch " + std::to_string(ep + 1) + ", batch " + std::to_string(s + 1) + "]";
            return status;
        };
        auto flush = [&]() -> Status {
            DeviceTrainer::Tally tally;
            Status st = dt->flush(m, &tally);
            loss_sum += tally.loss_sum, correct += tally.correct;
            positions_seen += launched_batch ? tally.rows * launched_labeled / launched_batch : tally.rows;
            launched_labeled = launched_batch = 0;
            if (!st.ok()) {
                if (tally.failed_batch < 0) return st;
                m.epoch_step = uint32_t(tally.failed_batch);
                return numeric(st, tally.failed_batch);
            }
            flushed_samples = launched_samples;
            return {};
        };
        for (int64_t s = s0; s < steps; s++) {
            if (!distributed && hooks.cancel && hooks.cancel->load()) {
                if (async) OF_TRY(flush());
                return {StatusCode::Abort, "training was cancelled"};
            }
            int64_t r0 = s * batch;
            int B = int(std::min(batch, n - r0));
            for (int b = 0; b < B; b++) {
                int64_t src = perm[size_t(r0 + b)];
                std::copy(train.x + src * I, train.x + (src + 1) * I, xb.data() + int64_t(b) * I);
                if (train.y.labels)
                    std::copy(train.y.labels + src * m.groups, train.y.labels + (src + 1) * m.groups,
                              yl.data() + int64_t(b) * m.groups);
                else std::copy(train.y.values + src * C, train.y.values + (src + 1) * C, yv.data() + int64_t(b) * C);
            }
            Targets t{train.y.labels ? yl.data() : nullptr, train.y.values ? yv.data() : nullptr};
            int64_t labeled = B;
            if (train.y.labels && m.groups > 1)
                labeled =
                    std::count_if(yl.begin(), yl.begin() + int64_t(B) * m.groups, [](int32_t l) { return l >= 0; });
            if (async) {
                OF_TRY(dt->launch_step(m, xb.data(), t, B, est, cfg.optimizer, s));
                launched_samples += B;
                launched_labeled += labeled, launched_batch += B;
            } else {
                StepStats st;
                Status status;
                if (distributed) {
                    status = distributed_step(m, xb.data(), t, B, est, cfg, hooks.cancel, &st);
                } else if (dt) {
                    status = dt->train_step(m, xb.data(), t, B, est, cfg.optimizer, &st, cfg.max_grad_norm, hook);
                } else {  // a cancel stops the step inside its blocks and GEMM tiles, not only between steps
                    ThreadPool::CancelScope scope(hooks.cancel);
                    status = train_step(m, xb.data(), t, B, est, cfg.optimizer, &st, hook, cfg.max_grad_norm);
                }
                if (!status.ok()) return status.code == StatusCode::Numeric ? numeric(status, s) : status;
                const int64_t positions = st.rows * labeled / B;
                loss_sum += st.loss * double(B);
                correct += st.correct;
                positions_seen += positions;
                flushed_samples += B;
                if (hooks.batch)
                    hooks.batch(BatchEvent{ep + 1, s + 1, steps, st.loss,
                                           positions ? double(st.correct) / double(positions) : 0.0,
                                           current_lr(m, cfg.optimizer)});
            }
            m.epoch_step = uint32_t(s + 1);
            steps_done++;
            samples += B;
            const bool report = hooks.progress && (since(t_report) >= 0.1 || s + 1 == steps);
            if (async && (report || s + 1 == steps || dt->pending() >= 64)) OF_TRY(flush());
            if (report) {
                t_report = clock::now();
                const int64_t left = (steps - s - 1) + int64_t(last - ep - 1) * steps;
                ProgressEvent p{ep + 1,
                                last,
                                s + 1,
                                steps,
                                loss_sum / double(flushed_samples),
                                positions_seen ? double(correct) / double(positions_seen) : 0.0,
                                double(samples) / since(t_epoch),
                                since(t_fit),
                                since(t_fit) / double(steps_done) * double(left),
                                current_lr(m, cfg.optimizer)};
                hooks.progress(p);
            }
        }
        EpochStats es;
        es.epoch = ep + 1;
        es.seconds = since(t_epoch);
        es.steps = steps - s0;
        es.loss = samples ? loss_sum / double(samples) : 0.0;
        es.accuracy = positions_seen ? double(correct) / double(positions_seen) : 0.0;
        es.lr = current_lr(m, cfg.optimizer);
        m.epochs_run++;
        m.epoch_step = 0;
        if (dt) OF_TRY(dt->download(m));
        if (val) {  // on the device when training runs there: the parameters are still on it
            es.has_val = true;
            OF_TRY(dt ? dt->evaluate(m, *val, &es.val_loss, &es.val_accuracy)
                      : m.evaluate(val->x, val->y, val->rows, &es.val_loss, &es.val_accuracy, m.infer));
        }
        if (hooks.epoch) hooks.epoch(es);
    }
    return {};
}

}  // namespace

}  // namespace of
