// Device kernels (ops.h): recurrent units one time step at a time (rnn, gru, lstm, lif cells; their aux values for
// the backward), backprop through time one step back, and repeat / timeMean with their gradients.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/host_device.h"

namespace of::dev {

// Recurrent units (model/recurrent.cpp), one step t at a time; row r's sequence state is H values of h (the lif
// membrane) and of c (the lstm cell, the lif spikes). aux keeps, per row and step, what the backward needs (A values:
// rnn hprev h | gru hprev z r n rh | lstm hprev cprev i f g o tc | lif u s). P (rows, GH): the step's pre-activations,
// X_t W^T (+ h U^T) already in it. One index per (row, j < H) unless said otherwise.
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
OF_HOST_DEVICE float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }
OF_HOST_DEVICE float seq_noise(const SeqArgs& a, int64_t r, int j) {
    return a.E ? (a.sigmas ? a.sigmas[j] : a.sigma) * a.E[(r * a.T + a.t) * a.GH + j] : 0.0f;
}
OF_HOST_DEVICE void seq_input_at(const SeqArgs& a, int64_t i) {
    const int64_t r = i / a.GH;
    const int j = int(i % a.GH);
    a.P[i] = a.xw[(r / a.rep) * a.T * a.GH + int64_t(a.t) * a.GH + j];
}
OF_HOST_DEVICE void seq_cell_at(const SeqArgs& a, int64_t i) {
    const int64_t r = i / a.H;
    const int j = int(i % a.H), H = a.H;
    float* pr = a.P + r * a.GH;
    float& h = a.h[i];
    float& c = a.c[i];
    float* ax = a.aux + r * a.T * a.A + int64_t(a.t) * a.A;
    const int gates = a.cell == Cell::Gru ? 2 : a.GH / H;  // the gru candidate waits for r * h_prev
    for (int g = 0; g < gates; g++) pr[g * H + j] += a.b[g * H + j] + seq_noise(a, r, g * H + j);
    switch (a.cell) {
        case Cell::Rnn: ax[j] = h, h = ax[H + j] = tanhf(pr[j]); break;
        case Cell::Gru:
            ax[j] = h;
            ax[H + j] = sigm(pr[j]);
            ax[2 * H + j] = sigm(pr[H + j]);
            ax[4 * H + j] = ax[2 * H + j] * h;
            break;
        case Cell::Lstm: {
            ax[j] = h, ax[H + j] = c;
            const float ig = sigm(pr[j]), f = sigm(pr[H + j]), g = tanhf(pr[2 * H + j]), o = sigm(pr[3 * H + j]);
            c = f * c + ig * g;
            const float tc = tanhf(c);
            ax[2 * H + j] = ig, ax[3 * H + j] = f, ax[4 * H + j] = g, ax[5 * H + j] = o, ax[6 * H + j] = tc;
            h = o * tc;
            break;
        }
        case Cell::Lif: {
            const float m = a.beta * h * (1.0f - c) + pr[j];
            const float sp = m > a.threshold ? 1.0f : 0.0f;
            h = m, c = sp;
            ax[j] = m, ax[H + j] = sp;
            break;
        }
        default: break;
    }
}
// The gru candidate n = tanh(P_n + b_n + sigma E_n), P_n = W_n x + U_n (r * h_prev), then h = z h_prev + (1 - z) n.
OF_HOST_DEVICE void seq_candidate_at(const SeqArgs& a, int64_t i) {
    const int64_t r = i / a.H;
    const int j = int(i % a.H), H = a.H;
    const float* pr = a.P + r * a.GH;
    float* ax = a.aux + r * a.T * a.A + int64_t(a.t) * a.A;
    const float n = tanhf(pr[2 * H + j] + a.b[2 * H + j] + seq_noise(a, r, 2 * H + j));
    const float z = ax[H + j];
    ax[3 * H + j] = n;
    a.h[i] = z * a.h[i] + (1.0f - z) * n;
}
// This step's output (lif: its spikes) into the unit's output.
OF_HOST_DEVICE void seq_output_at(const SeqArgs& a, int64_t i) {
    const int64_t r = i / a.H;
    const int j = int(i % a.H);
    const float v = a.cell == Cell::Lif ? a.c[i] : a.h[i];
    a.out[a.return_sequences ? r * a.T * a.H + int64_t(a.t) * a.H + j : r * a.H + j] = v;
}

