// Weight-space perturbation estimators, for honest comparison with ULR on the same models:
//   SPSA (as in MeZO, Malladi et al. 2023): g = (1/P) sum_p (L(theta + eps z_p) - L(theta - eps z_p)) / (2 eps) z_p
//   ES (Salimans et al. 2017): g = 1/(N sigma) sum_i F_i z_i, F_i the loss (or its centered rank) at theta + sigma z_i,
//     antithetic pairs (z, -z) optional.
// z ~ N(0, I) over the whole parameter slab, from Philox (stream "weights"): the directions are never stored --
// losses are evaluated first, then each z is regenerated to accumulate the gradient (MeZO's seed replay), so the
// memory is that of inference plus one perturbed copy of the parameters. The two halves are separate so that ranks
// of a distributed job can evaluate disjoint directions and exchange only the (float) losses: every rank then
// replays all directions and applies the identical update.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "estimators/estimator.h"

namespace of {
namespace {

struct Perturbation {
    Model& m;
    const EstimatorConfig& e;
    uint32_t step;
    int P;
    float eps;
    bool pairs;
    int64_t n;
    // direction p of the slab: z_p ~ N(0, I) from the counter-based generator (seed, step, p), 0 on the frozen ranges
    // (perturbing weights that never train would only add variance)
    void direction(int p) const {
        m.k->noise_fill(m.ws.z.data(), 1, int(n), NoiseSpec{m.seed, step, kWeightLayer, uint32_t(p), false});
        m.zero_frozen(m.ws.z.data());
    }
};

Perturbation setup(Model& m, const EstimatorConfig& e, uint32_t step) {
    const bool spsa = e.kind == EstimatorConfig::Kind::Spsa;
    return {m, e, step, e.wp.population, e.wp.sigma, spsa || e.wp.antithetic, m.n_params};
}

}  // namespace

Status weight_perturbation_losses(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e,
                                  uint32_t step, int p0, int p1, float* plus, float* minus, int64_t clean) {
    const Perturbation w = setup(m, e, step);
    const KernelTable& k = *m.k;
    auto& ws = m.ws;
    OF_TRY(ws.theta.reserve(size_t(w.n)));
    OF_TRY(ws.z.reserve(size_t(w.n)));
    OF_TRY(ws.loss.reserve(size_t(B)));
    OF_TRY(m.infer.out.reserve(size_t(B) * m.outputs));
    const float* theta0 = m.params->data();
    // mean batch loss at theta0 + sign * eps * z, rounded to float: what ranks exchange in seed-replay training
    auto loss_at = [&](float sign, float* out) -> Status {
        float* th = ws.theta.data();
        const float* z = ws.z.data();
        const float s = sign * w.eps;
        std::copy(theta0, theta0 + clean, th);
        for (int64_t i = clean; i < w.n; i++) th[i] = theta0[i] + s * z[i];
        OF_TRY(m.forward_with(th, m.infer.out.data(), x, B, m.infer));
        k.loss_forward(ws.loss.data(), m.infer.out.data(), y.labels, y.values, B, m.outputs, 1, m.loss, m.groups);
        double sum = 0.0;
        for (int r = 0; r < B; r++) sum += ws.loss.data()[r];
        *out = float(sum / B);
        return {};
    };
    for (int p = p0; p < p1; p++) {
        w.direction(p);
        OF_TRY(loss_at(1.0f, &plus[p]));
        minus[p] = 0.0f;
        if (w.pairs) OF_TRY(loss_at(-1.0f, &minus[p]));
    }
    return {};
}

std::vector<double> perturbation_coefficients(const EstimatorConfig& e, const float* plus, const float* minus) {
    const int P = e.wp.population;
    const bool pairs = e.kind == EstimatorConfig::Kind::Spsa || e.wp.antithetic;
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

Status weight_perturbation_replay(Model& m, const EstimatorConfig& e, uint32_t step, const float* plus,
                                  const float* minus) {
    const Perturbation w = setup(m, e, step);
    const int P = w.P;
    OF_TRY(m.ws.z.reserve(size_t(w.n)));
    const std::vector<double> coef = perturbation_coefficients(e, plus, minus);
    // seed replay: g = sum_p coef_p z_p
    float* g = m.grads.data();
    std::fill(g, g + w.n, 0.0f);
    for (int p = 0; p < P; p++) {
        w.direction(p);
        const float c = float(coef[size_t(p)]);
        const float* z = m.ws.z.data();
        for (int64_t i = 0; i < w.n; i++) g[i] += c * z[i];
    }
    return {};
}

Status weight_perturbation_gradients(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e,
                                     uint32_t step, StepStats* stats) {
    const int P = e.wp.population;
    std::vector<float> plus(static_cast<size_t>(P), 0.0f), minus(static_cast<size_t>(P), 0.0f);
    OF_TRY(weight_perturbation_losses(m, x, y, B, e, step, 0, P, plus.data(), minus.data()));
    OF_TRY(weight_perturbation_replay(m, e, step, plus.data(), minus.data()));
    const bool pairs = e.kind == EstimatorConfig::Kind::Spsa || e.wp.antithetic;
    double total = 0.0;
    for (int p = 0; p < P; p++) total += double(plus[size_t(p)]) + double(minus[size_t(p)]);
    stats->loss = total / double(pairs ? 2 * P : P);
    stats->correct = 0;
    stats->rows = B;
    return {};
}

}  // namespace of
