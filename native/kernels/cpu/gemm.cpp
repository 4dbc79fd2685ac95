// GEMM driver and micro-kernels (see gemm.h for the contract).
// Blocking (BLIS order): a task owns a tile of C (mt x nt, full K). For each KC slice it packs its A rows
// into MR-row panels (kept in L2) and its B columns into NR-column panels (one panel sits in L1 while the
// micro-kernel sweeps the A panels). A task never shares C with another, so no reduction crosses threads.
#include "kernels/cpu/gemm.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "core/buffer.h"
#include "core/thread_pool.h"
#include "core/thread_scratch.h"
#include "kernels/cpu/gemm_tile.h"
#include "kernels/cpu/simd.h"

namespace of::cpu {
namespace {

// Per-thread packing space: A and B panels of one tile (MR x 16 and NR x 16 rows of KC values; for a one-slice
// product with a shared B, the caller's b holds all of B's panels, N <= 16 NR rows of K <= KC, and the tasks pack no
// B of their own), and the transposed A of a narrow product (K x at most kNarrow).
struct PackScratch {
    Buffer a, b;
};
struct NarrowScratch {
    Buffer a;
};

// ---- AVX-512: 8 x 32 tile, 16 zmm accumulators ----
__attribute__((target("avx512f,fma"))) void ukernel_avx512(int kc, const float* Ap, const float* Bp, float* C,
                                                           ptrdiff_t rsc, ptrdiff_t csc, int mr, int nr, float alpha,
                                                           float beta, bool first) {
    __m512 c0[8], c1[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) c0[i] = _mm512_setzero_ps(), c1[i] = _mm512_setzero_ps();
    for (int p = 0; p < kc; p++) {
        __m512 b0 = _mm512_load_ps(Bp + p * 32), b1 = _mm512_load_ps(Bp + p * 32 + 16);
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            __m512 a = _mm512_set1_ps(Ap[p * 8 + i]);
            c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
        }
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    if (mr == 8 && nr == 32 && csc == 1) {
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            float* c = C + i * rsc;
            __m512 r0 = _mm512_mul_ps(va, c0[i]), r1 = _mm512_mul_ps(va, c1[i]);
            if (!first) {
                r0 = _mm512_add_ps(r0, _mm512_loadu_ps(c)), r1 = _mm512_add_ps(r1, _mm512_loadu_ps(c + 16));
            } else if (beta != 0.0f) {
                r0 = _mm512_add_ps(r0, _mm512_mul_ps(vb, _mm512_loadu_ps(c)));
                r1 = _mm512_add_ps(r1, _mm512_mul_ps(vb, _mm512_loadu_ps(c + 16)));
            }
            _mm512_storeu_ps(c, r0), _mm512_storeu_ps(c + 16, r1);
        }
        return;
    }
    alignas(64) float acc[8 * 32];
    for (int i = 0; i < 8; i++) _mm512_store_ps(acc + i * 32, c0[i]), _mm512_store_ps(acc + i * 32 + 16, c1[i]);
    store_tile(acc, 32, C, rsc, csc, mr, nr, alpha, beta, first);
}

// ---- AVX2 + FMA: 6 x 16 tile, 12 ymm accumulators ----
__attribute__((target("avx2,fma"))) void ukernel_avx2(int kc, const float* Ap, const float* Bp, float* C, ptrdiff_t rsc,
                                                      ptrdiff_t csc, int mr, int nr, float alpha, float beta,
                                                      bool first) {
    __m256 c0[6], c1[6];
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++) c0[i] = _mm256_setzero_ps(), c1[i] = _mm256_setzero_ps();
    for (int p = 0; p < kc; p++) {
        __m256 b0 = _mm256_load_ps(Bp + p * 16), b1 = _mm256_load_ps(Bp + p * 16 + 8);
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++) {
            __m256 a = _mm256_broadcast_ss(Ap + p * 6 + i);
            c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
        }
    }
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    if (mr == 6 && nr == 16 && csc == 1) {
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++) {
            float* c = C + i * rsc;
            __m256 r0 = _mm256_mul_ps(va, c0[i]), r1 = _mm256_mul_ps(va, c1[i]);
            if (!first) {
                r0 = _mm256_add_ps(r0, _mm256_loadu_ps(c)), r1 = _mm256_add_ps(r1, _mm256_loadu_ps(c + 8));
            } else if (beta != 0.0f) {
                r0 = _mm256_add_ps(r0, _mm256_mul_ps(vb, _mm256_loadu_ps(c)));
                r1 = _mm256_add_ps(r1, _mm256_mul_ps(vb, _mm256_loadu_ps(c + 8)));
            }
            _mm256_storeu_ps(c, r0), _mm256_storeu_ps(c + 8, r1);
        }
        return;
    }
    alignas(64) float acc[6 * 16];
    for (int i = 0; i < 6; i++) _mm256_store_ps(acc + i * 16, c0[i]), _mm256_store_ps(acc + i * 16 + 8, c1[i]);
    store_tile(acc, 16, C, rsc, csc, mr, nr, alpha, beta, first);
}

