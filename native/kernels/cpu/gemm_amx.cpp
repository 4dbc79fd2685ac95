// The bfloat16 GEMM on AMX tiles (amx.h): C (M, N) = alpha op(A) (M, K) op(B) (K, N) + beta C, the strides as in
// gemm.h, A and B rounded to bfloat16 (to nearest even, as bf16_round_bits) while they are packed, float32 sums.
// Dimension letters as in gemm.h: C is M x N, the reduction K deep.
//
// Layout (tiles of 16 rows x 64 bytes):
//   B, packed once for the call by the caller's scratch: per 16 columns, per 32 values of the reduction, a tile of 16
//     rows of pair words, row q = (B(2q, j) in the low half, B(2q + 1, j) in the high one) for 16 columns j -- the
//     operand TDPBF16PS pairs with A's two consecutive values; zero past N and K.
//   A, packed per task and KC slice: per 16 rows, per 32 values of the reduction, a tile of 16 rows of 32 bfloat16
//     (64 bytes, in order); zero past the rows and the slice.
// The micro-kernels hold 32 x 32 (2 x 2 tiles) or 64 x 16 (4 x 1, C with at most 16 columns) of C in tiles 0-3 over a
// KC slice (kc / 32 instructions each), and write C = alpha acc (+ C, or + beta C on the first slice) as store_tile.
// An element's sum is the same sequence of instructions whatever the task split, so the bits do not depend on the
// thread count; they differ from the emulation's (amx.h).
#include <algorithm>
#include <cstring>

#include "core/buffer.h"
#include "core/thread_pool.h"
#include "core/thread_scratch.h"
#include "kernels/cpu/amx.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/gemm_tile.h"
#include "kernels/cpu/simd.h"

namespace of::cpu {
namespace {

constexpr int kTileFloats = 256;  // a tile's 16 rows x 64 bytes, in 4-byte units (words, floats)
constexpr int kTaskRows = 128;    // rows of C a task (at most), a multiple of 32

struct AmxScratch {
    Buffer a, b;  // a task's A tiles for one slice (kTaskRows x KC bfloat16); all of B's tiles (the caller's)
};

inline uint16_t bf16_of(float x) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    return uint16_t(bf16_round_bits(u) >> 16);
}

// x[0, 32) masked to the first n values -> 32 bfloat16 in order (cvtne2ps puts its second operand in the low half).
OF_AMX_TARGET inline __m512i bf16x32(const float* x, int n) {
    return __m512i(
        _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(lanes(n - 16), x + 16), _mm512_maskz_loadu_ps(lanes(n), x)));
}

// A block (rows, kc) -> tiles Ap[(r / 16) kbs + kb] of 16 rows x 32 values, kbs = kc / 32 rounded up, rows padded
// with zeros to rows32 (a multiple of 32).
OF_AMX_TARGET void pack_a(uint16_t* Ap, const float* A, ptrdiff_t rsa, ptrdiff_t csa, int rows, int rows32, int kc) {
    const int kbs = (kc + 31) / 32;
    for (int i = 0; i < rows32; i++) {
        uint16_t* row = Ap + (i / 16) * kbs * 512 + (i % 16) * 32;
        const float* a = A + i * rsa;
        for (int kb = 0, p = 0; kb < kbs; kb++, p += 32) {
            uint16_t* dst = row + kb * 512;
            if (i >= rows) _mm512_store_si512(dst, _mm512_setzero_si512());
            else if (csa == 1) _mm512_store_si512(dst, bf16x32(a + p, kc - p));
            else
                for (int l = 0; l < 32; l++) dst[l] = p + l < kc ? bf16_of(a[(p + l) * csa]) : 0;
        }
    }
}

// Columns [j0, j0 + 16) of B (K, N) -> tiles Bp[kb] of 16 pair rows x 16 columns for kb < KB = K / 32 rounded up.
OF_AMX_TARGET void pack_b(uint32_t* Bp, const float* B, ptrdiff_t rsb, ptrdiff_t csb, int K, int N, int j0) {
    const int KB = (K + 31) / 32, nr = std::min(16, N - j0);
    if (csb == 1) {  // rows contiguous over the columns: two rows interleave into 16 words
        const __mmask16 m = lanes(nr);
        for (int k = 0; k < KB * 32; k += 2) {
            const __m512 lo = k < K ? _mm512_maskz_loadu_ps(m, B + k * rsb + j0) : _mm512_setzero_ps();
            const __m512 hi = k + 1 < K ? _mm512_maskz_loadu_ps(m, B + (k + 1) * rsb + j0) : _mm512_setzero_ps();
            const __m512i l = _mm512_cvtepu16_epi32(__m256i(_mm512_cvtneps_pbh(lo)));
            const __m512i h = _mm512_cvtepu16_epi32(__m256i(_mm512_cvtneps_pbh(hi)));
            _mm512_store_si512(Bp + k / 2 * 16, _mm512_or_si512(_mm512_slli_epi32(h, 16), l));
        }
        return;
    }
    alignas(64) uint32_t w[16];
    for (int j = 0; j < 16; j++) {
        const float* b = B + (j0 + j) * csb;
        for (int kb = 0, p = 0; kb < KB; kb++, p += 32) {
            if (j >= nr) std::memset(w, 0, sizeof w);
            else if (rsb == 1) _mm512_store_si512(w, bf16x32(b + p, K - p));  // 32 values in order: the 16 pairs
            else
                for (int q = 0; q < 16; q++) {
                    const int k = p + 2 * q;
                    w[q] = (k < K ? bf16_of(b[k * rsb]) : 0u) |
                           (k + 1 < K ? uint32_t(bf16_of(b[(k + 1) * rsb])) << 16 : 0u);
                }
            for (int q = 0; q < 16; q++) Bp[kb * kTileFloats + q * 16 + j] = w[q];
        }
    }
}

