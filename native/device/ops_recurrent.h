// Device kernels (ops.h): recurrent units one time step at a time (rnn, gru, lstm, lif cells; their aux values for
// the backward), backprop through time one step back, and repeat / timeMean with their gradients.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/fastmath.h"
#include "core/host_device.h"

namespace of::dev {

// Recurrent units (model/recurrent.cpp), one step t at a time; row r's sequence state is H values of h (the lif
// membrane) and of c (the lstm cell, the lif spikes). aux keeps, per row and step, what the backward needs (A values:
// rnn hprev h | gru hprev z r n rh | lstm hprev cprev i f g o tc | lif u s). P (rows, GH): the step's pre-activations,
// X_t W^T (+ h U^T) already in it.
//
// The cells' arithmetic is written once, over a span j0 <= j < j1 of one row, each H-wide slot (a gate's
// pre-activations, an aux value, a state) its own pointer, declared not to overlap: a device kernel runs a span of one
// index, the CPU engine (units/recurrent.cpp) whole rows, where the loops over j vectorize without run-time alias
// checks. Every value sees the same operations either way, so the two give the same bits.
#define OF_RESTRICT __restrict__
OF_HOST_DEVICE void rnn_cell(const float* OF_RESTRICT p, float* OF_RESTRICT h, float* OF_RESTRICT hprev,
                             float* OF_RESTRICT hnew, int j0, int j1) {
    for (int j = j0; j < j1; j++) hprev[j] = h[j], h[j] = hnew[j] = tanh_f32(p[j]);
}
// gru: the gates z, r and r * h_prev; the candidate waits for U_n (r * h_prev) (gru_candidate).
OF_HOST_DEVICE void gru_gates(const float* OF_RESTRICT pz, const float* OF_RESTRICT pr, const float* OF_RESTRICT h,
                              float* OF_RESTRICT hprev, float* OF_RESTRICT z, float* OF_RESTRICT r,
                              float* OF_RESTRICT rh, int j0, int j1) {
    for (int j = j0; j < j1; j++) {
        const float rg = sigmoid_f32(pr[j]);
        hprev[j] = h[j], z[j] = sigmoid_f32(pz[j]), r[j] = rg, rh[j] = rg * h[j];
    }
}
OF_HOST_DEVICE void gru_candidate(const float* OF_RESTRICT pn, const float* OF_RESTRICT z, float* OF_RESTRICT n,
                                  float* OF_RESTRICT h, int j0, int j1) {
    for (int j = j0; j < j1; j++) {
        const float nj = tanh_f32(pn[j]);
        n[j] = nj, h[j] = z[j] * h[j] + (1.0f - z[j]) * nj;
    }
}
// lstm: ax holds the slots hprev cprev i f g o tc.
OF_HOST_DEVICE void lstm_cell(const float* OF_RESTRICT pi, const float* OF_RESTRICT pf, const float* OF_RESTRICT pg,
                              const float* OF_RESTRICT po, float* OF_RESTRICT h, float* OF_RESTRICT c,
                              float* OF_RESTRICT hprev, float* OF_RESTRICT cprev, float* OF_RESTRICT ai,
                              float* OF_RESTRICT af, float* OF_RESTRICT ag, float* OF_RESTRICT ao,
                              float* OF_RESTRICT atc, int j0, int j1) {
    for (int j = j0; j < j1; j++) {
        const float i = sigmoid_f32(pi[j]), f = sigmoid_f32(pf[j]), g = tanh_f32(pg[j]), o = sigmoid_f32(po[j]);
        const float cn = f * c[j] + i * g, tc = tanh_f32(cn);
        hprev[j] = h[j], cprev[j] = c[j], ai[j] = i, af[j] = f, ag[j] = g, ao[j] = o, atc[j] = tc;
        c[j] = cn, h[j] = o * tc;
    }
}
// lif: h holds the membrane u, c the last spikes s.
OF_HOST_DEVICE void lif_cell(const float* OF_RESTRICT p, float* OF_RESTRICT h, float* OF_RESTRICT c,
                             float* OF_RESTRICT au, float* OF_RESTRICT as, float beta, float threshold, int j0,
                             int j1) {
    for (int j = j0; j < j1; j++) {
        const float m = beta * h[j] * (1.0f - c[j]) + p[j];
        const float sp = m > threshold ? 1.0f : 0.0f;
        h[j] = m, c[j] = sp, au[j] = m, as[j] = sp;
    }
}

enum class Cell : int { Rnn, Gru, Lstm, Lif };
struct SeqArgs {
    float* P;
    float* h;
    float* c;
    float* aux;
    const float* b;
    const float* E;  // noise (rows, T GH), or nullptr
    float sigma;
    int T, t, H, GH, A;
    Cell cell;
    float beta, threshold, slope;
    float* out;  // seq_output: the unit's output (rows, O)
    int return_sequences;
    const float* xw;  // seq_input: X W^T of row r / rep, (rows / rep, T GH); one index per (row, j < GH)
    int rep;
    const float* sigmas = nullptr;  // per-channel sigma: one per gate value (GH) instead of sigma
};
// p += b + sigma E over the gate values k0 <= k < k1 of row r.
OF_HOST_DEVICE void seq_bias_noise(const SeqArgs& a, int64_t r, int k0, int k1) {
    float* OF_RESTRICT p = a.P + r * a.GH;
    const float* OF_RESTRICT b = a.b;
    if (!a.E) {
        for (int k = k0; k < k1; k++) p[k] += b[k];
        return;
    }
    const float* OF_RESTRICT e = a.E + (r * a.T + a.t) * a.GH;
    if (a.sigmas)
        for (int k = k0; k < k1; k++) p[k] += b[k] + a.sigmas[k] * e[k];
    else
        for (int k = k0; k < k1; k++) p[k] += b[k] + a.sigma * e[k];
}
// Row r's span of the step: bias and noise, then the cell (gru: its gates).
OF_HOST_DEVICE void seq_cell_span(const SeqArgs& a, int64_t r, int j0, int j1) {
    const int H = a.H;
    for (int g = 0; g < (a.cell == Cell::Gru ? 2 : a.GH / H); g++) seq_bias_noise(a, r, g * H + j0, g * H + j1);
    const float* p = a.P + r * a.GH;
    float* h = a.h + r * H;
    float* c = a.c + r * H;
    float* ax = a.aux + r * a.T * a.A + int64_t(a.t) * a.A;
    switch (a.cell) {
        case Cell::Rnn: rnn_cell(p, h, ax, ax + H, j0, j1); break;
        case Cell::Gru: gru_gates(p, p + H, h, ax, ax + H, ax + 2 * H, ax + 4 * H, j0, j1); break;
        case Cell::Lstm:
            lstm_cell(p, p + H, p + 2 * H, p + 3 * H, h, c, ax, ax + H, ax + 2 * H, ax + 3 * H, ax + 4 * H, ax + 5 * H,
                      ax + 6 * H, j0, j1);
            break;
        case Cell::Lif: lif_cell(p, h, c, ax, ax + H, a.beta, a.threshold, j0, j1); break;
        default: break;
    }
}
// The gru candidate n = tanh(P_n + b_n + sigma E_n), P_n = W_n x + U_n (r * h_prev), then h = z h_prev + (1 - z) n.
OF_HOST_DEVICE void seq_candidate_span(const SeqArgs& a, int64_t r, int j0, int j1) {
    const int H = a.H;
    seq_bias_noise(a, r, 2 * H + j0, 2 * H + j1);
    float* ax = a.aux + r * a.T * a.A + int64_t(a.t) * a.A;
    gru_candidate(a.P + r * a.GH + 2 * H, ax + H, ax + 3 * H, a.h + r * H, j0, j1);
}
OF_HOST_DEVICE void seq_input_at(const SeqArgs& a, int64_t i) {
    const int64_t r = i / a.GH;
    const int j = int(i % a.GH);
    a.P[i] = a.xw[(r / a.rep) * a.T * a.GH + int64_t(a.t) * a.GH + j];
}
OF_HOST_DEVICE void seq_cell_at(const SeqArgs& a, int64_t i) {
    const int j = int(i % a.H);
    seq_cell_span(a, i / a.H, j, j + 1);
}
OF_HOST_DEVICE void seq_candidate_at(const SeqArgs& a, int64_t i) {
    const int j = int(i % a.H);
    seq_candidate_span(a, i / a.H, j, j + 1);
}
// This step's output (lif: its spikes) into the unit's output.
OF_HOST_DEVICE void seq_output_at(const SeqArgs& a, int64_t i) {
    const int64_t r = i / a.H;
    const int j = int(i % a.H);
    const float v = a.cell == Cell::Lif ? a.c[i] : a.h[i];
    a.out[a.return_sequences ? r * a.T * a.H + int64_t(a.t) * a.H + j : r * a.H + j] = v;
}

// Backprop through time, one step t (in reverse): d (dh) carries dL/dh_t (lif: dL/ds_t), cc (dc) the lstm cell or the
// lif membrane carry; the g slots receive the step's pre-activation gradients. Spans of one row, as above.
OF_HOST_DEVICE void rnn_back(const float* OF_RESTRICT hnew, const float* OF_RESTRICT d, float* OF_RESTRICT g, int j0,
                             int j1) {
    for (int j = j0; j < j1; j++) g[j] = d[j] * (1.0f - hnew[j] * hnew[j]);
}
// gru: the candidate's and z's pre-activation gradients, and the direct path to h_prev (r's: gru_back_reset).
OF_HOST_DEVICE void gru_back(const float* OF_RESTRICT hprev, const float* OF_RESTRICT z, const float* OF_RESTRICT n,
                             float* OF_RESTRICT d, float* OF_RESTRICT gz, float* OF_RESTRICT gn, int j0, int j1) {
    for (int j = j0; j < j1; j++) {
        gn[j] = d[j] * (1.0f - z[j]) * (1.0f - n[j] * n[j]);
        gz[j] = d[j] * (hprev[j] - n[j]) * z[j] * (1.0f - z[j]);
        d[j] = d[j] * z[j];
    }
}
// gru, through r * h_prev (q = d(r h_prev) = dP_n U_n): r's pre-activation gradient and the path to h_prev.
OF_HOST_DEVICE void gru_back_reset(const float* OF_RESTRICT hprev, const float* OF_RESTRICT r,
                                   const float* OF_RESTRICT q, float* OF_RESTRICT d, float* OF_RESTRICT gr, int j0,
                                   int j1) {
    for (int j = j0; j < j1; j++) {
        gr[j] = q[j] * hprev[j] * r[j] * (1.0f - r[j]);
        d[j] += q[j] * r[j];
    }
}
// lstm: ax's slots cprev i f g o tc from cp on; the gate gradients gi gf gg go.
OF_HOST_DEVICE void lstm_back(const float* OF_RESTRICT cp, const float* OF_RESTRICT ai, const float* OF_RESTRICT af,
                              const float* OF_RESTRICT ag, const float* OF_RESTRICT ao, const float* OF_RESTRICT atc,
                              const float* OF_RESTRICT d, float* OF_RESTRICT cc, float* OF_RESTRICT gi,
                              float* OF_RESTRICT gf, float* OF_RESTRICT gg, float* OF_RESTRICT go, int j0, int j1) {
    for (int j = j0; j < j1; j++) {
        const float i = ai[j], f = af[j], g = ag[j], o = ao[j], tc = atc[j];
        const float dct = cc[j] + d[j] * o * (1.0f - tc * tc);
        gi[j] = dct * g * i * (1.0f - i);
        gf[j] = dct * cp[j] * f * (1.0f - f);
        gg[j] = dct * i * (1.0f - g * g);
        go[j] = d[j] * tc * o * (1.0f - o);
        cc[j] = dct * f;
    }
}
// lif: cc carries dL/du_{t+1}, d holds dL/ds_t; the spike's surrogate derivative 1 / (1 + slope |u - threshold|)^2.
OF_HOST_DEVICE void lif_back(const float* OF_RESTRICT au, const float* OF_RESTRICT as, float* OF_RESTRICT d,
                             float* OF_RESTRICT cc, float* OF_RESTRICT g, float beta, float threshold, float slope,
                             int j0, int j1) {
    for (int j = j0; j < j1; j++) {
        const float x = fabsf(au[j] - threshold) * slope + 1.0f;
        const float du = d[j] / (x * x) + cc[j] * beta * (1.0f - as[j]);
        g[j] = du, cc[j] = du, d[j] = 0.0f;
    }
}

struct SeqBackArgs {
    float* dh;
    float* dc;
    float* dP;       // (rows, T GH)
    const float* q;  // gru: d(r h_prev) = dP_n U_n, (rows, H)
    const float* aux;
    const float* dout;
    int T, t, H, GH, A;
    Cell cell;
    float beta, threshold, slope;
    int return_sequences;
};
OF_HOST_DEVICE void seq_back_cell_span(const SeqBackArgs& a, int64_t r, int j0, int j1) {
    const int H = a.H;
    float* OF_RESTRICT d = a.dh + r * H;
    float* cc = a.dc + r * H;
    const float* OF_RESTRICT dy = a.return_sequences ? a.dout + r * a.T * H + int64_t(a.t) * H
                                  : a.t == a.T - 1   ? a.dout + r * H
                                                     : nullptr;
    if (dy)  // this step's output gradient joins
        for (int j = j0; j < j1; j++) d[j] += dy[j];
    const float* ax = a.aux + r * a.T * a.A + int64_t(a.t) * a.A;
    float* g = a.dP + r * a.T * a.GH + int64_t(a.t) * a.GH;
    switch (a.cell) {
        case Cell::Rnn: rnn_back(ax + H, d, g, j0, j1); break;
        case Cell::Gru: gru_back(ax, ax + H, ax + 3 * H, d, g, g + 2 * H, j0, j1); break;
        case Cell::Lstm:
            lstm_back(ax + H, ax + 2 * H, ax + 3 * H, ax + 4 * H, ax + 5 * H, ax + 6 * H, d, cc, g, g + H, g + 2 * H,
                      g + 3 * H, j0, j1);
            break;
        case Cell::Lif: lif_back(ax, ax + H, d, cc, g, a.beta, a.threshold, a.slope, j0, j1); break;
        default: break;
    }
}
OF_HOST_DEVICE void seq_back_reset_span(const SeqBackArgs& a, int64_t r, int j0, int j1) {
    const float* ax = a.aux + r * a.T * a.A + int64_t(a.t) * a.A;
    gru_back_reset(ax, ax + 2 * a.H, a.q + r * a.H, a.dh + r * a.H, a.dP + r * a.T * a.GH + int64_t(a.t) * a.GH + a.H,
                   j0, j1);
}
OF_HOST_DEVICE void seq_back_cell_at(const SeqBackArgs& a, int64_t i) {
    const int j = int(i % a.H);
    seq_back_cell_span(a, i / a.H, j, j + 1);
}
OF_HOST_DEVICE void seq_back_reset_at(const SeqBackArgs& a, int64_t i) {
    const int j = int(i % a.H);
    seq_back_reset_span(a, i / a.H, j, j + 1);
}

// repeat (a vector -> T copies) and timeMean (T steps -> their mean), and their backward (units/sequence.cpp runs
// them too). x (rows, T F) for the sequence side, (rows, F) for the other. Spans of features f0 <= f < f1 of a row
// (the CPU: whole rows); one index per output value.
struct TimeArgs {
    float* y;
    const float* x;
    int T, F;
};
// y (rows, T F) at row r, step t: x's row r (repeat), or it / T (timeMean's backward, x = dout (rows, F))
OF_HOST_DEVICE void step_copy_span(const TimeArgs& a, int64_t r, int t, int f0, int f1, bool mean) {
    float* y = a.y + (r * a.T + t) * a.F;
    for (int f = f0; f < f1; f++) y[f] = mean ? a.x[r * a.F + f] / float(a.T) : a.x[r * a.F + f];
}
// y (rows, F) at row r: the sum over the steps, in order (repeat's backward, x = dout (rows, T F)), or it / T
// (timeMean); y and x declared apart, so a device index keeps its sum in a register
OF_HOST_DEVICE void step_sum(float* OF_RESTRICT y, const float* OF_RESTRICT x, int T, int F, int f0, int f1,
                             bool mean) {
    for (int f = f0; f < f1; f++) y[f] = 0.0f;
    for (int t = 0; t < T; t++)
        for (int f = f0; f < f1; f++) y[f] += x[int64_t(t) * F + f];
    for (int f = f0; mean && f < f1; f++) y[f] /= float(T);
}
OF_HOST_DEVICE void step_sum_span(const TimeArgs& a, int64_t r, int f0, int f1, bool mean) {
    step_sum(a.y + r * a.F, a.x + r * a.T * a.F, a.T, a.F, f0, f1, mean);
}
OF_HOST_DEVICE void repeat_at(const TimeArgs& a, int64_t i) {
    step_copy_span(a, i / a.F / a.T, int(i / a.F % a.T), int(i % a.F), int(i % a.F) + 1, false);
}
OF_HOST_DEVICE void repeat_backward_at(const TimeArgs& a, int64_t i) {
    step_sum_span(a, i / a.F, int(i % a.F), int(i % a.F) + 1, false);
}
OF_HOST_DEVICE void time_mean_at(const TimeArgs& a, int64_t i) {
    step_sum_span(a, i / a.F, int(i % a.F), int(i % a.F) + 1, true);
}
OF_HOST_DEVICE void time_mean_backward_at(const TimeArgs& a, int64_t i) {
    step_copy_span(a, i / a.F / a.T, int(i / a.F % a.T), int(i % a.F), int(i % a.F) + 1, true);
}

#undef OF_RESTRICT

#define OF_RECURRENT_KERNELS(X)    \
    X(seq_input, SeqArgs)          \
    X(seq_cell, SeqArgs)           \
    X(seq_candidate, SeqArgs)      \
    X(seq_output, SeqArgs)         \
    X(seq_back_cell, SeqBackArgs)  \
    X(seq_back_reset, SeqBackArgs) \
    X(repeat, TimeArgs)            \
    X(repeat_backward, TimeArgs)   \
    X(time_mean, TimeArgs)         \
    X(time_mean_backward, TimeArgs)

}  // namespace of::dev
