// The pieces of ULR on the device that its group runner (ulr_groups.cpp) and local modules (ulr_modules.cpp) share:
// per-channel sigma, the noisy forward (Philox or QMC noise), the LR row weights from the copies' losses,
// the scored copy sum, a JS loss's round trip.
#include <algorithm>
#include <cmath>

#include "device/trainer.h"
#include "estimators/ulr_plan.h"
#include "rng/sobol.h"

namespace of {

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
// With na.out null only the noise E (a recurrent unit adds it inside its recurrence).
Status DeviceTrainer::noise_forward(const dev::NoisyArgs& na, int qmc_K, uint32_t qmc_dim) {
    Device* d = dev_.get();
    if (!qmc_K) return d->noisy_forward(na, int64_t(na.R) * dev::noise_counters(na.O));
    const int l = int(na.layer);
    grow(qmc_dirs_, size_t(l + 1));
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
    if (!na.out) return {};
    return d->noisy_apply(na, int64_t(na.R) * na.O);
}

// Per-channel sigma: per noisy unit, the device copy of its plan's noise scale per noise value (NoiseScale::row: a
// conv's channel repeated over positions; null: one sigma for the layer). The noise is scaled by it and the score
// divided by it, so the reductions use 1 for the layer's 1 / sigma.
Status DeviceTrainer::channel_sigmas(const UlrPlan& plan, std::vector<const float*>* out) {
    out->assign(plan.units.size(), nullptr);
    for (size_t l = 0; l < plan.units.size(); l++) {
        const NoiseScale& s = plan.units[l].scale;
        if (!s.per_channel) continue;
        grow(sigma_ch_, l + 1);
        OF_TRY(sigma_ch_[l]->reserve(dev_.get(), s.row.size() * sizeof(float)));
        OF_TRY(dev_->upload(sigma_ch_[l]->f(), s.row.data(), s.row.size() * sizeof(float)));
        (*out)[l] = sigma_ch_[l]->f();
    }
    return {};
}

}  // namespace of
