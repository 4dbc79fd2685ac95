// Activations and their derivatives (the device's act_value and act_derivative_times, device/ops_activation.h, in
// loops with the activation fixed per loop), and the fused clean and noisy bias + activation passes over a GEMM
// output.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "core/clones.h"
#include "core/thread_pool.h"
#include "device/ops_activation.h"
#include "kernels/cpu/ops.h"
#include "rng/normal.h"

namespace of {

bool act_differentiable(Act a) { return a != Act::Step && a != Act::Sign && a != Act::Quantize; }

const char* act_name(Act a) {
    switch (a) {
        case Act::Identity: return "identity";
        case Act::Relu: return "relu";
        case Act::LeakyRelu: return "leakyRelu";
        case Act::Tanh: return "tanh";
        case Act::Sigmoid: return "sigmoid";
        case Act::Gelu: return "gelu";
        case Act::Step: return "step";
        case Act::Sign: return "sign";
        case Act::Quantize: return "quantize";
    }
    return "?";
}

bool act_named(const std::string& name, Act* a) {
    for (int k = 0; k <= int(Act::Quantize); k++)
        if (name == act_name(Act(k))) {
            *a = Act(k);
            return true;
        }
    return false;
}

namespace cpu {
namespace {

// Calls body(A) with the activation A as a compile-time constant: inside each case's loop act_value's switch folds
// away, and the branch-free cases vectorize, 16 lanes on AVX-512 machines (clones per ISA; elementwise, so the same
// bits).
template <class Body>
void with_act(Act act, Body&& body) {
#define OF_ACT_CASE(A) \
    case Act::A: return body(std::integral_constant<Act, Act::A>{});
    switch (act) {
        OF_ACT_CASE(Identity)
        OF_ACT_CASE(Relu)
        OF_ACT_CASE(LeakyRelu)
        OF_ACT_CASE(Tanh)
        OF_ACT_CASE(Sigmoid)
        OF_ACT_CASE(Gelu)
        OF_ACT_CASE(Step)
        OF_ACT_CASE(Sign)
        OF_ACT_CASE(Quantize)
    }
#undef OF_ACT_CASE
}

OF_FLAT_CLONES void act_span(float* y, const float* x, int64_t n, Act act, float alpha) {
    if (act == Act::Identity) {
        if (y != x) std::copy(x, x + n, y);
        return;
    }
    with_act(act, [&](auto A) {
        for (int64_t i = 0; i < n; i++) y[i] = dev::act_value(x[i], A, alpha);
    });
}

// y = v + bias + sigma e (v + sigma e without a bias), elementwise.
OF_CLONES void noisy_span(float* y, const float* v, const float* bias, const float* sigma, const float* e, int n) {
    if (bias)
        for (int o = 0; o < n; o++) y[o] = v[o] + bias[o] + sigma[o] * e[o];
    else
        for (int o = 0; o < n; o++) y[o] = v[o] + sigma[o] * e[o];
}

// Splits n rows into tasks of at least `min_rows` rows (fixed by shape only, not by thread count); `cycles`
// estimates the whole job (small jobs run inline).
template <class Fn>
void for_row_chunks(int rows, int min_rows, int64_t cycles, Fn&& fn) {
    int chunk = std::max(min_rows, (rows + 63) / 64);
    int tasks = (rows + chunk - 1) / chunk;
    ThreadPool::instance().parallel_for(
        tasks,
        [&](int t) {
            int r0 = t * chunk;
            fn(r0, std::min(rows, r0 + chunk));
        },
        cycles);
}

// dv = dy phi'(v) from v or a = phi(v); step, sign and quantize give 0 (BP refuses them up front)
OF_FLAT_CLONES void act_backward_span(float* dv, const float* dy, const float* v, const float* a, int64_t n, Act act,
                                      float alpha) {
    if (act == Act::Identity) {
        if (dv != dy) std::copy(dy, dy + n, dv);
        return;
    }
    with_act(act, [&](auto A) {
        for (int64_t i = 0; i < n; i++) dv[i] = dev::act_derivative_times(dy[i], v, a, i, A, alpha);
    });
}

}  // namespace

// Elementwise, so spans of 16K values split over the pool give the same bits for any thread count.
void act_backward(float* dv, const float* dy, const float* v, const float* a, int64_t n, Act act, float alpha) {
    constexpr int64_t kSpan = 16384;
    ThreadPool::instance().parallel_for(
        int((n + kSpan - 1) / kSpan),
        [&](int t) {
            const int64_t i = t * kSpan, len = std::min(kSpan, n - i);
            act_backward_span(dv + i, dy + i, v ? v + i : nullptr, a ? a + i : nullptr, len, act, alpha);
        },
        n * 2);
}

void bias_act_forward(float* a, float* v, const float* bias, int R, int O, Act act, float alpha) {
    for_row_chunks(R, 16, int64_t(R) * O * 2, [&](int r0, int r1) {
        for (int r = r0; r < r1; r++) {
            float* vr = v + int64_t(r) * O;
            if (bias)
                for (int o = 0; o < O; o++) vr[o] += bias[o];
            act_span(a + int64_t(r) * O, vr, O, act, alpha);
        }
    });
}

void noisy_bias_act_forward(float* out, float* E, const float* pre, const float* bias, const float* sigma, int R, int O,
                            int rep, Act act, float alpha, const NoiseSpec& ns) {
    for_row_chunks(R, 8, int64_t(R) * O * 6, [&](int r0, int r1) {
        thread_local std::vector<float> scratch;
        if (!E && scratch.size() < size_t(2 * O)) scratch.resize(size_t(2 * O));
        for (int r = r0; r < r1; r++) {
            uint32_t g = noise_global_row(ns, r);
            bool odd = ns.antithetic && (g & 1);
            float* e = E ? E + int64_t(r) * O : scratch.data() + (g & 1) * O;
            if (odd && r > r0) {
                const float* p = E ? e - O : scratch.data();
                for (int o = 0; o < O; o++) e[o] = -p[o];
            } else {
                noise_row_of(e, O, odd ? g & ~1u : g, ns);
                if (odd)
                    for (int o = 0; o < O; o++) e[o] = -e[o];
            }
            float* y = out + int64_t(r) * O;
            noisy_span(y, pre + int64_t(r / rep) * O, bias, sigma, e, O);
            act_span(y, y, O, act, alpha);
        }
    });
}

}  // namespace cpu
}  // namespace of
