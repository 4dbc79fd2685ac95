// Overflow-checked size arithmetic shared by every entry point that allocates from user-given sizes.
// A product that does not fit is reported as ERR_SHAPE before any allocation happens.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/status.h"

namespace of {

// Largest element count we accept for one buffer (2^34 floats = 64 GiB): far above any real model,
// far below size_t overflow, so later products of two such counts in 64 bits cannot wrap either.
constexpr uint64_t kMaxElements = uint64_t(1) << 34;

inline Status checked_mul(uint64_t a, uint64_t b, uint64_t* out, const char* what) {
    if (a != 0 && b > kMaxElements / a)
        return {StatusCode::Shape,
                std::string(what) + " is too large (" + std::to_string(a) + " x " + std::to_string(b) + " elements)"};
    *out = a * b;
    return {};
}

inline Status check_positive(int64_t v, const char* what) {
    if (v <= 0) return {StatusCode::Shape, std::string(what) + " must be positive, got " + std::to_string(v)};
    return {};
}

}  // namespace of
