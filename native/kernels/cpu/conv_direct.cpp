// Direct (implicit-GEMM) convolution for few channels: no (n Ho Wo, kh kw C) patch matrix in memory.
// im2row + GEMM spends its time writing and re-reading that matrix (72 floats per output position for a
// 3x3x8 conv, 14 MB for a ULR block of 256 images) and packing GEMM panels whose reduction is only 9-72 deep;
// here each image is zero-padded once into a small per-thread buffer and one register tile reads its taps
// straight from it:
//   tile:          C (rows, N) = alpha A B (+ C),  A(j, k) = a[j as + off[k]],  B (K, N) row-major,
//                  up to 12 rows x 1 or 2 vectors of 16 columns in zmm registers (AVX2: 6 rows x 8 columns),
//                  one fma chain per element in k order, so both ISAs give the same bits. At most 8 columns (the
//                  forward and weight gradient of a conv with few filters): two rows a zmm register (tile_two_rows).
//   forward:       per output row, rows = positions, A = the padded image at the taps (off[k] over kh kw C),
//                  B = W^T (kh kw C, Co). With bfloat16 operands (bf16.h, ULR's copies): the padded image and W^T
//                  rounded, or (vdpbf16ps, even C) both as words of two taps: the same fma chain, two taps a step;
//                  or the AMX tiles (conv_amx.cpp), with their own sums.
//   input grad:    per output row, the patch gradients dA (Wo, kh kw C) = dV W (rows = positions, B = W), added
//                  into a padded image at their taps (row2im on a tile that stays in L1), then cropped.
//   weight grad:   per image and run of taps (a kernel row's kw C values with dilation 1 across, else one tap's C),
//                  dW^T[run] (run, Co) += s_i A dV_i: rows = the run's values, the reduction over output positions
//                  (A(j, k) = the padded image at window k's corner + j). Images go in fixed chunks whose partial
//                  sums add in chunk order, so the bits do not depend on the thread count.
#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "core/buffer.h"
#include "core/thread_pool.h"
#include "core/thread_scratch.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/conv.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/simd.h"

namespace of::cpu {
namespace {

constexpr int kRows = 12;         // tile rows: 12 x 2 zmm accumulators, 2 for B, 1 broadcast
constexpr int kChunkImages = 16;  // the weight gradient's fixed partial-sum chunk

struct ConvScratch {
    Buffer pad, tile, wt, partial, words, pairs, dup;
};

// The lane masks of a tile's NCH vectors of 16 columns, `cols` of them real.
template <int NCH>
inline void column_masks(__mmask16* m, int cols) {
    for (int ch = 0; ch < NCH; ch++) m[ch] = lanes(cols - 16 * ch);
}

// R rows (a compile-time count, so the accumulators stay in registers) x NCH vectors of 16 columns, masked past cols.
template <int R, int NCH>
__attribute__((target("avx512f,fma"))) void tile_avx512(float* c, ptrdiff_t ldc, const float* a, ptrdiff_t as,
                                                        const int* off, int K, const float* b, ptrdiff_t ldb, int cols,
                                                        float alpha, bool accumulate) {
    __mmask16 m[NCH];
    column_masks<NCH>(m, cols);
    __m512 s[R][NCH];
#pragma GCC unroll 12
    for (int j = 0; j < R; j++)
#pragma GCC unroll 2
        for (int ch = 0; ch < NCH; ch++) s[j][ch] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        const float* ak = a + off[k];
        __m512 w[NCH];
#pragma GCC unroll 2
        for (int ch = 0; ch < NCH; ch++) w[ch] = _mm512_maskz_loadu_ps(m[ch], b + k * ldb + 16 * ch);
#pragma GCC unroll 12
        for (int j = 0; j < R; j++) {
            const __m512 x = _mm512_set1_ps(ak[j * as]);
#pragma GCC unroll 2
            for (int ch = 0; ch < NCH; ch++) s[j][ch] = _mm512_fmadd_ps(x, w[ch], s[j][ch]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha);
#pragma GCC unroll 12
    for (int j = 0; j < R; j++)
#pragma GCC unroll 2
        for (int ch = 0; ch < NCH; ch++) {
            float* cj = c + j * ldc + 16 * ch;
            __m512 v = _mm512_mul_ps(va, s[j][ch]);
            if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m[ch], cj));
            _mm512_mask_storeu_ps(cj, m[ch], v);
        }
}

// d[0, n) += s[0, n)
__attribute__((target("avx512f"))) void add_run_avx512(float* d, const float* s, int n) {
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = lanes(n - i);
        _mm512_mask_storeu_ps(d + i, m,
                              _mm512_add_ps(_mm512_maskz_loadu_ps(m, d + i), _mm512_maskz_loadu_ps(m, s + i)));
    }
}

