// GEMM with bfloat16 operands and float32 sums (bf16.h): C (M, N) = alpha op(A) (M, K) op(B) (K, N) + beta C, the
// strides as in gemm.h. The Amx way takes the tiles (gemm_amx.cpp, its own bits); two other ways give one result:
//   emulated:    B rounded into a copy (N, K), A's rows rounded into copies (row-major, at least kChunk rows a
//                piece, or all of them), then the float32 gemm (gemm.cpp) on the copies.
//   instruction: vdpbf16ps, which adds two bfloat16 products to a float32 lane, the upper pair's first:
//                acc = fma(a_hi, b_hi, acc); acc = fma(a_lo, b_lo, acc), each product exact in float32. With
//                reduction index k in the upper half and the next index it sums in the lower one, it replays the
//                float32 kernel's fma chain of each element product by product, so it gives the emulation's bits:
//     packed:    the emulated gemm's packed path: KC-deep slices, each C = alpha acc (+ C); panels of words
//                (k, k + 1), A's (kc / 2, MR) per MR rows, B's (kc / 2, NR) per NR columns.
//     dot:       the emulated gemm's narrow dot (N <= kNarrow): lane l of 16 sums k = l mod 16 in chunks of 16, so
//                one word holds (k, k + 16) of a 32-value chunk; then the same reduction tree.
//   The emulated gemm's other path (outer, M <= kNarrow with K = 1) and a kscale take the emulation.
// Dimension letters as in gemm.h: C is M x N, the reduction K deep.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "core/buffer.h"
#include "core/thread_pool.h"
#include "core/thread_scratch.h"
#include "kernels/cpu/amx.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/gemm_tile.h"
#include "kernels/cpu/simd.h"

namespace of::cpu {
namespace {

constexpr int MR = 8, NR = 32;  // the instruction's micro-tile: 16 zmm accumulators, as gemm.cpp's AVX-512 one
constexpr int kChunk = 256;     // rows of A the emulation rounds at a time (at least, or all of them)

struct EmulationScratch {
    Buffer a, b;  // A rows (< 2 kChunk, K) and B (N, K), rounded
};
struct PairScratch {
    Buffer a, b, words;  // A and B panels (words), the dot kernel's B words
};

// 32 floats -> 16 words (x[2i], x[2i + 1]): cvtne2ps puts x[0, 16) in the lower bfloat16 lanes, x[16, 32) above; the
// rotation brings each pair's first value to the word's upper half.
OF_BF16_TARGET inline __m512i pairs32(const float* x, __mmask16 m0, __mmask16 m1) {
    const __m512bh h = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, x + 16), _mm512_maskz_loadu_ps(m0, x));
    return _mm512_rol_epi32(__m512i(h), 16);
}

// kc floats x, contiguous -> kp = kc / 2 rounded up words (x[2q], x[2q + 1]) at p[q ld], zero past kc.
OF_BF16_TARGET inline void words_strided(uint32_t* p, int ld, const float* x, int kc, int kp) {
    alignas(64) uint32_t w[16];
    for (int q = 0; q < kp; q += 16) {
        _mm512_store_si512(w, pairs32(x + 2 * q, lanes(kc - 2 * q), lanes(kc - 2 * q - 16)));
        for (int l = 0; l < std::min(16, kp - q); l++) p[(q + l) * ld] = w[l];
    }
}

// Two rows of 16 floats -> 16 words (hi[j], lo[j]).
OF_BF16_TARGET inline __m512i interleave16(__m512 hi, __m512 lo) {
    const __m512i h = _mm512_cvtepu16_epi32(__m256i(_mm512_cvtneps_pbh(hi)));
    const __m512i l = _mm512_cvtepu16_epi32(__m256i(_mm512_cvtneps_pbh(lo)));
    return _mm512_or_si512(_mm512_slli_epi32(h, 16), l);
}

