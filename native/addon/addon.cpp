// Module init and exports only (sharp's sharp.cc): the NativeModel class, describeLayers, backend info, thread
// control, the error-class registration, and the raw kernels the tests drive against their naive references.
#include <napi.h>
#ifndef _WIN32
#include <dlfcn.h>
#endif

#include "addon/args.h"
#include "addon/model_wrap.h"
#include "core/fastmath.h"
#include "core/thread_pool.h"
#include "core/thread_scratch.h"
#include "device/device.h"
#include "device/tiled_gemm.h"
#include "kernels/cpu/amx.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/gemm.h"
#include "kernels/kernels.h"
#include "rng/normal.h"
#include "rng/sobol.h"

namespace of::addon {
namespace {

Napi::Value BackendInfoJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    BackendInfo b = backend_info();
    Napi::Object o = Napi::Object::New(env);
    o.Set("compiled", js_array(env, b.compiled));
    o.Set("active", b.active);
    o.Set("reason", b.reason);
    o.Set("threads", b.threads);
    o.Set("simd", b.simd);
    o.Set("bf16", b.bf16);
    o.Set("blas", b.blas);
    o.Set("cudaDevices", b.cuda_devices);
    return o;
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int n = int(require_int(info[0], "threads", 0, 256));
    ThreadPool::instance().set_threads(n);
    return Napi::Number::New(env, ThreadPool::instance().threads());
}

// allocStats(reset?) -> { live, peak }: bytes held by native buffers now and at most since the last reset. reset
// first frees every thread's scratch, then starts the peak from what is live: tests measure a step's whole need.
Napi::Value AllocStatsJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() > 0 && info[0].ToBoolean()) {
        release_thread_scratch();
        reset_alloc_peak();
    }
    return number_object(env,
                         {{"live", double(alloc_stats().live.load())}, {"peak", double(alloc_stats().peak.load())}});
}

Napi::Value SetErrorClasses(const Napi::CallbackInfo& info) {
    set_error_classes(info.Env(), require_object(info[0], "classes"));
    return info.Env().Undefined();
}

// gemm(C, A, B, M, N, K, transA, transB, alpha, beta, kscale?, naive?) on row-major arrays: kernel tests.
// gemmBf16(..., kscale?, way): the bfloat16 GEMM (kernels/cpu/bf16.h), way 'emulated', 'instruction' (where the CPU has
// it, else emulated) or 'amx' (ERR_CONFIG where the tiles are not usable); true / false: instruction / emulated.
// (C, A, B, M, N, K, transA, transB, alpha, beta) from info[at]: a GEMM hook's arguments, lengths checked.
struct GemmArgs {
    Napi::Float32Array C, A, B;
    int M, N, K;
    bool ta, tb;
    float alpha, beta;
};
GemmArgs gemm_args(const Napi::CallbackInfo& info, int at, int min_mn, const std::string& hook) {
    GemmArgs g{require_f32(info[at], "C"), require_f32(info[at + 1], "A"), require_f32(info[at + 2], "B")};
    g.M = int(require_int(info[at + 3], "M", min_mn, 1 << 20)),
    g.N = int(require_int(info[at + 4], "N", min_mn, 1 << 20));
    g.K = int(require_int(info[at + 5], "K", 0, 1 << 20));
    g.ta = info[at + 6].ToBoolean(), g.tb = info[at + 7].ToBoolean();
    g.alpha = float(require_number(info[at + 8], "alpha")), g.beta = float(require_number(info[at + 9], "beta"));
    if (int64_t(g.C.ElementLength()) != int64_t(g.M) * g.N || int64_t(g.A.ElementLength()) != int64_t(g.M) * g.K ||
        int64_t(g.B.ElementLength()) != int64_t(g.K) * g.N)
        throw_status(info.Env(), {StatusCode::Shape, hook + ": array lengths do not match M, N, K"});
    return g;
}

// gemm's and gemmBf16's run: fn on the row-major arrays, with the kscale of info[10] when one is given.
template <class GemmFn>
void run_gemm(const Napi::CallbackInfo& info, const GemmFn& fn) {
    GemmArgs g = gemm_args(info, 0, 0, "gemm");
    const float* s = nullptr;
    if (info[10].IsTypedArray()) {
        Napi::Float32Array sv = require_f32(info[10], "kscale");
        if (int64_t(sv.ElementLength()) != g.K)
            throw_status(info.Env(), {StatusCode::Shape, "kscale must have K values"});
        s = sv.Data();
    }
    const int M = g.M, N = g.N, K = g.K;
    fn(g.C.Data(), N, 1, g.A.Data(), g.ta ? 1 : K, g.ta ? M : 1, g.B.Data(), g.tb ? 1 : N, g.tb ? K : 1, s, M, N, K,
       g.alpha, g.beta);
}

