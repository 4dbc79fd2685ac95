// The recurrent units rnn, gru, lstm and lif (model/recurrent.h gives the cells and the noise): their forward,
// BPTT backward and LR reduction, their spec, shapes, parameters and init, then their passes on a device.
#include <algorithm>
#include <cmath>

#include "core/clones.h"
#include "core/shape.h"
#include "core/thread_pool.h"
#include "device/ops_recurrent.h"
#include "device/unit_pass.h"
#include "units/unit.h"

namespace of {

extern const UnitKind rnn_kind, gru_kind, lstm_kind, lif_kind;

namespace {

// Per-step aux layout (offsets in units of H): rnn hprev h | gru hprev z r n rh | lstm hprev cprev i f g o tc |
// lif u s.
int step_width(const Unit& u) {
    if (!u.recurrent()) return 0;
    return (u.kind == &gru_kind ? 5 : u.kind == &lstm_kind ? 7 : 2) * u.q.H;
}

// The cell kernels' name for u's kind (device/ops_recurrent.h).
dev::Cell seq_cell(const Unit& u) {
    return u.kind == &gru_kind    ? dev::Cell::Gru
           : u.kind == &lstm_kind ? dev::Cell::Lstm
           : u.kind == &lif_kind  ? dev::Cell::Lif
                                  : dev::Cell::Rnn;
}

struct Params {
    const float *W, *U, *b;
};

Params params_of(const Unit& u, const float* theta) {
    const int GH = u.q.G * u.q.H;
    const float* W = theta + u.w_off;
    return {W, u.q.has_u ? W + int64_t(GH) * u.q.F : nullptr, theta + u.b_off};
}

// A step's elementwise work: the device kernels' bodies (device/ops_recurrent.h) over whole rows, so that the loops
// over j vectorize (cloned per ISA; plain IEEE arithmetic rounds the same in every clone and on the device).
// OF_FLAT_CLONES: the cell bodies inline into each clone, so the loops vectorize there.
OF_FLAT_CLONES void cell_rows(const dev::SeqArgs& a, int r0, int r1) {
    for (int r = r0; r < r1; r++) dev::seq_cell_span(a, r, 0, a.H);
}
OF_FLAT_CLONES void candidate_rows(const dev::SeqArgs& a, int r0, int r1) {
    for (int r = r0; r < r1; r++) dev::seq_candidate_span(a, r, 0, a.H);
}
OF_FLAT_CLONES void back_cell_rows(const dev::SeqBackArgs& a, int r0, int r1) {
    for (int r = r0; r < r1; r++) dev::seq_back_cell_span(a, r, 0, a.H);
}
OF_FLAT_CLONES void back_reset_rows(const dev::SeqBackArgs& a, int r0, int r1) {
    for (int r = r0; r < r1; r++) dev::seq_back_reset_span(a, r, 0, a.H);
}

// Rows in tasks of a size fixed by the shape (results never depend on the thread count); `row_cycles` estimates one
// row's cost (small jobs run inline).
template <class Fn>
void over_rows(int rows, int64_t row_cycles, Fn&& fn) {
    const int chunk = std::max(8, (rows + 63) / 64), tasks = (rows + chunk - 1) / chunk;
    ThreadPool::instance().parallel_for(
        tasks, [&](int i) { fn(i * chunk, std::min(rows, (i + 1) * chunk)); }, row_cycles * rows);
}

}  // namespace

int64_t seq_aux_width(const Unit& u) { return int64_t(u.q.T) * step_width(u); }

void seq_forward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, float* out,
                 float* aux, const float* E, const float* sigma, float* scratch, const float* xw, int rep) {
    const int T = u.q.T, F = u.q.F, H = u.q.H, GH = u.q.G * H, A = step_width(u);
    const int64_t ras = int64_t(T) * A;  // aux row stride
    const Params p = params_of(u, theta);
    float* P = scratch;                 // rows x GH
    float* h = P + int64_t(rows) * GH;  // rows x H: h (or the lif membrane)
    float* c = h + int64_t(rows) * H;   // rows x H: lstm cell, lif spikes
    std::fill(h, h + int64_t(rows) * H, 0.0f);
    std::fill(c, c + int64_t(rows) * H, 0.0f);
    dev::SeqArgs a{P, h, c, aux, p.b, E, 0.0f, T, 0, H, GH, A, seq_cell(u), u.q.beta, u.q.threshold, u.q.slope};
    a.sigmas = sigma;
    for (int t = 0; t < T; t++) {
        a.t = t;
        // P = X_t W^T (+ h U^T for every gate but the gru candidate); the cell adds b + sigma E
        if (xw) {
            for (int r = 0; r < rows; r++) {
                const float* src = xw + int64_t(r / rep) * T * GH + int64_t(t) * GH;
                std::copy(src, src + GH, P + int64_t(r) * GH);
            }
        } else {
            k.gemm(P, GH, 1, in + int64_t(t) * F, int64_t(T) * F, 1, p.W, 1, F, nullptr, rows, GH, F, 1.0f, 0.0f);
        }
        if (u.q.has_u) {
            const int gates = u.kind == &gru_kind ? 2 * H : GH;
            k.gemm(P, GH, 1, h, H, 1, p.U, 1, H, nullptr, rows, gates, H, 1.0f, 1.0f);
        }
        over_rows(rows, int64_t(GH) * 8, [&](int r0, int r1) { cell_rows(a, r0, r1); });
        if (u.kind == &gru_kind) {  // the candidate: n = tanh(W_n x + U_n (r * h_prev) + b_n + sigma E_n)
            k.gemm(P + 2 * H, GH, 1, aux + int64_t(t) * A + 4 * H, ras, 1, p.U + int64_t(2) * H * H, 1, H, nullptr,
                   rows, H, H, 1.0f, 1.0f);
            over_rows(rows, int64_t(H) * 8, [&](int r0, int r1) { candidate_rows(a, r0, r1); });
        }
        // the output: this step's h (lif: spikes), at every step or the last
        if (u.q.return_sequences || t == T - 1) {
            const float* src = u.kind == &lif_kind ? c : h;
            for (int r = 0; r < rows; r++) {
                float* o = out + (u.q.return_sequences ? int64_t(r) * T * H + int64_t(t) * H : int64_t(r) * H);
                std::copy(src + int64_t(r) * H, src + int64_t(r + 1) * H, o);
            }
        }
    }
}

