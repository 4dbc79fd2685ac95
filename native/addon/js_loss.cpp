// call_js_loss and the exception-safe call: see js_loss.h. The loss function gets copies, never views of native
// memory, so it may keep or modify its arguments freely.
#include "addon/js_loss.h"

#include <cmath>
#include <string>

namespace of::addon {

void Thrown::set(napi_env env, napi_value v) noexcept {
    if (!IsEmpty()) return;
    try {
        Napi::Object box = Napi::Object::New(env);
        box.Set("value", Napi::Value(env, v));
        box_ = Napi::Persistent(box);
    } catch (...) {  // the environment is going away: nobody will read it
    }
}

Napi::Value Thrown::Value() const { return box_.Value().Get("value"); }

napi_value call_catching(napi_env env, napi_value fn, size_t argc, const napi_value* argv, Thrown* thrown) noexcept {
    napi_value recv = nullptr, result = nullptr;
    if (napi_get_undefined(env, &recv) != napi_ok) return nullptr;
    if (napi_call_function(env, recv, fn, argc, argv, &result) == napi_ok) return result;
    bool pending = false;
    napi_value ex = nullptr;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending &&
        napi_get_and_clear_last_exception(env, &ex) == napi_ok)
        thrown->set(env, ex);
    return nullptr;
}

Status call_js_loss(Napi::Env env, const Napi::Function& fn, const float* outputs, const Targets& y, int R, int C,
                    int rep, float* loss, Thrown* thrown) noexcept {
    auto bad = [&](const std::string& why) {
        return Status{StatusCode::Data, "the loss function must return " + std::to_string(R) +
                                            " finite per-row losses (a Float32Array, Float64Array or array): " + why};
    };
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
                std::copy(y.values + int64_t(r / rep) * C, y.values + int64_t(r / rep + 1) * C,
                          t.Data() + int64_t(r) * C);
            targets = t;
        }
        napi_value argv[] = {out, targets, Napi::Number::New(env, R)};
        napi_value rv = call_catching(env, fn, 3, argv, thrown);
        if (!rv)
            return {StatusCode::Abort,
                    thrown->IsEmpty() ? "the loss function could not run" : "the loss function threw"};
        Napi::Value result(env, rv);
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
                Napi::Value v = a.Get(r);  // a getter may throw: caught below, like a throwing loss
                if (!v.IsNumber()) return bad("element " + std::to_string(r) + " is not a number");
                loss[r] = float(v.As<Napi::Number>().DoubleValue());
            }
        } else {
            return bad("got " + std::string(result.IsUndefined() ? "undefined" : "another value"));
        }
        for (int r = 0; r < R; r++)
            if (!std::isfinite(loss[r])) return bad("row " + std::to_string(r) + " is not finite");
        return {};
    } catch (const Napi::Error& e) {
        thrown->set(env, e.Value());
        return {StatusCode::Abort, "the loss function threw"};
    } catch (...) {
        return {StatusCode::Abort, "the loss function could not run"};
    }
}

}  // namespace of::addon
