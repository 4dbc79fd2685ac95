// The unified likelihood-ratio (ULR) estimator: Jiang et al., "One Forward is Enough for Neural Network Training via
// Likelihood Ratio Method", ICLR 2024, section 3 (the LR gradient of a unit with noise on its pre-activation) and
// section 4 (variance reduction). docs/method.md is our summary. One orchestration for every layer kind: the units
// (model/units.h) supply their forward and their LR reduction, the step's plan (ulr_plan.h) says where noise goes and
// how many copies each group runs, this file runs it on the CPU.
//
// Noise enters the pre-activation of every unit with parameters (dense, conv and graph maps, norms: their affine
// output; recurrent units: every gate at every step):  V~ = V + sigma E,  E ~ p (normal, Laplace, logistic). Per-row
// losses l give row weights  w = (l - beta) / (B K)  (beta: a baseline independent of the row's own noise), and a
// unit's gradient is its BP weight-gradient map applied to  S = w s(E) / sigma  instead of the backpropagated error:
//   dense  grad W = (diag(w) s(E))^T A / sigma,   conv: the same over im2row patches,   recurrent: summed over steps.
//
// Copies run in the plan's groups (ulr_plan.h). Everything before a group's start is clean, so it runs once per sample
// on B rows (the shared prefix, docs/method.md 3.1), and the start reduces its gradient over copies first,
// G = sum_k w s(E) (B rows), then grad = G^T A (B rows, not B K); its later units reduce per row.
//
// Work runs in blocks of whole samples (~256 rows per group): one task takes a block through every group's forward,
// its losses, row weights, G rows and partial gradients while they are in cache; partials are summed in block
// order, so results do not depend on the thread count. The noise is a pure function of (seed, step, unit, row,
// value), kept from the forward or regenerated for the reduction (storeNoise: false): the same bits either way.
// With precision 'bf16' the copies' forward runs on the kernel table kc, whose products take bfloat16 operands with
// float32 sums (kernels/cpu/bf16.h); the clean pass and the reductions keep float32.
//
// Local modules (ulr_modules.cpp has their math) are one group from the first boundary on, noisy only at the
// boundaries; every other unit of the group runs clean on its rows but keeps BP's tape (estimators/bp.h), and after
// each boundary's reduction BP runs inside its module. The clean pass records the first module's tape instead, for its
// backward from G on B rows (pipelined: a step later, beside the next step's blocks).
#include <algorithm>
#include <cmath>

#include "core/shape.h"
#include "core/thread_pool.h"
#include "core/thread_scratch.h"
#include "device/ops_score.h"
#include "estimators/estimator.h"
#include "estimators/ulr_modules.h"
#include "estimators/ulr_plan.h"
#include "model/train.h"
#include "model/units.h"

