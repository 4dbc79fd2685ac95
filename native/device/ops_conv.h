// Device kernels (ops.h): convolution patches, pooling and graph aggregation. Forwards gather one output per index;
// the adjoints (row2im, pool_backward) gather one input value per index, visiting its windows in the order the CPU
// scatters them, so nothing races and the sums round as on the CPU.
#pragma once
#include <cstdint>

#include "core/host_device.h"
#include "kernels/cpu/conv.h"

namespace of::dev {

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

// Tap k of output index o along one axis (stride s, padding p, dilation dl) reads input index o s - p + k dl: inside
// an axis of n values, or in the zero padding. The CPU's patches and pooling (kernels/cpu/conv.cpp) take their taps
// from here too.
OF_HOST_DEVICE int tap_at(int o, int k, int s, int p, int dl) { return o * s - p + k * dl; }
OF_HOST_DEVICE bool tap_inside(int i, int n) { return unsigned(i) < unsigned(n); }

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
    const int col = int(i % patch), pos = int(row % P), tap = col / g.C;
    const int iy = tap_at(pos / g.Wo, tap / g.kw, g.sh, g.ph, g.dh),
              ix = tap_at(pos % g.Wo, tap % g.kw, g.sw, g.pw, g.dw);
    a.out[i] = !tap_inside(iy, g.H) || !tap_inside(ix, g.W)
                   ? 0.0f
                   : a.in[row / P * (int64_t(g.H) * g.W * g.C) + (int64_t(iy) * g.W + ix) * g.C + col % g.C];
}

// Pooling per value: a window starts at pool_start, takes each tap inside the image (max: the larger, a NaN tap
// skipped; avg: the sum) and ends at pool_end (avg: divided by its taps; no tap: 0).
OF_HOST_DEVICE float pool_start(PoolKind k) { return k == PoolKind::Max ? -3.402823466e+38f : 0.0f; }
OF_HOST_DEVICE float pool_take(PoolKind k, float acc, float v) {
    return k == PoolKind::Max ? (v > acc ? v : acc) : acc + v;
}
OF_HOST_DEVICE float pool_end(PoolKind k, float acc, int taps) {
    return taps == 0 ? 0.0f : k == PoolKind::Avg ? acc / float(taps) : acc;
}
// The taps of window (oy, ox) inside the image; the offset in its image of the first one holding the maximum of
// channel c (-1: none)
OF_HOST_DEVICE int window_taps(const ConvGeom& g, int oy, int ox) {
    int n = 0;
    for (int ky = 0; ky < g.kh; ky++)
        for (int kx = 0; kx < g.kw; kx++)
            n += tap_inside(tap_at(oy, ky, g.sh, g.ph, g.dh), g.H) && tap_inside(tap_at(ox, kx, g.sw, g.pw, g.dw), g.W);
    return n;
}
OF_HOST_DEVICE int64_t window_argmax(const ConvGeom& g, const float* xi, int oy, int ox, int c) {
    int64_t best = -1;
    float bv = -3.402823466e+38f;
    for (int ky = 0; ky < g.kh; ky++) {
        const int iy = tap_at(oy, ky, g.sh, g.ph, g.dh);
        for (int kx = 0; tap_inside(iy, g.H) && kx < g.kw; kx++) {
            const int ix = tap_at(ox, kx, g.sw, g.pw, g.dw);
            const int64_t at = (int64_t(iy) * g.W + ix) * g.C + c;
            if (tap_inside(ix, g.W) && (best < 0 || xi[at] > bv)) best = at, bv = xi[at];
        }
    }
    return best;
}

// Pooling per channel (cpu::pool_forward): y (n, Ho Wo C) from x (n, H W C). One index per output value.
struct PoolArgs {
    float* y;
    const float* x;
    ConvGeom g;
    PoolKind kind;
};
OF_HOST_DEVICE void pool_at(const PoolArgs& a, int64_t i) {
    const ConvGeom& g = a.g;
    const int64_t P = int64_t(g.Ho) * g.Wo;
    const int pos = int(i / g.C % P);
    const float* xi = a.x + i / g.C / P * (int64_t(g.H) * g.W * g.C) + i % g.C;
    float out = pool_start(a.kind);
    int taps = 0;
    for (int ky = 0; ky < g.kh; ky++) {
        const int iy = tap_at(pos / g.Wo, ky, g.sh, g.ph, g.dh);
        for (int kx = 0; tap_inside(iy, g.H) && kx < g.kw; kx++) {
            const int ix = tap_at(pos % g.Wo, kx, g.sw, g.pw, g.dw);
            if (tap_inside(ix, g.W)) taps++, out = pool_take(a.kind, out, xi[(int64_t(iy) * g.W + ix) * g.C]);
        }
    }
    a.y[i] = pool_end(a.kind, out, taps);
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

// f(oy, ox, ky, kx) for each window (oy, ox) that reads input pixel (iy, ix) at its tap (ky, kx), in window_of's order.
template <class F>
OF_HOST_DEVICE void for_each_window(const ConvGeom& g, int iy, int ix, const F& f) {
    for (int ky = g.kh - 1; ky >= 0; ky--) {
        const int oy = window_of(iy, ky, g.ph, g.dh, g.sh, g.Ho);
        if (oy < 0) continue;
        for (int kx = g.kw - 1; kx >= 0; kx--) {
            const int ox = window_of(ix, kx, g.pw, g.dw, g.sw, g.Wo);
            if (ox >= 0) f(oy, ox, ky, kx);
        }
    }
}

// The adjoint of im2row (cpu::row2im) as a gather: dx (n, H W C) = the sum of the patch gradients dA (n Ho Wo,
// kh kw C) at each input value's taps (out = dx, in = dA). One index per input value.
OF_HOST_DEVICE void row2im_at(const PatchArgs& a, int64_t i) {
    const ConvGeom& g = a.g;
    const Pixel p = pixel_of(g, i);  // (a lambda captures no structured binding in C++17)
    const int64_t P = int64_t(g.Ho) * g.Wo;
    const int patch = g.kh * g.kw * g.C;
    float acc = 0.0f;
    for_each_window(g, p.iy, p.ix, [&](int oy, int ox, int ky, int kx) {
        acc += a.in[(p.img * P + int64_t(oy) * g.Wo + ox) * patch + (ky * g.kw + kx) * g.C + p.c];
    });
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
    const Pixel p = pixel_of(g, i);
    const int64_t P = int64_t(g.Ho) * g.Wo, at = (int64_t(p.iy) * g.W + p.ix) * g.C + p.c;  // in its image
    const float* xi = a.x + p.img * (int64_t(g.H) * g.W * g.C);
    float acc = 0.0f;
    for_each_window(g, p.iy, p.ix, [&](int oy, int ox, int, int) {
        const float d = a.dy[(p.img * P + int64_t(oy) * g.Wo + ox) * g.C + p.c];
        if (a.kind == PoolKind::Avg) acc += d / float(window_taps(g, oy, ox));
        else if (window_argmax(g, xi, oy, ox, p.c) == at) acc += d;
    });
    a.dx[i] = acc;
}

#define OF_CONV_KERNELS(X) \
    X(im2row, PatchArgs)   \
    X(graph, GraphArgs)    \
    X(pool, PoolArgs)      \
    X(row2im, PatchArgs)   \
    X(pool_backward, PoolBackArgs)

}  // namespace of::dev