void seq_reduce(const KernelTable& k, const Unit& u, const float* in, int rows, const float* aux, const float* S,
                const float* w, float alpha, float* dW, float* wexp, bool with_w) {
    const int T = u.q.T, F = u.q.F, H = u.q.H, GH = u.q.G * H, A = step_width(u);
    const int n = rows * T;
    expand_row_weights(wexp, w, rows, T);
    if (with_w) k.gemm_tn(dW, S, in, wexp, GH, F, n, alpha, 0.0f);
    float* dU = dW + int64_t(GH) * F;
    if (u.q.has_u) {
        if (u.kind == &gru_kind) {
            k.gemm(dU, H, 1, S, 1, GH, aux, A, 1, wexp, 2 * H, H, n, alpha, 0.0f);  // z, r: h_prev
            k.gemm(dU + int64_t(2) * H * H, H, 1, S + 2 * H, 1, GH, aux + 4 * H, A, 1, wexp, H, H, n, alpha,
                   0.0f);  // n: r h_prev
        } else {
            k.gemm(dU, H, 1, S, 1, GH, aux, A, 1, wexp, GH, H, n, alpha, 0.0f);
        }
    }
    float* db = u.q.has_u ? dU + int64_t(GH) * H : dU;
    k.lr_bias_reduce(db, wexp, S, n, GH, alpha, false);
}

