// The device kernels' bodies: one OF_HOST_DEVICE function per kernel, `name_at(args, i)`, doing the work of index
// i of an n-index launch. The CUDA backend (native/cuda/) runs them as grid-stride kernels; the host simulation of
// a device (sim_device.cpp) runs them in loops over the thread pool. Same source, so the simulated device tests the
// indexing and the math of every kernel on a machine without a GPU; only the launches and the GEMM differ.
//
// Every body writes only the outputs of its own index, so any order of indices gives the same bits. Reductions are
// two-stage (fixed chunks, then a fixed-order sum of the chunks): deterministic on both sides. The CUDA sources are
// compiled with --fmad=false, so additions and multiplications round as on the CPU (-ffp-contract=off); the noise
// (Philox + our own log/sin/cos polynomials) is then bit-identical to cpu::noise_fill. Transcendental activations
// (tanh, exp, erf) come from each side's math library and may differ in the last bit.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/cpu/conv.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/optimizer.h"
#include "rng/normal.h"

namespace of::dev {

constexpr int kReduceRows = 256;  // rows per chunk of the two-stage column and loss reductions
constexpr int64_t kReduceChunk = 1 << 14;  // elements per chunk of the sum of squares (cpu::grad_norm's chunks)

OF_HOST_DEVICE float act_value(float x, Act act, float alpha) {
    switch (act) {
        case Act::Identity: return x;
        case Act::Relu: return x > 0.0f ? x : 0.0f;
        case Act::LeakyRelu: return x > 0.0f ? x : alpha * x;
        case Act::Tanh: return tanhf(x);
        case Act::Sigmoid: return 1.0f / (1.0f + expf(-x));
        case Act::Gelu: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
        case Act::Step: return x > 0.0f ? 1.0f : 0.0f;
        case Act::Sign: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
        case Act::Quantize: {
            const float top = alpha - 1.0f;
            return nearbyintf(fminf(1.0f, fmaxf(0.0f, x)) * top) * (1.0f / top);
        }
    }
    return x;
}

OF_HOST_DEVICE float act_derivative_times(float dy, float v, float a, Act act, float alpha) {
    switch (act) {
        case Act::Identity: return dy;
        case Act::Relu: return v > 0.0f ? dy : 0.0f;
        case Act::LeakyRelu: return v > 0.0f ? dy : alpha * dy;
        case Act::Tanh: return dy * (1.0f - a * a);
        case Act::Sigmoid: return dy * a * (1.0f - a);
        case Act::Gelu: {
            float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
            return dy * (cdf + v * 0.39894228040143268f * expf(-0.5f * v * v));
        }
        default: return 0.0f;  // step, sign, quantize: BP refuses them before any launch
    }
}

// Noisy forward of one layer (or, with out = nullptr, only its noise E), one index per (row, Philox counter): out[r, j] = act(pre[r / rep, j] + bias[j] +
// sigma e[r, j]) for the 4 neurons j = 64 b + 16 w + l (w = 0..3) that counter c = 16 b + l feeds (rng/normal.h's
// layout); e is also written to E. Row r is global noise row row0 + r; with antithetic pairs an odd row takes the
// negated noise of its even partner. n = R * counters(O).
struct NoisyArgs {
    float* out;
    float* E;  // nullptr: not kept
    const float* pre;
    const float* bias;  // nullptr: none; else bias[j % bias_period] (a conv's bias is per channel)
    int bias_period;
    float sigma;
    int R, O, rep;
    Act act;
    float alpha;
    uint64_t seed;
    uint32_t step, layer, row0;
    int antithetic;
    int density;
    const float* sigmas = nullptr;  // per-channel sigma (O values) instead of sigma
    // Regenerated scores (out == nullptr, ULR with storeNoise false): E gets w[r] s(e) (s / sigma_o with per-channel
    // sigma), score_rows' values, instead of e
    const float* w = nullptr;
    Score score = Score::Exact;
    // Copy-parallel slices (cpu NoiseSpec): local row l = row0 + r is global row (l / slice_local) slice_total +
    // slice_offset + l % slice_local; slice_local 0: rows are global as they are
    uint32_t slice_local = 0, slice_total = 0, slice_offset = 0;
};
// The LR score of one noise value (cpu::score_transform).
OF_HOST_DEVICE float score_of(float e, Density density, Score score) {
    if (score == Score::Sign) {
        const float c = density == Density::Normal ? 1.2533141373155003f : density == Density::Logistic ? 0.7213475204444817f : 1.0f;
        return e > 0.0f ? c : (e < 0.0f ? -c : 0.0f);
    }
    if (density == Density::Logistic) return tanhf(0.5f * e);
    if (density == Density::Laplace) return e > 0.0f ? 1.0f : (e < 0.0f ? -1.0f : 0.0f);
    return e;
}
OF_HOST_DEVICE int noise_counters(int O) { return (O + 63) / 64 * 16; }

OF_HOST_DEVICE void noisy_forward_at(const NoisyArgs& a, int64_t i) {
    const int cpr = noise_counters(a.O);
    const int r = int(i / cpr), c = int(i % cpr);
    const int j0 = (c >> 4) * 64 + (c & 15);
    if (j0 >= a.O) return;  // a narrow layer's row: this counter feeds no neuron
    const uint32_t l = a.row0 + uint32_t(r);
    const uint32_t g = a.slice_local ? (l / a.slice_local) * a.slice_total + a.slice_offset + l % a.slice_local : l;
    const bool odd = a.antithetic && (g & 1u);
    U32x4 u = philox4x32_10(uint32_t(c), odd ? g & ~1u : g, philox_stream(kStreamNoise, a.layer), a.step, uint32_t(a.seed),
                            uint32_t(a.seed >> 32));
    float z[4];
    if (a.density == 0) {
        box_muller(u.v[0], u.v[1], &z[0], &z[1]);
        box_muller(u.v[2], u.v[3], &z[2], &z[3]);
    } else {
        for (int w = 0; w < 4; w++) {
            float un = uniform_open(u.v[w]);
            z[w] = a.density == 2 ? logistic_from_uniform(un) : laplace_from_uniform(un);
        }
    }
    for (int w = 0; w < 4; w++) {
        const int j = j0 + 16 * w;
        if (j >= a.O) break;
        const float e = odd ? -z[w] : z[w];
        if (a.E && a.w) {  // the weighted score, as score_rows_at forms it
            float s = score_of(e, Density(a.density), a.score);
            if (a.sigmas) s = s / a.sigmas[j];
            a.E[int64_t(r) * a.O + j] = s * a.w[r];
        } else if (a.E) {
            a.E[int64_t(r) * a.O + j] = e;
        }
        if (!a.out) continue;  // the noise alone (recurrent units add it inside their recurrence)
        const float v = a.pre[int64_t(r / a.rep) * a.O + j];
        const float sg = a.sigmas ? a.sigmas[j] : a.sigma;
        const float x = a.bias ? v + a.bias[j % a.bias_period] + sg * e : v + sg * e;
        a.out[int64_t(r) * a.O + j] = act_value(x, a.act, a.alpha);
    }
}

// A graph convolution's aggregation (units.cpp graph_aggregate): out (rows, N F) = A^ x per row, A^ in CSR form; its
// own adjoint (A^ is symmetric). One index per output value; each sums its node's edges in order.
struct GraphArgs {
    float* out;
    const float* x;
    const int* row_ptr;
    const int* col;
    const float* val;
    int N, F;
};
OF_HOST_DEVICE void graph_at(const GraphArgs& a, int64_t i) {
    const int f = int(i % a.F), node = int(i / a.F % a.N);
    const int64_t row = i / (int64_t(a.N) * a.F);
    const float* x = a.x + row * a.N * a.F;
    float acc = 0.0f;
    for (int e = a.row_ptr[node]; e < a.row_ptr[node + 1]; e++) acc += a.val[e] * x[int64_t(a.col[e]) * a.F + f];
    a.out[i] = acc;
}

// Convolution patches (cpu::im2row): A (n Ho Wo, kh kw C) from channels-last images x (n, H W C), out-of-image taps 0.
// One index per element of A. The same arguments serve the adjoint (row2im): out = dx, in = dA.
struct PatchArgs {
    float* out;
    const float* in;
    ConvGeom g;
};
OF_HOST_DEVICE void im2row_at(const PatchArgs& a, int64_t i) {
    const ConvGeom& g = a.g;
    const int patch = g.kh * g.kw * g.C;
    const int64_t row = i / patch, P = int64_t(g.Ho) * g.Wo;
    const int col = int(i % patch), pos = int(row % P);
    const int64_t img = row / P;
    const int oy = pos / g.Wo, ox = pos % g.Wo, tap = col / g.C, ch = col % g.C;
    const int iy = oy * g.sh - g.ph + (tap / g.kw) * g.dh, ix = ox * g.sw - g.pw + (tap % g.kw) * g.dw;
    a.out[i] = (iy < 0 || iy >= g.H || ix < 0 || ix >= g.W) ? 0.0f
                                                            : a.in[img * (int64_t(g.H) * g.W * g.C) + (int64_t(iy) * g.W + ix) * g.C + ch];
}

// Pooling per channel (cpu::pool_forward): y (n, Ho Wo C) from x (n, H W C); max ignores padding taps, avg divides by
// the taps inside the image (a window with none gives 0). One index per output value.
struct PoolArgs {
    float* y;
    const float* x;
    ConvGeom g;
    PoolKind kind;
};
OF_HOST_DEVICE void pool_at(const PoolArgs& a, int64_t i) {
    const ConvGeom& g = a.g;
    const int64_t P = int64_t(g.Ho) * g.Wo;
    const int ch = int(i % g.C);
    const int64_t img = i / g.C / P;
    const int pos = int(i / g.C % P), oy = pos / g.Wo, ox = pos % g.Wo;
    const float* xi = a.x + img * (int64_t(g.H) * g.W * g.C);
    float out = a.kind == PoolKind::Max ? -3.402823466e+38f : 0.0f;
    int taps = 0;
    for (int ky = 0; ky < g.kh; ky++) {
        const int iy = oy * g.sh - g.ph + ky * g.dh;
        if (iy < 0 || iy >= g.H) continue;
        for (int kx = 0; kx < g.kw; kx++) {
            const int ix = ox * g.sw - g.pw + kx * g.dw;
            if (ix < 0 || ix >= g.W) continue;
            const float v = xi[(int64_t(iy) * g.W + ix) * g.C + ch];
            taps++;
            out = a.kind == PoolKind::Max ? (v > out ? v : out) : out + v;
        }
    }
    if (a.kind == PoolKind::Avg && taps > 0) out /= float(taps);
    a.y[i] = taps == 0 ? 0.0f : out;
}

// Input value i of channels-last images (n, H, W, C): its image, row, column and channel.
struct Pixel {
    int64_t img;
    int iy, ix, c;
};
OF_HOST_DEVICE Pixel pixel_of(const ConvGeom& g, int64_t i) {
    return {i / (int64_t(g.H) * g.W * g.C), int(i / g.C / g.W % g.H), int(i / g.C % g.W), int(i % g.C)};
}

// The windows of a conv or pool that read input row iy (column ix), in increasing output order: ky (kx) from the
// last tap down, each giving oy = (iy + ph - ky dh) / sh when that divides and lands inside the output. The CPU
// kernels scatter window by window in that order, so gathering in it adds the same values in the same order.
OF_HOST_DEVICE int window_of(int i, int k, int p, int dl, int s, int n_out) {  // the output index, or -1
    const int t = i + p - k * dl;
    if (t < 0 || t % s != 0 || t / s >= n_out) return -1;
    return t / s;
}

// The adjoint of im2row (cpu::row2im) as a gather: dx (n, H W C) = the sum of the patch gradients dA (n Ho Wo,
// kh kw C) at each input value's taps (out = dx, in = dA). One index per input value.
OF_HOST_DEVICE void row2im_at(const PatchArgs& a, int64_t i) {
    const ConvGeom& g = a.g;
    const auto [img, iy, ix, c] = pixel_of(g, i);
    const int64_t P = int64_t(g.Ho) * g.Wo;
    const int patch = g.kh * g.kw * g.C;
    float acc = 0.0f;
    for (int ky = g.kh - 1; ky >= 0; ky--) {
        const int oy = window_of(iy, ky, g.ph, g.dh, g.sh, g.Ho);
        if (oy < 0) continue;
        for (int kx = g.kw - 1; kx >= 0; kx--) {
            const int ox = window_of(ix, kx, g.pw, g.dw, g.sw, g.Wo);
            if (ox < 0) continue;
            acc += a.in[(img * P + int64_t(oy) * g.Wo + ox) * patch + (ky * g.kw + kx) * g.C + c];
        }
    }
    a.out[i] = acc;
}

// Pooling's input gradient (cpu::pool_backward) as a gather: max routes each window's dy to its first maximal tap of
// x, avg adds dy / taps to every tap inside the image. One index per input value.
struct PoolBackArgs {
    float* dx;
    const float* dy;
    const float* x;
    ConvGeom g;
    PoolKind kind;
};
OF_HOST_DEVICE void pool_backward_at(const PoolBackArgs& a, int64_t i) {
    const ConvGeom& g = a.g;
    const auto [img, iy, ix, c] = pixel_of(g, i);
    const int64_t P = int64_t(g.Ho) * g.Wo;
    const float* xi = a.x + img * (int64_t(g.H) * g.W * g.C);
    float acc = 0.0f;
    for (int ky = g.kh - 1; ky >= 0; ky--) {
        const int oy = window_of(iy, ky, g.ph, g.dh, g.sh, g.Ho);
        if (oy < 0) continue;
        for (int kx = g.kw - 1; kx >= 0; kx--) {
            const int ox = window_of(ix, kx, g.pw, g.dw, g.sw, g.Wo);
            if (ox < 0) continue;
            const float d = a.dy[(img * P + int64_t(oy) * g.Wo + ox) * g.C + c];
            const int y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
            int taps = 0, best = -1;
            float bv = -3.402823466e+38f;
            for (int ty = 0; ty < g.kh; ty++)
                for (int tx = 0; tx < g.kw; tx++) {
                    const int jy = y0 + ty * g.dh, jx = x0 + tx * g.dw;
                    if (jy < 0 || jy >= g.H || jx < 0 || jx >= g.W) continue;
                    taps++;
                    const float v = xi[(int64_t(jy) * g.W + jx) * g.C + c];
                    if (best < 0 || v > bv) best = jy * g.W + jx, bv = v;
                }
            if (a.kind == PoolKind::Avg) acc += d / float(taps);
            else if (best == iy * g.W + ix) acc += d;
        }
    }
    a.dx[i] = acc;
}

// Dropout (units.cpp dropout_apply): y = x / (1 - rate), or 0 where the Philox word of (sample, value) is below
// rate 2^32; the mask is one per sample (row r is sample sample0 + r / rep), shared by its copies. One index per value.
struct DropoutArgs {
    float* y;
    const float* x;
    int O, rep;
    uint32_t sample0;
    uint64_t seed;
    uint32_t step, unit;
    float rate;
};
OF_HOST_DEVICE void dropout_at(const DropoutArgs& a, int64_t i) {
    const int j = int(i % a.O);
    const uint32_t sample = a.sample0 + uint32_t(i / a.O / a.rep);
    const U32x4 w = philox4x32_10(uint32_t(j / 4), sample, philox_stream(kStreamDropout, a.unit), a.step, uint32_t(a.seed),
                                  uint32_t(a.seed >> 32));
    const double cut = double(a.rate) * 4294967296.0;
    const float scale = 1.0f / (1.0f - a.rate);
    a.y[i] = double(w.v[j % 4]) < cut ? 0.0f : a.x[i] * scale;
}

// A residual block's end (units.cpp residual_add): s = inner + src (row r reads src row r / rep), a = post_act(s); sum,
// when given, keeps s for BP. inner and a may be the same buffer. One index per value.
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

// A concat block's end (units.cpp concat_forward): per position p of P, the block input's C values (row r reads src
// row r / rep), then f's Co values. One index per output value.
struct ConcatArgs {
    float* out;
    const float* f;
    const float* src;
    int P, C, Co, rep;
};
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
    a.out[i] = k < a.C ? a.src[(r / a.rep) * a.P * a.C + int64_t(p) * a.C + k] : a.f[r * a.P * a.Co + int64_t(p) * a.Co + (k - a.C)];
}
// Its gradient split (units.cpp concat_backward): the first C values of each position to dsrc, the rest to df. One
// index per value of dout.
struct ConcatBackArgs {
    float* df;
    float* dsrc;
    const float* dout;
    int P, C, Co;
};
OF_HOST_DEVICE void concat_backward_at(const ConcatBackArgs& a, int64_t i) {
    const auto [r, p, k] = concat_index(i, a.P, a.C, a.Co);
    if (k < a.C) a.dsrc[r * a.P * a.C + int64_t(p) * a.C + k] = a.dout[i];
    else a.df[r * a.P * a.Co + int64_t(p) * a.Co + (k - a.C)] = a.dout[i];
}

