// Device kernels (ops.h): the activations. act_value and act' (dy phi'(v), from v or a = phi(v)) serve the noisy
// forward, residual block ends and BP; bias_act adds a clean bias and keeps v for BP, act_backward forms dv.
#pragma once
#include <cmath>

#include "core/fastmath.h"
#include "core/host_device.h"
#include "kernels/cpu/ops.h"

namespace of::dev {

OF_HOST_DEVICE float act_value(float x, Act act, float alpha) {
    switch (act) {
        case Act::Identity: return x;
        case Act::Relu: return x > 0.0f ? x : 0.0f;
        case Act::LeakyRelu: return x > 0.0f ? x : alpha * x;
        case Act::Tanh: return tanh_f32(x);
        case Act::Sigmoid: return sigmoid_f32(x);
        case Act::Gelu: return 0.5f * x * (1.0f + erf_f32(x * 0.70710678118654752f));
        case Act::Step: return x > 0.0f ? 1.0f : 0.0f;
        case Act::Sign: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
        case Act::Quantize: {
            const float top = alpha - 1.0f;
            return nearbyintf(fminf(1.0f, fmaxf(0.0f, x)) * top) * (1.0f / top);
        }
    }
    return x;
}

OF_HOST_DEVICE float act_derivative_times(float dy, float v, float a, Act act, float alpha) {
    switch (act) {
        case Act::Identity: return dy;
        case Act::Relu: return v > 0.0f ? dy : 0.0f;
        case Act::LeakyRelu: return v > 0.0f ? dy : alpha * dy;
        case Act::Tanh: return dy * (1.0f - a * a);
        case Act::Sigmoid: return dy * a * (1.0f - a);
        case Act::Gelu: {
            float cdf = 0.5f * (1.0f + erf_f32(v * 0.70710678118654752f));
            return dy * (cdf + v * 0.39894228040143268f * exp_nonpositive(-0.5f * v * v));
        }
        default: return 0.0f;  // step, sign, quantize: BP refuses them before any launch
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
    a.dv[i] = act_derivative_times(a.dy[i], a.v[i], a.a[i], a.act, a.alpha);
}

#define OF_ACTIVATION_KERNELS(X) \
    X(bias_act, BiasActArgs)     \
    X(act_backward, ActBackArgs)

}  // namespace of::dev
