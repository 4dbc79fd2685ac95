// Local module training (computation-flow rearrangement; Jiang et al., ICLR 2024, section 5): the pieces the ULR
// runner (ulr.cpp) calls when it runs modules; the CPU twin of device/ulr_modules.cpp.
// The units are cut into modules [0, e_0), [e_0, e_1), ..., [., L), each ending at a unit with parameters, its
// boundary. Noise goes only on each boundary's pre-activation (V~ = V + sigma E there, clean elsewhere; a recurrent
// boundary: every gate at every step): the runner's one group from the first boundary on, noisy at the boundaries.
// Each module receives the likelihood-ratio estimate of the loss gradient at its boundary,
//     D[r] = w[r] s(E[r]) / sigma        (w: the ULR row weights, (l - baseline) / (B K)),
// then runs BP only inside itself, from D down to its input (estimators/bp.h, the one BP of every layer kind). No
// backward pass crosses a boundary, so the modules' reductions are independent of each other, and the first module's
// backward can overlap the next step's forward (pipelining; its gradient is then one step stale). A boundary inside a
// residual or concat block would cut its skip path: validate.cpp refuses it. batchNorm normalizes every pass with the
// clean batch's statistics, held constant (ULR's rule); dropout masks are per sample, shared by its copies.
//
// A one-layer module is exactly a plain ULR layer (same noise, same reductions); one module holding every layer is BP
// driven by an LR estimate at the output. The first module's input is clean, so it runs once per sample (B rows) and
// its boundary estimate is summed over copies first, G = sum_k w s(E): the shared-prefix rule of docs/method.md 3.1
// (a recurrent boundary's W from G against its inputs; its U and b, which see each copy's states, from the copies).
#include "estimators/ulr_modules.h"

#include <algorithm>

#include "core/thread_scratch.h"
#include "model/units.h"

