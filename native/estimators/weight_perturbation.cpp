// Weight-space perturbation estimators, for honest comparison with ULR on the same models:
//   SPSA (as in MeZO, Malladi et al. 2023): g = (1/P) sum_p (L(theta + eps z_p) - L(theta - eps z_p)) / (2 eps) z_p
//   ES (Salimans et al. 2017): g = 1/(N sigma) sum_i F_i z_i, F_i the loss (or its centered rank) at theta + sigma z_i,
//     antithetic pairs (z, -z) optional.
// z ~ N(0, I) over the whole parameter slab, from Philox (stream "weights"): the directions are never stored --
// losses are evaluated first, then each z is regenerated to accumulate the gradient (MeZO's seed replay), so the
// memory is that of inference plus one perturbed copy of the parameters.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "estimators/estimator.h"

namespace of {
namespace {
constexpr uint32_t kWeightLayer = 0xfffe;  // noise stream id of weight-space directions (dense layers use 0..)
}

Status weight_perturbation_gradients(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e,
                                     uint32_t step, StepStats* stats) {
    const KernelTable& k = *m.k;
    const bool spsa = e.kind == EstimatorConfig::Kind::Spsa;
    const int P = e.wp.population;
    const float eps = e.wp.sigma;
    const bool pairs = spsa || e.wp.antithetic;
    const int64_t n = m.n_params;
    const uint64_t seed = m.seed;
    auto& ws = m.ws;
    OF_TRY(ws.theta.reserve(size_t(n)));
    OF_TRY(ws.z.reserve(size_t(n)));
    OF_TRY(ws.loss.reserve(size_t(B)));
    OF_TRY(m.infer.out.reserve(size_t(B) * m.outputs));
    const float* theta0 = m.params->data();
    // mean batch loss at theta0 + sign * scale * z
    auto loss_at = [&](float sign, double* out) -> Status {
        float* th = ws.theta.data();
        const float* z = ws.z.data();
        const float s = sign * eps;
        for (int64_t i = 0; i < n; i++) th[i] = theta0[i] + s * z[i];
        OF_TRY(m.forward_with(th, m.infer.out.data(), x, B, m.infer));
        k.loss_forward(ws.loss.data(), m.infer.out.data(), y.labels, y.values, B, m.outputs, 1, m.loss, m.groups);
        double sum = 0.0;
        for (int r = 0; r < B; r++) sum += ws.loss.data()[r];
        *out = sum / B;
        return {};
    };
    auto direction = [&](int p) { k.noise_fill(ws.z.data(), 1, int(n), NoiseSpec{seed, step, kWeightLayer, uint32_t(p), false}); };
    // 1. losses (P directions; with pairs, both signs)
    const size_t np = static_cast<size_t>(P);
    std::vector<double> plus(np, 0.0), minus(np, 0.0);
    double total = 0.0;
    for (int p = 0; p < P; p++) {
        direction(p);
        OF_TRY(loss_at(1.0f, &plus[size_t(p)]));
        if (pairs) OF_TRY(loss_at(-1.0f, &minus[size_t(p)]));
        total += plus[size_t(p)] + minus[size_t(p)];
    }
    // 2. per-direction coefficients: SPSA central differences; ES raw losses or centered ranks
    std::vector<double> coef(np, 0.0);
    if (spsa) {
        for (int p = 0; p < P; p++) coef[size_t(p)] = (plus[size_t(p)] - minus[size_t(p)]) / (2.0 * eps * P);
    } else {
        std::vector<double> f = plus;
        if (pairs) f.insert(f.end(), minus.begin(), minus.end());
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
            coef[size_t(p)] = (f[size_t(p)] - (pairs ? f[size_t(P + p)] : 0.0)) / (count * eps);
    }
    // 3. seed replay: g = sum_p coef_p z_p
    float* g = m.grads.data();
    std::fill(g, g + n, 0.0f);
    for (int p = 0; p < P; p++) {
        direction(p);
        const float c = float(coef[size_t(p)]);
        const float* z = ws.z.data();
        for (int64_t i = 0; i < n; i++) g[i] += c * z[i];
    }
    stats->loss = total / double(pairs ? 2 * P : P);
    stats->correct = 0;
    stats->rows = B;
    return {};
}

}  // namespace of