// The same tile in AVX2: 8 columns a vector, at most 6 rows (12 of the 16 ymm registers accumulate). The same fma
// chain per element as the AVX-512 tile, so the same bits.
template <int R, int NCH>
__attribute__((target("avx2,fma"))) void tile_avx2(float* c, ptrdiff_t ldc, const float* a, ptrdiff_t as,
                                                   const int* off, int K, const float* b, ptrdiff_t ldb, int cols,
                                                   float alpha, bool accumulate) {
    __m256i m[NCH];
#pragma GCC unroll 2
    for (int ch = 0; ch < NCH; ch++)
        m[ch] = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols - 8 * ch), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 s[R][NCH];
#pragma GCC unroll 6
    for (int j = 0; j < R; j++)
#pragma GCC unroll 2
        for (int ch = 0; ch < NCH; ch++) s[j][ch] = _mm256_setzero_ps();
    for (int k = 0; k < K; k++) {
        const float* ak = a + off[k];
        __m256 w[NCH];
#pragma GCC unroll 2
        for (int ch = 0; ch < NCH; ch++) w[ch] = _mm256_maskload_ps(b + k * ldb + 8 * ch, m[ch]);
#pragma GCC unroll 6
        for (int j = 0; j < R; j++) {
            const __m256 x = _mm256_broadcast_ss(ak + j * as);
#pragma GCC unroll 2
            for (int ch = 0; ch < NCH; ch++) s[j][ch] = _mm256_fmadd_ps(x, w[ch], s[j][ch]);
        }
    }
    const __m256 va = _mm256_set1_ps(alpha);
#pragma GCC unroll 6
    for (int j = 0; j < R; j++)
#pragma GCC unroll 2
        for (int ch = 0; ch < NCH; ch++) {
            float* cj = c + j * ldc + 8 * ch;
            __m256 v = _mm256_mul_ps(va, s[j][ch]);
            if (accumulate) v = _mm256_add_ps(v, _mm256_maskload_ps(cj, m[ch]));
            _mm256_maskstore_ps(cj, m[ch], v);
        }
}

__attribute__((target("avx2"))) void add_run_avx2(float* d, const float* s, int n) {
    for (int i = 0; i < n; i++) d[i] += s[i];
}

// One ISA's tiles: rows x (1 or 2) vectors of `lanes` columns, for rows = 1..max_rows.
using Tile = void (*)(float*, ptrdiff_t, const float*, ptrdiff_t, const int*, int, const float*, ptrdiff_t, int, float,
                      bool);
struct Tiles {
    int max_rows, lanes;
    std::array<Tile, kRows> one, two;
    void (*add_run)(float* d, const float* s, int n);
};
template <int... R>
constexpr Tiles avx512_tiles(std::integer_sequence<int, R...>) {
    return {kRows, 16, {tile_avx512<R + 1, 1>...}, {tile_avx512<R + 1, 2>...}, add_run_avx512};
}
template <int... R>
constexpr Tiles avx2_tiles(std::integer_sequence<int, R...>) {
    return {6, 8, {tile_avx2<R + 1, 1>...}, {tile_avx2<R + 1, 2>...}, add_run_avx2};
}
constexpr Tiles kAvx512 = avx512_tiles(std::make_integer_sequence<int, kRows>());
constexpr Tiles kAvx2 = avx2_tiles(std::make_integer_sequence<int, 6>());

// The tiles of the GEMM's ISA (ONEFORWARD_SIMD caps both); nullptr: no direct convolution (scalar). At most 8
// columns fill a ymm register but half a zmm one: the AVX2 tiles take them (the same bits) where the two-row tiles
// below do not.
const Tiles* isa_tiles(int cols = 16) {
    static const Tiles* wide = std::strcmp(gemm_isa(), "avx512") == 0 ? &kAvx512
                               : std::strcmp(gemm_isa(), "avx2") == 0 ? &kAvx2
                                                                      : nullptr;
    static const Tiles* narrow =
        wide == &kAvx512 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? &kAvx2 : wide;
    return cols <= 8 ? narrow : wide;
}