Napi::Value GemmJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    run_gemm(info, info[11].ToBoolean() ? cpu::gemm_naive : cpu::gemm);
    return env.Undefined();
}

// The way of a bf16 kernel hook by name: 'emulated', 'instruction' (where the CPU has it, else emulated) or 'amx'
// (ERR_CONFIG where the tiles are not usable).
cpu::Bf16Way bf16_way_named(Napi::Env env, const std::string& name, const std::string& hook) {
    if (name != "emulated" && name != "instruction" && name != "amx")
        throw_status(env, {StatusCode::Config, hook + ": way must be 'emulated', 'instruction' or 'amx'"});
    if (name == "amx" && !cpu::amx_usable())
        throw_status(env, {StatusCode::Config, hook + ": the AMX tiles are not usable here"});
    return name == "amx"                                       ? cpu::Bf16Way::Amx
           : name == "instruction" && cpu::bf16_instructions() ? cpu::Bf16Way::Instruction
                                                               : cpu::Bf16Way::Emulated;
}

Napi::Value GemmBf16Js(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string name = info[11].IsString()    ? info[11].As<Napi::String>().Utf8Value()
                             : info[11].ToBoolean() ? "instruction"
                                                    : "emulated";
    const cpu::Bf16Way way = bf16_way_named(env, name, "gemmBf16");
    run_gemm(info, [way](auto... a) { cpu::gemm_bf16_as(way, a...); });
    return env.Undefined();
}

// convForward(y, x, W, n, geom, way) -> whether the direct convolution ran (else the shape takes im2row + GEMM): the
// conv forward (kernels/cpu/conv.h) of n channels-last images, geom = [H, W, C, Ho, Wo, Co, kh, kw, sh, sw, ph, pw,
// dh, dw], in float32 (way 'float32') or with bfloat16 operands (bf16.h) taken a way as gemmBf16's.
Napi::Value ConvForwardJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Float32Array y = require_f32(info[0], "y"), x = require_f32(info[1], "x"), W = require_f32(info[2], "W");
    const int n = int(require_int(info[3], "n", 0, 1 << 20));
    if (!info[4].IsArray() || info[4].As<Napi::Array>().Length() != 14)
        throw_status(env, {StatusCode::Config, "convForward: geom must be an array of 14 integers"});
    Napi::Array ga = info[4].As<Napi::Array>();
    ConvGeom g;
    int* const fields[14] = {&g.H,  &g.W,  &g.C,  &g.Ho, &g.Wo, &g.Co, &g.kh,
                             &g.kw, &g.sh, &g.sw, &g.ph, &g.pw, &g.dh, &g.dw};
    for (uint32_t i = 0; i < 14; i++)
        *fields[i] = int(require_int(ga.Get(i), "geom", i == 10 || i == 11 ? 0 : 1, 4096));
    // the kernels size their scratch and read W by Ho, Wo and kh kw C: the output extent floor((H + 2p - d (k - 1) -
    // 1) / s) + 1 a side, and a patch that is an int
    auto span = [](int H, int p, int k, int d) { return int64_t(H) + 2 * p - int64_t(d) * (k - 1) - 1; };
    const int64_t span_h = span(g.H, g.ph, g.kh, g.dh), span_w = span(g.W, g.pw, g.kw, g.dw);
    if (span_h < 0 || span_w < 0 || g.Ho != span_h / g.sh + 1 || g.Wo != span_w / g.sw + 1)
        throw_status(env, {StatusCode::Shape, "convForward: Ho, Wo do not match H, W and the kernel"});
    if (int64_t(g.kh) * g.kw * g.C >= (int64_t(1) << 31))
        throw_status(env, {StatusCode::Shape, "convForward: kh kw C is too large"});
    if (int64_t(x.ElementLength()) != n * g.in_size() || int64_t(W.ElementLength()) != int64_t(g.Co) * g.patch() ||
        int64_t(y.ElementLength()) != n * g.positions() * g.Co)
        throw_status(env, {StatusCode::Shape, "convForward: array lengths do not match n and geom"});
    const std::string w = info[5].IsString() ? info[5].As<Napi::String>().Utf8Value() : "";
    if (w == "float32") return Napi::Boolean::New(env, cpu::conv_forward(y.Data(), x.Data(), W.Data(), n, g));
    const cpu::Bf16Way way = bf16_way_named(env, w, "convForward");
    return Napi::Boolean::New(env, cpu::conv_forward_bf16_as(way, y.Data(), x.Data(), W.Data(), n, g));
}

