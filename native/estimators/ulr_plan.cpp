// The plan of a ULR step (ulr_plan.h): its groups and their copies (layer-wise, copies 'auto' and its cost model),
// per unit its group, noise and noise scale, and the floats a step holds (step_memory). No forward and no reduction:
// ulr.cpp and device/ulr_groups.cpp run the plan.
#include "estimators/ulr_plan.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <utility>

#include "model/train.h"
#include "model/units.h"

namespace of {
namespace {

// The flops one row costs in unit u's forward (the cost model of copies 'auto').
double unit_row_flops(const Unit& u) {
    if (u.recurrent()) return double(u.q.T) * u.q.G * u.q.H * (u.q.F + (u.q.has_u ? u.q.H : 0));
    if (u.param()) return double(u.gemm_rows(1)) * u.fan_in() * u.gemm_cols();
    return double(u.O);
}

// Copies 'auto': the cost of one copy of param unit p (its noise, then every unit after it), and the clamp of an
// allocation.
std::vector<double> copy_costs(const Model& m) {
    std::vector<double> cost;
    for (size_t l = 0; l < m.units.size(); l++) {
        if (!m.units[l].param()) continue;
        double c = double(m.units[l].noise_width());
        for (size_t j = l + 1; j < m.units.size(); j++) c += unit_row_flops(m.units[j]);
        cost.push_back(c);
    }
    return cost;
}

int clamp_copies(const UlrConfig& c, double k) {
    const int ki = int(std::min(4096.0, std::max(2.0, std::round(k))));
    return c.antithetic ? std::max(2, ki / 2 * 2) : ki;
}

// The param-unit index (the order of the layers with parameters) of each group's first unit, frozen units skipped,
// with the param-unit index after its last unit.
std::vector<std::pair<int, int>> group_ranges(const Model& m, const UlrConfig& c) {
    const int P = m.param_units();
    std::vector<int> starts;
    if (!c.layerwise) starts.push_back(0);
    else if (c.blocks.empty())
        for (int p = 0; p < P; p++) starts.push_back(p);
    else
        for (int p = 0, i = 0; i < int(c.blocks.size()); p += c.blocks[size_t(i)], i++) starts.push_back(p);
    std::vector<std::pair<int, int>> out;
    for (size_t i = 0; i < starts.size(); i++) {
        const int end = i + 1 < starts.size() ? starts[i + 1] : P;
        const int p = std::max(starts[i], m.frozen);  // frozen units stay clean
        if (p < end) out.push_back({p, end});
    }
    return out;
}

// The groups in units (kl: layer-wise copies), out0 left 0: a group runs from its first param unit to the next
// group's first one; local modules: one group from the first boundary on
std::vector<Group> plan_groups(const Model& m, const UlrConfig& c, const std::vector<int>& kl,
                               const std::vector<int>& ends) {
    if (!ends.empty()) return {{ends[0] - 1, int(m.units.size()), c.copies, 0}};
    std::vector<int> unit_of;  // param-unit index -> unit index
    for (int l = 0; l < int(m.units.size()); l++)
        if (m.units[size_t(l)].param()) unit_of.push_back(l);
    std::vector<Group> g;
    for (auto [p, end] : group_ranges(m, c))
        g.push_back({unit_of[size_t(p)], end < int(unit_of.size()) ? unit_of[size_t(end)] : int(m.units.size()),
                     c.layerwise ? kl[size_t(p)] : c.copies, 0});
    return g;
}

// unit u's noise scale; pi: its param-unit index (the per-layer lists' index)
NoiseScale noise_scale(const Unit& u, const UlrConfig& c, size_t pi) {
    NoiseScale s;
    s.sigma = c.sigma.size() == 1 ? c.sigma[0] : c.sigma[pi];
    s.per_channel = pi < c.sigma_channels.size() && !c.sigma_channels[pi].empty();
    s.alpha = s.per_channel ? 1.0f : 1.0f / s.sigma;
    s.ch.assign(size_t(noise_channels(u)), s.sigma);
    if (s.per_channel)
        for (size_t i = 0; i < s.ch.size(); i++) s.ch[i] = c.sigma_channels[pi][i % c.sigma_channels[pi].size()];
    s.row.resize(size_t(u.noise_width()));
    for (size_t i = 0; i < s.row.size(); i++) s.row[i] = s.ch[i % s.ch.size()];
    return s;
}

// Layer-wise copies per layer with parameters: given, or with copies 'auto' the Neyman allocation over the groups,
// K_g ~ sqrt(V_g / c_g) for the cost of `copies` each (V_g: the running per-copy variance of the group's first
// layer's estimate, c_g: the cost of one copy), uniform until there are variances. A group's layers share its K.
std::vector<int> layerwise_copies(const Model& m, const UlrConfig& c) {
    const int P = m.param_units();
    std::vector<int> kl = c.copies_per_layer.empty() ? std::vector<int>(size_t(P), c.copies) : c.copies_per_layer;
    const auto ranges = group_ranges(m, c);
    if (c.auto_copies && m.layer_var.size() == size_t(P)) {
        const std::vector<double> cost = copy_costs(m);
        double uniform = 0.0, norm = 0.0;
        for (auto [p, end] : ranges) {
            uniform += double(c.copies) * cost[size_t(p)];
            norm += std::sqrt(std::max(m.layer_var[size_t(p)], 1e-30) * cost[size_t(p)]);
        }
        for (auto [p, end] : ranges)
            kl[size_t(p)] =
                clamp_copies(c, uniform * std::sqrt(std::max(m.layer_var[size_t(p)], 1e-30) / cost[size_t(p)]) / norm);
    }
    for (auto [p, end] : ranges) std::fill(kl.begin() + p + 1, kl.begin() + end, kl[size_t(p)]);
    return kl;
}

// The most copies any step can give each layer: layerwise_copies, or with copies 'auto' the bound of any allocation
// from any variances (step_memory sizes a step with it).
std::vector<int> layerwise_copies_bound(const Model& m, const UlrConfig& c) {
    std::vector<int> kl = layerwise_copies(m, c);
    if (!c.auto_copies) return kl;
    // K_g = U sqrt(V_g / c_g) / sum_j sqrt(V_j c_j) <= U sqrt(V_g / c_g) / sqrt(V_g c_g) = U / c_g,
    // U = copies sum_j c_j
    const std::vector<double> cost = copy_costs(m);
    double uniform = 0.0;
    for (auto [p, end] : group_ranges(m, c)) uniform += double(c.copies) * cost[size_t(p)];
    for (size_t p = 0; p < kl.size(); p++)
        kl[p] = std::max({kl[p], c.copies, clamp_copies(c, std::ceil(uniform / cost[p]))});
    return kl;
}

}  // namespace

std::vector<int> module_unit_ends(const Model& m, const std::vector<int>& modules) {
    std::vector<int> after;  // unit index + 1 of each layer with parameters
    for (int l = 0; l < int(m.units.size()); l++)
        if (m.units[size_t(l)].param()) after.push_back(l + 1);
    std::vector<int> ends;
    for (int e : modules) ends.push_back(after[size_t(e - 1)]);
    return ends;
}

int noise_channels(const Unit& u) { return u.recurrent() ? u.q.G * u.q.H : u.gemm_cols(); }

void divide_scores(float* s, int64_t rows, const NoiseScale& ns) {
    if (!ns.per_channel) return;
    const int64_t n = int64_t(ns.row.size());
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++) s[r * n + i] /= ns.row[size_t(i)];
}

