// Argument helpers for the native entry points (better-sqlite3 wording). lib/ validates first with
// friendlier messages; these are the cheap re-checks that keep direct calls from crashing the process.
#pragma once
#include <napi.h>

#include <cmath>
#include <string>

#include "addon/errors.h"

namespace of::addon {

inline Status arg_error(const std::string& what) { return {StatusCode::Config, what}; }

inline Napi::Object require_object(const Napi::Value& v, const char* name) {
    if (!v.IsObject()) throw_status(v.Env(), arg_error(std::string("Expected ") + name + " to be an object"));
    return v.As<Napi::Object>();
}

inline Napi::Float32Array require_f32(const Napi::Value& v, const char* name) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
        throw_status(v.Env(), arg_error(std::string("Expected ") + name + " to be a Float32Array"));
    return v.As<Napi::Float32Array>();
}

inline double require_number(const Napi::Value& v, const char* name) {
    if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue()))
        throw_status(v.Env(), arg_error(std::string("Expected ") + name + " to be a finite number"));
    return v.As<Napi::Number>().DoubleValue();
}

inline int64_t require_int(const Napi::Value& v, const char* name, int64_t lo, int64_t hi) {
    double d = require_number(v, name);
    if (d != std::floor(d) || d < double(lo) || d > double(hi))
        throw_status(v.Env(), arg_error(std::string("Expected ") + name + " to be an integer in [" +
                                        std::to_string(lo) + ", " + std::to_string(hi) + "]"));
    return int64_t(d);
}

inline std::string require_string(const Napi::Value& v, const char* name) {
    if (!v.IsString()) throw_status(v.Env(), arg_error(std::string("Expected ") + name + " to be a string"));
    return v.As<Napi::String>().Utf8Value();
}

// Optional fields of an options object: absent/undefined -> the default.
inline double opt_number(const Napi::Object& o, const char* key, double def) {
    Napi::Value v = o.Get(key);
    return v.IsUndefined() ? def : require_number(v, key);
}
inline bool opt_bool(const Napi::Object& o, const char* key, bool def) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return def;
    if (!v.IsBoolean()) throw_status(o.Env(), arg_error(std::string("Expected ") + key + " to be a boolean"));
    return v.As<Napi::Boolean>().Value();
}

}  // namespace of::addon