// The arguments the noise hooks share, from info[at]: rows and cols (at least `min` each), and the spec's seed, step,
// layer, row0 and antithetic.
NoiseSpec noise_args(const Napi::CallbackInfo& info, int at, int min, const std::string& hook, int* R, int* O) {
    *R = int(require_int(info[at], "rows", min, 1 << 24)), *O = int(require_int(info[at + 1], "cols", min, 1 << 24));
    if (int64_t(*R) * *O > (int64_t(1) << 28))
        throw_status(info.Env(), {StatusCode::Shape, hook + ": too many values"});
    return NoiseSpec{uint64_t(require_int(info[at + 2], "seed", 0, int64_t(1) << 53)),
                     uint32_t(require_int(info[at + 3], "step", 0, 0xffffffffll)),
                     uint32_t(require_int(info[at + 4], "layer", 0, 0xffffff)),
                     uint32_t(require_int(info[at + 5], "row0", 0, 0xffffffffll)), info[at + 6].ToBoolean()};
}

// The oracles' rows, as noise_fill lays them out: row(e, g) writes global row g; an odd row of antithetic pairs is its
// even partner negated.
template <class Row>
void naive_rows(float* out, int R, int O, const NoiseSpec& ns, Row row) {
    for (int r = 0; r < R; r++) {
        uint32_t g = ns.row0 + uint32_t(r);
        bool odd = ns.antithetic && (g & 1);
        float* e = out + int64_t(r) * O;
        row(e, odd ? g & ~1u : g);
        if (odd)
            for (int o = 0; o < O; o++) e[o] = -e[o];
    }
}

// noise(rows, cols, seed, step, layer, row0, antithetic, naive?, density?, into?) -> Float32Array: the engine's noise
// (or the scalar noise_at() oracle when naive), for RNG tests. density: 0 normal, 1 Laplace, 2 logistic. into: a
// Float32Array of rows x cols to fill instead of a new one (the generator's rate without an allocation per call).
Napi::Value NoiseJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int R = 0, O = 0;
    NoiseSpec ns = noise_args(info, 0, 0, "noise", &R, &O);
    if (!info[8].IsUndefined()) ns.density = Density(require_int(info[8], "density", 0, 2));
    Napi::Float32Array out;
    if (!info[9].IsUndefined()) {
        if (!info[9].IsTypedArray() || info[9].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
            throw_status(env, {StatusCode::Config, "noise: into must be a Float32Array"});
        out = info[9].As<Napi::Float32Array>();
        if (out.ElementLength() != size_t(R) * O)
            throw_status(env, {StatusCode::Shape, "noise: into is not rows x cols"});
    } else {
        out = Napi::Float32Array::New(env, size_t(R) * O);
    }
    if (!info[7].ToBoolean()) cpu_kernels().noise_fill(out.Data(), R, O, ns);
    else
        naive_rows(out.Data(), R, O, ns, [&](float* e, uint32_t g) {
            cpu::noise_row_naive(e, O, g, ns.layer, ns.step, ns.seed, ns.density);
        });
    return out;
}

// qmcNoise(rows, cols, seed, step, layer, row0, antithetic, copies, dim, naive?) -> Float32Array: the engine's QMC
// normals (copies Sobol points per sample, the unit's first Sobol dimension dim), or qmc_row_naive()'s when naive.
Napi::Value QmcNoiseJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int R = 0, O = 0;
    NoiseSpec ns = noise_args(info, 0, 0, "qmcNoise", &R, &O);
    ns.qmc_copies = uint32_t(require_int(info[7], "copies", 1, 1 << 20));
    ns.qmc_dim = uint32_t(require_int(info[8], "dim", 0, SobolTable::kMaxDims));
    if (int64_t(ns.qmc_dim) + O > SobolTable::kMaxDims)
        throw_status(env, {StatusCode::Shape, "qmcNoise: dim + cols exceeds the Sobol dimensions"});
    Napi::Float32Array out = Napi::Float32Array::New(env, size_t(R) * O);
    if (!info[9].ToBoolean()) cpu_kernels().noise_fill(out.Data(), R, O, ns);
    else naive_rows(out.Data(), R, O, ns, [&](float* e, uint32_t g) { cpu::qmc_row_naive(e, O, g, ns); });
    return out;
}

