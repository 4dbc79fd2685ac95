// Local module training (computation-flow rearrangement; Jiang et al., ICLR 2024, section 5).
// The units are cut into modules [0, e_0), [e_0, e_1), ..., [., L), each ending at a unit with parameters, its
// boundary. Noise goes only on each boundary's pre-activation (V~ = V + sigma E there, clean elsewhere; a recurrent
// boundary: every gate at every step), and the module receives the likelihood-ratio estimate of the loss gradient
// there,
//     D[r] = w[r] s(E[r]) / sigma        (w: the ULR row weights, (l - baseline) / (B K)),
// then runs BP only inside itself, from D down to its input (estimators/bp.h, the one BP of every layer kind). No
// backward pass crosses a boundary, so the modules' reductions are independent of each other: the later layers'
// block sums run as concurrent tasks, and the first module's backward can overlap the next step's forward
// (pipelining; its gradient is then one step stale). A boundary inside a residual or concat block would cut its
// skip path: validate.cpp refuses it. batchNorm normalizes every pass with the clean batch's statistics, held
// constant (ULR's rule, ulr.cpp); dropout masks are per sample, shared by its copies.
//
// A one-layer module is exactly a plain ULR layer (same noise, same reductions); one module holding every layer
// is BP driven by an LR estimate at the output. The first module's input is clean, so it runs once per sample
// (B rows) and its boundary estimate is summed over copies first, G = sum_k w s(E): the shared-prefix rule of
// docs/method.md 3.1 (a recurrent boundary's W from G against its inputs; its U and b, which see each copy's
// states, from the copies). The other modules run in blocks of whole samples like ulr.cpp: forward, losses, row
// weights and each module's backward while the block is in cache, partial gradients summed in block order.
// Test hook (exact_boundary): D is the exact gradient at each boundary (no noise, one copy), which must give BP.
#include <algorithm>
#include <climits>
#include <cmath>

#include "core/shape.h"
#include "core/thread_pool.h"
#include "core/thread_scratch.h"
#include "estimators/blocks.h"
#include "estimators/bp.h"
#include "estimators/estimator.h"
#include "model/units.h"

