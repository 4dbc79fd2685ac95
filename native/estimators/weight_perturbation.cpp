// Weight-space perturbation estimators, for honest comparison with ULR on the same models:
//   SPSA (as in MeZO, Malladi et al. 2023): g = (1/P) sum_p (L(theta + eps z_p) - L(theta - eps z_p)) / (2 eps) z_p
//   ES (Salimans et al. 2017): g = 1/(N sigma) sum_i F_i z_i, F_i the loss (or its centered rank) at theta + sigma z_i,
//     antithetic pairs (z, -z) optional.
// z ~ N(0, I) over the whole parameter slab, from Philox (stream "weights"): the directions are never stored --
// losses are evaluated first, then each z is regenerated to accumulate the gradient (MeZO's seed replay), so the
// memory is that of inference plus one perturbed copy of the parameters. The two halves are separate so that ranks
// of a distributed job can evaluate disjoint directions and exchange only the (float) losses: every rank then
// replays all directions and applies the identical update. Written once for both engines: the CPU's
// (CpuPerturbation here) and a device's (device/perturbation.cpp) hold the slab, z and g in their own memory.
#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <vector>

#include "estimators/estimator.h"

namespace of {
namespace {

bool pairs_of(const EstimatorConfig& e) { return e.kind == EstimatorConfig::Kind::Spsa || e.wp.antithetic; }

// The seed replay's coefficients: g = sum_p coef_p z_p (SPSA central differences; ES raw losses or centered ranks).
std::vector<double> coefficients(const EstimatorConfig& e, const float* plus, const float* minus) {
    const int P = e.wp.population;
    const bool pairs = pairs_of(e);
    const double eps = e.wp.sigma;
    std::vector<double> coef(static_cast<size_t>(P), 0.0);
    if (e.kind == EstimatorConfig::Kind::Spsa) {
        for (int p = 0; p < P; p++) coef[size_t(p)] = (double(plus[p]) - double(minus[p])) / (2.0 * float(eps) * P);
        return coef;
    }
    std::vector<double> f(plus, plus + P);
    if (pairs) f.insert(f.end(), minus, minus + P);
    if (e.wp.rank_shaping) {  // centered ranks in [-0.5, 0.5]: robust to the loss's scale and outliers
        std::vector<size_t> order(f.size());
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return f[a] < f[b]; });
        std::vector<double> rank(f.size());
        for (size_t i = 0; i < order.size(); i++) rank[order[i]] = double(i) / double(f.size() - 1) - 0.5;
        f = rank;
    } else {  // subtract the mean (a baseline independent of any one direction in expectation)
        double mean = std::accumulate(f.begin(), f.end(), 0.0) / double(f.size());
        for (double& v : f) v -= mean;
    }
    const double count = double(f.size());
    for (int p = 0; p < P; p++)
        coef[size_t(p)] = (f[size_t(p)] - (pairs ? f[size_t(P + p)] : 0.0)) / (count * float(eps));
    return coef;
}

// The CPU engine: the slab in m.params, z in m.ws.z, the perturbed copy in m.ws.theta, g in m.grads.
struct CpuPerturbation final : PerturbationEngine {
    const float* x;  // the batch: B rows, targets y
    Targets y;
    int B;
    uint32_t step;
    CpuPerturbation(Model& m, const float* x, Targets y, int B, uint32_t step)
        : PerturbationEngine(m), x(x), y(y), B(B), step(step) {}
    Status direction(int p) override {
        OF_TRY(m.ws.z.reserve(size_t(m.n_params)));
        m.k->noise_fill(m.ws.z.data(), 1, int(m.n_params), NoiseSpec{m.seed, step, kWeightLayer, uint32_t(p), false});
        return {};
    }
    Status zero_direction(int64_t begin, int64_t end) override {
        std::fill(m.ws.z.data() + begin, m.ws.z.data() + end, 0.0f);
        return {};
    }
    Status loss_at(float s, float* loss) override {
        OF_TRY(m.ws.theta.reserve(size_t(m.n_params)));
        OF_TRY(m.ws.loss.reserve(size_t(B)));
        OF_TRY(m.infer.out.reserve(size_t(B) * m.outputs));
        const float *theta0 = m.params->data(), *z = m.ws.z.data();
        float* th = m.ws.theta.data();
        for (int64_t i = 0; i < m.n_params; i++) th[i] = theta0[i] + s * z[i];
        OF_TRY(m.forward_with(th, m.infer.out.data(), x, B, m.infer));
        m.k->loss_forward(m.ws.loss.data(), m.infer.out.data(), y.labels, y.values, B, m.outputs, 1, m.loss, m.groups);
        double sum = 0.0;
        for (int r = 0; r < B; r++) sum += m.ws.loss.data()[r];
        *loss = float(sum / B);
        return {};
    }
    Status zero_grads() override {
        std::fill(m.grads.data(), m.grads.data() + m.n_params, 0.0f);
        return {};
    }
    Status accumulate(float c) override {
        float* g = m.grads.data();
        const float* z = m.ws.z.data();
        for (int64_t i = 0; i < m.n_params; i++) g[i] += c * z[i];
        return {};
    }
};

// z_p, zero on everything that never trains (a frozen prefix, the frozen ranges): perturbing it would only add
// variance
Status direction(PerturbationEngine& w, int p) {
    OF_TRY(w.direction(p));
    if (const int64_t off = trainable_offset(w.m)) OF_TRY(w.zero_direction(0, off));
    for (const auto& [begin, end] : w.m.frozen_ranges) OF_TRY(w.zero_direction(begin, end));
    return {};
}

}  // namespace

Status perturbation_losses(PerturbationEngine& w, const EstimatorConfig& e, int p0, int p1, float* plus, float* minus) {
    for (int p = p0; p < p1; p++) {
        OF_TRY(direction(w, p));
        OF_TRY(w.loss_at(e.wp.sigma, &plus[p]));
        minus[p] = 0.0f;
        if (pairs_of(e)) OF_TRY(w.loss_at(-e.wp.sigma, &minus[p]));
    }
    return {};
}

Status perturbation_replay(PerturbationEngine& w, const EstimatorConfig& e, const float* plus, const float* minus) {
    const std::vector<double> coef = coefficients(e, plus, minus);
    OF_TRY(w.zero_grads());
    for (int p = 0; p < e.wp.population; p++) {
        OF_TRY(direction(w, p));
        OF_TRY(w.accumulate(float(coef[size_t(p)])));
    }
    return {};
}

void perturbation_stats(const EstimatorConfig& e, int B, const float* plus, const float* minus, StepStats* stats) {
    const int P = e.wp.population;
    double total = 0.0;
    for (int p = 0; p < P; p++) total += double(plus[p]) + double(minus[p]);
    stats->loss = total / double(pairs_of(e) ? 2 * P : P);
    stats->correct = 0;
    stats->rows = B;
}

Status perturbation_gradients(PerturbationEngine& w, const EstimatorConfig& e, int B, StepStats* stats) {
    const size_t P = size_t(e.wp.population);
    std::vector<float> plus(P, 0.0f), minus(P, 0.0f);
    OF_TRY(perturbation_losses(w, e, 0, int(P), plus.data(), minus.data()));
    OF_TRY(perturbation_replay(w, e, plus.data(), minus.data()));
    perturbation_stats(e, B, plus.data(), minus.data(), stats);
    return {};
}

std::unique_ptr<PerturbationEngine> cpu_perturbation(Model& m, const float* x, const Targets& y, int B, uint32_t step) {
    return std::make_unique<CpuPerturbation>(m, x, y, B, step);
}

}  // namespace of
