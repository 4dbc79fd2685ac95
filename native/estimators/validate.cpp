// Checks an estimator's settings against a model before any step: every refusal is a typed Config error that says
// why (docs/estimators.md lists the option x layer kind cells that are undefined).
#include <algorithm>
#include <climits>
#include <cmath>
#include <string>

#include "estimators/estimator.h"
#include "rng/sobol.h"

namespace of {
namespace {

// Modules (ulr_modules.cpp) cover the layers with parameters in consecutive ranges. A boundary's noise goes on its
// pre-activation, so it cannot sit in a residual or concat block, from its first unit to its last: the skip path
// would cross it (and at the block's last unit the noise would come before the sum). BP runs inside each module:
// every activation but the boundaries' is differentiated.
Status validate_modules(const Model& m, const UlrConfig& c) {
    int prev = 0;
    for (int e : c.modules) {
        OF_CHECK(e > prev, Config,
                 "modules must be consecutive non-empty ranges of layers with parameters starting at 0");
        prev = e;
    }
    OF_CHECK(prev == m.param_units(), Config,
             "modules must cover the " + std::to_string(m.param_units()) + " layers with parameters, up to " +
                 std::to_string(prev));
    OF_CHECK(m.units.back().param(), Config,
             "modules need a model whose last layer has parameters (not a pooling layer)");
    OF_CHECK(!c.layerwise && !c.qmc && !c.learn_sigma, Config,
             "modules cannot be combined with injection 'layerwise', qmc or learnSigma");
    OF_CHECK(c.baseline != Baseline::Clean, Config, "modules support baselines 'loo', 'mean', 'running' and 'none'");
    const std::vector<int> ends = module_unit_ends(m, c.modules);
    auto boundary = [&](int l) { return std::find(ends.begin(), ends.end(), l + 1) != ends.end(); };
    std::vector<int> ordinal;  // per unit, the layers with parameters before it
    for (int l = 0, p = 0; l < int(m.units.size()); l++) ordinal.push_back(p), p += m.units[size_t(l)].param() ? 1 : 0;
    for (int l = 0; l < int(m.units.size()); l++) {
        const Unit& u = m.units[size_t(l)];
        if (!boundary(l) && !act_differentiable(u.act))
            return {StatusCode::Config,
                    std::string("modules run BP inside each module, which cannot differentiate the '") +
                        act_name(u.act) + "' activation after layer " +
                        std::to_string(ordinal[size_t(l)] - (u.param() ? 0 : 1)) +
                        " (counting layers with parameters); end a module there or use ulr() without modules"};
        if (u.skip_from < 0) continue;
        for (int j = u.skip_from; j <= l; j++) {
            if (!boundary(j)) continue;
            const int first = ordinal[size_t(u.skip_from)], last = ordinal[size_t(l)] - (u.param() ? 0 : 1);
            return {StatusCode::Config, "a module ends at layer " + std::to_string(ordinal[size_t(j)]) +
                                            " inside the " + (u.concat() ? "concat" : "residual") +
                                            " block of layers " + std::to_string(first) + " to " +
                                            std::to_string(last) +
                                            " (counting layers with parameters): the block's skip path would cross the "
                                            "boundary; end modules at layers before " +
                                            std::to_string(first) + " or after " + std::to_string(last)};
        }
    }
    if (c.pipeline)
        for (int l = 0; l < ends[0]; l++)
            OF_CHECK(
                !m.units[size_t(l)].running, Config,
                "pipeline cannot delay a first module that holds batchNorm: its backward would see the next batch's "
                "statistics");
    return {};
}

}  // namespace

Status validate_estimator(const Model& m, const EstimatorConfig& e, const LossHook* hook) {
    if (e.kind == EstimatorConfig::Kind::Bp) {
        OF_CHECK(!hook, Config, "bp() cannot use a custom loss function: it needs the loss's derivative; use ulr()");
        OF_CHECK(m.loss != LossKind::ZeroOne, Config,
                 "bp() cannot differentiate the 0-1 loss; train this model with ulr()");
        OF_CHECK(!m.has_quant, Config,
                 "bp() cannot differentiate binary or ternary weights; train this model with ulr()");
        for (size_t i = 0; i < m.units.size(); i++)
            if (!act_differentiable(m.units[i].act))
                return {StatusCode::Config, std::string("bp() cannot differentiate the '") + act_name(m.units[i].act) +
                                                "' activation after dense layer " + std::to_string(i) +
                                                "; train this model with ulr()"};
        OF_CHECK(e.bp.sigma >= 0.0f && std::isfinite(e.bp.sigma), Config, "bp() sigma must be >= 0 and finite");
        for (const Unit& u : m.units)
            OF_CHECK(!(e.bp.sigma > 0.0f && u.recurrent()), Config,
                     "bp() noise injection covers units with one pre-activation per value (dense, conv, graph, norm); "
                     "a recurrent or spiking layer's gates are not covered yet");
        return {};
    }
    if (e.kind == EstimatorConfig::Kind::Spsa || e.kind == EstimatorConfig::Kind::Es) {
        OF_CHECK(!hook, Config, "spsa() and es() cannot use a custom loss function yet; use ulr()");
        OF_CHECK(e.wp.population >= 1, Config, "population / perturbations must be at least 1");
        OF_CHECK(m.n_params <= INT_MAX - 63, Config,
                 "spsa() and es() support models of up to 2^31 - 64 parameters");  // one noise row
        OF_CHECK(e.wp.sigma > 0.0f && std::isfinite(e.wp.sigma), Config, "epsilon / sigma must be positive and finite");
        return {};
    }
    const UlrConfig& c = e.ulr;
    if (c.slice_total) {
        OF_CHECK(c.slice_offset + uint32_t(c.copies) <= c.slice_total && !c.layerwise && c.modules.empty() && !c.qmc &&
                     !c.learn_sigma,
                 Config,
                 "copy slices must lie within the copies, with injection 'all' and no modules, qmc or learnSigma");
        OF_CHECK(!c.antithetic || (c.slice_offset % 2 == 0 && c.copies % 2 == 0), Config,
                 "with antithetic pairs, copy slices must start and end on a pair");
    }
    OF_CHECK(c.sample_base == 0 || (!c.layerwise && c.modules.empty() && !c.qmc), Config,
             "sampleOffset (data-parallel shards) works with injection 'all', without modules or qmc");
    const int P = m.param_units();
    auto copies_ok = [&](int k) -> Status {
        OF_CHECK(k >= 2, Config, "ulr copies must be at least 2, got " + std::to_string(k));
        OF_CHECK(!c.antithetic || k % 2 == 0, Config,
                 "ulr copies must be even with antithetic pairs, got " + std::to_string(k));
        return {};
    };
    auto sigmas_ok = [](const std::vector<float>& v) -> Status {
        for (float s : v) OF_CHECK(s > 0.0f && std::isfinite(s), Config, "ulr sigma must be positive and finite");
        return {};
    };
    OF_TRY(copies_ok(c.copies));
    OF_CHECK(c.sigma.size() == 1 || c.sigma.size() == size_t(P), Config,
             "ulr sigma must be one number or one per layer with parameters (" + std::to_string(P) + "), got " +
                 std::to_string(c.sigma.size()));
    OF_TRY(sigmas_ok(c.sigma));
    if (!c.blocks.empty()) {
        OF_CHECK(c.layerwise, Config, "blocks need injection: 'layerwise'");
        size_t sum = 0;
        for (int n : c.blocks) {
            OF_CHECK(n >= 1, Config, "blocks must be positive layer counts");
            sum += size_t(n);
        }
        OF_CHECK(sum == size_t(P), Config,
                 "blocks must cover the " + std::to_string(P) + " layers with parameters, got " + std::to_string(sum));
    }
    OF_CHECK(!c.auto_copies || (c.layerwise && c.copies_per_layer.empty()), Config,
             "copies: 'auto' needs injection: 'layerwise'");
    if (!c.copies_per_layer.empty()) {
        OF_CHECK(c.layerwise, Config, "copies per layer need injection: 'layerwise'");
        OF_CHECK(c.copies_per_layer.size() == size_t(P), Config,
                 "ulr copies must be one number or one per layer with parameters (" + std::to_string(P) + ")");
        for (int k : c.copies_per_layer) OF_TRY(copies_ok(k));
    }
    if (!c.sigma_channels.empty()) {
        OF_CHECK(c.sigma_channels.size() == size_t(P), Config,
                 "ulr sigma must be one number or one entry per layer with parameters (" + std::to_string(P) + ")");
        for (size_t l = 0, p = 0; l < m.units.size(); l++) {
            const Unit& u = m.units[l];
            if (!u.param()) continue;
            const auto& v = c.sigma_channels[p++];
            const char* what = u.recurrent() ? "hidden unit (" : u.positional() ? "channel (" : "output (";
            const bool per_unit = u.recurrent() && v.size() == size_t(u.q.H);  // else one per gate and unit
            OF_CHECK(v.empty() || per_unit || v.size() == size_t(noise_channels(u)), Config,
                     "ulr sigma for layer " + std::to_string(p - 1) + " (with parameters) must have one value per " +
                         what + std::to_string(u.recurrent() ? u.q.H : noise_channels(u)) + ")" +
                         (u.recurrent() ? " or per gate and unit (" + std::to_string(noise_channels(u)) + ")" : "") +
                         ", got " + std::to_string(v.size()));
            OF_TRY(sigmas_ok(v));
        }
        OF_CHECK(!c.learn_sigma, Config, "learnSigma works with one sigma per layer, not per channel");
    }
    // QMC points of one sample are dependent: a baseline built from the other copies would correlate with a
    // copy's own noise (bias), so QMC needs a baseline independent of them.
    OF_CHECK(!c.qmc || c.baseline == Baseline::Clean || c.baseline == Baseline::Running || c.baseline == Baseline::None,
             Config, "qmc needs baseline 'clean', 'running' or 'none' (its copies are not independent)");
    OF_CHECK(!c.qmc || (c.density == Density::Normal && !c.learn_sigma), Config,
             "qmc works with normal noise and a fixed sigma");
    OF_CHECK(
        !c.qmc || qmc_dim0(m, int(m.units.size())) <= uint32_t(SobolTable::kMaxDims), Config,
        "qmc supports models of up to 65536 noise values per sample over all layers (a conv's outputs, a recurrent "
        "layer's steps x gates), got " +
            std::to_string(qmc_dim0(m, int(m.units.size()))));
    OF_CHECK(!c.learn_sigma || c.schedule == ScheduleKind::Constant, Config,
             "learnSigma cannot be combined with a sigma schedule (both set sigma)");
    if (c.precision == UlrConfig::Precision::Bf16) {
        OF_CHECK(c.modules.empty(), Config, "precision 'bf16' is not available with modules yet");
        OF_CHECK(!m.device, Config,
                 "precision 'bf16' runs on the CPU engine only; on a device the copies' GEMMs take TF32 instead "
                 "(sequential's allowTf32, on for ULR by default)");
    }
    if (!c.modules.empty()) OF_TRY(validate_modules(m, c));
    OF_CHECK(c.modules.empty() ? !c.pipeline : true, Config, "pipeline needs modules");
    OF_CHECK(!c.learn_sigma || (c.sigma_lr > 0.0f && std::isfinite(c.sigma_lr)), Config,
             "learnSigma lr must be positive");
    return {};
}

}  // namespace of