// A block (rows, kc) -> MR-row panels of words, each (kc / 2 rounded up, MR): Ap[q MR + i] = (A(i, 2q), A(i, 2q + 1)),
// zero past the rows and past kc.
OF_BF16_TARGET void pack_a(uint32_t* Ap, const float* A, ptrdiff_t rsa, ptrdiff_t csa, int rows, int kc) {
    const int kp = (kc + 1) / 2;
    for (int i0 = 0; i0 < rows; i0 += MR, Ap += MR * kp) {
        const int mr = std::min(MR, rows - i0);
        if (csa == 1) {  // rows contiguous over the reduction: 32 values convert at once, then scatter to the panel
            for (int i = 0; i < mr; i++) words_strided(Ap + i, MR, A + (i0 + i) * rsa, kc, kp);
        } else {
            for (int q = 0; q < kp; q++) {
                const float* a = A + 2 * q * csa + i0 * rsa;
                for (int i = 0; i < mr; i++)
                    Ap[q * MR + i] = bf16_pair(a[i * rsa], 2 * q + 1 < kc ? a[i * rsa + csa] : 0.0f);
            }
        }
        for (int q = 0; q < kp; q++)
            for (int i = mr; i < MR; i++) Ap[q * MR + i] = 0;
    }
}

// B block (kc, cols) -> NR-column panels of words, each (kc / 2 rounded up, NR): Bp[q NR + j] = (B(2q, j),
// B(2q + 1, j)), zero past the columns and past kc.
OF_BF16_TARGET void pack_b(uint32_t* Bp, const float* B, ptrdiff_t rsb, ptrdiff_t csb, int cols, int kc) {
    const int kp = (kc + 1) / 2;
    for (int j0 = 0; j0 < cols; j0 += NR, Bp += NR * kp) {
        const int nr = std::min(NR, cols - j0);
        if (csb == 1) {  // rows contiguous over the columns: two rows interleave 16 columns at a time
            for (int q = 0; q < kp; q++) {
                const float* hi = B + 2 * q * rsb + j0;
                const float* lo = hi + rsb;
                for (int j = 0; j < NR; j += 16) {
                    const __mmask16 m = lanes(nr - j);
                    const __m512 l = 2 * q + 1 < kc ? _mm512_maskz_loadu_ps(m, lo + j) : _mm512_setzero_ps();
                    _mm512_store_si512(Bp + q * NR + j, interleave16(_mm512_maskz_loadu_ps(m, hi + j), l));
                }
            }
            continue;
        }
        if (rsb == 1) {  // columns contiguous over the reduction (B^T row-major, a forward's weights)
            for (int j = 0; j < nr; j++) words_strided(Bp + j, NR, B + (j0 + j) * csb, kc, kp);
        } else {
            for (int q = 0; q < kp; q++)
                for (int j = 0; j < nr; j++) {
                    const float* b = B + 2 * q * rsb + (j0 + j) * csb;
                    Bp[q * NR + j] = bf16_pair(b[0], 2 * q + 1 < kc ? b[rsb] : 0.0f);
                }
        }
        for (int q = 0; q < kp; q++)
            for (int j = nr; j < NR; j++) Bp[q * NR + j] = 0;
    }
}

// MR x NR tile over kp words of the reduction: C = alpha acc (+ C or beta C on the first slice), as store_tile.
OF_BF16_TARGET void ukernel_pairs(int kp, const uint32_t* Ap, const uint32_t* Bp, float* C, ptrdiff_t rsc,
                                  ptrdiff_t csc, int mr, int nr, float alpha, float beta, bool first_slice) {
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) c0[i] = _mm512_setzero_ps(), c1[i] = _mm512_setzero_ps();
    for (int q = 0; q < kp; q++) {
        const __m512bh b0 = __m512bh(_mm512_load_si512(Bp + q * NR));
        const __m512bh b1 = __m512bh(_mm512_load_si512(Bp + q * NR + 16));
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            const __m512bh a = __m512bh(_mm512_set1_epi32(int(Ap[q * MR + i])));
            c0[i] = _mm512_dpbf16_ps(c0[i], a, b0);
            c1[i] = _mm512_dpbf16_ps(c1[i], a, b1);
        }
    }
    alignas(64) float acc[MR * NR];
    for (int i = 0; i < MR; i++) _mm512_store_ps(acc + i * NR, c0[i]), _mm512_store_ps(acc + i * NR + 16, c1[i]);
    store_tile(acc, NR, C, rsc, csc, mr, nr, alpha, beta, first_slice);
}