// Backprop through time, one step t (in reverse): dh (rows, H) carries dL/dh_t (lif: dL/ds_t), dc the lstm cell or the
// lif membrane carry; dP (rows, T GH) receives the step's pre-activation gradients. One index per (row, j < H).
struct SeqBackArgs {
    float* dh;
    float* dc;
    float* dP;
    const float* q;  // gru: d(r h_prev) = dP_n U_n, (rows, H)
    const float* aux;
    const float* dout;
    int T, t, H, GH, A;
    Cell cell;
    float beta, threshold, slope;
    int return_sequences;
};
OF_HOST_DEVICE void seq_back_cell_at(const SeqBackArgs& a, int64_t i) {
    const int64_t r = i / a.H;
    const int j = int(i % a.H), H = a.H;
    float& d = a.dh[i];
    float& cc = a.dc[i];
    if (a.return_sequences) d += a.dout[r * a.T * H + int64_t(a.t) * H + j];  // this step's output gradient joins
    else if (a.t == a.T - 1) d += a.dout[r * H + j];
    const float* ax = a.aux + r * a.T * a.A + int64_t(a.t) * a.A;
    float* g = a.dP + r * a.T * a.GH + int64_t(a.t) * a.GH;
    switch (a.cell) {
        case Cell::Rnn: g[j] = d * (1.0f - ax[H + j] * ax[H + j]); break;
        case Cell::Gru: {
            const float hp = ax[j], z = ax[H + j], n = ax[3 * H + j];
            g[2 * H + j] = d * (1.0f - z) * (1.0f - n * n);
            g[j] = d * (hp - n) * z * (1.0f - z);
            d = d * z;
            break;
        }
        case Cell::Lstm: {
            const float cp = ax[H + j], ig = ax[2 * H + j], f = ax[3 * H + j], gg = ax[4 * H + j], o = ax[5 * H + j],
                        tc = ax[6 * H + j];
            const float dct = cc + d * o * (1.0f - tc * tc);
            g[j] = dct * gg * ig * (1.0f - ig);
            g[H + j] = dct * cp * f * (1.0f - f);
            g[2 * H + j] = dct * ig * (1.0f - gg * gg);
            g[3 * H + j] = d * tc * o * (1.0f - o);
            cc = dct * f;
            break;
        }
        case Cell::Lif: {
            const float m = ax[j], sp = ax[H + j];
            const float x = fabsf(m - a.threshold) * a.slope + 1.0f;
            const float du = d / (x * x) + cc * a.beta * (1.0f - sp);
            g[j] = du, cc = du, d = 0.0f;
            break;
        }
        default: break;
    }
}
// gru: through r * h_prev: the r gate's pre-activation gradient and the direct path to h_prev.
OF_HOST_DEVICE void seq_back_reset_at(const SeqBackArgs& a, int64_t i) {
    const int64_t r = i / a.H;
    const int j = int(i % a.H), H = a.H;
    const float* ax = a.aux + r * a.T * a.A + int64_t(a.t) * a.A;
    const float hp = ax[j], rr = ax[2 * H + j];
    a.dP[r * a.T * a.GH + int64_t(a.t) * a.GH + H + j] = a.q[i] * hp * rr * (1.0f - rr);
    a.dh[i] += a.q[i] * rr;
}

// repeat (a vector -> T copies) and timeMean (T steps -> their mean), and their backward (recurrent.cpp). x (rows,
// T F) for the sequence side, (rows, F) for the other. One index per output value.
struct TimeArgs {
    float* y;
    const float* x;
    int T, F;
};
OF_HOST_DEVICE void repeat_at(const TimeArgs& a, int64_t i) {  // y (rows, T F)
    a.y[i] = a.x[i / (int64_t(a.T) * a.F) * a.F + i % a.F];
}
OF_HOST_DEVICE void repeat_backward_at(const TimeArgs& a, int64_t i) {  // y (rows, F) from x = dout (rows, T F)
    const int64_t r = i / a.F;
    const int f = int(i % a.F);
    float acc = 0.0f;
    for (int t = 0; t < a.T; t++) acc += a.x[(r * a.T + t) * a.F + f];
    a.y[i] = acc;
}
OF_HOST_DEVICE void time_mean_at(const TimeArgs& a, int64_t i) {  // y (rows, F)
    const int64_t r = i / a.F;
    const int f = int(i % a.F);
    float acc = 0.0f;
    for (int t = 0; t < a.T; t++) acc += a.x[(r * a.T + t) * a.F + f];
    a.y[i] = acc / float(a.T);
}
OF_HOST_DEVICE void time_mean_backward_at(const TimeArgs& a, int64_t i) {  // y (rows, T F) from x = dout (rows, F)
    a.y[i] = a.x[i / (int64_t(a.T) * a.F) * a.F + i % a.F] / float(a.T);
}

}  // namespace of::dev
