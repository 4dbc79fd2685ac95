// Noise generation on the CPU: rows of noise (normal, Laplace or logistic) laid out as rng/normal.h defines (blocks of
// 64 neurons = 16 Philox calls), computed a register of lanes at a time with GCC vector types. One row kernel per ISA
// (AVX-512 / AVX2 / SSE2, picked as the GEMM's): every clone performs the same IEEE operations in the same order as the
// scalar noise_at() (the build has -ffp-contract=off), so the bits never depend on the CPU -- and match CUDA.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/simd.h"
#include "rng/normal.h"
#include "rng/sobol.h"

// GCC's instruction scheduler before register allocation (off by default on x86) interleaves the independent
// polynomial chains of a block's values: about 10% more values per second. Scheduling reorders, never changes, the
// IEEE operations.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("schedule-insns", "sched-pressure")
#endif

namespace of::cpu {
namespace {

// W 32-bit lanes (16 AVX-512, 8 AVX2, 4 SSE2: one register) as floats, ints, words, and as W / 2 64-bit lanes
// (words or doubles).
template <int W>
struct Lanes {
    typedef float F __attribute__((vector_size(4 * W)));
    typedef int32_t I __attribute__((vector_size(4 * W)));
    typedef uint32_t U __attribute__((vector_size(4 * W)));
    typedef uint64_t Q __attribute__((vector_size(4 * W)));
    typedef double D __attribute__((vector_size(4 * W)));
};

#define OF_INLINE inline __attribute__((always_inline))

// Helpers take and return GCC vectors and are inlined, so their vector arguments never cross a call between
// functions compiled for different ISAs (whose vector ABIs differ).

// low32(a) * low32(m) per 64-bit lane (vpmuludq / pmuludq). GCC's generic u64 multiply would emulate a full 64x64
// product. Not always_inline: the generic callers are inlined into the ISA's row function first.
template <int W>
typename Lanes<W>::Q mul_lo32(typename Lanes<W>::Q a, typename Lanes<W>::Q m);
template <>
__attribute__((target("avx512f"))) inline Lanes<16>::Q mul_lo32<16>(Lanes<16>::Q a, Lanes<16>::Q m) {
    return (Lanes<16>::Q)_mm512_mul_epu32((__m512i)a, (__m512i)m);
}
template <>
__attribute__((target("avx2"))) inline Lanes<8>::Q mul_lo32<8>(Lanes<8>::Q a, Lanes<8>::Q m) {
    return (Lanes<8>::Q)_mm256_mul_epu32((__m256i)a, (__m256i)m);
}
template <>
inline Lanes<4>::Q mul_lo32<4>(Lanes<4>::Q a, Lanes<4>::Q m) {
    return (Lanes<4>::Q)_mm_mul_epu32((__m128i)a, (__m128i)m);
}

// Per-row constants of Philox4x32-10 (rng/philox.h) for the counter (c0, row, stream, step) and key (k0, k1): only c0
// differs between a row's values, so the first two rounds fold into two products and three xors with constants.
// Round 1: p0 = M0 c0; (c0, c1, c2, c3) <- (hi(M1 stream) ^ row ^ k0, lo(M1 stream), hi(p0) ^ step ^ k1, lo(p0)).
// Round 2, with that c0 a constant C: p1 = M1 c2; (c0, c1, c2, c3) <- (hi(p1) ^ lo(M1 stream) ^ k0', lo(p1),
// hi(M0 C) ^ lo(p0) ^ k1', lo(M0 C)). Rounds 3..10 as written; (k0, k1) advance by (W0, W1) per round.
struct RowConsts {
    uint32_t x1, x2_c0, x2_c2, c3;  // xor after round 1's hi(p0); round 2's xors into c0 and c2; round 2's c3
    uint32_t k0[10], k1[10];
};
RowConsts row_consts(uint32_t row, uint32_t stream, uint32_t step, uint64_t seed) {
    RowConsts rc;
    uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
    for (int i = 0; i < 10; i++, k0 += kPhiloxW0, k1 += kPhiloxW1) rc.k0[i] = k0, rc.k1[i] = k1;
    const uint64_t s = uint64_t(kPhiloxM1) * stream;
    const uint64_t q = uint64_t(kPhiloxM0) * (uint32_t(s >> 32) ^ row ^ rc.k0[0]);
    rc.x1 = step ^ rc.k1[0];
    rc.x2_c0 = uint32_t(s) ^ rc.k0[1];
    rc.x2_c2 = uint32_t(q >> 32) ^ rc.k1[1];
    rc.c3 = uint32_t(q);
    return rc;
}

// Philox4x32-10 of the counters of NB blocks of a row (block b: c0 = 16 b + l, l = 0..15) -> w[b][chunk][word], the
// chunk holding lanes l = W chunk .. W chunk + W - 1. Each 32-bit state word sits in the low half of a 64-bit lane
// ("wide lanes"): one vpmuludq gives the whole 32x32 -> 64 product, whose low half is the next word as it stands
// and whose high half is one shift away; the high halves carry garbage that nothing reads (vpmuludq ignores them,
// the final packing drops them). A chunk's lanes go to two vectors, E (even l) and O (odd l): lo(E) | O << 32 packs
// them back in order.
template <int W, int NB>
OF_INLINE void philox_blocks(typename Lanes<W>::U (*w)[16 / W][4], uint32_t blk0, const RowConsts& rc) {
    typedef typename Lanes<W>::Q Q;
    constexpr int C = 16 / W, S = 2 * C * NB;  // chunks per block; wide vectors per state word
    Q lane2;                                   // 0, 2, 4, ...
    for (int i = 0; i < W / 2; i++) lane2[i] = uint64_t(2 * i);
    const Q m0 = Q{} + kPhiloxM0, m1 = Q{} + kPhiloxM1;
    const Q x1 = Q{} + rc.x1, x2_c0 = Q{} + rc.x2_c0, x2_c2 = Q{} + rc.x2_c2, c3_2 = Q{} + rc.c3;
    Q c0[S], c1[S], c2[S], c3[S];
    for (int s = 0; s < S; s++) {  // rounds 1 and 2; vector s: block s / (2 C), chunk (s / 2) % C, odd lanes if s odd
        const uint32_t first = (blk0 + uint32_t(s / (2 * C))) * 16u + uint32_t(W * ((s / 2) % C) + s % 2);
        Q p0 = mul_lo32<W>(lane2 + first, m0);
        Q p1 = mul_lo32<W>((p0 >> 32) ^ x1, m1);
        c0[s] = (p1 >> 32) ^ x2_c0;
        c1[s] = p1;
        c2[s] = p0 ^ x2_c2;
        c3[s] = c3_2;
    }
#pragma GCC unroll 8
    for (int r = 2; r < 10; r++) {
        const Q k0 = Q{} + rc.k0[r], k1 = Q{} + rc.k1[r];
        for (int s = 0; s < S; s++) {
            Q p0 = mul_lo32<W>(c0[s], m0), p1 = mul_lo32<W>(c2[s], m1);
            c0[s] = (p1 >> 32) ^ c1[s] ^ k0;
            c1[s] = p1;
            c2[s] = (p0 >> 32) ^ c3[s] ^ k1;
            c3[s] = p0;
        }
    }
    const Q* c[4] = {c0, c1, c2, c3};
    for (int s = 0; s < S; s += 2)
        for (int j = 0; j < 4; j++)
            w[s / (2 * C)][(s / 2) % C][j] = (typename Lanes<W>::U)((c[j][s] & 0xffffffffu) | (c[j][s + 1] << 32));
}

template <int W>
OF_INLINE typename Lanes<W>::F log_poly_v(typename Lanes<W>::F x) {  // rng/normal.h log_poly, lane-wise
    typedef typename Lanes<W>::F F;
    typedef typename Lanes<W>::I I;
    typedef typename Lanes<W>::U U;
    U bits = (U)x;
    I e = (I)((bits >> 23) & 0xffu) - 126;
    F m = (F)((bits & 0x007fffffu) | 0x3f000000u);
    I small = m < 0.70710678f;
    e = small ? e - 1 : e;
    m = small ? m + m : m;
    F f = m - 1.0f;
    F z = f * f;
    F y = f * 7.0376836292e-2f + -1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f + -1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f + -1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f + -2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z;
    F fe = __builtin_convertvector(e, F);
    y = y + -2.12194440e-4f * fe;
    y = y + -0.5f * z;
    return f + y + 0.693359375f * fe;
}

template <int W>
OF_INLINE typename Lanes<W>::F uniform_v(typename Lanes<W>::U w) {  // rng/normal.h uniform_open, lane-wise
    typedef typename Lanes<W>::F F;
    return (__builtin_convertvector((typename Lanes<W>::I)(w >> 8), F) + 0.5f) * (1.0f / 16777216.0f);
}

template <int W>  // rng/normal.h box_muller, lane-wise
OF_INLINE void box_muller_v(typename Lanes<W>::U a, typename Lanes<W>::U b, typename Lanes<W>::F* z0,
                            typename Lanes<W>::F* z1) {
    typedef typename Lanes<W>::F F;
    typedef typename Lanes<W>::I I;
    typedef typename Lanes<W>::U U;
    F r2 = -2.0f * log_poly_v<W>(uniform_v<W>(a));
    F r = r2 > 0.0f ? r2 : 0.0f;  // then sqrt(r): a loop without branches, so it vectorizes
    for (int i = 0; i < W; i++) r[i] = __builtin_sqrtf(r[i]);
    // q = t * 8 with t = x 2^-24 (x = b >> 8): both scalings by powers of 2 are exact, so one product, same bits
    F q = __builtin_convertvector((I)(b >> 8), F) * (1.0f / 2097152.0f);
    I j = __builtin_convertvector(q, I);
    j = (j + 1) & ~1;
    F rr = (q - __builtin_convertvector(j, F)) * 0.78539816339744830962f;
    F zz = rr * rr;
    F sp = ((zz * -1.9515295891e-4f + 8.3321608736e-3f) * zz + -1.6666654611e-1f) * zz * rr + rr;
    F cp = ((zz * 2.443315711809948e-5f + -1.388731625493765e-3f) * zz + 4.166664568298827e-2f) * zz * zz - 0.5f * zz +
           1.0f;
    // quad = (j >> 1) & 3 read off j's bits: quad & 1 = j & 2, quad & 2 = j & 4, (quad + 1) & 2 = (j + 2) & 4; the sign
    // flips (-x flips the sign bit) as xors with those bits moved to bit 31
    F sv = (j & 2) != 0 ? cp : sp;
    F cv = (j & 2) != 0 ? sp : cp;
    F s = (F)((U)sv ^ (((U)j << 29) & 0x80000000u));
    F c = (F)((U)cv ^ (((U)j + 2) << 29 & 0x80000000u));
    *z0 = r * c;
    *z1 = r * s;
}

// The four Philox words of W lanes -> values of density D at out[16 word + lane] (as rng/normal.h noise_at).
template <int W, int D>
OF_INLINE void words_to_values(float* out, const typename Lanes<W>::U* w) {
    typename Lanes<W>::F z[4];
    if (D == 0) {  // two Box-Muller pairs
        box_muller_v<W>(w[0], w[1], &z[0], &z[1]);
        box_muller_v<W>(w[2], w[3], &z[2], &z[3]);
    } else {
        for (int i = 0; i < 4; i++) {
            typename Lanes<W>::F u = uniform_v<W>(w[i]);
            if (D == 2) {
                z[i] = log_poly_v<W>(u) - log_poly_v<W>(1.0f - u);
            } else {
                typename Lanes<W>::F d = u - 0.5f;
                typename Lanes<W>::F l = log_poly_v<W>(1.0f - 2.0f * (d < 0.0f ? -d : d));
                z[i] = d > 0.0f ? -l : l;
            }
        }
    }
    for (int i = 0; i < 4; i++) std::memcpy(out + 16 * i, &z[i], sizeof(z[i]));
}

// NB blocks of a row from block b -> dst[0 .. 64 NB).
template <int W, int D, int NB>
OF_INLINE void blocks_to(float* dst, int b, const RowConsts& rc) {
    constexpr int C = 16 / W;
    typename Lanes<W>::U w[NB][C][4];
    philox_blocks<W, NB>(w, uint32_t(b), rc);
    for (int i = 0; i < NB; i++)
        for (int c = 0; c < C; c++) words_to_values<W, D>(dst + 64 * i + W * c, w[i][c]);
}

// One row of n values of density D (layout of rng/normal.h), G blocks at a time: their Philox chains interleave, so
// the products' latency overlaps (4 fill AVX-512's 32 registers; 2 suit 16). A partial last block goes through a
// local buffer.
template <int W, int D>
OF_INLINE void row_of(float* out, int n, const RowConsts& rc) {
    constexpr int G = W == 16 ? 4 : 2;
    const int full = n / 64;
    int b = 0;
    for (; b + G <= full; b += G) blocks_to<W, D, G>(out + 64 * b, b, rc);
    if constexpr (G > 2)
        if (b + 2 <= full) blocks_to<W, D, 2>(out + 64 * b, b, rc), b += 2;
    if (b < full) blocks_to<W, D, 1>(out + 64 * b, b, rc), b++;
    if (n % 64) {
        alignas(64) float tail[64];
        blocks_to<W, D, 1>(tail, b, rc);
        std::copy(tail, tail + n % 64, out + 64 * b);
    }
}

template <int W>
OF_INLINE void row_any(float* out, int n, const RowConsts& rc, int density) {
    if (density == 0) row_of<W, 0>(out, n, rc);
    else if (density == 1) row_of<W, 1>(out, n, rc);
    else row_of<W, 2>(out, n, rc);
}

// One body compiled per ISA, one register wide; every clone performs the same IEEE operations in the same order as
// the scalar noise_at(), so they agree bit for bit.
using RowFn = void (*)(float*, int, const RowConsts&, int);
__attribute__((target("avx512f"))) void row_avx512(float* out, int n, const RowConsts& rc, int density) {
    row_any<16>(out, n, rc, density);
}
__attribute__((target("avx2"))) void row_avx2(float* out, int n, const RowConsts& rc, int density) {
    row_any<8>(out, n, rc, density);
}
void row_sse2(float* out, int n, const RowConsts& rc, int density) { row_any<4>(out, n, rc, density); }

// The GEMM's ISA (ONEFORWARD_SIMD caps both, so tests can run every clone).
RowFn pick_row() {
    const char* isa = gemm_isa();
    return std::strcmp(isa, "avx512") == 0 ? row_avx512 : std::strcmp(isa, "avx2") == 0 ? row_avx2 : row_sse2;
}

// QMC normals (qmc_row_naive's definition, a block of 64 values at a time). Value j takes word j % 4 of Philox counter
// c0 = j / 4 with row = sample: the plain noise's counters, so philox_blocks draws a block's shifts, in (counter,
// word) order, transposed here to j = 64 b + 4 l + word. The Sobol point xors in the direction-number rows dirs
// (one per set bit of the point index, contiguous over the row's dimensions). Acklam's central region runs in float64
// lanes with inverse_normal's operations in its order (mul, add, div; the 2^-24 scaling, exact, as a product);
// values in its tails (~5%) are recomputed by the scalar inverse_normal, whose log and sqrt are libm's.
template <int W>
OF_INLINE void qmc_block(float* dst, int n, int b, const RowConsts& rc, const uint32_t* const* dirs, int bits) {
    typedef typename Lanes<W>::U U;
    constexpr int C = 16 / W, H = W / 2;  // chunks per block; float64 lanes per register
    typedef typename Lanes<W>::D Dv;
    typedef typename Lanes<H>::I Iv;
    typedef typename Lanes<H>::F Fv;
    U w[1][C][4];
    philox_blocks<W, 1>(w, uint32_t(b), rc);
    alignas(64) uint32_t x[64];
    for (int c = 0; c < C; c++)
        for (int word = 0; word < 4; word++)
            for (int l = 0; l < W; l++) x[4 * (W * c + l) + word] = w[0][c][word][l];
    for (int i = 0; i < bits; i++) {
        const uint32_t* v = dirs[i] + 64 * b;
        if (n == 64) {
            for (int t = 0; t < 64; t += W) {
                U a, d;
                std::memcpy(&a, x + t, sizeof a), std::memcpy(&d, v + t, sizeof d);
                a ^= d;
                std::memcpy(x + t, &a, sizeof a);
            }
        } else {  // a partial block reads no dimension past the row's
            for (int t = 0; t < n; t++) x[t] ^= v[t];
        }
    }
    alignas(64) float z[64];
    for (int t = 0; t < 64; t += H) {
        Iv m;
        std::memcpy(&m, x + t, sizeof m);
        m = (Iv)((typename Lanes<H>::U)m >> 8);  // < 2^24: exact as int32 and as double
        const Dv p = (__builtin_convertvector(m, Dv) + 0.5) * (1.0 / 16777216.0);
        const Dv q = p - 0.5, r = q * q;
        const Dv num = (((((r * -3.969683028665376e+01 + 2.209460984245205e+02) * r + -2.759285104469687e+02) * r +
                          1.383577518672690e+02) *
                             r +
                         -3.066479806614716e+01) *
                            r +
                        2.506628277459239e+00) *
                       q;
        const Dv den = (((((r * -5.447609879822406e+01 + 1.615858368580409e+02) * r + -1.556989798598866e+02) * r +
                          6.680131188771972e+01) *
                             r +
                         -1.328068155288572e+01) *
                            r +
                        1.0);
        const Fv f = __builtin_convertvector(num / den, Fv);
        std::memcpy(z + t, &f, sizeof f);
    }
    for (int t = 0; t < n; t++) {
        const double p = (double(x[t] >> 8) + 0.5) * (1.0 / 16777216.0);
        if (p < 0.02425 || p > 1.0 - 0.02425) z[t] = float(inverse_normal(p));
    }
    std::memcpy(dst, z, sizeof(float) * size_t(n));
}

template <int W>
OF_INLINE void qmc_row_any(float* out, int O, const RowConsts& rc, const uint32_t* const* dirs, int bits) {
    for (int b = 0; 64 * b < O; b++) qmc_block<W>(out + 64 * b, std::min(64, O - 64 * b), b, rc, dirs, bits);
}

using QmcRowFn = void (*)(float*, int, const RowConsts&, const uint32_t* const*, int);
__attribute__((target("avx512f"))) void qmc_row_avx512(float* out, int O, const RowConsts& rc,
                                                       const uint32_t* const* dirs, int bits) {
    qmc_row_any<16>(out, O, rc, dirs, bits);
}
__attribute__((target("avx2"))) void qmc_row_avx2(float* out, int O, const RowConsts& rc, const uint32_t* const* dirs,
                                                  int bits) {
    qmc_row_any<8>(out, O, rc, dirs, bits);
}
void qmc_row_sse2(float* out, int O, const RowConsts& rc, const uint32_t* const* dirs, int bits) {
    qmc_row_any<4>(out, O, rc, dirs, bits);
}

QmcRowFn pick_qmc_row() {
    const char* isa = gemm_isa();
    return std::strcmp(isa, "avx512") == 0 ? qmc_row_avx512
           : std::strcmp(isa, "avx2") == 0 ? qmc_row_avx2
                                           : qmc_row_sse2;
}

}  // namespace

// One row of n noise values (layout of rng/normal.h).
void noise_row(float* out, int n, uint32_t row, uint32_t layer, uint32_t step, uint64_t seed, Density density) {
    static const RowFn row_fn = pick_row();
    row_fn(out, n, row_consts(row, philox_stream(kStreamNoise, layer), step, seed), int(density));
}

void noise_row_naive(float* out, int n, uint32_t row, uint32_t layer, uint32_t step, uint64_t seed, Density density) {
    for (int j = 0; j < n; j++) out[j] = noise_at(uint32_t(j), row, layer, step, seed, int(density));
}

// The QMC row's sample and Sobol point index of row g = (sample, copy).
static void qmc_row_index(uint32_t g, const NoiseSpec& ns, uint32_t* sample, uint32_t* k) {
    const uint32_t per_sample = ns.qmc_copies * (ns.antithetic ? 2u : 1u);
    *sample = g / per_sample, *k = (g % per_sample) >> (ns.antithetic ? 1 : 0);
}

// One row of QMC normals, value by value (the definition; qmc_row computes the same bits): the copy's Sobol point,
// shifted per (sample, neuron) by word j % 4 of Philox counter (j / 4, sample, qmc stream, step), then Acklam's
// inverse normal CDF in float64.
void qmc_row_naive(float* out, int O, uint32_t g, const NoiseSpec& ns) {
    uint32_t sample, k;
    qmc_row_index(g, ns, &sample, &k);
    SobolTable::ensure(int(ns.qmc_dim) + O);
    const uint32_t stream = philox_stream(kStreamQmc, ns.layer);
    for (int j0 = 0; j0 < O; j0 += 4) {
        U32x4 shift =
            philox4x32_10(uint32_t(j0 / 4), sample, stream, ns.step, uint32_t(ns.seed), uint32_t(ns.seed >> 32));
        for (int j = j0; j < std::min(O, j0 + 4); j++) {
            uint32_t x = SobolTable::point(SobolTable::dim(int(ns.qmc_dim) + j), k) ^ shift.v[j - j0];
            out[j] = float(inverse_normal((double(x >> 8) + 0.5) / 16777216.0));
        }
    }
}

// One row of QMC normals (as qmc_row_naive): the set bits of k pick direction-number rows of consecutive dimensions.
static void qmc_row(float* out, int O, uint32_t g, const NoiseSpec& ns) {
    static const QmcRowFn qmc_fn = pick_qmc_row();
    if (!SobolTable::by_bit(0)) return qmc_row_naive(out, O, g, ns);  // no memory for the transposed table
    uint32_t sample, k;
    qmc_row_index(g, ns, &sample, &k);
    SobolTable::ensure(int(ns.qmc_dim) + O);
    const uint32_t* dirs[32];
    int bits = 0;
    for (int i = 0; k; i++, k >>= 1)
        if (k & 1) dirs[bits++] = SobolTable::by_bit(i) + ns.qmc_dim;
    qmc_fn(out, O, row_consts(sample, philox_stream(kStreamQmc, ns.layer), ns.step, ns.seed), dirs, bits);
}

void noise_row_of(float* out, int O, uint32_t g, const NoiseSpec& ns) {
    if (ns.qmc_copies) qmc_row(out, O, g, ns);
    else noise_row(out, O, g, ns.layer, ns.step, ns.seed, ns.density);
}

// Rows [r0, r1) of E (R, O): each antithetic odd row negates its even partner (regenerated when the
// partner lies outside this range).
static void noise_rows(float* E, int r0, int r1, int O, const NoiseSpec& ns) {
    for (int r = r0; r < r1; r++) {
        uint32_t g = noise_global_row(ns, r);
        float* e = E + int64_t(r) * O;
        if (ns.antithetic && (g & 1)) {
            if (r > r0) {  // the even partner was just written: negate it
                const float* p = e - O;
                for (int o = 0; o < O; o++) e[o] = -p[o];
                continue;
            }
            noise_row_of(e, O, g & ~1u, ns);
            for (int o = 0; o < O; o++) e[o] = -e[o];
        } else {
            noise_row_of(e, O, g, ns);
        }
    }
}

void noise_fill(float* E, int R, int O, const NoiseSpec& ns) {
    int chunk = std::max(8, (R + 63) / 64);
    int tasks = (R + chunk - 1) / chunk;
    ThreadPool::instance().parallel_for(
        tasks, [&](int t) { noise_rows(E, t * chunk, std::min(R, (t + 1) * chunk), O, ns); }, int64_t(R) * O * 5);
}

}  // namespace of::cpu