// C (mr, nr) = alpha acc (+ C, or + beta C on the first slice) from acc (mr, nr) with rows 32 floats apart:
// store_tile's multiplies and adds, 16 columns at a time where C's rows are contiguous.
OF_AMX_TARGET void store_block(const float* acc, float* C, ptrdiff_t rsc, ptrdiff_t csc, int mr, int nr, float alpha,
                               float beta, bool first) {
    if (csc != 1) return store_tile(acc, 32, C, rsc, csc, mr, nr, alpha, beta, first);
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int i = 0; i < mr; i++)
        for (int h = 0; h < nr; h += 16) {
            const __mmask16 m = lanes(nr - h);
            float* c = C + i * rsc + h;
            __m512 v = _mm512_mul_ps(va, _mm512_load_ps(acc + i * 32 + h));
            if (!first) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, c));
            else if (beta != 0.0f) v = _mm512_add_ps(v, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m, c)));
            _mm512_mask_storeu_ps(c, m, v);
        }
}

// acc (32, 32) = A rows (2 tiles, a1 = a0 + sa) x B columns (2 tiles, b1 = b0 + sb) over kbs tiles of the reduction.
OF_AMX_TARGET void kernel_2x2(int kbs, const uint16_t* a0, ptrdiff_t sa, const uint32_t* b0, ptrdiff_t sb, float* acc) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int kb = 0; kb < kbs; kb++) {
        _tile_loadd(4, a0 + kb * 512, 64);
        _tile_loadd(6, b0 + kb * kTileFloats, 64);
        _tile_loadd(5, a0 + sa + kb * 512, 64);
        _tile_loadd(7, b0 + sb + kb * kTileFloats, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, acc, 128);
    _tile_stored(1, acc + 16, 128);
    _tile_stored(2, acc + 16 * 32, 128);
    _tile_stored(3, acc + 16 * 32 + 16, 128);
}

// acc (16 R, 16) (rows 32 floats apart) = A rows (R = 2 or 4 tiles, sa apart) x B columns (1 tile): A tiles 4 and 5
// alternate.
template <int R>
OF_AMX_TARGET void kernel_rx1(int kbs, const uint16_t* a0, ptrdiff_t sa, const uint32_t* b0, float* acc) {
    static_assert(R == 2 || R == 4, "two or four row tiles");
    _tile_zero(0);
    _tile_zero(1);
    if constexpr (R == 4) {
        _tile_zero(2);
        _tile_zero(3);
    }
    for (int kb = 0; kb < kbs; kb++) {
        _tile_loadd(6, b0 + kb * kTileFloats, 64);
        _tile_loadd(4, a0 + kb * 512, 64);
        _tile_loadd(5, a0 + sa + kb * 512, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 5, 6);
        if constexpr (R == 4) {
            _tile_loadd(4, a0 + 2 * sa + kb * 512, 64);
            _tile_loadd(5, a0 + 3 * sa + kb * 512, 64);
            _tile_dpbf16ps(2, 4, 6);
            _tile_dpbf16ps(3, 5, 6);
        }
    }
    _tile_stored(0, acc, 128);
    _tile_stored(1, acc + 16 * 32, 128);
    if constexpr (R == 4) {
        _tile_stored(2, acc + 32 * 32, 128);
        _tile_stored(3, acc + 48 * 32, 128);
    }
}