namespace of {
namespace {

// Per-thread scratch of a block's rows (or the first module's B rows): BP's tape of the units it runs, the
// boundaries' noise (e, per unit), losses, row weights, the running baseline per sample.
struct ModuleScratch {
    std::vector<Buffer> v, a, aux, inner, sum, pending, e;
    Buffer d0, d1, cols, seq, dP, wexp, loss, w, running;
    BpTape tape() { return {v, a, aux, inner, sum, pending, d0, d1, cols, seq, dP, wexp}; }
};
struct FirstScratch : ModuleScratch {};  // the first module's backward: its own, it may run between a thread's blocks

// The first module's tape: its records kept in the model (pipelining reduces them a step later), scratch per thread.
BpTape first_tape(Model::Workspace::FirstModule& f, ModuleScratch& sc) {
    return {f.v, f.a, f.aux, f.inner, f.sum, sc.pending, sc.d0, sc.d1, sc.cols, sc.seq, sc.dP, sc.wexp};
}

// A boundary's pre-activation without bias (its noise comes next): its linear part, batchNorm's with the statistics
// it holds (the clean batch's).
void boundary_linear(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, float* out,
                     float* cols) {
    unit_train_linear(k, u, theta, in, rows, out, cols, nullptr, TrainCtx{});
}

// BP inside module [s, e) below its boundary: from D = alpha diag(w) S at the boundary's pre-activation (w nullptr:
// 1) to the boundary's input, then through the units before it. x: the module's input rows; dest(l): where unit l's
// gradient goes; dx (nullptr: not wanted): the gradient at x.
void backward_inside(const Model& m, const float* theta, const BpTape& t, const BpMode& mode, int s, int e,
                     const float* S, const float* w, float alpha, int rows, const float* x,
                     const std::function<float*(int)>& dest, float* dx) {
    if (e - 1 == s && !dx) return;
    const Unit& top = m.units[size_t(e - 1)];
    const int nw = top.noise_width();
    float* D = top.recurrent() ? t.dP.data() : t.d1.data();
    for (int r = 0; r < rows; r++) {
        const float f = (w ? w[r] : 1.0f) * alpha;
        const float* sr = S + int64_t(r) * nw;
        float* dr = D + int64_t(r) * nw;
        for (int o = 0; o < nw; o++) dr[o] = f * sr[o];
    }
    const float* in = e - 1 == s ? x : t.a[size_t(e - 2)].data();
    bp_input_gradient(m, theta, t, mode, e - 1, in, rows, D, e - 1 == s ? dx : t.d0.data());
    if (e - 1 > s) bp_range_backward(m, theta, t, mode, s, e - 1, x, rows, dest, dx);
}

// Boundary unit u's LR reduction into g: dW = alpha (diag(w) S)^T A in its GEMM view, db = alpha colsum(diag(w) S)
// (w nullptr: 1); a recurrent unit's summed over its steps (with_w false: U and b only).
void boundary_reduce(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows,
                     const float* aux, const float* S, const float* w, float alpha, float* g, float* cols, float* wexp,
                     bool with_w = true) {
    if (u.recurrent()) seq_reduce(k, u, in, rows, aux, S, w, alpha, g, wexp, with_w);
    else unit_lr_reduce(k, u, theta, in, rows, S, w, alpha, g, g + int64_t(u.gemm_cols()) * u.fan_in(), cols, wexp);
}

// The test hook: BP's forward, then the exact gradient at every boundary into each module's own backward, chained
// from the loss down.
Status exact_boundary_gradients(Model& m, const float* x, const Targets& y, int B, const UlrConfig& c,
                                StepStats* stats) {
    const KernelTable& k = *m.k;
    const int L = int(m.units.size());
    const std::vector<int> ends = module_unit_ends(m, c.modules);
    for (int e : ends)
        OF_CHECK(!m.units[size_t(e - 1)].recurrent(), Config,
                 "the exact boundary test hook needs boundaries at layers that are not recurrent");
    auto& ws = m.ws;
    if (m.has_quant) OF_TRY(ws.eff.reserve(size_t(m.n_params)));
    const float* theta = m.effective(m.params->data(), ws.eff);
    const BpTape t = workspace_tape(ws);
    OF_TRY(bp_tape_reserve(m, t, B, 0, L));
    OF_TRY(ws.wexp.reserve(size_t(B) * size_t(m.max_positions())));
    OF_TRY(ws.loss.reserve(size_t(B)));
    Buffer D, dA;  // the exact boundary gradient; the gradient at a module's output
    OF_TRY(D.reserve(size_t(B) * size_t(m.max_width())));
    OF_TRY(dA.reserve(size_t(B) * size_t(m.max_width())));
    const BpMode mode{BpMode::Stats::Batch, m.seed, m.step, 0, 1};
    bp_range_forward(m, theta, t, mode, 0, L, x, B);
    const float* out = ws.a[size_t(L - 1)].data();
    stats->correct = k.loss_forward(ws.loss.data(), out, y.labels, y.values, B, m.outputs, 1, m.loss, m.groups);
    double sum = 0.0;
    for (int r = 0; r < B; r++) sum += ws.loss.data()[r];
    stats->loss = sum / B, stats->rows = B;
    k.loss_backward(dA.data(), out, y.labels, y.values, B, m.outputs, m.loss, m.groups);
    auto dest = [&](int l) { return m.grads.data() + m.units[size_t(l)].w_off; };
    for (int mod = int(ends.size()) - 1; mod >= 0; mod--) {
        const int s = mod == 0 ? 0 : ends[size_t(mod - 1)], e = ends[size_t(mod)];
        const Unit& top = m.units[size_t(e - 1)];
        k.act_backward(D.data(), dA.data(), ws.v[size_t(e - 1)].data(), ws.a[size_t(e - 1)].data(), int64_t(B) * top.O,
                       top.act, top.alpha);
        const float* in = e - 1 == 0 ? x : ws.a[size_t(e - 2)].data();
        boundary_reduce(k, top, theta, in, B, nullptr, D.data(), nullptr, 1.0f, dest(e - 1), ws.cols.data(),
                        ws.wexp.data());
        backward_inside(m, theta, t, mode, s, e, D.data(), nullptr, 1.0f, B, s == 0 ? x : ws.a[size_t(s - 1)].data(),
                        dest, s == 0 ? nullptr : dA.data());
    }
    return {};
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

Status ulr_module_gradients(Model& m, const float* x, const Targets& y, int B, const UlrConfig& c, uint32_t step,
                            StepStats* stats, const LossHook* hook) {
    if (c.exact_boundary) return exact_boundary_gradients(m, x, y, B, c, stats);
    const KernelTable& k = *m.k;
    const int K = c.copies;
    int R = 0;
    OF_TRY(step_rows(B, K, &R));
    const int L = int(m.units.size());
    const std::vector<int> ends = module_unit_ends(m, c.modules);
    const int M = int(ends.size());
    const int e0 = ends[0];                    // the first module is units [0, e0)
    const Unit& u0 = m.units[size_t(e0 - 1)];  // its boundary
    const int nw0 = u0.noise_width();
    const uint64_t seed = c.has_seed ? c.seed : m.seed;
    auto& ws = m.ws;
    if (m.has_quant) OF_TRY(ws.eff.reserve(size_t(m.n_params)));
    const float* theta = m.effective(m.params->data(), ws.eff);
    auto noise = [&](int l, int row0) {
        return NoiseSpec{seed, step, uint32_t(l), uint32_t(row0), c.antithetic, c.density, 0u};
    };
    const bool plain_score = c.density == Density::Normal && c.score == Score::Exact;

    // Per boundary: its noise scale (estimator.h NoiseScale), and the fused kernel's bias per output (norms and convs:
    // per channel, repeated over positions).
    struct Site : NoiseScale {
        std::vector<float> bias;
    };
    std::vector<Site> site(static_cast<size_t>(L));
    for (int l = 0, p = 0; l < L; l++) {
        const Unit& u = m.units[size_t(l)];
        if (!u.param()) continue;
        const size_t pi = size_t(p++);
        if (std::find(ends.begin(), ends.end(), l + 1) == ends.end()) continue;
        Site& st = site[size_t(l)];
        static_cast<NoiseScale&>(st) = noise_scale(u, c, pi);
        if (u.positional()) st.bias.resize(size_t(u.O)), unit_bias_row(u, theta, st.bias.data());
    }
    auto bias_of = [&](int l) -> const float* {
        const Unit& u = m.units[size_t(l)];
        return u.positional() ? site[size_t(l)].bias.data() : u.b_off < 0 ? nullptr : theta + u.b_off;
    };
    // Boundary l's noisy copies on `rows` rows: a = phi(V + sigma E + b), E into e[l]. pre: the clean pre-activation
    // without bias, row r using row r / rep (the first module's B rows, shared by their copies; a recurrent unit's
    // input projections X W^T), or nullptr: computed here from `in`.
    auto noisy_boundary = [&](ModuleScratch& sc, int l, const float* in, const float* pre, int rows, int rep, int r0) {
        const Unit& u = m.units[size_t(l)];
        float* a = sc.a[size_t(l)].data();
        float* E = sc.e[size_t(l)].data();
        if (u.recurrent()) {  // noise on every gate at every step, inside the recurrence
            k.noise_fill(E, rows, u.noise_width(), noise(l, r0));
            seq_forward(k, u, theta, in, rows, a, sc.aux[size_t(l)].data(), E, site[size_t(l)].ch.data(), sc.seq.data(),
                        pre, rep);
            unit_bias_act(k, u, theta, a, a, rows);
            return;
        }
        if (!pre)
            boundary_linear(k, u, theta, in, rows, sc.v[size_t(l)].data(), sc.cols.data()),
                pre = sc.v[size_t(l)].data();
        k.noisy_bias_act_forward(a, E, pre, bias_of(l), site[size_t(l)].row.data(), rows, u.O, rep, u.act, u.alpha,
                                 noise(l, r0));
    };

    // batchNorm: the clean batch's statistics (a clean forward up to the last one), held by every pass after
    const BpMode mode{BpMode::Stats::Fixed, seed, step, 0, 1};
    if (m.uses_batch_stats) {
        int bn_end = 0;
        for (int l = 0; l < L; l++)
            if (m.units[size_t(l)].running) bn_end = l + 1;
        const BpTape t = workspace_tape(ws);
        OF_TRY(bp_tape_reserve(m, t, B, 0, bn_end));
        BpMode batch = mode;
        batch.stats = BpMode::Stats::Batch;
        bp_range_forward(m, theta, t, batch, 0, bn_end, x, B);
    }

    // The first module, clean, on B rows; its boundary stops at its pre-activation without bias (a recurrent one at
    // its input projections), before bias and noise.
    const bool pipelined = c.pipeline && c.training;
    auto& cur = ws.first[ws.first_cur];
    auto& prev = ws.first[1 - ws.first_cur];
    {
        FirstScratch& sc = thread_scratch<FirstScratch>();
        const BpTape t = first_tape(cur, sc);
        OF_TRY(bp_tape_reserve(m, t, B, 0, e0));
        OF_TRY(cur.v[size_t(e0 - 1)].reserve(size_t(B) * nw0));
        OF_TRY(cur.g.reserve(size_t(B) * nw0));
        if (u0.recurrent()) OF_TRY(cur.ub.reserve(size_t(u0.n_par)));
        const float* x0 = x;
        if (pipelined) {  // the reduction runs next step, when the caller's batch buffer holds another batch
            OF_TRY(cur.x.reserve(size_t(B) * m.inputs));
            std::copy(x, x + int64_t(B) * m.inputs, cur.x.data());
            x0 = cur.x.data();
        }
        cur.B = B, cur.end = e0, cur.step = step;
        bp_range_forward(m, theta, t, mode, 0, e0 - 1, x0, B);
        const float* in = e0 == 1 ? x0 : cur.a[size_t(e0 - 2)].data();
        float* v = cur.v[size_t(e0 - 1)].data();
        if (u0.recurrent()) k.gemm_nt(v, in, theta + u0.w_off, B * u0.q.T, u0.q.G * u0.q.H, u0.q.F, 1.0f, 0.0f);
        else boundary_linear(k, u0, theta, in, B, v, sc.cols.data());
    }
    const float* v_top0 = cur.v[size_t(e0 - 1)].data();

    // Blocks of whole samples, ~256 rows each; fixed by (B, K) only. Block partials: every parameter of the later
    // modules, and a recurrent first boundary's U and b.
    const int S = lr_block_samples(K);
    const int T = (B + S - 1) / S;
    const int first_partial = u0.recurrent() ? e0 - 1 : e0;
    int64_t partial_size = 0;
    std::vector<int64_t> partial_off(size_t(L), 0);
    for (int l = first_partial; l < L; l++)
        partial_off[size_t(l)] = partial_size, partial_size += param_size(m.units[size_t(l)]);
    OF_TRY(ws.partials.reserve(size_t(T) * size_t(std::max<int64_t>(partial_size, 1))));
    float* partials = ws.partials.data();
    std::vector<double> loss_sum(size_t(T), 0.0);
    std::vector<int64_t> correct(size_t(T), 0);
    std::vector<Status> status(static_cast<size_t>(T + 1));
    const float inv_r = 1.0f / float(R);
    float* hook_loss = nullptr;

    auto block = [&](int t, bool forward_only) {
        ModuleScratch& sc = thread_scratch<ModuleScratch>();
        const BpTape bt = sc.tape();
        const int b0 = t * S, s = std::min(S, B - b0), rows = s * K, r0 = b0 * K;
        Status& st = status[size_t(t)];
        if (st.ok()) st = bp_tape_reserve(m, bt, rows, e0, L);
        if (st.ok()) st = sc.a[size_t(e0 - 1)].reserve(size_t(rows) * u0.O);
        if (st.ok() && u0.recurrent()) st = sc.aux[size_t(e0 - 1)].reserve(size_t(rows) * size_t(seq_aux_width(u0)));
        sc.e.resize(size_t(L));
        for (int mod = 0; mod < M && st.ok(); mod++)
            st = sc.e[size_t(ends[size_t(mod)] - 1)].reserve(size_t(rows) *
                                                             m.units[size_t(ends[size_t(mod)] - 1)].noise_width());
        if (st.ok()) st = sc.loss.reserve(size_t(rows));
        if (st.ok()) st = sc.w.reserve(size_t(rows));
        if (st.ok()) st = sc.running.reserve(size_t(s));  // the running baseline per sample
        if (st.ok()) st = sc.wexp.reserve(size_t(rows) * size_t(m.max_positions()));
        if (!st.ok()) return;
        BpMode bm = mode;  // dropout: row r is sample b0 + r / K
        bm.sample0 = b0, bm.rep = K;

        // forward: K noisy copies of the first module's boundary, then the other modules
        noisy_boundary(sc, e0 - 1, nullptr, v_top0 + int64_t(b0) * nw0, rows, K, r0);
        for (int mod = 1; mod < M; mod++) {
            const int ms = ends[size_t(mod - 1)], me = ends[size_t(mod)];
            bp_range_forward(m, theta, bt, bm, ms, me - 1, sc.a[size_t(ms - 1)].data(), rows);
            noisy_boundary(sc, me - 1, sc.a[size_t(me - 2)].data(), nullptr, rows, 1, r0);
        }
        const float* out = sc.a[size_t(L - 1)].data();
        if (forward_only) {
            std::copy(out, out + int64_t(rows) * m.outputs, ws.outputs.data() + int64_t(r0) * m.outputs);
            return;
        }
        loss_sum[size_t(t)] = block_losses(m, y, out, b0, s, K, r0, hook_loss, sc.loss.data(), &correct[size_t(t)]);
        float* running = sc.running.data();  // the running baseline per sample (independent of this step's noise)
        if (c.baseline == Baseline::Running)
            std::fill(running, running + s, m.has_running ? float(m.running_loss) : 0.0f);
        float* w = sc.w.data();
        k.lr_row_weights(w, sc.loss.data(), running, s, K, c.baseline, c.antithetic, inv_r);

        // each module's boundary scores; the first module's summed over copies, the others' backward per block
        float* p = partials + int64_t(t) * partial_size;
        auto dest = [&](int l) { return p + partial_off[size_t(l)]; };
        for (int mod = 0; mod < M; mod++) {
            const int ms = mod == 0 ? 0 : ends[size_t(mod - 1)], me = ends[size_t(mod)];
            const Unit& u = m.units[size_t(me - 1)];
            const Site& bs = site[size_t(me - 1)];
            float* e = sc.e[size_t(me - 1)].data();
            if (!plain_score) k.score_transform(e, int64_t(rows) * u.noise_width(), c.density, c.score);
            divide_scores(e, rows, bs);
            if (mod == 0) {
                k.lr_copy_sum(cur.g.data() + int64_t(b0) * nw0, w, e, s, K, nw0);
                if (u.recurrent())  // U and b see each copy's states
                    boundary_reduce(k, u, theta, nullptr, rows, sc.aux[size_t(me - 1)].data(), e, w, bs.alpha,
                                    dest(me - 1), sc.cols.data(), sc.wexp.data(), false);
                continue;
            }
            const float* in = sc.a[size_t(me - 2)].data();
            boundary_reduce(k, u, theta, in, rows, sc.aux[size_t(me - 1)].data(), e, w, bs.alpha, dest(me - 1),
                            sc.cols.data(), sc.wexp.data());
            backward_inside(m, theta, bt, bm, ms, me, e, w, bs.alpha, rows, sc.a[size_t(ms - 1)].data(), dest, nullptr);
        }
    };

    // The first module's reduction: G through its boundary's reduction and its own backward on B rows, into the
    // gradient slab.
    Status& first_status = status[size_t(T)];
    auto first_backward = [&](Model::Workspace::FirstModule& f) {
        FirstScratch& sc = thread_scratch<FirstScratch>();
        const BpTape t = first_tape(f, sc);
        first_status = bp_tape_reserve(m, t, f.B, 0, e0);  // the records are in place: only the scratch grows
        if (first_status.ok()) first_status = sc.wexp.reserve(size_t(f.B) * size_t(m.max_positions()));
        if (!first_status.ok()) return;
        BpMode fm = mode;
        fm.step = f.step;  // its dropout masks
        const float* x0 = pipelined ? f.x.data() : x;
        const float* in = e0 == 1 ? x0 : f.a[size_t(e0 - 2)].data();
        const float alpha = site[size_t(e0 - 1)].alpha;
        float* g = m.grads.data() + u0.w_off;
        if (u0.recurrent()) {  // W = alpha G^T X over the B T (sample, step) rows; U and b from the copies
            const int64_t w_size = int64_t(u0.q.G) * u0.q.H * u0.q.F;
            k.gemm_tn(g, f.g.data(), in, nullptr, u0.q.G * u0.q.H, u0.q.F, f.B * u0.q.T, alpha, 0.0f);
            std::copy(f.ub.data(), f.ub.data() + (u0.n_par - w_size), g + w_size);
        } else {
            boundary_reduce(k, u0, theta, in, f.B, nullptr, f.g.data(), nullptr, alpha, g, sc.cols.data(),
                            sc.wexp.data());
        }
        backward_inside(
            m, theta, t, fm, 0, e0, f.g.data(), nullptr, alpha, f.B, x0,
            [&](int l) { return m.grads.data() + m.units[size_t(l)].w_off; }, nullptr);
    };

    const int64_t cycles = int64_t(R) * m.max_width() * 8;
    OF_TRY(run_loss_hook(
        m, hook, y, R, K, T, status, cycles, [&](int t) { block(t, true); }, &hook_loss));
    // Pipelined: task 0 reduces the previous step's first module (its weights have not moved since its forward,
    // and this step's forward does not read its gradient) while the other tasks run this step's blocks.
    const bool overlap = pipelined && prev.pending && prev.end == e0;
    ThreadPool::instance().parallel_for(
        T + (overlap ? 1 : 0),
        [&](int t) {
            if (overlap && t == 0) first_backward(prev);
            else block(overlap ? t - 1 : t, false);
        },
        cycles);
    // cancelled: the pipeline keeps its state (the previous step stays pending) and nothing is summed
    OF_CHECK(!ThreadPool::cancelled(), Abort, "training was cancelled");
    for (const Status& st : status) OF_TRY(st);

    // The reductions after the blocks: the later layers' block sums (partials in block order), one concurrent
    // task per layer; then, unpipelined, the first module's backward with every thread on its GEMMs (as a task
    // beside the block sums it would run its GEMMs on one thread: measured slower on 2 cores). Bit-identical
    // either way. A recurrent first boundary's U and b wait in the first module's record for its reduction.
    float* grads = m.grads.data();
    auto sum_partials = [&](int i) {
        const int l = first_partial + i;
        const Unit& u = m.units[size_t(l)];
        if (!u.param()) return;
        if (l >= e0) {
            sum_block_partials(grads + u.w_off, partials, partial_off[size_t(l)], partial_size, T, param_size(u));
            return;
        }
        const int64_t w_size = int64_t(u.q.G) * u.q.H * u.q.F;
        sum_block_partials(cur.ub.data(), partials, partial_off[size_t(l)] + w_size, partial_size, T, u.n_par - w_size);
    };
    if (c.concurrent) ThreadPool::instance().parallel_for(L - first_partial, sum_partials, int64_t(T) * partial_size);
    else
        for (int i = 0; i < L - first_partial; i++) sum_partials(i);
    if (!pipelined) first_backward(cur);
    OF_TRY(first_status);
    if (pipelined) {  // this step's first module waits for the next step; none pending: no gradient yet
        if (!overlap) std::fill(grads, grads + u0.w_off + param_size(u0), 0.0f);  // its last tensors end its slab range
        prev.pending = false;
        cur.pending = true;
        ws.first_cur = 1 - ws.first_cur;
    }

    finish_stats(m, c, loss_sum, correct, R, stats);
    return {};
}

}  // namespace of