void seq_backward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, const float* aux,
                  const float* dout, float* dW, float* din, float* dP, float* scratch, float* wexp) {
    const int T = u.q.T, F = u.q.F, H = u.q.H, GH = u.q.G * H, A = step_width(u);
    const int64_t rps = int64_t(T) * GH;
    const Params p = params_of(u, theta);
    float* dh = scratch;                  // rows x H: the gradient flowing into h_{t} from later steps
    float* dc = dh + int64_t(rows) * H;   // rows x H: lstm cell carry, lif membrane carry
    float* tmp = dc + int64_t(rows) * H;  // rows x H
    std::fill(dh, dh + int64_t(rows) * H, 0.0f);
    std::fill(dc, dc + int64_t(rows) * H, 0.0f);
    const dev::Cell cell = seq_cell(u);
    dev::SeqBackArgs a{dh, dc, dP, tmp, aux, dout, T, 0, H, GH, A, cell, u.q.beta, u.q.threshold, u.q.slope};
    a.return_sequences = u.q.return_sequences ? 1 : 0;
    for (int t = T - 1; t >= 0; t--) {
        a.t = t;
        over_rows(rows, int64_t(GH) * 4, [&](int r0, int r1) { back_cell_rows(a, r0, r1); });
        float* dPt = dP + int64_t(t) * GH;  // rows with stride rps
        if (u.kind == &gru_kind) {          // through r * h_prev: d(r h_prev) = dP_n U_n
            k.gemm(tmp, H, 1, dPt + 2 * H, rps, 1, p.U + int64_t(2) * H * H, H, 1, nullptr, rows, H, H, 1.0f, 0.0f);
            over_rows(rows, int64_t(H) * 4, [&](int r0, int r1) { back_reset_rows(a, r0, r1); });
            k.gemm(dh, H, 1, dPt, rps, 1, p.U, H, 1, nullptr, rows, H, 2 * H, 1.0f, 1.0f);  // + [dP_z dP_r] U_zr
        } else if (u.kind == &rnn_kind || u.kind == &lstm_kind) {
            k.gemm(dh, H, 1, dPt, rps, 1, p.U, H, 1, nullptr, rows, H, GH, 1.0f, 0.0f);  // dh_prev = dP U
        }
    }
    if (dW) seq_reduce(k, u, in, rows, aux, dP, nullptr, 1.0f, dW, wexp);
    if (din) k.gemm_nn(din, dP, p.W, rows * T, F, GH, 1.0f, 0.0f);
}