// The packed path: as gemm.cpp's driver (tiles of C per task, KC slices), on word panels.
void packed_pairs(float* C, ptrdiff_t rsc, ptrdiff_t csc, const float* A, ptrdiff_t rsa, ptrdiff_t csa, const float* B,
                  ptrdiff_t rsb, ptrdiff_t csb, int M, int N, int K, float alpha, float beta) {
    if (N < NR / 2 && M > N) {  // a narrow C: C^T = B^T A^T, the same products in the same order
        std::swap(M, N), std::swap(rsc, csc), std::swap(A, B), std::swap(rsa, csb), std::swap(csa, rsb);
    }
    int mt = std::min(round_up(M, MR), MR * 16), nt = std::min(round_up(N, NR), NR * 16);
    const int threads = ThreadPool::instance().threads();
    auto count = [&] { return ((M + mt - 1) / mt) * ((N + nt - 1) / nt); };
    while (count() < threads) {
        if (nt > NR && (nt >= mt || mt <= MR)) nt = round_up(nt / 2, NR);
        else if (mt > MR) mt = round_up(mt / 2, MR);
        else break;
    }
    const int mb = (M + mt - 1) / mt, nb = (N + nt - 1) / nt;
    ThreadPool::instance().parallel_for(
        mb * nb,
        [&](int task) {
            PairScratch& sc = thread_scratch<PairScratch>();
            const int i0 = (task / nb) * mt, j0 = (task % nb) * nt;
            const int rows = std::min(mt, M - i0), cols = std::min(nt, N - j0);
            if (!sc.a.reserve(size_t(round_up(rows, MR)) * KC / 2).ok() ||
                !sc.b.reserve(size_t(round_up(cols, NR)) * KC / 2).ok())  // out of memory: the unpacked loop
                return gemm_bf16_naive(C + i0 * rsc + j0 * csc, rsc, csc, A + i0 * rsa, rsa, csa, B + j0 * csb, rsb,
                                       csb, nullptr, rows, cols, K, alpha, beta);
            uint32_t *ap = words_of(sc.a), *bp = words_of(sc.b);
            for (int p0 = 0; p0 < K; p0 += KC) {
                const int kc = std::min(KC, K - p0), kp = (kc + 1) / 2;
                pack_a(ap, A + i0 * rsa + p0 * csa, rsa, csa, rows, kc);
                pack_b(bp, B + p0 * rsb + j0 * csb, rsb, csb, cols, kc);
                for (int jr = 0; jr < cols; jr += NR)
                    for (int ir = 0; ir < rows; ir += MR)
                        ukernel_pairs(kp, ap + ir * kp, bp + jr * kp, C + (i0 + ir) * rsc + (j0 + jr) * csc, rsc, csc,
                                      std::min(MR, rows - ir), std::min(NR, cols - jr), alpha, beta, p0 == 0);
            }
        },
        int64_t(M) * N * K / 32 + int64_t(M + N) * K);
}

// The dot kernel's word for lane l of a 32-value chunk x: (x[l], x[16 + l]). cvtne2ps puts x[16, 32) in the lower
// bfloat16 lanes and x[0, 16) above; the permutation interleaves them.
OF_BF16_TARGET inline __m512i dot_words(const float* x, __mmask16 m0, __mmask16 m1) {
    alignas(64) static const uint16_t order[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                                   8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    const __m512bh h = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m0, x), _mm512_maskz_loadu_ps(m1, x + 16));
    return _mm512_permutexvar_epi16(_mm512_load_si512(order), __m512i(h));
}

