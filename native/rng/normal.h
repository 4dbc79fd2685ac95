// uint32 -> uniform and standard-normal floats (Box-Muller), written branch-free in plain float arithmetic
// so the compiler vectorizes whole rows of it and a CUDA build (with --fmad=false) gives the same bits.
// The log and sin/cos are our own minimax polynomials (Cephes coefficients), accurate to ~2 ulp over the
// range used; libm calls would block vectorization and differ between platforms.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/fastmath.h"
#include "rng/philox.h"

namespace of {

// Uniform in (0, 1]: the top 24 bits, offset by half a step so 0 never occurs (log(0) is avoided).
OF_HOST_DEVICE float uniform_open(uint32_t u) { return (float(u >> 8) + 0.5f) * (1.0f / 16777216.0f); }

// Natural log for x in (0, 1]; Cephes logf polynomial on the mantissa in [sqrt(1/2), sqrt(2)).
OF_HOST_DEVICE float log_poly(float x) {
    uint32_t bits = float_as_bits(x);
    int32_t e = int32_t((bits >> 23) & 0xff) - 126;
    float m = bits_as_float((bits & 0x007fffffu) | 0x3f000000u);  // m in [0.5, 1)
    int32_t small = m < 0.70710678f;                              // bring m into [sqrt(1/2), sqrt(2))
    e -= small;
    m = small ? m + m : m;
    float f = m - 1.0f;
    float z = f * f;
    float y = 7.0376836292e-2f;
    y = y * f + -1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f + -1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f + -1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f + -2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z;
    float fe = float(e);
    y += -2.12194440e-4f * fe;
    y += -0.5f * z;
    return f + y + 0.693359375f * fe;
}

// sin and cos of 2*pi*t for t in [0, 1): reduce by octant in "turns", then Cephes sinf/cosf polynomials.
OF_HOST_DEVICE void sincos_turns(float t, float* s, float* c) {
    float q = t * 8.0f;                                  // octant position in [0, 8)
    int32_t j = int32_t(q);                              // 0..7
    j = (j + 1) & ~1;                                    // nearest even octant: 0,2,4,6,8
    float r = (q - float(j)) * 0.78539816339744830962f;  // in [-pi/4, pi/4]
    float z = r * r;
    float sp = ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z + -1.6666654611e-1f) * z * r + r;
    float cp =
        ((2.443315711809948e-5f * z + -1.388731625493765e-3f) * z + 4.166664568298827e-2f) * z * z - 0.5f * z + 1.0f;
    int32_t quad = (j >> 1) & 3;  // rotate by quad * 90 degrees
    float sv = (quad & 1) ? cp : sp;
    float cv = (quad & 1) ? sp : cp;
    *s = (quad & 2) ? -sv : sv;
    *c = ((quad + 1) & 2) ? -cv : cv;
}

// Two uniform words -> two independent N(0, 1) values.
OF_HOST_DEVICE void box_muller(uint32_t a, uint32_t b, float* z0, float* z1) {
    float r2 = -2.0f * log_poly(uniform_open(a));
#if defined(__CUDA_ARCH__)
    float r = r2 > 0.0f ? sqrtf(r2) : 0.0f;  // IEEE round-to-nearest (nvcc's default -prec-sqrt=true), as on the CPU
#else
    float r = r2 > 0.0f ? __builtin_sqrtf(r2) : 0.0f;
#endif
    float s, c;
    sincos_turns(float(b >> 8) * (1.0f / 16777216.0f), &s, &c);
    *z0 = r * c;
    *z1 = r * s;
}

// Layout of the noise in a row (fixed project-wide; CPU and CUDA must agree): neurons come in blocks of 64;
// block b uses the 16 Philox counters c0 = 16 b + l (l = 0..15), and neuron j = 64 b + 16 w + l takes word w
// of counter 16 b + l. Words (0, 1) and (2, 3) are Box-Muller pairs: w = 0, 2 -> r cos, w = 1, 3 -> r sin.
// So 16 SIMD lanes (or 16 GPU threads) each run one Philox call and write four contiguous 16-float rows.
// The other densities use one word per value: u = uniform_open(word), then the inverse CDF:
//   logistic e = log(u) - log(1 - u);   Laplace e = -sign(u - 1/2) log(1 - 2 |u - 1/2|).
OF_HOST_DEVICE float logistic_from_uniform(float u) { return log_poly(u) - log_poly(1.0f - u); }
OF_HOST_DEVICE float laplace_from_uniform(float u) {
    float d = u - 0.5f;
    float l = log_poly(1.0f - 2.0f * (d < 0.0f ? -d : d));
    return d > 0.0f ? -l : l;
}

// Inverse of the standard normal CDF (Acklam's rational approximation, relative error < 1.2e-9), in float64: the QMC
// normals. The lower tail below 0.02425, the upper one by symmetry.
OF_HOST_DEVICE double inverse_normal_tail(double p) {
    const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                        -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
    const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00};
    const double q = sqrt(-2.0 * log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
           ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
}
OF_HOST_DEVICE double inverse_normal(double p) {
    if (p < 0.02425) return inverse_normal_tail(p);
    if (p > 1.0 - 0.02425) return -inverse_normal_tail(1.0 - p);
    const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,  -2.759285104469687e+02,
                        1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
    const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01,
                        -1.328068155288572e+01};
    const double q = p - 0.5, r = q * q;
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
           (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
}

// density: 0 normal, 1 Laplace, 2 logistic (Density in kernels/cpu/ops.h).
OF_HOST_DEVICE float noise_at(uint32_t j, uint32_t row, uint32_t layer, uint32_t step, uint64_t seed, int density) {
    uint32_t c0 = (j >> 6) * 16u + (j & 15u), w = (j >> 4) & 3u;
    U32x4 u = philox4x32_10(c0, row, philox_stream(kStreamNoise, layer), step, uint32_t(seed), uint32_t(seed >> 32));
    if (density == 1) return laplace_from_uniform(uniform_open(u.v[w]));
    if (density == 2) return logistic_from_uniform(uniform_open(u.v[w]));
    float z0, z1;
    box_muller(u.v[w & 2u], u.v[(w & 2u) + 1], &z0, &z1);
    return (w & 1u) ? z1 : z0;
}

}  // namespace of