// C (rows, cols) for any rows and cols: row blocks of equal size, strips of two vectors, a one-vector remainder.
void product(float* c, ptrdiff_t ldc, const float* a, ptrdiff_t as, const int* off, int K, const float* b,
             ptrdiff_t ldb, int rows, int cols, float alpha, bool accumulate) {
    const Tiles& t = *isa_tiles(cols);
    const int blocks = (rows + t.max_rows - 1) / t.max_rows, per = (rows + blocks - 1) / blocks, L = t.lanes;
    for (int j0 = 0; j0 < rows; j0 += per) {
        const int r = std::min(per, rows - j0);
        float* cj = c + j0 * ldc;
        const float* aj = a + j0 * as;
        int n0 = 0;
        for (; n0 + L < cols; n0 += 2 * L)
            t.two[size_t(r - 1)](cj + n0, ldc, aj, as, off, K, b + n0, ldb, cols - n0, alpha, accumulate);
        if (n0 < cols) t.one[size_t(r - 1)](cj + n0, ldc, aj, as, off, K, b + n0, ldb, cols - n0, alpha, accumulate);
    }
}

// ---- two rows a register: C with at most 8 columns in AVX-512 ----
// Lanes 2c and 2c + 1 hold column c of rows j and j + 1: B's row k with each column twice (bd (K, 16), zero past
// cols) times the pair (A(j, k), A(j + 1, k)) broadcast as one 64-bit word from q + (j / 2) qs + qoff[k]. Each
// element keeps the fma chain of `product`, so the same bits as the AVX2 tile, at twice its width.
// QS: qs where known at compile time (then the pairs' addresses are displacements, not an add each), else 0.
constexpr int kRowPairs = 12;

template <int R, int QS>
__attribute__((target("avx512f,fma"))) void tile_two_rows(float* c, ptrdiff_t ldc, const float* q, ptrdiff_t qs,
                                                          const int* qoff, int K, const float* bd, int rows, int cols,
                                                          float alpha, bool accumulate) {
    const ptrdiff_t step = QS ? QS : qs;
    __m512 s[R];
#pragma GCC unroll 12
    for (int j = 0; j < R; j++) s[j] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        const float* qk = q + qoff[k];
        const __m512 w = _mm512_loadu_ps(bd + 16 * k);
#pragma GCC unroll 12
        for (int j = 0; j < R; j++) {
            double pair;
            std::memcpy(&pair, qk + j * step, sizeof pair);
            s[j] = _mm512_fmadd_ps(_mm512_castpd_ps(_mm512_set1_pd(pair)), w, s[j]);
        }
    }
    // lanes 0-7: row 2j's columns, lanes 8-15: row 2j + 1's, each stored with a mask (row 2j + 1 may not exist)
    const __m512i split = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    const __m512 va = _mm512_set1_ps(alpha);
    const __mmask16 lo = lanes(cols);
#pragma GCC unroll 12
    for (int j = 0; j < R; j++) {
        const __mmask16 hi = 2 * j + 1 < rows ? __mmask16(lo << 8) : __mmask16(0);
        float *c0 = c + 2 * j * ldc, *c1 = c0 + ldc - 8;  // c1's lane 8 is row 2j + 1's column 0
        __m512 v = _mm512_mul_ps(va, _mm512_permutexvar_ps(split, s[j]));
        if (accumulate) v = _mm512_add_ps(v, _mm512_mask_loadu_ps(_mm512_maskz_loadu_ps(lo, c0), hi, c1));
        _mm512_mask_storeu_ps(c0, lo, v);
        _mm512_mask_storeu_ps(c1, hi, v);
    }
}

using TwoRowTile = void (*)(float*, ptrdiff_t, const float*, ptrdiff_t, const int*, int, const float*, int, int, float,
                            bool);
using TwoRowTiles = std::array<TwoRowTile, kRowPairs>;
template <int QS, int... R>
constexpr TwoRowTiles two_row_tiles(std::integer_sequence<int, R...>) {
    return {tile_two_rows<R + 1, QS>...};
}
template <int QS>
constexpr TwoRowTiles kTwoRowTiles = two_row_tiles<QS>(std::make_integer_sequence<int, kRowPairs>());