// ---- portable: 4 x 8 tile with std::fma, so it rounds exactly like the SIMD kernels ----
void ukernel_scalar(int kc, const float* Ap, const float* Bp, float* C, ptrdiff_t rsc, ptrdiff_t csc, int mr, int nr,
                    float alpha, float beta, bool first) {
    float acc[4 * 8] = {};
    for (int p = 0; p < kc; p++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 8; j++) acc[i * 8 + j] = std::fma(Ap[p * 4 + i], Bp[p * 8 + j], acc[i * 8 + j]);
    store_tile(acc, 8, C, rsc, csc, mr, nr, alpha, beta, first);
}

// ---- narrow shapes (AVX-512): no packing ----
// A ULR output layer is a tall, narrow GEMM (2048 rows x 10 classes): an NR-wide tile would be 2/3 padding
// and packing the tall operand would cost as much as the multiply. Two direct kernels instead:
//   dot:   C (M, N<=12) = A (M, K) B^T with A rows and B rows contiguous (csa = rsb = 1): per row pair,
//          N x 2 accumulators over K in 16-lane chunks, then a fixed reduction tree.
//   outer: C (M<=12, N) = A^T-ish (M, K) diag(s) B (K, N) with B rows contiguous (csb = 1): per 32-column
//          strip, M x 2 accumulators; each step broadcasts A(i, p) s[p] and adds a rank-1 update.
// Both are deterministic per element (fixed order over K); their bits differ from the packed path's.
// (narrow_kernel in gemm_tile.h picks them.)

__attribute__((target("avx512f,fma"))) void dot_rows_avx512(float* C, ptrdiff_t rsc, ptrdiff_t csc, const float* A,
                                                            ptrdiff_t rsa, const float* B, ptrdiff_t csb, int rows,
                                                            int N, int K, float alpha, float beta) {
    for (int i = 0; i < rows; i += 2) {
        const int nr = std::min(2, rows - i);
        const float* a0 = A + i * rsa;
        const float* a1 = nr > 1 ? a0 + rsa : a0;
        __m512 acc0[kNarrow], acc1[kNarrow];
#pragma GCC unroll 12
        for (int j = 0; j < kNarrow; j++) acc0[j] = _mm512_setzero_ps(), acc1[j] = _mm512_setzero_ps();
        for (int p = 0; p < K; p += 16) {
            __mmask16 mk = lanes(K - p);
            __m512 x0 = _mm512_maskz_loadu_ps(mk, a0 + p), x1 = _mm512_maskz_loadu_ps(mk, a1 + p);
#pragma GCC unroll 12
            for (int j = 0; j < kNarrow; j++) {
                if (j < N) {
                    __m512 b = _mm512_maskz_loadu_ps(mk, B + j * csb + p);
                    acc0[j] = _mm512_fmadd_ps(x0, b, acc0[j]);
                    acc1[j] = _mm512_fmadd_ps(x1, b, acc1[j]);
                }
            }
        }
        for (int r = 0; r < nr; r++)
            for (int j = 0; j < N; j++) {
                float v = alpha * _mm512_reduce_add_ps(r ? acc1[j] : acc0[j]);
                float* c = C + (i + r) * rsc + j * csc;
                *c = beta == 0.0f ? v : v + beta * *c;
            }
    }
}

