// Recurrent units on a device (model/recurrent.cpp's algorithm): a step at a time, the GEMMs of the step (X_t W^T, or
// the shared X W^T of ULR's first unit; + h U^T; the gru candidate's U_n (r h_prev)) then one kernel for the cell; the
// backward in reverse with the same GEMMs transposed. The aux layout is recurrent.cpp's, so the reductions read the
// same values: dW = S^T X over (row, step) rows, dU = S^T h_prev (gru: r h_prev for the candidate), db = column sums.
#include "device/trainer.h"
#include "model/recurrent.h"

namespace of {

Status DeviceTrainer::seq_buffers(const Model& m, int l, int rows) {
    Device* d = dev_.get();
    const Unit& u = m.units[size_t(l)];
    while (int(aux_.size()) <= l) aux_.push_back(std::make_unique<DeviceBuffer>());
    OF_TRY(aux_[size_t(l)]->reserve(d, size_t(rows) * size_t(seq_aux_width(u)) * sizeof(float)));
    OF_TRY(seq_p_.reserve(d, size_t(rows) * u.q.G * u.q.H * sizeof(float)));
    OF_TRY(seq_h_.reserve(d, size_t(rows) * u.q.H * sizeof(float)));
    return seq_c_.reserve(d, size_t(rows) * u.q.H * sizeof(float));
}

Status DeviceTrainer::seq_forward(const Model& m, int l, int rows, const float* in, float* out, const float* E,
                                  float sigma, const float* xw, int rep, bool tf32, const float* sigmas) {
    Device* d = dev_.get();
    const Unit& u = m.units[size_t(l)];
    const int T = u.q.T, F = u.q.F, H = u.q.H, GH = u.q.G * H, A = int(seq_aux_width(u) / T);
    OF_TRY(seq_buffers(m, l, rows));
    float* P = seq_p_.f();
    float* aux = aux_[size_t(l)]->f();
    const float* W = theta_ + u.w_off;
    const float* U = u.q.has_u ? W + int64_t(GH) * F : nullptr;
    OF_TRY(d->zero(seq_h_.f(), size_t(rows) * H * sizeof(float)));
    OF_TRY(d->zero(seq_c_.f(), size_t(rows) * H * sizeof(float)));
    dev::SeqArgs a{P,
                   seq_h_.f(),
                   seq_c_.f(),
                   aux,
                   theta_ + u.b_off,
                   E,
                   sigma,
                   T,
                   0,
                   H,
                   GH,
                   A,
                   seq_cell(u.kind),
                   u.q.beta,
                   u.q.threshold,
                   u.q.slope,
                   out,
                   u.q.return_sequences ? 1 : 0,
                   xw,
                   rep,
                   sigmas};
    const int64_t n = int64_t(rows) * H;
    for (int t = 0; t < T; t++) {
        a.t = t;
        if (xw) OF_TRY(d->seq_input(a, int64_t(rows) * GH));
        else OF_TRY(d->gemm(false, true, rows, GH, F, 1.0f, in + int64_t(t) * F, T * F, W, F, 0.0f, P, GH, tf32));
        if (U)
            OF_TRY(d->gemm(false, true, rows, u.kind == UnitKind::Gru ? 2 * H : GH, H, 1.0f, seq_h_.f(), H, U, H, 1.0f,
                           P, GH, tf32));
        OF_TRY(d->seq_cell(a, n));
        if (u.kind == UnitKind::Gru) {  // the candidate reads r * h_prev
            OF_TRY(d->gemm(false, true, rows, H, H, 1.0f, aux + int64_t(t) * A + 4 * H, T * A, U + int64_t(2) * H * H,
                           H, 1.0f, P + 2 * H, GH, tf32));
            OF_TRY(d->seq_candidate(a, n));
        }
        if (u.q.return_sequences || t == T - 1) OF_TRY(d->seq_output(a, n));
    }
    return {};
}

Status DeviceTrainer::seq_reduce(const Model& m, int l, int rows, const float* in, const float* S, float alpha,
                                 bool with_w, bool tf32) {
    Device* d = dev_.get();
    const Unit& u = m.units[size_t(l)];
    const int T = u.q.T, F = u.q.F, H = u.q.H, GH = u.q.G * H, A = int(seq_aux_width(u) / T);
    const int n = rows * T;
    const float* aux = aux_[size_t(l)]->f();
    float* dW = grads_.f() + u.w_off;
    if (with_w) OF_TRY(d->gemm(true, false, GH, F, n, alpha, S, GH, in, F, 0.0f, dW, F, tf32));
    float* dU = dW + int64_t(GH) * F;
    if (u.q.has_u) {
        if (u.kind == UnitKind::Gru) {  // z, r: h_prev; the candidate: r h_prev
            OF_TRY(d->gemm(true, false, 2 * H, H, n, alpha, S, GH, aux, A, 0.0f, dU, H, tf32));
            OF_TRY(d->gemm(true, false, H, H, n, alpha, S + 2 * H, GH, aux + 4 * H, A, 0.0f, dU + int64_t(2) * H * H, H,
                           tf32));
        } else {
            OF_TRY(d->gemm(true, false, GH, H, n, alpha, S, GH, aux, A, 0.0f, dU, H, tf32));
        }
    }
    return col_sum(grads_.f() + u.b_off, S, n, GH, alpha);
}

Status DeviceTrainer::seq_backward(const Model& m, int l, int rows, const float* in, const float* dout, float* din,
                                   bool tf32) {
    Device* d = dev_.get();
    const Unit& u = m.units[size_t(l)];
    const int T = u.q.T, F = u.q.F, H = u.q.H, GH = u.q.G * H, A = int(seq_aux_width(u) / T);
    const int64_t n = int64_t(rows) * H;
    OF_TRY(seq_dh_.reserve(d, size_t(n) * sizeof(float)));
    OF_TRY(seq_dc_.reserve(d, size_t(n) * sizeof(float)));
    OF_TRY(seq_q_.reserve(d, size_t(n) * sizeof(float)));
    OF_TRY(seq_dp_.reserve(d, size_t(rows) * T * GH * sizeof(float)));
    OF_TRY(d->zero(seq_dh_.f(), size_t(n) * sizeof(float)));
    OF_TRY(d->zero(seq_dc_.f(), size_t(n) * sizeof(float)));
    const float* W = params_.f() + u.w_off;
    const float* U = u.q.has_u ? W + int64_t(GH) * F : nullptr;
    float* dP = seq_dp_.f();
    dev::SeqBackArgs a{seq_dh_.f(),
                       seq_dc_.f(),
                       dP,
                       seq_q_.f(),
                       aux_[size_t(l)]->f(),
                       dout,
                       T,
                       0,
                       H,
                       GH,
                       A,
                       seq_cell(u.kind),
                       u.q.beta,
                       u.q.threshold,
                       u.q.slope,
                       u.q.return_sequences ? 1 : 0};
    for (int t = T - 1; t >= 0; t--) {
        a.t = t;
        OF_TRY(d->seq_back_cell(a, n));
        float* dPt = dP + int64_t(t) * GH;
        if (u.kind == UnitKind::Gru) {  // through r * h_prev: d(r h_prev) = dP_n U_n; then + [dP_z dP_r] U_zr
            OF_TRY(d->gemm(false, false, rows, H, H, 1.0f, dPt + 2 * H, T * GH, U + int64_t(2) * H * H, H, 0.0f,
                           seq_q_.f(), H, tf32));
            OF_TRY(d->seq_back_reset(a, n));
            OF_TRY(d->gemm(false, false, rows, H, 2 * H, 1.0f, dPt, T * GH, U, H, 1.0f, seq_dh_.f(), H, tf32));
        } else if (U) {  // dh_prev = dP U
            OF_TRY(d->gemm(false, false, rows, H, GH, 1.0f, dPt, T * GH, U, H, 0.0f, seq_dh_.f(), H, tf32));
        }
    }
    OF_TRY(seq_reduce(m, l, rows, in, dP, 1.0f, true, tf32));
    if (!din) return {};
    return d->gemm(false, false, rows * T, F, GH, 1.0f, dP, GH, W, F, 0.0f, din, F, tf32);
}

}  // namespace of
