// Buffer: an owning, 64-byte aligned float allocation; the only code in the engine that allocates
// tensor memory. Move-only. Allocation failure is a Status (ERR_OOM), never an exception or abort, and so is
// a large buffer that the system has no memory left for (see available_memory).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>

#include "core/status.h"

namespace of {

// Bytes of memory the system can still give without swapping (Linux: MemAvailable), or SIZE_MAX where unknown.
// Memory is overcommitted: a buffer larger than this is granted, then filled, and the kernel's OOM killer ends
// the process (or another one) instead of the allocation failing.
inline size_t available_memory() {
    size_t kb = 0;
#ifdef __linux__
    if (FILE* f = std::fopen("/proc/meminfo", "r")) {
        char line[128];
        while (std::fgets(line, sizeof line, f))
            if (std::sscanf(line, "MemAvailable: %zu kB", &kb) == 1) break;
        std::fclose(f);
    }
#endif
    return kb ? kb * 1024 : SIZE_MAX;
}

// Bytes held by live Buffers (their 64-byte rounded sizes) and the most held at once since the last
// reset_alloc_peak(): the measured ground truth of step_memory (model/train.cpp). Relaxed atomics: a few
// nanoseconds an allocation, and the peak is exact for allocations made by one thread at a time.
struct AllocStats {
    std::atomic<int64_t> live{0}, peak{0};
};
inline AllocStats& alloc_stats() {
    static AllocStats s;
    return s;
}
inline void reset_alloc_peak() { alloc_stats().peak.store(alloc_stats().live.load()); }

class Buffer {
   public:
    Buffer() = default;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    Buffer(Buffer&& o) noexcept : data_(o.data_), size_(o.size_) { o.data_ = nullptr, o.size_ = 0; }
    Buffer& operator=(Buffer&& o) noexcept {
        if (this != &o) {
            release();
            data_ = o.data_, size_ = o.size_;
            o.data_ = nullptr, o.size_ = 0;
        }
        return *this;
    }
    ~Buffer() { release(); }

    // Ensures room for n floats; contents are zeroed when the buffer grows (and only then). A growth that fails
    // after the check of available memory leaves the buffer empty.
    Status reserve(size_t n) {
        if (n <= size_) return {};
        if (n > SIZE_MAX / sizeof(float) - 64)
            return {StatusCode::OutOfMemory, "cannot allocate " + std::to_string(n) + " floats"};
        const size_t bytes = bytes_of(n);
        // Large ones only (reading /proc costs microseconds), one at a time until filled: two threads could each
        // see the memory the other is about to take as available.
        std::unique_lock<std::mutex> large(large_mutex(), std::defer_lock);
        if (bytes >= (size_t(256) << 20)) {
            large.lock();
            const size_t avail = available_memory();
            if (bytes > avail)
                return {StatusCode::OutOfMemory, "cannot allocate " + std::to_string(bytes) +
                                                     " bytes: the system has " + std::to_string(avail) +
                                                     " bytes available"};
        }
        release();  // first: the contents are not kept, so the old and the new one are never live together
        void* p = std::aligned_alloc(64, bytes);
        if (!p) return {StatusCode::OutOfMemory, "cannot allocate " + std::to_string(bytes) + " bytes"};
        std::memset(p, 0, bytes);
        count(int64_t(bytes));
        data_ = static_cast<float*>(p);
        size_ = n;
        return {};
    }
    void zero() {
        if (data_) std::memset(data_, 0, size_ * sizeof(float));
    }
    float* data() { return data_; }
    const float* data() const { return data_; }
    size_t size() const { return size_; }

    // Frees the memory (size() becomes 0).
    void release() {
        if (data_) count(-int64_t(bytes_of(size_)));
        std::free(data_);
        data_ = nullptr, size_ = 0;
    }
    // Bytes a buffer of n floats holds (what reserve allocates).
    static size_t bytes_of(size_t n) { return ((n * sizeof(float)) + 63) / 64 * 64; }

   private:
    static void count(int64_t bytes) {
        AllocStats& s = alloc_stats();
        const int64_t now = s.live.fetch_add(bytes, std::memory_order_relaxed) + bytes;
        int64_t peak = s.peak.load(std::memory_order_relaxed);
        while (now > peak && !s.peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
        }
    }
    static std::mutex& large_mutex() {
        static std::mutex m;
        return m;
    }
    float* data_ = nullptr;
    size_t size_ = 0;
};

}  // namespace of
