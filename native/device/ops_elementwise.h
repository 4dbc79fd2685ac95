// Device kernels (ops.h): one index per value, no reductions across indices. Dropout (its mask a Philox word per
// (sample, value)), a residual or concat block's end and the concat's gradient split, y = a + s b and y (+)= x, and
// binary / ternary weights (one index per row: the mean |w| of the row, in the CPU's order).
#pragma once
#include <cmath>
#include <cstdint>

#include "device/ops_activation.h"
#include "rng/philox.h"

namespace of::dev {

// Dropout (units/dropout.cpp runs it too): y = x / (1 - rate), or 0 where the Philox word of (sample, value) is below
// rate 2^32; the mask is one per sample (row r is sample sample0 + r / rep), shared by its copies. A span of a row
// draws one Philox block per 4 values; one index per value.
struct DropoutArgs {
    float* y;
    const float* x;
    int O, rep;
    uint32_t sample0;
    uint64_t seed;
    uint32_t step, unit;
    float rate;
};
OF_HOST_DEVICE void dropout_span(const DropoutArgs& a, int64_t r, int j0, int j1) {
    const uint32_t sample = a.sample0 + uint32_t(r / a.rep);
    const double cut = double(a.rate) * 4294967296.0;
    const float scale = 1.0f / (1.0f - a.rate);
    const float* x = a.x + r * a.O;
    float* y = a.y + r * a.O;
    for (int b = j0 / 4; 4 * b < j1; b++) {  // Philox block b: the words of values 4 b .. 4 b + 3
        const U32x4 w = philox4x32_10(uint32_t(b), sample, philox_stream(kStreamMask, a.unit), a.step, uint32_t(a.seed),
                                      uint32_t(a.seed >> 32));
        const int lo = 4 * b > j0 ? 4 * b : j0, hi = 4 * b + 4 < j1 ? 4 * b + 4 : j1;
        for (int j = lo; j < hi; j++) y[j] = double(w.v[j - 4 * b]) < cut ? 0.0f : x[j] * scale;
    }
}
OF_HOST_DEVICE void dropout_at(const DropoutArgs& a, int64_t i) {
    dropout_span(a, i / a.O, int(i % a.O), int(i % a.O) + 1);
}

// A residual block's end (units/block.cpp residual_add): s = inner + src (row r reads src row r / rep), a =
// post_act(s); sum, when given, keeps s for BP. inner and a may be the same buffer. One index per value.
struct SkipArgs {
    float* a;
    float* sum;  // nullptr: not kept
    const float* inner;
    const float* src;
    int O, rep;
    Act act;
    float alpha;
};
OF_HOST_DEVICE void skip_add_at(const SkipArgs& a, int64_t i) {
    const int64_t r = i / a.O;
    const float s = a.inner[i] + a.src[(r / a.rep) * a.O + i % a.O];
    if (a.sum) a.sum[i] = s;
    a.a[i] = act_value(s, a.act, a.alpha);
}

// A concat block's end (units/block.cpp runs it too): per position p of P, the block input's C values (row r reads src
// row r / rep), then f's Co values. Spans of values k0 <= k < k1 of a row's position; one index per output value.
struct ConcatArgs {
    float* out;
    const float* f;
    const float* src;
    int P, C, Co, rep;
};
OF_HOST_DEVICE void concat_span(const ConcatArgs& a, int64_t r, int p, int k0, int k1) {
    float* out = a.out + (r * a.P + p) * (a.C + a.Co);
    const float* s = a.src + (r / a.rep * a.P + p) * a.C;
    const float* f = a.f + (r * a.P + p) * a.Co;
    for (int k = k0; k < k1; k++) out[k] = k < a.C ? s[k] : f[k - a.C];
}
// Value i of a concat's output (P positions of C + Co values per row): its row, position and place in the position.
struct ConcatAt {
    int64_t r;
    int p, k;
};
OF_HOST_DEVICE ConcatAt concat_index(int64_t i, int P, int C, int Co) {
    const int w = C + Co;
    return {i / (int64_t(P) * w), int(i / w % P), int(i % w)};
}
OF_HOST_DEVICE void concat_at(const ConcatArgs& a, int64_t i) {
    const auto [r, p, k] = concat_index(i, a.P, a.C, a.Co);
    concat_span(a, r, p, k, k + 1);
}
// Its gradient split: the first C values of each position to dsrc, the rest to df. One index per value of dout.
struct ConcatBackArgs {
    float* df;
    float* dsrc;
    const float* dout;
    int P, C, Co;
};
OF_HOST_DEVICE void concat_backward_span(const ConcatBackArgs& a, int64_t r, int p, int k0, int k1) {
    const float* d = a.dout + (r * a.P + p) * (a.C + a.Co);
    float* ds = a.dsrc + (r * a.P + p) * a.C;
    float* df = a.df + (r * a.P + p) * a.Co;
    for (int k = k0; k < k1; k++)
        if (k < a.C) ds[k] = d[k];
        else df[k - a.C] = d[k];
}
OF_HOST_DEVICE void concat_backward_at(const ConcatBackArgs& a, int64_t i) {
    const auto [r, p, k] = concat_index(i, a.P, a.C, a.Co);
    concat_backward_span(a, r, p, k, k + 1);
}

// y = a + s b (s b when a is nullptr), one index per value (weight perturbation: theta0 + s z; its seed replay: g + c
// z; a module's boundary gradient: alpha D).
struct AxpyArgs {
    float* y;
    const float* a;
    const float* b;
    float s;
};
OF_HOST_DEVICE void axpy_at(const AxpyArgs& a, int64_t i) { a.y[i] = a.a ? a.a[i] + a.s * a.b[i] : a.s * a.b[i]; }

// y = x, or y += x when accumulating; y = x m[i % M] when m is given. One index per value.
struct AddArgs {
    float* y;
    const float* x;
    int accumulate;
    const float* m = nullptr;
    int M = 1;
};
OF_HOST_DEVICE void add_at(const AddArgs& a, int64_t i) {
    if (a.m) a.y[i] = a.x[i] * a.m[i % a.M];
    else a.y[i] = a.accumulate ? a.y[i] + a.x[i] : a.x[i];
}

// Binary or ternary weights (Model::effective), one index per output row of a unit's weights (cols values each):
// binary: sign(w) mean|w|; ternary: the weights with |w| > 0.7 mean|w| become sign(w) times their mean magnitude, the
// rest 0. The float64 means are summed in the CPU's order.
struct QuantArgs {
    float* eff;
    const float* w;
    int cols;
    int mode;  // 1 binary, 2 ternary
};
OF_HOST_DEVICE void quantize_at(const QuantArgs& a, int64_t o) {
    const float* w = a.w + o * a.cols;
    float* e = a.eff + o * a.cols;
    double mean = 0.0;
    for (int i = 0; i < a.cols; i++) mean += fabs(double(w[i]));
    mean /= a.cols;
    if (a.mode == 1) {
        for (int i = 0; i < a.cols; i++) e[i] = w[i] >= 0.0f ? float(mean) : -float(mean);
        return;
    }
    const double delta = 0.7 * mean;
    double kept = 0.0;
    int n = 0;
    for (int i = 0; i < a.cols; i++)
        if (fabs(double(w[i])) > delta) kept += fabs(double(w[i])), n++;
    const float m = n ? float(kept / n) : 0.0f;
    for (int i = 0; i < a.cols; i++) e[i] = fabs(double(w[i])) > delta ? (w[i] > 0.0f ? m : -m) : 0.0f;
}

#define OF_ELEMENTWISE_KERNELS(X) \
    X(dropout, DropoutArgs)       \
    X(skip_add, SkipArgs)         \
    X(add, AddArgs)               \
    X(axpy, AxpyArgs)             \
    X(quantize, QuantArgs)        \
    X(concat, ConcatArgs)         \
    X(concat_backward, ConcatBackArgs)

}  // namespace of::dev