// The tiles for pair stride qs: the weight gradient's 2, the forward's 4 sw C with C = 1 or 8 (sw = 1), else any.
const TwoRowTiles& two_row_tiles_for(ptrdiff_t qs) {
    return qs == 2 ? kTwoRowTiles<2> : qs == 4 ? kTwoRowTiles<4> : qs == 32 ? kTwoRowTiles<32> : kTwoRowTiles<0>;
}

// Whether C with `cols` columns takes the two-row tiles: at most 8 columns with AVX-512 tiles.
bool two_rows_suit(int cols) { return cols <= 8 && isa_tiles() == &kAvx512; }

// bd (K, 16): b's row k (cols <= 8 values, stride ldb) with each value twice, zero past cols.
__attribute__((target("avx512f"))) void duplicate_columns(float* bd, const float* b, ptrdiff_t ldb, int K, int cols) {
    const __m512i twice = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __mmask16 m = lanes(cols);
    for (int k = 0; k < K; k++)
        _mm512_storeu_ps(bd + 16 * k, _mm512_permutexvar_ps(twice, _mm512_maskz_loadu_ps(m, b + k * ldb)));
}

// product for cols <= 8 on two-row tiles: pair p of rows (2p, 2p + 1) at q + p qs, blocks of equal size.
void product_two_rows(float* c, ptrdiff_t ldc, const float* q, ptrdiff_t qs, const int* qoff, int K, const float* bd,
                      int rows, int cols, float alpha, bool accumulate) {
    const int pairs = (rows + 1) / 2, blocks = (pairs + kRowPairs - 1) / kRowPairs, per = (pairs + blocks - 1) / blocks;
    const TwoRowTiles& tiles = two_row_tiles_for(qs);
    for (int p0 = 0; p0 < pairs; p0 += per) {
        const int r = std::min(per, pairs - p0);
        tiles[size_t(r - 1)](c + 2 * p0 * ldc, ldc, q + p0 * qs, qs, qoff, K, bd, std::min(2 * r, rows - 2 * p0), cols,
                             alpha, accumulate);
    }
}

// q (2 n, + up to 30 written past): the words (x[e], x[e + d]) for e < n, zero past n -- a forward row's pairs of
// positions d = sw C apart.
__attribute__((target("avx512f"))) void pair_with_next(float* q, const float* x, int64_t n, int64_t d) {
    const __m512i first = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i second = _mm512_add_epi32(first, _mm512_set1_epi32(8));
    for (int64_t e = 0; e < n; e += 16) {
        const __m512 a = _mm512_maskz_loadu_ps(lanes(n - e), x + e);
        const __m512 b = _mm512_maskz_loadu_ps(lanes(n - d - e), x + e + d);
        _mm512_storeu_ps(q + 2 * e, _mm512_permutex2var_ps(a, first, b));
        _mm512_storeu_ps(q + 2 * e + 16, _mm512_permutex2var_ps(a, second, b));
    }
}

// xp (Hp, Wp, C) = image xi shifted by the padding, zero outside it.
// (round: each value rounded to bfloat16 on the way, bf16.h.)
void pad_image(float* xp, const float* xi, const ConvGeom& g, bool round = false) {
    const int Hp = g.padded_h(), Wp = g.padded_w();
    std::fill(xp, xp + int64_t(Hp) * Wp * g.C, 0.0f);
    for (int py = 0; py < Hp; py++) {
        const int iy = py - g.ph;
        if (iy < 0 || iy >= g.H) continue;
        const int x0 = std::max(0, g.pw), x1 = std::min(Wp, g.W + g.pw);  // px with 0 <= px - pw < W
        if (x1 <= x0) continue;
        float* d = xp + (int64_t(py) * Wp + x0) * g.C;
        const float* s = xi + (int64_t(iy) * g.W + x0 - g.pw) * g.C;
        if (round) round_bf16_span(d, s, int64_t(x1 - x0) * g.C);
        else std::memcpy(d, s, sizeof(float) * size_t(x1 - x0) * g.C);
    }
}

