// KernelTable: one function pointer per op, filled by each backend (ggml's backend interface). The model
// and estimators call kernels only through a table, so a CUDA table can slot in beside the CPU one.
// A slot marked (optional) may be nullptr: the CPU kernel runs instead.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cpu/conv.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/optimizer.h"

namespace of {

struct KernelTable {
    const char* name;
    void (*gemm)(float* C, ptrdiff_t rsc, ptrdiff_t csc, const float* A, ptrdiff_t rsa, ptrdiff_t csa, const float* B,
                 ptrdiff_t rsb, ptrdiff_t csb, const float* kscale, int M, int N, int K, float alpha, float beta);
    void (*bias_act_forward)(float* a, float* v, const float* bias, int R, int O, Act act, float alpha);
    void (*act_backward)(float* dv, const float* dy, const float* v, const float* a, int64_t n, Act act, float alpha);
    void (*noise_fill)(float* E, int R, int O, const NoiseSpec& ns);
    void (*noisy_bias_act_forward)(float* out, float* E, const float* pre, const float* bias, const float* sigma, int R,
                                   int O, int rep, Act act, float alpha, const NoiseSpec& ns);
    int64_t (*loss_forward)(float* loss, const float* y, const int32_t* labels, const float* values, int R, int C,
                            int rep, LossKind kind, int groups);
    void (*loss_backward)(float* dy, const float* y, const int32_t* labels, const float* values, int R, int C,
                          LossKind kind, int groups);
    void (*lr_row_weights)(float* w, const float* loss, const float* clean, int B, int K, Baseline baseline,
                           bool antithetic, float scale);
    void (*score_transform)(float* e, int64_t n, Density density, Score score);
    void (*lr_copy_sum)(float* G, const float* w, const float* S, int B, int K, int O);
    void (*lr_bias_reduce)(float* db, const float* w, const float* E, int R, int O, float alpha, bool accumulate);
    void (*col_sum)(float* db, const float* d, int R, int O);
    void (*optimizer_step)(float* params, float* grads, float* m, float* v, int64_t n, const OptimizerConfig& cfg,
                           int64_t t);
    void (*im2row)(float* A, const float* x, int n, const ConvGeom& g);
    void (*row2im)(float* dx, const float* dA, int n, const ConvGeom& g);
    // Direct convolution (kernels/cpu/conv.h): false where the shape or CPU does not suit it, and the caller
    // takes im2row + GEMM.
    bool (*conv_forward)(float* y, const float* x, const float* W, int n, const ConvGeom& g);
    bool (*conv_input_grad)(float* dx, const float* dv, const float* W, int n, const ConvGeom& g);
    bool (*conv_weight_grad)(float* dW, const float* dv, const float* x, const float* s, int n, const ConvGeom& g,
                             float alpha);
    void (*pool_forward)(float* y, const float* x, int n, const ConvGeom& g, PoolKind kind);
    void (*pool_backward)(float* dx, const float* dy, const float* x, int n, const ConvGeom& g, PoolKind kind);
    // Row-major conveniences over gemm. nt: C (M, N) = A (M, K) B^T, B (N, K). tn: C = A^T diag(s) B, A (K, M).
    void gemm_nt(float* C, const float* A, const float* B, int M, int N, int K, float alpha, float beta) const {
        gemm(C, N, 1, A, K, 1, B, 1, K, nullptr, M, N, K, alpha, beta);
    }
    void gemm_nn(float* C, const float* A, const float* B, int M, int N, int K, float alpha, float beta) const {
        gemm(C, N, 1, A, K, 1, B, N, 1, nullptr, M, N, K, alpha, beta);
    }
    void gemm_tn(float* C, const float* A, const float* B, const float* s, int M, int N, int K, float alpha,
                 float beta) const {
        gemm(C, N, 1, A, 1, M, B, N, 1, s, M, N, K, alpha, beta);
    }
};

const KernelTable& cpu_kernels();
// The table of ULR's noisy copies with precision 'bf16': the CPU's, its products (gemm, conv_forward) with bfloat16
// operands and float32 sums (kernels/cpu/bf16.h).
const KernelTable& cpu_kernels_bf16();

struct BackendInfo {
    std::vector<std::string> compiled;  // "cpu" (+ "cuda" when built with it)
    std::string active;                 // what "auto" resolves to
    std::string reason;                 // why, in one line
    int threads;
    std::string simd;  // GEMM micro-kernel ISA
    std::string bf16;  // how bfloat16 products run (kernels/cpu/bf16.h bf16_kernels)
    std::string blas;  // "oneforward" (our own GEMM)
    int cuda_devices = 0;
};
BackendInfo backend_info();

}  // namespace of
