// cuBLAS loaded at run time (docs/gpu.md: the build machines have no cuBLAS, and the addon must load without it).
// The prototypes below are cuBLAS v2's public ABI (cublas_api.h): handles and streams are opaque pointers, enums
// are ints. Only what the device trainer needs: create/destroy, stream, math mode (TF32), version, SGEMM.
#include <dlfcn.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "cuda/cuda.h"

namespace of::cuda {
namespace {

using Create = int (*)(void** handle);
using Destroy = int (*)(void* handle);
using SetStream = int (*)(void* handle, void* stream);
using SetMathMode = int (*)(void* handle, int mode);
using GetVersion = int (*)(void* handle, int* version);
using Sgemm = int (*)(void* handle, int transa, int transb, int m, int n, int k, const float* alpha, const float* A,
                      int lda, const float* B, int ldb, const float* beta, float* C, int ldc);

constexpr int kOpN = 0, kOpT = 1;                       // cublasOperation_t
constexpr int kDefaultMath = 0, kTf32TensorOpMath = 3;  // cublasMath_t

struct Api {
    Create create = nullptr;
    Destroy destroy = nullptr;
    SetStream set_stream = nullptr;
    SetMathMode set_math = nullptr;
    GetVersion version = nullptr;
    Sgemm sgemm = nullptr;
};
Api api;

std::vector<std::string> candidates() {
    std::vector<std::string> out;
    if (const char* p = std::getenv("ONEFORWARD_CUBLAS_PATH"); p && *p) out.push_back(p);
    const char* names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"};
    for (const char* n : names) out.push_back(n);
    std::vector<std::string> dirs;
    if (const char* h = std::getenv("CUDA_HOME"); h && *h) dirs.push_back(std::string(h) + "/lib64/");
    dirs.push_back("/usr/local/cuda/lib64/");
    for (const std::string& d : dirs)
        for (const char* n : names) out.push_back(d + n);
    return out;
}

}  // namespace

bool Cublas::open(void* stream, std::string* why) {
    if (const char* e = std::getenv("ONEFORWARD_CUBLAS"); e && std::string(e) == "0") {
        *why = "cuBLAS disabled by ONEFORWARD_CUBLAS=0";
        return false;
    }
    for (const std::string& c : candidates())
        if ((lib_ = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL))) break;
    if (!lib_) {
        *why = "libcublas not found (set ONEFORWARD_CUBLAS_PATH to use one)";
        return false;
    }
    api.create = reinterpret_cast<Create>(dlsym(lib_, "cublasCreate_v2"));
    api.destroy = reinterpret_cast<Destroy>(dlsym(lib_, "cublasDestroy_v2"));
    api.set_stream = reinterpret_cast<SetStream>(dlsym(lib_, "cublasSetStream_v2"));
    api.set_math = reinterpret_cast<SetMathMode>(dlsym(lib_, "cublasSetMathMode"));
    api.version = reinterpret_cast<GetVersion>(dlsym(lib_, "cublasGetVersion_v2"));
    api.sgemm = reinterpret_cast<Sgemm>(dlsym(lib_, "cublasSgemm_v2"));
    if (!api.create || !api.destroy || !api.set_stream || !api.set_math || !api.sgemm) {
        *why = "libcublas lacks the v2 entry points";
        return false;
    }
    void* h = nullptr;
    if (int s = api.create(&h); s != 0 || !h) {
        *why = "cublasCreate failed (status " + std::to_string(s) + ")";
        return false;
    }
    if (int s = api.set_stream(h, stream); s != 0) {
        api.destroy(h);
        *why = "cublasSetStream failed (status " + std::to_string(s) + ")";
        return false;
    }
    handle_ = h;
    int v = 0;
    if (api.version && api.version(h, &v) == 0)
        version_ =
            "cublas " + std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
    else version_ = "cublas";
    return true;
}

void Cublas::close() {
    if (handle_) api.destroy(handle_);
    handle_ = nullptr;
    // lib_ stays loaded: other handles may use it, and unloading a CUDA library at exit is fragile.
}

int Cublas::gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
                 float beta, float* C, int ldc, bool tf32) {
    const int mode = tf32 ? kTf32TensorOpMath : kDefaultMath;
    if (mode != math_) {
        if (int s = api.set_math(handle_, mode); s != 0) return s;
        math_ = mode;
    }
    return api.sgemm(handle_, tb ? kOpT : kOpN, ta ? kOpT : kOpN, N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc);
}

}  // namespace of::cuda
