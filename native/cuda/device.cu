// The CUDA device (device/device.h): every kernel of device/ops.h as a grid-stride launch of its body, on one
// non-blocking stream; device memory from cudaMalloc; GEMMs on cuBLAS (loaded at run time) or our tiled SGEMM.
// Compiled with --fmad=false so the bodies round as the CPU does (bit-identical noise). The runtime is linked
// statically (cudart_static): the addon loads on machines without a driver, and cuda_available() says why not.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <string>

#include "cuda/cuda.h"
#include "device/device.h"

namespace of {
namespace {

constexpr int kBlock = 256;

#define OF_CUDA_KERNEL(name, Args)                                                                                    \
    __global__ void name##_kernel(dev::Args a, int64_t n) {                                                           \
        for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) \
            dev::name##_at(a, i);                                                                                     \
    }
OF_DEVICE_KERNELS(OF_CUDA_KERNEL)
#undef OF_CUDA_KERNEL

// Every CUDA failure is ERR_BACKEND (out of memory included), with what failed and what to do.
Status cuda_error(cudaError_t e, const char* what) {
    if (e == cudaSuccess) return {};
    std::string hint = e == cudaErrorMemoryAllocation ? " (out of GPU memory: use a smaller batch or fewer copies)"
                       : e == cudaErrorIllegalAddress || e == cudaErrorLaunchFailure
                           ? " (the GPU context is lost: restart the process; please report this)"
                           : "";
    return {StatusCode::Backend, std::string("CUDA ") + what + ": " + cudaGetErrorString(e) + hint};
}

// The runtime's current device is per host thread (fit runs on its own thread). Every call sets it through here, which
// remembers the thread's last one: a launch then costs no cudaSetDevice. Nothing else in the addon sets it.
Status set_device(int ordinal) {
    thread_local int current = -1;
    if (current == ordinal) return {};
    OF_TRY(cuda_error(cudaSetDevice(ordinal), "cudaSetDevice"));
    current = ordinal;
    return {};
}

class CudaDevice final : public Device {
   public:
    CudaDevice(int ordinal, bool allow_tf32) : ordinal_(ordinal), allow_tf32_(allow_tf32) {}
    ~CudaDevice() override {
        if (!stream_) return;
        (void)set_device(ordinal_);
        cudaStreamSynchronize(stream_);
        blas_.close();  // its handle uses the stream
        cudaStreamDestroy(stream_);
    }