// As: A (M, K) scaled by s and stored (K, M): As[p * M + i] = A(i, p) s[p] (packed once per call).
__attribute__((target("avx512f,fma"))) void outer_cols_avx512(float* C, ptrdiff_t rsc, ptrdiff_t csc, const float* As,
                                                              const float* B, ptrdiff_t rsb, int M, int j0, int cols,
                                                              int K, float alpha, float beta) {
    __mmask16 m0 = lanes(cols);
    __mmask16 m1 = lanes(cols - 16);
    __m512 acc0[kNarrow], acc1[kNarrow];
#pragma GCC unroll 12
    for (int i = 0; i < kNarrow; i++) acc0[i] = _mm512_setzero_ps(), acc1[i] = _mm512_setzero_ps();
    for (int p = 0; p < K; p++) {
        const float* b = B + p * rsb + j0;
        __m512 b0 = _mm512_maskz_loadu_ps(m0, b), b1 = _mm512_maskz_loadu_ps(m1, b + 16);
        const float* a = As + p * M;
#pragma GCC unroll 12
        for (int i = 0; i < kNarrow; i++) {
            if (i < M) {
                __m512 x = _mm512_set1_ps(a[i]);
                acc0[i] = _mm512_fmadd_ps(x, b0, acc0[i]);
                acc1[i] = _mm512_fmadd_ps(x, b1, acc1[i]);
            }
        }
    }
    alignas(64) float t[32];
    for (int i = 0; i < M; i++) {
        _mm512_store_ps(t, acc0[i]), _mm512_store_ps(t + 16, acc1[i]);
        for (int j = 0; j < cols; j++) {
            float* c = C + i * rsc + (j0 + j) * csc;
            float v = alpha * t[j];
            *c = beta == 0.0f ? v : v + beta * *c;
        }
    }
}

using UKernel = void (*)(int, const float*, const float*, float*, ptrdiff_t, ptrdiff_t, int, int, float, float, bool);

struct Isa {
    const char* name;
    int MR, NR;
    UKernel kernel;
};