// Offsets of the kh kw C taps of a window in a padded image, relative to the window's top-left corner.
void tap_offsets(std::vector<int>& off, const ConvGeom& g) {
    const int Wp = g.padded_w();
    off.clear();
    for (int ky = 0; ky < g.kh; ky++)
        for (int kx = 0; kx < g.kw; kx++)
            for (int c = 0; c < g.C; c++) off.push_back((ky * g.dh * Wp + kx * g.dw) * g.C + c);
}

// The window's taps as runs contiguous both in a padded image and in a patch row: with dilation 1 across, a kernel
// row's kw C values; else one tap's C. f(offset in the image from the window's corner, first patch column, length).
template <class F>
void for_each_run(const ConvGeom& g, const F& f) {
    const int Wp = g.padded_w(), per = g.dw == 1 ? g.kw : 1;
    for (int ky = 0; ky < g.kh; ky++)
        for (int kx = 0; kx < g.kw; kx += per)
            f((int64_t(ky) * g.dh * Wp + int64_t(kx) * g.dw) * g.C, (ky * g.kw + kx) * g.C, per * g.C);
}

bool reserve(Buffer& b, int64_t n) { return b.reserve(size_t(std::max<int64_t>(n, 1))).ok(); }

int64_t image_cost(const ConvGeom& g) { return g.positions() * g.patch() * g.Co / 8; }

// ---- bfloat16 pairs (bf16.h): the instruction's forward for an even channel count ----
// The padded image as words (x[c], x[c + 1]) for even c and W^T as words (W^T[2q], W^T[2q + 1]) per output channel:
// tap pair q of a window is the word at offw[q] = off[2q] / 2, and vdpbf16ps adds tap 2q's product before tap 2q + 1's,
// the fma chain of `product` on the rounded operands, two taps an instruction.
template <int R, int NCH>
OF_BF16_TARGET void tile_pairs(float* c, ptrdiff_t ldc, const uint32_t* a, ptrdiff_t as, const int* offw, int KP,
                               const uint32_t* b, ptrdiff_t ldb, int cols) {
    __mmask16 m[NCH];
    column_masks<NCH>(m, cols);
    __m512 s[R][NCH];
#pragma GCC unroll 12
    for (int j = 0; j < R; j++)
#pragma GCC unroll 2
        for (int ch = 0; ch < NCH; ch++) s[j][ch] = _mm512_setzero_ps();
    for (int q = 0; q < KP; q++) {
        const uint32_t* aq = a + offw[q];
        __m512bh w[NCH];
#pragma GCC unroll 2
        for (int ch = 0; ch < NCH; ch++) w[ch] = __m512bh(_mm512_maskz_loadu_epi32(m[ch], b + q * ldb + 16 * ch));
#pragma GCC unroll 12
        for (int j = 0; j < R; j++) {
            const __m512bh x = __m512bh(_mm512_set1_epi32(int(aq[j * as])));
#pragma GCC unroll 2
            for (int ch = 0; ch < NCH; ch++) s[j][ch] = _mm512_dpbf16_ps(s[j][ch], x, w[ch]);
        }
    }
#pragma GCC unroll 12
    for (int j = 0; j < R; j++)
#pragma GCC unroll 2
        for (int ch = 0; ch < NCH; ch++) _mm512_mask_storeu_ps(c + j * ldc + 16 * ch, m[ch], s[j][ch]);
}

using PairTile = void (*)(float*, ptrdiff_t, const uint32_t*, ptrdiff_t, const int*, int, const uint32_t*, ptrdiff_t,
                          int);
struct PairTiles {
    std::array<PairTile, kRows> one, two;
};
template <int... R>
constexpr PairTiles pair_tiles(std::integer_sequence<int, R...>) {
    return {{tile_pairs<R + 1, 1>...}, {tile_pairs<R + 1, 2>...}};
}
constexpr PairTiles kPairTiles = pair_tiles(std::make_integer_sequence<int, kRows>());

// product (alpha 1, overwriting) on words: C (rows, cols) = A B, A(j, q) = a[j as + offw[q]], B (KP, cols) words.
void product_pairs(float* c, ptrdiff_t ldc, const uint32_t* a, ptrdiff_t as, const int* offw, int KP, const uint32_t* b,
                   ptrdiff_t ldb, int rows, int cols) {
    const int blocks = (rows + kRows - 1) / kRows, per = (rows + blocks - 1) / blocks;
    for (int j0 = 0; j0 < rows; j0 += per) {
        const int r = std::min(per, rows - j0);
        float* cj = c + j0 * ldc;
        const uint32_t* aj = a + j0 * as;
        int n0 = 0;
        for (; n0 + 16 < cols; n0 += 32)
            kPairTiles.two[size_t(r - 1)](cj + n0, ldc, aj, as, offw, KP, b + n0, ldb, cols - n0);
        if (n0 < cols) kPairTiles.one[size_t(r - 1)](cj + n0, ldc, aj, as, offw, KP, b + n0, ldb, cols - n0);
    }
}

}  // namespace

