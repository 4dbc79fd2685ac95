// The JS error classes registered at init, and the Status -> instance conversion.
#include "addon/errors.h"

namespace of::addon {
namespace {
struct ErrorClasses {
    Napi::ObjectReference classes;  // { ERR_SHAPE: ShapeError, ... }
};
}  // namespace

void set_error_classes(Napi::Env env, Napi::Object classes) {
    auto* data = env.GetInstanceData<ErrorClasses>();
    if (!data) {
        data = new ErrorClasses();
        env.SetInstanceData(data);
    }
    data->classes = Napi::Persistent(classes);
}

Napi::Error make_error(Napi::Env env, const Status& s) {
    const char* code = status_code_name(s.code);
    auto* data = env.GetInstanceData<ErrorClasses>();
    if (data && !data->classes.IsEmpty()) {
        Napi::Value cls = data->classes.Value().Get(code);
        if (cls.IsFunction()) {
            Napi::Object err = cls.As<Napi::Function>().New({Napi::String::New(env, s.message)});
            err.Set("code", Napi::String::New(env, code));
            return Napi::Error(env, err);
        }
    }
    Napi::Error err = Napi::Error::New(env, s.message);
    err.Set("code", Napi::String::New(env, code));
    return err;
}

void throw_status(Napi::Env env, const Status& s) { throw make_error(env, s); }

Status caught_status(const std::string& during) {
    try {
        throw;
    } catch (const std::bad_alloc&) {
        return {StatusCode::OutOfMemory, "out of memory" + during};
    } catch (const std::exception& e) {
        return {StatusCode::Internal, e.what()};
    } catch (...) {
        return {StatusCode::Internal, "unknown native exception" + during};
    }
}

void rethrow_as_js(Napi::Env env) {
    try {
        throw;
    } catch (const Napi::Error&) {
        throw;
    } catch (...) {
        throw_status(env, caught_status());
    }
}

}  // namespace of::addon