namespace of {
namespace {

// The first module's backward scratch per thread (pipelined, it runs as a task between a thread's blocks).
struct FirstScratch {
    std::vector<Buffer> pending;
    Buffer d0, d1, cols, seq, dP, wexp;
};

// The first module's tape: its records kept in the model (pipelining reduces them a step later), scratch per thread.
BpTape first_tape(Model::Workspace::FirstModule& f, FirstScratch& sc) {
    return {f.v, f.a, f.aux, f.inner, f.sum, sc.pending, sc.d0, sc.d1, sc.cols, sc.seq, sc.dP, sc.wexp};
}

}  // namespace

Status first_module_forward(Model& m, const float* theta, const float* x, int B, const UlrConfig& c, uint64_t seed,
                            uint32_t step, int e0) {
    const KernelTable& k = *m.k;
    const Unit& u0 = m.units[size_t(e0 - 1)];  // its boundary
    auto& ws = m.ws;
    const BpMode mode{BpMode::Stats::Fixed, seed, step, 0, 1};
    if (m.uses_batch_stats) {  // batchNorm: the clean batch's statistics, a clean forward up to the last one
        int bn_end = 0;
        for (int l = 0; l < int(m.units.size()); l++)
            if (m.units[size_t(l)].running) bn_end = l + 1;
        const BpTape t = workspace_tape(ws);
        OF_TRY(bp_tape_reserve(m, t, B, 0, bn_end));
        BpMode batch = mode;
        batch.stats = BpMode::Stats::Batch;
        bp_range_forward(m, theta, t, batch, 0, bn_end, x, B);
    }
    auto& f = ws.first[ws.first_cur];
    FirstScratch& sc = thread_scratch<FirstScratch>();
    const BpTape t = first_tape(f, sc);
    OF_TRY(bp_tape_reserve(m, t, B, 0, e0));
    OF_TRY(f.v[size_t(e0 - 1)].reserve(size_t(B) * u0.noise_width()));
    if (u0.recurrent()) OF_TRY(f.ub.reserve(size_t(u0.n_par)));
    if (c.pipeline && c.training) {  // the backward runs next step, when the caller's batch buffer holds another batch
        OF_TRY(f.x.reserve(size_t(B) * m.inputs));
        std::copy(x, x + int64_t(B) * m.inputs, f.x.data());
        x = f.x.data();
    }
    f.B = B, f.end = e0, f.step = step;
    bp_range_forward(m, theta, t, mode, 0, e0 - 1, x, B);
    const float* in = e0 == 1 ? x : f.a[size_t(e0 - 2)].data();
    float* v = f.v[size_t(e0 - 1)].data();
    if (u0.recurrent()) k.gemm_nt(v, in, theta + u0.w_off, B * u0.q.T, u0.q.G * u0.q.H, u0.q.F, 1.0f, 0.0f);
    else unit_train_linear(k, u0, theta, in, B, v, sc.cols.data(), nullptr, TrainCtx{});  // batchNorm: held stats
    return {};
}

void module_backward(const Model& m, const float* theta, const BpTape& t, const BpMode& mode, int s, int e,
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

Status first_module_backward(Model& m, const float* theta, Model::Workspace::FirstModule& f, const float* x,
                             float alpha, uint64_t seed) {
    const int e0 = f.end;
    const Unit& u0 = m.units[size_t(e0 - 1)];
    FirstScratch& sc = thread_scratch<FirstScratch>();
    const BpTape t = first_tape(f, sc);
    OF_TRY(bp_tape_reserve(m, t, f.B, 0, e0));  // the records are in place: only the scratch grows
    OF_TRY(sc.wexp.reserve(size_t(f.B) * size_t(m.max_positions())));
    const BpMode mode{BpMode::Stats::Fixed, seed, f.step, 0, 1};  // the step of its forward: its dropout masks
    const float* in = e0 == 1 ? x : f.a[size_t(e0 - 2)].data();
    float* g = m.grads.data() + u0.w_off;
    clean_rows_gradient(*m.k, u0, theta, in, f.B, f.g.data(), alpha, g, sc.cols.data(), sc.wexp.data());
    if (u0.recurrent()) {  // U and b: the copies' sums, kept in the record
        const int64_t w_size = int64_t(u0.q.G) * u0.q.H * u0.q.F;
        std::copy(f.ub.data(), f.ub.data() + (u0.n_par - w_size), g + w_size);
    }
    module_backward(
        m, theta, t, mode, 0, e0, f.g.data(), nullptr, alpha, f.B, x,
        [&](int l) { return m.grads.data() + m.units[size_t(l)].w_off; }, nullptr);
    return {};
}

Status exact_boundary_gradients(Model& m, const float* x, const Targets& y, int B, const UlrConfig& c,
                                StepStats* stats) {
    const KernelTable& k = *m.k;
    const std::vector<int> ends = module_unit_ends(m, c.modules);
    for (int e : ends)
        OF_CHECK(!m.units[size_t(e - 1)].recurrent(), Config,
                 "the exact boundary test hook needs boundaries at layers that are not recurrent");
    auto& ws = m.ws;
    const BpMode mode{BpMode::Stats::Batch, m.seed, m.step, 0, 1};
    const float* theta = nullptr;
    OF_TRY(bp_forward_loss(m, x, y, B, mode, stats, &theta));
    OF_TRY(ws.wexp.reserve(size_t(B) * size_t(m.max_positions())));
    Buffer D, dA;  // the exact boundary gradient; the gradient at a module's output (the top module's: the loss's, d0)
    OF_TRY(D.reserve(size_t(B) * size_t(m.max_width())));
    OF_TRY(dA.reserve(size_t(B) * size_t(m.max_width())));
    const BpTape t = workspace_tape(ws);
    const float* dout = ws.d0.data();
    auto dest = [&](int l) { return m.grads.data() + m.units[size_t(l)].w_off; };
    for (int mod = int(ends.size()) - 1; mod >= 0; mod--) {
        const int s = mod == 0 ? 0 : ends[size_t(mod - 1)], e = ends[size_t(mod)];
        const Unit& top = m.units[size_t(e - 1)];
        k.act_backward(D.data(), dout, ws.v[size_t(e - 1)].data(), ws.a[size_t(e - 1)].data(), int64_t(B) * top.O,
                       top.act, top.alpha);
        const float* in = e - 1 == 0 ? x : ws.a[size_t(e - 2)].data();
        clean_rows_gradient(k, top, theta, in, B, D.data(), 1.0f, dest(e - 1), ws.cols.data(), ws.wexp.data());
        module_backward(m, theta, t, mode, s, e, D.data(), nullptr, 1.0f, B, s == 0 ? x : ws.a[size_t(s - 1)].data(),
                        dest, s == 0 ? nullptr : dA.data());
        dout = dA.data();
    }
    return {};
}

}  // namespace of