// While the weights (kh kw C x Co) that every tile sweeps stay in L2 (1 MiB of them). Beyond, im2row + GEMM's packed
// panels win: a 3x3 conv 256 -> 256 channels at 7x7 ran at half the GEMM's rate, 128 -> 128 at 14x14 still 1.5x
// faster than the GEMM (and its im2row).
bool conv_direct_suits(const ConvGeom& g) { return isa_tiles() && int64_t(g.patch()) * g.Co <= (int64_t(1) << 18); }

namespace {

// conv_forward with x and W as they are (round false) or rounded to bfloat16 (the emulation of bf16.h).
bool forward_as(float* y, const float* x, const float* W, int n, const ConvGeom& g, bool round) {
    if (!conv_direct_suits(g)) return false;
    const int P = g.patch(), Hp = g.padded_h(), Wp = g.padded_w();
    ConvScratch& own = thread_scratch<ConvScratch>();
    if (!reserve(own.wt, int64_t(P) * g.Co)) return false;
    float* wt = own.wt.data();  // W^T (P, Co)
    for (int o = 0; o < g.Co; o++)
        for (int p = 0; p < P; p++) wt[int64_t(p) * g.Co + o] = W[int64_t(o) * P + p];
    if (round) round_bf16_span(wt, wt, int64_t(P) * g.Co);
    std::vector<int> off, qoff;
    tap_offsets(off, g);
    // two rows a register: positions j, j + 1 of an output row as words of the padded image paired with itself
    // sw C further on (pair_with_next), W^T with its columns doubled
    const bool two = two_rows_suit(g.Co);
    const int64_t padded = int64_t(Hp) * Wp * g.C, as = int64_t(g.sw) * g.C;
    if (two) {
        if (!reserve(own.dup, int64_t(P) * 16)) return false;
        duplicate_columns(own.dup.data(), wt, g.Co, P, g.Co);
        for (int o : off) qoff.push_back(2 * o);
    }
    std::vector<char> ok(size_t(n), 1);
    ThreadPool::instance().parallel_for(
        n,
        [&](int i) {
            ConvScratch& sc = thread_scratch<ConvScratch>();
            if (!reserve(sc.pad, padded) || (two && !reserve(sc.pairs, 2 * padded + 32)))
                return void(ok[size_t(i)] = 0);
            pad_image(sc.pad.data(), x + int64_t(i) * g.in_size(), g, round);
            if (two) pair_with_next(sc.pairs.data(), sc.pad.data(), padded, as);
            float* yi = y + int64_t(i) * g.positions() * g.Co;
            for (int oy = 0; oy < g.Ho; oy++) {
                float* row = yi + int64_t(oy) * g.Wo * g.Co;
                const int64_t top = int64_t(oy) * g.sh * Wp * g.C;
                if (two)
                    product_two_rows(row, g.Co, sc.pairs.data() + 2 * top, 4 * as, qoff.data(), P, own.dup.data(), g.Wo,
                                     g.Co, 1.0f, false);
                else product(row, g.Co, sc.pad.data() + top, as, off.data(), P, wt, g.Co, g.Wo, g.Co, 1.0f, false);
            }
        },
        image_cost(g) * n);
    return std::all_of(ok.begin(), ok.end(), [](char v) { return v != 0; });
}

// The instruction's forward (even C): forward_as's products on word operands (product_pairs).
bool forward_pairs(float* y, const float* x, const float* W, int n, const ConvGeom& g) {
    const int P = g.patch(), KP = P / 2, Hp = g.padded_h(), Wp = g.padded_w();
    const int64_t padded = int64_t(Hp) * Wp * g.C;
    ConvScratch& own = thread_scratch<ConvScratch>();
    if (!reserve(own.wt, int64_t(KP) * g.Co)) return false;
    uint32_t* wt = words_of(own.wt);  // W^T as words (KP, Co)
    for (int q = 0; q < KP; q++)
        for (int o = 0; o < g.Co; o++)
            wt[int64_t(q) * g.Co + o] = bf16_pair(W[int64_t(o) * P + 2 * q], W[int64_t(o) * P + 2 * q + 1]);
    std::vector<int> off, offw(static_cast<size_t>(KP));
    tap_offsets(off, g);
    for (int q = 0; q < KP; q++) offw[size_t(q)] = off[size_t(2 * q)] / 2;
    std::vector<char> ok(size_t(n), 1);
    ThreadPool::instance().parallel_for(
        n,
        [&](int i) {
            ConvScratch& sc = thread_scratch<ConvScratch>();
            if (!reserve(sc.pad, padded) || !reserve(sc.words, padded / 2)) return void(ok[size_t(i)] = 0);
            pad_image(sc.pad.data(), x + int64_t(i) * g.in_size(), g);
            bf16_pairs(words_of(sc.words), sc.pad.data(), padded);
            float* yi = y + int64_t(i) * g.positions() * g.Co;
            for (int oy = 0; oy < g.Ho; oy++)
                product_pairs(yi + int64_t(oy) * g.Wo * g.Co, g.Co,
                              words_of(sc.words) + int64_t(oy) * g.sh * Wp * g.C / 2, int64_t(g.sw) * g.C / 2,
                              offw.data(), KP, wt, g.Co, g.Wo, g.Co);
        },
        image_cost(g) * n / 2);
    return std::all_of(ok.begin(), ok.end(), [](char v) { return v != 0; });
}

}  // namespace

