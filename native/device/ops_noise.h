// Device kernels (ops.h): the noise. The Philox noisy forward draws 4 values per counter (Box-Muller, or the inverse
// CDF of a logistic or Laplace density) in rng/normal.h's layout, the same bits as cpu::noise_fill; QMC noise shifts
// each copy's Sobol point per (sample, neuron) by a Philox word, and noisy_apply then adds the drawn noise.
#pragma once
#include <cstdint>

#include "device/ops_activation.h"
#include "device/ops_score.h"
#include "kernels/cpu/ops.h"
#include "rng/normal.h"

namespace of::dev {

// Noisy forward of one layer (or, with out = nullptr, only its noise E), one index per (row, Philox counter): out[r, j]
// = act(pre[r / rep, j] + bias[j] + sigma e[r, j]) for the 4 neurons j = 64 b + 16 w + l (w = 0..3) that counter c = 16
// b + l feeds (rng/normal.h's layout); e is also written to E. Row r is global noise row row0 + r; with antithetic
// pairs an odd row takes the negated noise of its even partner. n = R * counters(O).
struct NoisyArgs {
    float* out;
    float* E;  // nullptr: not kept
    const float* pre;
    const float* bias;  // nullptr: none; else bias[j % bias_period] (a conv's bias is per channel)
    int bias_period;
    float sigma;
    int R, O, rep;
    Act act;
    float alpha;
    uint64_t seed;
    uint32_t step, layer, row0;
    int antithetic;
    int density;
    const float* sigmas = nullptr;  // per-channel sigma (O values) instead of sigma
    // Regenerated scores (out == nullptr, ULR with storeNoise false): E gets w[r] s(e) (s / sigma_o with per-channel
    // sigma), score_rows' values, instead of e
    const float* w = nullptr;
    Score score = Score::Exact;
    // Copy-parallel slices (cpu NoiseSpec): local row l = row0 + r is global row (l / slice_local) slice_total +
    // slice_offset + l % slice_local; slice_local 0: rows are global as they are
    uint32_t slice_local = 0, slice_total = 0, slice_offset = 0;
};

OF_HOST_DEVICE int noise_counters(int O) { return (O + 63) / 64 * 16; }

OF_HOST_DEVICE void noisy_forward_at(const NoisyArgs& a, int64_t i) {
    const int cpr = noise_counters(a.O);
    const int r = int(i / cpr), c = int(i % cpr);
    const int j0 = (c >> 4) * 64 + (c & 15);
    if (j0 >= a.O) return;  // a narrow layer's row: this counter feeds no neuron
    const uint32_t l = a.row0 + uint32_t(r);
    const uint32_t g = a.slice_local ? (l / a.slice_local) * a.slice_total + a.slice_offset + l % a.slice_local : l;
    const bool odd = a.antithetic && (g & 1u);
    U32x4 u = philox4x32_10(uint32_t(c), odd ? g & ~1u : g, philox_stream(kStreamNoise, a.layer), a.step,
                            uint32_t(a.seed), uint32_t(a.seed >> 32));
    float z[4];
    if (a.density == 0) {
        box_muller(u.v[0], u.v[1], &z[0], &z[1]);
        box_muller(u.v[2], u.v[3], &z[2], &z[3]);
    } else {
        for (int w = 0; w < 4; w++) {
            float un = uniform_open(u.v[w]);
            z[w] = a.density == 2 ? logistic_from_uniform(un) : laplace_from_uniform(un);
        }
    }
    for (int w = 0; w < 4; w++) {
        const int j = j0 + 16 * w;
        if (j >= a.O) break;
        const float e = odd ? -z[w] : z[w];
        if (a.E && a.w) {  // the weighted score, as score_rows_at forms it
            float s = score_of(e, Density(a.density), a.score);
            if (a.sigmas) s = s / a.sigmas[j];
            a.E[int64_t(r) * a.O + j] = s * a.w[r];
        } else if (a.E) {
            a.E[int64_t(r) * a.O + j] = e;
        }
        if (!a.out) continue;  // the noise alone (recurrent units add it inside their recurrence)
        const float v = a.pre[int64_t(r / a.rep) * a.O + j];
        const float sg = a.sigmas ? a.sigmas[j] : a.sigma;
        const float x = a.bias ? v + a.bias[j % a.bias_period] + sg * e : v + sg * e;
        a.out[int64_t(r) * a.O + j] = act_value(x, a.act, a.alpha);
    }
}

// Quasi-Monte Carlo normal noise (kernels/cpu/noise.cpp qmc_row), one index per value of E (R, O): row g = (sample,
// copy) takes its copy's Sobol point (dims: O x 32 direction numbers), shifted per (sample, neuron) by a Philox word,
// through the inverse normal CDF; an antithetic odd row negates its even partner.
struct QmcArgs {
    float* E;
    const uint32_t* dirs;
    int O;
    uint32_t copies;  // per sample (pairs count once with antithetic)
    uint64_t seed;
    uint32_t step, layer, row0;
    int antithetic;
};
OF_HOST_DEVICE void qmc_noise_at(const QmcArgs& a, int64_t i) {
    const uint32_t g = a.row0 + uint32_t(i / a.O);
    const int j = int(i % a.O);
    const bool odd = a.antithetic && (g & 1u);
    const uint32_t src = odd ? g & ~1u : g;
    const uint32_t per_sample = a.copies * (a.antithetic ? 2u : 1u);
    const uint32_t sample = src / per_sample, k = (src % per_sample) >> (a.antithetic ? 1 : 0);
    const U32x4 shift = philox4x32_10(uint32_t(j / 4), sample, philox_stream(kStreamQmc, a.layer), a.step,
                                      uint32_t(a.seed), uint32_t(a.seed >> 32));
    const uint32_t* v = a.dirs + int64_t(j) * 32;
    uint32_t x = 0;
    for (uint32_t kk = k, b = 0; kk; b++, kk >>= 1)
        if (kk & 1u) x ^= v[b];
    x ^= shift.v[j % 4];
    const float e = float(inverse_normal((double(x >> 8) + 0.5) / 16777216.0));
    a.E[i] = odd ? -e : e;
}
// The noisy forward from noise already in E (QMC): out[r, j] = act(pre[r / rep, j] + bias + sigma e[r, j]), one index
// per value (noisy_forward_at's arithmetic).
OF_HOST_DEVICE void noisy_apply_at(const NoisyArgs& a, int64_t i) {
    const int64_t r = i / a.O;
    const int j = int(i % a.O);
    const float e = a.E[i];
    const float v = a.pre[(r / a.rep) * a.O + j];
    const float sg = a.sigmas ? a.sigmas[j] : a.sigma;
    const float x = a.bias ? v + a.bias[j % a.bias_period] + sg * e : v + sg * e;
    a.out[i] = act_value(x, a.act, a.alpha);
}

#define OF_NOISE_KERNELS(X)     \
    X(noisy_forward, NoisyArgs) \
    X(qmc_noise, QmcArgs)       \
    X(noisy_apply, NoisyArgs)

}  // namespace of::dev
