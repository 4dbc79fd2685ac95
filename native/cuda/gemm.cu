// Our own CUDA SGEMM, used where cuBLAS cannot be loaded: the tile code of device/tiled_gemm.h (which the host
// tests run too) with shared memory and block barriers between its phases. Compiled with FMA contraction on
// (unlike device.cu): its result is compared with tolerances, never bit for bit.
#include <cuda_runtime.h>

#include "cuda/cuda.h"
#include "device/tiled_gemm.h"

namespace of::cuda {
namespace {

__global__ void __launch_bounds__(tiled::kThreads) sgemm_tiled(tiled::Args a) {
    __shared__ tiled::Shared s;
    const int tid = threadIdx.x;
    const int i0 = blockIdx.x * tiled::kBM, j0 = blockIdx.y * tiled::kBN;  // M tiles on x: up to 2^31 - 1 of them
    float acc[4][4] = {};
    for (int k0 = 0; k0 < a.K; k0 += tiled::kBK) {
        tiled::load(a, s, tid, i0, j0, k0);
        __syncthreads();
        tiled::accumulate(s, tid, acc);
        __syncthreads();
    }
    tiled::store(a, tid, i0, j0, acc);
}

}  // namespace

int sgemm(void* stream, int M, int N, int K, float alpha, const float* A, int64_t rsa, int64_t csa, const float* B,
          int64_t rsb, int64_t csb, float beta, float* C, int64_t ldc) {
    if (M <= 0 || N <= 0) return 0;
    if (tiled::tiles(N, tiled::kBN) > 65535) return int(cudaErrorInvalidConfiguration);
    dim3 grid(tiled::tiles(M, tiled::kBM), tiled::tiles(N, tiled::kBN));
    sgemm_tiled<<<grid, tiled::kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        tiled::Args{M, N, K, alpha, beta, A, rsa, csa, B, rsb, csb, C, ldc});
    return int(cudaGetLastError());
}

}  // namespace of::cuda
