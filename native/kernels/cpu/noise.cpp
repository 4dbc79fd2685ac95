// Noise generation on the CPU: rows of noise (normal, Laplace or logistic) laid out as rng/normal.h defines (blocks of
// 64 neurons = 16 Philox calls), computed 16 lanes at a time with GCC vector types. Cloned per ISA (AVX-512 / AVX2 /
// SSE2): every clone performs the same IEEE operations in the same order as the scalar noise_at() (the build has
// -ffp-contract=off), so the bits never depend on the CPU -- and will match CUDA. GCC 12's AVX-512 headers trip
// -W(maybe-)uninitialized on their own undefined-vector idiom.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/ops.h"
#include "rng/normal.h"
#include "rng/sobol.h"

namespace of::cpu {
namespace {

typedef uint32_t u32x16 __attribute__((vector_size(64)));
typedef int32_t i32x16 __attribute__((vector_size(64)));
typedef float f32x16 __attribute__((vector_size(64)));
typedef uint64_t u64x16 __attribute__((vector_size(128)));

#define OF_INLINE inline __attribute__((always_inline))

// Helpers take and return GCC vectors; always inlined, so their vector arguments never cross a call between
// functions compiled for different ISAs (whose vector ABIs differ).
OF_INLINE void mulhilo(u32x16 a, uint32_t m, u32x16* hi, u32x16* lo) {
    u64x16 p = __builtin_convertvector(a, u64x16) * uint64_t(m);
    *hi = __builtin_convertvector(p >> 32, u32x16);
    *lo = a * m;
}

OF_INLINE f32x16 log_poly_v(f32x16 x) {  // rng/normal.h log_poly, lane-wise
    u32x16 bits = (u32x16)x;
    i32x16 e = (i32x16)((bits >> 23) & 0xffu) - 126;
    f32x16 m = (f32x16)((bits & 0x007fffffu) | 0x3f000000u);
    i32x16 small = m < 0.70710678f;  // -1 where true
    e = e + small;
    m = small ? m + m : m;
    f32x16 f = m - 1.0f;
    f32x16 z = f * f;
    f32x16 y = f * 7.0376836292e-2f + -1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f + -1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f + -1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f + -2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z;
    f32x16 fe = __builtin_convertvector(e, f32x16);
    y = y + -2.12194440e-4f * fe;
    y = y + -0.5f * z;
    return f + y + 0.693359375f * fe;
}

OF_INLINE void box_muller_v(u32x16 a, u32x16 b, f32x16* z0, f32x16* z1) {  // rng/normal.h box_muller, lane-wise
    f32x16 ua = (__builtin_convertvector((i32x16)(a >> 8), f32x16) + 0.5f) * (1.0f / 16777216.0f);
    f32x16 r2 = -2.0f * log_poly_v(ua);
    f32x16 r;
    for (int i = 0; i < 16; i++) r[i] = r2[i] > 0.0f ? __builtin_sqrtf(r2[i]) : 0.0f;
    f32x16 t = __builtin_convertvector((i32x16)(b >> 8), f32x16) * (1.0f / 16777216.0f);
    f32x16 q = t * 8.0f;
    i32x16 j = __builtin_convertvector(q, i32x16);
    j = (j + 1) & ~1;
    f32x16 rr = (q - __builtin_convertvector(j, f32x16)) * 0.78539816339744830962f;
    f32x16 zz = rr * rr;
    f32x16 sp = ((zz * -1.9515295891e-4f + 8.3321608736e-3f) * zz + -1.6666654611e-1f) * zz * rr + rr;
    f32x16 cp = ((zz * 2.443315711809948e-5f + -1.388731625493765e-3f) * zz + 4.166664568298827e-2f) * zz * zz -
                0.5f * zz + 1.0f;
    i32x16 quad = (j >> 1) & 3;
    f32x16 sv = (quad & 1) != 0 ? cp : sp;
    f32x16 cv = (quad & 1) != 0 ? sp : cp;
    f32x16 s = (quad & 2) != 0 ? -sv : sv;
    f32x16 c = ((quad + 1) & 2) != 0 ? -cv : cv;
    *z0 = r * c;
    *z1 = r * s;
}

OF_INLINE f32x16 uniform_v(u32x16 w) {
    return (__builtin_convertvector((i32x16)(w >> 8), f32x16) + 0.5f) * (1.0f / 16777216.0f);
}

// The four Philox words of 16 lanes -> 64 values of the density (same operations as rng/normal.h noise_at).
OF_INLINE void words_to_values(float* out, u32x16 w0, u32x16 w1, u32x16 w2, u32x16 w3, int density) {
    if (density == 0) {  // the hot path: two Box-Muller pairs straight to memory
        f32x16 z0, z1, z2, z3;
        box_muller_v(w0, w1, &z0, &z1);
        box_muller_v(w2, w3, &z2, &z3);
        std::memcpy(out, &z0, 64), std::memcpy(out + 16, &z1, 64);
        std::memcpy(out + 32, &z2, 64), std::memcpy(out + 48, &z3, 64);
        return;
    }
    f32x16 z[4];
    {
        u32x16 w[4] = {w0, w1, w2, w3};
        for (int i = 0; i < 4; i++) {
            f32x16 u = uniform_v(w[i]);
            if (density == 2) {
                z[i] = log_poly_v(u) - log_poly_v(1.0f - u);
            } else {
                f32x16 d = u - 0.5f;
                f32x16 l = log_poly_v(1.0f - 2.0f * (d < 0.0f ? -d : d));
                z[i] = d > 0.0f ? -l : l;
            }
        }
    }
    for (int i = 0; i < 4; i++) std::memcpy(out + 16 * i, &z[i], 64);
}

// 64 values of block `blk` of a row -> out[0..64).
__attribute__((target_clones("avx512f", "avx2", "default"))) void noise_block(float* out, uint32_t blk, uint32_t row,
                                                                              uint32_t stream, uint32_t step,
                                                                              uint32_t k0, uint32_t k1, int density) {
    u32x16 c0, c1 = row - u32x16{}, c2 = stream - u32x16{}, c3 = step - u32x16{};
    for (int l = 0; l < 16; l++) c0[l] = blk * 16u + uint32_t(l);
    for (int i = 0; i < 10; i++) {
        u32x16 hi0, lo0, hi1, lo1;
        mulhilo(c0, kPhiloxM0, &hi0, &lo0);
        mulhilo(c2, kPhiloxM1, &hi1, &lo1);
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += kPhiloxW0, k1 += kPhiloxW1;
    }
    words_to_values(out, c0, c1, c2, c3, density);
}

__attribute__((target("avx512f"))) inline void mulhilo512(__m512i a, __m512i m, __m512i* hi, __m512i* lo) {
    __m512i even = _mm512_mul_epu32(a, m);                        // lanes 0, 2, ...: full 64-bit products
    __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);  // lanes 1, 3, ...
    *lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
    *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
}

// AVX-512 Philox: 32x32 -> 64 products with vpmuludq on even and odd lanes (GCC's generic u64 multiply
// would emulate a full 64x64 product). Same words as the generic clone, then the same Box-Muller.
__attribute__((target("avx512f"))) void noise_block_avx512(float* out, uint32_t blk, uint32_t row, uint32_t stream,
                                                           uint32_t step, uint32_t k0, uint32_t k1, int density) {
    const __m512i m0 = _mm512_set1_epi32(int(kPhiloxM0)), m1 = _mm512_set1_epi32(int(kPhiloxM1));
    __m512i c0 = _mm512_add_epi32(_mm512_set1_epi32(int(blk * 16u)),
                                  _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    __m512i c1 = _mm512_set1_epi32(int(row)), c2 = _mm512_set1_epi32(int(stream)), c3 = _mm512_set1_epi32(int(step));
    for (int i = 0; i < 10; i++) {
        __m512i hi0, lo0, hi1, lo1;
        mulhilo512(c0, m0, &hi0, &lo0);
        mulhilo512(c2, m1, &hi1, &lo1);
        c0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32(int(k0)));
        c1 = lo1;
        c2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32(int(k1)));
        c3 = lo0;
        k0 += kPhiloxW0, k1 += kPhiloxW1;
    }
    u32x16 w0, w1, w2, w3;
    std::memcpy(&w0, &c0, 64), std::memcpy(&w1, &c1, 64), std::memcpy(&w2, &c2, 64), std::memcpy(&w3, &c3, 64);
    words_to_values(out, w0, w1, w2, w3, density);
}

