// Device: the interface of an accelerator backend (ggml's backend interface, cut to what training needs): memory,
// copies, a row-major GEMM, and the kernels of device/ops.h. Two implementations: the CUDA device (native/cuda/,
// built only where nvcc is found) and the host simulation (sim_device.cpp), which runs the same kernel bodies on
// the CPU so that the device trainer is tested on every machine. All work goes to one in-order queue; download()
// and sync() wait for it. Every call returns a Status: a CUDA error (out of memory included) is ERR_BACKEND, never a
// crash.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"
#include "device/ops.h"

namespace of {

struct DeviceInfo {
    std::string name;    // "cuda" or "sim"
    std::string device;  // e.g. "NVIDIA H200 (sm_90, 139 GiB)"
    std::string blas;    // "cublas 12.x" or "oneforward"
    bool tf32 = false;   // TF32 tensor cores in use for the forward GEMMs
};

class Device {
   public:
    virtual ~Device() = default;
    virtual DeviceInfo info() const = 0;

    // Memory. alloc: an error when the device is full. release(nullptr) is a no-op.
    virtual Status alloc(size_t bytes, void** p) = 0;
    virtual void release(void* p) = 0;
    virtual Status upload(void* dst, const void* src, size_t bytes) = 0;  // host -> device (src may be reused at once)
    virtual Status download(void* dst, const void* src, size_t bytes) = 0;  // device -> host, waits for the queue
    virtual Status zero(void* p, size_t bytes) = 0;
    virtual Status sync() = 0;

    // Row-major C (M, N) = alpha op(A) op(B) + beta C; op(A) (M, K) is A (M, K) with leading dimension lda, or A^T of
    // A (K, M) when ta; likewise op(B) (K, N). tf32: the GEMM may use TF32 tensor cores (a forward pass, not a
    // gradient reduction, asks for it).
    virtual Status gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                        int ldb, float beta, float* C, int ldc, bool tf32) = 0;

#define OF_DEVICE_DECLARE(name, Args) virtual Status name(const dev::Args& a, int64_t n) = 0;
    OF_DEVICE_KERNELS(OF_DEVICE_DECLARE)
#undef OF_DEVICE_DECLARE
};

// A growable device allocation owned by one Device (released with it). Contents are undefined after growth.
class DeviceBuffer {
   public:
    DeviceBuffer() = default;
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    DeviceBuffer(DeviceBuffer&& o) noexcept : dev_(o.dev_), ptr_(o.ptr_), size_(o.size_) {
        o.dev_ = nullptr, o.ptr_ = nullptr, o.size_ = 0;
    }
    ~DeviceBuffer() { reset(); }
    Status reserve(Device* d, size_t bytes) {
        if (bytes <= size_ && d == dev_) return {};
        if (dev_) OF_TRY(dev_->sync());  // launches already queued may still read the old allocation
        reset();
        void* p = nullptr;
        OF_TRY(d->alloc(bytes ? bytes : 1, &p));
        dev_ = d, ptr_ = p, size_ = bytes;
        return {};
    }
    // reserve, then bytes from the host
    Status assign(Device* d, const void* src, size_t bytes) {
        OF_TRY(reserve(d, bytes));
        return d->upload(ptr_, src, bytes);
    }
    void reset() {
        if (dev_) dev_->release(ptr_);
        dev_ = nullptr, ptr_ = nullptr, size_ = 0;
    }
    template <class T>
    T* as() const {
        return static_cast<T*>(ptr_);
    }
    float* f() const { return as<float>(); }
    size_t size() const { return size_; }

   private:
    Device* dev_ = nullptr;
    void* ptr_ = nullptr;
    size_t size_ = 0;
};

// The host simulation (always built).
std::unique_ptr<Device> make_sim_device();

// The CUDA device on `ordinal`, or ERR_BACKEND with the reason (not compiled in, no driver, no device, ...).
Status make_cuda_device(int ordinal, bool allow_tf32, std::unique_ptr<Device>* out);
// Whether CUDA is compiled in and usable here; *reason says why not (or names the device).
bool cuda_available(std::string* reason, int* devices);

}  // namespace of