    Status open() {
        OF_TRY(set_device(ordinal_));
        cudaDeviceProp p;
        OF_TRY(cuda_error(cudaGetDeviceProperties(&p, ordinal_), "cudaGetDeviceProperties"));
        sms_ = p.multiProcessorCount;
        tf32_ = allow_tf32_ && p.major >= 8;  // TF32 tensor cores: Ampere and later
        info_.name = "cuda";
        info_.device = std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " +
                       std::to_string(int(p.totalGlobalMem >> 30)) + " GiB)";
        OF_TRY(cuda_error(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate"));
        std::string why;
        if (blas_.open(stream_, &why)) info_.blas = blas_.version();
        else info_.blas = "oneforward (" + why + ")";
        info_.tf32 = tf32_ && blas_.ready();
        return {};
    }

    DeviceInfo info() const override { return info_; }

    Status alloc(size_t bytes, void** p) override {
        OF_TRY(bind());
        const cudaError_t e = cudaMalloc(p, bytes);
        if (e != cudaSuccess) cudaGetLastError();  // not sticky: clear it, or the next launch check would report it
        return cuda_error(e, "cudaMalloc");
    }
    void release(void* p) override {
        if (p) cudaFree(p);
    }
    Status upload(void* dst, const void* src, size_t bytes) override {
        OF_TRY(bind());
        // from pageable memory the source is staged before the call returns, so the caller may reuse it
        return cuda_error(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "upload");
    }
    Status download(void* dst, const void* src, size_t bytes) override {
        OF_TRY(bind());
        OF_TRY(cuda_error(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "download"));
        return cuda_error(cudaStreamSynchronize(stream_), "a kernel");
    }
    Status zero(void* p, size_t bytes) override {
        OF_TRY(bind());
        return cuda_error(cudaMemsetAsync(p, 0, bytes, stream_), "cudaMemset");
    }
    Status sync() override {
        OF_TRY(bind());
        return cuda_error(cudaStreamSynchronize(stream_), "a kernel");
    }

    Status gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
                float beta, float* C, int ldc, bool tf32) override {
        OF_TRY(bind());
        if (blas_.ready()) {
            int s = blas_.gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, tf32 && tf32_);
            if (s != 0) return {StatusCode::Backend, "cublasSgemm failed (status " + std::to_string(s) + ")"};
            return {};
        }
        int e = cuda::sgemm(stream_, M, N, K, alpha, A, ta ? 1 : lda, ta ? lda : 1, B, tb ? 1 : ldb, tb ? ldb : 1, beta,
                            C, ldc);
        return cuda_error(cudaError_t(e), "sgemm launch");
    }

#define OF_CUDA_LAUNCH(name, Args)                              \
    Status name(const dev::Args& a, int64_t n) override {       \
        if (n <= 0) return {};                                  \
        OF_TRY(bind());                                         \
        name##_kernel<<<blocks(n), kBlock, 0, stream_>>>(a, n); \
        return cuda_error(cudaGetLastError(), #name " launch"); \
    }
    OF_DEVICE_KERNELS(OF_CUDA_LAUNCH)
#undef OF_CUDA_LAUNCH

   private:
    Status bind() { return set_device(ordinal_); }
    unsigned blocks(int64_t n) const {
        return unsigned(std::min<int64_t>((n + kBlock - 1) / kBlock, int64_t(sms_) * 32));
    }

    int ordinal_ = 0;
    bool allow_tf32_ = true, tf32_ = false;
    int sms_ = 1;
    cudaStream_t stream_ = nullptr;
    cuda::Cublas blas_;
    DeviceInfo info_;
};

struct Probe {
    bool ok = false;
    int devices = 0;
    std::string reason;
};

const Probe& probe() {
    static Probe p;
    static std::once_flag once;
    std::call_once(once, [] {
        if (const char* e = std::getenv("ONEFORWARD_CUDA"); e && std::string(e) == "0") {
            p.reason = "CUDA turned off by ONEFORWARD_CUDA=0";
            return;
        }
        int n = 0;
        cudaError_t e = cudaGetDeviceCount(&n);
        if (e != cudaSuccess || n == 0) {
            int rt = 0;
            cudaRuntimeGetVersion(&rt);
            const std::string runtime = std::to_string(rt / 1000) + "." + std::to_string(rt % 1000 / 10);
            p.reason =
                "no usable CUDA device: " + (e == cudaErrorInsufficientDriver
                                                 ? "no NVIDIA driver, or one older than this build's CUDA " + runtime
                                             : e != cudaSuccess ? std::string(cudaGetErrorString(e))
                                                                : std::string("no GPU found"));
            return;
        }
        cudaDeviceProp prop;
        if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
            p.reason = "no usable CUDA device: cudaGetDeviceProperties failed";
            return;
        }
        p.ok = true;
        p.devices = n;
        p.reason = "CUDA device " + std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
                   std::to_string(prop.minor) + ")";
    });
    return p;
}

}  // namespace

bool cuda_available(std::string* reason, int* devices) {
    const Probe& p = probe();
    *reason = p.reason;
    *devices = p.devices;
    return p.ok;
}

Status make_cuda_device(int ordinal, bool allow_tf32, std::unique_ptr<Device>* out) {
    const Probe& p = probe();
    if (!p.ok) return {StatusCode::Backend, p.reason};
    OF_CHECK(ordinal >= 0 && ordinal < p.devices, Backend,
             "CUDA device " + std::to_string(ordinal) + " does not exist");
    auto d = std::make_unique<CudaDevice>(ordinal, allow_tf32);
    OF_TRY(d->open());
    *out = std::move(d);
    return {};
}

}  // namespace of
