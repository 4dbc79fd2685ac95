// ULR on the device: the step's plan (estimators/ulr_plan.h, the CPU runner's too: injection 'all', 'layerwise',
// blocks, copies 'auto'; local modules as one group noisy at the boundaries) run group by group with all of a group's
// R = B K rows at once, for every unit kind the device has kernels for.
#include <algorithm>

#include "device/unit_pass.h"
#include "estimators/ulr_plan.h"
#include "units/unit.h"

namespace of {

// The ULR estimate (estimators/ulr.cpp's math) of the plan's clean B-row forward and groups (ulr_plan.h). Per group, on
// R rows: its start's linear part once per sample on its clean input, its K noisy copies from it, the rest of the
// group and the units after it; its losses, row weights, and per noisy unit the weight-gradient GEMM against
// diag(w) S(E) (the start: G = sum_k w s(E) on B rows).
// A conv unit is im2row + one GEMM: its noise row is the whole (positions x channels) output of a copy, and its
// weight gradient is S^T A over all (copy, position) rows with its patches A kept from the forward. A recurrent unit
// takes its noise on every gate at every step, inside its recurrence. Noise layer ids are unit indices and noise rows
// those of the CPU. The device always shares the prefix: sharedPrefix false (the CPU's copies of the clean input, each
// through the start's map) gives the same estimate, G^T A = sum over the copy rows.
Status DeviceTrainer::ulr(Model& m, int B, const UlrConfig& c, uint32_t step, const float* x, const Targets& y,
                          const LossHook* hook, int* rows_out) {
    Device* d = dev_.get();
    const int L = int(m.units.size()), C = m.outputs, P = m.param_units();
    const uint64_t seed = c.has_seed ? c.seed : m.seed;
    const uint32_t base = c.sample_base;
    const bool tf32 = tf32_for(EstimatorConfig::Kind::Ulr);
    UlrPlan plan;
    OF_TRY(plan_ulr_step(m, c, B, &plan));
    lw_copies_ = plan.copies;  // read_layer_var records copies 'auto''s
    const std::vector<Group>& groups = plan.groups;
    const bool modules = plan.modules();
    auto unit = [&](int l) -> const PlanUnit& { return plan.units[size_t(l)]; };
    int width0 = 1, width = m.inputs;  // the widest group start's noise; the widest rows
    for (const Group& g : groups) width0 = std::max(width0, m.units[size_t(g.start)].noise_width());
    const int64_t Rmax = int64_t(B) * plan.kmax;
    std::vector<const float*> sigmas;  // per-channel sigma: per unit its scale per noise value, on the device
    OF_TRY(channel_sigmas(plan, &sigmas));
    // storeNoise false (not with QMC, a learned sigma or copies 'auto', which read the noise itself): the forward keeps
    // no noise, and the reduction regenerates it from the same counters straight into the weighted scores (a write and
    // a read of R x O values less per unit)
    const bool regen = !c.store_noise && !c.qmc && !c.learn_sigma && !c.auto_copies;

    // buffers: a_ the clean B rows (clean_forward), ga_ a group's R rows, e_ a noisy unit's noise (or its weighted
    // scores)
    grow(a_, size_t(L)), grow(e_, size_t(L)), grow(ga_, size_t(L));
    for (int l = 0; l < L; l++) {  // modules: e_ also keeps every other unit's pre-activation (BP inside a module)
        const Unit& u = m.units[size_t(l)];
        width = std::max({width, u.I, u.noise_width()});
        if (l >= groups.front().start) OF_TRY(ga_[size_t(l)]->reserve(d, size_t(Rmax) * u.O * sizeof(float)));
        if (unit(l).noisy || modules)
            OF_TRY(e_[size_t(l)]->reserve(d, size_t(Rmax) * std::max(u.O, u.noise_width()) * sizeof(float)));
    }
    // modules: BP's scratch inside them (a pipelined first module's rows too); at a residual block's end act(v) and
    // the sum before post_act, at its start the skip gradient
    if (modules) {
        const size_t rows = size_t(std::max<int64_t>(Rmax, pipe_.pending ? pipe_.B : 0));
        OF_TRY(d0_.reserve(d, rows * width * sizeof(float)));
        OF_TRY(d1_.reserve(d, rows * width * sizeof(float)));
        OF_TRY(reserve_blocks(m, L, Rmax));
    }
    // a residual block's end: act(v) goes to inner_ (modules: BP reads it and the sum), or to the output in place
    auto inner = [&](int l, float* a) {
        return modules && m.units[size_t(l)].ends_residual() ? inner_[size_t(l)]->f() : a;
    };
    auto sum = [&](int l) { return modules ? sum_[size_t(l)]->f() : nullptr; };
    OF_TRY(v0_.reserve(d, size_t(B) * width0 * sizeof(float)));  // a recurrent start: X W^T of every step
    OF_TRY(g_.reserve(d, size_t(B) * width0 * sizeof(float)));
    OF_TRY(loss_.reserve(d, size_t(plan.rows) * sizeof(float)));
    OF_TRY(hit_.reserve(d, size_t(plan.rows) * sizeof(int)));
    OF_TRY(w_.reserve(d, size_t(Rmax) * sizeof(float)));
    const int chunks_max = int((Rmax + dev::kReduceRows - 1) / dev::kReduceRows);
    if (c.learn_sigma || c.auto_copies) {  // per param unit: d loss / d log sigma at [0, P), the variance at [P, 2P)
        OF_TRY(sg_rows_.reserve(d, size_t(Rmax) * sizeof(double)));
        OF_TRY(sg_part_.reserve(d, size_t(chunks_max) * sizeof(double)));
        OF_TRY(sg_.reserve(d, size_t(2 * P) * sizeof(double)));
        OF_TRY(d->zero(sg_.as<double>(), size_t(2 * P) * sizeof(double)));
    }
    float* G = grads_.f();
    auto bias = [&](const Unit& u) -> const float* { return u.b_off < 0 ? nullptr : theta_ + u.b_off; };
    auto clean_in = [&](int l) { return l == 0 ? x : a_[size_t(l - 1)]->f(); };
    // unit l on `rows` rows: dropout's row r belongs to sample base + r / rep, a concat's block input is `skip`
    auto pass_of = [&](int l, int rows, int rep, const float* skip, int skip_rep) {
        UnitPass p = pass(m, l, rows, tf32);
        p.rep = rep, p.sample0 = base, p.seed = seed, p.step = step, p.skip = skip, p.skip_rep = skip_rep;
        return p;
    };

    // 1. the clean forward of the B samples (batchNorm: this batch's statistics, which every copy normalizes with;
    // modules: the first module's pre-activations and activations, for BP inside it)
    OF_TRY(clean_forward(m, plan.clean_end, B, x, base, seed, step, tf32));
    if (c.baseline == Baseline::Clean) {  // each sample's noise-free loss
        OF_TRY(clean_.reserve(d, size_t(B) * sizeof(float)));
        OF_TRY(clean_hit_.reserve(d, size_t(B) * sizeof(int)));
        OF_TRY(d->loss_rows(dev::LossArgs{clean_.f(), clean_hit_.as<int>(), a_[size_t(L - 1)]->f(),
                                          labels_.as<int32_t>(), values_.f(), B, C, 1, m.loss, m.groups},
                            B));
    }
    const float running = m.has_running ? float(m.running_loss) : 0.0f;

    // A noisy unit's reduction in its group (start st, K copies) from its input rows: S = diag(w) s(E) in place (the
    // fused paths below form it on the way), then its weight-gradient GEMM; the start's through G = copy sum of S on
    // B rows. na: its noise arguments, for storeNoise false's regeneration.
    auto alpha_of = [&](int l) { return unit(l).scale.alpha; };
    // weights false: the start's copy sum G alone (pipelined modules reduce it a step later)
    auto reduce = [&](int l, int st, int K, const float* in, dev::NoisyArgs na, bool weights = true) -> Status {
        const Unit& u = m.units[size_t(l)];
        const int R = B * K, nw = u.noise_width(), chunks = (R + dev::kReduceRows - 1) / dev::kReduceRows;
        const size_t p = size_t(unit(l).param);
        float* S = e_[size_t(l)]->f();
        auto dsum = [&](double* out) -> Status {  // sg_rows_'s R rows summed into *out
            const dev::DSumArgs ds{sg_part_.as<double>(), out, sg_rows_.as<double>(), R};
            OF_TRY(d->dsum_partial(ds, chunks));
            return d->dsum_final(ds, 1);
        };
        if (c.learn_sigma) {  // d loss / d log sigma, from the noise before the score replaces it
            OF_TRY(d->sigma_grad(dev::SigmaGradArgs{sg_rows_.as<double>(), S, w_.f(), nw, c.density}, R));
            OF_TRY(dsum(sg_.as<double>() + p));
        }
        if (c.auto_copies && l == st) {  // the estimate's variance (times sigma^2): sum_r w_r^2 |s(e_r)|^2 |x_r/K|^2
            OF_TRY(
                d->var_rows(dev::VarRowsArgs{sg_rows_.as<double>(), S, w_.f(), in, nw, u.I, K, c.density, c.score}, R));
            OF_TRY(dsum(sg_.as<double>() + P + p));
        }
        const bool fused = l == st && !u.recurrent() && !regen;  // the copy sum scores the noise itself
        // a later GEMM unit of flat rows with a bias: its scores and their column sums' first stage in one pass
        const bool scored_cols = l != st && !regen && u.flat_linear() && u.b_off >= 0 && !u.kind->device->backward;
        if (scored_cols) {
            OF_TRY(col_part_.reserve(d, size_t(chunks) * u.O * sizeof(float)));
            const dev::ScoreColsArgs sc{{S, w_.f(), u.O, c.density, c.score, sigmas[size_t(l)]}, col_part_.f(), R};
            OF_TRY(d->score_cols(sc, int64_t(chunks) * u.O));
        } else if (regen && !u.recurrent()) {
            na.out = nullptr, na.E = S, na.w = w_.f(), na.score = c.score;
            OF_TRY(d->noisy_forward(na, int64_t(R) * dev::noise_counters(u.O)));
        } else if (!fused) {
            OF_TRY(d->score_rows(dev::ScoreRowsArgs{S, w_.f(), nw, c.density, c.score, sigmas[size_t(l)]},
                                 int64_t(R) * nw));
        }
        const float alpha = alpha_of(l);
        if (u.recurrent()) {  // the start's dW from G = sum over copies (B T rows); U and b per copy row
            if (l == st) {
                OF_TRY(d->copy_sum(dev::CopySumArgs{g_.f(), S, K, nw}, int64_t(B) * nw));
                OF_TRY(d->gemm(true, false, u.q.G * u.q.H, u.q.F, B * u.q.T, alpha, g_.f(), u.q.G * u.q.H, in, u.q.F,
                               0.0f, G + u.w_off, u.q.F, tf32));
            }
            return seq_reduce(m, l, R, in, S, alpha, l != st, tf32);
        }
        const int rows = l == st ? B : R;
        if (l == st) {
            const dev::CopySumArgs cs =
                fused ? scored_sum(S, K, u.O, c, sigmas[size_t(l)]) : dev::CopySumArgs{g_.f(), S, K, u.O};
            OF_TRY(d->copy_sum(cs, int64_t(B) * u.O));
            S = g_.f();
            if (!weights) return {};
        }
        if (scored_cols) {  // the weight GEMM, then the bias from the column sums' chunks
            OF_TRY(d->gemm(true, false, u.O, u.I, R, alpha, S, u.O, in, u.I, 0.0f, G + u.w_off, u.I, tf32));
            return d->col_sum_final(dev::ColSumArgs{G + u.b_off, col_part_.f(), nullptr, R, u.O, alpha}, u.O);
        }
        return backward(pass(m, l, rows, tf32), in, S, alpha, true, nullptr);
    };

    // 2. each group: its forward, losses and row weights, then its noisy units' reductions
    for (const Group& g : groups) {
        const int K = g.K, R = B * K, st = g.start;
        auto input = [&](int l) { return l == st ? clean_in(l) : ga_[size_t(l - 1)]->f(); };
        // a block's input (a residual sum, a concat): from the clean rows (row r / K) when the block starts at or
        // before the group's start, else from the group's rows
        auto block_in = [&](int s0, int* rep) {
            *rep = s0 <= st ? K : 1;
            return s0 <= st ? clean_in(s0) : ga_[size_t(s0 - 1)]->f();
        };
        auto sliced = [&](dev::NoisyArgs na) {  // copy-parallel ranks: the noise rows of the whole K
            if (c.slice_total)
                na.slice_local = uint32_t(K), na.slice_total = c.slice_total, na.slice_offset = c.slice_offset;
            return na;
        };
        auto noise_args = [&](int l, const float* pre, int rep) {
            const Unit& u = m.units[size_t(l)];
            return sliced(dev::NoisyArgs{ga_[size_t(l)]->f(), regen ? nullptr : e_[size_t(l)]->f(), pre, bias(u),
                                         u.gemm_cols(), unit(l).scale.sigma, R, u.O, rep, u.act, u.alpha, seed, step,
                                         uint32_t(l), base * uint32_t(K), c.antithetic ? 1 : 0, int(c.density),
                                         sigmas[size_t(l)]});
        };
        auto noisy = [&](int l, const float* pre, int rep) -> Status {
            return noise_forward(noise_args(l, pre, rep), c.qmc ? K : 0, unit(l).qmc_dim);
        };
        // a recurrent unit: its noise E first (noisy), then the steps (xw: the start's shared X W^T; per-channel
        // sigma: the first GH values of its per-value scale, one step's gates)
        auto seq = [&](int l, const float* xw, bool noisy_unit) -> Status {
            const Unit& u = m.units[size_t(l)];
            float* a = ga_[size_t(l)]->f();
            if (noisy_unit) {
                const dev::NoisyArgs na = sliced({nullptr, e_[size_t(l)]->f(), nullptr, nullptr, 1, unit(l).scale.sigma,
                                                  R, u.noise_width(), 1, Act::Identity, 0.0f, seed, step, uint32_t(l),
                                                  base * uint32_t(K), c.antithetic ? 1 : 0, int(c.density)});
                OF_TRY(noise_forward(na, c.qmc ? K : 0, unit(l).qmc_dim));
            }
            float* v = modules && !noisy_unit ? e_[size_t(l)]->f() : a;  // modules: BP reads the pre-activation
            OF_TRY(seq_forward(m, l, R, input(l), v, noisy_unit ? e_[size_t(l)]->f() : nullptr, unit(l).scale.sigma, xw,
                               K, tf32, sigmas[size_t(l)]));
            if (u.act == Act::Identity && v == inner(l, a)) return {};
            return d->bias_act(dev::BiasActArgs{inner(l, a), v, nullptr, u.O, u.act, u.alpha}, int64_t(R) * u.O);
        };
        auto skip = [&](int l) -> Status {
            const Unit& u = m.units[size_t(l)];
            if (!u.ends_residual()) return {};
            int rep = 1;
            const float* src = block_in(u.skip_from, &rep);
            float* a = ga_[size_t(l)]->f();
            return d->skip_add(dev::SkipArgs{a, sum(l), inner(l, a), src, u.O, rep, u.post_act, u.post_alpha},
                               int64_t(R) * u.O);
        };

        const Unit& u0 = m.units[size_t(st)];
        if (u0.recurrent()) {  // the input projections X W^T once per sample and step, read by the sample's K copies
            OF_TRY(d->gemm(false, true, B * u0.q.T, u0.q.G * u0.q.H, u0.q.F, 1.0f, clean_in(st), u0.q.F,
                           theta_ + u0.w_off, u0.q.F, 0.0f, v0_.f(), u0.q.G * u0.q.H, tf32));
            OF_TRY(seq(st, v0_.f(), true));
        } else {
            OF_TRY(forward(pass(m, st, B, tf32), clean_in(st), v0_.f()));
            OF_TRY(noisy(st, v0_.f(), K));
        }
        OF_TRY(skip(st));
        for (int l = st + 1; l < L; l++) {
            const Unit& u = m.units[size_t(l)];
            const bool noisy_unit = unit(l).noisy && l < g.end;
            float* a = ga_[size_t(l)]->f();
            float* v = modules && !noisy_unit ? e_[size_t(l)]->f() : a;  // modules: BP reads the pre-activation
            if (!u.param()) {  // dropout's row r belongs to sample base + r / K; a concat's block input as block_in
                int rep = 1;
                const float* src = u.skip_from >= 0 ? block_in(u.skip_from, &rep) : nullptr;
                OF_TRY(forward_act(pass_of(l, R, K, src, rep), input(l), v, inner(l, a)));
            } else if (u.recurrent()) {
                OF_TRY(seq(l, nullptr, noisy_unit));
            } else {
                OF_TRY(forward(pass(m, l, R, tf32), input(l), v));
                const dev::BiasActArgs ba{inner(l, a), v, bias(u), u.gemm_cols(), u.act, u.alpha};
                OF_TRY(noisy_unit ? noisy(l, a, 1) : d->bias_act(ba, int64_t(R) * u.O));
            }
            OF_TRY(skip(l));
        }
        const float* out = ga_[size_t(L - 1)]->f();
        float* loss = loss_.f() + g.out0;
        OF_TRY(d->loss_rows(dev::LossArgs{loss, hit_.as<int>() + g.out0, out, labels_.as<int32_t>(), values_.f(), R, C,
                                          K, m.loss, m.groups},
                            R));
        if (hook) OF_TRY(js_losses(out, y, R, C, K, *hook, loss));  // one call per group, its rows (sample, copy)
        OF_TRY(row_weights(B, K, loss, running, c, 1.0f / float(R)));
        if (modules) {
            const ModulePasses mp{
                [&](int l, bool weights) { return reduce(l, st, K, input(l), noise_args(l, nullptr, 1), weights); },
                [&](int l, int rows, int rep) { return pass_of(l, rows, rep, nullptr, 1); }, alpha_of};
            OF_TRY(module_reductions(m, plan.ends, B, K, c, x, tf32, mp));
            continue;
        }
        for (int l = st; l < g.end; l++)
            if (m.units[size_t(l)].param()) OF_TRY(reduce(l, st, K, input(l), noise_args(l, nullptr, 1)));
    }
    *rows_out = int(plan.rows);
    return {};
}

}  // namespace of
