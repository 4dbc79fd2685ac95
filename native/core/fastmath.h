// float32 exp, tanh, sigmoid and erf written branch-free in plain float arithmetic, so that loops of them vectorize on
// the CPU (the libm calls they replace do not) and a CUDA build (--fmad=false) rounds every step the same way: the CPU
// engine, the device simulation and CUDA give the same bits. Accurate over all floats (test/21-activations: within 3
// ulp of float64); large |x| saturates, NaN in gives NaN out.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/host_device.h"

namespace of {

OF_HOST_DEVICE float bits_as_float(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
OF_HOST_DEVICE uint32_t float_as_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

// c ? a : b through bit masks. A plain ?: with a constant arm lets GCC split the loop body into branches (to fold
// the constant through what follows), and the loop then vectorizes only with AVX-512's masked arithmetic.
OF_HOST_DEVICE float select_f32(bool c, float a, float b) {
    const uint32_t m = 0u - uint32_t(c);
    return bits_as_float((float_as_bits(a) & m) | (float_as_bits(b) & ~m));
}

// e^x for x <= 0 (down to -inf; 0 below -104, where e^x rounds to 0). x = n ln2 + r, |r| <= ln2 / 2, with n rounded
// by the 1.5 2^23 trick and ln2 split in two (Cody-Waite) so n ln2 subtracts exactly; e^r from Cephes' expf
// polynomial; 2^n applied as two halves so that results down to the subnormals round only once.
OF_HOST_DEVICE float exp_nonpositive(float x) {
    x = select_f32(x < -104.0f, -104.0f, x);
    const float shifted = x * 1.44269504088896341f + 12582912.0f;  // 1.5 2^23 + n
    const float n = shifted - 12582912.0f;
    const int32_t ni = int32_t(float_as_bits(shifted)) - 0x4b400000;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    const int32_t n1 = ni >> 1, n2 = ni - n1;  // both >= -76: normal scales
    return p * bits_as_float(uint32_t(n1 + 127) << 23) * bits_as_float(uint32_t(n2 + 127) << 23);
}

// tanh: for |x| < 0.625 Cephes' odd polynomial, else 1 - 2 e / (1 + e) with e = e^(-2|x|) (in (0, 0.29): the
// subtraction loses nothing); the sign restored from x's bits.
OF_HOST_DEVICE float tanh_f32(float x) {
    const uint32_t sign = float_as_bits(x) & 0x80000000u;
    const float a = bits_as_float(float_as_bits(x) ^ sign);
    const float z = a * a;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z + -5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z + -3.33332819422e-1f;
    const float near0 = p * z * a + a;
    const float e = exp_nonpositive(-2.0f * a);
    const float far = 1.0f - (e + e) / (1.0f + e);
    const float y = select_f32(a < 0.625f, near0, far);  // NaN takes far, which is NaN
    return bits_as_float(float_as_bits(y) | sign);
}

// The logistic sigmoid 1 / (1 + e^-x), from e = e^-|x| (never overflows): 1 / (1 + e) for x >= 0, e / (1 + e) below,
// so the tail towards 0 keeps its relative accuracy.
OF_HOST_DEVICE float sigmoid_f32(float x) {
    const float e = exp_nonpositive(-(x < 0.0f ? -x : x));
    return select_f32(x < 0.0f, e, 1.0f) / (1.0f + e);
}

// erf: for |x| < 1 x + x P(x^2), else 1 - e^(R(|x|) - x^2) with R(x) = log(erfc(x) e^(x^2)) on [1, 4] in powers of
// x - 5/2 (past 4, erf rounds to 1); both minimax fits (relative, resp. absolute error ~1e-8), the sign restored from
// x's bits.
OF_HOST_DEVICE float erf_f32(float x) {
    const uint32_t sign = float_as_bits(x) & 0x80000000u;
    const float a = bits_as_float(float_as_bits(x) ^ sign);
    const float s = a * a;
    float p = 7.8896198829e-5f;
    p = p * s + -8.0210028682e-4f;
    p = p * s + 5.1895552315e-3f;
    p = p * s + -2.6854457334e-2f;
    p = p * s + 1.1283600330e-1f;
    p = p * s + -3.7612625957e-1f;
    p = p * s + 1.2837916613e-1f;
    const float near1 = p * a + a;
    const float b = select_f32(a > 4.0f, 4.0f, a), u = b - 2.5f;  // NaN stays
    float q = 1.5998667777e-6f;
    q = q * u + -1.3301748368e-5f;
    q = q * u + 7.7454722486e-5f;
    q = q * u + -4.2017298983e-4f;
    q = q * u + 2.1650816780e-3f;
    q = q * u + -1.0858487338e-2f;
    q = q * u + 5.6106392294e-2f;
    q = q * u + -3.5268068314e-1f;
    q = q * u + -1.5568152666e+0f;
    const float far = 1.0f - exp_nonpositive(q - b * b);
    const float y = select_f32(a < 1.0f, near1, far);  // NaN takes far: NaN
    return bits_as_float(float_as_bits(y) | sign);
}

}  // namespace of