bool conv_forward(float* y, const float* x, const float* W, int n, const ConvGeom& g) {
    return forward_as(y, x, W, n, g, false);
}

bool conv_forward_bf16_as(Bf16Way way, float* y, const float* x, const float* W, int n, const ConvGeom& g) {
    if (!conv_direct_suits(g)) return false;
    if (bf16_on_amx(way) && conv_forward_amx(y, x, W, n, g)) return true;
    const bool pairs =
        way == Bf16Way::Instruction || way == Bf16Way::Amx || (way == Bf16Way::Fastest && bf16_pairs_outrun_fma());
    if (pairs && g.C % 2 == 0 && forward_pairs(y, x, W, n, g)) return true;
    return forward_as(y, x, W, n, g, true);  // the same bits (an odd channel count: no pairs within a tap)
}

bool conv_forward_bf16(float* y, const float* x, const float* W, int n, const ConvGeom& g) {
    return conv_forward_bf16_as(bf16_way(), y, x, W, n, g);
}

bool conv_input_grad(float* dx, const float* dv, const float* W, int n, const ConvGeom& g) {
    if (!conv_direct_suits(g)) return false;
    const int P = g.patch(), Hp = g.padded_h(), Wp = g.padded_w();
    std::vector<int> seq(size_t(g.Co));  // A = dV: row j (position) at j Co, column k (output channel) at k
    for (int k = 0; k < g.Co; k++) seq[size_t(k)] = k;
    std::vector<char> ok(size_t(n), 1);
    ThreadPool::instance().parallel_for(
        n,
        [&](int i) {
            ConvScratch& sc = thread_scratch<ConvScratch>();
            if (!reserve(sc.pad, int64_t(Hp) * Wp * g.C) || !reserve(sc.tile, int64_t(g.Wo) * P))
                return void(ok[size_t(i)] = 0);
            float *dp = sc.pad.data(), *tile = sc.tile.data();
            std::fill(dp, dp + int64_t(Hp) * Wp * g.C, 0.0f);
            const float* dvi = dv + int64_t(i) * g.positions() * g.Co;
            // per output row: the patch gradients dA = dV W (Wo, P), then added at each window's runs
            for (int oy = 0; oy < g.Ho; oy++) {
                product(tile, P, dvi + int64_t(oy) * g.Wo * g.Co, g.Co, seq.data(), g.Co, W, P, g.Wo, P, 1.0f, false);
                for (int ox = 0; ox < g.Wo; ox++) {
                    float* corner = dp + (int64_t(oy) * g.sh * Wp + int64_t(ox) * g.sw) * g.C;
                    for_each_run(g, [&](int64_t at, int k0, int len) {
                        isa_tiles()->add_run(corner + at, tile + int64_t(ox) * P + k0, len);
                    });
                }
            }
            float* dxi = dx + int64_t(i) * g.in_size();  // crop: the image's pixels of the padded gradient
            for (int iy = 0; iy < g.H; iy++)
                for (int ix = 0; ix < g.W; ix++) {
                    const int py = iy + g.ph, px = ix + g.pw;
                    float* d = dxi + (int64_t(iy) * g.W + ix) * g.C;
                    if (py < Hp && px < Wp) std::memcpy(d, dp + (int64_t(py) * Wp + px) * g.C, sizeof(float) * g.C);
                    else std::fill(d, d + g.C, 0.0f);  // below or right of every window
                }
        },
        image_cost(g) * n);
    return std::all_of(ok.begin(), ok.end(), [](char v) { return v != 0; });
}

