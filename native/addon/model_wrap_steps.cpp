// ModelWrap methods that estimate gradients and take steps: gradients(), trainStep(), applyGradients() and
// inputGradients(), and the halves that copy-parallel and seed-replay (SPSA, ES) training exchange between ranks.
#include "addon/args.h"
#include "addon/js_loss.h"
#include "addon/model_wrap.h"
#include "model/distributed.h"

namespace of::addon {

namespace {
// The (x, y, rows[, estimator]) head shared by gradients(), trainStep() and inputGradients(): a checked estimator
// (read from argument 3 when `from_arg`, else BP) and one batch. Every argument that can run JS (a getter) is read
// before the data pointers are taken, and the caller reads no object after it.
struct Batch {
    EstimatorConfig e;
    DataRef d;
};
Batch parse_batch(Napi::Env env, const Napi::CallbackInfo& info, const Model& m, bool from_arg = true) {
    Batch b;
    if (from_arg) b.e = parse_estimator(env, info[3]);
    b.d = parse_data(env, m, info[0], info[1], info[2]);
    if (b.d.rows > (int64_t(1) << 30)) throw_status(env, {StatusCode::Shape, "batch too large"});
    check(env, validate_estimator(m, b.e));
    return b;
}
}  // namespace

// gradients(x, y, rows, estimator, step, lossFn?) -> { grads: Float32Array (slab layout), loss }
Napi::Value ModelWrap::Gradients(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = model(env, Use::Mutate);
    auto [e, d] = parse_batch(env, info, m);
    uint32_t step = info[4].IsUndefined() ? m.step : uint32_t(require_int(info[4], "step", 0, 0xffffffffll));
    StepStats st;
    LossHook hook;
    Thrown thrown;
    Napi::Function fn;  // outlives the hook, which captures it by reference
    OwnedData owned;    // a JS loss runs JS mid-step: the step reads copies, not the caller's arrays
    if (info[5].IsFunction()) {
        own_data(env, m, info[0], info[1], info[2], &owned);
        d = owned.ref;
        fn = info[5].As<Napi::Function>();
        hook = [&](const float* out, const Targets& t, int R, int C, int rep, float* loss) {
            return call_js_loss(env, fn, out, t, R, C, rep, loss, &thrown);
        };
        check(env, validate_estimator(m, e, &hook));
    }
    Status s = placed_gradients(m, d.x, d.y, int(d.rows), e, step, &st, hook ? &hook : nullptr);
    if (!thrown.IsEmpty()) throw Napi::Error(env, thrown.Value());
    check(env, s);
    if (!std::isfinite(st.loss))
        throw_status(env,
                     {StatusCode::Numeric, "non-finite loss for this batch (seed " + std::to_string(m.seed) + ")"});
    for (int64_t i = 0; i < m.n_params; i++)
        if (!std::isfinite(m.grads.data()[i]))
            throw_status(env, {StatusCode::Numeric, "non-finite gradient at parameter index " + std::to_string(i)});
    Napi::Object r = Napi::Object::New(env);
    r.Set("grads", float32_copy(env, m.grads.data(), size_t(m.n_params)));
    r.Set("loss", st.loss);
    return r;
}

// trainStep(x, y, rows, estimator, optimizer) -> { loss }
Napi::Value ModelWrap::TrainStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = model(env, Use::Mutate);
    OptimizerConfig o = parse_optimizer(env, info[4]);  // before the data pointers: its getters may run JS
    auto [e, d] = parse_batch(env, info, m);
    StepStats st;
    check(env, placed_train_step(m, d.x, d.y, int(d.rows), e, o, &st));
    return number_object(env, {{"loss", st.loss}});
}

namespace {

// A Float32Array argument of exactly `n` finite values (ERR_SHAPE / ERR_NUMERIC otherwise).
const float* finite_floats(Napi::Env env, const Napi::Value& v, int64_t n, const std::string& what) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
        throw_status(env, arg_error(what + " must be a Float32Array"));
    Napi::Float32Array a = v.As<Napi::Float32Array>();
    if (int64_t(a.ElementLength()) != n)
        throw_status(env, {StatusCode::Shape, what + " has " + std::to_string(a.ElementLength()) +
                                                  " values, expected " + std::to_string(n)});
    for (int64_t i = 0; i < n; i++)
        if (!std::isfinite(a.Data()[i]))
            throw_status(env, {StatusCode::Numeric, "non-finite value in " + what + " at index " + std::to_string(i)});
    return a.Data();
}

void require_seed_replay(Napi::Env env, const Model& m, const EstimatorConfig& e) {
    if (e.kind != EstimatorConfig::Kind::Spsa && e.kind != EstimatorConfig::Kind::Es)
        throw_status(env, {StatusCode::Config, "seed replay needs spsa() or es()"});
    check(env, validate_estimator(m, e));
}

}  // namespace