uint32_t qmc_dim0(const Model& m, int l) {
    uint32_t d = 0;
    for (int j = 0; j < l; j++)
        if (m.units[size_t(j)].param()) d += uint32_t(m.units[size_t(j)].noise_width());
    return d;
}

void record_layer_var(Model& m, const UlrConfig& c, const std::vector<int>& kl, std::vector<double> var,
                      StepStats* stats) {
    const size_t P = var.size();
    for (size_t p = 0; p < P; p++) var[p] *= double(kl[p]);  // per copy: K x the variance of this step's estimate
    stats->layer_var = var;
    if (c.training) {
        if (m.layer_var.size() != P) m.layer_var = var;
        else
            for (size_t p = 0; p < P; p++) m.layer_var[p] = 0.9 * m.layer_var[p] + 0.1 * var[p];
    }
    stats->copies.assign(kl.begin(), kl.end());
}

UlrPlan ulr_plan(const Model& m, const UlrConfig& c, int B, const std::vector<int>& kl) {
    const int L = int(m.units.size());
    UlrPlan p;
    p.copies = kl;
    if (!c.modules.empty()) p.ends = module_unit_ends(m, c.modules);
    p.groups = plan_groups(m, c, kl, p.ends);
    p.shared = c.shared_prefix || p.modules();  // modules: always (device/ulr_groups.cpp: the same estimate)
    p.units.resize(size_t(L));
    for (size_t gi = 0; gi < p.groups.size(); gi++) {
        Group& g = p.groups[gi];
        g.out0 = p.rows, p.rows += int64_t(B) * g.K;
        p.kmax = std::max(p.kmax, g.K);
        for (int l = g.start; l < g.end; l++) p.units[size_t(l)].group = int(gi);
    }
    for (int e : p.ends) p.units[size_t(e - 1)].noisy = true;
    for (int l = 0, pi = 0; l < L; l++) {
        const Unit& u = m.units[size_t(l)];
        PlanUnit& pu = p.units[size_t(l)];
        if (c.qmc) pu.qmc_dim = qmc_dim0(m, l);
        if (!u.param()) continue;
        pu.param = pi++;
        pu.noisy = pu.noisy || (!p.modules() && pu.group >= 0);
        if (pu.noisy) pu.scale = noise_scale(u, c, size_t(pu.param));
    }
    const bool clean_all = c.baseline == Baseline::Clean || m.uses_batch_stats || p.groups.empty();
    p.clean_end = clean_all ? L : p.groups.back().start;
    return p;
}

