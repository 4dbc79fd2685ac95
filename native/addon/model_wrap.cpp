// ModelWrap: registration, lifecycle, inference, backend and state methods (the gradient and step methods are in
// model_wrap_steps.cpp, argument parsing in parse.cpp): argument checks, then one core call each.
#include "addon/model_wrap.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <map>

#include "addon/args.h"
#include "addon/model_spec.h"
#include "device/trainer.h"
#include "model/units.h"

namespace of::addon {

template <Napi::Value (ModelWrap::*Method)(const Napi::CallbackInfo&), bool Exclusive>
Napi::Value ModelWrap::Enter(const Napi::CallbackInfo& info) {
    if (Exclusive && in_call_)  // e.g. dispose() from a JS loss during gradients(): it would free the model under it
        throw_status(info.Env(), {StatusCode::Busy,
                                  "the model is inside another of its calls (a loss function or getter that "
                                  "call runs cannot use the model); use it after that call returns"});
    struct Restore {
        bool& flag;
        const bool was;
        ~Restore() { flag = was; }
    } restore{in_call_, in_call_};
    in_call_ = in_call_ || Exclusive;
    try {
        try {
            return (this->*Method)(info);
        } catch (...) {
            rethrow_as_js(info.Env());
        }
    } catch (const Napi::Error& e) {
        // Thrown here: node-addon-api's own rethrow, when JS cannot run any more (worker.terminate() while a JS
        // loss or getter ran), escapes as std::terminate. Then nobody is left to catch it, and it is dropped.
        try {
            napi_throw(info.Env(), e.Value());
        } catch (...) {
        }
        return Napi::Value();
    }
}

Napi::Function ModelWrap::Init(Napi::Env env) {
    return DefineClass(
        env, "NativeModel",
        {
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::Parameters, false>>("parameters"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::Predict>>("predict"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::PredictAsync>>("predictAsync"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::EvaluateAsync>>("evaluateAsync"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::Evaluate>>("evaluate"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::Gradients>>("gradients"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::TrainStep>>("trainStep"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::ApplyGradients>>("applyGradients"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::PerturbationLosses>>("perturbationLosses"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::CopyLosses>>("copyLosses"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::CopyGradients>>("copyGradients"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::ApplyPerturbationUpdate>>("applyPerturbationUpdate"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::Fit>>("fit"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::Cancel, false>>("cancel"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::Dispose>>("dispose"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::State, false>>("state"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::ExportState>>("exportState"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::ImportState>>("importState"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::SetFrozen>>("setFrozen"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::InputGradients>>("inputGradients"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::SetBackend>>("setBackend"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::Backend, false>>("backend"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::CheckIdle>>("checkIdle"),
            InstanceMethod<&ModelWrap::Enter<&ModelWrap::MemoryEstimate>>("memoryEstimate"),
        });
}

ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
    Napi::Env env = info.Env();
    std::unique_ptr<Model> m;
    try {
        check(env, Model::create(parse_model_spec(env, info[0]), &m));
    } catch (...) {
        rethrow_as_js(env);
    }
    model_ = std::move(m);
}

Model& ModelWrap::model(Napi::Env env, Use use) {
    if (!model_) throw_status(env, {StatusCode::Disposed, "this model has been disposed"});
    const bool paused = use == Use::Snapshot && model_->at_epoch_end.load();
    if (use != Use::Read && !paused && model_->busy.load())
        throw_status(env, {StatusCode::Busy, "the model is training (fit in progress); wait for it or cancel it"});
    if (use == Use::Mutate && *pending_ > 0)
        throw_status(env, {StatusCode::Busy, std::to_string(*pending_) +
                                                 " async prediction(s) are reading this model; await them first"});
    return *model_;
}

Napi::Value ModelWrap::CheckIdle(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    model(env, Use::Mutate);
    return env.Undefined();
}

Napi::Value ModelWrap::Parameters(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = model(env, Use::Read);  // views are safe to hand out during fit; values change as it trains
    Napi::Array out = Napi::Array::New(env);
    uint32_t idx = 0;
    auto add = [&](const std::string& name, int64_t off, std::vector<int> shape) {
        int64_t n = 1;
        for (int s : shape) n *= s;
        auto* keep = new std::shared_ptr<Buffer>(m.params);  // the view keeps the slab alive
        Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
            env, m.params->data() + off, size_t(n) * sizeof(float),
            [](Napi::Env, void*, std::shared_ptr<Buffer>* hint) { delete hint; }, keep);
        Napi::Object p = Napi::Object::New(env);
        p.Set("name", name);
        p.Set("shape", js_array(env, shape));
        p.Set("data", Napi::Float32Array::New(env, size_t(n), ab, 0));
        out.Set(idx++, p);
    };
    TensorNames names;
    for (const Unit& u : m.units)
        for (const UnitTensor& t : names.of(u)) add(t.name, t.offset, t.shape);
    return out;
}

Napi::Value ModelWrap::Predict(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = model(env);
    DataRef d = parse_inputs(env, m, info[0], info[1]);
    Napi::Float32Array out = Napi::Float32Array::New(env, size_t(d.rows) * m.outputs);
    check(env, m.forward(out.Data(), d.x, d.rows, m.infer));
    return out;
}

Napi::Value ModelWrap::PredictAsync(const Napi::CallbackInfo& info) { return start_infer(info, this, false); }
Napi::Value ModelWrap::EvaluateAsync(const Napi::CallbackInfo& info) { return start_infer(info, this, true); }

Napi::Value ModelWrap::Evaluate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = model(env);
    DataRef d = parse_data(env, m, info[0], info[1], info[2]);
    double loss, acc;
    check(env, m.evaluate(d.x, d.y, d.rows, &loss, &acc, m.infer));
    return number_object(env, {{"loss", loss}, {"accuracy", acc}});
}

// setBackend(name, tf32): 'cpu', 'cuda' (ERR_BACKEND where it cannot run) or 'sim' (the host simulation of a
// device, for tests); tf32: true, false, or undefined (TF32 GEMMs for ULR only).
Napi::Value ModelWrap::SetBackend(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = model(env, Use::Mutate);
    std::string name = require_string(info[0], "backend");
    int tf32 = info[1].IsUndefined() ? -1 : info[1].ToBoolean() ? 1 : 0;
    std::unique_ptr<Device> dev;
    if (name == "sim") dev = make_sim_device();
    else if (name == "cuda") check(env, make_cuda_device(0, tf32 != 0, &dev));
    else if (name != "cpu")
        throw_status(env, {StatusCode::Config, "backend must be 'cpu', 'cuda' or 'sim', not '" + name + "'"});
    m.device = dev ? std::make_shared<DeviceTrainer>(std::move(dev), tf32) : nullptr;
    m.placement = "cpu";
    return env.Undefined();
}

// backend() -> { name, device, blas, tf32, placement }: the model's backend and where its last fit or step ran.
Napi::Value ModelWrap::Backend(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = model(env, Use::Read);
    Napi::Object r = Napi::Object::New(env);
    DeviceInfo d = m.device ? m.device->info() : DeviceInfo{"cpu", "host CPU", "oneforward", false};
    r.Set("name", d.name);
    r.Set("device", d.device);
    r.Set("blas", d.blas);
    r.Set("tf32", d.tf32);
    r.Set("placement", m.placement);
    return r;
}

// memoryEstimate(estimator, batchSize) -> { bytes, parameters, gradients, optimizer, activations, partials, workspace }
Napi::Value ModelWrap::MemoryEstimate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EstimatorConfig e = parse_estimator(env, info[0]);  // before the model: its getters may run JS
    const int B = int(require_int(info[1], "batchSize", 1, int64_t(1) << 30));
    StepMemory mem;
    check(env, step_memory(model(env), e, B, &mem));
    return number_object(env, {{"bytes", mem.total()},
                               {"parameters", mem.parameters},
                               {"gradients", mem.gradients},
                               {"optimizer", mem.optimizer},
                               {"activations", mem.activations},
                               {"partials", mem.partials},
                               {"workspace", mem.workspace}});
}

Napi::Value ModelWrap::Cancel(const Napi::CallbackInfo& info) {
    if (model_) model_->cancel.store(true);
    return info.Env().Undefined();
}

Napi::Value ModelWrap::Dispose(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (model_ && model_->busy.load())
        throw_status(env, {StatusCode::Busy, "cannot dispose a model while it trains; cancel it first"});
    if (*pending_ > 0) throw_status(env, {StatusCode::Busy, "cannot dispose a model while predictions are pending"});
    const bool last = model_.use_count() == 1;  // else a thread finishing up frees it later
    model_.reset();
#ifdef __GLIBC__
    // glibc keeps freed memory in the arena of the thread that allocated it (each fit runs on a new thread); a
    // server that creates and disposes models would see its resident memory creep up. Hand the pages back.
    if (last) malloc_trim(0);
#endif
    return env.Undefined();
}

Napi::Value ModelWrap::State(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object r = Napi::Object::New(env);
    r.Set("disposed", !model_);
    if (const Model* m = model_.get()) {
        set_numbers(
            r, {{"step", m->step}, {"epochs", m->epochs_run}, {"epochStep", m->epoch_step}, {"frozen", m->frozen}});
        if (!m->log_sigma.empty()) r.Set("logSigma", js_array(env, m->log_sigma));
        r.Set("busy", m->busy.load());
        set_numbers(r, {{"parameterCount", double(m->n_params)}, {"inputs", m->inputs}, {"outputs", m->outputs}});
    }
    return r;
}

// exportState() -> { step, epochsRun, epochStep, optKind, optT, m, v }: the training state a checkpoint needs
// besides the parameters (copies; m and v are null before the first optimizer step).
Napi::Value ModelWrap::ExportState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = model(env, Use::Snapshot);
    Napi::Object r = number_object(env, {{"step", m.step},
                                         {"epochsRun", m.epochs_run},
                                         {"epochStep", m.epoch_step},
                                         {"optKind", m.opt_kind},
                                         {"optT", double(m.opt_t)}});
    r.Set("runningLoss", m.has_running ? Napi::Value(Napi::Number::New(env, m.running_loss)) : env.Null());
    r.Set("layerVar", m.layer_var.empty() ? env.Null() : Napi::Value(js_array(env, m.layer_var)));
    r.Set("logSigma", m.log_sigma.empty() ? env.Null() : Napi::Value(js_array(env, m.log_sigma)));
    std::vector<double> bn;  // running statistics, unit by unit: mean then variance
    for (const Unit& u : m.units)
        if (u.running) bn.insert(bn.end(), u.running->begin(), u.running->end());
    r.Set("bnRunning", bn.empty() ? env.Null() : Napi::Value(js_array(env, bn)));
    const bool has = m.opt_kind >= 0;
    r.Set("m", has ? Napi::Value(float32_copy(env, m.opt_m.data(), size_t(m.n_params))) : env.Null());
    r.Set("v", has ? Napi::Value(float32_copy(env, m.opt_v.data(), size_t(m.n_params))) : env.Null());
    return r;
}

// importState(state): the inverse of exportState, checked field by field.
Napi::Value ModelWrap::ImportState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = model(env, Use::Mutate);
    Napi::Object o = require_object(info[0], "state");
    uint32_t step = uint32_t(require_int(o.Get("step"), "step", 0, 0xffffffffll));
    uint32_t epochs = uint32_t(require_int(o.Get("epochsRun"), "epochsRun", 0, 0xffffffffll));
    uint32_t epoch_step = uint32_t(require_int(o.Get("epochStep"), "epochStep", 0, 0xffffffffll));
    int kind = int(require_int(o.Get("optKind"), "optKind", -1, 2));
    int64_t t = require_int(o.Get("optT"), "optT", 0, int64_t(1) << 52);
    if (kind >= 0) {
        Napi::Float32Array mv = require_f32(o.Get("m"), "m"), vv = require_f32(o.Get("v"), "v");
        if (int64_t(mv.ElementLength()) != m.n_params || int64_t(vv.ElementLength()) != m.n_params)
            throw_status(env, {StatusCode::Checkpoint, "optimizer state has the wrong size for this model"});
        check(env, m.opt_m.reserve(size_t(m.n_params)));
        check(env, m.opt_v.reserve(size_t(m.n_params)));
        std::copy(mv.Data(), mv.Data() + m.n_params, m.opt_m.data());
        std::copy(vv.Data(), vv.Data() + m.n_params, m.opt_v.data());
    }
    m.step = step, m.epochs_run = epochs, m.epoch_step = epoch_step, m.opt_kind = kind, m.opt_t = t;
    Napi::Value rl = o.Get("runningLoss");
    m.has_running = !rl.IsUndefined() && !rl.IsNull();
    m.running_loss = m.has_running ? require_number(rl, "runningLoss") : 0.0;
    for (auto [key, out] : {std::pair{"layerVar", &m.layer_var}, std::pair{"logSigma", &m.log_sigma}}) {
        Napi::Value v = o.Get(key);  // one value per unit, or none
        out->clear();
        if (!v.IsArray()) continue;
        Napi::Array a = v.As<Napi::Array>();
        if (a.Length() != m.units.size())
            throw_status(env, {StatusCode::Checkpoint, std::string(key) + " has the wrong length for this model"});
        for (uint32_t l = 0; l < a.Length(); l++) out->push_back(require_number(a.Get(l), key));
    }
    Napi::Value bv = o.Get("bnRunning");
    if (bv.IsArray()) {
        Napi::Array a = bv.As<Napi::Array>();
        size_t want = 0;
        for (const Unit& u : m.units)
            if (u.running) want += u.running->size();
        if (a.Length() != want)
            throw_status(env, {StatusCode::Checkpoint, "bnRunning has the wrong length for this model"});
        uint32_t i = 0;
        for (const Unit& u : m.units) {
            if (!u.running) continue;
            const size_t C = u.running->size() / 2;
            for (size_t j = 0; j < u.running->size(); j++) {
                const double v = require_number(a.Get(i++), "bnRunning");
                if (!std::isfinite(v) || (j >= C && v < 0.0))
                    throw_status(env, {StatusCode::Checkpoint, "bnRunning holds a bad value"});
                (*u.running)[j] = float(v);
            }
        }
    }
    return env.Undefined();
}

// setFrozen(n): the first n dense layers stop training (0 unfreezes; at least one layer stays trainable).
Napi::Value ModelWrap::SetFrozen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = model(env, Use::Mutate);
    const int frozen = int(require_int(info[0], "frozen layers", 0, int64_t(m.param_units()) - 1));
    if (frozen != m.frozen) {  // a pipelined first module kept from before indexes the other units: drop it
        m.ws.first[0].pending = m.ws.first[1].pending = false;
        if (m.device) m.device->reset_pipeline();
    }
    m.frozen = frozen;
    return env.Undefined();
}

}  // namespace of::addon
