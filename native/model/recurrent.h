// Recurrent units: Elman rnn, gru, lstm and leaky integrate-and-fire (lif) layers over T steps (units/recurrent.cpp).
// A row holds a sequence, step-major: row r, step t, feature f at (r T + t) F + f.
//
// Every gate's pre-activation at every step has the form  P = W x_t + U h^_t + b  (h^ = h_{t-1}, or r * h_{t-1}
// for the gru candidate; lif has no U), so ULR noise goes on each P (sigma E, E of T G H values per row) and
// the LR gradient sums the score terms over time:  dW = (1/sigma) sum_t (w s(E_t))^T x_t,
// dU = (1/sigma) sum_t (w s(E_t))^T h^_t,  db likewise -- the steps play the part of a convolution's output
// positions (issue 4). BP is backprop through time; lif's spike (a Heaviside step) gets the surrogate
// derivative 1 / (1 + slope |u - threshold|)^2 and its reset is not differentiated (the usual choice).
//
// Cells (sigmoid s, tanh):
//   rnn:  h = tanh(P)
//   gru:  z = s(P_z), r = s(P_r), n = tanh(W_n x + U_n (r * h_prev) + b_n), h = z * h_prev + (1 - z) * n
//   lstm: i, f, o = s(P_i, P_f, P_o), g = tanh(P_g), c = f * c_prev + i * g, h = o * tanh(c)
//   lif:  u = beta u_prev (1 - s_prev) + P, s = step(u - threshold); the output is the spikes s
#pragma once
#include "kernels/kernels.h"
#include "model/model.h"

namespace of {
namespace dev {
enum class Cell : int;  // device/ops_recurrent.h
}

// Floats per row the unit keeps from its forward for its backward and LR reduction.
int64_t seq_aux_width(const Unit& u);

// Forward on `rows` rows: in (rows, T F) -> out (rows, O) (all steps' h, or the last), aux (rows, aux width).
// E (rows, T G H): noise added to every pre-activation times sigma (G H values: one per gate unit, the same at every
// step), or nullptr for the clean forward (sigma unused).
// scratch: rows x (2 G H + 2 H) floats.
// xw (optional): the input projections X W^T already computed, (rows / rep, T G H), row r using row r / rep (the
// shared clean input of ULR's copies); `in` is then not read.
void seq_forward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, float* out,
                 float* aux, const float* E, const float* sigma, float* scratch, const float* xw = nullptr,
                 int rep = 1);
// LR / BP reduction from per-step pre-activation gradients S (rows, T G H), row weights w (rows, or nullptr)
// and scale alpha: dW then dU then db at dW (overwritten). wexp: rows T floats.
// with_w false: dW's W part is left alone (its gradient is reduced elsewhere) and `in` is not read.
void seq_reduce(const KernelTable& k, const Unit& u, const float* in, int rows, const float* aux, const float* S,
                const float* w, float alpha, float* dW, float* wexp, bool with_w = true);
// Backprop through time from dout (rows, O): the parameter gradients into dW (nullptr: none) and din (rows, T F)
// (nullptr: none). dP: rows x T G H scratch (the pre-activation gradients); scratch: rows x (2 G H + 4 H).
void seq_backward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, const float* aux,
                  const float* dout, float* dW, float* din, float* dP, float* scratch, float* wexp);

}  // namespace of
