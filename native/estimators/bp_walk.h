// BP's walks over units [s, e), written once for both engines (backprop.cpp's CPU tape, device/bp.cpp's buffers):
//   forward:  V_l = f_l(A_{l-1}),  A_l = phi(V_l + b_l)  (a residual block's end: post_act(phi(V_l + b_l) + A_start-1))
//   backward: dV_l = dA_l * phi'(V_l);  dW_l, db_l and dA_{l-1} from dV_l by unit l's adjoint (a dense unit's:
//             dW_l = dV_l^T A_{l-1}, db_l = colsum(dV_l), dA_{l-1} = dV_l W_l)
// The engine E holds the tape: v(l), a(l) (rows, O); a residual end's inner(l) = phi(V_l + b_l) and sum(l) before
// post_act; a block start's pending(l) (rows, I), the skip gradient waiting. It runs forward (v = f_l(in), act =
// phi(v + b)), residual (sum = inner + src, a = post_act(sum)), act_backward (dv = da * phi'(v)), backward (unit l's
// parameter gradient and din (nullptr: none); a concat unit splits dv into din and pending) and add (y += x).
#pragma once
#include "core/status.h"
#include "model/model.h"

namespace of {

// Forward through units [s, e) on `rows` rows from x, the input of unit s (a block's start lies in the range).
template <class E>
Status bp_walk_forward(const E& en, const Model& m, int s, int e, const float* x, int rows) {
    auto in = [&](int l) -> const float* { return l == s ? x : en.a(l - 1); };
    for (int l = s; l < e; l++) {
        const Unit& u = m.units[size_t(l)];
        const float* skip = u.skip_from >= 0 ? in(u.skip_from) : nullptr;
        float* act = u.ends_residual() ? en.inner(l) : en.a(l);
        OF_TRY(en.forward(l, in(l), skip, en.v(l), act));
        if (u.ends_residual()) OF_TRY(en.residual(u, act, skip, en.sum(l), en.a(l), rows));
    }
    return {};
}

// Backward through units [s, e) from dcur, the gradient at unit e - 1's output (dcur, dnext: rows x Model::max_width(),
// overwritten) to dx, the gradient at x (nullptr: not wanted). A residual end goes back through post_act to the sum,
// whose gradient is also the skip path's: it waits at the block's start and joins that unit's input gradient.
template <class E>
Status bp_walk_backward(const E& en, const Model& m, int s, int e, const float* x, int rows, float* dcur, float* dnext,
                        float* dx) {
    for (int l = e; l-- > s;) {
        const Unit& u = m.units[size_t(l)];
        const int64_t n = int64_t(rows) * u.O;
        const bool res = u.ends_residual();  // first through post_act: the sum's gradient, kept for the skip path
        float* dsum = res ? en.pending(u.skip_from) : nullptr;
        if (res) OF_TRY(en.act_backward(dsum, dcur, en.sum(l), en.a(l), n, u.post_act, u.post_alpha));
        OF_TRY(en.act_backward(dnext, res ? dsum : dcur, en.v(l), res ? en.inner(l) : en.a(l), n, u.act, u.alpha));
        float* din = l > s ? dcur : dx;
        OF_TRY(en.backward(l, l > s ? en.a(l - 1) : x, dnext, din));
        if (din && u.starts_block) OF_TRY(en.add(din, en.pending(l), int64_t(rows) * u.I));
    }
    return {};
}

}  // namespace of
