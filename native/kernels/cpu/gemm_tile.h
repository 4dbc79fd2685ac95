// What the float32 GEMM (gemm.cpp) and the bfloat16 one (gemm_bf16.cpp) share so that they round alike: the depth of
// a packed slice of the reduction, and how a finished micro-tile is written. Internal to those two files.
#pragma once
#include <cstddef>

namespace of::cpu {

// The packed paths sum each element's products KC at a time: C = alpha * (sum over the slice) (+ C) per slice.
constexpr int KC = 256;

// Writes one micro-tile: C = alpha * acc + (first ? beta * C : C). beta == 0 never reads C (it may hold
// NaN). The same mul/mul/add sequence is used in the vector fast paths, so results match bit for bit.
inline void store_tile(const float* acc, int ld_acc, float* C, ptrdiff_t rsc, ptrdiff_t csc, int mr, int nr,
                       float alpha, float beta, bool first) {
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float* c = C + i * rsc + j * csc;
            float v = alpha * acc[i * ld_acc + j];
            if (!first) v = v + *c;
            else if (beta != 0.0f) v = v + beta * *c;
            *c = v;
        }
}

// The float32 GEMM's narrow AVX-512 kernels, which read A and B unpacked: dot for C (M, N <= kNarrow) with A rows
// and B columns contiguous (csa = rsb = 1), outer for C (M <= kNarrow, N) with B rows contiguous (csb = 1).
constexpr int kNarrow = 12;
enum class Narrow { None, Dot, Outer };
inline Narrow narrow_kernel(int M, int N, ptrdiff_t csa, ptrdiff_t rsb, ptrdiff_t csb) {
    if (N <= kNarrow && csa == 1 && rsb == 1 && M > N) return Narrow::Dot;
    if (M <= kNarrow && csb == 1 && N > M) return Narrow::Outer;
    return Narrow::None;
}

inline int round_up(int x, int m) { return (x + m - 1) / m * m; }

}  // namespace of::cpu