// A fresh device for the kernel tests: 'sim' (the host simulation) or 'cuda' (ERR_BACKEND where there is none).
std::unique_ptr<Device> test_device(Napi::Env env, const Napi::Value& v) {
    std::string name = require_string(v, "device");
    std::unique_ptr<Device> d;
    if (name == "sim") d = make_sim_device();
    else if (name == "cuda") check(env, make_cuda_device(0, false, &d));
    else throw_status(env, {StatusCode::Config, "device must be 'sim' or 'cuda'"});
    return d;
}

// Host array <-> device buffer, for the kernel tests.
DeviceBuffer to_device(Napi::Env env, Device* d, const float* x, size_t n) {
    DeviceBuffer b;
    check(env, x ? b.assign(d, x, n * sizeof(float)) : b.reserve(d, n * sizeof(float)));
    if (!x) check(env, d->zero(b.f(), n * sizeof(float)));
    return b;
}

// deviceNoise(device, rows, cols, seed, step, layer, row0, antithetic, density) -> Float32Array: the noise the device's
// fused noisy forward draws (pre-activation 0, no bias, sigma 1), to compare bit for bit with noise().
Napi::Value DeviceNoiseJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::unique_ptr<Device> d = test_device(env, info[0]);
    int R = 0, O = 0;
    const NoiseSpec ns = noise_args(info, 1, 1, "deviceNoise", &R, &O);
    const int density = int(require_int(info[8], "density", 0, 2));
    const size_t n = size_t(R) * O;
    DeviceBuffer pre = to_device(env, d.get(), nullptr, n), out = to_device(env, d.get(), nullptr, n),
                 E = to_device(env, d.get(), nullptr, n);
    dev::NoisyArgs a{out.f(), E.f(),         pre.f(), nullptr, O,       1.0f,     R,       O,
                     1,       Act::Identity, 0.0f,    ns.seed, ns.step, ns.layer, ns.row0, ns.antithetic ? 1 : 0,
                     density};
    check(env, d->noisy_forward(a, int64_t(R) * dev::noise_counters(O)));
    Napi::Float32Array r = Napi::Float32Array::New(env, n);
    check(env, d->download(r.Data(), E.f(), n * sizeof(float)));
    return r;
}

// deviceGemm(device, C, A, B, M, N, K, transA, transB, alpha, beta, tf32) on row-major arrays: C is overwritten with
// the device's result. device 'tiled': the host run of our CUDA SGEMM's tile code (device/tiled_gemm.h).
Napi::Value DeviceGemmJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const bool tiled = info[0].IsString() && info[0].As<Napi::String>().Utf8Value() == "tiled";
    std::unique_ptr<Device> d = tiled ? nullptr : test_device(env, info[0]);
    GemmArgs g = gemm_args(info, 1, 1, "deviceGemm");
    const bool ta = g.ta, tb = g.tb;
    const int M = g.M, N = g.N, K = g.K, lda = ta ? M : K, ldb = tb ? K : N;
    if (tiled) {
        tiled::tiled_gemm_host({M, N, K, g.alpha, g.beta, g.A.Data(), ta ? 1 : lda, ta ? lda : 1, g.B.Data(),
                                tb ? 1 : ldb, tb ? ldb : 1, g.C.Data(), N});
        return env.Undefined();
    }
    DeviceBuffer dc = to_device(env, d.get(), g.C.Data(), g.C.ElementLength()),
                 da = to_device(env, d.get(), g.A.Data(), g.A.ElementLength()),
                 db = to_device(env, d.get(), g.B.Data(), g.B.ElementLength());
    check(env, d->gemm(ta, tb, M, N, K, g.alpha, da.f(), lda, db.f(), ldb, g.beta, dc.f(), N, info[11].ToBoolean()));
    check(env, d->download(g.C.Data(), dc.f(), g.C.ElementLength() * sizeof(float)));
    return env.Undefined();
}

