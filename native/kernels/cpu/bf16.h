// bfloat16 operands, float32 sums: the arithmetic of ULR's noisy copies with ulr({ precision: 'bf16' }). A bfloat16
// is the upper 16 bits of a float32 (8 exponent bits, an 8-bit significand with the implicit one): rounding an operand
// to it moves it by at most 2^-8 of its magnitude, and the product of two is exact in float32. The kernels here
// compute C = op(A) op(B) with both operands rounded so and every product and sum in float32, in one of two ways:
//   instruction:  AVX-512 BF16 (vdpbf16ps: two bfloat16 products into each float32 lane), with packed pair panels;
//   emulated:     the operands rounded into float32 scratch, then the float32 kernels (gemm.h, conv.h).
// On one CPU both give the same bits (gemm_bf16.cpp says how), but where a partial sum falls below 2^-126, which
// the instruction flushes to zero. Across CPUs the emulation inherits the float32 kernels' ISA-dependent sums.
// Where the CPU has AMX and the OS grants it, the GEMM takes the tiles instead (amx.h, gemm_amx.cpp): bits of their
// own, the same for any thread count.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/buffer.h"
#include "kernels/cpu/conv.h"

// The instruction's kernels: AVX-512 with BF16 (bw and vl for the masked word moves).
#define OF_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

namespace of::cpu {

// A buffer's floats seen as bfloat16 pair words (two bfloat16 values in 32 bits).
inline uint32_t* words_of(Buffer& b) { return reinterpret_cast<uint32_t*>(b.data()); }

// x rounded to the nearest bfloat16, ties to even, as VCVTNEPS2BF16 rounds: denormals become zeros of their sign, a
// NaN stays a (quiet) NaN, values past the largest bfloat16 become infinities. Returned as a float32 (low bits 0).
// (Selects, not branches: loops over spans vectorize.)
inline uint32_t bf16_round_bits(uint32_t u) {
    const uint32_t nearest = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    const uint32_t nan = (u | 0x00400000u) & 0xffff0000u, zero = u & 0x80000000u;
    return (u & 0x7f800000u) == 0 ? zero : (u & 0x7fffffffu) > 0x7f800000u ? nan : nearest;
}
inline float round_bf16(float x) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    u = bf16_round_bits(u);
    std::memcpy(&x, &u, 4);
    return x;
}
// dst[0, n) = src[0, n) rounded (dst may be src), in the widest vectors the CPU has.
void round_bf16_span(float* dst, const float* src, int64_t n);
// The 32-bit word vdpbf16ps reads as a pair: hi's bfloat16 in the upper half (its product comes first), lo's below.
inline uint32_t bf16_pair(float hi, float lo) {
    uint32_t h, l;
    std::memcpy(&h, &hi, 4), std::memcpy(&l, &lo, 4);
    return bf16_round_bits(h) | (bf16_round_bits(l) >> 16);
}

// Whether the CPU runs the instruction for us: it has AVX-512 BF16, the float32 GEMM runs its AVX-512 kernels, and
// ONEFORWARD_SIMD caps nothing (ONEFORWARD_SIMD=avx512 keeps AVX-512 and emulates bfloat16).
bool bf16_instructions();
// Whether vdpbf16ps adds products faster than float32 FMAs on this CPU, by a margin for packing words: its two
// products per lane take one instruction, at a throughput that varies by core -- a quarter of an FMA's on the
// Sapphire Rapids class Xeon these kernels were measured on, where its products run at half the FMAs' rate. A probe at
// first use times both (16 independent chains, best of 5, about 0.2 ms).
bool bf16_pairs_outrun_fma();

// Which kernels run the products: Emulated; Instruction wherever it applies (the tests); Amx: the AMX tiles (amx.h)
// wherever they apply (bf16_way() gives it only where amx_usable()); Fastest: Amx where amx_usable(), else the
// instruction in the narrow dot product (where the emulation copies A), and in the packed GEMM and the direct
// convolution where bf16_pairs_outrun_fma(), else the emulation. Emulated and Instruction give the same bits; Amx its
// own (amx.h).
enum class Bf16Way { Emulated, Instruction, Amx, Fastest };
// Fastest where bf16_instructions(), else Emulated; ONEFORWARD_BF16=amx|instruction|emulated picks one (tests,
// benches; amx only where amx_usable()). bf16_kernels: which, in words (backend info).
Bf16Way bf16_way();
// Whether a product run the given way takes the AMX tiles (never where they are not usable).
bool bf16_on_amx(Bf16Way way);
const char* bf16_kernels();

// gemm (gemm.h, the same arguments) with A and B rounded to bfloat16; kscale, where given, scales the rounded A in
// float32 (the copies' forwards never pass one).
void gemm_bf16(float* C, ptrdiff_t rsc, ptrdiff_t csc, const float* A, ptrdiff_t rsa, ptrdiff_t csa, const float* B,
               ptrdiff_t rsb, ptrdiff_t csb, const float* kscale, int M, int N, int K, float alpha, float beta);
void gemm_bf16_as(Bf16Way way, float* C, ptrdiff_t rsc, ptrdiff_t csc, const float* A, ptrdiff_t rsa, ptrdiff_t csa,
                  const float* B, ptrdiff_t rsb, ptrdiff_t csb, const float* kscale, int M, int N, int K, float alpha,
                  float beta);

// gemm_bf16 without scratch (out of memory): the float32 naive loop on rounded operands. Like gemm_naive it sums all
// of K in one chain, so for K > KC its bits differ from the sliced kernels'.
void gemm_bf16_naive(float* C, ptrdiff_t rsc, ptrdiff_t csc, const float* A, ptrdiff_t rsa, ptrdiff_t csa,
                     const float* B, ptrdiff_t rsb, ptrdiff_t csb, const float* kscale, int M, int N, int K,
                     float alpha, float beta);

// conv_forward (conv.h) with x and W rounded to bfloat16: false where the direct convolution does not suit the
// shape, and the caller takes im2row + gemm_bf16.
bool conv_forward_bf16(float* y, const float* x, const float* W, int n, const ConvGeom& g);
bool conv_forward_bf16_as(Bf16Way way, float* y, const float* x, const float* W, int n, const ConvGeom& g);
// Its Amx way (conv_amx.cpp): false where the tiles cannot run it (no AMX, a degenerate shape, its scratch).
bool conv_forward_amx(float* y, const float* x, const float* W, int n, const ConvGeom& g);
// Floats of scratch conv_forward_amx holds on a thread, at most: the packed weights and a padded bfloat16 image.
double conv_amx_scratch_floats(const ConvGeom& g);

// words[i] = bf16_pair(x[2i], x[2i + 1]) for i < n / 2, and bf16_pair(x[n - 1], 0) last when n is odd (needs the
// instruction set; the packing of the conv and GEMM kernels).
void bf16_pairs(uint32_t* words, const float* x, int64_t n);

// Floats of one thread's scratch for the bfloat16 kernels in a step whose products have at most R rows, reductions and
// columns of at most W, and Wn: the largest weight matrix plus the largest padded image of a direct convolution
// (step_memory counts it for every thread).
double gemm_bf16_scratch_floats(double R, double W, double Wn);

}  // namespace of::cpu