// Normalization (units.cpp normalize / group_norm_xhat): x^ and 1 / sqrt(var + 1e-5) of each set, with float64 mean
// and variance in the CPU's order. layerNorm: a set is one position's C values (one index per position, P per row);
// groupNorm: all positions of one group's C / G channels in a row (one index per (row, group)). x (rows, P C).
struct NormArgs {
    float* xh;
    float* inv;  // one per set
    const float* x;
    int P, C, G;
};
OF_HOST_DEVICE void layer_norm_at(const NormArgs& a, int64_t p) {
    const float* x = a.x + p * a.C;
    float* xh = a.xh + p * a.C;
    double mu = 0.0, var = 0.0;
    for (int i = 0; i < a.C; i++) mu += x[i];
    mu /= a.C;
    for (int i = 0; i < a.C; i++) var += (x[i] - mu) * (x[i] - mu);
    const float inv = float(1.0 / sqrt(var / a.C + double(1e-5f)));
    for (int i = 0; i < a.C; i++) xh[i] = float(x[i] - mu) * inv;
    a.inv[p] = inv;
}
OF_HOST_DEVICE void group_norm_at(const NormArgs& a, int64_t s) {
    const int Cg = a.C / a.G;
    const int64_t r = s / a.G, g = s % a.G, base = r * a.P * a.C + g * Cg;
    const double n = double(a.P) * Cg;
    double mu = 0.0, var = 0.0;
    for (int p = 0; p < a.P; p++)
        for (int c = 0; c < Cg; c++) mu += a.x[base + int64_t(p) * a.C + c];
    mu /= n;
    for (int p = 0; p < a.P; p++)
        for (int c = 0; c < Cg; c++) {
            const float v = a.x[base + int64_t(p) * a.C + c];
            var += (v - mu) * (v - mu);
        }
    const float inv = float(1.0 / sqrt(var / n + double(1e-5f)));
    for (int p = 0; p < a.P; p++)
        for (int c = 0; c < Cg; c++) {
            const int64_t i = base + int64_t(p) * a.C + c;
            a.xh[i] = float(a.x[i] - mu) * inv;
        }
    a.inv[s] = inv;
}