bool conv_weight_grad(float* dW, const float* dv, const float* x, const float* s, int n, const ConvGeom& g,
                      float alpha) {
    if (!conv_direct_suits(g)) return false;
    if (n <= 0) return std::fill(dW, dW + int64_t(g.Co) * g.patch(), 0.0f), true;
    const int P = g.patch(), Hp = g.padded_h(), Wp = g.padded_w();
    const int64_t WP = int64_t(g.Co) * P, npos = g.positions();
    const int chunks = (n + kChunkImages - 1) / kChunkImages;
    ConvScratch& own = thread_scratch<ConvScratch>();
    if (!reserve(own.partial, chunks * WP)) return false;
    float* partial = own.partial.data();                 // per chunk dW^T (P, Co)
    std::vector<int> corner(static_cast<size_t>(npos));  // A = a run of the padded image: row j at j, column k at
    for (int oy = 0, k = 0; oy < g.Ho; oy++)             // the k-th window's corner
        for (int ox = 0; ox < g.Wo; ox++) corner[size_t(k++)] = (oy * g.sh * Wp + ox * g.sw) * g.C;
    const bool two = two_rows_suit(g.Co);
    std::vector<char> ok(size_t(chunks), 1);
    ThreadPool::instance().parallel_for(
        chunks,
        [&](int t) {
            ConvScratch& sc = thread_scratch<ConvScratch>();
            // (+ 1: two rows a register read the value after an odd run)
            if (!reserve(sc.pad, int64_t(Hp) * Wp * g.C + 1) || (two && !reserve(sc.dup, npos * 16)))
                return void(ok[size_t(t)] = 0);
            float *xp = sc.pad.data(), *acc = partial + t * WP;
            xp[int64_t(Hp) * Wp * g.C] = 0.0f;  // the slot after the image: read, then masked off, by two-row tiles
            const int i1 = std::min(n, (t + 1) * kChunkImages);
            for (int i = t * kChunkImages; i < i1; i++) {
                pad_image(xp, x + int64_t(i) * g.in_size(), g);
                const float* dvi = dv + int64_t(i) * npos * g.Co;
                const float si = s ? s[i] : 1.0f;
                const bool more = i > t * kChunkImages;
                if (two) duplicate_columns(sc.dup.data(), dvi, g.Co, int(npos), g.Co);
                for_each_run(g, [&](int64_t at, int k0, int len) {  // dW^T[run] (+)= s_i A_run dV_i
                    float* d = acc + int64_t(k0) * g.Co;
                    if (two)  // rows j, j + 1 of A_run are adjacent values: pair p at xp + at + 2p
                        product_two_rows(d, g.Co, xp + at, 2, corner.data(), int(npos), sc.dup.data(), len, g.Co, si,
                                         more);
                    else product(d, g.Co, xp + at, 1, corner.data(), int(npos), dvi, g.Co, len, g.Co, si, more);
                });
            }
        },
        image_cost(g) * n);
    if (!std::all_of(ok.begin(), ok.end(), [](char v) { return v != 0; })) return false;
    for (int o = 0; o < g.Co; o++)  // dW = alpha sum of the chunks, in chunk order
        for (int k = 0; k < P; k++) {
            const int64_t e = int64_t(k) * g.Co + o;
            float v = partial[e];
            for (int t = 1; t < chunks; t++) v += partial[t * WP + e];
            dW[int64_t(o) * P + k] = alpha * v;
        }
    return true;
}

}  // namespace of::cpu
