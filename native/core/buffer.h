// Buffer: an owning, 64-byte aligned float allocation; the only code in the engine that allocates
// tensor memory. Move-only. Allocation failure is a Status (ERR_OOM), never an exception or abort.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "core/status.h"

namespace of {

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
        size_t bytes = ((n * sizeof(float)) + 63) / 64 * 64;
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
    float* data_ = nullptr;
    size_t size_ = 0;
};

}  // namespace of
