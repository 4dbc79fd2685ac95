// Local module training (computation-flow rearrangement; Jiang et al., ICLR 2024, section 5).
// The dense layers are cut into modules [0, e_0), [e_0, e_1), ..., [., L). Noise goes only on the
// pre-activation of each module's last layer, its boundary (V~ = V + sigma E there, clean elsewhere), and the
// module receives the likelihood-ratio estimate of the loss gradient at that boundary,
//     D[r] = w[r] s(E[r]) / sigma        (w: the ULR row weights, (l - baseline) / (B K)),
// then runs BP only inside itself, from D down to its input. No backward pass crosses a boundary, so the
// modules' reductions are independent of each other: the later layers' block sums run as concurrent tasks,
// and the first module's backward can overlap the next step's forward (pipelining; its gradient is then one
// step stale).
//
// A one-layer module is exactly a plain ULR layer (same noise, same reductions); one module holding every layer
// is BP driven by an LR estimate at the output. The first module's input is clean, so it runs once per sample
// (B rows) and its boundary estimate is summed over copies first, G = sum_k w s(E): the shared-prefix rule of
// docs/method.md 3.1. The other modules run in blocks of whole samples like likelihood_ratio.cpp: forward, losses,
// row weights and each module's backward while the block is in cache, partial gradients summed in block order.
// Test hook (exact_boundary): D is the exact gradient at each boundary (no noise, one copy), which must give BP.
#include <algorithm>
#include <climits>
#include <cmath>

#include "core/shape.h"
#include "core/thread_pool.h"
#include "core/thread_scratch.h"
#include "estimators/blocks.h"
#include "estimators/estimator.h"
#include "model/units.h"

