// Single-precision GEMM of our own: packed panels, cache blocking, an AVX-512 / AVX2+FMA / scalar
// micro-kernel chosen once at run time (one binary for any x86-64), tasks on the thread pool.
//   C (M, N) = alpha * op(A) (M, K) * diag(kscale) (K, K) * op(B) (K, N) + beta * C
// with arbitrary row/column strides for A, B and C, so NN, NT and TN (and transposed outputs) are all
// stride choices. kscale (optional, length K) scales the reduction dimension while A is packed: the ULR
// gradient diag(w) * S(E) is formed inside the packing and never materialized (docs/method.md section 3.3).
// Every element accumulates its K products in the same order with FMA, whatever the ISA, tiling or
// thread count: results are bit-identical across all of them.
#pragma once
#include <cstddef>

namespace of::cpu {

void gemm(float* C, ptrdiff_t rsc, ptrdiff_t csc, const float* A, ptrdiff_t rsa, ptrdiff_t csa, const float* B,
          ptrdiff_t rsb, ptrdiff_t csb, const float* kscale, int M, int N, int K, float alpha, float beta);

// Row-major conveniences. nn: A (M, K), B (K, N). nt: A (M, K), B (N, K). tn: A (K, M), B (K, N).
inline void gemm_nn(float* C, const float* A, const float* B, int M, int N, int K, float alpha, float beta) {
    gemm(C, N, 1, A, K, 1, B, N, 1, nullptr, M, N, K, alpha, beta);
}
inline void gemm_nt(float* C, const float* A, const float* B, int M, int N, int K, float alpha, float beta) {
    gemm(C, N, 1, A, K, 1, B, 1, K, nullptr, M, N, K, alpha, beta);
}
inline void gemm_tn(float* C, const float* A, const float* B, const float* kscale, int M, int N, int K, float alpha,
                    float beta) {
    gemm(C, N, 1, A, 1, M, B, N, 1, kscale, M, N, K, alpha, beta);
}

// Plain triple loop with the same argument meaning: the oracle for tests and a fallback.
void gemm_naive(float* C, ptrdiff_t rsc, ptrdiff_t csc, const float* A, ptrdiff_t rsa, ptrdiff_t csa, const float* B,
                ptrdiff_t rsb, ptrdiff_t csb, const float* kscale, int M, int N, int K, float alpha, float beta);

// "avx512", "avx2" or "scalar": the micro-kernel in use. ONEFORWARD_SIMD=avx2|scalar caps it (for tests).
const char* gemm_isa();

// Floats one thread's GEMM scratch (core/thread_scratch.h) holds for products of a step whose dimensions are rows
// (at most R) and feature widths (at most W): step_memory (model/train.cpp) counts it for every thread.
double gemm_scratch_floats(double R, double W);

}  // namespace of::cpu