Isa detect_isa() {
    const char* cap = std::getenv("ONEFORWARD_SIMD");
    bool allow512 = !cap || (std::strcmp(cap, "avx2") != 0 && std::strcmp(cap, "scalar") != 0);
    bool allow256 = !cap || std::strcmp(cap, "scalar") != 0;
    __builtin_cpu_init();
    if (allow512 && __builtin_cpu_supports("avx512f")) return {"avx512", 8, 32, ukernel_avx512};
    if (allow256 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return {"avx2", 6, 16, ukernel_avx2};
    return {"scalar", 4, 8, ukernel_scalar};
}

const Isa& isa() {
    static const Isa chosen = detect_isa();
    return chosen;
}

// A block (mr_total rows, kc) -> MR-row panels, each (kc, MR); rows past M are zero. kscale scales column p.
// With AVX-512 (MR = 8), A with contiguous rows or columns goes through pack_a8_rows_avx512 / pack_a8_cols_avx512
// below; this loop serves the other ISAs and an A strided both ways.
void pack_a_generic(float* Ap, const float* A, ptrdiff_t rsa, ptrdiff_t csa, const float* s, int rows, int kc, int MR) {
    for (int i0 = 0; i0 < rows; i0 += MR, Ap += MR * kc) {
        int mr = std::min(MR, rows - i0);
        if (csa == 1) {
            for (int i = 0; i < mr; i++) {
                const float* a = A + (i0 + i) * rsa;
                for (int p = 0; p < kc; p++) Ap[p * MR + i] = s ? a[p] * s[p] : a[p];
            }
        } else {
            for (int p = 0; p < kc; p++) {
                const float* a = A + p * csa + i0 * rsa;
                float sp = s ? s[p] : 1.0f;
                for (int i = 0; i < mr; i++) Ap[p * MR + i] = s ? a[i * rsa] * sp : a[i * rsa];
            }
        }
        for (int i = mr; i < MR; i++)
            for (int p = 0; p < kc; p++) Ap[p * MR + i] = 0.0f;
    }
}

// One 8-row panel (kc, 8) from rows that run along p (csa = 1): per 16 values of p, 8 row loads (times kscale, the
// same single rounding as a[p] * s[p]) and an in-register 8 x 16 transpose; missing rows load as zeros.
__attribute__((target("avx512f"))) void pack_a8_rows_avx512(float* Ap, const float* A, ptrdiff_t rsa, const float* s,
                                                            int mr, int kc) {
    int p = 0;
    for (; p + 16 <= kc; p += 16) {
        __m512 r[8], t[8];
        __m512 sv = s ? _mm512_loadu_ps(s + p) : _mm512_set1_ps(1.0f);
        for (int i = 0; i < 8; i++) {
            r[i] = i < mr ? _mm512_loadu_ps(A + i * rsa + p) : _mm512_setzero_ps();
            if (s && i < mr) r[i] = _mm512_mul_ps(r[i], sv);
        }
        for (int i = 0; i < 8; i += 2) {  // per 128-bit lane q: (r_i, r_i+1) interleaved at p = 4q, 4q+1 / 4q+2, 4q+3
            t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
            t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
        }
        for (int h = 0; h < 8; h += 4) {  // r[h + k], lane q: rows h..h+3 at p = 4q + k
            r[h] = _mm512_shuffle_ps(t[h], t[h + 2], 0x44);
            r[h + 1] = _mm512_shuffle_ps(t[h], t[h + 2], 0xEE);
            r[h + 2] = _mm512_shuffle_ps(t[h + 1], t[h + 3], 0x44);
            r[h + 3] = _mm512_shuffle_ps(t[h + 1], t[h + 3], 0xEE);
        }
        float* d = Ap + p * 8;
        for (int k = 0; k < 4; k += 2) {  // 16 floats = p and p + 1: lane q of r[k], r[k + 4], r[k + 1], r[k + 5]
            __m512 lo0 = _mm512_shuffle_f32x4(r[k], r[k + 4], 0x44);
            __m512 lo1 = _mm512_shuffle_f32x4(r[k + 1], r[k + 5], 0x44);
            __m512 hi0 = _mm512_shuffle_f32x4(r[k], r[k + 4], 0xEE);
            __m512 hi1 = _mm512_shuffle_f32x4(r[k + 1], r[k + 5], 0xEE);
            _mm512_storeu_ps(d + k * 8, _mm512_shuffle_f32x4(lo0, lo1, 0x88));
            _mm512_storeu_ps(d + (4 + k) * 8, _mm512_shuffle_f32x4(lo0, lo1, 0xDD));
            _mm512_storeu_ps(d + (8 + k) * 8, _mm512_shuffle_f32x4(hi0, hi1, 0x88));
            _mm512_storeu_ps(d + (12 + k) * 8, _mm512_shuffle_f32x4(hi0, hi1, 0xDD));
        }
    }
    for (; p < kc; p++)
        for (int i = 0; i < 8; i++) Ap[p * 8 + i] = i < mr ? (s ? A[i * rsa + p] * s[p] : A[i * rsa + p]) : 0.0f;
}

// All 8-row panels from columns that run along i (rsa = 1), p outermost so that each p reads one contiguous run of
// A (a tall A^T, e.g. a weight gradient's activations, is read once rather than once per panel): 16-float masked
// loads times kscale[p], each half stored to its panel.
__attribute__((target("avx512f"))) void pack_a8_cols_avx512(float* Ap, const float* A, ptrdiff_t csa, const float* s,
                                                            int rows, int kc) {
    for (int p = 0; p < kc; p++) {
        const float* a = A + p * csa;
        const __m512 sv = _mm512_set1_ps(s ? s[p] : 1.0f);
        for (int i0 = 0; i0 < rows; i0 += 16) {
            const int n = std::min(16, rows - i0);
            const __mmask16 m = lanes(n);
            __m512 v = _mm512_maskz_loadu_ps(m, a + i0);
            if (s) v = _mm512_maskz_mul_ps(m, v, sv);
            float* d = Ap + size_t(i0 / 8) * 8 * kc + p * 8;
            _mm256_storeu_ps(d, _mm512_castps512_ps256(v));
            if (n > 8) _mm256_storeu_ps(d + 8 * kc, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
        }
    }
}

void pack_a(float* Ap, const float* A, ptrdiff_t rsa, ptrdiff_t csa, const float* s, int rows, int kc, int MR) {
    if (MR != 8 || isa().kernel != ukernel_avx512 || (csa != 1 && rsa != 1))
        return pack_a_generic(Ap, A, rsa, csa, s, rows, kc, MR);
    if (csa != 1) return pack_a8_cols_avx512(Ap, A, csa, s, rows, kc);
    for (int i0 = 0; i0 < rows; i0 += 8, Ap += 8 * kc)
        pack_a8_rows_avx512(Ap, A + i0 * rsa, rsa, s, std::min(8, rows - i0), kc);
}

// 16 x 16 transpose: src rows j (16 floats of consecutive p each, stride ld_src) -> dst rows p (16 floats of
// consecutive j, stride ld_dst). The NT case packs W^T this way: 16 loads and stores instead of 256 scalar moves.
__attribute__((target("avx512f"))) void transpose16_avx512(float* dst, ptrdiff_t ld_dst, const float* src,
                                                           ptrdiff_t ld_src) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + i * ld_src);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {  // 128-bit lanes: rows 0-3 with 4-7, 8-11 with 12-15
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
    }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
    }
    for (int i = 0; i < 16; i++) _mm512_storeu_ps(dst + i * ld_dst, r[i]);
}