using BlockFn = void (*)(float*, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, int);
BlockFn pick_block() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? noise_block_avx512 : noise_block;
}
const BlockFn block_fn = pick_block();

}  // namespace

// One row of n noise values (layout of rng/normal.h).
void noise_row(float* out, int n, uint32_t row, uint32_t layer, uint32_t step, uint64_t seed, Density density) {
    uint32_t stream = philox_stream(kStreamNoise, layer), k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
    int full = n / 64;
    for (int b = 0; b < full; b++) block_fn(out + 64 * b, uint32_t(b), row, stream, step, k0, k1, int(density));
    if (n % 64) {
        alignas(64) float tail[64];
        block_fn(tail, uint32_t(full), row, stream, step, k0, k1, int(density));
        std::copy(tail, tail + n % 64, out + 64 * full);
    }
}

void noise_row_naive(float* out, int n, uint32_t row, uint32_t layer, uint32_t step, uint64_t seed, Density density) {
    for (int j = 0; j < n; j++) out[j] = noise_at(uint32_t(j), row, layer, step, seed, int(density));
}

// One row of QMC normals: row g = (sample, copy); the copy's Sobol point, shifted per (sample, neuron).
static void qmc_row(float* out, int O, uint32_t g, const NoiseSpec& ns) {
    const uint32_t per_sample = ns.qmc_copies * (ns.antithetic ? 2u : 1u);
    const uint32_t sample = g / per_sample, k = (g % per_sample) >> (ns.antithetic ? 1 : 0);
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
