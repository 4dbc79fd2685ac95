// The LR score of one noise value, s(e) = -d log p(e) / de (normal e, logistic tanh(e / 2), Laplace sign(e)), or the
// sign-compressed score sign(e) / E|e| (E|e|: normal sqrt(2 / pi), logistic 2 ln 2, Laplace 1, so that to first order
// in sigma E[l sign(e)] / (sigma E|e|) is the gradient, exactly so for a quadratic loss). One definition for the host
// (ulr.cpp's learned sigma, the CPU's score_transform) and the device kernels.
#pragma once
#include "core/fastmath.h"
#include "core/host_device.h"
#include "kernels/cpu/ops.h"

namespace of {

OF_HOST_DEVICE float score_of(float e, Density density, Score score) {
    if (score == Score::Sign) {
        const float c = density == Density::Normal     ? 1.2533141373155003f
                        : density == Density::Logistic ? 0.7213475204444817f
                                                       : 1.0f;
        return e > 0.0f ? c : (e < 0.0f ? -c : 0.0f);
    }
    if (density == Density::Logistic) return tanh_f32(0.5f * e);
    if (density == Density::Laplace) return e > 0.0f ? 1.0f : (e < 0.0f ? -1.0f : 0.0f);
    return e;
}

}  // namespace of
