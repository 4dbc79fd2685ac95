// The device trainer (trainer.h): what runs on the device, the device copy of the parameters, and a step's sequence
// (upload, estimate, step statistics, update; fit's launched steps; validation). Shapes: B samples, K copies, R = B K
// rows; unit l maps I_l -> O_l values per row with its parameters at the model's slab offsets, a layout the device
// copy keeps. Estimators: ulr_*.cpp, bp.cpp, perturbation.cpp; one unit's passes: unit_passes.cpp, through its kind's
// entries (device/unit_pass.h); recurrent: units/recurrent.cpp.
#include "device/trainer.h"

#include <algorithm>
#include <cmath>

#include "device/unit_pass.h"
#include "model/train.h"
#include "units/unit.h"

namespace of {

std::string DeviceTrainer::unsupported(const Model& m, const EstimatorConfig& e, const LossHook* hook) {
    if (m.has_quant && e.kind == EstimatorConfig::Kind::Bp)
        return "bp() cannot differentiate binary or ternary weights";
    for (const Unit& u : m.units)
        if (!u.kind->device) return "the model has a layer kind the device does not run";
    if (hook && e.kind != EstimatorConfig::Kind::Ulr) return "a JS loss needs ulr()";
    if (e.kind == EstimatorConfig::Kind::Bp && e.bp.sigma > 0.0f) return "bp() with noise injection runs on the CPU";
    if (e.kind == EstimatorConfig::Kind::Ulr) {
        const UlrConfig& c = e.ulr;
        if (!c.modules.empty()) {  // modules of every kind run in the group runner, but for these
            if (c.exact_boundary) return "the exact boundary test hook runs on the CPU";
            if (m.has_quant) return "modules with binary or ternary weights run on the CPU";
            if (c.pipeline && !pipelines(m, c))
                return "pipelined modules whose first module holds a block or layers other than dense, conv and "
                       "pooling ones run on the CPU";
        }
        // The group runner (ulr_groups.cpp) runs every other option on every kind.
    }
    return {};
}

Status DeviceTrainer::begin(Model& m, const OptimizerConfig* o) {
    const size_t bytes = size_t(m.n_params) * sizeof(float);
    if (o && m.opt_kind != int(o->kind)) {  // a new optimizer kind starts from fresh state (train.cpp apply_update)
        OF_TRY(m.opt_m.reserve(size_t(m.n_params)));
        OF_TRY(m.opt_v.reserve(size_t(m.n_params)));
        m.opt_m.zero(), m.opt_v.zero();
        m.opt_t = 0;
        m.opt_kind = int(o->kind);
    }
    OF_TRY(params_.reserve(dev_.get(), bytes));
    OF_TRY(grads_.reserve(dev_.get(), bytes));
    OF_TRY(opt_m_.reserve(dev_.get(), bytes));
    OF_TRY(opt_v_.reserve(dev_.get(), bytes));
    OF_TRY(dev_->upload(params_.f(), m.params->data(), bytes));
    if (m.opt_m.size() >= size_t(m.n_params)) {
        OF_TRY(dev_->upload(opt_m_.f(), m.opt_m.data(), bytes));
        OF_TRY(dev_->upload(opt_v_.f(), m.opt_v.data(), bytes));
    } else {
        OF_TRY(dev_->zero(opt_m_.f(), bytes));
        OF_TRY(dev_->zero(opt_v_.f(), bytes));
    }
    for (int l = 0; l < int(m.units.size()); l++) {  // running statistics (batchNorm's) live on the device too
        const Unit& u = m.units[size_t(l)];
        if (!u.running) continue;
        const size_t bytes = u.running->size() * sizeof(float);
        OF_TRY(unit_buffer(l, kBatch).reserve(dev_.get(), bytes));
        OF_TRY(unit_buffer(l, kRunning).assign(dev_.get(), u.running->data(), bytes));
    }
    pending_.clear();  // a fit that stopped on an error may have left launched steps unread
    if (acc_.size()) OF_TRY(reset_tally());
    active_ = true;
    return {};
}

Status DeviceTrainer::end(Model& m) {
    if (!active_) return {};
    active_ = false;
    return download(m);
}

Status DeviceTrainer::download(Model& m) {
    const size_t bytes = size_t(m.n_params) * sizeof(float);
    OF_TRY(dev_->download(m.params->data(), params_.f(), bytes));
    for (int l = 0; l < int(m.units.size()); l++)
        if (const auto& running = m.units[size_t(l)].running)
            OF_TRY(dev_->download(running->data(), unit_buffer(l, kRunning).f(), running->size() * sizeof(float)));
    if (m.opt_kind >= 0) {
        OF_TRY(m.opt_m.reserve(size_t(m.n_params)));
        OF_TRY(m.opt_v.reserve(size_t(m.n_params)));
        OF_TRY(dev_->download(m.opt_m.data(), opt_m_.f(), bytes));
        OF_TRY(dev_->download(m.opt_v.data(), opt_v_.f(), bytes));
    }
    return {};
}

Status DeviceTrainer::upload_batch(const Model& m, const float* x, const Targets& y, int B) {
    Device* d = dev_.get();
    OF_TRY(x_.assign(d, x, size_t(B) * m.inputs * sizeof(float)));
    batch_rows_ = B;
    for (int l = 0; l < int(m.units.size()); l++) {  // per-batch state (the embedding's token index)
        const DeviceUnitOps* o = m.units[size_t(l)].kind->device;
        if (o && o->batch) OF_TRY(o->batch(pass(m, l, B, false), x));
    }
    if (y.labels) return labels_.assign(d, y.labels, size_t(B) * m.groups * sizeof(int32_t));
    return values_.assign(d, y.values, size_t(B) * m.outputs * sizeof(float));
}

Status DeviceTrainer::read_stats(StepStats* stats, int rows) {
    OF_TRY(dev_->download(stats_host_, stats_.as<double>(), 3 * sizeof(double)));
    stats->loss = stats_host_[0] / rows;
    stats->correct = int64_t(stats_host_[1]);
    stats->rows = rows;
    return {};
}

Status DeviceTrainer::estimate(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e,
                               uint32_t step, double id, int* rows, const LossHook* hook) {
    OF_CHECK(active_, Internal, "device trainer used before begin()");
    OF_CHECK(B > 0, Shape, "empty batch");
    OF_TRY(upload_batch(m, x, y, B));
    const bool wp = e.kind == EstimatorConfig::Kind::Spsa || e.kind == EstimatorConfig::Kind::Es;
    OF_TRY(effective(m, params_.f()));
    const float* in = x_.f();
    // A frozen prefix, as the CPU does it: a dense model trains its tail as a model of its own (slab offsets
    // unchanged, noise ids and per-layer sigma from the tail: estimators/estimate.cpp); any other model keeps its
    // frozen units clean in the B-row prefix of ULR (the plan: estimators/ulr_plan.h), backpropagates through them, or
    // perturbs them with the rest (SPSA, ES), and their gradients are zeroed.
    const bool tail = m.frozen > 0 && m.mlp;
    if (tail) OF_TRY(frozen_forward(m, B, e.kind, &in));
    std::vector<Unit> all;
    EstimatorConfig sub = e;
    if (tail && e.kind == EstimatorConfig::Kind::Ulr) OF_TRY(frozen_tail_config(m.units.size(), m.frozen, &sub.ulr));
    if (tail) {
        all = m.units;
        m.units.erase(m.units.begin(), m.units.begin() + m.frozen);
    }
    *rows = B;
    const int frozen = m.frozen;
    if (tail) m.frozen = 0;  // the tail is the whole model now
    Status st = wp                                     ? perturbation(m, B, e, step, in)
                : e.kind != EstimatorConfig::Kind::Ulr ? bp(m, B, in, e.ulr.sample_base, false)
                                                       : ulr(m, B, sub.ulr, step, in, y, hook, rows);
    if (tail) m.units = std::move(all), m.frozen = frozen;
    OF_TRY(st);
    if (m.frozen > 0 && (!tail || wp)) OF_TRY(dev_->zero(grads_.f(), size_t(trainable_offset(m)) * sizeof(float)));
    OF_TRY(zero_frozen_ranges(m));  // units leave them stale (an adapter writes only its factors)
    if (wp) return {};              // its statistics block is written
    if (id >= 0.0 && acc_.size() == 0) OF_TRY(reset_tally());
    return step_stats(dev::StatsArgs{nullptr, nullptr, loss_.f(), hit_.as<int>(), *rows,
                                     id >= 0.0 ? acc_.as<double>() : nullptr, double(B), id});
}

// The statistics of R rows' losses and hits into stats_ (ops.h StatsArgs): one launch for one chunk, else two.
Status DeviceTrainer::step_stats(dev::StatsArgs a) {
    const int chunks = (a.R + dev::kReduceRows - 1) / dev::kReduceRows;
    OF_TRY(stats_.reserve(dev_.get(), 4 * sizeof(double)));
    a.stats = stats_.as<double>();
    if (chunks == 1) {
        a.direct = 1;
        return dev_->stats_partial(a, 1);
    }
    OF_TRY(stats_part_.reserve(dev_.get(), size_t(chunks) * 2 * sizeof(double)));
    a.part = stats_part_.as<double>();
    OF_TRY(dev_->stats_partial(a, chunks));
    return dev_->stats_final(a, 1);
}

// The slab the forward computes with: the parameters, or a copy with the binary / ternary weights of the layers that
// use them (the gradient goes to the real ones).
Status DeviceTrainer::effective(const Model& m, const float* base) {
    theta_ = base;
    if (!m.has_quant) return {};
    OF_TRY(eff_.reserve(dev_.get(), size_t(m.n_params) * sizeof(float)));
    OF_TRY(dev_->add(dev::AddArgs{eff_.f(), base, 0}, m.n_params));
    for (const Unit& u : m.units)
        if (u.quant)
            OF_TRY(
                dev_->quantize(dev::QuantArgs{eff_.f() + u.w_off, base + u.w_off, u.fan_in(), u.quant}, u.gemm_cols()));
    theta_ = eff_.f();
    return {};
}

// The summed loss and hits of a clean forward of B rows x in inference mode (dropout off, batchNorm's running
// statistics), with the batch's targets uploaded, into sums[0], sums[1]: validation, and weight perturbation's losses.
Status DeviceTrainer::inference_sums(Model& m, int B, const float* x, double* sums) {
    inference_ = true;
    Status st = bp(m, B, x, 0, true);
    inference_ = false;
    OF_TRY(st);
    OF_TRY(dev_->loss_rows(dev::LossArgs{loss_.f(), hit_.as<int>(), a_[m.units.size() - 1]->f(), labels_.as<int32_t>(),
                                         values_.f(), B, m.outputs, 1, m.loss, m.groups},
                           B));
    OF_TRY(step_stats(dev::StatsArgs{nullptr, nullptr, loss_.f(), hit_.as<int>(), B, nullptr, 0.0, 0.0}));
    return dev_->download(sums, stats_.as<double>(), 2 * sizeof(double));
}

// Mean loss and accuracy in chunks of rows, as Model::evaluate computes them; fit's validation while the parameters
// are on the device.
Status DeviceTrainer::evaluate(Model& m, const DataRef& data, double* loss, double* accuracy) {
    OF_CHECK(active_, Internal, "device trainer used before begin()");
    constexpr int kChunk = 4096;
    OF_TRY(effective(m, params_.f()));
    double sum = 0.0;
    int64_t hits = 0;
    for (int64_t r0 = 0; r0 < data.rows; r0 += kChunk) {
        const int n = int(std::min<int64_t>(kChunk, data.rows - r0));
        const Targets t{data.y.labels ? data.y.labels + r0 * m.groups : nullptr,
                        data.y.values ? data.y.values + r0 * m.outputs : nullptr};
        double got[2];
        OF_TRY(upload_batch(m, data.x + r0 * m.inputs, t, n));
        OF_TRY(inference_sums(m, n, x_.f(), got));
        sum += got[0], hits += int64_t(got[1]);
    }
    *loss = sum / double(data.rows);
    *accuracy = accuracy_of(m, data.y, data.rows, hits);
    return {};
}

// A frozen prefix runs clean on B rows; *in then points at its output, and its gradients are zero.
Status DeviceTrainer::frozen_forward(Model& m, int B, EstimatorConfig::Kind kind, const float** in) {
    const int f = m.frozen;
    OF_CHECK(f < int(m.units.size()), Config, "every layer is frozen: nothing to train");
    Device* d = dev_.get();
    int width = 1;
    for (int l = 0; l < f; l++) width = std::max(width, m.units[size_t(l)].O);
    OF_TRY(h0_.reserve(d, size_t(B) * width * sizeof(float)));
    OF_TRY(h1_.reserve(d, size_t(B) * width * sizeof(float)));
    float* P = params_.f();
    float* cur = h0_.f();
    for (int l = 0; l < f; l++) {
        const Unit& u = m.units[size_t(l)];
        OF_TRY(d->gemm(false, true, B, u.O, u.I, 1.0f, *in, u.I, P + u.w_off, u.I, 0.0f, cur, u.O, tf32_for(kind)));
        OF_TRY(d->bias_act(dev::BiasActArgs{cur, cur, u.b_off < 0 ? nullptr : P + u.b_off, u.O, u.act, u.alpha},
                           int64_t(B) * u.O));
        *in = cur;
        cur = cur == h0_.f() ? h1_.f() : h0_.f();
    }
    return d->zero(grads_.f(), size_t(trainable_offset(m)) * sizeof(float));
}

Status DeviceTrainer::reset_tally() {
    const double zero[4] = {0.0, 0.0, 0.0, -1.0};
    return acc_.assign(dev_.get(), zero, sizeof(zero));
}

Status DeviceTrainer::grad_norm(int64_t off, int64_t n, float clip) {
    const int64_t chunks = (n + dev::kReduceChunk - 1) / dev::kReduceChunk;
    OF_TRY(norm_part_.reserve(dev_.get(), size_t(chunks) * sizeof(double)));
    OF_TRY(norm_.reserve(dev_.get(), 2 * sizeof(double)));
    dev::SumSqArgs a{norm_part_.as<double>(), norm_.as<double>(), grads_.f() + off, n, clip};
    OF_TRY(dev_->sumsq_partial(a, chunks));
    return dev_->sumsq_final(a, 1);
}

Status DeviceTrainer::zero_frozen_ranges(const Model& m) {
    for (const auto& [b, e] : m.frozen_ranges) OF_TRY(dev_->zero(grads_.f() + b, size_t(e - b) * sizeof(float)));
    return {};
}

// The optimizer on the trainable part of the slab, as in train.cpp apply_update: a frozen prefix and the frozen ranges
// are never touched, not even by weight decay; the update runs on the spans between them, with the clipping factor of
// the whole gradient (zero on the frozen ranges: estimate() zeroed them).
Status DeviceTrainer::update(const Model& m, const OptimizerConfig& o, int64_t t, int B) {
    for (int l = 0; l < int(m.units.size()); l++) {  // running statistics (batchNorm's) follow this step's batch
        const Unit& u = m.units[size_t(l)];
        if (!u.running) continue;
        OF_TRY(dev_->bn_running(dev::RunningArgs{unit_buffer(l, kRunning).f(), unit_buffer(l, kBatch).f(),
                                                 stats_.as<double>(), double(B) * u.g.Ho, u.g.Co},
                                u.g.Co));
    }
    const int64_t off = trainable_offset(m), n = m.n_params - off;
    if (o.clip_norm > 0.0f) OF_TRY(grad_norm(off, n, o.clip_norm));
    const double* gscale = o.clip_norm > 0.0f ? norm_.as<double>() : nullptr;
    dev::OptArgs a = dev::optimizer_args(o, t, nullptr, nullptr, nullptr, nullptr, gscale, stats_.as<double>());
    auto span = [&](int64_t begin, int64_t end) -> Status {
        if (end <= begin) return {};
        a.p = params_.f() + begin, a.g = grads_.f() + begin, a.m = opt_m_.f() + begin, a.v = opt_v_.f() + begin;
        return dev_->optimizer(a, end - begin);
    };
    int64_t begin = off;
    for (const auto& [b, e] : m.frozen_ranges) {
        OF_TRY(span(begin, std::max(begin, b)));
        begin = std::max(begin, e);
    }
    return span(begin, m.n_params);
}

Status DeviceTrainer::gradients(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e,
                                uint32_t step, StepStats* stats, bool fetch, const LossHook* hook) {
    int rows = 0;
    OF_TRY(estimate(m, x, y, B, e, step, -1.0, &rows, hook));
    OF_TRY(read_stats(stats, rows));
    OF_TRY(read_sigma_grad(m, e, stats));
    OF_TRY(read_layer_var(m, e, stats));
    if (e.kind == EstimatorConfig::Kind::Ulr) update_running_baseline(m, e.ulr, stats->loss);
    if (fetch) OF_TRY(dev_->download(m.grads.data(), grads_.f(), size_t(m.n_params) * sizeof(float)));
    return {};
}

// Layer-wise copies 'auto': this step's variances per layer with parameters (sg_ after the sigma gradients, times
// sigma^2) into the stats and the running ones.
Status DeviceTrainer::read_layer_var(Model& m, const EstimatorConfig& e, StepStats* stats) {
    const UlrConfig& c = e.ulr;
    if (e.kind != EstimatorConfig::Kind::Ulr || !c.layerwise || !c.auto_copies) return {};
    const size_t P = size_t(m.param_units());
    std::vector<double> var(P, 0.0);
    OF_TRY(dev_->download(var.data(), sg_.as<double>() + P, P * sizeof(double)));
    for (size_t p = 0; p < P; p++) {
        const double s = c.sigma.size() == 1 ? c.sigma[0] : c.sigma[p];
        var[p] /= s * s;
    }
    record_layer_var(m, c, lw_copies_, std::move(var), stats);
    return {};
}

Status DeviceTrainer::read_sigma_grad(const Model& m, const EstimatorConfig& e, StepStats* stats) {
    if (e.kind != EstimatorConfig::Kind::Ulr || !e.ulr.learn_sigma) return {};
    stats->sigma_grad.assign(size_t(m.param_units()), 0.0);
    return dev_->download(stats->sigma_grad.data(), sg_.as<double>(), stats->sigma_grad.size() * sizeof(double));
}

Status DeviceTrainer::train_step(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e,
                                 const OptimizerConfig& o, StepStats* stats, double max_grad_norm,
                                 const LossHook* hook) {
    const EstimatorConfig est = training_estimator(m, e);
    int rows = 0;
    OF_TRY(estimate(m, x, y, B, est, m.step, -1.0, &rows, hook));
    if (max_grad_norm > 0.0) {  // checked before the update: the parameters stay those of the last good step
        OF_TRY(read_stats(stats, rows));
        if (!std::isfinite(stats->loss)) return nonfinite_loss(m);
        OF_TRY(grad_norm(0, m.n_params, 0.0f));
        double nrm[2];
        OF_TRY(dev_->download(nrm, norm_.as<double>(), sizeof(nrm)));
        OF_TRY(check_grad_norm(m, nrm[0], max_grad_norm));
    }
    OF_TRY(update(m, o, m.opt_t + 1, B));  // gated on the device by the step's loss being finite: no wait
    OF_TRY(read_stats(stats, rows));
    if (!std::isfinite(stats->loss)) return nonfinite_loss(m);
    OF_TRY(read_sigma_grad(m, est, stats));
    OF_TRY(read_layer_var(m, est, stats));
    learn_sigma_step(m, e, *stats);
    if (est.kind == EstimatorConfig::Kind::Ulr) update_running_baseline(m, est.ulr, stats->loss);
    m.opt_t++;
    m.step++;
    return {};
}

Status DeviceTrainer::launch_step(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e,
                                  const OptimizerConfig& o, int64_t batch) {
    int rows = 0;
    pending_.push_back({batch, m.step, m.opt_t});
    OF_TRY(estimate(m, x, y, B, training_estimator(m, e), m.step, double(pending_.size() - 1), &rows));
    OF_TRY(update(m, o, m.opt_t + 1, B));
    m.opt_t++;
    m.step++;
    return {};
}

Status DeviceTrainer::flush(Model& m, Tally* t) {
    if (pending_.empty()) return {};
    double acc[4];
    OF_TRY(dev_->download(acc, acc_.as<double>(), sizeof(acc)));
    std::vector<Pending> done;
    done.swap(pending_);
    OF_TRY(reset_tally());
    t->loss_sum += acc[0];
    t->correct += int64_t(acc[1]);
    t->rows += int64_t(acc[2]);
    if (acc[3] < 0.0) return {};
    const Pending& p = done[size_t(acc[3])];  // the first failed step: it and every later one changed nothing
    m.step = p.step;
    m.opt_t = p.opt_t;
    t->failed_batch = p.batch;
    return nonfinite_loss(m);
}

}  // namespace of