Status plan_ulr_step(const Model& m, const UlrConfig& c, int B, UlrPlan* plan) {
    *plan = ulr_plan(m, c, B, c.layerwise ? layerwise_copies(m, c) : std::vector<int>());
    OF_CHECK(!plan->groups.empty(), Config, "the model has no layer with parameters to train");
    OF_CHECK(plan->rows <= int64_t(INT_MAX) / 4, Shape, "batch x copies is too large");
    return {};
}

// The floats a ULR step holds (step_memory), in blocks of S samples x kmax copies on each busy thread, and the
// blocks' partial gradients. Plain (ulr.cpp): the clean B-row forward (with the last start's pre-activation), G, and a
// block's scratch: per unit from the first start on its output, noise and recurrent aux, then losses, row weights,
// patches, step weights, state scratch and the replicated input (sharedPrefix false). Modules (ulr_modules.cpp): the
// first module's B-row record (two with pipelining) with its boundary's pre-activation, G and a recurrent boundary's
// U and b, and its backward's scratch; a block holds the later modules' BP tape and the boundaries' noise; with
// batchNorm a clean B-row forward for its statistics, and a frozen prefix's clean forward.
void ulr_step_floats(const Model& m, const UlrConfig& c, int B, double threads, StepMemory* r, double* gemm_rows) {
    const int L = int(m.units.size());
    const UlrPlan p = ulr_plan(m, c, B, c.layerwise ? layerwise_copies_bound(m, c) : std::vector<int>());
    if (p.groups.empty()) return;
    const int S = std::min(p.block_samples(), B), s0 = p.groups.front().start;
    const double b = B, blocks = std::ceil(b / S), rows = double(S) * p.kmax;
    // A thread's block scratch outlives the step, and the pool hands a task to whichever thread is free: once a step
    // has two tasks or more (its blocks; a pipelined first module's backward) every thread may come to hold one.
    const double tasks = blocks + (p.modules() && c.pipeline ? 1.0 : 0.0), busy = tasks > 1.0 ? threads : 1.0;
    *gemm_rows = std::max(b, rows);
    double partial = 0.0, block = 0.0;  // block: the floats of one of its rows
    for (int l = 0; l < L; l++) {
        const Unit& u = m.units[size_t(l)];
        if (p.per_row(m, l)) partial += double(u.n_par);
        if (p.units[size_t(l)].noisy) block += double(u.noise_width());
    }
    r->partials += blocks * partial;
    const Unit& u0 = m.units[size_t(s0)];
    const double aux0 = u0.recurrent() ? double(seq_aux_width(u0)) : 0.0;
    if (p.modules()) {
        const double sets = c.pipeline ? 2.0 : 1.0;
        r->activations +=
            sets * (b * (tape_floats(m, 0, s0 + 1, false) + 2.0 * u0.noise_width() + (c.pipeline ? m.inputs : 0)) +
                    double(u0.n_par));
        // the first module's backward scratch: the caller's, and pipelined on any thread that ran that task
        r->workspace +=
            (c.pipeline ? std::max(sets, threads) : 1.0) * b * (tape_floats(m, 0, 0, true) + double(m.max_positions()));
        block += tape_floats(m, s0 + 1, L, true) + u0.O + aux0 + 2.0 + double(m.max_positions()) +
                 (m.seq_scratch_width() > 0 ? 0.0 : 1.0);
        r->activations += busy * rows * block + b;
        if (m.uses_batch_stats) bp_floats(m, b, r);
        for (int l = 0; l < m.frozen_end(); l++) r->activations += 2.0 * b * m.units[size_t(l)].O;
        return;
    }
    for (int l = 0; l < std::min(L, p.clean_end + 1); l++) {
        const Unit& u = m.units[size_t(l)];
        r->activations += b * (u.O + (u.recurrent() ? double(u.noise_width() + seq_aux_width(u)) : u.O));
    }
    for (int l = s0; l < L; l++) {
        const Unit& u = m.units[size_t(l)];
        block += u.O + (u.recurrent() ? double(seq_aux_width(u)) : 0.0);
    }
    double x_rep = 0.0;
    for (const Group& g : p.groups) {
        r->workspace += b * m.units[size_t(g.start)].noise_width();  // G
        x_rep = std::max(x_rep, p.shared ? 0.0 : double(m.units[size_t(g.start)].I));
    }
    const double pw = double(std::max<int64_t>(m.patch_width(), 1)), pos = double(m.max_positions());
    const double seq = double(std::max<int64_t>(m.seq_scratch_width(), 1));
    r->activations += busy * rows * block;
    r->workspace += busy * rows * (2.0 + pw + pos + seq + x_rep) + b * (1.0 + pw + pos + seq);
}

}  // namespace of
