// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11), header-only.
// A pure function of (key, counter): the noise for (seed, step, layer, row, neuron) is computed where it
// is needed, in any order, on any thread or device, and is always the same bits. OF_HOST_DEVICE lets the
// CUDA backend include this header unchanged.
#pragma once
#include <cstdint>

#include "core/host_device.h"

namespace of {

struct U32x4 {
    uint32_t v[4];
};

constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;

OF_HOST_DEVICE void philox_round(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0, uint32_t k1) {
    uint64_t p0 = uint64_t(kPhiloxM0) * c0;
    uint64_t p1 = uint64_t(kPhiloxM1) * c2;
    uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
    uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
}

// counter {c0..c3}, key {k0, k1} -> 4 independent uniform 32-bit words.
OF_HOST_DEVICE U32x4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
    for (int i = 0; i < 10; i++) {
        philox_round(c0, c1, c2, c3, k0, k1);
        if (i < 9) k0 += kPhiloxW0, k1 += kPhiloxW1;
    }
    return {{c0, c1, c2, c3}};
}

// Counter layout used project-wide (PyTorch's Philox offset idea, made explicit):
//   c0 = element group (4 values per call), c1 = row, c2 = stream | (layer << 8), c3 = step;  key = seed.
enum Stream : uint32_t { kStreamNoise = 1, kStreamInit = 2, kStreamShuffle = 3, kStreamQmc = 4, kStreamMask = 5 };
OF_HOST_DEVICE uint32_t philox_stream(Stream s, uint32_t layer) { return uint32_t(s) | (layer << 8); }

}  // namespace of