namespace {

void read(const LayerReader& r, LayerSpec& l) {
    l.units = int(r.integer("units", 1, 1 << 20));
    l.return_sequences = r.flag_or("returnSequences", l.type->unit == &lif_kind);
    l.beta = float(r.number_or("beta", 0.9));
    l.threshold = float(r.number_or("threshold", 1.0));
    l.slope = float(r.number_or("slope", 5.0));
}

// (rows, T F) -> (rows, T H) with returnSequences, else (rows, H); parameters W (G H, F), U (G H, H) (not lif), b (G H)
Status build(const LayerSpec& l, ModelBuilder& b) {
    OF_CHECK(
        b.seq, Config,
        b.where + ": this layer needs a sequence input (inputShape [steps, features] on the first layer, or repeat())");
    Unit u{b.width, 0, -1, -1};
    SeqGeom& q = u.q;
    q.T = b.T, q.F = b.F;
    OF_TRY(check_positive(l.units, "recurrent units"));
    u.kind = l.type->unit;
    q.H = l.units;
    q.G = u.kind == &gru_kind ? 3 : u.kind == &lstm_kind ? 4 : 1;
    q.has_u = u.kind != &lif_kind;
    q.return_sequences = l.return_sequences;
    q.beta = l.beta, q.threshold = l.threshold, q.slope = l.slope;
    OF_CHECK(q.beta >= 0.0f && q.beta <= 1.0f && std::isfinite(q.threshold) && q.slope > 0.0f, Config,
             b.where + ": lif needs beta in [0, 1], a finite threshold and a positive slope");
    const uint64_t GH = uint64_t(q.G) * q.H;
    OF_TRY(b.params(u, GH, uint64_t(b.F) + (q.has_u ? uint64_t(q.H) : 0), "recurrent weights", GH));
    if (q.return_sequences) b.F = q.H;
    else b.seq = false;
    OF_TRY(b.output(u, uint64_t(q.return_sequences ? q.T : 1), uint64_t(q.H)));
    b.add(u);
    return {};
}

// W and U uniform in +-1/sqrt(H) (PyTorch's rule), lif's W Glorot-uniform; b zero, but an lstm's forget gate starts at
// 1
void init(const Unit& u, float* theta, uint64_t seed, uint32_t unit) {
    const float bound = u.kind == &lif_kind ? std::sqrt(6.0f / float(u.q.F + u.q.H)) : 1.0f / std::sqrt(float(u.q.H));
    init_uniform(u, theta, bound, seed, unit);
    if (u.kind == &lstm_kind) std::fill(theta + u.b_off + u.q.H, theta + u.b_off + 2 * u.q.H, 1.0f);
}

void tensors(const Unit& u, const std::string& name, std::vector<UnitTensor>& out) {  // gates in recurrent.h's order
    const int GH = u.q.G * u.q.H;
    out.push_back({name + ".weight", u.w_off, {GH, u.q.F}});
    if (u.q.has_u) out.push_back({name + ".recurrent", u.w_off + int64_t(GH) * u.q.F, {GH, u.q.H}});
    out.push_back({name + ".bias", u.b_off, {GH}});
}

void forward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, float* out, float*,
             const SeqCtx* sq) {
    seq_forward(k, u, theta, in, rows, out, sq->aux, nullptr, nullptr, sq->scratch);
}

void backward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, const float* dv,
              float* dW, float* din, float*, const SeqCtx* sq) {
    seq_backward(k, u, theta, in, rows, sq->aux, dv, dW, din, sq->dP, sq->scratch, sq->wexp);
}

int noise_width(const Unit& u) { return u.q.T * u.q.G * u.q.H; }  // every gate at every step

// On a device (DeviceTrainer::seq_*, below); BPTT keeps the unit's aux
Status device_forward(const UnitPass& p, const float* x, float* v) {
    return p.t.seq_forward(p.m, p.l, p.rows, x, v, nullptr, 0.0f, nullptr, 1, p.tf32);
}
Status device_backward(const UnitPass& p, const float* x, const float* dv, float, bool, float* din) {
    return p.t.seq_backward(p.m, p.l, p.rows, x, dv, din, p.tf32);
}
const DeviceUnitOps device{false, device_forward, device_backward};

}  // namespace

