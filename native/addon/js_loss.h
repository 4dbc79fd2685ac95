// A per-row loss computed by a JS function (black-box losses for ULR): builds the arguments (a copy of the
// step's outputs and the targets of each row), calls it, and checks what it returns. Runs on the JS thread.
#pragma once
#include <napi.h>

#include "estimators/estimator.h"

namespace of::addon {

// fn(outputs: Float32Array (R x C), targets: Int32Array (R) | Float32Array (R x C), rows: R) -> R losses.
// A JS exception is stored in *thrown (when empty) and reported as ERR_ABORT so the step stops.
Status call_js_loss(Napi::Env env, const Napi::Function& fn, const float* outputs, const Targets& y, int R, int C,
                    int rep, float* loss, Napi::Reference<Napi::Value>* thrown);

}  // namespace of::addon
