// Device kernels (ops.h): the activations. act_value and act' (dy phi'(v), from v or a = phi(v)) serve the noisy
// forward, residual block ends and BP; bias_act adds a clean bias and keeps v for BP, act_backward forms dv. The CPU's
// loops (kernels/cpu/activation.cpp) call act_value and act_derivative_times with the activation fixed per loop.
// step, sign and quantize have no derivative: BP refuses them before it gets here; ULR needs only their forward.
#pragma once
#include <cmath>

#include "core/fastmath.h"
#include "core/host_device.h"
#include "kernels/cpu/ops.h"

namespace of::dev {

// std::max and std::min (usable on the device): b when a < b, else a; by reference, which vectorizes better
OF_HOST_DEVICE const float& max_ref(const float& a, const float& b) { return a < b ? b : a; }
OF_HOST_DEVICE const float& min_ref(const float& a, const float& b) { return b < a ? b : a; }

OF_HOST_DEVICE float act_value(float x, Act act, float alpha) {
    switch (act) {
        case Act::Identity: return x;
        case Act::Relu: return x > 0.0f ? x : 0.0f;
        case Act::LeakyRelu: return x > 0.0f ? x : alpha * x;
        case Act::Tanh: return tanh_f32(x);
        case Act::Sigmoid: return sigmoid_f32(x);
        case Act::Gelu: return 0.5f * x * (1.0f + erf_f32(x * 0.70710678118654752f));  // exact erf form, as PyTorch
        case Act::Step: return x > 0.0f ? 1.0f : 0.0f;
        case Act::Sign: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
        case Act::Quantize: {  // alpha = levels L: round(clamp(x, 0, 1) (L - 1)) / (L - 1); NaN and -0 clamp to +0
            const float top = alpha - 1.0f;
            return nearbyintf(min_ref(1.0f, max_ref(0.0f, x)) * top) * (1.0f / top);
        }
    }
    return x;
}

// dy phi'(v) at index i, reading v[i] or a[i] = phi(v[i]), whichever the activation needs (the other may be null)
OF_HOST_DEVICE float act_derivative_times(float dy, const float* v, const float* a, int64_t i, Act act, float alpha) {
    switch (act) {
        case Act::Identity: return dy;
        case Act::Relu: return v[i] > 0.0f ? dy : 0.0f;
        case Act::LeakyRelu: return v[i] > 0.0f ? dy : alpha * dy;
        case Act::Tanh: return dy * (1.0f - a[i] * a[i]);     // 1 - tanh^2
        case Act::Sigmoid: return dy * a[i] * (1.0f - a[i]);  // s (1 - s)
        case Act::Gelu: {                                     // Phi(v) + v phi(v)
            const float x = v[i], cdf = 0.5f * (1.0f + erf_f32(x * 0.70710678118654752f));
            return dy * (cdf + x * 0.39894228040143268f * exp_nonpositive(-0.5f * x * x));
        }
        default: return 0.0f;  // step, sign, quantize
    }
}

// Clean bias + activation, one index per element of v (rows, O): v += bias (v keeps the pre-activation for BP),
// a = act(v). a may alias v.
struct BiasActArgs {
    float* a;
    float* v;
    const float* bias;  // bias[i % O]: O is the row width, or a conv's channels
    int O;
    Act act;
    float alpha;
};
OF_HOST_DEVICE void bias_act_at(const BiasActArgs& a, int64_t i) {
    float x = a.bias ? a.v[i] + a.bias[i % a.O] : a.v[i];
    a.v[i] = x;
    a.a[i] = act_value(x, a.act, a.alpha);
}

// dv = dy phi'(v), one index per element (dv may alias dy).
struct ActBackArgs {
    float* dv;
    const float* dy;
    const float* v;
    const float* a;
    Act act;
    float alpha;
};
OF_HOST_DEVICE void act_backward_at(const ActBackArgs& a, int64_t i) {
    a.dv[i] = act_derivative_times(a.dy[i], a.v, a.a, i, a.act, a.alpha);
}

#define OF_ACTIVATION_KERNELS(X) \
    X(bias_act, BiasActArgs)     \
    X(act_backward, ActBackArgs)

}  // namespace of::dev