// One 32-column panel from rows that run along j (csb = 1): two masked loads and stores per p.
__attribute__((target("avx512f"))) void pack_b32_rows_avx512(float* Bp, const float* B, ptrdiff_t rsb, int nr, int kc) {
    const __mmask16 m0 = lanes(nr);
    const __mmask16 m1 = lanes(nr - 16);
    for (int p = 0; p < kc; p++) {
        const float* b = B + p * rsb;
        _mm512_store_ps(Bp + p * 32, _mm512_maskz_loadu_ps(m0, b));
        _mm512_store_ps(Bp + p * 32 + 16, _mm512_maskz_loadu_ps(m1, b + 16));
    }
}

// B block (kc, cols) -> NR-column panels, each (kc, NR); columns past N are zero.
void pack_b(float* Bp, const float* B, ptrdiff_t rsb, ptrdiff_t csb, int cols, int kc, int NR) {
    for (int j0 = 0; j0 < cols; j0 += NR, Bp += NR * kc) {
        int nr = std::min(NR, cols - j0);
        if (csb == 1 && NR == 32 && isa().kernel == ukernel_avx512) {
            pack_b32_rows_avx512(Bp, B + j0, rsb, nr, kc);
        } else if (csb == 1) {
            for (int p = 0; p < kc; p++) {
                const float* b = B + p * rsb + j0;
                float* d = Bp + p * NR;
                for (int j = 0; j < nr; j++) d[j] = b[j];
                for (int j = nr; j < NR; j++) d[j] = 0.0f;
            }
        } else {
            int j = 0;
            if (rsb == 1 && NR % 16 == 0 && isa().kernel == ukernel_avx512) {
                for (; j + 16 <= nr; j += 16) {
                    int p = 0;
                    for (; p + 16 <= kc; p += 16) transpose16_avx512(Bp + p * NR + j, NR, B + (j0 + j) * csb + p, csb);
                    for (; p < kc; p++)
                        for (int jj = j; jj < j + 16; jj++) Bp[p * NR + jj] = B[(j0 + jj) * csb + p];
                }
            }
            for (; j < nr; j++) {
                const float* b = B + (j0 + j) * csb;
                for (int p = 0; p < kc; p++) Bp[p * NR + j] = b[p * rsb];
            }
            for (int j = nr; j < NR; j++)
                for (int p = 0; p < kc; p++) Bp[p * NR + j] = 0.0f;
        }
    }
}

}  // namespace

