// ULR with local modules on the device (estimators/ulr_modules.cpp's math): the group runner (ulr_groups.cpp) runs the
// forward as one group from the first boundary on, noisy only at the boundaries (each module's last unit with
// parameters), every other unit's pre-activation kept in e_; then, after the losses and row weights, each boundary's
// LR reduction and BP inside its module from the boundary's estimate. No backward crosses a boundary.
#include "device/unit_pass.h"
#include "estimators/bp_walk.h"
#include "units/unit.h"

namespace of {

// Pipelined modules delay the first module's backward a step: its units must keep no state outside a_, e_ and cols_
// (the entries' `pipelines`; no block's sums), and its boundary must not be recurrent.
bool DeviceTrainer::pipelines(const Model& m, const UlrConfig& c) {
    const std::vector<int> ends = module_unit_ends(m, c.modules);
    for (int l = 0; l < ends[0]; l++)
        if (!m.units[size_t(l)].kind->device->pipelines || m.units[size_t(l)].skip_from >= 0) return false;
    return true;
}

// Each boundary's reduction (mp.reduce: the first's from G = sum_k w s(E) on B rows, into g_; a later one's from
// S = diag(w) s(E) on the R copy rows, in place in e_), then BP inside its module from alpha D at the boundary's
// pre-activation (mp.alpha), D = G (the first module, on the clean B rows of a_)
// or S (a later one, on the R rows of ga_, dropout's rows K per sample). Pipelined (training only): the first
// module's reduction and BP run in the next step, from its rows kept in pipe_ (with none pending, its gradient is 0).
Status DeviceTrainer::module_reductions(const Model& m, const std::vector<int>& ends, int B, int K, const UlrConfig& c,
                                        const float* x, bool tf32, const ModulePasses& mp) {
    Device* d = dev_.get();
    const int R = B * K, st = ends[0] - 1;
    auto inside = [&](int s0, int top, int rows, const float* D, const float* x0) -> Status {
        if (top == s0) return {};
        const Unit& u = m.units[size_t(top)];
        const bool first = s0 == 0;
        auto pass_of = [&](int l) {
            UnitPass p = mp.pass(l, rows, first ? 1 : K);
            p.held_stats = true;  // batchNorm: the clean batch's statistics, as in every pass of the step
            return p;
        };
        const BpEngine en{*this, first ? a_ : ga_, pass_of};  // the first module's clean rows, or the copy rows
        auto in = [&](int l) -> const float* { return l == 0 ? x0 : en.a(l - 1); };
        OF_TRY(d->axpy(dev::AxpyArgs{d0_.f(), nullptr, D, mp.alpha(top)}, int64_t(rows) * u.noise_width()));
        if (u.recurrent()) {  // the gradient at its input, (rows T, F) = alpha D (rows T, G H) W
            const int GH = u.q.G * u.q.H;
            OF_TRY(d->gemm(false, false, rows * u.q.T, u.q.F, GH, 1.0f, d0_.f(), GH, params_.f() + u.w_off, u.q.F, 0.0f,
                           d1_.f(), u.q.F, tf32));
        } else {
            OF_TRY(backward(pass_of(top), in(top), d0_.f(), 1.0f, false, d1_.f()));
        }
        return bp_walk_backward(en, m, s0, top, in(s0), rows, d1_.f(), d0_.f(), nullptr);
    };
    for (size_t j = 1; j < ends.size(); j++) {
        const int top = ends[j] - 1;
        OF_TRY(mp.reduce(top, true));
        OF_TRY(inside(ends[j - 1], top, R, e_[size_t(top)]->f(), x));
    }
    if (!(c.pipeline && c.training)) {
        OF_TRY(mp.reduce(st, true));
        return inside(0, st, B, g_.f(), x);
    }
    // pipelined: the first module's B-row buffers <-> pipe_'s (its activations and pre-activations, and patches)
    auto swap_first = [&]() {
        grow(pipe_.a, size_t(st + 1)), grow(pipe_.e, size_t(st + 1)), grow(pipe_.cols, size_t(st + 1));
        for (int l = 0; l <= st; l++) {
            if (l < st) std::swap(a_[size_t(l)], pipe_.a[size_t(l)]), std::swap(e_[size_t(l)], pipe_.e[size_t(l)]);
            if (int(cols_.size()) > l) std::swap(cols_[size_t(l)], pipe_.cols[size_t(l)]);
        }
    };
    const Unit& ue = m.units[size_t(st)];
    if (pipe_.pending && pipe_.end == st + 1) {  // the previous step's first module, with today's weights
        swap_first();
        const float* in = st == 0 ? pipe_.x.f() : a_[size_t(st - 1)]->f();
        Status s = backward(pass(m, st, pipe_.B, tf32), in, pipe_.g.f(), mp.alpha(st), true, nullptr);
        if (s.ok()) s = inside(0, st, pipe_.B, pipe_.g.f(), pipe_.x.f());
        swap_first();
        OF_TRY(s);
    } else {
        OF_TRY(d->zero(grads_.f(), size_t(ue.w_off + ue.n_par) * sizeof(float)));
    }
    OF_TRY(mp.reduce(st, false));  // this step's G, kept with its rows for the next step
    OF_TRY(pipe_.g.reserve(d, size_t(B) * ue.O * sizeof(float)));
    OF_TRY(pipe_.x.reserve(d, size_t(B) * m.inputs * sizeof(float)));
    OF_TRY(d->add(dev::AddArgs{pipe_.g.f(), g_.f(), 0}, int64_t(B) * ue.O));
    OF_TRY(d->add(dev::AddArgs{pipe_.x.f(), x, 0}, int64_t(B) * m.inputs));
    swap_first();
    pipe_.end = st + 1, pipe_.pending = true, pipe_.B = B;
    return {};
}

}  // namespace of
