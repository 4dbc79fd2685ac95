// Buffer: an owning, 64-byte aligned float allocation; the only code in the engine that allocates
// tensor memory. Move-only. Allocation failure is a Status (ERR_OOM), never an exception or abort, and so is
// a large buffer that the system has no memory left for (see available_memory).
#pragma once
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

class Buffer {
   public:
    Buffer() = default;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    Buffer(Buffer&& o) noexcept : data_(o.data_), size_(o.size_) { o.data_ = nullptr, o.size_ = 0; }
    Buffer& operator=(Buffer&& o) noexcept {
        if (this != &o) {
            std::free(data_);
            data_ = o.data_, size_ = o.size_;
            o.data_ = nullptr, o.size_ = 0;
        }
        return *this;
    }
    ~Buffer() { std::free(data_); }

    // Ensures room for n floats; contents are zeroed when the buffer grows (and only then).
    Status reserve(size_t n) {
        if (n <= size_) return {};
        if (n > SIZE_MAX / sizeof(float) - 64) return {StatusCode::OutOfMemory, "cannot allocate " + std::to_string(n) + " floats"};
        size_t bytes = ((n * sizeof(float)) + 63) / 64 * 64;
        // Large ones only (reading /proc costs microseconds), one at a time until filled: two threads could each
        // see the memory the other is about to take as available.
        std::unique_lock<std::mutex> large(large_mutex(), std::defer_lock);
        if (bytes >= (size_t(256) << 20)) {
            large.lock();
            const size_t avail = available_memory();
            if (bytes > avail)
                return {StatusCode::OutOfMemory, "cannot allocate " + std::to_string(bytes) + " bytes: the system has " +
                                                     std::to_string(avail) + " bytes available"};
        }
        void* p = std::aligned_alloc(64, bytes);
        if (!p) return {StatusCode::OutOfMemory, "cannot allocate " + std::to_string(bytes) + " bytes"};
        std::memset(p, 0, bytes);
        std::free(data_);
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

   private:
    static std::mutex& large_mutex() {
        static std::mutex m;
        return m;
    }
    float* data_ = nullptr;
    size_t size_ = 0;
};

}  // namespace of
