// Our own CUDA SGEMM, used where cuBLAS cannot be loaded: 64 x 64 output tiles, 16-deep slices of K staged in shared
// memory, 256 threads each accumulating a 4 x 4 block (rows ty + 16 r, columns tx + 16 c, so shared-memory reads are
// conflict-free and the stores coalesce). Operands come with general strides, so every transpose case is one kernel;
// a tile loads along whichever index is contiguous in memory. Compiled with FMA contraction on (unlike kernels.cu).
#include <cuda_runtime.h>

#include "cuda/cuda.h"

namespace of::cuda {
namespace {

constexpr int kBM = 64, kBN = 64, kBK = 16, kThreads = 256;

__global__ void __launch_bounds__(kThreads) sgemm_tiled(int M, int N, int K, float alpha, const float* __restrict__ A,
                                                        int64_t rsa, int64_t csa, const float* __restrict__ B, int64_t rsb,
                                                        int64_t csb, float beta, float* __restrict__ C, int64_t ldc) {
    __shared__ float As[kBK][kBM + 1];
    __shared__ float Bs[kBK][kBN + 1];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int i0 = blockIdx.y * kBM, j0 = blockIdx.x * kBN;
    const bool a_k_contig = csa == 1, b_j_contig = csb == 1;
    float acc[4][4] = {};
    for (int k0 = 0; k0 < K; k0 += kBK) {
        for (int e = tid; e < kBM * kBK; e += kThreads) {
            const int ii = a_k_contig ? e / kBK : e % kBM, kk = a_k_contig ? e % kBK : e / kBM;
            const int gi = i0 + ii, gk = k0 + kk;
            As[kk][ii] = (gi < M && gk < K) ? A[gi * rsa + gk * csa] : 0.0f;
        }
        for (int e = tid; e < kBN * kBK; e += kThreads) {
            const int jj = b_j_contig ? e % kBN : e / kBK, kk = b_j_contig ? e / kBN : e % kBK;
            const int gj = j0 + jj, gk = k0 + kk;
            Bs[kk][jj] = (gj < N && gk < K) ? B[gk * rsb + gj * csb] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kBK; kk++) {
            float a[4], b[4];
#pragma unroll
            for (int r = 0; r < 4; r++) a[r] = As[kk][ty + 16 * r];
#pragma unroll
            for (int c = 0; c < 4; c++) b[c] = Bs[kk][tx + 16 * c];
#pragma unroll
            for (int r = 0; r < 4; r++)
#pragma unroll
                for (int c = 0; c < 4; c++) acc[r][c] += a[r] * b[c];
        }
        __syncthreads();
    }
#pragma unroll
    for (int r = 0; r < 4; r++) {
        const int i = i0 + ty + 16 * r;
        if (i >= M) continue;
#pragma unroll
        for (int c = 0; c < 4; c++) {
            const int j = j0 + tx + 16 * c;
            if (j >= N) continue;
            float* out = C + i * ldc + j;
            *out = beta == 0.0f ? alpha * acc[r][c] : alpha * acc[r][c] + beta * *out;
        }
    }
}

}  // namespace

int sgemm(void* stream, int M, int N, int K, float alpha, const float* A, int64_t rsa, int64_t csa, const float* B,
          int64_t rsb, int64_t csb, float beta, float* C, int64_t ldc) {
    if (M <= 0 || N <= 0) return 0;
    dim3 grid((N + kBN - 1) / kBN, (M + kBM - 1) / kBM);
    sgemm_tiled<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(M, N, K, alpha, A, rsa, csa, B, rsb, csb, beta, C, ldc);
    return int(cudaGetLastError());
}

}  // namespace of::cuda