const char* gemm_isa() { return isa().name; }

double gemm_scratch_floats(double R, double W) {
    // the tile panels: M, N at most R and W in either order, mt <= 16 MR, nt <= 16 NR, KC deep whatever K -- the two
    // panel buffers grow separately, so one product may leave the widest A panel and another the widest B panel; and
    // the narrow product's K x kNarrow copy of A; each Buffer rounds up to 64 bytes
    const Isa& k = isa();
    auto mt = [&](double d) { return std::min(std::ceil(std::min(d, 1e9) / k.MR) * k.MR, 16.0 * k.MR); };
    auto nt = [&](double d) { return std::min(std::ceil(std::min(d, 1e9) / k.NR) * k.NR, 16.0 * k.NR); };
    const double panels = std::max(mt(R), mt(W)) + std::max(nt(R), nt(W));
    return panels * KC + double(kNarrow) * std::max(R, W) + 3 * 16.0;
}

void gemm(float* C, ptrdiff_t rsc, ptrdiff_t csc, const float* A, ptrdiff_t rsa, ptrdiff_t csa, const float* B,
          ptrdiff_t rsb, ptrdiff_t csb, const float* kscale, int M, int N, int K, float alpha, float beta) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                float* c = C + i * rsc + j * csc;
                *c = beta == 0.0f ? 0.0f : beta * *c;
            }
        return;
    }
    const Isa& k = isa();
    const int64_t macs = int64_t(M) * N * K;  // ~16 per cycle in the packed kernel, ~8 in the narrow ones
    const Narrow narrow = k.kernel == ukernel_avx512 ? narrow_kernel(M, N, csa, rsb, csb) : Narrow::None;
    if (narrow == Narrow::Dot) {
        int tasks = std::min(64, (M + 63) / 64);
        int chunk = ((M + tasks - 1) / tasks + 1) / 2 * 2;
        ThreadPool::instance().parallel_for((M + chunk - 1) / chunk,
                                            [&](int t) {
                                                int i0 = t * chunk;
                                                dot_rows_avx512(C + i0 * rsc, rsc, csc, A + i0 * rsa, rsa, B, csb,
                                                                std::min(chunk, M - i0), N, K, alpha, beta);
                                            },
                                            macs / 8);
        return;
    }
    if (narrow == Narrow::Outer) {
        Buffer& as = thread_scratch<NarrowScratch>().a;
        if (as.reserve(size_t(K) * M).ok()) {
            float* a = as.data();
            for (int p = 0; p < K; p++)
                for (int i = 0; i < M; i++)
                    a[p * M + i] = kscale ? A[i * rsa + p * csa] * kscale[p] : A[i * rsa + p * csa];
            ThreadPool::instance().parallel_for((N + 31) / 32,
                                                [&](int t) {
                                                    outer_cols_avx512(C, rsc, csc, a, B, rsb, M, t * 32,
                                                                      std::min(32, N - t * 32), K, alpha, beta);
                                                },
                                                macs / 8);
            return;
        }
    }
    // A narrow C (e.g. a 10-class output layer over thousands of rows) wastes most of an NR-wide tile:
    // compute C^T = B^T * A^T instead. Same products in the same order, so the same bits.
    if (N < k.NR / 2 && M > N) {
        std::swap(M, N);
        std::swap(rsc, csc);
        std::swap(A, B);
        std::swap(rsa, csb);
        std::swap(csa, rsb);
    }
    int mt = std::min(round_up(M, k.MR), k.MR * 16);
    int nt = std::min(round_up(N, k.NR), k.NR * 16);
    int threads = ThreadPool::instance().threads();
    auto count = [&] { return ((M + mt - 1) / mt) * ((N + nt - 1) / nt); };
    while (count() < threads) {
        if (nt > k.NR && (nt >= mt || mt <= k.MR)) nt = round_up(nt / 2, k.NR);
        else if (mt > k.MR) mt = round_up(mt / 2, k.MR);
        else break;
    }
    int mb = (M + mt - 1) / mt, nb = (N + nt - 1) / nt;
    // A one-slice product whose B serves several row blocks (a recurrent step: U against thousands of rows) packs B
    // once here rather than once per task; the panels are the same values, so the same bits.
    const float* shared_b = nullptr;
    if (K <= KC && mb > 1 && N <= 16 * k.NR) {
        Buffer& sb = thread_scratch<PackScratch>().b;
        if (sb.reserve(size_t(round_up(N, k.NR)) * K).ok()) {
            pack_b(sb.data(), B, rsb, csb, N, K, k.NR);
            shared_b = sb.data();
        }
    }
    ThreadPool::instance().parallel_for(
        mb * nb,
        [&](int task) {
            PackScratch& pack = thread_scratch<PackScratch>();
            Buffer &abuf = pack.a, &bbuf = pack.b;
            int i0 = (task / nb) * mt, j0 = (task % nb) * nt;
            int rows = std::min(mt, M - i0), cols = std::min(nt, N - j0);
            if (!abuf.reserve(size_t(round_up(rows, k.MR)) * KC).ok() ||
                (!shared_b && !bbuf.reserve(size_t(round_up(cols, k.NR)) * KC).ok())) {
                // Out of memory for a few hundred KB of packing space: fall back to the unpacked loop.
                gemm_naive(C + i0 * rsc + j0 * csc, rsc, csc, A + i0 * rsa, rsa, csa, B + j0 * csb, rsb, csb, kscale,
                           rows, cols, K, alpha, beta);
                return;
            }
            for (int p0 = 0; p0 < K; p0 += KC) {
                int kc = std::min(KC, K - p0);
                pack_a(abuf.data(), A + i0 * rsa + p0 * csa, rsa, csa, kscale ? kscale + p0 : nullptr, rows, kc, k.MR);
                const float* bp = shared_b ? shared_b + size_t(j0) * K : bbuf.data();
                if (!shared_b) pack_b(bbuf.data(), B + p0 * rsb + j0 * csb, rsb, csb, cols, kc, k.NR);
                for (int jr = 0; jr < cols; jr += k.NR)
                    for (int ir = 0; ir < rows; ir += k.MR)
                        k.kernel(kc, abuf.data() + ir * kc, bp + jr * kc, C + (i0 + ir) * rsc + (j0 + jr) * csc, rsc,
                                 csc, std::min(k.MR, rows - ir), std::min(k.NR, cols - jr), alpha, beta, p0 == 0);
            }
        },
        macs / 16 + int64_t(M + N) * K);
}

void gemm_naive(float* C, ptrdiff_t rsc, ptrdiff_t csc, const float* A, ptrdiff_t rsa, ptrdiff_t csa, const float* B,
                ptrdiff_t rsb, ptrdiff_t csb, const float* kscale, int M, int N, int K, float alpha, float beta) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float acc = 0.0f;
            for (int p = 0; p < K; p++) {
                float a = A[i * rsa + p * csa];
                if (kscale) a = a * kscale[p];
                acc = std::fma(a, B[p * rsb + j * csb], acc);
            }
            float* c = C + i * rsc + j * csc;
            *c = beta == 0.0f ? alpha * acc : alpha * acc + beta * *c;
        }
}

}  // namespace of::cpu