// gemm.cpp's dot_rows_avx512 on words: C (rows, N <= kNarrow) = A (rows, K) B^T, A rows contiguous; Bw (N, KW) the
// words of B's columns, KW = 16 per 32-value chunk of the reduction.
OF_BF16_TARGET void dot_rows_pairs(float* C, ptrdiff_t rsc, ptrdiff_t csc, const float* A, ptrdiff_t rsa,
                                   const uint32_t* Bw, int KW, int rows, int N, int K, float alpha, float beta) {
    for (int i = 0; i < rows; i += 2) {
        const int nr = std::min(2, rows - i);
        const float* a0 = A + i * rsa;
        const float* a1 = nr > 1 ? a0 + rsa : a0;
        __m512 acc0[kNarrow], acc1[kNarrow];
#pragma GCC unroll 12
        for (int j = 0; j < kNarrow; j++) acc0[j] = _mm512_setzero_ps(), acc1[j] = _mm512_setzero_ps();
        for (int p = 0, c = 0; p < K; p += 32, c += 16) {
            const __mmask16 m0 = lanes(K - p), m1 = lanes(K - p - 16);
            const __m512bh x0 = __m512bh(dot_words(a0 + p, m0, m1)), x1 = __m512bh(dot_words(a1 + p, m0, m1));
#pragma GCC unroll 12
            for (int j = 0; j < kNarrow; j++) {
                if (j < N) {
                    const __m512bh b = __m512bh(_mm512_load_si512(Bw + int64_t(j) * KW + c));
                    acc0[j] = _mm512_dpbf16_ps(acc0[j], x0, b);
                    acc1[j] = _mm512_dpbf16_ps(acc1[j], x1, b);
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

void dot_pairs(float* C, ptrdiff_t rsc, ptrdiff_t csc, const float* A, ptrdiff_t rsa, const float* B, ptrdiff_t rsb,
               ptrdiff_t csb, int M, int N, int K, float alpha, float beta, bool* ok) {
    const int KW = (K + 31) / 32 * 16;
    Buffer& wb = thread_scratch<PairScratch>().words;
    if (!(*ok = wb.reserve(size_t(N) * KW).ok())) return;
    uint32_t* bw = words_of(wb);
    for (int j = 0; j < N; j++)
        for (int c = 0; c < KW; c += 16)
            for (int l = 0; l < 16; l++) {
                const int k0 = 2 * c + l, k1 = k0 + 16;  // chunk c / 16 holds k in [2c, 2c + 32)
                auto b = [&](int k) { return k < K ? B[k * rsb + j * csb] : 0.0f; };
                bw[int64_t(j) * KW + c + l] = bf16_pair(b(k0), b(k1));
            }
    const int tasks = std::min(64, (M + 63) / 64);
    const int chunk = ((M + tasks - 1) / tasks + 1) / 2 * 2;
    ThreadPool::instance().parallel_for((M + chunk - 1) / chunk,
                                        [&](int t) {
                                            const int i0 = t * chunk;
                                            dot_rows_pairs(C + i0 * rsc, rsc, csc, A + i0 * rsa, rsa, bw, KW,
                                                           std::min(chunk, M - i0), N, K, alpha, beta);
                                        },
                                        int64_t(M) * N * K / 16);
}

void emulated(float* C, ptrdiff_t rsc, ptrdiff_t csc, const float* A, ptrdiff_t rsa, ptrdiff_t csa, const float* B,
              ptrdiff_t rsb, ptrdiff_t csb, const float* kscale, int M, int N, int K, float alpha, float beta) {
    if (M <= 0 || N <= 0 || K <= 0) return gemm(C, rsc, csc, A, rsa, csa, B, rsb, csb, kscale, M, N, K, alpha, beta);
    EmulationScratch& sc = thread_scratch<EmulationScratch>();
    const int piece = M < 2 * kChunk ? M : kChunk;  // the last piece takes the rest: every piece picks M's path
    if (!sc.b.reserve(size_t(N) * K).ok() || !sc.a.reserve(size_t(std::min(M, 2 * kChunk - 1)) * K).ok())
        return gemm_bf16_naive(C, rsc, csc, A, rsa, csa, B, rsb, csb, kscale, M, N, K, alpha, beta);
    float *a = sc.a.data(), *b = sc.b.data();
    // x (n, K) with x(r, p) at src[r rs + p cs] -> dst (n, K), rounded
    auto round_rows = [K](float* dst, const float* src, ptrdiff_t rs, ptrdiff_t cs, int n) {
        for (int r = 0; r < n; r++) {
            float* d = dst + int64_t(r) * K;
            const float* s = src + r * rs;
            if (cs == 1) round_bf16_span(d, s, K);
            else
                for (int p = 0; p < K; p++) d[p] = round_bf16(s[p * cs]);
        }
    };
    round_rows(b, B, csb, rsb, N);
    for (int i0 = 0; i0 < M;) {
        const int rows = M - i0 < 2 * piece ? M - i0 : piece;
        round_rows(a, A + i0 * rsa, rsa, csa, rows);
        gemm(C + i0 * rsc, rsc, csc, a, K, 1, b, 1, K, kscale, rows, N, K, alpha, beta);
        i0 += rows;
    }
}

// round_bf16_span's loop, compiled for each vector width (the selects of bf16_round_bits vectorize).
void round_span(float* dst, const float* src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = round_bf16(src[i]);
}
__attribute__((target("avx2"))) void round_span_avx2(float* dst, const float* src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = round_bf16(src[i]);
}
__attribute__((target("avx512f"))) void round_span_avx512(float* dst, const float* src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = round_bf16(src[i]);
}

// Seconds of 4096 rounds of 16 independent vdpbf16ps chains, or of float32 FMA chains (bf16_pairs_outrun_fma).
OF_BF16_TARGET double seconds_of_pairs() {
    __m512 acc[16];
    const __m512bh one = __m512bh(_mm512_set1_epi32(0x3f803f80));  // (1, 1)
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < 4096; r++)
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) acc[i] = _mm512_dpbf16_ps(acc[i], one, one);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    volatile float sink = 0.0f;
    for (int i = 0; i < 16; i++) sink = sink + _mm512_reduce_add_ps(acc[i]);
    return s;
}
__attribute__((target("avx512f,fma"))) double seconds_of_fmas() {
    __m512 acc[16];
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < 4096; r++)
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) acc[i] = _mm512_fmadd_ps(one, one, acc[i]);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    volatile float sink = 0.0f;
    for (int i = 0; i < 16; i++) sink = sink + _mm512_reduce_add_ps(acc[i]);
    return s;
}

}  // namespace