namespace of {
namespace {

struct ModuleScratch {
    std::vector<Buffer> a, v, e;  // per layer, the block's rows: activations, pre-activations, boundary noise
    Buffer loss, w, running, d0, d1, cols, wexp;
};
struct FirstScratch : ModuleScratch {};

// Gradients of layers [s, e) of one module on `rows` rows. The gradient at the last layer's pre-activation is
// D = diag(w) S alpha (w == nullptr: no row weights). a_in: the module's input; v[l], a[l]: layer l's
// pre-activations and activations on these rows. dest(l): where layer l's weight gradient goes, its bias
// gradient right after (overwritten). dx (optional): the gradient at the module's input. d0, d1: rows x the
// module's widest layer; cols, wexp: conv scratch (rows x patch_width, rows x positions).
template <class Dest>
void module_backward(const KernelTable& k, const Model& m, int s, int e, const float* S, const float* w, float alpha,
                     int rows, const float* a_in, const std::vector<Buffer>& v, const std::vector<Buffer>& a,
                     const Dest& dest, float* d0, float* d1, float* dx, float* cols, float* wexp) {
    const DenseUnit& top = m.units[size_t(e - 1)];
    {  // the boundary layer: the LR reductions of likelihood_ratio.cpp
        const float* a_prev = e - 1 == s ? a_in : a[size_t(e - 2)].data();
        float* g = dest(e - 1);
        unit_lr_reduce(k, top, a_prev, rows, S, w, alpha, g, g + int64_t(top.gemm_cols()) * top.fan_in(), cols, wexp);
    }
    if (e - 1 == s && !dx) return;
    // D materialized for the BP below the boundary
    float* dv = d0;
    float* da = d1;
    for (int r = 0; r < rows; r++) {
        const float f = (w ? w[r] : 1.0f) * alpha;
        const float* sr = S + int64_t(r) * top.O;
        float* dr = dv + int64_t(r) * top.O;
        for (int o = 0; o < top.O; o++) dr[o] = f * sr[o];
    }
    const float* theta = m.params->data();
    for (int l = e - 1; l >= s; l--) {
        const DenseUnit& u = m.units[size_t(l)];
        const float* a_prev = l == s ? a_in : a[size_t(l - 1)].data();
        // the boundary layer's gradients are done above; pools have none
        float* g = l < e - 1 && u.param() ? dest(l) : nullptr;
        if (l > s) {
            const DenseUnit& p = m.units[size_t(l - 1)];
            unit_backward(k, u, theta, a_prev, rows, dv, g, da, cols);
            k.act_backward(da, da, v[size_t(l - 1)].data(), a[size_t(l - 1)].data(), int64_t(rows) * p.O, p.act, p.alpha);
            std::swap(dv, da);
        } else {
            unit_backward(k, u, theta, a_prev, rows, dv, g, dx, cols);
        }
    }
}

// Clean forward of layers [s, e) on `rows` rows from a_in, keeping every pre-activation and activation; the
// last layer stops at its pre-activation without bias when `stop_at_boundary` (its noise comes later).
void module_forward(const KernelTable& k, const Model& m, int s, int e, int rows, const float* a_in, std::vector<Buffer>& v,
                    std::vector<Buffer>& a, bool stop_at_boundary, float* cols) {
    const float* theta = m.params->data();
    for (int l = s; l < e; l++) {
        const DenseUnit& u = m.units[size_t(l)];
        const float* in = l == s ? a_in : a[size_t(l - 1)].data();
        unit_linear(k, u, theta, in, rows, v[size_t(l)].data(), cols);
        if (l == e - 1 && stop_at_boundary) break;
        unit_bias_act(k, u, theta, a[size_t(l)].data(), v[size_t(l)].data(), rows);
    }
}

Status reserve_conv(const Model& m, ModuleScratch& sc, int rows) {
    OF_TRY(sc.cols.reserve(size_t(rows) * size_t(std::max<int64_t>(m.patch_width(), 1))));
    return sc.wexp.reserve(size_t(rows) * size_t(m.max_positions()));
}

Status reserve_layers(const Model& m, std::vector<Buffer>& bufs, int rows, int s, int e) {
    bufs.resize(m.units.size());
    for (int l = s; l < e; l++) OF_TRY(bufs[size_t(l)].reserve(size_t(rows) * m.units[size_t(l)].O));
    return {};
}

int widest(const Model& m, int s, int e) {
    int w = 1;
    for (int l = s; l < e; l++) w = std::max({w, m.units[size_t(l)].O, m.units[size_t(l)].I});
    return w;
}

// The test hook: exact gradients at every boundary, each module's own backward, chained from the loss down.
Status exact_boundary_gradients(Model& m, const float* x, const Targets& y, int B, const UlrConfig& c, StepStats* stats) {
    const KernelTable& k = *m.k;
    const int L = int(m.units.size());
    ModuleScratch sc;
    OF_TRY(reserve_layers(m, sc.v, B, 0, L));
    OF_TRY(reserve_layers(m, sc.a, B, 0, L));
    const int width = std::max(widest(m, 0, L), m.inputs);
    OF_TRY(sc.d0.reserve(size_t(B) * width));
    OF_TRY(sc.d1.reserve(size_t(B) * width));
    OF_TRY(sc.e.emplace_back().reserve(size_t(B) * width));  // the boundary gradient D
    OF_TRY(sc.w.reserve(size_t(B) * width));                 // the gradient at a module's input
    OF_TRY(sc.loss.reserve(size_t(B)));
    OF_TRY(reserve_conv(m, sc, B));
    module_forward(k, m, 0, L, B, x, sc.v, sc.a, false, sc.cols.data());
    const float* out = sc.a[size_t(L - 1)].data();
    stats->correct = k.loss_forward(sc.loss.data(), out, y.labels, y.values, B, m.outputs, 1, m.loss, m.groups);
    double sum = 0.0;
    for (int r = 0; r < B; r++) sum += sc.loss.data()[r];
    stats->loss = sum / B, stats->rows = B;
    float* D = sc.e[0].data();
    float* da = sc.w.data();
    k.loss_backward(da, out, y.labels, y.values, B, m.outputs, m.loss, m.groups);
    const std::vector<int> ends = module_unit_ends(m, c.modules);
    for (int mod = int(ends.size()) - 1; mod >= 0; mod--) {
        const int s = mod == 0 ? 0 : ends[size_t(mod - 1)], e = ends[size_t(mod)];
        const DenseUnit& top = m.units[size_t(e - 1)];
        k.act_backward(D, da, sc.v[size_t(e - 1)].data(), sc.a[size_t(e - 1)].data(), int64_t(B) * top.O, top.act, top.alpha);
        module_backward(k, m, s, e, D, nullptr, 1.0f, B, s == 0 ? x : sc.a[size_t(s - 1)].data(), sc.v, sc.a,
                        [&](int l) { return m.grads.data() + m.units[size_t(l)].w_off; }, sc.d0.data(),
                        sc.d1.data(), s == 0 ? nullptr : da, sc.cols.data(), sc.wexp.data());
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
    const int e0 = ends[0];  // the first module is units [0, e0)
    const uint64_t seed = c.has_seed ? c.seed : m.seed;
    auto noise = [&](int l, int row0) {
        return NoiseSpec{seed, step, uint32_t(l), uint32_t(row0), c.antithetic, c.density, 0u};
    };
    auto boundary = [&](int l) { return std::find(ends.begin(), ends.end(), l + 1) != ends.end(); };
    const bool plain_score = c.density == Density::Normal && c.score == Score::Exact;
    // sigma per layer with parameters; dense models may give it per channel. Conv biases expand to one value per
    // output for the fused noisy kernel.
    std::vector<int> ordinal(static_cast<size_t>(L), 0);
    for (int l = 0, p = 0; l < L; l++) ordinal[size_t(l)] = m.units[size_t(l)].param() ? p++ : -1;
    auto sigma_of = [&](int l) { return c.sigma.size() == 1 ? c.sigma[0] : c.sigma[size_t(ordinal[size_t(l)])]; };
    std::vector<std::vector<float>> sig = m.dense_only ? channel_sigmas(m, c) : std::vector<std::vector<float>>(static_cast<size_t>(L));
    std::vector<std::vector<float>> conv_bias(static_cast<size_t>(L));
    for (int l = 0; l < L; l++) {
        const DenseUnit& u = m.units[size_t(l)];
        if (!m.dense_only && u.param()) sig[size_t(l)].assign(size_t(u.O), sigma_of(l));
        if (u.kind == UnitKind::Conv2d) conv_bias[size_t(l)].resize(size_t(u.O)), unit_bias_row(u, m.params->data(), conv_bias[size_t(l)].data());
    }
    auto bias_of = [&](int l) -> const float* { return m.units[size_t(l)].kind == UnitKind::Conv2d ? conv_bias[size_t(l)].data() : m.b(m.units[size_t(l)]); };
    auto per_channel = [&](int l) { return l < int(c.sigma_channels.size()) && !c.sigma_channels[size_t(l)].empty(); };
    auto inv_sigma = [&](int l) { return per_channel(l) ? 1.0f : 1.0f / sigma_of(l); };
    const int C = m.outputs;
    auto& ws = m.ws;

    // The first module, clean, on B rows; its boundary pre-activation stops before bias and noise.
    const bool pipelined = c.pipeline && c.training;
    auto& cur = ws.first[ws.first_cur];
    auto& prev = ws.first[1 - ws.first_cur];
    OF_TRY(reserve_layers(m, cur.v, B, 0, e0));
    OF_TRY(reserve_layers(m, cur.a, B, 0, e0));
    OF_TRY(cur.g.reserve(size_t(B) * m.units[size_t(e0 - 1)].O));
    const float* x0 = x;
    if (pipelined) {  // the reduction runs next step, when the caller's batch buffer holds another batch
        OF_TRY(cur.x.reserve(size_t(B) * m.inputs));
        std::copy(x, x + int64_t(B) * m.inputs, cur.x.data());
        x0 = cur.x.data();
    }
    cur.B = B, cur.end = e0;
    ModuleScratch first_sc;  // conv patches of the first module's B rows
    OF_TRY(reserve_conv(m, first_sc, B));
    module_forward(k, m, 0, e0, B, x0, cur.v, cur.a, true, first_sc.cols.data());
    const float* v_top0 = cur.v[size_t(e0 - 1)].data();

    // Blocks of whole samples, ~256 rows each; fixed by (B, K) only.
    const int S = lr_block_samples(K);
    const int T = (B + S - 1) / S;
    int64_t partial_size = 0;
    std::vector<int64_t> partial_off(size_t(L), 0);
    for (int l = e0; l < L; l++) partial_off[size_t(l)] = partial_size, partial_size += param_size(m.units[size_t(l)]);
    OF_TRY(ws.partials.reserve(size_t(T) * size_t(std::max<int64_t>(partial_size, 1))));
    float* partials = ws.partials.data();
    std::vector<double> loss_sum(size_t(T), 0.0);
    std::vector<int64_t> correct(size_t(T), 0);
    std::vector<Status> status(static_cast<size_t>(T + 1));
    const float inv_r = 1.0f / float(R);
    float* hook_loss = nullptr;

    auto block = [&](int t, bool forward_only) {
        ModuleScratch& sc = thread_scratch<ModuleScratch>();
        const int b0 = t * S, s = std::min(S, B - b0), rows = s * K, r0 = b0 * K;
        Status& st = status[size_t(t)];
        int width = 1;
        if (st.ok()) st = reserve_layers(m, sc.a, rows, e0 - 1, L);
        if (st.ok()) st = reserve_layers(m, sc.v, rows, e0, L);
        if (st.ok()) st = reserve_layers(m, sc.e, rows, e0 - 1, L);
        for (int mod = 1; mod < M; mod++) width = std::max(width, widest(m, ends[size_t(mod - 1)], ends[size_t(mod)]));
        if (st.ok()) st = sc.d0.reserve(size_t(rows) * width);
        if (st.ok()) st = sc.d1.reserve(size_t(rows) * width);
        if (st.ok()) st = sc.loss.reserve(size_t(rows));
        if (st.ok()) st = sc.w.reserve(size_t(rows));
        if (st.ok()) st = sc.running.reserve(size_t(s));  // the running baseline per sample
        if (st.ok()) st = reserve_conv(m, sc, rows);
        if (!st.ok()) return;

        // forward: K noisy copies of the first module's boundary, then the other modules
        const DenseUnit& u0 = m.units[size_t(e0 - 1)];
        k.noisy_bias_act_forward(sc.a[size_t(e0 - 1)].data(), sc.e[size_t(e0 - 1)].data(), v_top0 + int64_t(b0) * u0.O,
                                 bias_of(e0 - 1), sig[size_t(e0 - 1)].data(), rows, u0.O, K, u0.act, u0.alpha, noise(e0 - 1, r0));
        for (int l = e0; l < L; l++) {
            const DenseUnit& u = m.units[size_t(l)];
            float* v = sc.v[size_t(l)].data();
            unit_linear(k, u, m.params->data(), sc.a[size_t(l - 1)].data(), rows, v, sc.cols.data());
            if (boundary(l))
                k.noisy_bias_act_forward(sc.a[size_t(l)].data(), sc.e[size_t(l)].data(), v, bias_of(l), sig[size_t(l)].data(), rows,
                                         u.O, 1, u.act, u.alpha, noise(l, r0));
            else
                unit_bias_act(k, u, m.params->data(), sc.a[size_t(l)].data(), v, rows);
        }
        const float* out = sc.a[size_t(L - 1)].data();
        if (forward_only) {
            std::copy(out, out + int64_t(rows) * C, ws.outputs.data() + int64_t(r0) * C);
            return;
        }
        loss_sum[size_t(t)] = block_losses(m, y, out, b0, s, K, r0, hook_loss, sc.loss.data(), &correct[size_t(t)]);
        float* running = sc.running.data();  // the running baseline per sample (independent of this step's noise)
        if (c.baseline == Baseline::Running) std::fill(running, running + s, m.has_running ? float(m.running_loss) : 0.0f);
        float* w = sc.w.data();
        k.lr_row_weights(w, sc.loss.data(), running, s, K, c.baseline, c.antithetic, inv_r);

        // each module's boundary scores; the first module's summed over copies, the others' backward per block
        for (int mod = 0; mod < M; mod++) {
            const int ms = mod == 0 ? 0 : ends[size_t(mod - 1)], me = ends[size_t(mod)];
            const DenseUnit& u = m.units[size_t(me - 1)];
            float* e = sc.e[size_t(me - 1)].data();
            if (!plain_score) k.score_transform(e, int64_t(rows) * u.O, c.density, c.score);
            if (per_channel(me - 1)) scale_by_channel(e, rows, sig[size_t(me - 1)]);
            if (mod == 0) {
                k.lr_copy_sum(cur.g.data() + int64_t(b0) * u.O, w, e, s, K, u.O);
                continue;
            }
            float* p = partials + int64_t(t) * partial_size;
            module_backward(k, m, ms, me, e, w, inv_sigma(me - 1), rows, sc.a[size_t(ms - 1)].data(), sc.v, sc.a,
                            [&](int l) { return p + partial_off[size_t(l)]; }, sc.d0.data(), sc.d1.data(),
                            nullptr, sc.cols.data(), sc.wexp.data());
        }
    };

    // The first module's reduction: G through its own backward on B rows, into the gradient slab.
    Status& first_status = status[size_t(T)];
    auto first_backward = [&](Model::Workspace::FirstModule& f) {
        FirstScratch& sc = thread_scratch<FirstScratch>();  // its own: it may run between the blocks of a thread
        const int width = widest(m, 0, e0);
        first_status = sc.d0.reserve(size_t(f.B) * width);
        if (first_status.ok()) first_status = sc.d1.reserve(size_t(f.B) * width);
        if (first_status.ok()) first_status = reserve_conv(m, sc, f.B);
        if (!first_status.ok()) return;
        module_backward(k, m, 0, e0, f.g.data(), nullptr, inv_sigma(e0 - 1), f.B, pipelined ? f.x.data() : x, f.v, f.a,
                        [&](int l) { return m.grads.data() + m.units[size_t(l)].w_off; }, sc.d0.data(),
                        sc.d1.data(), nullptr, sc.cols.data(), sc.wexp.data());
    };

    const int64_t cycles = int64_t(R) * m.max_width() * 8;
    OF_TRY(run_loss_hook(m, hook, y, R, K, T, status, cycles, [&](int t) { block(t, true); }, &hook_loss));
    // Pipelined: task 0 reduces the previous step's first module (its weights have not moved since its forward,
    // and this step's forward does not read its gradient) while the other tasks run this step's blocks.
    const bool overlap = pipelined && prev.pending && prev.end == e0;
    ThreadPool::instance().parallel_for(T + (overlap ? 1 : 0), [&](int t) {
        if (overlap && t == 0) first_backward(prev);
        else block(overlap ? t - 1 : t, false);
    }, cycles);
    // cancelled: the pipeline keeps its state (the previous step stays pending) and nothing is summed
    OF_CHECK(!ThreadPool::cancelled(), Abort, "training was cancelled");
    for (const Status& st : status) OF_TRY(st);

    // The reductions after the blocks: the later layers' block sums (partials in block order), one concurrent
    // task per layer; then, unpipelined, the first module's backward with every thread on its GEMMs (as a task
    // beside the block sums it would run its GEMMs on one thread: measured slower on 2 cores). Bit-identical
    // either way.
    float* grads = m.grads.data();
    auto sum_partials = [&](int i) {
        const DenseUnit& u = m.units[size_t(e0 + i)];
        if (u.param()) sum_block_partials(grads + u.w_off, partials, partial_off[size_t(e0 + i)], partial_size, T, param_size(u));
    };
    if (c.concurrent) ThreadPool::instance().parallel_for(L - e0, sum_partials, int64_t(T) * partial_size);
    else
        for (int i = 0; i < L - e0; i++) sum_partials(i);
    if (!pipelined) first_backward(cur);
    OF_TRY(first_status);
    if (pipelined) {  // this step's first module waits for the next step; none pending: no gradient yet
        const DenseUnit& ue = m.units[size_t(e0 - 1)];  // the first module's last tensors end its slab range
        if (!overlap) std::fill(grads, grads + ue.w_off + param_size(ue), 0.0f);
        prev.pending = false;
        cur.pending = true;
        ws.first_cur = 1 - ws.first_cur;
    }

    finish_stats(m, c, loss_sum, correct, R, stats);
    return {};
}

}  // namespace of
