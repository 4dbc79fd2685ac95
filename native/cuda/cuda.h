// Internal interface of the CUDA backend's files: our tiled SGEMM (gemm.cu) and cuBLAS loaded at run time
// (cublas.cpp). Only native/cuda/ includes it; everything else sees device/device.h.
#pragma once
#include <cstdint>
#include <string>

namespace of::cuda {

// Row-major C (M, N) = alpha op(A) op(B) + beta C with op(A)(i, k) = A[i rsa + k csa] and op(B)(k, j) =
// B[k rsb + j csb]; C's leading dimension ldc. beta == 0 never reads C. Returns the launch's cudaError_t as int.
int sgemm(void* stream, int M, int N, int K, float alpha, const float* A, int64_t rsa, int64_t csa, const float* B,
          int64_t rsb, int64_t csb, float beta, float* C, int64_t ldc);

// cuBLAS through dlopen with our own prototypes (the build machines have nvcc but no cuBLAS). One handle per
// Cublas object; all calls on `stream`.
class Cublas {
   public:
    // Loads libcublas (ONEFORWARD_CUBLAS_PATH, else libcublas.so.13/.12/.11/.so on the loader's path, else
    // $CUDA_HOME/lib64 and /usr/local/cuda/lib64) and makes a handle. ONEFORWARD_CUBLAS=0: never. false + why.
    bool open(void* stream, std::string* why);
    void close();  // destroys the handle (before its stream goes)
    ~Cublas() { close(); }
    bool ready() const { return handle_ != nullptr; }
    const std::string& version() const { return version_; }
    // Row-major GEMM of device/device.h on cuBLAS (column-major underneath: C^T = op(B)^T op(A)^T). Returns the
    // cublasStatus_t (0 = success).
    int gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
             float beta, float* C, int ldc, bool tf32);

   private:
    void* lib_ = nullptr;
    void* handle_ = nullptr;
    int math_ = -1;  // the math mode set on the handle
    std::string version_;
};

}  // namespace of::cuda