void gemm_bf16_naive(float* C, ptrdiff_t rsc, ptrdiff_t csc, const float* A, ptrdiff_t rsa, ptrdiff_t csa,
                     const float* B, ptrdiff_t rsb, ptrdiff_t csb, const float* kscale, int M, int N, int K,
                     float alpha, float beta) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float acc = 0.0f;
            for (int p = 0; p < K; p++) {
                float a = round_bf16(A[i * rsa + p * csa]);
                if (kscale) a = a * kscale[p];
                acc = std::fma(a, round_bf16(B[p * rsb + j * csb]), acc);
            }
            float* c = C + i * rsc + j * csc;
            *c = beta == 0.0f ? alpha * acc : alpha * acc + beta * *c;
        }
}

void round_bf16_span(float* dst, const float* src, int64_t n) {
    static const auto span = std::strcmp(gemm_isa(), "avx512") == 0 ? round_span_avx512
                             : std::strcmp(gemm_isa(), "avx2") == 0 ? round_span_avx2
                                                                    : round_span;
    span(dst, src, n);
}

bool bf16_instructions() {
    static const bool yes = [] {
        const char* cap = std::getenv("ONEFORWARD_SIMD");
        __builtin_cpu_init();
        return !(cap && *cap) && std::strcmp(gemm_isa(), "avx512") == 0 && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
    }();
    return yes;
}

bool bf16_pairs_outrun_fma() {
    static const bool yes = bf16_instructions() && [] {
        double pairs = 1e30, fmas = 1e30;
        for (int t = 0; t < 5; t++)
            pairs = std::min(pairs, seconds_of_pairs()), fmas = std::min(fmas, seconds_of_fmas());
        return pairs < 1.5 * fmas;  // 32 products an instruction against 16
    }();
    return yes;
}

