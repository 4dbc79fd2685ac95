// im2row / row2im and pooling on channels-last images; images split over the thread pool (each task owns
// whole images, so results do not depend on the thread count).
#include "kernels/cpu/conv.h"

#include <algorithm>

#include "core/thread_pool.h"
#include "device/ops_conv.h"
#include "kernels/cpu/simd.h"

namespace of {
namespace cpu {
namespace {

template <class F>
void per_image(int n, int64_t cost_per_image, const F& f) {
    ThreadPool::instance().parallel_for(
        n, [&](int i) { f(i); }, cost_per_image * n);
}

// Every window lies inside the image (no padding, no dilation): no bounds checks per tap.
bool windows_inside(const ConvGeom& g) {
    return g.ph == 0 && g.pw == 0 && g.dh == 1 && g.dw == 1 && (g.Ho - 1) * g.sh + g.kh <= g.H &&
           (g.Wo - 1) * g.sw + g.kw <= g.W;
}

bool has_avx512() {
    static const bool yes = __builtin_cpu_supports("avx512f");
    return yes;
}

// x where x > best, else best: std::max(best, x) per lane, NaN in x skipped as in the plain loops
__attribute__((target("avx512f"))) inline __m512 max_of(__m512 x, __m512 best) { return _mm512_max_ps(x, best); }

// One image's max pool, windows inside it, 16 channels at a time.
__attribute__((target("avx512f"))) void max_pool_forward_avx512(float* yi, const float* xi, const ConvGeom& g) {
    for (int oy = 0; oy < g.Ho; oy++)
        for (int ox = 0; ox < g.Wo; ox++) {
            const int64_t corner = (int64_t(oy * g.sh) * g.W + ox * g.sw) * g.C;
            for (int c = 0; c < g.C; c += 16) {
                const __mmask16 m = lanes(g.C - c);
                __m512 best = _mm512_maskz_loadu_ps(m, xi + corner + c);
                for (int ky = 0; ky < g.kh; ky++)
                    for (int kx = 0; kx < g.kw; kx++)
                        best = max_of(_mm512_maskz_loadu_ps(m, xi + corner + (int64_t(ky) * g.W + kx) * g.C + c), best);
                _mm512_mask_storeu_ps(yi + (int64_t(oy) * g.Wo + ox) * g.C + c, m, best);
            }
        }
}

// One image's max-pool gradient, windows inside it, 16 channels at a time: each window's maxima, then dy added at
// the first tap that holds them (the order and sums of the plain loop below, so the same bits).
__attribute__((target("avx512f"))) void max_pool_backward_avx512(float* di, const float* dyi, const float* xi,
                                                                 const ConvGeom& g) {
    for (int oy = 0; oy < g.Ho; oy++)
        for (int ox = 0; ox < g.Wo; ox++) {
            const float* d = dyi + (int64_t(oy) * g.Wo + ox) * g.C;
            const int64_t corner = (int64_t(oy * g.sh) * g.W + ox * g.sw) * g.C;
            for (int c = 0; c < g.C; c += 16) {
                const __mmask16 m = lanes(g.C - c);
                __m512 best = _mm512_maskz_loadu_ps(m, xi + corner + c);
                for (int ky = 0; ky < g.kh; ky++)
                    for (int kx = 0; kx < g.kw; kx++)
                        best = max_of(_mm512_maskz_loadu_ps(m, xi + corner + (int64_t(ky) * g.W + kx) * g.C + c), best);
                const __m512 dv = _mm512_maskz_loadu_ps(m, d + c);
                __mmask16 todo = m;
                for (int ky = 0; ky < g.kh && todo; ky++)
                    for (int kx = 0; kx < g.kw && todo; kx++) {
                        const int64_t at = corner + (int64_t(ky) * g.W + kx) * g.C + c;
                        const __mmask16 hit =
                            _mm512_mask_cmp_ps_mask(todo, _mm512_maskz_loadu_ps(m, xi + at), best, _CMP_EQ_OQ);
                        _mm512_mask_storeu_ps(di + at, hit, _mm512_add_ps(_mm512_maskz_loadu_ps(hit, di + at), dv));
                        todo = __mmask16(todo & ~hit);
                    }
            }
        }
}

// The same two for C <= 8: windows ox and ox + 1 share a register (lanes 0-7 and 8-15, the second half masked off
// past Wo), with the same maxima in the same order. The gradient pairs only windows that do not overlap (sw >= kw):
// with overlap, window ox + 1's add into a shared input could come before window ox's and round differently.
struct WindowPair {
    __mmask16 lo, hi;  // lanes of window ox, of window ox + 1
    int64_t next;      // from a tap of window ox to the same tap of ox + 1, less the 8 lanes before it
    __attribute__((target("avx512f"))) __m512 load(const float* p) const {
        return _mm512_mask_loadu_ps(_mm512_maskz_loadu_ps(lo, p), hi, p + next);
    }
    __attribute__((target("avx512f"))) void store(float* p, __m512 v) const {
        _mm512_mask_storeu_ps(p, lo, v);
        _mm512_mask_storeu_ps(p + next, hi, v);
    }
};

__attribute__((target("avx512f"))) void max_pool_forward_pairs(float* yi, const float* xi, const ConvGeom& g) {
    const __mmask16 lo = lanes(g.C);
    for (int oy = 0; oy < g.Ho; oy++)
        for (int ox = 0; ox < g.Wo; ox += 2) {
            const WindowPair in{lo, ox + 1 < g.Wo ? __mmask16(lo << 8) : __mmask16(0), int64_t(g.sw) * g.C - 8};
            const float* corner = xi + (int64_t(oy * g.sh) * g.W + ox * g.sw) * g.C;
            __m512 best = in.load(corner);  // (max_of(x, x) is x, bit for bit: the first tap is skipped)
            for (int ky = 0; ky < g.kh; ky++)
                for (int kx = ky == 0; kx < g.kw; kx++)
                    best = max_of(in.load(corner + (int64_t(ky) * g.W + kx) * g.C), best);
            const WindowPair out{in.lo, in.hi, g.C - 8};
            out.store(yi + (int64_t(oy) * g.Wo + ox) * g.C, best);
        }
}

__attribute__((target("avx512f"))) void max_pool_backward_pairs(float* di, const float* dyi, const float* xi,
                                                                const ConvGeom& g) {
    const __mmask16 lo = lanes(g.C);
    for (int oy = 0; oy < g.Ho; oy++)
        for (int ox = 0; ox < g.Wo; ox += 2) {
            const WindowPair in{lo, ox + 1 < g.Wo ? __mmask16(lo << 8) : __mmask16(0), int64_t(g.sw) * g.C - 8};
            const WindowPair out{in.lo, in.hi, g.C - 8};
            const int64_t corner = (int64_t(oy * g.sh) * g.W + ox * g.sw) * g.C;
            __m512 best = in.load(xi + corner);
            for (int ky = 0; ky < g.kh; ky++)
                for (int kx = ky == 0; kx < g.kw; kx++)
                    best = max_of(in.load(xi + corner + (int64_t(ky) * g.W + kx) * g.C), best);
            const __m512 dv = out.load(dyi + (int64_t(oy) * g.Wo + ox) * g.C);
            __mmask16 todo = __mmask16(in.lo | in.hi);
            for (int ky = 0; ky < g.kh && todo; ky++)
                for (int kx = 0; kx < g.kw && todo; kx++) {
                    const int64_t at = corner + (int64_t(ky) * g.W + kx) * g.C;
                    const __mmask16 hit = _mm512_mask_cmp_ps_mask(todo, in.load(xi + at), best, _CMP_EQ_OQ);
                    const WindowPair hits{__mmask16(hit & in.lo), __mmask16(hit & in.hi), in.next};
                    hits.store(di + at, _mm512_add_ps(hits.load(di + at), dv));
                    todo = __mmask16(todo & ~hit);
                }
        }
}

}  // namespace

// The patches and their adjoint a tap (C values) at a time, the taps and their padding the device's (ops_conv.h)
void im2row(float* A, const float* x, int n, const ConvGeom& g) {
    const int P = g.patch();
    per_image(n, g.positions() * P, [&](int i) {
        const float* xi = x + int64_t(i) * g.in_size();
        float* dst = A + int64_t(i) * g.positions() * P;
        for (int oy = 0; oy < g.Ho; oy++)
            for (int ox = 0; ox < g.Wo; ox++)
                for (int ky = 0; ky < g.kh; ky++) {
                    const int iy = dev::tap_at(oy, ky, g.sh, g.ph, g.dh);
                    for (int kx = 0; kx < g.kw; kx++, dst += g.C) {  // plain loops: a tap is only C values
                        const int ix = dev::tap_at(ox, kx, g.sw, g.pw, g.dw);
                        if (!dev::tap_inside(iy, g.H) || !dev::tap_inside(ix, g.W))
                            for (int c = 0; c < g.C; c++) dst[c] = 0.0f;
                        else
                            for (int c = 0; c < g.C; c++) dst[c] = xi[(int64_t(iy) * g.W + ix) * g.C + c];
                    }
                }
    });
}

void row2im(float* dx, const float* dA, int n, const ConvGeom& g) {
    const int P = g.patch();
    per_image(n, g.positions() * P, [&](int i) {
        float* di = dx + int64_t(i) * g.in_size();
        std::fill(di, di + g.in_size(), 0.0f);
        const float* row = dA + int64_t(i) * g.positions() * P;
        for (int oy = 0; oy < g.Ho; oy++)
            for (int ox = 0; ox < g.Wo; ox++, row += P) {
                const float* src = row;
                for (int ky = 0; ky < g.kh; ky++) {
                    const int iy = dev::tap_at(oy, ky, g.sh, g.ph, g.dh);
                    for (int kx = 0; kx < g.kw; kx++, src += g.C) {
                        const int ix = dev::tap_at(ox, kx, g.sw, g.pw, g.dw);
                        if (!dev::tap_inside(iy, g.H) || !dev::tap_inside(ix, g.W)) continue;
                        float* d = di + (int64_t(iy) * g.W + ix) * g.C;
                        for (int c = 0; c < g.C; c++) d[c] += src[c];
                    }
                }
            }
    });
}

void pool_forward(float* y, const float* x, int n, const ConvGeom& g, PoolKind kind) {
    if (kind == PoolKind::Max && windows_inside(g) && has_avx512()) {
        per_image(n, g.positions() * g.kh * g.kw * g.C, [&](int i) {
            float* yi = y + int64_t(i) * g.positions() * g.C;
            if (g.C <= 8) max_pool_forward_pairs(yi, x + int64_t(i) * g.in_size(), g);
            else max_pool_forward_avx512(yi, x + int64_t(i) * g.in_size(), g);
        });
        return;
    }
    if (kind == PoolKind::Max && windows_inside(g)) {  // every window inside the image: no bounds checks
        per_image(n, g.positions() * g.kh * g.kw * g.C, [&](int i) {
            const float* xi = x + int64_t(i) * g.in_size();
            float* yi = y + int64_t(i) * g.positions() * g.C;
            for (int oy = 0; oy < g.Ho; oy++)
                for (int ox = 0; ox < g.Wo; ox++) {
                    float* out = yi + (int64_t(oy) * g.Wo + ox) * g.C;
                    const float* first = xi + (int64_t(oy * g.sh) * g.W + ox * g.sw) * g.C;
                    for (int c = 0; c < g.C; c++) out[c] = first[c];
                    for (int ky = 0; ky < g.kh; ky++)
                        for (int kx = 0; kx < g.kw; kx++) {
                            const float* src = xi + (int64_t(oy * g.sh + ky) * g.W + ox * g.sw + kx) * g.C;
                            for (int c = 0; c < g.C; c++) out[c] = dev::pool_take(PoolKind::Max, out[c], src[c]);
                        }
                }
        });
        return;
    }
    per_image(n, g.positions() * g.kh * g.kw * g.C, [&](int i) {  // the device's arithmetic (ops_conv.h), C at a time
        const float* xi = x + int64_t(i) * g.in_size();
        float* out = y + int64_t(i) * g.positions() * g.C;
        for (int oy = 0; oy < g.Ho; oy++)
            for (int ox = 0; ox < g.Wo; ox++, out += g.C) {
                for (int c = 0; c < g.C; c++) out[c] = dev::pool_start(kind);
                int taps = 0;
                for (int ky = 0; ky < g.kh; ky++) {
                    const int iy = dev::tap_at(oy, ky, g.sh, g.ph, g.dh);
                    for (int kx = 0; dev::tap_inside(iy, g.H) && kx < g.kw; kx++) {
                        const int ix = dev::tap_at(ox, kx, g.sw, g.pw, g.dw);
                        if (!dev::tap_inside(ix, g.W)) continue;
                        const float* src = xi + (int64_t(iy) * g.W + ix) * g.C;
                        taps++;
                        for (int c = 0; c < g.C; c++) out[c] = dev::pool_take(kind, out[c], src[c]);
                    }
                }
                for (int c = 0; c < g.C; c++) out[c] = dev::pool_end(kind, out[c], taps);
            }
    });
}

void pool_backward(float* dx, const float* dy, const float* x, int n, const ConvGeom& g, PoolKind kind) {
    if (kind == PoolKind::Max && windows_inside(g) && has_avx512()) {
        per_image(n, g.positions() * g.kh * g.kw * g.C, [&](int i) {
            float* di = dx + int64_t(i) * g.in_size();
            std::fill(di, di + g.in_size(), 0.0f);
            const float *dyi = dy + int64_t(i) * g.positions() * g.C, *xi = x + int64_t(i) * g.in_size();
            if (g.C <= 8 && g.sw >= g.kw) max_pool_backward_pairs(di, dyi, xi, g);
            else max_pool_backward_avx512(di, dyi, xi, g);
        });
        return;
    }
    per_image(n, g.positions() * g.kh * g.kw * g.C, [&](int i) {
        const float* xi = x + int64_t(i) * g.in_size();
        float* di = dx + int64_t(i) * g.in_size();
        std::fill(di, di + g.in_size(), 0.0f);
        const float* d = dy + int64_t(i) * g.positions() * g.C;
        for (int oy = 0; oy < g.Ho; oy++)
            for (int ox = 0; ox < g.Wo; ox++, d += g.C) {
                const int taps = dev::window_taps(g, oy, ox);
                for (int c = 0; taps && c < g.C; c++) {
                    if (kind == PoolKind::Max) {
                        di[dev::window_argmax(g, xi, oy, ox, c)] += d[c];
                        continue;
                    }
                    const float share = d[c] / float(taps);
                    for (int ky = 0; ky < g.kh; ky++) {
                        const int iy = dev::tap_at(oy, ky, g.sh, g.ph, g.dh);
                        for (int kx = 0; dev::tap_inside(iy, g.H) && kx < g.kw; kx++) {
                            const int ix = dev::tap_at(ox, kx, g.sw, g.pw, g.dw);
                            if (dev::tap_inside(ix, g.W)) di[(int64_t(iy) * g.W + ix) * g.C + c] += share;
                        }
                    }
                }
            }
    });
}

}  // namespace cpu
}  // namespace of
