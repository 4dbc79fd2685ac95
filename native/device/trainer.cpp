// The device trainer (trainer.h). Shapes: B samples, K copies, R = B K rows; unit l maps I_l -> O_l values per row
// with its parameters at the model's slab offsets, a layout the device copy keeps. Unit semantics follow the CPU's
// model/units.cpp and estimators/generic.cpp (recurrent units: seq.cpp).
#include "device/trainer.h"

#include <algorithm>
#include <climits>
#include <cmath>

#include "estimators/blocks.h"
#include "model/train.h"
#include "rng/sobol.h"

namespace of {

namespace {

// Per unit, its sigma (0 for units without parameters), from the list in parameter-unit order or the one value.
std::vector<float> unit_sigmas(const Model& m, const UlrConfig& c) {
    std::vector<float> sigma(m.units.size(), 0.0f);
    for (size_t l = 0, p = 0; l < m.units.size(); l++)
        if (m.units[l].param()) sigma[l] = c.sigma.size() == 1 ? c.sigma[0] : c.sigma[p++];
    return sigma;
}

}  // namespace

std::string DeviceTrainer::unsupported(const Model& m, const EstimatorConfig& e, const LossHook* hook) {
    if (m.has_quant && e.kind == EstimatorConfig::Kind::Bp) return "bp() cannot differentiate binary or ternary weights";
    for (const DenseUnit& u : m.units) {
        const bool kind = u.kind == UnitKind::Dense || u.kind == UnitKind::Conv2d || u.kind == UnitKind::MaxPool2d ||
                          u.kind == UnitKind::AvgPool2d || u.kind == UnitKind::Dropout || u.kind == UnitKind::Concat ||
                          u.kind == UnitKind::LayerNorm || u.kind == UnitKind::GroupNorm || u.kind == UnitKind::BatchNorm ||
                          u.kind == UnitKind::GraphConv || u.recurrent() || u.kind == UnitKind::Repeat || u.kind == UnitKind::TimeMean;
        if (!kind) return "the model has a layer kind the device does not run";
    }
    if (hook && e.kind != EstimatorConfig::Kind::Ulr) return "a JS loss needs ulr()";
    for (int l = 0; l < m.frozen_end(); l++)
        if (m.units[size_t(l)].recurrent()) return "a frozen recurrent or spiking layer runs on the CPU";
    if (e.kind == EstimatorConfig::Kind::Ulr) {
        const UlrConfig& c = e.ulr;
        if (!c.modules.empty()) {  // ulr_modules runs dense, conv and pooling units with real weights
            if (c.exact_boundary) return "the exact boundary test hook runs on the CPU";
            if (m.has_quant) return "modules with binary or ternary weights run on the CPU";
            for (const DenseUnit& u : m.units)
                if (u.skip_from >= 0 || !(u.kind == UnitKind::Dense || u.kind == UnitKind::Conv2d || u.kind == UnitKind::MaxPool2d ||
                                          u.kind == UnitKind::AvgPool2d))
                    return "modules run on the CPU in models with layers other than dense, conv and pooling ones";
        }
        const char* other = m.dense_only ? nullptr
                            : c.learn_sigma                   ? "a learned sigma"
                            : c.qmc                           ? "QMC noise"
                            : c.baseline == Baseline::Clean   ? "the clean baseline"
                            : c.layerwise                     ? "injection 'layerwise'"
                            : !c.shared_prefix                ? "sharedPrefix: false"
                                                              : nullptr;
        for (const auto& s : c.sigma_channels)
            if (!s.empty() && !m.dense_only) other = "per-channel sigma";
        if (other) return std::string(other) + " runs on the CPU in models with layers other than dense ones";
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
    for (size_t l = 0; l < m.units.size(); l++) {  // batchNorm's running statistics live on the device too
        const DenseUnit& u = m.units[l];
        if (u.kind != UnitKind::BatchNorm) continue;
        while (bn_.size() <= l) bn_.push_back(std::make_unique<Bn>());
        OF_TRY(bn_[l]->running.reserve(dev_.get(), u.running->size() * sizeof(float)));
        OF_TRY(bn_[l]->stats.reserve(dev_.get(), u.running->size() * sizeof(float)));
        OF_TRY(dev_->upload(bn_[l]->running.f(), u.running->data(), u.running->size() * sizeof(float)));
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
    for (size_t l = 0; l < m.units.size() && l < bn_.size(); l++)
        if (m.units[l].kind == UnitKind::BatchNorm)
            OF_TRY(dev_->download(m.units[l].running->data(), bn_[l]->running.f(), m.units[l].running->size() * sizeof(float)));
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
    OF_TRY(x_.reserve(d, size_t(B) * m.inputs * sizeof(float)));
    OF_TRY(d->upload(x_.f(), x, size_t(B) * m.inputs * sizeof(float)));
    if (y.labels) {
        OF_TRY(labels_.reserve(d, size_t(B) * m.groups * sizeof(int32_t)));
        OF_TRY(d->upload(labels_.as<int32_t>(), y.labels, size_t(B) * m.groups * sizeof(int32_t)));
    } else {
        OF_TRY(values_.reserve(d, size_t(B) * m.outputs * sizeof(float)));
        OF_TRY(d->upload(values_.f(), y.values, size_t(B) * m.outputs * sizeof(float)));
    }
    return {};
}

Status DeviceTrainer::col_sum(float* out, const float* d, int R, int O, float alpha, const float* mul) {
    const int chunks = (R + dev::kReduceRows - 1) / dev::kReduceRows;
    dev::ColSumArgs a{out, nullptr, d, R, O, alpha, mul};
    if (chunks == 1) {  // one launch
        a.direct = 1;
        return dev_->col_sum_partial(a, O);
    }
    OF_TRY(col_part_.reserve(dev_.get(), size_t(chunks) * O * sizeof(float)));
    a.part = col_part_.f();
    OF_TRY(dev_->col_sum_partial(a, int64_t(chunks) * O));
    return dev_->col_sum_final(a, O);
}

Status DeviceTrainer::read_stats(StepStats* stats, int rows) {
    OF_TRY(dev_->download(stats_host_, stats_.as<double>(), 3 * sizeof(double)));
    stats->loss = stats_host_[0] / rows;
    stats->correct = int64_t(stats_host_[1]);
    stats->rows = rows;
    return {};
}

// A graph convolution's aggregation A^ x of `rows` rows into out; its CSR adjacency is uploaded on first use.
Status DeviceTrainer::aggregate(const Model& m, int l, float* out, const float* x, int rows) {
    const DenseUnit& u = m.units[size_t(l)];
    while (int(graph_.size()) <= l) graph_.push_back(std::make_unique<Csr>());
    Csr& g = *graph_[size_t(l)];
    if (!g.ready) {
        const Graph& h = *u.graph;
        const size_t e = h.col.size();
        OF_TRY(g.row_ptr.reserve(dev_.get(), h.row_ptr.size() * sizeof(int)));
        OF_TRY(g.col.reserve(dev_.get(), e * sizeof(int)));
        OF_TRY(g.val.reserve(dev_.get(), e * sizeof(float)));
        OF_TRY(dev_->upload(g.row_ptr.as<int>(), h.row_ptr.data(), h.row_ptr.size() * sizeof(int)));
        OF_TRY(dev_->upload(g.col.as<int>(), h.col.data(), e * sizeof(int)));
        OF_TRY(dev_->upload(g.val.f(), h.val.data(), e * sizeof(float)));
        g.ready = true;
    }
    const dev::GraphArgs a{out, x, g.row_ptr.as<int>(), g.col.as<int>(), g.val.f(), u.graph->N, u.g.C};
    return dev_->graph(a, int64_t(rows) * u.graph->N * u.g.C);
}

// The linear part of unit l (dense, conv, layerNorm, groupNorm) on `rows` rows of its input x into out (rows, O). A
// conv unit's patches go to cols_[l], a norm's x^ and 1 / sigma to xh_[l] and inv_[l]: the gradients read them.
Status DeviceTrainer::linear(const Model& m, int l, int rows, const float* x, float* out, bool tf32) {
    Device* d = dev_.get();
    const DenseUnit& u = m.units[size_t(l)];
    const float* W = theta_ + u.w_off;
    if (u.kind == UnitKind::BatchNorm) {  // this batch's statistics (a clean B-row forward computed them); inference: the running ones
        const float* st = inference_ ? bn_[size_t(l)]->running.f() : bn_[size_t(l)]->stats.f();
        return d->bn_apply(dev::BatchApplyArgs{out, x, st, W, u.g.Ho, u.g.Co, 1}, int64_t(rows) * u.O);
    }
    if (u.kind == UnitKind::LayerNorm || u.kind == UnitKind::GroupNorm) {
        const bool layer = u.kind == UnitKind::LayerNorm;
        const int64_t sets = int64_t(rows) * (layer ? u.g.Ho : u.groups);
        while (int(xh_.size()) <= l) xh_.push_back(std::make_unique<DeviceBuffer>()), inv_.push_back(std::make_unique<DeviceBuffer>());
        OF_TRY(xh_[size_t(l)]->reserve(d, size_t(rows) * u.O * sizeof(float)));
        OF_TRY(inv_[size_t(l)]->reserve(d, size_t(sets) * sizeof(float)));
        const dev::NormArgs na{xh_[size_t(l)]->f(), inv_[size_t(l)]->f(), x, u.g.Ho, u.g.Co, u.groups};
        OF_TRY(layer ? d->layer_norm(na, sets) : d->group_norm(na, sets));
        return d->add(dev::AddArgs{out, xh_[size_t(l)]->f(), 0, W, u.g.Co}, int64_t(rows) * u.O);  // gain x^
    }
    if (u.kind == UnitKind::Dense) return d->gemm(false, true, rows, u.O, u.I, 1.0f, x, u.I, W, u.I, 0.0f, out, u.O, tf32);
    const int64_t n = int64_t(rows) * u.g.positions();
    OF_TRY(cols_[size_t(l)]->reserve(d, size_t(n) * u.g.patch() * sizeof(float)));
    if (u.kind == UnitKind::GraphConv) OF_TRY(aggregate(m, l, cols_[size_t(l)]->f(), x, rows));
    else OF_TRY(d->im2row(dev::PatchArgs{cols_[size_t(l)]->f(), x, u.g}, n * u.g.patch()));
    return d->gemm(false, true, int(n), u.g.Co, u.g.patch(), 1.0f, cols_[size_t(l)]->f(), u.g.patch(), W, u.g.patch(), 0.0f, out,
                   u.g.Co, tf32);
}

// Parameter-free unit l (pooling, dropout, concat, repeat, timeMean) on `rows` rows of x: v = its values, a = act(v) (a may be v).
// Dropout's mask: sample sample0 + r / rep for row r, keyed by (seed, step, unit). Concat: row r's block input is row
// r / rep of src.
Status DeviceTrainer::plain(const Model& m, int l, int rows, const float* x, float* v, float* a, const Mask& mask,
                            const float* src) {
    const DenseUnit& u = m.units[size_t(l)];
    const int64_t n = int64_t(rows) * u.O;
    if (u.kind == UnitKind::Dropout && inference_)  // inference: the identity
        OF_TRY(dev_->add(dev::AddArgs{v, x, 0}, n));
    else if (u.kind == UnitKind::Repeat)
        OF_TRY(dev_->repeat(dev::TimeArgs{v, x, u.q.T, u.q.F}, n));
    else if (u.kind == UnitKind::TimeMean)
        OF_TRY(dev_->time_mean(dev::TimeArgs{v, x, u.q.T, u.q.F}, n));
    else if (u.kind == UnitKind::Concat)
        OF_TRY(dev_->concat(dev::ConcatArgs{v, x, src, u.g.Ho, u.g.C, u.g.Co, mask.rep}, n));
    else if (u.kind == UnitKind::Dropout)
        OF_TRY(dev_->dropout(dev::DropoutArgs{v, x, u.O, mask.rep, mask.sample0, mask.seed, mask.step, uint32_t(l), u.rate}, n));
    else OF_TRY(dev_->pool(dev::PoolArgs{v, x, u.g, u.kind == UnitKind::MaxPool2d ? PoolKind::Max : PoolKind::Avg}, n));
    if (u.act == Act::Identity && a == v) return {};
    return dev_->bias_act(dev::BiasActArgs{a, v, nullptr, u.O, u.act, u.alpha}, n);
}

// The gradients of unit l's parameters (dense, conv, graph conv, a norm with its x^ kept) from dv, the gradient at its
// pre-activation on `rows` rows, times alpha: dv^T against its input x or its patches; a norm's gain from the column
// sums of dv x^; the bias from those of dv.
Status DeviceTrainer::weight_grads(const Model& m, int l, int rows, const float* dv, float alpha, const float* x, bool tf32) {
    const DenseUnit& u = m.units[size_t(l)];
    float* G = grads_.f();
    const int n = int(u.gemm_rows(rows)), cols = u.gemm_cols(), fan = u.fan_in();
    if (u.norm()) OF_TRY(col_sum(G + u.w_off, dv, n, cols, alpha, xh_[size_t(l)]->f()));
    else
        OF_TRY(dev_->gemm(true, false, cols, fan, n, alpha, dv, cols, u.convlike() ? cols_[size_t(l)]->f() : x, fan, 0.0f, G + u.w_off,
                          fan, tf32));
    return u.b_off >= 0 ? col_sum(G + u.b_off, dv, n, cols, alpha) : Status{};
}

// The gradient at the input of unit l (dense, conv, graph conv, pooling) from dv at its pre-activation, on `rows` rows:
// dv W; a conv's patch gradients dv W through their adjoint (row2im, or A^ again: it is symmetric); a pool's adjoint.
Status DeviceTrainer::input_grad(const Model& m, int l, int rows, const float* dv, const float* x, float* din, bool tf32) {
    Device* d = dev_.get();
    const DenseUnit& u = m.units[size_t(l)];
    const float* W = params_.f() + u.w_off;
    if (u.kind == UnitKind::MaxPool2d || u.kind == UnitKind::AvgPool2d)
        return d->pool_backward(dev::PoolBackArgs{din, dv, x, u.g, u.kind == UnitKind::MaxPool2d ? PoolKind::Max : PoolKind::Avg},
                                int64_t(rows) * u.I);
    if (!u.convlike()) return d->gemm(false, false, rows, u.I, u.O, 1.0f, dv, u.O, W, u.I, 0.0f, din, u.I, tf32);
    const int n = int(u.gemm_rows(rows)), cols = u.gemm_cols(), fan = u.fan_in();
    OF_TRY(dcols_.reserve(d, size_t(n) * fan * sizeof(float)));
    OF_TRY(d->gemm(false, false, n, fan, cols, 1.0f, dv, cols, W, fan, 0.0f, dcols_.f(), fan, tf32));
    if (u.kind == UnitKind::GraphConv) return aggregate(m, l, din, dcols_.f(), rows);
    return d->row2im(dev::PatchArgs{din, dcols_.f(), u.g}, int64_t(rows) * u.I);
}

// The LR row weights w (B K rows) from the rows' losses (ops.h: one launch per sample up to kSampleWeightsK copies,
// else three stages; the same bits either way); the clean baseline reads clean_.
Status DeviceTrainer::row_weights(int B, int K, const float* loss, float running, const UlrConfig& c, float scale) {
    Device* d = dev_.get();
    dev::RowWeightArgs rw{w_.f(), nullptr, loss, running, K, c.baseline, c.antithetic ? 1 : 0, scale,
                          c.baseline == Baseline::Clean ? clean_.f() : nullptr};
    if (K <= dev::kSampleWeightsK) return d->sample_weights(rw, B);
    OF_TRY(row_part_.reserve(d, size_t(B) * dev::copy_chunks(K) * sizeof(double)));
    OF_TRY(row_sum_.reserve(d, size_t(B) * sizeof(double)));
    rw.part = row_part_.as<double>(), rw.sums = row_sum_.as<double>();
    OF_TRY(d->row_sums(rw, int64_t(B) * dev::copy_chunks(K)));
    OF_TRY(d->row_totals(rw, B));
    return d->row_weights(rw, int64_t(B) * K);
}

// The copy sum of the first noisy unit into g_, from its raw noise E (B K rows of O), scored and weighted on the fly.
dev::CopySumArgs DeviceTrainer::scored_sum(const float* E, int K, int O, const UlrConfig& c, const float* sigmas) {
    dev::CopySumArgs a{g_.f(), E, K, O};
    a.w = w_.f(), a.density = c.density, a.score = c.score, a.sigmas = sigmas;
    return a;
}

// A JS loss: every copy's outputs (R rows of C) to the host, one call, its per-row losses back into `loss` (the hits
// stay the built-in loss's).
Status DeviceTrainer::js_losses(const float* out, const Targets& y, int R, int C, int K, const LossHook& hook, float* loss) {
    hook_out_.resize(size_t(R) * C);
    hook_loss_.resize(size_t(R));
    OF_TRY(dev_->download(hook_out_.data(), out, hook_out_.size() * sizeof(float)));
    OF_TRY(hook(hook_out_.data(), y, R, C, K, hook_loss_.data()));
    for (int r = 0; r < R; r++)
        OF_CHECK(std::isfinite(hook_loss_[size_t(r)]), Data, "the loss function returned a non-finite value for row " + std::to_string(r));
    return dev_->upload(loss, hook_loss_.data(), hook_loss_.size() * sizeof(float));
}

// A unit's noisy forward (noisy_args' math), its noise from Philox, or with QMC (qmc_K > 0 copies per sample) the
// copies' Sobol points (direction numbers uploaded once per width) shifted per sample, then the same noisy arithmetic.
Status DeviceTrainer::noise_forward(const dev::NoisyArgs& na, int qmc_K, uint32_t qmc_dim) {
    Device* d = dev_.get();
    if (!qmc_K) return d->noisy_forward(na, int64_t(na.R) * dev::noise_counters(na.O));
    const int l = int(na.layer);
    while (int(qmc_dirs_.size()) <= l) qmc_dirs_.push_back(std::make_unique<Dirs>());
    Dirs& q = *qmc_dirs_[size_t(l)];
    if (q.width != na.O || q.dim0 != qmc_dim) {
        SobolTable::ensure(int(qmc_dim) + na.O);
        std::vector<uint32_t> host(size_t(na.O) * 32);
        for (int j = 0; j < na.O; j++) {
            const uint32_t* dir = SobolTable::dim(int(qmc_dim) + j);
            std::copy(dir, dir + 32, host.begin() + int64_t(j) * 32);
        }
        OF_TRY(q.v.reserve(d, host.size() * sizeof(uint32_t)));
        OF_TRY(d->upload(q.v.as<uint32_t>(), host.data(), host.size() * sizeof(uint32_t)));
        q.width = na.O, q.dim0 = qmc_dim;
    }
    const uint32_t copies = uint32_t(na.antithetic ? qmc_K / 2 : qmc_K);
    OF_TRY(d->qmc_noise(dev::QmcArgs{na.E, q.v.as<uint32_t>(), na.O, copies, na.seed, na.step, na.layer, na.row0, na.antithetic},
                        int64_t(na.R) * na.O));
    return d->noisy_apply(na, int64_t(na.R) * na.O);
}

// Per-channel sigma (dense models): per layer, the device copy of its noise scale per output (null: one sigma). The
// noise is scaled by it and the score divided by it, so the reductions use 1 for the layer's 1 / sigma.
Status DeviceTrainer::channel_sigmas(int L, const UlrConfig& c, std::vector<const float*>* out) {
    out->assign(size_t(L), nullptr);
    for (int l = 0; l < L && l < int(c.sigma_channels.size()); l++) {
        const std::vector<float>& v = c.sigma_channels[size_t(l)];
        if (v.empty()) continue;
        while (int(sigma_ch_.size()) <= l) sigma_ch_.push_back(std::make_unique<DeviceBuffer>());
        OF_TRY(sigma_ch_[size_t(l)]->reserve(dev_.get(), v.size() * sizeof(float)));
        OF_TRY(dev_->upload(sigma_ch_[size_t(l)]->f(), v.data(), v.size() * sizeof(float)));
        (*out)[size_t(l)] = sigma_ch_[size_t(l)]->f();
    }
    return {};
}

// The ULR estimate (likelihood_ratio.cpp's math for dense models, generic.cpp's for conv and pooling units), with all
// R rows at once instead of cache-sized blocks. Parameter-free units before the first noisy one run clean on B rows;
// the first noisy unit's linear part runs once per sample (the shared prefix) and its K noisy copies read it. A conv
// unit is im2row + one GEMM: its rows are (sample, position) pairs, so its noise row is the whole (positions x
// channels) output of a copy, and its weight gradient is S^T A over all (copy, position) rows with its patches A kept
// from the forward. Noise layer ids are unit indices, as on the CPU.
Status DeviceTrainer::ulr(Model& m, int B, const UlrConfig& c, uint32_t step, const float* x, int fe, const Targets& y,
                          const LossHook* hook) {
    Device* d = dev_.get();
    const int K = c.copies, L = int(m.units.size()), C = m.outputs;
    int R = 0;
    OF_TRY(step_rows(B, K, &R));
    const uint64_t seed = c.has_seed ? c.seed : m.seed;
    const bool tf32 = tf32_for(EstimatorConfig::Kind::Ulr);
    // batchNorm: the noisy copies normalize with the clean batch's statistics, from a clean B-row forward (generic.cpp)
    if (m.has_batch_norm) OF_TRY(bp(m, B, x, c.sample_base, true));
    // the clean baseline (dense models): each sample's noise-free loss, from a clean B-row forward
    if (c.baseline == Baseline::Clean) {
        OF_TRY(bp(m, B, x, c.sample_base, true));
        OF_TRY(clean_.reserve(d, size_t(B) * sizeof(float)));
        OF_TRY(clean_hit_.reserve(d, size_t(B) * sizeof(int)));
        OF_TRY(d->loss_rows(dev::LossArgs{clean_.f(), clean_hit_.as<int>(), a_[m.units.size() - 1]->f(), labels_.as<int32_t>(),
                                          values_.f(), B, m.outputs, 1, m.loss, m.groups}, B));
    }
    int first = fe;  // frozen units (fine-tuning, units before fe) stay clean in the B-row prefix
    while (first < L && !m.units[size_t(first)].param()) first++;
    OF_CHECK(first < L, Config, "the model has no layer with parameters to train");
    const std::vector<float> sigma = unit_sigmas(m, c);
    std::vector<const float*> sigmas;
    OF_TRY(channel_sigmas(L, c, &sigmas));
    while (int(a_.size()) < L) a_.push_back(std::make_unique<DeviceBuffer>()), e_.push_back(std::make_unique<DeviceBuffer>());
    while (int(cols_.size()) < L) cols_.push_back(std::make_unique<DeviceBuffer>());
    auto rows_of = [&](int l) { return l < first ? B : R; };
    for (int l = 0; l < L; l++) {
        const DenseUnit& u = m.units[size_t(l)];
        OF_TRY(a_[size_t(l)]->reserve(d, size_t(rows_of(l)) * u.O * sizeof(float)));
        if (u.param()) OF_TRY(e_[size_t(l)]->reserve(d, size_t(R) * u.noise_width() * sizeof(float)));
    }
    const DenseUnit& u0 = m.units[size_t(first)];
    OF_TRY(v0_.reserve(d, size_t(B) * u0.noise_width() * sizeof(float)));  // a recurrent unit: X W^T of every step
    OF_TRY(g_.reserve(d, size_t(B) * u0.noise_width() * sizeof(float)));
    OF_TRY(loss_.reserve(d, size_t(R) * sizeof(float)));
    OF_TRY(hit_.reserve(d, size_t(R) * sizeof(int)));
    OF_TRY(w_.reserve(d, size_t(R) * sizeof(float)));
    float* G = grads_.f();
    auto bias = [&](const DenseUnit& u) -> const float* { return u.b_off < 0 ? nullptr : theta_ + u.b_off; };
    auto input = [&](int l) { return l == 0 ? x : a_[size_t(l - 1)]->f(); };
    // storeNoise false (not with QMC or a learned sigma, which read the noise itself): the forward keeps no noise, and
    // the reduction regenerates it from the same counters straight into the weighted scores (a write and a read of
    // R x O values less per unit)
    const bool regen = !c.store_noise && !c.qmc && !c.learn_sigma;
    auto sliced = [&](dev::NoisyArgs na) {  // copy-parallel ranks: the noise rows of the whole K
        if (c.slice_total) na.slice_local = uint32_t(K), na.slice_total = c.slice_total, na.slice_offset = c.slice_offset;
        return na;
    };
    auto noise_args = [&](int l, const float* pre, int rep) {
        const DenseUnit& u = m.units[size_t(l)];
        dev::NoisyArgs na{a_[size_t(l)]->f(), regen ? nullptr : e_[size_t(l)]->f(), pre, bias(u), u.gemm_cols(), sigma[size_t(l)], R,
                          u.O, rep, u.act, u.alpha, seed, step, uint32_t(l), uint32_t(c.sample_base) * uint32_t(K),
                          c.antithetic ? 1 : 0, int(c.density), sigmas[size_t(l)]};
        return sliced(na);
    };
    auto noisy = [&](int l, const float* pre, int rep) -> Status {
        return noise_forward(noise_args(l, pre, rep), c.qmc ? K : 0, c.qmc ? qmc_dim0(m, l) : 0);
    };

    // a residual block's end adds its input: from the B-row prefix (row r / K) when the block starts at or before the
    // first noisy unit, else from the block's own rows
    auto skip = [&](int l, int rows) -> Status {
        const DenseUnit& u = m.units[size_t(l)];
        if (u.skip_from < 0 || u.kind == UnitKind::Concat) return {};
        const int rep = l >= first && u.skip_from <= first ? K : 1;
        float* a = a_[size_t(l)]->f();
        return d->skip_add(dev::SkipArgs{a, nullptr, a, input(u.skip_from), u.O, rep, u.post_act, u.post_alpha}, int64_t(rows) * u.O);
    };
    // forward: the clean B-row prefix, the first noisy unit's K copies of its shared linear part, then R rows
    const uint32_t base = c.sample_base;
    auto src = [&](int l) { return m.units[size_t(l)].kind == UnitKind::Concat ? input(m.units[size_t(l)].skip_from) : nullptr; };
    for (int l = 0; l < first; l++) {
        const DenseUnit& u = m.units[size_t(l)];
        float* a = a_[size_t(l)]->f();
        if (u.param()) {  // a frozen unit
            OF_TRY(linear(m, l, B, input(l), a, tf32));
            OF_TRY(d->bias_act(dev::BiasActArgs{a, a, bias(u), u.gemm_cols(), u.act, u.alpha}, int64_t(B) * u.O));
        } else {
            OF_TRY(plain(m, l, B, input(l), a, a, {1, base, seed, step}, src(l)));
        }
        OF_TRY(skip(l, B));
    }
    // a recurrent unit takes its noise inside the recurrence: E first (noisy_forward with no output), then the steps
    auto seq = [&](int l, const float* xw) -> Status {
        const DenseUnit& u = m.units[size_t(l)];
        float* a = a_[size_t(l)]->f();
        const dev::NoisyArgs na = sliced({nullptr, e_[size_t(l)]->f(), nullptr, nullptr, 1, sigma[size_t(l)], R, u.noise_width(), 1,
                                          Act::Identity, 0.0f, seed, step, uint32_t(l), uint32_t(c.sample_base) * uint32_t(K),
                                          c.antithetic ? 1 : 0, int(c.density)});
        OF_TRY(d->noisy_forward(na, int64_t(R) * dev::noise_counters(u.noise_width())));
        OF_TRY(seq_forward(m, l, R, input(l), a, e_[size_t(l)]->f(), sigma[size_t(l)], xw, K, tf32));
        if (u.act == Act::Identity) return {};
        return d->bias_act(dev::BiasActArgs{a, a, nullptr, u.O, u.act, u.alpha}, int64_t(R) * u.O);
    };
    if (u0.recurrent()) {  // the input projections X W^T once per sample and step, read by the sample's K copies
        OF_TRY(d->gemm(false, true, B * u0.q.T, u0.q.G * u0.q.H, u0.q.F, 1.0f, input(first), u0.q.F, theta_ + u0.w_off, u0.q.F, 0.0f,
                       v0_.f(), u0.q.G * u0.q.H, tf32));
        OF_TRY(seq(first, v0_.f()));
    } else {
        OF_TRY(linear(m, first, B, input(first), v0_.f(), tf32));
        OF_TRY(noisy(first, v0_.f(), K));
    }
    OF_TRY(skip(first, R));
    for (int l = first + 1; l < L; l++) {
        const DenseUnit& u = m.units[size_t(l)];
        if (!u.param()) {
            // a concat's block input: from the B-row prefix (row r / K) when the block starts there
            const int rep = u.kind == UnitKind::Concat && u.skip_from > first ? 1 : K;
            OF_TRY(plain(m, l, R, input(l), a_[size_t(l)]->f(), a_[size_t(l)]->f(), {rep, base, seed, step}, src(l)));
        } else if (u.recurrent()) {
            OF_TRY(seq(l, nullptr));
        } else {
            OF_TRY(linear(m, l, R, input(l), a_[size_t(l)]->f(), tf32));
            OF_TRY(noisy(l, a_[size_t(l)]->f(), 1));
        }
        OF_TRY(skip(l, R));
    }
    const float* out = a_[size_t(L - 1)]->f();
    OF_TRY(d->loss_rows(dev::LossArgs{loss_.f(), hit_.as<int>(), out, labels_.as<int32_t>(), values_.f(), R, C, K, m.loss, m.groups}, R));
    if (hook) OF_TRY(js_losses(out, y, R, C, K, *hook, loss_.f()));
    const float running = m.has_running ? float(m.running_loss) : 0.0f;
    OF_TRY(row_weights(B, K, loss_.f(), running, c, 1.0f / float(R)));

    // gradients: S = diag(w) s(E) in place, then one GEMM per unit (the first: G = copy sum of S, then on B rows)
    for (int l = first; l < L; l++) {
        const DenseUnit& u = m.units[size_t(l)];
        if (!u.param()) continue;
        float* S = e_[size_t(l)]->f();
        const int nw = u.noise_width();
        if (c.learn_sigma) {  // d loss / d log sigma_l, from the noise before the score replaces it
            OF_TRY(sg_rows_.reserve(d, size_t(R) * sizeof(double)));
            OF_TRY(sg_part_.reserve(d, size_t((R + dev::kReduceRows - 1) / dev::kReduceRows) * sizeof(double)));
            OF_TRY(sg_.reserve(d, size_t(L) * sizeof(double)));
            OF_TRY(d->sigma_grad(dev::SigmaGradArgs{sg_rows_.as<double>(), S, w_.f(), nw, c.density}, R));
            const dev::DSumArgs ds{sg_part_.as<double>(), sg_.as<double>() + l, sg_rows_.as<double>(), R};
            OF_TRY(d->dsum_partial(ds, (R + dev::kReduceRows - 1) / dev::kReduceRows));
            OF_TRY(d->dsum_final(ds, 1));
        }
        const bool fused = l == first && !u.recurrent() && !regen;  // the copy sum scores the noise itself
        // a later dense unit with a bias: its scores and their column sums' first stage in one pass
        const bool scored_cols = l != first && !regen && u.kind == UnitKind::Dense && u.b_off >= 0;
        const int chunks = (R + dev::kReduceRows - 1) / dev::kReduceRows;
        if (scored_cols) {
            OF_TRY(col_part_.reserve(d, size_t(chunks) * u.O * sizeof(float)));
            const dev::ScoreColsArgs sc{{S, w_.f(), u.O, c.density, c.score, sigmas[size_t(l)]}, col_part_.f(), R};
            OF_TRY(d->score_cols(sc, int64_t(chunks) * u.O));
        } else if (regen && !u.recurrent()) {
            dev::NoisyArgs na = noise_args(l, nullptr, 1);
            na.out = nullptr, na.E = S, na.w = w_.f(), na.score = c.score;
            OF_TRY(d->noisy_forward(na, int64_t(R) * dev::noise_counters(u.O)));
        } else if (!fused) {
            OF_TRY(d->score_rows(dev::ScoreRowsArgs{S, w_.f(), nw, c.density, c.score, sigmas[size_t(l)]}, int64_t(R) * nw));
        }
        const float inv_sigma = sigmas[size_t(l)] ? 1.0f : 1.0f / sigma[size_t(l)];
        if (u.recurrent()) {  // the first unit's dW from G = sum over copies (B T rows); U and b per copy row
            if (l == first) {
                OF_TRY(d->copy_sum(dev::CopySumArgs{g_.f(), S, K, nw}, int64_t(B) * nw));
                OF_TRY(d->gemm(true, false, u.q.G * u.q.H, u.q.F, B * u.q.T, inv_sigma, g_.f(), u.q.G * u.q.H, input(l), u.q.F, 0.0f,
                               G + u.w_off, u.q.F, tf32));
            }
            OF_TRY(seq_reduce(m, l, R, input(l), S, inv_sigma, l != first, tf32));
            continue;
        }
        const int rows = l == first ? B : R;
        if (l == first) {
            OF_TRY(d->copy_sum(fused ? scored_sum(S, K, u.O, c, sigmas[size_t(l)]) : dev::CopySumArgs{g_.f(), S, K, u.O}, int64_t(B) * u.O));
            S = g_.f();
        }
        // in the GEMM view: S (rows x positions, cols) against the unit's input (dense) or its patches (conv); a norm's
        // gain gets the column sums of S x^
        if (u.kind == UnitKind::BatchNorm) {  // its x^ from the batch statistics
            while (int(xh_.size()) <= l) xh_.push_back(std::make_unique<DeviceBuffer>()), inv_.push_back(std::make_unique<DeviceBuffer>());
            OF_TRY(xh_[size_t(l)]->reserve(d, size_t(rows) * u.O * sizeof(float)));
            OF_TRY(d->bn_apply(dev::BatchApplyArgs{xh_[size_t(l)]->f(), input(l), bn_[size_t(l)]->stats.f(), nullptr, u.g.Ho, u.g.Co, 1},
                               int64_t(rows) * u.O));
        }
        if (scored_cols) {  // the weight GEMM, then the bias from the column sums' chunks
            OF_TRY(d->gemm(true, false, u.O, u.I, R, inv_sigma, S, u.O, input(l), u.I, 0.0f, G + u.w_off, u.I, tf32));
            OF_TRY(d->col_sum_final(dev::ColSumArgs{G + u.b_off, col_part_.f(), nullptr, R, u.O, inv_sigma}, u.O));
            continue;
        }
        OF_TRY(weight_grads(m, l, rows, S, inv_sigma, input(l), tf32));
    }
    return {};
}

// Layer-wise injection (estimators/layerwise.cpp, one layer per group, fixed copies per layer): a clean forward of
// the B samples keeps every layer's pre-activation and activation; layer l's group of K_l copies per sample starts
// from its clean pre-activation plus noise, runs the later layers clean, and reduces through G_l = sum_k w s(e) on B
// rows. Every group's losses go to one buffer (rows: the groups' rows in order), so the step statistics cover them.
Status DeviceTrainer::ulr_layerwise(Model& m, int B, const UlrConfig& c, uint32_t step, const float* x, int* rows_out,
                                    const Targets& y, const LossHook* hook) {
    Device* d = dev_.get();
    const int L = int(m.units.size()), C = m.outputs;
    const uint64_t seed = c.has_seed ? c.seed : m.seed;
    const bool tf32 = tf32_for(EstimatorConfig::Kind::Ulr);
    lw_copies_ = layerwise_copies(m, c);  // copies 'auto': from the running variances; read_layer_var records this step's
    auto copies = [&](int l) { return lw_copies_[size_t(l)]; };
    auto sigma = [&](int l) { return c.sigma.size() == 1 ? c.sigma[0] : c.sigma[size_t(l)]; };
    std::vector<const float*> sigmas;
    OF_TRY(channel_sigmas(L, c, &sigmas));
    auto alpha = [&](int l) { return sigmas[size_t(l)] ? 1.0f : 1.0f / sigma(l); };
    // groups of consecutive layers perturbed together (blocks), by default one layer each; a group uses its first
    // layer's copies
    std::vector<int> gstart;
    for (int l = 0, b = 0; l < L; l += c.blocks.empty() ? 1 : c.blocks[size_t(b++)]) gstart.push_back(l);
    const int NG = int(gstart.size());
    auto gend = [&](int g) { return g + 1 < NG ? gstart[size_t(g) + 1] : L; };
    std::vector<int64_t> off(size_t(NG) + 1, 0);
    int kmax = 1, width = 1, depth = 1;
    for (int g = 0; g < NG; g++) {
        const int l = gstart[size_t(g)];
        int R = 0;
        OF_TRY(step_rows(B, copies(l), &R));
        off[size_t(g) + 1] = off[size_t(g)] + R;
        kmax = std::max(kmax, copies(l));
        depth = std::max(depth, gend(g) - l);
    }
    for (const DenseUnit& u : m.units) width = std::max(width, u.O);
    const int64_t total = off[size_t(NG)];
    OF_CHECK(total <= INT_MAX / 4, Shape, "batch x copies is too large");
    // 1. the clean forward (bp's, which keeps v and a per layer); its losses for the clean baseline
    OF_TRY(bp(m, B, x, 0, true));
    if (c.baseline == Baseline::Clean) {
        OF_TRY(clean_.reserve(d, size_t(B) * sizeof(float)));
        OF_TRY(clean_hit_.reserve(d, size_t(B) * sizeof(int)));
        OF_TRY(d->loss_rows(dev::LossArgs{clean_.f(), clean_hit_.as<int>(), a_[size_t(L - 1)]->f(), labels_.as<int32_t>(), values_.f(),
                                          B, C, 1, m.loss, m.groups}, B));
    }
    const int64_t Rmax = int64_t(B) * kmax;
    OF_TRY(loss_.reserve(d, size_t(total) * sizeof(float)));
    OF_TRY(hit_.reserve(d, size_t(total) * sizeof(int)));
    OF_TRY(w_.reserve(d, size_t(Rmax) * sizeof(float)));
    OF_TRY(lw_a_.reserve(d, size_t(Rmax) * width * sizeof(float)));
    OF_TRY(lw_b_.reserve(d, size_t(Rmax) * width * sizeof(float)));
    while (int(lw_ga_.size()) < depth) lw_ga_.push_back(std::make_unique<DeviceBuffer>()), lw_ge_.push_back(std::make_unique<DeviceBuffer>());
    for (int i = 0; i < depth; i++) {  // a group's i-th layer: its noisy activations and noise
        OF_TRY(lw_ga_[size_t(i)]->reserve(d, size_t(Rmax) * width * sizeof(float)));
        OF_TRY(lw_ge_[size_t(i)]->reserve(d, size_t(Rmax) * width * sizeof(float)));
    }
    OF_TRY(g_.reserve(d, size_t(B) * width * sizeof(float)));
    if (c.auto_copies) {
        OF_TRY(sg_rows_.reserve(d, size_t(Rmax) * sizeof(double)));
        OF_TRY(sg_part_.reserve(d, size_t((Rmax + dev::kReduceRows - 1) / dev::kReduceRows) * sizeof(double)));
        OF_TRY(sg_.reserve(d, size_t(L) * sizeof(double)));
    }
    const float* P = theta_;
    const float running = m.has_running ? float(m.running_loss) : 0.0f;
    auto bias = [&](const DenseUnit& u) -> const float* { return u.b_off < 0 ? nullptr : P + u.b_off; };
    for (int g = 0; g < NG; g++) {
        const int l = gstart[size_t(g)], lend = gend(g);
        const DenseUnit& u = m.units[size_t(l)];
        const int K = copies(l), R = B * K;
        auto noisy = [&](int j, const float* pre, int rep) {
            const DenseUnit& uj = m.units[size_t(j)];
            const dev::NoisyArgs na{lw_ga_[size_t(j - l)]->f(), lw_ge_[size_t(j - l)]->f(), pre, j == l ? nullptr : bias(uj), uj.O,
                                    sigma(j), R, uj.O, rep, uj.act, uj.alpha, seed, step, uint32_t(j), 0, c.antithetic ? 1 : 0,
                                    int(c.density), sigmas[size_t(j)]};
            return noise_forward(na, c.qmc ? K : 0, c.qmc ? qmc_dim0(m, j) : 0);
        };
        // the group: its first layer noisy from its clean pre-activation (bias included), its other layers noisy from
        // their noisy inputs, the rest clean
        OF_TRY(noisy(l, e_[size_t(l)]->f(), K));
        const float* cur = lw_ga_[0]->f();
        for (int j = l + 1; j < lend; j++) {
            const DenseUnit& uj = m.units[size_t(j)];
            float* v = lw_ga_[size_t(j - l)]->f();
            OF_TRY(d->gemm(false, true, R, uj.O, uj.I, 1.0f, cur, uj.I, P + uj.w_off, uj.I, 0.0f, v, uj.O, tf32));
            OF_TRY(noisy(j, v, 1));
            cur = v;
        }
        for (int j = lend; j < L; j++) {
            const DenseUnit& uj = m.units[size_t(j)];
            float* next = cur == lw_a_.f() ? lw_b_.f() : lw_a_.f();
            OF_TRY(d->gemm(false, true, R, uj.O, uj.I, 1.0f, cur, uj.I, P + uj.w_off, uj.I, 0.0f, next, uj.O, tf32));
            OF_TRY(d->bias_act(dev::BiasActArgs{next, next, bias(uj), uj.O, uj.act, uj.alpha}, int64_t(R) * uj.O));
            cur = next;
        }
        float* loss = loss_.f() + off[size_t(g)];
        OF_TRY(d->loss_rows(dev::LossArgs{loss, hit_.as<int>() + off[size_t(g)], cur, labels_.as<int32_t>(), values_.f(), R, C, K, m.loss,
                                          m.groups}, R));
        if (hook) OF_TRY(js_losses(cur, y, R, C, K, *hook, loss));  // one call per group, its rows (sample, copy)
        OF_TRY(row_weights(B, K, loss, running, c, 1.0f / float(int64_t(B) * K)));
        const float* a_prev = l == 0 ? x : a_[size_t(l - 1)]->f();
        if (c.auto_copies) {  // this layer's estimate variance (times sigma^2): sum_r w_r^2 |s(e_r)|^2 |a_prev(sample)|^2
            OF_TRY(d->var_rows(dev::VarRowsArgs{sg_rows_.as<double>(), lw_ge_[0]->f(), w_.f(), a_prev, u.O, u.I, K, c.density, c.score}, R));
            const dev::DSumArgs ds{sg_part_.as<double>(), sg_.as<double>() + l, sg_rows_.as<double>(), R};
            OF_TRY(d->dsum_partial(ds, (R + dev::kReduceRows - 1) / dev::kReduceRows));
            OF_TRY(d->dsum_final(ds, 1));
        }
        // the first layer through G = sum_k w s(e) on B rows (its input is clean); the others per row
        OF_TRY(d->copy_sum(scored_sum(lw_ge_[0]->f(), K, u.O, c, sigmas[size_t(l)]), int64_t(B) * u.O));
        OF_TRY(weight_grads(m, l, B, g_.f(), alpha(l), a_prev, tf32));
        for (int j = l + 1; j < lend; j++) {
            const DenseUnit& uj = m.units[size_t(j)];
            float* Sj = lw_ge_[size_t(j - l)]->f();
            OF_TRY(d->score_rows(dev::ScoreRowsArgs{Sj, w_.f(), uj.O, c.density, c.score, sigmas[size_t(j)]}, int64_t(R) * uj.O));
            OF_TRY(weight_grads(m, j, R, Sj, alpha(j), lw_ga_[size_t(j - l - 1)]->f(), tf32));
        }
    }
    *rows_out = int(total);
    return {};
}

// Local module training (estimators/hybrid.cpp; dense, conv and pooling units): noise only on each module's last
// pre-activation, its boundary; each module gets the LR estimate of the loss gradient there, alpha w s(E) (alpha =
// 1 / sigma, or 1 with per-channel sigma), and backpropagates it inside itself only. The first module runs on B rows
// and takes its boundary estimate summed over copies (G = sum_k w s(E)); the others run on the R copy rows. Module
// ends are unit indices (pools before a layer belong to its module); noise layer ids are unit indices, as on the CPU.
Status DeviceTrainer::ulr_modules(Model& m, int B, const UlrConfig& c, uint32_t step, const float* x, const Targets& y,
                                  const LossHook* hook) {
    Device* d = dev_.get();
    const int K = c.copies, L = int(m.units.size()), C = m.outputs;
    int R = 0;
    OF_TRY(step_rows(B, K, &R));
    const uint64_t seed = c.has_seed ? c.seed : m.seed;
    const bool tf32 = tf32_for(EstimatorConfig::Kind::Ulr);
    const std::vector<int> ends = module_unit_ends(m, c.modules);
    const int e0 = ends[0];
    const std::vector<float> sigma = unit_sigmas(m, c);
    std::vector<const float*> sigmas;
    OF_TRY(channel_sigmas(L, c, &sigmas));
    auto rows_of = [&](int l) { return l < e0 - 1 ? B : R; };  // the first module's inner units run on B rows
    while (int(a_.size()) < L) a_.push_back(std::make_unique<DeviceBuffer>()), e_.push_back(std::make_unique<DeviceBuffer>());
    while (int(cols_.size()) < L) cols_.push_back(std::make_unique<DeviceBuffer>());
    int64_t width = m.inputs;
    for (int l = 0; l < L; l++) {
        const DenseUnit& u = m.units[size_t(l)];
        width = std::max<int64_t>({width, u.I, u.O});
        OF_TRY(a_[size_t(l)]->reserve(d, size_t(rows_of(l)) * u.O * sizeof(float)));
        OF_TRY(e_[size_t(l)]->reserve(d, size_t(rows_of(l)) * u.O * sizeof(float)));  // v (inside a module) or E (boundary)
    }
    OF_TRY(v0_.reserve(d, size_t(B) * m.units[size_t(e0 - 1)].O * sizeof(float)));
    OF_TRY(g_.reserve(d, size_t(B) * m.units[size_t(e0 - 1)].O * sizeof(float)));
    OF_TRY(loss_.reserve(d, size_t(R) * sizeof(float)));
    OF_TRY(hit_.reserve(d, size_t(R) * sizeof(int)));
    OF_TRY(w_.reserve(d, size_t(R) * sizeof(float)));
    const bool pipelined = c.pipeline && c.training;
    const int64_t drows = std::max<int64_t>(R, pipelined && pipe_.pending ? pipe_.B : 0);
    OF_TRY(d0_.reserve(d, size_t(drows) * width * sizeof(float)));
    OF_TRY(d1_.reserve(d, size_t(drows) * width * sizeof(float)));
    auto input = [&](int l) { return l == 0 ? x : a_[size_t(l - 1)]->f(); };
    auto bias = [&](const DenseUnit& u) -> const float* { return u.b_off < 0 ? nullptr : theta_ + u.b_off; };
    auto boundary = [&](int l) { return std::find(ends.begin(), ends.end(), l + 1) != ends.end(); };

    // module j's reductions on `rows` rows from D (its boundary's weighted scores, summed over copies for the first),
    // then BP inside the module from alpha D; x0: the model's input rows
    auto backward = [&](size_t j, int rows, const float* D, const float* x0) -> Status {
        const int s = j == 0 ? 0 : ends[j - 1], top = ends[j] - 1;
        const DenseUnit& ut = m.units[size_t(top)];
        auto in = [&](int l) { return l == 0 ? x0 : a_[size_t(l - 1)]->f(); };
        const float alpha = sigmas[size_t(top)] ? 1.0f : 1.0f / sigma[size_t(top)];
        OF_TRY(weight_grads(m, top, rows, D, alpha, in(top), tf32));
        if (top == s) return {};
        float* dcur = d0_.f();
        float* dnext = d1_.f();
        OF_TRY(d->axpy(dev::AxpyArgs{dcur, nullptr, D, alpha}, int64_t(rows) * ut.O));
        for (int l = top; l > s; l--) {  // the gradient into unit l - 1's output, then through its activation and itself
            OF_TRY(input_grad(m, l, rows, dcur, in(l), dnext, tf32));
            const DenseUnit& p = m.units[size_t(l - 1)];
            OF_TRY(d->act_backward(dev::ActBackArgs{dnext, dnext, e_[size_t(l - 1)]->f(), a_[size_t(l - 1)]->f(), p.act, p.alpha},
                                   int64_t(rows) * p.O));
            std::swap(dcur, dnext);
            if (p.param()) OF_TRY(weight_grads(m, l - 1, rows, dcur, 1.0f, in(l - 1), tf32));
        }
        return {};
    };
    // Pipelined (training only): the first module's reduction runs one step late. This step reduces the previous
    // step's first module (its B-row state kept in pipe_) with today's weights, as the CPU does; with none pending,
    // the first module's gradient is zero. Its own state goes to pipe_ at the end.
    auto swap_first = [&]() {  // the first module's B-row buffers <-> pipe_'s
        const int n = pipe_.end;
        while (int(pipe_.a.size()) < n)
            pipe_.a.push_back(std::make_unique<DeviceBuffer>()), pipe_.e.push_back(std::make_unique<DeviceBuffer>()),
                pipe_.cols.push_back(std::make_unique<DeviceBuffer>());
        for (int l = 0; l < n; l++) {
            if (l < n - 1) std::swap(a_[size_t(l)], pipe_.a[size_t(l)]), std::swap(e_[size_t(l)], pipe_.e[size_t(l)]);
            std::swap(cols_[size_t(l)], pipe_.cols[size_t(l)]);
        }
    };
    if (pipelined) {
        const DenseUnit& ue = m.units[size_t(e0 - 1)];
        if (pipe_.pending && pipe_.end == e0) {
            swap_first();
            Status st = backward(0, pipe_.B, pipe_.g.f(), pipe_.x.f());
            swap_first();
            OF_TRY(st);
        } else {
            OF_TRY(d->zero(grads_.f(), size_t(ue.w_off + ue.n_par) * sizeof(float)));
        }
        pipe_.pending = false;
    }

    // forward: the first module's units (its boundary's linear part included) on B rows, its boundary's K noisy copies
    // of them, then the other modules on R rows
    for (int l = 0; l < L; l++) {
        const DenseUnit& u = m.units[size_t(l)];
        const int rows = l < e0 ? B : R;
        if (!u.param()) {  // a pool
            OF_TRY(plain(m, l, rows, input(l), e_[size_t(l)]->f(), a_[size_t(l)]->f(), {1, 0, seed, step}));
            continue;
        }
        float* v = !boundary(l) ? e_[size_t(l)]->f() : l == e0 - 1 ? v0_.f() : a_[size_t(l)]->f();
        OF_TRY(linear(m, l, rows, input(l), v, tf32));
        if (!boundary(l)) {
            OF_TRY(d->bias_act(dev::BiasActArgs{a_[size_t(l)]->f(), v, bias(u), u.gemm_cols(), u.act, u.alpha}, int64_t(rows) * u.O));
            continue;
        }
        const dev::NoisyArgs na{a_[size_t(l)]->f(), e_[size_t(l)]->f(), v, bias(u), u.gemm_cols(), sigma[size_t(l)], R, u.O,
                                l == e0 - 1 ? K : 1, u.act, u.alpha, seed, step, uint32_t(l), 0, c.antithetic ? 1 : 0, int(c.density),
                                sigmas[size_t(l)]};
        OF_TRY(d->noisy_forward(na, int64_t(R) * dev::noise_counters(u.O)));
    }
    OF_TRY(d->loss_rows(dev::LossArgs{loss_.f(), hit_.as<int>(), a_[size_t(L - 1)]->f(), labels_.as<int32_t>(), values_.f(), R, C, K,
                                      m.loss, m.groups}, R));
    if (hook) OF_TRY(js_losses(a_[size_t(L - 1)]->f(), y, R, C, K, *hook, loss_.f()));
    const float running = m.has_running ? float(m.running_loss) : 0.0f;
    OF_TRY(row_weights(B, K, loss_.f(), running, c, 1.0f / float(R)));

    // each module: the boundary's scores (the first module's summed over copies), its reductions
    for (size_t j = 0; j < ends.size(); j++) {
        const int top = ends[j] - 1;
        const DenseUnit& ut = m.units[size_t(top)];
        float* S = e_[size_t(top)]->f();
        if (j > 0) {
            OF_TRY(d->score_rows(dev::ScoreRowsArgs{S, w_.f(), ut.O, c.density, c.score, sigmas[size_t(top)]}, int64_t(R) * ut.O));
            OF_TRY(backward(j, R, S, x));
            continue;
        }
        OF_TRY(d->copy_sum(scored_sum(S, K, ut.O, c, sigmas[size_t(top)]), int64_t(B) * ut.O));
        if (!pipelined) OF_TRY(backward(0, B, g_.f(), x));
    }
    if (pipelined) {  // this step's first module waits for the next step
        const DenseUnit& ue = m.units[size_t(e0 - 1)];
        OF_TRY(pipe_.g.reserve(d, size_t(B) * ue.O * sizeof(float)));
        OF_TRY(pipe_.x.reserve(d, size_t(B) * m.inputs * sizeof(float)));
        OF_TRY(d->add(dev::AddArgs{pipe_.g.f(), g_.f(), 0}, int64_t(B) * ue.O));
        OF_TRY(d->add(dev::AddArgs{pipe_.x.f(), x, 0}, int64_t(B) * m.inputs));
        pipe_.end = e0;
        swap_first();
        pipe_.pending = true, pipe_.B = B;
    }
    return {};
}

// BP (generic.cpp's math for dense, conv and pooling units): the forward keeps pre-activations (e_), activations (a_)
// and a conv's patches; the backward runs act', the weight-gradient GEMM, then the input gradient (dense: dV W; conv:
// dV W into patch gradients, then row2im; pool: its adjoint), every kernel a gather in the CPU's order.
Status DeviceTrainer::bp(Model& m, int B, const float* x, uint32_t sample_base, bool forward_only) {
    Device* d = dev_.get();
    const int L = int(m.units.size()), C = m.outputs;
    const bool tf32 = tf32_for(EstimatorConfig::Kind::Bp);
    while (int(a_.size()) < L) a_.push_back(std::make_unique<DeviceBuffer>()), e_.push_back(std::make_unique<DeviceBuffer>());
    while (int(cols_.size()) < L) cols_.push_back(std::make_unique<DeviceBuffer>());
    int64_t width = m.inputs, patches = 1;
    for (int l = 0; l < L; l++) {
        const DenseUnit& u = m.units[size_t(l)];
        width = std::max<int64_t>(width, std::max(u.I, u.O));
        if (u.convlike()) patches = std::max<int64_t>(patches, u.g.positions() * u.g.patch());
        OF_TRY(a_[size_t(l)]->reserve(d, size_t(B) * u.O * sizeof(float)));
        OF_TRY(e_[size_t(l)]->reserve(d, size_t(B) * u.O * sizeof(float)));
    }
    OF_TRY(d0_.reserve(d, size_t(B) * width * sizeof(float)));
    OF_TRY(d1_.reserve(d, size_t(B) * width * sizeof(float)));
    OF_TRY(dcols_.reserve(d, size_t(B) * patches * sizeof(float)));
    OF_TRY(loss_.reserve(d, size_t(B) * sizeof(float)));
    OF_TRY(hit_.reserve(d, size_t(B) * sizeof(int)));
    // residual blocks: at a block's end act(v) (inner) and the sum before post_act; at its start the skip gradient
    while (int(inner_.size()) < L)
        inner_.push_back(std::make_unique<DeviceBuffer>()), sum_.push_back(std::make_unique<DeviceBuffer>()),
            skip_.push_back(std::make_unique<DeviceBuffer>());
    auto residual = [&](const DenseUnit& u) { return u.skip_from >= 0 && u.kind != UnitKind::Concat; };
    for (int l = 0; l < L; l++) {
        const DenseUnit& u = m.units[size_t(l)];
        if (u.skip_from < 0) continue;
        OF_TRY(skip_[size_t(u.skip_from)]->reserve(d, size_t(B) * m.units[size_t(u.skip_from)].I * sizeof(float)));
        if (!residual(u)) continue;
        OF_TRY(inner_[size_t(l)]->reserve(d, size_t(B) * u.O * sizeof(float)));
        OF_TRY(sum_[size_t(l)]->reserve(d, size_t(B) * u.O * sizeof(float)));
    }
    float* P = params_.f();
    float* G = grads_.f();
    auto input = [&](int l) { return l == 0 ? x : a_[size_t(l - 1)]->f(); };
    auto pending = [&](int l) { return skip_[size_t(l)]->f(); };  // a block start's skip gradient
    const Mask mask{1, sample_base, m.seed, m.step};  // dropout: the model's seed and step counter, as backprop.cpp
    for (int l = 0; l < L; l++) {
        const DenseUnit& u = m.units[size_t(l)];
        float* v = e_[size_t(l)]->f();
        float* act = residual(u) ? inner_[size_t(l)]->f() : a_[size_t(l)]->f();
        if (!u.param()) {
            OF_TRY(plain(m, l, B, input(l), v, act, mask, u.kind == UnitKind::Concat ? input(u.skip_from) : nullptr));
        } else if (u.recurrent()) {  // backprop through time keeps the unit's aux
            OF_TRY(seq_forward(m, l, B, input(l), v, nullptr, 0.0f, nullptr, 1, tf32));
            OF_TRY(d->bias_act(dev::BiasActArgs{act, v, nullptr, u.O, u.act, u.alpha}, int64_t(B) * u.O));
        } else {
                if (u.kind == UnitKind::BatchNorm && !inference_)  // training mode: this batch's statistics
                OF_TRY(d->bn_stats(dev::BatchStatsArgs{bn_[size_t(l)]->stats.f(), input(l), int64_t(B) * u.g.Ho, u.g.Co}, u.g.Co));
            OF_TRY(linear(m, l, B, input(l), v, tf32));
            OF_TRY(d->bias_act(dev::BiasActArgs{act, v, u.b_off < 0 ? nullptr : theta_ + u.b_off, u.gemm_cols(), u.act, u.alpha},
                               int64_t(B) * u.O));
        }
        if (residual(u))  // a = post_act(act(v) + block input)
            OF_TRY(d->skip_add(dev::SkipArgs{a_[size_t(l)]->f(), sum_[size_t(l)]->f(), act, input(u.skip_from), u.O, 1, u.post_act,
                                             u.post_alpha}, int64_t(B) * u.O));
    }
    if (forward_only) return {};
    const float* out = a_[size_t(L - 1)]->f();
    OF_TRY(d->loss_rows(dev::LossArgs{loss_.f(), hit_.as<int>(), out, labels_.as<int32_t>(), values_.f(), B, C, 1, m.loss, m.groups}, B));
    float* dcur = d0_.f();
    float* dnext = d1_.f();
    OF_TRY(d->loss_grad(dev::LossArgs{dcur, nullptr, out, labels_.as<int32_t>(), values_.f(), B, C, 1, m.loss, m.groups}, B));
    // the skip gradient joins the input gradient of the unit that starts its block
    auto join = [&](int l, float* din) -> Status {
        if (!m.units[size_t(l)].starts_block) return {};
        return d->add(dev::AddArgs{din, pending(l), 1}, int64_t(B) * m.units[size_t(l)].I);
    };
    for (int l = L - 1; l >= 0; l--) {
        const DenseUnit& u = m.units[size_t(l)];
        const int64_t values = int64_t(B) * u.O;
        if (residual(u)) {  // through post_act to the sum, which is also the skip path's gradient
            OF_TRY(d->act_backward(dev::ActBackArgs{dcur, dcur, sum_[size_t(l)]->f(), a_[size_t(l)]->f(), u.post_act, u.post_alpha}, values));
            OF_TRY(d->add(dev::AddArgs{pending(u.skip_from), dcur, 0}, values));
        }
        const float* act = residual(u) ? inner_[size_t(l)]->f() : a_[size_t(l)]->f();
        OF_TRY(d->act_backward(dev::ActBackArgs{dcur, dcur, e_[size_t(l)]->f(), act, u.act, u.alpha}, values));
        if (!u.param()) {
            if (l == 0) break;
            if (u.kind == UnitKind::Repeat)
                OF_TRY(d->repeat_backward(dev::TimeArgs{dnext, dcur, u.q.T, u.q.F}, int64_t(B) * u.q.F));
            else if (u.kind == UnitKind::TimeMean)
                OF_TRY(d->time_mean_backward(dev::TimeArgs{dnext, dcur, u.q.T, u.q.F}, int64_t(B) * u.q.T * u.q.F));
            else if (u.kind == UnitKind::Concat)  // f's part goes on, the block input's part waits at the block's start
                OF_TRY(d->concat_backward(dev::ConcatBackArgs{dnext, pending(u.skip_from), dcur, u.g.Ho, u.g.C, u.g.Co}, values));
            else if (u.kind == UnitKind::Dropout)  // the same mask on the gradient
                OF_TRY(d->dropout(dev::DropoutArgs{dnext, dcur, u.O, 1, sample_base, m.seed, m.step, uint32_t(l), u.rate}, values));
            else
                OF_TRY(input_grad(m, l, B, dcur, input(l), dnext, tf32));
            OF_TRY(join(l, dnext));
            std::swap(dcur, dnext);
            continue;
        }
        if (u.recurrent()) {
            OF_TRY(seq_backward(m, l, B, input(l), dcur, l > 0 ? dnext : nullptr, tf32));
            if (l == 0) break;
            OF_TRY(join(l, dnext));
            std::swap(dcur, dnext);
            continue;
        }
        const int n = int(u.gemm_rows(B)), cols = u.gemm_cols();
        if (u.kind == UnitKind::BatchNorm) {  // through the batch statistics: per-channel sums, then the input gradient
            OF_TRY(bn_sums_.reserve(d, size_t(2 * cols) * sizeof(double)));
            const dev::BatchBackArgs bb{dnext, G + u.w_off, G + u.b_off, bn_sums_.as<double>(), dcur, input(l), bn_[size_t(l)]->stats.f(),
                                        P + u.w_off, n, cols};
            OF_TRY(d->bn_backward_sums(bb, cols));
            if (l == 0) break;
            OF_TRY(d->bn_backward(bb, int64_t(n) * cols));
            OF_TRY(join(l, dnext));
            std::swap(dcur, dnext);
            continue;
        }
        OF_TRY(weight_grads(m, l, B, dcur, 1.0f, input(l), tf32));
        if (l == 0) break;
        if (u.norm()) {  // the input gradient through the set's statistics
            const bool layer = u.kind == UnitKind::LayerNorm;
            const dev::NormBackArgs nb{dnext, dcur, xh_[size_t(l)]->f(), inv_[size_t(l)]->f(), P + u.w_off, u.g.Ho, u.g.Co, u.groups};
            const int64_t sets = int64_t(B) * (layer ? u.g.Ho : u.groups);
            OF_TRY(layer ? d->layer_norm_backward(nb, sets) : d->group_norm_backward(nb, sets));
            OF_TRY(join(l, dnext));
            std::swap(dcur, dnext);
            continue;
        }
        OF_TRY(input_grad(m, l, B, dcur, input(l), dnext, tf32));
        OF_TRY(join(l, dnext));
        std::swap(dcur, dnext);
    }
    return {};
}

Status DeviceTrainer::estimate(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, uint32_t step,
                               double id, int* rows, const LossHook* hook) {
    OF_CHECK(active_, Internal, "device trainer used before begin()");
    OF_CHECK(B > 0, Shape, "empty batch");
    OF_TRY(upload_batch(m, x, y, B));
    const bool wp = e.kind == EstimatorConfig::Kind::Spsa || e.kind == EstimatorConfig::Kind::Es;
    OF_TRY(effective(m, params_.f()));
    const float* in = x_.f();
    // A frozen prefix, as the CPU does it: a dense model trains its tail as a model of its own (slab offsets unchanged,
    // noise ids and per-layer sigma from the tail: estimators/frozen.cpp); any other model keeps its frozen units clean
    // in the B-row prefix of ULR (generic.cpp), backpropagates through them, or perturbs them with the rest (SPSA, ES),
    // and their gradients are zeroed.
    const bool tail = m.frozen > 0 && m.dense_only;
    if (tail) OF_TRY(frozen_forward(m, B, e.kind, &in));
    std::vector<DenseUnit> all;
    EstimatorConfig sub = e;
    if (tail && e.kind == EstimatorConfig::Kind::Ulr) OF_TRY(frozen_tail_config(m.units.size(), m.frozen, &sub.ulr));
    if (tail) {
        all = m.units;
        m.units.erase(m.units.begin(), m.units.begin() + m.frozen);
    }
    *rows = B;
    const int fe = tail ? 0 : m.frozen_end();
    Status st = wp && wp_range_                      ? perturbation_losses(m, B, e, step, in, wp_range_->p0, wp_range_->p1,
                                                                            wp_range_->plus, wp_range_->minus)
                : wp                                 ? perturbation(m, B, e, step, in)
                : e.kind != EstimatorConfig::Kind::Ulr ? bp(m, B, in, e.ulr.sample_base, false)
                : e.ulr.layerwise                    ? ulr_layerwise(m, B, sub.ulr, step, in, rows, y, hook)
                : !e.ulr.modules.empty()             ? ulr_modules(m, B, sub.ulr, step, in, y, hook)
                                                     : ulr(m, B, sub.ulr, step, in, fe, y, hook);
    if (tail) m.units = std::move(all);
    OF_TRY(st);
    if (m.frozen > 0 && (!tail || wp)) OF_TRY(dev_->zero(grads_.f(), size_t(trainable_offset(m)) * sizeof(float)));
    if (wp) return {};  // its statistics block is written
    if (e.kind == EstimatorConfig::Kind::Ulr && !e.ulr.layerwise) *rows = B * e.ulr.copies;
    if (id >= 0.0 && acc_.size() == 0) OF_TRY(reset_tally());
    return step_stats(dev::StatsArgs{nullptr, nullptr, loss_.f(), hit_.as<int>(), *rows, id >= 0.0 ? acc_.as<double>() : nullptr,
                                     double(B), id});
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
    for (const DenseUnit& u : m.units)
        if (u.quant) OF_TRY(dev_->quantize(dev::QuantArgs{eff_.f() + u.w_off, base + u.w_off, u.fan_in(), u.quant}, u.gemm_cols()));
    theta_ = eff_.f();
    return {};
}

// SPSA / ES (weight_perturbation.cpp): per direction p, z_p regenerated on the device, the mean batch loss of an
// inference forward at theta0 +- eps z_p (read back: the coefficients need every direction's loss), then the seed
// replay g = sum_p coef_p z_p. The step statistics block gets the mean loss over the directions.
Status DeviceTrainer::perturbation_losses(Model& m, int B, const EstimatorConfig& e, uint32_t step, const float* x, int p0, int p1,
                                          float* plus, float* minus) {
    Device* d = dev_.get();
    const bool pairs = e.kind == EstimatorConfig::Kind::Spsa || e.wp.antithetic;
    const int64_t n = m.n_params;
    OF_TRY(z_.reserve(d, size_t(n) * sizeof(float)));
    OF_TRY(theta_p_.reserve(d, size_t(n) * sizeof(float)));
    OF_TRY(stats_.reserve(d, 4 * sizeof(double)));
    OF_TRY(loss_.reserve(d, size_t(B) * sizeof(float)));
    OF_TRY(hit_.reserve(d, size_t(B) * sizeof(int)));
    auto loss_at = [&](float sign, float* out) -> Status {  // mean batch loss at theta0 + sign eps z, as a float
        OF_TRY(d->axpy(dev::AxpyArgs{theta_p_.f(), params_.f(), z_.f(), sign * e.wp.sigma}, n));
        OF_TRY(effective(m, theta_p_.f()));
        inference_ = true;
        Status st = bp(m, B, x, 0, true);
        inference_ = false;
        OF_TRY(st);
        OF_TRY(d->loss_rows(dev::LossArgs{loss_.f(), hit_.as<int>(), a_[m.units.size() - 1]->f(), labels_.as<int32_t>(), values_.f(), B,
                                          m.outputs, 1, m.loss, m.groups}, B));
        OF_TRY(step_stats(dev::StatsArgs{nullptr, nullptr, loss_.f(), hit_.as<int>(), B, nullptr, 0.0, 0.0}));
        double sum = 0.0;
        OF_TRY(d->download(&sum, stats_.as<double>(), sizeof(double)));
        *out = float(sum / B);
        return {};
    };
    for (int p = p0; p < p1; p++) {
        OF_TRY(direction(m, step, p));
        OF_TRY(loss_at(1.0f, &plus[p]));
        minus[p] = 0.0f;
        if (pairs) OF_TRY(loss_at(-1.0f, &minus[p]));
    }
    theta_ = params_.f();
    return {};
}

// z_p over the whole slab, regenerated from the counters (seed, step, p) of stream kWeightLayer, into z_.
Status DeviceTrainer::direction(const Model& m, uint32_t step, int p) {
    const int n = int(m.n_params);
    const dev::NoisyArgs na{nullptr, z_.f(), nullptr, nullptr, 1, 0.0f, 1, n, 1, Act::Identity, 0.0f, m.seed, step, kWeightLayer, uint32_t(p), 0, 0};
    return dev_->noisy_forward(na, dev::noise_counters(n));
}

// The seed replay: g = sum_p coef_p z_p into the gradient slab, the coefficients from every direction's losses.
Status DeviceTrainer::perturbation_replay(const Model& m, const EstimatorConfig& e, uint32_t step, const float* plus,
                                          const float* minus) {
    const int64_t n = m.n_params;
    OF_TRY(z_.reserve(dev_.get(), size_t(n) * sizeof(float)));
    const std::vector<double> coef = perturbation_coefficients(e, plus, minus);
    OF_TRY(dev_->zero(grads_.f(), size_t(n) * sizeof(float)));
    for (int p = 0; p < e.wp.population; p++) {
        OF_TRY(direction(m, step, p));
        OF_TRY(dev_->axpy(dev::AxpyArgs{grads_.f(), grads_.f(), z_.f(), float(coef[size_t(p)])}, n));
    }
    return {};
}

Status DeviceTrainer::perturbation(Model& m, int B, const EstimatorConfig& e, uint32_t step, const float* x) {
    const int P = e.wp.population;
    const bool pairs = e.kind == EstimatorConfig::Kind::Spsa || e.wp.antithetic;
    std::vector<float> plus(static_cast<size_t>(P), 0.0f), minus(static_cast<size_t>(P), 0.0f);
    OF_TRY(perturbation_losses(m, B, e, step, x, 0, P, plus.data(), minus.data()));
    OF_TRY(perturbation_replay(m, e, step, plus.data(), minus.data()));
    double total = 0.0;
    for (int p = 0; p < P; p++) total += double(plus[size_t(p)]) + double(minus[size_t(p)]);
    const double mean = total / double(pairs ? 2 * P : P);
    const double block[4] = {mean * B, 0.0, std::isfinite(mean) ? 1.0 : 0.0, 0.0};  // read_stats: loss = block[0] / B
    return dev_->upload(stats_.as<double>(), block, sizeof(block));
}

Status DeviceTrainer::seed_replay_losses(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, int p0, int p1,
                                         float* plus, float* minus) {
    WpRange r{p0, p1, plus, minus};
    wp_range_ = &r;
    int rows = 0;
    Status st = estimate(m, x, y, B, e, m.step, -1.0, &rows);
    wp_range_ = nullptr;
    return st;
}

Status DeviceTrainer::seed_replay_update(Model& m, const EstimatorConfig& e, const OptimizerConfig& o, const float* plus,
                                         const float* minus, int rows) {
    OF_TRY(perturbation_replay(m, e, m.step, plus, minus));
    OF_TRY(dev_->zero(grads_.f(), size_t(trainable_offset(m)) * sizeof(float)));
    OF_TRY(stats_.reserve(dev_.get(), 4 * sizeof(double)));
    const double block[4] = {0.0, 0.0, 1.0, 0.0};  // the losses were finite (checked on the host): the gate is open
    OF_TRY(dev_->upload(stats_.as<double>(), block, sizeof(block)));
    OF_TRY(update(m, o, m.opt_t + 1, rows));
    m.opt_t++;
    m.step++;
    return {};
}

// Mean loss and accuracy of a clean forward in inference mode (dropout off, batchNorm's running statistics), in
// chunks of rows, as Model::evaluate computes them; fit's validation while the parameters are on the device.
Status DeviceTrainer::evaluate(Model& m, const DataRef& data, double* loss, double* accuracy) {
    OF_CHECK(active_, Internal, "device trainer used before begin()");
    constexpr int kChunk = 4096;
    OF_TRY(effective(m, params_.f()));
    inference_ = true;
    double sum = 0.0;
    int64_t hits = 0;
    Status st;
    for (int64_t r0 = 0; r0 < data.rows && st.ok(); r0 += kChunk) {
        const int n = int(std::min<int64_t>(kChunk, data.rows - r0));
        const Targets t{data.y.labels ? data.y.labels + r0 * m.groups : nullptr, data.y.values ? data.y.values + r0 * m.outputs : nullptr};
        st = upload_batch(m, data.x + r0 * m.inputs, t, n);
        if (st.ok()) st = bp(m, n, x_.f(), 0, true);
        if (!st.ok()) break;
        const float* out = a_[m.units.size() - 1]->f();
        st = dev_->loss_rows(dev::LossArgs{loss_.f(), hit_.as<int>(), out, labels_.as<int32_t>(), values_.f(), n, m.outputs, 1, m.loss, m.groups}, n);
        if (st.ok()) st = step_stats(dev::StatsArgs{nullptr, nullptr, loss_.f(), hit_.as<int>(), n, nullptr, 0.0, 0.0});
        double got[2] = {0.0, 0.0};
        if (st.ok()) st = dev_->download(got, stats_.as<double>(), sizeof(got));
        sum += got[0], hits += int64_t(got[1]);
    }
    inference_ = false;
    OF_TRY(st);
    *loss = sum / double(data.rows);
    int64_t labeled = data.rows;  // per-position labels: only the labeled positions count
    if (m.groups > 1) {
        labeled = 0;
        for (int64_t i = 0; i < data.rows * m.groups; i++) labeled += data.y.labels[i] >= 0;
    }
    *accuracy = labeled > 0 && m.loss != LossKind::Mse ? double(hits) / double(labeled) : 0.0;
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
        const DenseUnit& u = m.units[size_t(l)];
        OF_TRY(d->gemm(false, true, B, u.O, u.I, 1.0f, *in, u.I, P + u.w_off, u.I, 0.0f, cur, u.O, tf32_for(kind)));
        OF_TRY(d->bias_act(dev::BiasActArgs{cur, cur, u.b_off < 0 ? nullptr : P + u.b_off, u.O, u.act, u.alpha}, int64_t(B) * u.O));
        *in = cur;
        cur = cur == h0_.f() ? h1_.f() : h0_.f();
    }
    return d->zero(grads_.f(), size_t(trainable_offset(m)) * sizeof(float));
}

Status DeviceTrainer::reset_tally() {
    OF_TRY(acc_.reserve(dev_.get(), 4 * sizeof(double)));
    const double zero[4] = {0.0, 0.0, 0.0, -1.0};
    return dev_->upload(acc_.as<double>(), zero, sizeof(zero));
}

Status DeviceTrainer::grad_norm(int64_t off, int64_t n, float clip) {
    const int64_t chunks = (n + dev::kReduceChunk - 1) / dev::kReduceChunk;
    OF_TRY(norm_part_.reserve(dev_.get(), size_t(chunks) * sizeof(double)));
    OF_TRY(norm_.reserve(dev_.get(), 2 * sizeof(double)));
    dev::SumSqArgs a{norm_part_.as<double>(), norm_.as<double>(), grads_.f() + off, n, clip};
    OF_TRY(dev_->sumsq_partial(a, chunks));
    return dev_->sumsq_final(a, 1);
}

// The optimizer on the trainable part of the slab (a frozen prefix is never touched, as in train.cpp apply_update).
Status DeviceTrainer::update(const Model& m, const OptimizerConfig& o, int64_t t, int B) {
    for (size_t l = 0; l < m.units.size(); l++) {  // batchNorm's running statistics follow this step's batch
        const DenseUnit& u = m.units[l];
        if (u.kind != UnitKind::BatchNorm) continue;
        OF_TRY(dev_->bn_running(dev::RunningArgs{bn_[l]->running.f(), bn_[l]->stats.f(), stats_.as<double>(), double(B) * u.g.Ho, u.g.Co},
                                u.g.Co));
    }
    const int64_t off = trainable_offset(m), n = m.n_params - off;
    if (o.clip_norm > 0.0f) OF_TRY(grad_norm(off, n, o.clip_norm));
    const float lr = schedule_lr(o.schedule, o.lr, t);  // update t's rate, as cpu::optimizer_step computes it
    dev::OptArgs a{params_.f() + off, grads_.f() + off, opt_m_.f() + off, opt_v_.f() + off, o.clip_norm > 0.0f ? norm_.as<double>() : nullptr,
                   stats_.as<double>(), o.kind, lr, o.weight_decay, o.momentum, o.nesterov ? 1 : 0, o.beta1, o.beta2,
                   o.eps, 0.0f, 0.0f};
    if (o.kind != OptKind::Sgd) {  // bias corrections as cpu::optimizer_step computes them
        const float bc1 = float(1.0 - std::pow(double(o.beta1), double(t)));
        const float bc2 = float(1.0 - std::pow(double(o.beta2), double(t)));
        a.step = lr / bc1, a.inv_sqrt_bc2 = 1.0f / std::sqrt(bc2);
    }
    return dev_->optimizer(a, n);
}

Status DeviceTrainer::gradients(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, uint32_t step,
                                StepStats* stats, bool fetch, const LossHook* hook) {
    int rows = 0;
    OF_TRY(estimate(m, x, y, B, e, step, -1.0, &rows, hook));
    OF_TRY(read_stats(stats, rows));
    OF_TRY(read_sigma_grad(m, e, stats));
    OF_TRY(read_layer_var(m, e, stats));
    if (e.kind == EstimatorConfig::Kind::Ulr) update_running_baseline(m, e.ulr, stats->loss);
    if (fetch) OF_TRY(dev_->download(m.grads.data(), grads_.f(), size_t(m.n_params) * sizeof(float)));
    return {};
}

// Layer-wise copies 'auto': this step's per-layer variances (sg_, times sigma^2) into the stats and the running ones.
Status DeviceTrainer::read_layer_var(Model& m, const EstimatorConfig& e, StepStats* stats) {
    const UlrConfig& c = e.ulr;
    if (e.kind != EstimatorConfig::Kind::Ulr || !c.layerwise || !c.auto_copies) return {};
    const size_t L = m.units.size();
    std::vector<double> var(L, 0.0);
    OF_TRY(dev_->download(var.data(), sg_.as<double>(), L * sizeof(double)));
    for (size_t l = 0; l < L; l++) {
        const double s = c.sigma.size() == 1 ? c.sigma[0] : c.sigma[l];
        var[l] /= s * s;
    }
    record_layer_var(m, c, lw_copies_, std::move(var), stats);
    return {};
}

Status DeviceTrainer::read_sigma_grad(const Model& m, const EstimatorConfig& e, StepStats* stats) {
    if (e.kind != EstimatorConfig::Kind::Ulr || !e.ulr.learn_sigma) return {};
    stats->sigma_grad.assign(m.units.size(), 0.0);
    return dev_->download(stats->sigma_grad.data(), sg_.as<double>(), m.units.size() * sizeof(double));
}

Status DeviceTrainer::train_step(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e,
                                 const OptimizerConfig& o, StepStats* stats, double max_grad_norm, const LossHook* hook) {
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
