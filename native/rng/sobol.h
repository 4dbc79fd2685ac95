// Sobol points for quasi-Monte Carlo noise (ULR's `qmc` option). Dimension 0 is van der Corput; dimension d >= 1
// uses the d-th primitive polynomial over GF(2) (in order of degree, found by search) with initial direction
// numbers m_i drawn odd and < 2^i from a fixed generator -- a valid Sobol construction (Bratley & Fox), though
// not Joe & Kuo's optimized table. Points are randomized by a digital shift (XOR) drawn from Philox per
// (sample, layer, step, neuron), so each point is exactly uniform and the estimator stays unbiased.
#pragma once
#include <cstdint>
#include <mutex>
#include <vector>

namespace of {

class SobolTable {
   public:
    // Direction numbers V[d * 32 + i] for dimensions [0, dims); grows on demand, thread-safe.
    static const uint32_t* directions(int dims);
    // x(k, d): the k-th point's d-th coordinate as 32 bits (k < 2^32).
    static inline uint32_t point(const uint32_t* V, uint32_t k, int d) {
        uint32_t x = 0;
        const uint32_t* v = V + size_t(d) * 32;
        for (int i = 0; k; i++, k >>= 1)
            if (k & 1) x ^= v[i];
        return x;
    }
};

}  // namespace of
