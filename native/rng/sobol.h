// Sobol points for quasi-Monte Carlo noise (ULR's `qmc` option). Dimension 0 is van der Corput; dimension d >= 1
// uses the d-th primitive polynomial over GF(2) (in order of degree, found by search) with initial direction
// numbers m_i drawn odd and < 2^i from a fixed generator -- a valid Sobol construction (Bratley & Fox), though
// not Joe & Kuo's optimized table. Points are randomized by a digital shift (XOR) drawn from Philox per
// (sample, layer, step, neuron), so each point is exactly uniform and the estimator stays unbiased.
#pragma once
#include <cstdint>

namespace of {

class SobolTable {
   public:
    static constexpr int kMaxDims = 1 << 16;  // the most noise values per sample (all layers) QMC supports
    // Makes dimensions [0, dims) available (thread-safe; dims <= kMaxDims). Existing ones never move.
    static void ensure(int dims);
    // The 32 direction numbers of dimension d (< the largest `dims` ensured so far); lock-free to read.
    static const uint32_t* dim(int d);
    // Direction number i of every dimension, contiguous over d (by_bit(i)[d] == dim(d)[i] for ensured d): a row of
    // consecutive dimensions xors in whole registers. Null where the table's 8 MiB could not be had.
    static const uint32_t* by_bit(int i);
    // x(k, d): the k-th point's coordinate from dimension d's direction numbers v.
    static inline uint32_t point(const uint32_t* v, uint32_t k) {
        uint32_t x = 0;
        for (int i = 0; k; i++, k >>= 1)
            if (k & 1) x ^= v[i];
        return x;
    }
};

}  // namespace of