// The input gradient of a normalization (units.cpp unit_backward): per set, with dx^ = dv gain,
// din = inv (dx^ - mean(dx^) - x^ mean(dx^ x^)), the means in float64. The sets as in NormArgs.
struct NormBackArgs {
    float* din;
    const float* dv;
    const float* xh;
    const float* inv;
    const float* gain;
    int P, C, G;
};
OF_HOST_DEVICE void layer_norm_backward_at(const NormBackArgs& a, int64_t p) {
    const float* g = a.dv + p * a.C;
    const float* xh = a.xh + p * a.C;
    double m1 = 0.0, m2 = 0.0;
    for (int c = 0; c < a.C; c++) m1 += g[c] * a.gain[c], m2 += g[c] * a.gain[c] * xh[c];
    m1 /= a.C, m2 /= a.C;
    float* d = a.din + p * a.C;
    for (int c = 0; c < a.C; c++) d[c] = a.inv[p] * float(g[c] * a.gain[c] - m1 - xh[c] * m2);
}
OF_HOST_DEVICE void group_norm_backward_at(const NormBackArgs& a, int64_t s) {
    const int Cg = a.C / a.G;
    const int64_t r = s / a.G, g = s % a.G, base = r * a.P * a.C + g * Cg;
    const double n = double(a.P) * Cg;
    double m1 = 0.0, m2 = 0.0;
    for (int p = 0; p < a.P; p++)
        for (int c = 0; c < Cg; c++) {
            const int64_t i = base + int64_t(p) * a.C + c;
            const double d = double(a.dv[i]) * a.gain[g * Cg + c];
            m1 += d, m2 += d * a.xh[i];
        }
    m1 /= n, m2 /= n;
    for (int p = 0; p < a.P; p++)
        for (int c = 0; c < Cg; c++) {
            const int64_t i = base + int64_t(p) * a.C + c;
            a.din[i] = a.inv[s] * float(double(a.dv[i]) * a.gain[g * Cg + c] - m1 - a.xh[i] * m2);
        }
}

