// Argument helpers for the native entry points (better-sqlite3 wording). lib/ validates first with
// friendlier messages; these are the cheap re-checks that keep direct calls from crashing the process. And the few
// builders of the plain JS values that the entry points return.
#pragma once
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

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
inline int64_t opt_int(const Napi::Object& o, const char* key, int64_t def, int64_t lo, int64_t hi) {
    Napi::Value v = o.Get(key);
    return v.IsUndefined() ? def : require_int(v, key, lo, hi);
}
inline std::string opt_string(const Napi::Object& o, const char* key, const char* def) {
    Napi::Value v = o.Get(key);
    return v.IsUndefined() ? def : require_string(v, key);
}
inline bool opt_bool(const Napi::Object& o, const char* key, bool def) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return def;
    if (!v.IsBoolean()) throw_status(o.Env(), arg_error(std::string("Expected ") + key + " to be a boolean"));
    return v.As<Napi::Boolean>().Value();
}

// The value a name stands for in `table`; another name is ERR_CONFIG "unknown <what> '<name>'".
template <class T>
T named(Napi::Env env, const std::string& name, std::initializer_list<std::pair<const char*, T>> table,
        const char* what) {
    for (const auto& [n, value] : table)
        if (name == n) return value;
    throw_status(env, arg_error("unknown " + std::string(what) + " '" + name + "'"));
}

// Plain JS values out: an array of v's elements, a copy of n floats, number fields set in the order given.
template <class T>
Napi::Array js_array(Napi::Env env, const std::vector<T>& v) {
    Napi::Array a = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); i++) a.Set(uint32_t(i), v[i]);
    return a;
}
inline Napi::Float32Array float32_copy(Napi::Env env, const float* x, size_t n) {
    Napi::Float32Array a = Napi::Float32Array::New(env, n);
    std::copy(x, x + n, a.Data());
    return a;
}
inline Napi::Object set_numbers(Napi::Object o, std::initializer_list<std::pair<const char*, double>> fields) {
    for (const auto& [key, value] : fields) o.Set(key, value);
    return o;
}
inline Napi::Object number_object(Napi::Env env, std::initializer_list<std::pair<const char*, double>> fields) {
    return set_numbers(Napi::Object::New(env), fields);
}

}  // namespace of::addon
