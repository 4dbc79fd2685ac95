// Status -> JS error. Errors are instances of the classes lib/errors.ts hands over at init
// (better-sqlite3's pattern), each with a stable `code`; without them, a plain Error with `code`.
#pragma once
#include <napi.h>

#include <string>

#include "core/status.h"

namespace of::addon {

void set_error_classes(Napi::Env env, Napi::Object classes);
Napi::Error make_error(Napi::Env env, const Status& s);
[[noreturn]] void throw_status(Napi::Env env, const Status& s);
inline void check(Napi::Env env, const Status& s) {
    if (!s.ok()) throw_status(env, s);
}

// Inside a catch block: the exception in flight as a Status, out of memory ERR_OOM and any other ERR_INTERNAL (`during`
// ends their messages), for the native threads to report.
Status caught_status(const std::string& during = "");
// Inside a catch block: the exception in flight as the JS error to throw (a Napi::Error as it is, else
// caught_status()'s). Every entry point ends in it, so a C++ exception never crosses into Node as a crash.
[[noreturn]] void rethrow_as_js(Napi::Env env);

// An exported function run under rethrow_as_js.
template <Napi::Value (*Fn)(const Napi::CallbackInfo&)>
Napi::Value guarded(const Napi::CallbackInfo& info) {
    try {
        return Fn(info);
    } catch (...) {
        rethrow_as_js(info.Env());
    }
}

}  // namespace of::addon