// One task: C rows [i0, i0 + rows) x columns [j0, j0 + cols) (j0 a multiple of 32), every KC slice. Ap: room for
// rows32 x KC bfloat16; Bp: all of B's tiles (KB per 16 columns).
OF_AMX_TARGET void task_amx(float* C, ptrdiff_t rsc, ptrdiff_t csc, const float* A, ptrdiff_t rsa, ptrdiff_t csa,
                            uint16_t* Ap, const uint32_t* Bp, int KB, int i0, int rows, int j0, int cols, int K,
                            float alpha, float beta) {
    AmxConfig cfg;
    for (int t = 0; t < 8; t++) cfg.tile(t, 16, 64);
    load_tile_config(cfg);
    alignas(64) float acc[64 * 32];
    const int rows32 = round_up(rows, 32);
    for (int p0 = 0; p0 < K; p0 += KC) {
        const int kc = std::min(KC, K - p0), kbs = (kc + 31) / 32;
        const ptrdiff_t sa = ptrdiff_t(kbs) * 512;  // from one row tile of A to the next
        pack_a(Ap, A + i0 * rsa + p0 * csa, rsa, csa, rows, rows32, kc);
        __asm__ volatile("" ::: "memory");  // the tile loads' asm names no memory: the panel is written before them
        for (int jr = 0; jr < cols; jr += 32) {
            const int nr = std::min(32, cols - jr);
            const uint32_t* b0 = Bp + (ptrdiff_t((j0 + jr) / 16) * KB + p0 / 32) * kTileFloats;
            float* c = C + (j0 + jr) * csc;
            auto store = [&](int ir, int mr) {
                store_block(acc, c + (i0 + ir) * rsc, rsc, csc, std::min(mr, rows - ir), nr, alpha, beta, p0 == 0);
            };
            int ir = 0;
            if (nr > 16) {
                for (; ir < rows32; ir += 32)
                    kernel_2x2(kbs, Ap + (ir / 16) * sa, sa, b0, ptrdiff_t(KB) * kTileFloats, acc), store(ir, 32);
            } else {
                for (; ir + 64 <= rows32; ir += 64) kernel_rx1<4>(kbs, Ap + (ir / 16) * sa, sa, b0, acc), store(ir, 64);
                if (ir < rows32) kernel_rx1<2>(kbs, Ap + (ir / 16) * sa, sa, b0, acc), store(ir, 32);
            }
        }
    }
    _tile_release();
}

}  // namespace

bool gemm_bf16_amx(float* C, ptrdiff_t rsc, ptrdiff_t csc, const float* A, ptrdiff_t rsa, ptrdiff_t csa, const float* B,
                   ptrdiff_t rsb, ptrdiff_t csb, int M, int N, int K, float alpha, float beta) {
    const int KB = (K + 31) / 32, NT = (N + 15) / 16;
    Buffer& bb = thread_scratch<AmxScratch>().b;
    if (!bb.reserve(size_t(NT) * KB * kTileFloats).ok()) return false;
    uint32_t* Bp = words_of(bb);
    ThreadPool& pool = ThreadPool::instance();
    pool.parallel_for(
        NT, [&](int jt) { pack_b(Bp + size_t(jt) * KB * kTileFloats, B, rsb, csb, K, N, jt * 16); }, int64_t(K) * N);
    // tasks of up to kTaskRows rows x 512 columns, halved (rows first) until every thread has one
    int mt = std::min(round_up(M, 32), kTaskRows), nt = std::min(round_up(N, 32), 512);
    auto count = [&] { return ((M + mt - 1) / mt) * ((N + nt - 1) / nt); };
    while (count() < pool.threads()) {
        if (mt > 32) mt = round_up(mt / 2, 32);
        else if (nt > 32) nt = round_up(nt / 2, 32);
        else break;
    }
    const int nb = (N + nt - 1) / nt;
    pool.parallel_for(
        ((M + mt - 1) / mt) * nb,
        [&](int task) {
            const int i0 = (task / nb) * mt, j0 = (task % nb) * nt;
            const int rows = std::min(mt, M - i0), cols = std::min(nt, N - j0);
            Buffer& ab = thread_scratch<AmxScratch>().a;
            if (!ab.reserve(size_t(kTaskRows) * KC / 2).ok())  // out of memory: the unpacked loop for this block
                return gemm_bf16_naive(C + i0 * rsc + j0 * csc, rsc, csc, A + i0 * rsa, rsa, csa, B + j0 * csb, rsb,
                                       csb, nullptr, rows, cols, K, alpha, beta);
            task_amx(C, rsc, csc, A, rsa, csa, reinterpret_cast<uint16_t*>(ab.data()), Bp, KB, i0, rows, j0, cols, K,
                     alpha, beta);
        },
        int64_t(M) * N * K / 128 + int64_t(M) * K);
    return true;
}

double gemm_amx_scratch_floats(double W, double Wn) {
    // B's tiles: (K + 31) (N + 15) bfloat16 with K N <= Wn and K, N <= W; a task's A tiles; the buffers' rounding
    return (Wn + 46.0 * W + 465.0) / 2 + double(kTaskRows) * KC / 2 + 2 * 16.0;
}

}  // namespace of::cpu
