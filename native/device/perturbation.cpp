// Weight perturbation on the device (SPSA / ES): per direction p, z_p regenerated from its Philox counters, the mean
// loss at theta0 +- eps z_p, then the seed replay g = sum_p coef_p z_p; and those two halves apart, for seed replay
// across ranks.
#include <cmath>

#include "device/trainer.h"

namespace of {

// SPSA / ES (weight_perturbation.cpp): per direction p, z_p regenerated on the device, the mean batch loss of an
// inference forward at theta0 +- eps z_p (read back: the coefficients need every direction's loss), then the seed
// replay g = sum_p coef_p z_p. The step statistics block gets the mean loss over the directions.
Status DeviceTrainer::perturbation_losses(Model& m, int B, const EstimatorConfig& e, uint32_t step, const float* x,
                                          int p0, int p1, float* plus, float* minus) {
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
        OF_TRY(d->loss_rows(dev::LossArgs{loss_.f(), hit_.as<int>(), a_[m.units.size() - 1]->f(), labels_.as<int32_t>(),
                                          values_.f(), B, m.outputs, 1, m.loss, m.groups},
                            B));
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
    const dev::NoisyArgs na{nullptr, z_.f(), nullptr, nullptr,      1,           0.0f, 1, n, 1, Act::Identity,
                            0.0f,    m.seed, step,    kWeightLayer, uint32_t(p), 0,    0};
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

Status DeviceTrainer::seed_replay_losses(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e,
                                         int p0, int p1, float* plus, float* minus) {
    WpRange r{p0, p1, plus, minus};
    wp_range_ = &r;
    int rows = 0;
    Status st = estimate(m, x, y, B, e, m.step, -1.0, &rows);
    wp_range_ = nullptr;
    return st;
}

Status DeviceTrainer::seed_replay_update(Model& m, const EstimatorConfig& e, const OptimizerConfig& o,
                                         const float* plus, const float* minus, int rows) {
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

}  // namespace of