// batchNorm (units.cpp batch_norm_*), channels-last (n positions of C channels). Batch statistics, one index per
// channel: stats[c] = mean, stats[C + c] = variance (biased), float64 sums over positions in order.
struct BatchStatsArgs {
    float* stats;
    const float* x;
    int64_t n;
    int C;
};
OF_HOST_DEVICE void bn_stats_at(const BatchStatsArgs& a, int64_t c) {
    double mu = 0.0, var = 0.0;
    for (int64_t p = 0; p < a.n; p++) mu += a.x[p * a.C + c];
    mu /= double(a.n);
    for (int64_t p = 0; p < a.n; p++) var += (a.x[p * a.C + c] - mu) * (a.x[p * a.C + c] - mu);
    a.stats[c] = float(mu), a.stats[a.C + c] = float(var / double(a.n));
}
// y = (x - mean) gain / sqrt(var + eps) (x^ instead when gain is nullptr: (x - mean) / sqrt(var + eps)); row r of y
// (P positions) reads row r / rep of x. One index per value.
struct BatchApplyArgs {
    float* y;
    const float* x;
    const float* stats;
    const float* gain;
    int P, C, rep;
};
OF_HOST_DEVICE void bn_apply_at(const BatchApplyArgs& a, int64_t i) {
    const int c = int(i % a.C);
    const int64_t row = i / (int64_t(a.P) * a.C), rest = i % (int64_t(a.P) * a.C);
    const float x = a.x[(row / a.rep) * a.P * a.C + rest];
    a.y[i] = a.gain ? (x - a.stats[c]) * (a.gain[c] / sqrtf(a.stats[a.C + c] + 1e-5f)) : (x - a.stats[c]) / sqrtf(a.stats[a.C + c] + 1e-5f);
}
// BP through the batch statistics, stage 1 (one index per channel): sg = sum dv, sgx = sum dv x^ (x^ with the
// reciprocal square root, as units.cpp's backward); the gain and bias gradients are float(sgx), float(sg).
struct BatchBackArgs {
    float* din;
    float* dgain;
    float* dbias;
    double* sums;  // 2 C: sg, sgx
    const float* dv;
    const float* x;
    const float* stats;
    const float* gain;
    int64_t n;
    int C;
};
OF_HOST_DEVICE void bn_backward_sums_at(const BatchBackArgs& a, int64_t c) {
    const float inv = 1.0f / sqrtf(a.stats[a.C + c] + 1e-5f);
    double sg = 0.0, sgx = 0.0;
    for (int64_t p = 0; p < a.n; p++) {
        const float xh = (a.x[p * a.C + c] - a.stats[c]) * inv;
        sg += a.dv[p * a.C + c], sgx += a.dv[p * a.C + c] * xh;
    }
    a.sums[c] = sg, a.sums[a.C + c] = sgx;
    a.dgain[c] = float(sgx), a.dbias[c] = float(sg);
}
// Stage 2, one index per value: din = gain inv (dv - sg / n - x^ sgx / n).
OF_HOST_DEVICE void bn_backward_at(const BatchBackArgs& a, int64_t i) {
    const int c = int(i % a.C);
    const float inv = 1.0f / sqrtf(a.stats[a.C + c] + 1e-5f);
    const float xh = (a.x[i] - a.stats[c]) * inv;
    a.din[i] = a.gain[c] * inv * float(a.dv[i] - a.sums[c] / a.n - xh * a.sums[a.C + c] / a.n);
}
// The running statistics after a training step (momentum 0.9, the variance unbiased), one index per channel; skipped
// when the step's gate is closed (its loss was non-finite).
struct RunningArgs {
    float* running;
    const float* stats;
    const double* gate;
    double n;
    int C;
};
OF_HOST_DEVICE void bn_running_at(const RunningArgs& a, int64_t c) {
    if (a.gate && a.gate[2] == 0.0) return;
    const double unbias = a.n > 1 ? a.n / (a.n - 1) : 1.0;
    a.running[c] = 0.9f * a.running[c] + 0.1f * a.stats[c];
    a.running[a.C + c] = 0.9f * a.running[a.C + c] + 0.1f * float(a.stats[a.C + c] * unbias);
}

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
    float* out;          // seq_output: the unit's output (rows, O)
    int return_sequences;
    const float* xw;     // seq_input: X W^T of row r / rep, (rows / rep, T GH); one index per (row, j < GH)
    int rep;
};
OF_HOST_DEVICE float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }
OF_HOST_DEVICE float seq_noise(const SeqArgs& a, int64_t r, int j) {
    return a.E ? a.sigma * a.E[(r * a.T + a.t) * a.GH + j] : 0.0f;
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
        case Cell::Rnn:
            ax[j] = h, h = ax[H + j] = tanhf(pr[j]);
            break;
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
            const float cp = ax[H + j], ig = ax[2 * H + j], f = ax[3 * H + j], gg = ax[4 * H + j], o = ax[5 * H + j], tc = ax[6 * H + j];
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

// y = a + s b (s b when a is nullptr), one index per value (weight perturbation: theta0 + s z; its seed replay: g + c z;
// a module's boundary gradient: alpha D).
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

// Quasi-Monte Carlo normal noise (kernels/cpu/noise.cpp qmc_row), one index per value of E (R, O): row g = (sample,
// copy) takes its copy's Sobol point (dims: O x 32 direction numbers), shifted per (sample, neuron) by a Philox word,
// through the inverse normal CDF; an antithetic odd row negates its even partner.
struct QmcArgs {
    float* E;
    const uint32_t* dirs;
    int O;
    uint32_t copies;  // per sample (pairs count once with antithetic)
    uint64_t seed;
    uint32_t step, layer, row0;
    int antithetic;
};
OF_HOST_DEVICE void qmc_noise_at(const QmcArgs& a, int64_t i) {
    const uint32_t g = a.row0 + uint32_t(i / a.O);
    const int j = int(i % a.O);
    const bool odd = a.antithetic && (g & 1u);
    const uint32_t src = odd ? g & ~1u : g;
    const uint32_t per_sample = a.copies * (a.antithetic ? 2u : 1u);
    const uint32_t sample = src / per_sample, k = (src % per_sample) >> (a.antithetic ? 1 : 0);
    const U32x4 shift = philox4x32_10(uint32_t(j / 4), sample, philox_stream(kStreamQmc, a.layer), a.step, uint32_t(a.seed),
                                      uint32_t(a.seed >> 32));
    const uint32_t* v = a.dirs + int64_t(j) * 32;
    uint32_t x = 0;
    for (uint32_t kk = k, b = 0; kk; b++, kk >>= 1)
        if (kk & 1u) x ^= v[b];
    x ^= shift.v[j % 4];
    const float e = float(inverse_normal((double(x >> 8) + 0.5) / 16777216.0));
    a.E[i] = odd ? -e : e;
}
// The noisy forward from noise already in E (QMC): out[r, j] = act(pre[r / rep, j] + bias + sigma e[r, j]), one index per
// value (noisy_forward_at's arithmetic).
OF_HOST_DEVICE void noisy_apply_at(const NoisyArgs& a, int64_t i) {
    const int64_t r = i / a.O;
    const int j = int(i % a.O);
    const float e = a.E[i];
    const float v = a.pre[(r / a.rep) * a.O + j];
    const float sg = a.sigmas ? a.sigmas[j] : a.sigma;
    const float x = a.bias ? v + a.bias[j % a.bias_period] + sg * e : v + sg * e;
    a.out[i] = act_value(x, a.act, a.alpha);
}

// Clean bias + activation, one index per element of v (rows, O): v += bias (v keeps the pre-activation for BP),
// a = act(v). a may alias v.
struct BiasActArgs {
    float* a;
    float* v;
    const float* bias;  // bias[i % O]: O is the row width, or a conv's channels
    int O;
    Act act;
    float alpha;
};
OF_HOST_DEVICE void bias_act_at(const BiasActArgs& a, int64_t i) {
    float x = a.bias ? a.v[i] + a.bias[i % a.O] : a.v[i];
    a.v[i] = x;
    a.a[i] = act_value(x, a.act, a.alpha);
}

// dv = dy phi'(v), one index per element (dv may alias dy).
struct ActBackArgs {
    float* dv;
    const float* dy;
    const float* v;
    const float* a;
    Act act;
    float alpha;
};
OF_HOST_DEVICE void act_backward_at(const ActBackArgs& a, int64_t i) {
    a.dv[i] = act_derivative_times(a.dy[i], a.v[i], a.a[i], a.act, a.alpha);
}

// Losses of y (R, C) against the targets of sample r / rep (cpu::loss_forward and loss_backward): softmax
// cross-entropy or 0-1 against labels, or MSE against values. With groups P > 1 a row's C outputs are P groups of
// C / P classes, each with its own label (-1: unlabeled), and a row's loss is the mean over its labeled groups.
// loss_rows: loss[r] and hit[r] (groups whose arg-max matches); loss_grad: dy = d(mean loss over R rows)/dy (rep 1).
// One index per row.
struct LossArgs {
    float* loss;  // loss_rows: per-row losses (R); loss_grad: dy (R, C)
    int* hit;
    const float* y;
    const int32_t* labels;
    const float* values;
    int R, C, rep;
    LossKind kind;
    int groups = 1;
};
OF_HOST_DEVICE float class_loss(const float* y, int C, int label, LossKind kind, bool* hit) {
    int arg = 0;
    float mx = y[0];
    for (int c = 1; c < C; c++)
        if (y[c] > mx) mx = y[c], arg = c;
    *hit = arg == label;
    if (kind == LossKind::ZeroOne) return float(arg != label);
    float s = 0.0f;
    for (int c = 0; c < C; c++) s += expf(y[c] - mx);
    return logf(s) + mx - y[label];
}
OF_HOST_DEVICE void loss_rows_at(const LossArgs& a, int64_t r) {
    const float* yr = a.y + r * a.C;
    if (a.kind == LossKind::Mse) {
        const float* tr = a.values + (r / a.rep) * a.C;
        float s = 0.0f;
        for (int c = 0; c < a.C; c++) s += (yr[c] - tr[c]) * (yr[c] - tr[c]);
        a.loss[r] = s / float(a.C);
        a.hit[r] = 0;
        return;
    }
    const int32_t* lr = a.labels + (r / a.rep) * a.groups;
    const int Cg = a.C / a.groups;
    float sum = 0.0f;
    int n = 0, hits = 0;
    for (int p = 0; p < a.groups; p++) {
        if (lr[p] < 0) continue;
        bool hit = false;
        sum += class_loss(yr + p * Cg, Cg, lr[p], a.kind, &hit);
        hits += hit, n++;
    }
    a.loss[r] = n > 0 ? sum / float(n) : 0.0f;
    a.hit[r] = hits;
}
OF_HOST_DEVICE void loss_grad_at(const LossArgs& a, int64_t r) {
    const float* yr = a.y + r * a.C;
    float* d = a.loss + r * a.C;
    const float inv_r = 1.0f / float(a.R);
    if (a.kind == LossKind::CrossEntropy) {
        const int32_t* lr = a.labels + r * a.groups;
        const int Cg = a.C / a.groups;
        int n = 0;
        for (int p = 0; p < a.groups; p++) n += lr[p] >= 0;
        for (int c = 0; c < a.C; c++) d[c] = 0.0f;
        for (int p = 0; p < a.groups; p++) {
            if (lr[p] < 0) continue;
            const float* yp = yr + p * Cg;
            float* dp = d + p * Cg;
            float mx = yp[0];
            for (int c = 1; c < Cg; c++) mx = yp[c] > mx ? yp[c] : mx;
            float s = 0.0f;
            for (int c = 0; c < Cg; c++) s += (dp[c] = expf(yp[c] - mx));
            const float inv = inv_r / float(n) / s;
            for (int c = 0; c < Cg; c++) dp[c] *= inv;
            dp[lr[p]] -= inv_r / float(n);
        }
        return;
    }
    const float* tr = a.values + r * a.C;
    const float k = 2.0f * inv_r / float(a.C);
    for (int c = 0; c < a.C; c++) d[c] = k * (yr[c] - tr[c]);
}

// LR row weights (cpu::lr_row_weights): w[b K + k] = (loss - baseline) scale. A sample's loss sum is the float64 sum
// of its copy chunks [64 c, 64 c + 64), the chunks added in order (for K <= 64 the CPU's sequential sum, bit for bit).
// Up to kSampleWeightsK copies one index per sample does it all (sample_weights); beyond, three stages keep every
// thread's loop short: row_sums (one index per chunk), row_totals (per sample), row_weights (per row).
constexpr int kSampleWeightsK = 2048;
constexpr int kCopyChunk = 64;
struct RowWeightArgs {
    float* w;
    double* part;
    const float* loss;
    float running;  // Baseline::Running: the running average of earlier steps' losses
    int K;
    Baseline baseline;
    int antithetic;
    float scale;
    const float* clean = nullptr;  // Baseline::Clean: each sample's noise-free loss (B values)
    double* sums = nullptr;        // each sample's loss sum (B values): row_totals from the chunks' partial sums
};
OF_HOST_DEVICE int copy_chunks(int K) { return (K + kCopyChunk - 1) / kCopyChunk; }
OF_HOST_DEVICE void row_sums_at(const RowWeightArgs& a, int64_t i) {
    const int chunks = copy_chunks(a.K);
    const int64_t b = i / chunks;
    const int k0 = int(i % chunks) * kCopyChunk, k1 = k0 + kCopyChunk < a.K ? k0 + kCopyChunk : a.K;
    double sum = 0.0;
    for (int k = k0; k < k1; k++) sum += a.loss[b * a.K + k];
    a.part[i] = sum;
}
OF_HOST_DEVICE void row_totals_at(const RowWeightArgs& a, int64_t b) {  // one index per sample, its chunks in order
    const int chunks = copy_chunks(a.K);
    double sum = 0.0;
    for (int c = 0; c < chunks; c++) sum += a.part[b * chunks + c];
    a.sums[b] = sum;
}
// copy k of sample b, whose losses are l and loss sum `sum`
OF_HOST_DEVICE float row_weight(const RowWeightArgs& a, int64_t b, int k, const float* l, double sum) {
    double beta = 0.0;
    if (a.baseline == Baseline::LeaveOneOut) {
        if (!a.antithetic) beta = (sum - l[k]) / double(a.K - 1);
        else if (a.K > 2) beta = (sum - l[k] - l[k ^ 1]) / double(a.K - 2);
    } else if (a.baseline == Baseline::BatchMean) {
        beta = sum / double(a.K);
    } else if (a.baseline == Baseline::Running) {
        beta = a.running;
    } else if (a.baseline == Baseline::Clean) {
        beta = a.clean[b];
    }
    return float((double(l[k]) - beta) * a.scale);
}
OF_HOST_DEVICE void row_weights_at(const RowWeightArgs& a, int64_t r) {
    const int64_t b = r / a.K;
    const int k = int(r % a.K);
    a.w[r] = row_weight(a, b, k, a.loss + b * a.K, a.sums[b]);
}
OF_HOST_DEVICE void sample_weights_at(const RowWeightArgs& a, int64_t b) {  // one index per sample
    const float* l = a.loss + b * a.K;
    double sum = 0.0;
    for (int k0 = 0; k0 < a.K; k0 += kCopyChunk) {
        double chunk = 0.0;
        for (int k = k0; k < k0 + kCopyChunk && k < a.K; k++) chunk += l[k];
        sum += chunk;
    }
    for (int k = 0; k < a.K; k++) a.w[b * a.K + k] = row_weight(a, b, k, l, sum);
}

// Step statistics, stage 1: chunk t of kReduceRows rows -> part[2 t] = sum of losses (float64), part[2 t + 1] =
// hits. Stage 2 (one index): stats[0] = loss sum, stats[1] = hits, stats[2] = the optimizer's gate: 1 when the sum is
// finite, else 0 (a non-finite loss leaves the parameters untouched). With an accumulator (fit's steps without a
// wait) the step also adds its loss mean times `samples`, hits and rows to acc[0..2]; acc[3] is the first failed
// step's id (-1: none), and once it is set every later step's gate stays closed too.
struct StatsArgs {
    double* part;
    double* stats;
    const float* loss;
    const int* hit;
    int R;
    double* acc;     // nullptr: no accumulation
    double samples;  // the step's samples (the epoch loss weights each step's mean loss by them)
    double id;       // the step's id among the steps not yet read back
    int direct = 0;  // one chunk (R <= kReduceRows): stage 1 closes the step itself (0 + x is x: the same bits)
};
OF_HOST_DEVICE void stats_close(const StatsArgs& a, double s, double h) {
    a.stats[0] = s, a.stats[1] = h;
    bool ok = s - s == 0.0;  // finite (inf - inf and NaN are NaN)
    if (a.acc) {
        if (!ok && a.acc[3] < 0.0) a.acc[3] = a.id;
        ok = ok && a.acc[3] < 0.0;
        if (ok) a.acc[0] += s / a.R * a.samples, a.acc[1] += h, a.acc[2] += a.R;
    }
    a.stats[2] = ok ? 1.0 : 0.0;
}
OF_HOST_DEVICE void stats_partial_at(const StatsArgs& a, int64_t t) {
    const int r0 = int(t) * kReduceRows, r1 = r0 + kReduceRows < a.R ? r0 + kReduceRows : a.R;
    double s = 0.0, h = 0.0;
    for (int r = r0; r < r1; r++) s += a.loss[r], h += a.hit[r];
    if (a.direct) stats_close(a, s, h);
    else a.part[2 * t] = s, a.part[2 * t + 1] = h;
}
OF_HOST_DEVICE void stats_final_at(const StatsArgs& a, int64_t) {
    const int chunks = (a.R + kReduceRows - 1) / kReduceRows;
    double s = 0.0, h = 0.0;
    for (int t = 0; t < chunks; t++) s += a.part[2 * t], h += a.part[2 * t + 1];
    stats_close(a, s, h);
}

// The learned sigma's gradient, stage 1 (likelihood_ratio.cpp): per row r, w[r] sum_j (e_j s(e_j) - 1) in float64, with
// the density's exact score s; one index per row, before the score replaces e. Stage 2 sums the rows (DSumArgs).
struct SigmaGradArgs {
    double* row;
    const float* E;
    const float* w;
    int O;
    Density density;
};
OF_HOST_DEVICE void sigma_grad_at(const SigmaGradArgs& a, int64_t r) {
    const float* e = a.E + r * a.O;
    double v = 0.0;
    for (int j = 0; j < a.O; j++) {
        const float ej = e[j];
        v += double(ej) * score_of(ej, a.density, Score::Exact) - 1.0;
    }
    a.row[r] = double(a.w[r]) * v;
}
// Layer-wise copies 'auto' (layerwise.cpp): row r's share of the variance of its layer's estimate,
// w_r^2 |s(E_r)|^2 |x_{r / rep}|^2, x the layer's clean input; from the noise before score_rows. One index per row.
struct VarRowsArgs {
    double* row;
    const float* E;
    const float* w;
    const float* x;
    int O, I, rep;
    Density density;
    Score score;
};
OF_HOST_DEVICE void var_rows_at(const VarRowsArgs& a, int64_t r) {
    const float* e = a.E + r * a.O;
    double sn = 0.0;
    for (int j = 0; j < a.O; j++) {
        const double sj = score_of(e[j], a.density, a.score);
        sn += sj * sj;
    }
    const float* x = a.x + (r / a.rep) * a.I;
    double xn = 0.0;
    for (int i = 0; i < a.I; i++) xn += double(x[i]) * x[i];
    a.row[r] = double(a.w[r]) * a.w[r] * sn * xn;
}
// out[0] = sum of x (n float64 values): chunks of kReduceRows in order (one index per chunk), then the chunks (one).
struct DSumArgs {
    double* part;
    double* out;
    const double* x;
    int64_t n;
};
OF_HOST_DEVICE void dsum_partial_at(const DSumArgs& a, int64_t t) {
    const int64_t i0 = t * kReduceRows, i1 = i0 + kReduceRows < a.n ? i0 + kReduceRows : a.n;
    double s = 0.0;
    for (int64_t i = i0; i < i1; i++) s += a.x[i];
    a.part[t] = s;
}
OF_HOST_DEVICE void dsum_final_at(const DSumArgs& a, int64_t) {
    double s = 0.0;
    for (int64_t t = 0; t < (a.n + kReduceRows - 1) / kReduceRows; t++) s += a.part[t];
    a.out[0] = s;
}

// The LR score times the row weight, in place: E[r, o] = s(E[r, o]) w[r] (s / sigma_o with per-channel sigma); one
// index per element (O per row).
struct ScoreRowsArgs {
    float* E;
    const float* w;
    int O;
    Density density;
    Score score;
    const float* sigmas = nullptr;  // per-channel sigma: the score also divided by sigma_o (the reductions then use 1)
};
OF_HOST_DEVICE void score_rows_at(const ScoreRowsArgs& a, int64_t i) {
    float e = score_of(a.E[i], a.density, a.score);
    if (a.sigmas) e = e / a.sigmas[i % a.O];
    a.E[i] = e * a.w[i / a.O];
}
// score_rows and the first stage of the column sum of the scores (a dense unit's bias gradient) in one pass: one index
// per (chunk t of kReduceRows rows, column o) scores its rows in place, in row order, and writes their sum to
// part[t, o]: the same values and sums as score_rows, then col_sum_partial.
struct ScoreColsArgs {
    ScoreRowsArgs s;
    float* part;
    int R;
};
OF_HOST_DEVICE void score_cols_at(const ScoreColsArgs& a, int64_t i) {
    const int O = a.s.O;
    const int64_t t = i / O, o = i % O;
    const int r0 = int(t) * kReduceRows, r1 = r0 + kReduceRows < a.R ? r0 + kReduceRows : a.R;
    float acc = 0.0f;
    for (int r = r0; r < r1; r++) {
        const int64_t at = int64_t(r) * O + o;
        score_rows_at(a.s, at);
        acc += a.s.E[at];
    }
    a.part[i] = acc;
}

// Shared-prefix copy sum (cpu::lr_copy_sum): G[b, o] = sum_k S[b K + k, o], one index per (b, o). S holds weighted
// scores; or, with w given, the raw noise, scored and weighted on the fly as score_rows_at would (the same bits, and no
// pass over the B K rows that only this sum reads).
struct CopySumArgs {
    float* G;
    const float* S;
    int K, O;
    const float* w = nullptr;
    Density density = Density::Normal;
    Score score = Score::Exact;
    const float* sigmas = nullptr;
};
OF_HOST_DEVICE void copy_sum_at(const CopySumArgs& a, int64_t i) {
    const int64_t b = i / a.O, o = i % a.O;
    const float* s = a.S + b * a.K * a.O + o;
    float acc = 0.0f;
    for (int k = 0; k < a.K; k++) {
        float v = s[int64_t(k) * a.O];
        if (a.w) {
            v = score_of(v, a.density, a.score);
            if (a.sigmas) v = v / a.sigmas[o];
            v = v * a.w[b * a.K + k];
        }
        acc += v;
    }
    a.G[i] = acc;
}

// Column sums out[o] = alpha sum_r d[r, o] in two stages: part[t, o] over chunk t of kReduceRows rows (one index per
// (t, o)), then out[o] over the chunks in order (one index per o).
struct ColSumArgs {
    float* out;
    float* part;
    const float* d;
    int R, O;
    float alpha;
    const float* mul = nullptr;  // sums d mul (elementwise) instead of d
    int direct = 0;              // one chunk (R <= kReduceRows): stage 1 writes out itself (0 + x is x: the same bits)
};
OF_HOST_DEVICE void col_sum_partial_at(const ColSumArgs& a, int64_t i) {
    const int64_t t = i / a.O, o = i % a.O;
    const int r0 = int(t) * kReduceRows, r1 = r0 + kReduceRows < a.R ? r0 + kReduceRows : a.R;
    float acc = 0.0f;
    for (int r = r0; r < r1; r++) {
        const int64_t at = int64_t(r) * a.O + o;
        acc += a.mul ? a.d[at] * a.mul[at] : a.d[at];
    }
    if (a.direct) a.out[i] = a.alpha * acc;
    else a.part[i] = acc;
}
OF_HOST_DEVICE void col_sum_final_at(const ColSumArgs& a, int64_t o) {
    const int chunks = (a.R + kReduceRows - 1) / kReduceRows;
    float acc = 0.0f;
    for (int t = 0; t < chunks; t++) acc += a.part[int64_t(t) * a.O + o];
    a.out[o] = a.alpha * acc;
}

// Gradient norm in two stages: part[t] = sum of squares of chunk t (float64), then norm[0] = sqrt of their sum,
// norm[1] = the clipping factor min(1, clip / norm) (1 when clip is 0).
struct SumSqArgs {
    double* part;
    double* norm;
    const float* g;
    int64_t n;
    float clip;
};
OF_HOST_DEVICE void sumsq_partial_at(const SumSqArgs& a, int64_t t) {
    const int64_t i0 = t * kReduceChunk, i1 = i0 + kReduceChunk < a.n ? i0 + kReduceChunk : a.n;
    double s = 0.0;
    for (int64_t i = i0; i < i1; i++) s += double(a.g[i]) * a.g[i];
    a.part[t] = s;
}
OF_HOST_DEVICE void sumsq_final_at(const SumSqArgs& a, int64_t) {
    const int64_t chunks = (a.n + kReduceChunk - 1) / kReduceChunk;
    double s = 0.0;
    for (int64_t t = 0; t < chunks; t++) s += a.part[t];
    const double norm = sqrt(s);
    a.norm[0] = norm;
    a.norm[1] = (a.clip > 0.0f && norm > a.clip) ? a.clip / (norm + 1e-12) : 1.0;
}

// One optimizer update per element (cpu::optimizer_step's formulas and order of operations). gscale: the clipping
// factor (norm[1] of SumSqArgs) or nullptr; gate: a step-statistics block whose [2] is 0 when the loss was
// non-finite (the update is then skipped), or nullptr.
struct OptArgs {
    float* p;
    const float* g;
    float* m;
    float* v;
    const double* gscale;
    const double* gate;
    OptKind kind;
    float lr, wd, mu;
    int nesterov;
    float b1, b2, eps, step, inv_sqrt_bc2;
};
OF_HOST_DEVICE void optimizer_at(const OptArgs& a, int64_t i) {
    if (a.gate && a.gate[2] == 0.0) return;
    const float gs = a.gscale ? float(a.gscale[1]) : 1.0f;
    if (a.kind == OptKind::Sgd) {
        if (a.mu == 0.0f) {
            a.p[i] -= a.lr * (a.g[i] * gs + a.wd * a.p[i]);
            return;
        }
        float gi = a.g[i] * gs + a.wd * a.p[i];
        float b = a.mu * a.m[i] + gi;
        a.m[i] = b;
        a.p[i] -= a.lr * (a.nesterov ? gi + a.mu * b : b);
        return;
    }
    const bool decoupled = a.kind == OptKind::AdamW;
    const float l2 = decoupled ? 0.0f : a.wd, decay = decoupled ? a.lr * a.wd : 0.0f;
    float pi = a.p[i] - decay * a.p[i];
    float gi = a.g[i] * gs + l2 * a.p[i];
    float mi = a.b1 * a.m[i] + (1.0f - a.b1) * gi;
    float vi = a.b2 * a.v[i] + (1.0f - a.b2) * gi * gi;
    a.m[i] = mi, a.v[i] = vi;
    a.p[i] = pi - a.step * mi / (sqrtf(vi) * a.inv_sqrt_bc2 + a.eps);
}

// The kernels every device implements: X(name, Args) -> Status name(const Args&, int64_t n) runs name_at over n.
#define OF_DEVICE_KERNELS(X)             \
    X(noisy_forward, NoisyArgs)          \
    X(qmc_noise, QmcArgs)                \
    X(noisy_apply, NoisyArgs)            \
    X(im2row, PatchArgs)                 \
    X(graph, GraphArgs)                  \
    X(pool, PoolArgs)                    \
    X(row2im, PatchArgs)                 \
    X(pool_backward, PoolBackArgs)       \
    X(dropout, DropoutArgs)              \
    X(skip_add, SkipArgs)                \
    X(add, AddArgs)                      \
    X(axpy, AxpyArgs)                    \
    X(quantize, QuantArgs)               \
    X(concat, ConcatArgs)                \
    X(concat_backward, ConcatBackArgs)   \
    X(layer_norm, NormArgs)              \
    X(group_norm, NormArgs)              \
    X(layer_norm_backward, NormBackArgs) \
    X(group_norm_backward, NormBackArgs) \
    X(bn_stats, BatchStatsArgs)          \
    X(bn_apply, BatchApplyArgs)          \
    X(bn_backward_sums, BatchBackArgs)   \
    X(bn_backward, BatchBackArgs)        \
    X(bn_running, RunningArgs)           \
    X(seq_input, SeqArgs)                \
    X(seq_cell, SeqArgs)                 \
    X(seq_candidate, SeqArgs)            \
    X(seq_output, SeqArgs)               \
    X(seq_back_cell, SeqBackArgs)        \
    X(seq_back_reset, SeqBackArgs)       \
    X(repeat, TimeArgs)                  \
    X(repeat_backward, TimeArgs)         \
    X(time_mean, TimeArgs)               \
    X(time_mean_backward, TimeArgs)      \
    X(bias_act, BiasActArgs)             \
    X(act_backward, ActBackArgs)         \
    X(loss_rows, LossArgs)               \
    X(loss_grad, LossArgs)               \
    X(row_sums, RowWeightArgs)           \
    X(row_totals, RowWeightArgs)         \
    X(sample_weights, RowWeightArgs)     \
    X(row_weights, RowWeightArgs)        \
    X(stats_partial, StatsArgs)          \
    X(stats_final, StatsArgs)            \
    X(score_rows, ScoreRowsArgs)         \
    X(score_cols, ScoreColsArgs)         \
    X(sigma_grad, SigmaGradArgs)         \
    X(var_rows, VarRowsArgs)             \
    X(dsum_partial, DSumArgs)            \
    X(dsum_final, DSumArgs)              \
    X(copy_sum, CopySumArgs)             \
    X(col_sum_partial, ColSumArgs)       \
    X(col_sum_final, ColSumArgs)         \
    X(sumsq_partial, SumSqArgs)          \
    X(sumsq_final, SumSqArgs)            \
    X(optimizer, OptArgs)

}  // namespace of::dev
