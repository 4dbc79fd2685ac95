// bfloat16 operands, float32 sums: the arithmetic of ULR's noisy copies with ulr({ precision: 'bf16' }). A bfloat16
// is the upper 16 bits of a float32 (8 exponent bits, an 8-bit significand with the implicit one): rounding an operand
// to it moves it by at most 2^-8 of its magnitude, and the product of two is exact in float32. The kernels here
// compute C = op(A) op(B) with both operands rounded so and every product and sum in float32, in one of two ways:
//   instruction:  AVX-512 BF16 (vdpbf16ps: two bfloat16 products into each float32 lane), with packed pair panels;
//   emulated:     the operands rounded into float32 scratch, then the float32 kernels (gemm.h, conv.h).
// Both give the same bits (gemm_bf16.cpp says how), but where a partial sum falls below 2^-126, which the
// instruction flushes to zero: results do not depend on the CPU.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/conv.h"

namespace of::cpu {

// x rounded to the nearest bfloat16, ties to even, as VCVTNEPS2BF16 rounds: denormals become zeros of their sign, a
// NaN stays a (quiet) NaN, values past the largest bfloat16 become infinities. Returned as a float32 (low bits 0).
inline uint32_t bf16_round_bits(uint32_t u) {
    if ((u & 0x7f800000u) == 0) return u & 0x80000000u;                           // zero or denormal
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u | 0x00400000u) & 0xffff0000u;  // NaN
    return (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
}
inline float round_bf16(float x) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    u = bf16_round_bits(u);
    std::memcpy(&x, &u, 4);
    return x;
}
// x[0, n) rounded in place.
inline void round_bf16_span(float* x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = round_bf16(x[i]);
}
// The 32-bit word vdpbf16ps reads as a pair: hi's bfloat16 in the upper half (its product comes first), lo's below.
inline uint32_t bf16_pair(float hi, float lo) {
    uint32_t h, l;
    std::memcpy(&h, &hi, 4), std::memcpy(&l, &lo, 4);
    return bf16_round_bits(h) | (bf16_round_bits(l) >> 16);
}

// Whether the bfloat16 kernels use the instruction: the CPU has AVX-512 BF16, the float32 GEMM runs its AVX-512
// kernels, and ONEFORWARD_SIMD caps nothing (ONEFORWARD_SIMD=avx512 keeps AVX-512 and emulates bfloat16).
bool bf16_instructions();

// gemm (gemm.h, the same arguments) with A and B rounded to bfloat16; kscale, where given, scales the rounded A in
// float32 (the copies' forwards never pass one). gemm_bf16_as chooses the way (the instruction only where the CPU
// has it): the kernel tests compare the two.
void gemm_bf16(float* C, ptrdiff_t rsc, ptrdiff_t csc, const float* A, ptrdiff_t rsa, ptrdiff_t csa, const float* B,
               ptrdiff_t rsb, ptrdiff_t csb, const float* kscale, int M, int N, int K, float alpha, float beta);
void gemm_bf16_as(bool instruction, float* C, ptrdiff_t rsc, ptrdiff_t csc, const float* A, ptrdiff_t rsa,
                  ptrdiff_t csa, const float* B, ptrdiff_t rsb, ptrdiff_t csb, const float* kscale, int M, int N, int K,
                  float alpha, float beta);

// conv_forward (conv.h) with x and W rounded to bfloat16: false where the direct convolution does not suit the
// shape, and the caller takes im2row + gemm_bf16.
bool conv_forward_bf16(float* y, const float* x, const float* W, int n, const ConvGeom& g);
bool conv_forward_bf16_as(bool instruction, float* y, const float* x, const float* W, int n, const ConvGeom& g);

// words[i] = bf16_pair(x[2i], x[2i + 1]) for i < n / 2, and bf16_pair(x[n - 1], 0) last when n is odd (needs the
// instruction set; the packing of the conv and GEMM kernels).
void bf16_pairs(uint32_t* words, const float* x, int64_t n);

// Floats of one thread's scratch for the bfloat16 kernels in a step whose products have at most R rows, reductions and
// columns of at most W, and weights of at most Wn values (step_memory counts it for every thread).
double gemm_bf16_scratch_floats(double R, double W, double Wn);

}  // namespace of::cpu
