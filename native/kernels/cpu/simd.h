// The x86 intrinsics of the CPU kernels (each kernel names its ISA in a target attribute and run-time dispatch picks
// one), and the lane masks of their tails. Included by the kernel sources only: the pragmas hold for the rest of a
// file.
#pragma once
#include <cstdint>

// GCC 12's AVX-512 headers trip -W(maybe-)uninitialized on their own undefined-vector idiom.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

namespace of::cpu {

// The mask of the first min(n, 16) of 16 lanes (none for n <= 0): the masked loads and stores of the kernels' tails.
inline uint16_t lanes(int64_t n) { return n >= 16 ? uint16_t(0xffff) : n > 0 ? uint16_t((1u << n) - 1) : 0; }

}  // namespace of::cpu