namespace of {
namespace {

// A unit pass's scratch for `rows` rows: patches, recurrent state, step weights.
Status reserve_pass_scratch(const Model& m, int rows, Buffer& cols, Buffer& seq, Buffer& wexp) {
    OF_TRY(cols.reserve(size_t(rows) * size_t(std::max<int64_t>(m.patch_width(), 1))));
    OF_TRY(seq.reserve(size_t(rows) * size_t(std::max<int64_t>(m.seq_scratch_width(), 1))));
    return wexp.reserve(size_t(rows) * size_t(m.max_positions()));
}

// Per-thread scratch of one block: per unit its output, noise and recurrent aux (with modules BP's whole tape); the
// replicated input of a group's first unit (sharedPrefix: false); losses, row weights, patches and state scratch.
struct BlockScratch {
    std::vector<Buffer> v, a, aux, inner, sum, pending, e;
    Buffer d0, d1, cols, seq, dP, wexp, x_rep, loss, w;
    BpTape tape() { return {v, a, aux, inner, sum, pending, d0, d1, cols, seq, dP, wexp}; }
    // for `rows` rows of the group starting at unit `start`
    Status reserve(const Model& m, const UlrPlan& plan, int start, int rows) {
        const int L = int(m.units.size());
        a.resize(size_t(L)), e.resize(size_t(L)), aux.resize(size_t(L));
        for (int l = start; l < L; l++) {
            const Unit& u = m.units[size_t(l)];
            OF_TRY(a[size_t(l)].reserve(size_t(rows) * u.O));
            if (plan.units[size_t(l)].noisy) OF_TRY(e[size_t(l)].reserve(size_t(rows) * u.noise_width()));
            if (u.recurrent()) OF_TRY(aux[size_t(l)].reserve(size_t(rows) * size_t(seq_aux_width(u))));
        }
        OF_TRY(loss.reserve(size_t(rows)));
        OF_TRY(w.reserve(size_t(rows)));
        OF_TRY(reserve_pass_scratch(m, rows, cols, seq, wexp));
        if (!plan.shared) OF_TRY(x_rep.reserve(size_t(rows) * m.units[size_t(start)].I));
        return plan.modules() ? bp_tape_reserve(m, tape(), rows, start + 1, L) : Status{};
    }
};

// The step's statistics from the blocks' loss sums and hits (R rows), and the running baseline's update.
void finish_stats(Model& m, const UlrConfig& c, const std::vector<double>& loss_sum,
                  const std::vector<int64_t>& correct, int R, StepStats* stats) {
    double total = 0.0;
    int64_t hits = 0;
    for (size_t t = 0; t < loss_sum.size(); t++) total += loss_sum[t], hits += correct[t];
    stats->loss = total / R;
    update_running_baseline(m, c, stats->loss);
    stats->correct = hits;
    stats->rows = R;
}

// Per-row losses of a block of s samples x K copies (rows r0.. of the step) from its outputs, or the hook's
// losses when it answered; returns their sum and the rows whose arg-max matched (correct).
double block_losses(const Model& m, const Targets& y, const float* out, int b0, int s, int K, int r0,
                    const float* hook_loss, float* loss, int64_t* correct) {
    const int C = m.outputs, rows = s * K;
    *correct = m.k->loss_forward(loss, out, y.labels ? y.labels + int64_t(b0) * m.groups : nullptr,
                                 y.values ? y.values + int64_t(b0) * C : nullptr, rows, C, K, m.loss, m.groups);
    if (hook_loss) std::copy(hook_loss + r0, hook_loss + r0 + rows, loss);
    double sum = 0.0;
    for (int r = 0; r < rows; r++) sum += loss[r];
    return sum;
}

// g (n) = sum over blocks t of partials[t * stride + off .. + n], in block order (the order fixes the bits for any
// thread count); overwritten.
void sum_block_partials(float* g, const float* partials, int64_t off, int64_t stride, int T, int64_t n) {
    const float* p0 = partials + off;
    std::copy(p0, p0 + n, g);
    for (int t = 1; t < T; t++) {
        const float* p = partials + int64_t(t) * stride + off;
        for (int64_t i = 0; i < n; i++) g[i] += p[i];
    }
}

// Rows per chunk of a noisy unit fused with the pooling after it: about 64K floats of its output (in L2), within
// one sample's copies or whole samples (rep copies each), so chunk row r reads clean pre-activation row r / rep.
int pool_chunk_rows(int O, int rep) {
    int c = std::max(1, 65536 / std::max(O, 1));
    if (rep <= 1) return c;
    if (c >= rep) return c / rep * rep;
    while (rep % c) c--;
    return c;
}

}  // namespace

void clean_rows_gradient(const KernelTable& k, const Unit& u, const float* theta, const float* in, int B,
                         const float* G, float alpha, float* g, float* cols, float* wexp) {
    if (u.recurrent()) k.gemm_tn(g, G, in, nullptr, u.q.G * u.q.H, u.q.F, B * u.q.T, alpha, 0.0f);
    else unit_lr_reduce(k, u, theta, in, B, G, nullptr, alpha, g, g + int64_t(u.gemm_cols()) * u.fan_in(), cols, wexp);
}

Status ulr_gradients(Model& m, const float* x, const Targets& y, int B, const UlrConfig& c, uint32_t step,
                     StepStats* stats, const LossHook* hook) {
    if (c.exact_boundary) return exact_boundary_gradients(m, x, y, B, c, stats);
    const KernelTable& k = *m.k;
    const KernelTable& kc = c.precision == UlrConfig::Precision::Bf16 ? cpu_kernels_bf16() : k;  // the copies' forward
    const int L = int(m.units.size());
    const int C = m.outputs;
    if (m.has_quant) OF_TRY(m.ws.eff.reserve(size_t(m.n_params)));
    const float* theta = m.effective(m.params->data(), m.ws.eff);
    const uint64_t seed = c.has_seed ? c.seed : m.seed;
    UlrPlan plan;
    OF_TRY(plan_ulr_step(m, c, B, &plan));
    const std::vector<Group>& groups = plan.groups;
    const int NG = int(groups.size());
    const bool modules = plan.modules();
    auto unit = [&](int l) -> const PlanUnit& { return plan.units[size_t(l)]; };
    // the fused noisy kernel's bias of each noisy unit, one value per output (conv: per channel, over positions)
    std::vector<std::vector<float>> bias_row(static_cast<size_t>(L));
    for (int l = 0; l < L; l++) {
        const Unit& u = m.units[size_t(l)];
        if (!unit(l).noisy || u.recurrent()) continue;  // a recurrent unit adds its bias and noise in its recurrence
        bias_row[size_t(l)].resize(size_t(u.O));
        unit_bias_row(u, theta, bias_row[size_t(l)].data());
    }
    auto noise = [&](int l, int row0) {
        const int K = groups[size_t(unit(l).group)].K;
        NoiseSpec ns{seed,
                     step,
                     uint32_t(l),
                     c.sample_base * uint32_t(K) + uint32_t(row0),
                     c.antithetic,
                     c.density,
                     c.qmc ? uint32_t(c.antithetic ? K / 2 : K) : 0u};
        if (c.slice_total)
            ns.slice_local = uint32_t(K), ns.slice_total = c.slice_total, ns.slice_offset = c.slice_offset;
        ns.qmc_dim = unit(l).qmc_dim;
        return ns;
    };
    const bool plain_score = c.density == Density::Normal && c.score == Score::Exact;

    // 1. The clean forward of the B samples (plan.clean_end; batchNorm: as the paper's code keeps batch norm in
    //    evaluation mode in its noisy passes), then the last group start's linear part. Per unit: its pre-activation
    //    without bias (v) and its output (a); a recurrent group start also its input projections. Modules: the first
    //    module's forward with BP's tape, into its record cur (first_module_forward).
    auto& ws = m.ws;
    auto& cur = ws.first[ws.first_cur];
    const bool clean_loss = c.baseline == Baseline::Clean;
    const int clean_end = modules ? 0 : std::min(L, plan.clean_end + 1);
    ws.a.resize(size_t(L)), ws.v.resize(size_t(L)), ws.aux.resize(size_t(L));
    OF_TRY(ws.loss.reserve(size_t(B)));
    if (modules) OF_TRY(first_module_forward(m, theta, x, B, c, seed, step, plan.ends[0]));
    else OF_TRY(reserve_pass_scratch(m, B, ws.cols, ws.seq, ws.wexp));
    std::vector<Buffer>& clean_v = modules ? cur.v : ws.v;  // the group starts' clean pre-activations
    auto clean_in = [&](int l) { return l == 0 ? x : ws.a[size_t(l - 1)].data(); };
    for (int l = 0; l < clean_end; l++) {
        const Unit& u = m.units[size_t(l)];
        OF_TRY(ws.a[size_t(l)].reserve(size_t(B) * u.O));
        OF_TRY(ws.v[size_t(l)].reserve(size_t(B) * (u.recurrent() ? u.noise_width() : u.O)));
        if (u.recurrent()) OF_TRY(ws.aux[size_t(l)].reserve(size_t(B) * size_t(seq_aux_width(u))));
        const float* in = clean_in(l);
        float* v = ws.v[size_t(l)].data();
        float* a = ws.a[size_t(l)].data();
        const SeqCtx sq{ws.aux[size_t(l)].data(), ws.seq.data(), nullptr, nullptr};
        TrainCtx tc{u.skip_from >= 0 ? clean_in(u.skip_from) : nullptr,
                    1,
                    1,
                    int(c.sample_base),
                    seed,
                    step,
                    uint32_t(l),
                    true};
        // the last group's start, when the pass stops short of the output: only its pre-activation is read (a
        // recurrent one's input projections), not its output -- a whole clean recurrence saved
        const bool pre_only = l == plan.clean_end;
        if (u.recurrent() &&
            plan.starts_group(l))  // X W^T of every sample and step, (B T, F) x (G H, F)^T, shared by the copies
            k.gemm_nt(v, in, theta + u.w_off, B * u.q.T, u.q.G * u.q.H, u.q.F, 1.0f, 0.0f);
        if (pre_only && u.recurrent()) continue;
        unit_train_linear(k, u, theta, in, B, u.recurrent() ? a : v, ws.cols.data(), &sq, tc);
        if (pre_only) continue;
        if (!u.recurrent()) std::copy(v, v + int64_t(B) * u.O, a);
        unit_bias_act(k, u, theta, a, a, B);
        if (u.ends_residual()) residual_add(k, u, a, clean_in(u.skip_from), B, 1);
    }
    if (clean_loss)
        k.loss_forward(ws.loss.data(), ws.a[size_t(L - 1)].data(), y.labels, y.values, B, C, 1, m.loss, m.groups);
    if (c.baseline == Baseline::Running)  // earlier steps only: independent of this step's noise
        std::fill(ws.loss.data(), ws.loss.data() + B, m.has_running ? float(m.running_loss) : 0.0f);

    // G of each group's first unit (B rows of its noise width), and the block partials of every other noisy unit
    std::vector<int64_t> g_off(size_t(NG) + 1, 0);
    for (int gi = 0; gi < NG; gi++)
        g_off[size_t(gi) + 1] =
            g_off[size_t(gi)] + int64_t(B) * m.units[size_t(groups[size_t(gi)].start)].noise_width();
    Buffer& g_sum = modules ? cur.g : ws.g;  // modules: the first module's backward may read it a step later
    OF_TRY(g_sum.reserve(size_t(std::max<int64_t>(g_off[size_t(NG)], 1))));
    const int S = plan.block_samples();
    const int T = (B + S - 1) / S;
    int64_t partial_size = 0;
    std::vector<int64_t> partial_off(size_t(L), -1);
    for (int l = 0; l < L; l++)
        if (plan.per_row(m, l)) partial_off[size_t(l)] = partial_size, partial_size += m.units[size_t(l)].n_par;
    OF_TRY(ws.partials.reserve(size_t(T) * size_t(std::max<int64_t>(partial_size, 1))));
    float* partials = ws.partials.data();
    std::vector<double> loss_sum(size_t(T), 0.0), sg_part(c.learn_sigma ? size_t(T) * L : 0, 0.0);
    std::vector<double> var_part(c.auto_copies ? size_t(T) * L : 0, 0.0);
    std::vector<int64_t> correct(size_t(T), 0);
    std::vector<Status> status(static_cast<size_t>(T));
    float* hook_loss = nullptr;

    // A noisy unit whose output only a pooling unit reads runs fused with it, its linear part included
    // (pool_chunk_rows): its B K rows of output never make the round trip through memory. (Not with modules: BP
    // inside the next module reads the unit's whole output.)
    std::vector<char> pool_after(size_t(L), 0);
    for (int l = 0; l + 1 < L; l++) {
        const Unit &u = m.units[size_t(l)], &p = m.units[size_t(l + 1)];
        bool read_as_skip = false;
        for (const Unit& j : m.units) read_as_skip = read_as_skip || j.skip_from == l + 1;
        pool_after[size_t(l)] = !modules && unit(l).noisy && !u.recurrent() && u.skip_from < 0 && p.pool() &&
                                p.skip_from < 0 && !read_as_skip;
    }

    // 2. One block of samples through every group: forward; then (unless forward_only) losses, row weights, G rows
    //    and partial gradients.
    auto block = [&](int t, bool forward_only) {
        BlockScratch& sc = thread_scratch<BlockScratch>();
        const int b0 = t * S, s = std::min(S, B - b0);
        Status& st = status[size_t(t)];
        for (int gi = 0; gi < NG && st.ok(); gi++) {
            const Group& g = groups[size_t(gi)];
            const int K = g.K, rows = s * K, r0 = b0 * K;
            const Unit& u0 = m.units[size_t(g.start)];
            st = sc.reserve(m, plan, g.start, rows);
            if (!st.ok()) return;
            const BpMode bm{BpMode::Stats::Fixed, seed, step, int(c.sample_base) + b0, K};  // modules: BP's rows
            // a unit's input: the replicated clean input (the group's first unit without the shared prefix), or the
            // previous unit's rows; a block's skip source: the clean prefix (row r / K) when it starts at or before
            // the group's first unit, else the group's rows
            if (!plan.shared)
                for (int r = 0; r < rows; r++) {
                    const float* src = clean_in(g.start) + int64_t(b0 + r / K) * u0.I;
                    std::copy(src, src + u0.I, sc.x_rep.data() + int64_t(r) * u0.I);
                }
            auto input = [&](int l) {
                return l == g.start ? (plan.shared ? nullptr : sc.x_rep.data()) : sc.a[size_t(l - 1)].data();
            };
            auto skip_src = [&](int s0, int* rep) {
                *rep = s0 <= g.start ? K : 1;
                return s0 <= g.start ? clean_in(s0) + int64_t(b0) * m.units[size_t(s0)].I : sc.a[size_t(s0 - 1)].data();
            };
            auto E = [&](int l) { return c.store_noise ? sc.e[size_t(l)].data() : nullptr; };
            for (int l = g.start; l < L; l++) {
                const Unit& u = m.units[size_t(l)];
                float* a = sc.a[size_t(l)].data();
                const bool noisy = unit(l).noisy && l < g.end;
                if (modules && !noisy) {  // clean, keeping BP's tape
                    bp_range_forward(m, theta, sc.tape(), bm, l, l + 1, input(l), rows);
                    continue;
                }
                TrainCtx tc{nullptr, 1, K, int(c.sample_base) + b0, seed, step, uint32_t(l), false};
                if (u.skip_from >= 0) tc.skip = skip_src(u.skip_from, &tc.skip_rep);
                if (u.recurrent()) {  // noise on every gate at every step, inside the recurrence
                    if (noisy) k.noise_fill(sc.e[size_t(l)].data(), rows, u.noise_width(), noise(l, r0));
                    const bool xw = l == g.start && plan.shared;
                    seq_forward(kc, u, theta, input(l), rows, a, sc.aux[size_t(l)].data(),
                                noisy ? sc.e[size_t(l)].data() : nullptr, unit(l).scale.ch.data(), sc.seq.data(),
                                xw ? clean_v[size_t(l)].data() + int64_t(b0) * u.noise_width() : nullptr, xw ? K : 1);
                    unit_bias_act(k, u, theta, a, a, rows);
                } else {
                    const bool start = l == g.start && plan.shared;  // K copies from the clean pre-activation (no bias)
                    const int rep = start ? K : 1;
                    const float* pre = start ? clean_v[size_t(l)].data() + int64_t(b0) * u.O : a;
                    const SeqCtx sq{nullptr, sc.seq.data(), nullptr, nullptr};
                    const bool fused = noisy && pool_after[size_t(l)];
                    if (!noisy) {
                        unit_train_linear(kc, u, theta, input(l), rows, a, sc.cols.data(), &sq, tc);
                        unit_bias_act(k, u, theta, a, a, rows);
                    } else {  // linear part, noise and activation; fused, with the pooling after it, a chunk of rows
                              // at a time in a's first rows (which nothing else reads)
                        const int cr = fused ? pool_chunk_rows(u.O, rep) : rows;
                        for (int r = 0; r < rows; r += cr) {
                            const int n = std::min(cr, rows - r);
                            if (!start)
                                unit_train_linear(kc, u, theta, input(l) + int64_t(r) * u.I, n, a, sc.cols.data(), &sq,
                                                  tc);
                            k.noisy_bias_act_forward(a, E(l) ? E(l) + int64_t(r) * u.O : nullptr,
                                                     start ? pre + int64_t(r / K) * u.O : a, bias_row[size_t(l)].data(),
                                                     unit(l).scale.row.data(), n, u.O, rep, u.act, u.alpha,
                                                     noise(l, r0 + r));
                            if (!fused) continue;
                            const Unit& p = m.units[size_t(l + 1)];
                            float* pooled = sc.a[size_t(l + 1)].data() + int64_t(r) * p.O;
                            unit_train_linear(kc, p, theta, a, n, pooled, sc.cols.data(), &sq, tc);
                            unit_bias_act(k, p, theta, pooled, pooled, n);
                        }
                        if (fused) l++;  // the pooling unit has run (and no residual block ends here)
                    }
                }
                if (u.ends_residual()) residual_add(k, u, a, tc.skip, rows, tc.skip_rep);
            }
            const float* out = sc.a[size_t(L - 1)].data();
            if (forward_only) {
                std::copy(out, out + int64_t(rows) * C, ws.outputs.data() + (g.out0 + r0) * C);
                continue;
            }
            int64_t hits = 0;
            loss_sum[size_t(t)] +=
                block_losses(m, y, out, b0, s, K, r0, hook_loss ? hook_loss + g.out0 : nullptr, sc.loss.data(), &hits);
            correct[size_t(t)] += hits;
            float* w = sc.w.data();
            k.lr_row_weights(w, sc.loss.data(), ws.loss.data() + b0, s, K, c.baseline, c.antithetic,
                             1.0f / float(int64_t(B) * K));

            for (int l = g.start; l < g.end; l++) {  // the group's noisy units: their reductions
                const Unit& u = m.units[size_t(l)];
                if (!unit(l).noisy) continue;
                const int nw = u.noise_width();
                float* e = sc.e[size_t(l)].data();  // kept from the forward, or regenerated now: the same bits
                if (!c.store_noise && !u.recurrent()) k.noise_fill(e, rows, nw, noise(l, r0));
                if (c.learn_sigma) {  // d/d(log sigma): sum_r w[r] sum_j (e s(e) - 1), with the density's exact score
                    double acc = 0.0;
                    for (int r = 0; r < rows; r++)
                        acc += double(w[r]) * dev::sigma_grad_row(e + int64_t(r) * nw, nw, c.density);
                    sg_part[size_t(t) * L + size_t(l)] = acc;
                }
                if (!plain_score) k.score_transform(e, int64_t(rows) * nw, c.density, c.score);  // e -> s(e)
                if (c.auto_copies &&
                    l == g.start) {  // this block's share of the estimate's variance (see record_layer_var)
                    const int I = u.I;
                    double acc = 0.0;
                    for (int b = 0; b < s; b++) {
                        const float* in = clean_in(l) + int64_t(b0 + b) * I;
                        double an = 0.0;
                        for (int i = 0; i < I; i++) an += double(in[i]) * in[i];
                        for (int kk = 0; kk < K; kk++) {
                            const int r = b * K + kk;
                            double sn = 0.0;
                            for (int j = 0; j < nw; j++) sn += double(e[int64_t(r) * nw + j]) * e[int64_t(r) * nw + j];
                            acc += double(w[r]) * w[r] * sn * an;
                        }
                    }
                    var_part[size_t(t) * L + size_t(l)] = acc / (double(unit(l).scale.sigma) * unit(l).scale.sigma);
                }
                divide_scores(e, rows, unit(l).scale);
                const float alpha = unit(l).scale.alpha;
                if (plan.via_g(l)) k.lr_copy_sum(g_sum.data() + g_off[size_t(gi)] + int64_t(b0) * nw, w, e, s, K, nw);
                if (partial_off[size_t(l)] < 0) continue;
                auto dest = [&](int j) { return partials + int64_t(t) * partial_size + partial_off[size_t(j)]; };
                float* p = dest(l);
                if (u.recurrent())
                    seq_reduce(k, u, input(l), rows, sc.aux[size_t(l)].data(), e, w, alpha, p, sc.wexp.data(),
                               !plan.via_g(l));
                else
                    unit_lr_reduce(k, u, theta, input(l), rows, e, w, alpha, p, p + int64_t(u.gemm_cols()) * u.fan_in(),
                                   sc.cols.data(), sc.wexp.data());
                if (modules && l != g.start) {  // BP inside the module below this boundary, from its estimate
                    const int ms = *(std::lower_bound(plan.ends.begin(), plan.ends.end(), l + 1) - 1);
                    module_backward(m, theta, sc.tape(), bm, ms, l + 1, e, w, alpha, rows, sc.a[size_t(ms - 1)].data(),
                                    dest, nullptr);
                }
            }
        }
    };
    const int64_t cycles = plan.rows / std::max(1, T) * m.max_width() * 8;
    if (hook) {  // every group's rows forward once, the hook answers per group, then a second pass (same bits) reduces
        OF_TRY(ws.outputs.reserve(size_t(plan.rows) * C));
        OF_TRY(ws.hook_loss.reserve(size_t(plan.rows)));
        ThreadPool::instance().parallel_for(
            T, [&](int t) { block(t, true); }, cycles);
        OF_CHECK(!ThreadPool::cancelled(), Abort, "training was cancelled");  // never hand JS a half-computed step
        for (const Status& st : status) OF_TRY(st);
        for (const Group& g : groups)
            OF_TRY((*hook)(ws.outputs.data() + g.out0 * C, y, B * g.K, C, g.K, ws.hook_loss.data() + g.out0));
        hook_loss = ws.hook_loss.data();
        for (int64_t r = 0; r < plan.rows; r++)
            OF_CHECK(std::isfinite(hook_loss[r]), Data,
                     "the loss function returned a non-finite value for row " + std::to_string(r));
    }
    // Modules pipelined: task 0 reduces the previous step's first module (its weights have not moved since its
    // forward, and this step's forward does not read its gradient) while the other tasks run this step's blocks.
    auto& prev = ws.first[1 - ws.first_cur];
    const bool pipelined = modules && c.pipeline && c.training;
    const int overlap = pipelined && prev.pending && prev.end == groups[0].start + 1 ? 1 : 0;
    const float alpha0 = unit(groups[0].start).scale.alpha;
    Status first_status;
    auto first_backward = [&](Model::Workspace::FirstModule& f) {
        first_status = first_module_backward(m, theta, f, pipelined ? f.x.data() : x, alpha0, seed);
    };
    ThreadPool::instance().parallel_for(
        T + overlap, [&](int t) { t < overlap ? first_backward(prev) : block(t - overlap, false); }, cycles);
    // cancelled: the blocks were skipped, nothing is summed, and a pipeline keeps its state (the previous step pending)
    OF_CHECK(!ThreadPool::cancelled(), Abort, "training was cancelled");
    for (const Status& st : status) OF_TRY(st);

    // 3. Gradients: partials summed in block order, one concurrent task per unit; then each group's first unit from G
    //    over B rows (clean_rows_gradient), with every thread on its GEMMs; modules: the first module's backward.
    float* grads = m.grads.data();
    auto sum_partials = [&](int l) {
        const Unit& u = m.units[size_t(l)];
        if (partial_off[size_t(l)] < 0) return;
        const int64_t skip = plan.via_g(l) && u.recurrent() ? int64_t(u.q.G) * u.q.H * u.q.F : 0;  // W: from G
        // modules: a recurrent first boundary's U and b wait in the first module's record for its backward
        float* g = modules && skip ? cur.ub.data() : grads + u.w_off + skip;
        sum_block_partials(g, partials, partial_off[size_t(l)] + skip, partial_size, T, u.n_par - skip);
    };
    if (c.concurrent) ThreadPool::instance().parallel_for(L, sum_partials, int64_t(T) * partial_size);
    else
        for (int l = 0; l < L; l++) sum_partials(l);
    for (int l = 0; l < L && !modules; l++)
        if (plan.via_g(l))
            clean_rows_gradient(k, m.units[size_t(l)], theta, clean_in(l), B,
                                g_sum.data() + g_off[size_t(unit(l).group)], unit(l).scale.alpha,
                                grads + m.units[size_t(l)].w_off, ws.cols.data(), ws.wexp.data());
    if (modules && !pipelined) first_backward(cur);
    OF_TRY(first_status);
    if (pipelined) {  // this step's first module waits for the next step; none reduced: no gradient for it yet
        const Unit& u0 = m.units[size_t(groups[0].start)];
        if (!overlap) std::fill(grads, grads + u0.w_off + u0.n_par, 0.0f);  // its last tensors end its slab range
        prev.pending = false;
        cur.pending = true;
        ws.first_cur = 1 - ws.first_cur;
    }
    finish_stats(m, c, loss_sum, correct, int(plan.rows), stats);
    if (c.learn_sigma || c.auto_copies) {  // per layer with parameters
        std::vector<double> sg(size_t(m.param_units()), 0.0), var(size_t(m.param_units()), 0.0);
        for (int t = 0; t < T; t++)
            for (int l = 0; l < L; l++)
                if (unit(l).param >= 0) {
                    if (c.learn_sigma) sg[size_t(unit(l).param)] += sg_part[size_t(t) * L + size_t(l)];
                    if (c.auto_copies) var[size_t(unit(l).param)] += var_part[size_t(t) * L + size_t(l)];
                }
        if (c.learn_sigma) stats->sigma_grad = sg;
        if (c.auto_copies) record_layer_var(m, c, plan.copies, std::move(var), stats);
    }
    return {};
}

}  // namespace of
