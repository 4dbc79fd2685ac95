// oneforward_mpi: a small separate addon with the MPI calls data-parallel training needs, built only where an MPI
// is found (CMakeLists.txt), so the main addon never links libmpi. Collectives work on Float32Arrays in place on
// MPI_COMM_WORLD; errors come back as exceptions with code ERR_BACKEND (MPI_ERRORS_RETURN), and abort() ends the
// whole job (every rank) for an error on one of them. Any call after finalize() is an ERR_DISPOSED exception: MPI
// itself aborts the process for it.
#include <mpi.h>
#include <napi.h>

#include <string>

namespace {

Napi::Error coded_error(Napi::Env env, const std::string& what, const char* code) {
    Napi::Error e = Napi::Error::New(env, what);
    e.Set("code", code);
    return e;
}

Napi::Error backend_error(Napi::Env env, const std::string& what, int rc) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    return coded_error(env, what + ": " + std::string(text, size_t(len)), "ERR_BACKEND");
}

void check(Napi::Env env, int rc, const char* what) {
    if (rc != MPI_SUCCESS) throw backend_error(env, what, rc);
}

bool finalized() {
    int done = 0;
    MPI_Finalized(&done);  // callable at any time, before MPI_Init and after MPI_Finalize
    return done != 0;
}

// Every call but finalize() starts here.
void require_live(Napi::Env env) {
    if (finalized())
        throw coded_error(env,
                          "MPI has been finalized in this process: its communicator cannot be used any more, and MPI "
                          "cannot be initialized again",
                          "ERR_DISPOSED");
}

Napi::Float32Array floats(const Napi::CallbackInfo& info, size_t i) {
    if (info.Length() <= i || !info[i].IsTypedArray() ||
        info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        Napi::Error e = Napi::TypeError::New(info.Env(), "expected a Float32Array");
        e.Set("code", "ERR_CONFIG");
        throw e;
    }
    return info[i].As<Napi::Float32Array>();
}

// init() -> { rank, size, library }: MPI_Init_thread once (MPI_THREAD_FUNNELED: only this JS thread calls MPI).
Napi::Value Init(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    require_live(env);
    int ready = 0;
    MPI_Initialized(&ready);
    if (!ready) {
        int provided = 0;
        check(env, MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    }
    int rank = 0, size = 1, len = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    char lib[MPI_MAX_LIBRARY_VERSION_STRING];
    MPI_Get_library_version(lib, &len);
    Napi::Object r = Napi::Object::New(env);
    r.Set("rank", rank);
    r.Set("size", size);
    r.Set("library", std::string(lib));  // up to its NUL (some MPIs count it in len)
    return r;
}

Napi::Value AllreduceSum(const Napi::CallbackInfo& info) {
    require_live(info.Env());
    Napi::Float32Array a = floats(info, 0);
    check(info.Env(), MPI_Allreduce(MPI_IN_PLACE, a.Data(), int(a.ElementLength()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
          "MPI_Allreduce");
    return info.Env().Undefined();
}

// allgather(local) -> Float32Array (size x local length), rank order
Napi::Value Allgather(const Napi::CallbackInfo& info) {
    require_live(info.Env());
    Napi::Float32Array a = floats(info, 0);
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    Napi::Float32Array out = Napi::Float32Array::New(info.Env(), a.ElementLength() * size_t(size));
    check(info.Env(),
          MPI_Allgather(a.Data(), int(a.ElementLength()), MPI_FLOAT, out.Data(), int(a.ElementLength()), MPI_FLOAT,
                        MPI_COMM_WORLD),
          "MPI_Allgather");
    return out;
}

Napi::Value Broadcast(const Napi::CallbackInfo& info) {
    require_live(info.Env());
    Napi::Float32Array a = floats(info, 0);
    const int root = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 0;
    check(info.Env(), MPI_Bcast(a.Data(), int(a.ElementLength()), MPI_FLOAT, root, MPI_COMM_WORLD), "MPI_Bcast");
    return info.Env().Undefined();
}

Napi::Value Barrier(const Napi::CallbackInfo& info) {
    require_live(info.Env());
    check(info.Env(), MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
    return info.Env().Undefined();
}

Napi::Value Abort(const Napi::CallbackInfo& info) {
    require_live(info.Env());
    const int code = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1;
    MPI_Abort(MPI_COMM_WORLD, code);
    return info.Env().Undefined();
}

// Idempotent; a no-op before init().
Napi::Value Finalize(const Napi::CallbackInfo& info) {
    int ready = 0;
    MPI_Initialized(&ready);
    if (ready && !finalized()) check(info.Env(), MPI_Finalize(), "MPI_Finalize");
    return info.Env().Undefined();
}

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
    exports.Set("init", Napi::Function::New(env, Init));
    exports.Set("allreduceSum", Napi::Function::New(env, AllreduceSum));
    exports.Set("allgather", Napi::Function::New(env, Allgather));
    exports.Set("broadcast", Napi::Function::New(env, Broadcast));
    exports.Set("barrier", Napi::Function::New(env, Barrier));
    exports.Set("abort", Napi::Function::New(env, Abort));
    exports.Set("finalize", Napi::Function::New(env, Finalize));
    return exports;
}

}  // namespace

NODE_API_MODULE(oneforward_mpi, InitModule)
