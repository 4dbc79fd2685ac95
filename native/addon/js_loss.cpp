// call_js_loss: see js_loss.h. The loss function gets copies, never views of native memory, so it may keep
// or modify its arguments freely.
#include "addon/js_loss.h"

#include <cmath>
#include <string>

namespace of::addon {

Status call_js_loss(Napi::Env env, const Napi::Function& fn, const float* outputs, const Targets& y, int R, int C,
                    int rep, float* loss, Napi::Reference<Napi::Value>* thrown) {
    Napi::Value result;
    try {
        Napi::Float32Array out = Napi::Float32Array::New(env, size_t(R) * C);
        std::copy(outputs, outputs + int64_t(R) * C, out.Data());
        Napi::Value targets;
        if (y.labels) {
            Napi::Int32Array t = Napi::Int32Array::New(env, size_t(R));
            for (int r = 0; r < R; r++) t[size_t(r)] = y.labels[r / rep];
            targets = t;
        } else {
            Napi::Float32Array t = Napi::Float32Array::New(env, size_t(R) * C);
            for (int r = 0; r < R; r++)
                std::copy(y.values + int64_t(r / rep) * C, y.values + int64_t(r / rep + 1) * C, t.Data() + int64_t(r) * C);
            targets = t;
        }
        result = fn.Call({out, targets, Napi::Number::New(env, R)});
    } catch (const Napi::Error& e) {
        if (thrown->IsEmpty()) *thrown = Napi::Reference<Napi::Value>::New(e.Value(), 1);
        return {StatusCode::Abort, "the loss function threw"};
    }
    auto bad = [&](const std::string& why) {
        return Status{StatusCode::Data, "the loss function must return " + std::to_string(R) +
                                            " finite per-row losses (a Float32Array, Float64Array or array): " + why};
    };
    if (result.IsTypedArray()) {
        Napi::TypedArray ta = result.As<Napi::TypedArray>();
        if (ta.ElementLength() != size_t(R)) return bad("got length " + std::to_string(ta.ElementLength()));
        if (ta.TypedArrayType() == napi_float32_array) {
            const float* v = result.As<Napi::Float32Array>().Data();
            std::copy(v, v + R, loss);
        } else if (ta.TypedArrayType() == napi_float64_array) {
            const double* v = result.As<Napi::Float64Array>().Data();
            for (int r = 0; r < R; r++) loss[r] = float(v[r]);
        } else {
            return bad("got another typed array");
        }
    } else if (result.IsArray()) {
        Napi::Array a = result.As<Napi::Array>();
        if (a.Length() != uint32_t(R)) return bad("got length " + std::to_string(a.Length()));
        for (uint32_t r = 0; r < a.Length(); r++) {
            Napi::Value v = a.Get(r);
            if (!v.IsNumber()) return bad("element " + std::to_string(r) + " is not a number");
            loss[r] = float(v.As<Napi::Number>().DoubleValue());
        }
    } else {
        return bad("got " + std::string(result.IsUndefined() ? "undefined" : "another value"));
    }
    for (int r = 0; r < R; r++)
        if (!std::isfinite(loss[r])) return bad("row " + std::to_string(r) + " is not finite");
    return {};
}

}  // namespace of::addon
