// Status -> JS error. Errors are instances of the classes lib/errors.ts hands over at init
// (better-sqlite3's pattern), each with a stable `code`; without them, a plain Error with `code`.
#pragma once
#include <napi.h>

#include "core/status.h"

namespace of::addon {

void set_error_classes(Napi::Env env, Napi::Object classes);
Napi::Error make_error(Napi::Env env, const Status& s);
[[noreturn]] void throw_status(Napi::Env env, const Status& s);
inline void check(Napi::Env env, const Status& s) {
    if (!s.ok()) throw_status(env, s);
}

}  // namespace of::addon

// Every entry point: a C++ exception never crosses into Node as a crash.
#define OF_NAPI_BEGIN try {
#define OF_NAPI_END(env)                                                                          \
    }                                                                                             \
    catch (const Napi::Error&) {                                                                  \
        throw;                                                                                    \
    }                                                                                             \
    catch (const std::bad_alloc&) {                                                               \
        ::of::addon::throw_status(env, {::of::StatusCode::OutOfMemory, "out of memory"});         \
    }                                                                                             \
    catch (const std::exception& e) {                                                             \
        ::of::addon::throw_status(env, {::of::StatusCode::Internal, e.what()});                   \
    }                                                                                             \
    catch (...) {                                                                                 \
        ::of::addon::throw_status(env, {::of::StatusCode::Internal, "unknown native exception"}); \
    }