// activation(x, name, device?) -> Float32Array: act(x) by the CPU engine (the bias + activation pass, one row of
// x.length values), or by a device's bias_act kernel ('sim' or 'cuda'); name 'erf' or 'exp' (for x <= 0): the
// functions of core/fastmath.h themselves. For kernel tests.
Napi::Value ActivationJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Float32Array x = require_f32(info[0], "x");
    const std::string name = require_string(info[1], "name");
    if (name == "erf" || name == "exp") {
        Napi::Float32Array y = Napi::Float32Array::New(env, x.ElementLength());
        for (size_t i = 0; i < x.ElementLength(); i++) y[i] = name == "erf" ? erf_f32(x[i]) : exp_nonpositive(x[i]);
        return y;
    }
    Act act = Act::Identity;
    if (!act_named(name, &act)) throw_status(env, {StatusCode::Config, "activation: unknown name " + name});
    const float alpha = act == Act::Quantize ? 4.0f : 0.01f;  // quantize: 4 levels; leakyRelu: slope 0.01
    const size_t n = x.ElementLength();
    if (n == 0 || n > (size_t(1) << 28)) throw_status(env, {StatusCode::Shape, "activation: 1 to 2^28 values"});
    Napi::Float32Array y = Napi::Float32Array::New(env, n);
    std::vector<float> v(x.Data(), x.Data() + n);
    if (info[2].IsUndefined()) {
        cpu_kernels().bias_act_forward(y.Data(), v.data(), nullptr, 1, int(n), act, alpha);
        return y;
    }
    std::unique_ptr<Device> d = test_device(env, info[2]);
    DeviceBuffer dv = to_device(env, d.get(), v.data(), n), da = to_device(env, d.get(), nullptr, n);
    check(env, d->bias_act({da.f(), dv.f(), nullptr, int(n), act, alpha}, int64_t(n)));
    check(env, d->download(y.Data(), da.f(), n * sizeof(float)));
    return y;
}

// philox(c0, c1, c2, c3, k0, k1) -> [4 x uint32]: the raw generator, for the Random123 known-answer test.
Napi::Value PhiloxJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t v[6];
    for (int i = 0; i < 6; i++) v[i] = uint32_t(require_int(info[i], "word", 0, 0xffffffffll));
    U32x4 r = philox4x32_10(v[0], v[1], v[2], v[3], v[4], v[5]);
    Napi::Uint32Array out = Napi::Uint32Array::New(env, 4);
    for (int i = 0; i < 4; i++) out[i] = r.v[i];
    return out;
}

}  // namespace
}  // namespace of::addon

static Napi::Object InitOneForward(Napi::Env env, Napi::Object exports) {
    using namespace of::addon;
#ifndef _WIN32
    // Pinned in memory: Node unloads an addon with the last worker thread that loaded it, but the threads this
    // library starts (the process-wide pool, a fit's thread) may still run or be starting its code then.
    Dl_info self;
    if (dladdr(reinterpret_cast<void*>(&InitOneForward), &self) && self.dli_fname != nullptr)
        dlopen(self.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
#endif
    exports.Set("NativeModel", ModelWrap::Init(env));
    exports.Set("describeLayers", Napi::Function::New<guarded<DescribeLayersJs>>(env));
    exports.Set("backendInfo", Napi::Function::New<guarded<BackendInfoJs>>(env));
    exports.Set("setThreads", Napi::Function::New<guarded<SetThreads>>(env));
    exports.Set("allocStats", Napi::Function::New<guarded<AllocStatsJs>>(env));
    exports.Set("setErrorClasses", Napi::Function::New<guarded<SetErrorClasses>>(env));
    exports.Set("gemm", Napi::Function::New<guarded<GemmJs>>(env));
    exports.Set("gemmBf16", Napi::Function::New<guarded<GemmBf16Js>>(env));
    exports.Set("convForward", Napi::Function::New<guarded<ConvForwardJs>>(env));
    exports.Set("noise", Napi::Function::New<guarded<NoiseJs>>(env));
    exports.Set("qmcNoise", Napi::Function::New<guarded<QmcNoiseJs>>(env));
    exports.Set("philox", Napi::Function::New<guarded<PhiloxJs>>(env));
    exports.Set("activation", Napi::Function::New<guarded<ActivationJs>>(env));
    exports.Set("deviceNoise", Napi::Function::New<guarded<DeviceNoiseJs>>(env));
    exports.Set("deviceGemm", Napi::Function::New<guarded<DeviceGemmJs>>(env));
    return exports;
}

NODE_API_MODULE(oneforward, InitOneForward)