// On a device (DeviceTrainer's recurrent passes, trainer.h; kernels in ops_recurrent.h), the same algorithm: a step
// at a time, the GEMMs of the step (X_t W^T, or the shared X W^T of ULR's first unit; + h U^T; the gru candidate's
// U_n (r h_prev)) then one kernel for the cell; the backward in reverse with the same GEMMs transposed. The aux layout
// is the one above, so the reductions read the same values: dW = S^T X over (row, step) rows, dU = S^T h_prev (gru:
// r h_prev for the candidate), db = column sums.

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
    float *h = seq_h_.f(), *c = seq_c_.f();
    OF_TRY(d->zero(h, size_t(rows) * H * sizeof(float)));
    OF_TRY(d->zero(c, size_t(rows) * H * sizeof(float)));
    const float* b = theta_ + u.b_off;
    const dev::Cell cell = seq_cell(u);
    const int all_steps = u.q.return_sequences ? 1 : 0;
    dev::SeqArgs a{P, h,    c,        aux,           b,         E,   sigma,     T,  0,   H,     GH,
                   A, cell, u.q.beta, u.q.threshold, u.q.slope, out, all_steps, xw, rep, sigmas};
    const int64_t n = int64_t(rows) * H;
    for (int t = 0; t < T; t++) {
        a.t = t;
        if (xw) OF_TRY(d->seq_input(a, int64_t(rows) * GH));
        else OF_TRY(d->gemm(false, true, rows, GH, F, 1.0f, in + int64_t(t) * F, T * F, W, F, 0.0f, P, GH, tf32));
        if (U)
            OF_TRY(
                d->gemm(false, true, rows, u.kind == &gru_kind ? 2 * H : GH, H, 1.0f, h, H, U, H, 1.0f, P, GH, tf32));
        OF_TRY(d->seq_cell(a, n));
        if (u.kind == &gru_kind) {  // the candidate reads r * h_prev
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
        if (u.kind == &gru_kind) {  // z, r: h_prev; the candidate: r h_prev
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
    const float* W = params_.f() + u.w_off;
    const float* U = u.q.has_u ? W + int64_t(GH) * F : nullptr;
    float* dP = seq_dp_.f();
    float *dh = seq_dh_.f(), *dc = seq_dc_.f(), *q = seq_q_.f(), *aux = aux_[size_t(l)]->f();
    OF_TRY(d->zero(dh, size_t(n) * sizeof(float)));
    OF_TRY(d->zero(dc, size_t(n) * sizeof(float)));
    const dev::Cell cell = seq_cell(u);
    const int all_steps = u.q.return_sequences ? 1 : 0;
    dev::SeqBackArgs a{dh, dc, dP, q, aux, dout, T, 0, H, GH, A, cell, u.q.beta, u.q.threshold, u.q.slope, all_steps};
    for (int t = T - 1; t >= 0; t--) {
        a.t = t;
        OF_TRY(d->seq_back_cell(a, n));
        float* dPt = dP + int64_t(t) * GH;
        if (u.kind == &gru_kind) {  // through r * h_prev: d(r h_prev) = dP_n U_n; then + [dP_z dP_r] U_zr
            OF_TRY(d->gemm(false, false, rows, H, H, 1.0f, dPt + 2 * H, T * GH, U + int64_t(2) * H * H, H, 0.0f, q, H,
                           tf32));
            OF_TRY(d->seq_back_reset(a, n));
            OF_TRY(d->gemm(false, false, rows, H, 2 * H, 1.0f, dPt, T * GH, U, H, 1.0f, dh, H, tf32));
        } else if (U) {  // dh_prev = dP U
            OF_TRY(d->gemm(false, false, rows, H, GH, 1.0f, dPt, T * GH, U, H, 0.0f, dh, H, tf32));
        }
    }
    OF_TRY(seq_reduce(m, l, rows, in, dP, 1.0f, true, tf32));
    if (!din) return {};
    return d->gemm(false, false, rows * T, F, GH, 1.0f, dP, GH, W, F, 0.0f, din, F, tf32);
}

extern const LayerType rnn_layer{"rnn", &rnn_kind, read, build};
extern const LayerType gru_layer{"gru", &gru_kind, read, build};
extern const LayerType lstm_layer{"lstm", &lstm_kind, read, build};
extern const LayerType lif_layer{"lif", &lif_kind, read, build};
extern const UnitKind rnn_kind{
    UnitFamily::Recurrent, "rnn", &device, init, tensors, forward, backward, nullptr, noise_width};
extern const UnitKind gru_kind{
    UnitFamily::Recurrent, "gru", &device, init, tensors, forward, backward, nullptr, noise_width};
extern const UnitKind lstm_kind{
    UnitFamily::Recurrent, "lstm", &device, init, tensors, forward, backward, nullptr, noise_width};
extern const UnitKind lif_kind{
    UnitFamily::Recurrent, "lif", &device, init, tensors, forward, backward, nullptr, noise_width};

}  // namespace of