// applyGradients(grads: Float32Array (parameterCount), optimizer, rows): the optimizer update with these gradients
// (data-parallel training: the all-reduced estimate), as trainStep applies its own.
Napi::Value ModelWrap::ApplyGradients(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = model(env, Use::Mutate);
    OptimizerConfig o = parse_optimizer(env, info[1]);  // before the gradient pointer: its getters may run JS
    const float* g = finite_floats(env, info[0], m.n_params, "gradients");
    const int rows = int(require_int(info[2], "rows", 1, 1 << 30));
    std::copy(g, g + m.n_params, m.grads.data());
    check(env, apply_update(m, o, rows));
    return env.Undefined();
}

namespace {

// The copies [k0, k1) of K that a copy-parallel call names (arguments 4 and 5); model/distributed.h checks the rest.
std::pair<int, int> copy_range(Napi::Env env, const Napi::CallbackInfo& info, const EstimatorConfig& e) {
    if (e.kind != EstimatorConfig::Kind::Ulr)
        throw_status(env, {StatusCode::Config, "copy-parallel training needs ulr()"});
    const int k0 = int(require_int(info[4], "k0", 0, e.ulr.copies - 2));
    return {k0, int(require_int(info[5], "k1", k0 + 2, e.ulr.copies))};
}

}  // namespace

// copyLosses(x, y, rows, estimator (ulr, K copies), k0, k1) -> Float32Array (rows x K): the losses of copies
// [k0, k1) of every sample (forward only), zeros elsewhere. Summed over ranks: every copy's loss.
Napi::Value ModelWrap::CopyLosses(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = model(env, Use::Mutate);
    auto [e, d] = parse_batch(env, info, m);
    const auto [k0, k1] = copy_range(env, info, e);
    Napi::Float32Array out = Napi::Float32Array::New(env, size_t(d.rows) * size_t(e.ulr.copies));  // zeros
    StepStats st;
    check(env, copy_slice_losses(m, d.x, d.y, int(d.rows), e, k0, k1, out.Data(), &st));
    return out;
}

// copyGradients(x, y, rows, estimator, k0, k1, losses (rows x K, every copy)) -> Float32Array (parameterCount): this
// rank's share of the estimate -- its copies, with row weights (and the leave-one-out baseline) from all K losses.
// Summed over ranks: the single-process estimate.
Napi::Value ModelWrap::CopyGradients(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = model(env, Use::Mutate);
    auto [e, d] = parse_batch(env, info, m);
    const auto [k0, k1] = copy_range(env, info, e);
    const float* all = finite_floats(env, info[6], d.rows * e.ulr.copies, "losses");
    check(env, copy_slice_gradients(m, d.x, d.y, int(d.rows), e, k0, k1, all));
    return float32_copy(env, m.grads.data(), size_t(m.n_params));
}

// perturbationLosses(x, y, rows, estimator (spsa | es), p0, p1) -> Float32Array (2 P): the mean batch losses at
// theta + eps z_p (first P) and theta - eps z_p (last P) for the directions [p0, p1) of this step; zeros elsewhere.
Napi::Value ModelWrap::PerturbationLosses(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = model(env, Use::Mutate);
    auto [e, d] = parse_batch(env, info, m);
    require_seed_replay(env, m, e);
    const int P = e.wp.population;
    const int p0 = int(require_int(info[4], "p0", 0, P)), p1 = int(require_int(info[5], "p1", p0, P));
    Napi::Float32Array out = Napi::Float32Array::New(env, size_t(2 * P));  // zeros
    check(env, placed_seed_replay_losses(m, d.x, d.y, int(d.rows), e, p0, p1, out.Data(), out.Data() + P));
    return out;
}

// applyPerturbationUpdate(losses (2 P), estimator, optimizer, rows): every direction's coefficient from all the
// losses, the gradient by seed replay, and the optimizer update (the same on every rank).
Napi::Value ModelWrap::ApplyPerturbationUpdate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = model(env, Use::Mutate);
    EstimatorConfig e = parse_estimator(env, info[1]);
    require_seed_replay(env, m, e);
    const int P = e.wp.population;
    OptimizerConfig o = parse_optimizer(env, info[2]);  // before the loss pointer: its getters may run JS
    const float* l = finite_floats(env, info[0], 2 * int64_t(P), "losses");
    const int rows = int(require_int(info[3], "rows", 1, 1 << 30));
    check(env, placed_seed_replay_update(m, e, o, l, l + P, rows));
    return env.Undefined();
}

// inputGradients(x, y, rows) -> { grads: Float32Array (rows x inputs), loss }: d(mean loss)/dx by backprop
// (for white-box attacks such as FGSM and PGD). The model must be differentiable.
Napi::Value ModelWrap::InputGradients(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = model(env);
    const DataRef d = parse_batch(env, info, m, false).d;  // backprop: the model must be differentiable
    Napi::Float32Array dx = Napi::Float32Array::New(env, size_t(d.rows) * m.inputs);
    StepStats st;
    check(env, bp_gradients(m, d.x, d.y, int(d.rows), &st, dx.Data()));
    Napi::Object r = Napi::Object::New(env);
    r.Set("grads", dx);
    r.Set("loss", st.loss);
    return r;
}

}  // namespace of::addon
