// ULR on the device, all R = B K rows at once: the noisy forward (Philox or QMC noise), the LR row weights from the
// copies' losses, and per unit the weight-gradient GEMM against diag(w) S(E). Also the pieces the layer-wise and
// module paths share: unit sigmas, per-channel sigma, the scored copy sum, a JS loss's round trip.
#include <algorithm>
#include <cmath>

#include "device/trainer.h"
#include "estimators/blocks.h"
#include "rng/sobol.h"

namespace of {

// Per unit, its sigma (0 for units without parameters), from the list in parameter-unit order or the one value.
std::vector<float> DeviceTrainer::unit_sigmas(const Model& m, const UlrConfig& c) {
    std::vector<float> sigma(m.units.size(), 0.0f);
    for (size_t l = 0, p = 0; l < m.units.size(); l++)
        if (m.units[l].param()) sigma[l] = c.sigma.size() == 1 ? c.sigma[0] : c.sigma[p++];
    return sigma;
}

// The LR row weights w (B K rows) from the rows' losses (ops.h: one launch per sample up to kSampleWeightsK copies,
// else three stages; the same bits either way); the clean baseline reads clean_.
Status DeviceTrainer::row_weights(int B, int K, const float* loss, float running, const UlrConfig& c, float scale) {
    Device* d = dev_.get();
    dev::RowWeightArgs rw{w_.f(),
                          nullptr,
                          loss,
                          running,
                          K,
                          c.baseline,
                          c.antithetic ? 1 : 0,
                          scale,
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
Status DeviceTrainer::js_losses(const float* out, const Targets& y, int R, int C, int K, const LossHook& hook,
                                float* loss) {
    hook_out_.resize(size_t(R) * C);
    hook_loss_.resize(size_t(R));
    OF_TRY(dev_->download(hook_out_.data(), out, hook_out_.size() * sizeof(float)));
    OF_TRY(hook(hook_out_.data(), y, R, C, K, hook_loss_.data()));
    for (int r = 0; r < R; r++)
        OF_CHECK(std::isfinite(hook_loss_[size_t(r)]), Data,
                 "the loss function returned a non-finite value for row " + std::to_string(r));
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
    OF_TRY(d->qmc_noise(
        dev::QmcArgs{na.E, q.v.as<uint32_t>(), na.O, copies, na.seed, na.step, na.layer, na.row0, na.antithetic},
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
        OF_TRY(d->loss_rows(dev::LossArgs{clean_.f(), clean_hit_.as<int>(), a_[m.units.size() - 1]->f(),
                                          labels_.as<int32_t>(), values_.f(), B, m.outputs, 1, m.loss, m.groups},
                            B));
    }
    int first = fe;  // frozen units (fine-tuning, units before fe) stay clean in the B-row prefix
    while (first < L && !m.units[size_t(first)].param()) first++;
    OF_CHECK(first < L, Config, "the model has no layer with parameters to train");
    const std::vector<float> sigma = unit_sigmas(m, c);
    std::vector<const float*> sigmas;
    OF_TRY(channel_sigmas(L, c, &sigmas));
    while (int(a_.size()) < L)
        a_.push_back(std::make_unique<DeviceBuffer>()), e_.push_back(std::make_unique<DeviceBuffer>());
    while (int(cols_.size()) < L) cols_.push_back(std::make_unique<DeviceBuffer>());
    auto rows_of = [&](int l) { return l < first ? B : R; };
    for (int l = 0; l < L; l++) {
        const Unit& u = m.units[size_t(l)];
        OF_TRY(a_[size_t(l)]->reserve(d, size_t(rows_of(l)) * u.O * sizeof(float)));
        if (u.param()) OF_TRY(e_[size_t(l)]->reserve(d, size_t(R) * u.noise_width() * sizeof(float)));
    }
    const Unit& u0 = m.units[size_t(first)];
    OF_TRY(v0_.reserve(d, size_t(B) * u0.noise_width() * sizeof(float)));  // a recurrent unit: X W^T of every step
    OF_TRY(g_.reserve(d, size_t(B) * u0.noise_width() * sizeof(float)));
    OF_TRY(loss_.reserve(d, size_t(R) * sizeof(float)));
    OF_TRY(hit_.reserve(d, size_t(R) * sizeof(int)));
    OF_TRY(w_.reserve(d, size_t(R) * sizeof(float)));
    float* G = grads_.f();
    auto bias = [&](const Unit& u) -> const float* { return u.b_off < 0 ? nullptr : theta_ + u.b_off; };
    auto input = [&](int l) { return l == 0 ? x : a_[size_t(l - 1)]->f(); };
    // storeNoise false (not with QMC or a learned sigma, which read the noise itself): the forward keeps no noise, and
    // the reduction regenerates it from the same counters straight into the weighted scores (a write and a read of
    // R x O values less per unit)
    const bool regen = !c.store_noise && !c.qmc && !c.learn_sigma;
    auto sliced = [&](dev::NoisyArgs na) {  // copy-parallel ranks: the noise rows of the whole K
        if (c.slice_total)
            na.slice_local = uint32_t(K), na.slice_total = c.slice_total, na.slice_offset = c.slice_offset;
        return na;
    };
    auto noise_args = [&](int l, const float* pre, int rep) {
        const Unit& u = m.units[size_t(l)];
        dev::NoisyArgs na{a_[size_t(l)]->f(),
                          regen ? nullptr : e_[size_t(l)]->f(),
                          pre,
                          bias(u),
                          u.gemm_cols(),
                          sigma[size_t(l)],
                          R,
                          u.O,
                          rep,
                          u.act,
                          u.alpha,
                          seed,
                          step,
                          uint32_t(l),
                          uint32_t(c.sample_base) * uint32_t(K),
                          c.antithetic ? 1 : 0,
                          int(c.density),
                          sigmas[size_t(l)]};
        return sliced(na);
    };
    auto noisy = [&](int l, const float* pre, int rep) -> Status {
        return noise_forward(noise_args(l, pre, rep), c.qmc ? K : 0, c.qmc ? qmc_dim0(m, l) : 0);
    };

    // a residual block's end adds its input: from the B-row prefix (row r / K) when the block starts at or before the
    // first noisy unit, else from the block's own rows
    auto skip = [&](int l, int rows) -> Status {
        const Unit& u = m.units[size_t(l)];
        if (u.skip_from < 0 || u.kind == UnitKind::Concat) return {};
        const int rep = l >= first && u.skip_from <= first ? K : 1;
        float* a = a_[size_t(l)]->f();
        return d->skip_add(dev::SkipArgs{a, nullptr, a, input(u.skip_from), u.O, rep, u.post_act, u.post_alpha},
                           int64_t(rows) * u.O);
    };
    // forward: the clean B-row prefix, the first noisy unit's K copies of its shared linear part, then R rows
    const uint32_t base = c.sample_base;
    auto src = [&](int l) {
        return m.units[size_t(l)].kind == UnitKind::Concat ? input(m.units[size_t(l)].skip_from) : nullptr;
    };
    for (int l = 0; l < first; l++) {
        const Unit& u = m.units[size_t(l)];
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
        const Unit& u = m.units[size_t(l)];
        float* a = a_[size_t(l)]->f();
        const dev::NoisyArgs na = sliced({nullptr, e_[size_t(l)]->f(), nullptr, nullptr, 1, sigma[size_t(l)], R,
                                          u.noise_width(), 1, Act::Identity, 0.0f, seed, step, uint32_t(l),
                                          uint32_t(c.sample_base) * uint32_t(K), c.antithetic ? 1 : 0, int(c.density)});
        OF_TRY(d->noisy_forward(na, int64_t(R) * dev::noise_counters(u.noise_width())));
        OF_TRY(seq_forward(m, l, R, input(l), a, e_[size_t(l)]->f(), sigma[size_t(l)], xw, K, tf32));
        if (u.act == Act::Identity) return {};
        return d->bias_act(dev::BiasActArgs{a, a, nullptr, u.O, u.act, u.alpha}, int64_t(R) * u.O);
    };
    if (u0.recurrent()) {  // the input projections X W^T once per sample and step, read by the sample's K copies
        OF_TRY(d->gemm(false, true, B * u0.q.T, u0.q.G * u0.q.H, u0.q.F, 1.0f, input(first), u0.q.F, theta_ + u0.w_off,
                       u0.q.F, 0.0f, v0_.f(), u0.q.G * u0.q.H, tf32));
        OF_TRY(seq(first, v0_.f()));
    } else {
        OF_TRY(linear(m, first, B, input(first), v0_.f(), tf32));
        OF_TRY(noisy(first, v0_.f(), K));
    }
    OF_TRY(skip(first, R));
    for (int l = first + 1; l < L; l++) {
        const Unit& u = m.units[size_t(l)];
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
    OF_TRY(d->loss_rows(
        dev::LossArgs{loss_.f(), hit_.as<int>(), out, labels_.as<int32_t>(), values_.f(), R, C, K, m.loss, m.groups},
        R));
    if (hook) OF_TRY(js_losses(out, y, R, C, K, *hook, loss_.f()));
    const float running = m.has_running ? float(m.running_loss) : 0.0f;
    OF_TRY(row_weights(B, K, loss_.f(), running, c, 1.0f / float(R)));

    // gradients: S = diag(w) s(E) in place, then one GEMM per unit (the first: G = copy sum of S, then on B rows)
    for (int l = first; l < L; l++) {
        const Unit& u = m.units[size_t(l)];
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
            OF_TRY(d->score_rows(dev::ScoreRowsArgs{S, w_.f(), nw, c.density, c.score, sigmas[size_t(l)]},
                                 int64_t(R) * nw));
        }
        const float inv_sigma = sigmas[size_t(l)] ? 1.0f : 1.0f / sigma[size_t(l)];
        if (u.recurrent()) {  // the first unit's dW from G = sum over copies (B T rows); U and b per copy row
            if (l == first) {
                OF_TRY(d->copy_sum(dev::CopySumArgs{g_.f(), S, K, nw}, int64_t(B) * nw));
                OF_TRY(d->gemm(true, false, u.q.G * u.q.H, u.q.F, B * u.q.T, inv_sigma, g_.f(), u.q.G * u.q.H, input(l),
                               u.q.F, 0.0f, G + u.w_off, u.q.F, tf32));
            }
            OF_TRY(seq_reduce(m, l, R, input(l), S, inv_sigma, l != first, tf32));
            continue;
        }
        const int rows = l == first ? B : R;
        if (l == first) {
            OF_TRY(
                d->copy_sum(fused ? scored_sum(S, K, u.O, c, sigmas[size_t(l)]) : dev::CopySumArgs{g_.f(), S, K, u.O},
                            int64_t(B) * u.O));
            S = g_.f();
        }
        // in the GEMM view: S (rows x positions, cols) against the unit's input (dense) or its patches (conv); a norm's
        // gain gets the column sums of S x^
        if (u.kind == UnitKind::BatchNorm) {  // its x^ from the batch statistics
            while (int(xh_.size()) <= l)
                xh_.push_back(std::make_unique<DeviceBuffer>()), inv_.push_back(std::make_unique<DeviceBuffer>());
            OF_TRY(xh_[size_t(l)]->reserve(d, size_t(rows) * u.O * sizeof(float)));
            OF_TRY(d->bn_apply(dev::BatchApplyArgs{xh_[size_t(l)]->f(), input(l), bn_[size_t(l)]->stats.f(), nullptr,
                                                   u.g.Ho, u.g.Co, 1},
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

}  // namespace of
