// Our CUDA SGEMM's tile code (native/cuda/gemm.cu), written as three phases of one thread so that the host can run
// it too: a block of kThreads threads computes a kBM x kBN tile of C; for each kBK-deep slice of K every thread
// loads its share of the A and B slices into shared memory (load), the block synchronizes, every thread accumulates
// its 4 x 4 outputs (accumulate), the block synchronizes again; at the end every thread writes its outputs (store).
// Thread (tx, ty) owns rows ty + 16 r and columns tx + 16 c (r, c < 4): shared-memory reads are conflict-free and the
// stores coalesce. A slice loads along whichever index is contiguous in memory. tiled_gemm_host() runs the phases
// for every thread of every block in order: the same arithmetic as the GPU, for the tests (deviceGemm 'tiled').
//
// Row-major C (M, N) = alpha op(A) op(B) + beta C, op(A)(i, k) = A[i rsa + k csa], op(B)(k, j) = B[k rsb + j csb];
// beta == 0 never reads C.
#pragma once
#include <cstdint>

#include "core/host_device.h"

namespace of::tiled {

constexpr int kBM = 64, kBN = 64, kBK = 16, kThreads = 256;

struct Args {
    int M, N, K;
    float alpha, beta;
    const float* A;
    int64_t rsa, csa;
    const float* B;
    int64_t rsb, csb;
    float* C;
    int64_t ldc;
};

struct Shared {
    float As[kBK][kBM + 1];
    float Bs[kBK][kBN + 1];
};

// Thread tid of the block at tile (i0, j0) loads its share of the slice at k0.
OF_HOST_DEVICE void load(const Args& a, Shared& s, int tid, int i0, int j0, int k0) {
    const bool a_k_contig = a.csa == 1, b_j_contig = a.csb == 1;
    for (int e = tid; e < kBM * kBK; e += kThreads) {
        const int ii = a_k_contig ? e / kBK : e % kBM, kk = a_k_contig ? e % kBK : e / kBM;
        const int gi = i0 + ii, gk = k0 + kk;
        s.As[kk][ii] = (gi < a.M && gk < a.K) ? a.A[gi * a.rsa + gk * a.csa] : 0.0f;
    }
    for (int e = tid; e < kBN * kBK; e += kThreads) {
        const int jj = b_j_contig ? e % kBN : e / kBK, kk = b_j_contig ? e / kBN : e % kBK;
        const int gj = j0 + jj, gk = k0 + kk;
        s.Bs[kk][jj] = (gj < a.N && gk < a.K) ? a.B[gk * a.rsb + gj * a.csb] : 0.0f;
    }
}

OF_HOST_DEVICE void accumulate(const Shared& s, int tid, float (&acc)[4][4]) {
    const int tx = tid % 16, ty = tid / 16;
#if defined(__CUDACC__)
#pragma unroll
#endif
    for (int kk = 0; kk < kBK; kk++) {
        float av[4], bv[4];
        for (int r = 0; r < 4; r++) av[r] = s.As[kk][ty + 16 * r];
        for (int c = 0; c < 4; c++) bv[c] = s.Bs[kk][tx + 16 * c];
        for (int r = 0; r < 4; r++)
            for (int c = 0; c < 4; c++) acc[r][c] += av[r] * bv[c];
    }
}

OF_HOST_DEVICE void store(const Args& a, int tid, int i0, int j0, const float (&acc)[4][4]) {
    const int tx = tid % 16, ty = tid / 16;
    for (int r = 0; r < 4; r++) {
        const int i = i0 + ty + 16 * r;
        if (i >= a.M) continue;
        for (int c = 0; c < 4; c++) {
            const int j = j0 + tx + 16 * c;
            if (j >= a.N) continue;
            float* out = a.C + i * a.ldc + j;
            *out = a.beta == 0.0f ? a.alpha * acc[r][c] : a.alpha * acc[r][c] + a.beta * *out;
        }
    }
}

// Blocks: (M tiles) x (N tiles); block (bi, bj) computes the tile at (bi kBM, bj kBN).
inline int tiles(int n, int t) { return (n + t - 1) / t; }

// The kernel's schedule on the host: every block, every slice, all threads' loads, then all threads' accumulation.
inline void tiled_gemm_host(const Args& a) {
    static thread_local float acc[kThreads][4][4];
    static thread_local Shared s;
    for (int bi = 0; bi < tiles(a.M, kBM); bi++)
        for (int bj = 0; bj < tiles(a.N, kBN); bj++) {
            const int i0 = bi * kBM, j0 = bj * kBN;
            for (auto& t : acc)
                for (auto& r : t)
                    for (float& v : r) v = 0.0f;
            for (int k0 = 0; k0 < a.K; k0 += kBK) {
                for (int tid = 0; tid < kThreads; tid++) load(a, s, tid, i0, j0, k0);
                for (int tid = 0; tid < kThreads; tid++) accumulate(s, tid, acc[tid]);
            }
            for (int tid = 0; tid < kThreads; tid++) store(a, tid, i0, j0, acc[tid]);
        }
}

}  // namespace of::tiled
