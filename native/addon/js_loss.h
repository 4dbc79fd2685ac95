// JS callbacks from native code: a per-row loss computed by a JS function (black-box losses for ULR), and
// the exception-safe call under it. Runs on the JS thread. Whatever a callback throws (an Error, a string,
// undefined) is kept as is, so the call it stops rejects or throws with that very value.
#pragma once
#include <napi.h>

#include "estimators/estimator.h"

namespace of::addon {

// The first value a JS callback threw. Boxed in an object: N-API 8 references only objects.
class Thrown {
   public:
    bool IsEmpty() const { return box_.IsEmpty(); }
    void set(napi_env env, napi_value v) noexcept;  // keeps the first; never throws (teardown included)
    Napi::Value Value() const;                      // the value as thrown

   private:
    Napi::ObjectReference box_;
};

// fn(argv...) with `this` undefined. A JS exception goes to *thrown and the result is nullptr; nullptr without an
// exception when JS cannot run (environment teardown). Never throws.
napi_value call_catching(napi_env env, napi_value fn, size_t argc, const napi_value* argv, Thrown* thrown) noexcept;

// fn(outputs: Float32Array (R x C), targets: Int32Array (R) | Float32Array (R x C), rows: R) -> R losses.
// A JS exception is stored in *thrown and reported as ERR_ABORT so the step stops. Never throws.
Status call_js_loss(Napi::Env env, const Napi::Function& fn, const float* outputs, const Targets& y, int R, int C,
                    int rep, float* loss, Thrown* thrown) noexcept;

}  // namespace of::addon