Bf16Way bf16_way() {
    static const Bf16Way way = [] {
        const char* force = std::getenv("ONEFORWARD_BF16");
        auto is = [force](const char* w) { return force && std::strcmp(force, w) == 0; };
        if (!bf16_instructions() || is("emulated")) return Bf16Way::Emulated;
        if (is("amx") && amx_usable()) return Bf16Way::Amx;
        return is("instruction") ? Bf16Way::Instruction : Bf16Way::Fastest;
    }();
    return way;
}

bool bf16_on_amx(Bf16Way way) { return (way == Bf16Way::Amx || way == Bf16Way::Fastest) && amx_usable(); }

const char* bf16_kernels() {
    const Bf16Way way = bf16_way();
    return way == Bf16Way::Emulated                                 ? "emulated"
           : bf16_on_amx(way)                                       ? "amx"
           : way == Bf16Way::Instruction || bf16_pairs_outrun_fma() ? "avx512bf16"
                                                                    : "avx512bf16 (narrow products)";
}

OF_BF16_TARGET void bf16_pairs(uint32_t* words, const float* x, int64_t n) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) _mm512_storeu_si512(words + i / 2, pairs32(x + i, 0xffff, 0xffff));
    for (; i < n; i += 2) words[i / 2] = bf16_pair(x[i], i + 1 < n ? x[i + 1] : 0.0f);
}

void gemm_bf16_as(Bf16Way way, float* C, ptrdiff_t rsc, ptrdiff_t csc, const float* A, ptrdiff_t rsa, ptrdiff_t csa,
                  const float* B, ptrdiff_t rsb, ptrdiff_t csb, const float* kscale, int M, int N, int K, float alpha,
                  float beta) {
    bool ok = false;
    if (bf16_on_amx(way) && !kscale && M > 0 && N > 0 && K > 0) {
        ok = gemm_bf16_amx(C, rsc, csc, A, rsa, csa, B, rsb, csb, M, N, K, alpha, beta);
    } else if (way != Bf16Way::Emulated && !kscale && M > 0 && N > 0 && K > 0) {
        // the path the emulated gemm takes on its copies: A (M, K) row-major, B as (N, K) row-major
        const Narrow path = narrow_kernel(M, N, 1, 1, K);
        if (path == Narrow::Dot && csa == 1) {
            dot_pairs(C, rsc, csc, A, rsa, B, rsb, csb, M, N, K, alpha, beta, &ok);
        } else if (path == Narrow::None && (way == Bf16Way::Instruction || bf16_pairs_outrun_fma())) {
            packed_pairs(C, rsc, csc, A, rsa, csa, B, rsb, csb, M, N, K, alpha, beta);
            ok = true;
        }
    }
    if (!ok) emulated(C, rsc, csc, A, rsa, csa, B, rsb, csb, kscale, M, N, K, alpha, beta);
}

void gemm_bf16(float* C, ptrdiff_t rsc, ptrdiff_t csc, const float* A, ptrdiff_t rsa, ptrdiff_t csa, const float* B,
               ptrdiff_t rsb, ptrdiff_t csb, const float* kscale, int M, int N, int K, float alpha, float beta) {
    gemm_bf16_as(bf16_way(), C, rsc, csc, A, rsa, csa, B, rsb, csb, kscale, M, N, K, alpha, beta);
}

double gemm_bf16_scratch_floats(double R, double W, double Wn) {
    // word panels (half of gemm's float panels), the dot kernel's B words (kNarrow columns of W / 2 rounded up to 16),
    // the emulation's copies (B: a weight matrix in the copies' forwards; < 2 kChunk rows of A), the words of a
    // direct convolution's padded image (within Wn) and the AMX tiles
    const double panels = (16.0 * MR + 16.0 * NR) * KC / 2;
    const double dot = kNarrow * (std::ceil(W / 32) * 16);
    const double copies = Wn + std::min(R, 2.0 * kChunk) * W;
    return panels + dot + copies + 5 * 16.0 + gemm_amx_scratch_floats(W, Wn);
}

}  // namespace of::cpu
