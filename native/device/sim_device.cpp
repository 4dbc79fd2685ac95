// The host simulation of a device: host memory, our CPU GEMM, and every kernel body of device/ops.h run over its
// index range in fixed chunks on the thread pool. It exists to test the device trainer (trainer.cpp) and the
// kernels' indexing and math where there is no GPU; `backend: 'sim'` selects it (tests only).
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/thread_pool.h"
#include "device/device.h"
#include "kernels/cpu/gemm.h"

namespace of {
namespace {

class SimDevice final : public Device {
   public:
    DeviceInfo info() const override { return {"sim", "host simulation of a device", "oneforward", false}; }

    Status alloc(size_t bytes, void** p) override {
        *p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
        if (!*p) return {StatusCode::OutOfMemory, "sim device: cannot allocate " + std::to_string(bytes) + " bytes"};
        std::memset(*p, 0xff, bytes);  // NaN-filled: a kernel reading memory nobody wrote shows up in the results
        return {};
    }
    void release(void* p) override { std::free(p); }
    Status upload(void* dst, const void* src, size_t bytes) override { return copy(dst, src, bytes); }
    Status download(void* dst, const void* src, size_t bytes) override { return copy(dst, src, bytes); }
    Status zero(void* p, size_t bytes) override {
        std::memset(p, 0, bytes);
        return {};
    }
    Status sync() override { return {}; }

    Status gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
                float beta, float* C, int ldc, bool) override {
        cpu::gemm(C, ldc, 1, A, ta ? 1 : lda, ta ? lda : 1, B, tb ? 1 : ldb, tb ? ldb : 1, nullptr, M, N, K, alpha,
                  beta);
        return {};
    }

#define OF_SIM_KERNEL(name, Args)                                \
    Status name(const dev::Args& a, int64_t n) override {        \
        return run(n, [&](int64_t i) { dev::name##_at(a, i); }); \
    }
    OF_DEVICE_KERNELS(OF_SIM_KERNEL)
#undef OF_SIM_KERNEL

   private:
    static Status copy(void* dst, const void* src, size_t bytes) {
        if (bytes) std::memmove(dst, src, bytes);
        return {};
    }
    // Indices [0, n) in chunks of a size fixed by n alone, the chunks in parallel; each index writes only its own
    // outputs. ONEFORWARD_SIM_ORDER=reverse runs every chunk from its end (test/56): a body that reads what another
    // index of its launch writes then gives other results, as it would on a GPU, whose order is arbitrary.
    template <class Fn>
    static Status run(int64_t n, const Fn& fn) {
        if (n <= 0) return {};
        static const bool reverse = [] {
            const char* e = std::getenv("ONEFORWARD_SIM_ORDER");
            return e && std::strcmp(e, "reverse") == 0;
        }();
        const int64_t chunk = std::max<int64_t>(64, (n + 255) / 256);
        const int tasks = int((n + chunk - 1) / chunk);
        ThreadPool::instance().parallel_for(
            tasks,
            [&](int t) {
                const int64_t i0 = t * chunk, i1 = std::min(n, (t + 1) * chunk);
                if (reverse)
                    for (int64_t i = i1 - 1; i >= i0; i--) fn(i);
                else
                    for (int64_t i = i0; i < i1; i++) fn(i);
            },
            n * 16);
        return {};
    }
};

}  // namespace

std::unique_ptr<Device> make_sim_device() { return std::make_unique<SimDevice>(); }

#ifndef ONEFORWARD_WITH_CUDA
constexpr const char* kNoCuda =
    "the CUDA backend is not compiled into this build (no nvcc at install, or ONEFORWARD_CUDA=0)";
Status make_cuda_device(int, bool, std::unique_ptr<Device>*) { return {StatusCode::Backend, kNoCuda}; }
bool cuda_available(std::string* reason, int* devices) {
    *reason = kNoCuda;
    *devices = 0;
    return false;
}
#endif

}  // namespace of
