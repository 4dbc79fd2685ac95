// Weight perturbation on the device (SPSA / ES): the engine of estimators/weight_perturbation.cpp, which runs the
// estimator. z_p regenerated from its Philox counters into z_, theta0 + s z into theta_p_ and an inference forward
// whose mean loss is read back (the coefficients need every direction's loss), the seed replay into grads_.
#include <cmath>

#include "device/trainer.h"

namespace of {

struct DeviceTrainer::Perturbation final : PerturbationEngine {
    DeviceTrainer& t;
    const float* x;  // the batch on the device: B rows
    int B;
    uint32_t step;
    Perturbation(DeviceTrainer& t, Model& m, const float* x, int B, uint32_t step)
        : PerturbationEngine(m), t(t), x(x), B(B), step(step) {}
    Status direction(int p) override {
        const int n = int(m.n_params);
        OF_TRY(t.z_.reserve(t.dev_.get(), size_t(n) * sizeof(float)));
        const dev::NoisyArgs na{nullptr, t.z_.f(), nullptr, nullptr,      1,           0.0f, 1, n, 1, Act::Identity,
                                0.0f,    m.seed,   step,    kWeightLayer, uint32_t(p), 0,    0};
        return t.dev_->noisy_forward(na, dev::noise_counters(n));
    }
    Status zero_direction(int64_t begin, int64_t end) override {
        return t.dev_->zero(t.z_.f() + begin, size_t(end - begin) * sizeof(float));
    }
    Status loss_at(float s, float* loss) override {
        OF_TRY(t.theta_p_.reserve(t.dev_.get(), size_t(m.n_params) * sizeof(float)));
        OF_TRY(t.dev_->axpy(dev::AxpyArgs{t.theta_p_.f(), t.params_.f(), t.z_.f(), s}, m.n_params));
        OF_TRY(t.effective(m, t.theta_p_.f()));
        double sums[2];
        OF_TRY(t.inference_sums(m, B, x, sums));
        *loss = float(sums[0] / B);
        return {};
    }
    Status zero_grads() override { return t.dev_->zero(t.grads_.f(), size_t(m.n_params) * sizeof(float)); }
    Status accumulate(float c) override {
        return t.dev_->axpy(dev::AxpyArgs{t.grads_.f(), t.grads_.f(), t.z_.f(), c}, m.n_params);
    }
};

// The estimate and the step statistics block (the mean loss over the directions); with wp_range_, only the losses of
// its directions.
Status DeviceTrainer::perturbation(Model& m, int B, const EstimatorConfig& e, uint32_t step, const float* x) {
    Perturbation w(*this, m, x, B, step);
    const WpRange* r = wp_range_;
    StepStats s;
    Status st = r ? perturbation_losses(w, e, r->p0, r->p1, r->plus, r->minus) : perturbation_gradients(w, e, B, &s);
    theta_ = params_.f();  // the forward's slab is the parameters again
    if (!st.ok() || r) return st;
    const double block[4] = {s.loss * B, 0.0, std::isfinite(s.loss) ? 1.0 : 0.0, 0.0};  // read_stats: block[0] / B
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
    Perturbation w(*this, m, nullptr, 0, m.step);
    OF_TRY(perturbation_replay(w, e, plus, minus));
    OF_TRY(dev_->zero(grads_.f(), size_t(trainable_offset(m)) * sizeof(float)));
    const double block[4] = {0.0, 0.0, 1.0, 0.0};  // the losses were finite (checked on the host): the gate is open
    OF_TRY(stats_.assign(dev_.get(), block, sizeof(block)));
    OF_TRY(update(m, o, m.opt_t + 1, rows));
    m.opt_t++;
    m.step++;
    return {};
}

}  // namespace of
