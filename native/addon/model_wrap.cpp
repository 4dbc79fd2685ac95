// ModelWrap methods: argument checks, then one core call each.
#include "addon/model_wrap.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "addon/args.h"
#include "addon/js_loss.h"
#include "device/trainer.h"
#include "model/describe.h"

namespace of::addon {

template <Napi::Value (ModelWrap::*Method)(const Napi::CallbackInfo&)>
Napi::Value ModelWrap::Enter(const Napi::CallbackInfo& info) {
    if (in_call_)  // e.g. dispose() from a JS loss during gradients(): it would free the model under the estimator
        throw_status(info.Env(), {StatusCode::Busy, "the model is inside another of its calls (a loss function or getter that "
                                                    "call runs cannot use the model); use it after that call returns"});
    in_call_ = true;
    struct Leave {
        bool& flag;
        ~Leave() { flag = false; }
    } leave{in_call_};
    try {
        return (this->*Method)(info);
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
    return DefineClass(env, "NativeModel",
                       {
                           InstanceMethod<&ModelWrap::Parameters>("parameters"),
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
                           InstanceMethod<&ModelWrap::Cancel>("cancel"),
                           InstanceMethod<&ModelWrap::Enter<&ModelWrap::Dispose>>("dispose"),
                           InstanceMethod<&ModelWrap::State>("state"),
                           InstanceMethod<&ModelWrap::Enter<&ModelWrap::ExportState>>("exportState"),
                           InstanceMethod<&ModelWrap::Enter<&ModelWrap::ImportState>>("importState"),
                           InstanceMethod<&ModelWrap::Enter<&ModelWrap::SetFrozen>>("setFrozen"),
                           InstanceMethod<&ModelWrap::Enter<&ModelWrap::InputGradients>>("inputGradients"),
                           InstanceMethod<&ModelWrap::Enter<&ModelWrap::SetBackend>>("setBackend"),
                           InstanceMethod<&ModelWrap::Backend>("backend"),
                           InstanceMethod<&ModelWrap::Enter<&ModelWrap::CheckIdle>>("checkIdle"),
                           InstanceMethod<&ModelWrap::Enter<&ModelWrap::MemoryEstimate>>("memoryEstimate"),
                       });
}

namespace {

Act parse_act(Napi::Env env, const std::string& s) {
    static const char* names[] = {"identity", "relu", "leakyRelu", "tanh", "sigmoid", "gelu", "step", "sign", "quantize"};
    for (int i = 0; i < 9; i++)
        if (s == names[i]) return Act(i);
    throw_status(env, arg_error("unknown activation '" + s + "'"));
}

int parse_quant(Napi::Env env, const Napi::Object& l) {  // weights: 'real' (default) | 'binary' | 'ternary'
    Napi::Value q = l.Get("weights");
    if (q.IsUndefined()) return 0;
    const std::string s = require_string(q, "weights");
    if (s == "real") return 0;
    if (s == "binary") return 1;
    if (s == "ternary") return 2;
    throw_status(env, arg_error("unknown weights '" + s + "' (real, binary or ternary)"));
}

}  // namespace

ModelSpec parse_spec(Napi::Env env, const Napi::Value& v) {
    Napi::Object o = require_object(v, "spec");
    ModelSpec spec;
    spec.inputs = int(require_int(o.Get("inputs"), "inputs", 1, 1 << 28));
    Napi::Value shape = o.Get("inputShape");
    if (shape.IsArray()) {  // [H, W, C], channels-last images
        Napi::Array a = shape.As<Napi::Array>();
        if (a.Length() == 2) {  // [steps, features]: sequences
            spec.in_t = int(require_int(a.Get(uint32_t(0)), "inputShape", 1, 1 << 16));
            spec.in_f = int(require_int(a.Get(uint32_t(1)), "inputShape", 1, 1 << 24));
        } else if (a.Length() != 3) {
            throw_status(env, arg_error("inputShape must be [height, width, channels] or [steps, features]"));
        }
    }
    if (shape.IsArray() && shape.As<Napi::Array>().Length() == 3) {
        Napi::Array a = shape.As<Napi::Array>();
        spec.in_h = int(require_int(a.Get(uint32_t(0)), "inputShape", 1, 1 << 16));
        spec.in_w = int(require_int(a.Get(uint32_t(1)), "inputShape", 1, 1 << 16));
        spec.in_c = int(require_int(a.Get(uint32_t(2)), "inputShape", 1, 1 << 16));
    }
    std::string loss = require_string(o.Get("loss"), "loss");
    if (loss == "crossEntropy") spec.loss = LossKind::CrossEntropy;
    else if (loss == "mse") spec.loss = LossKind::Mse;
    else if (loss == "zeroOne") spec.loss = LossKind::ZeroOne;
    else throw_status(env, arg_error("unknown loss '" + loss + "'"));
    spec.seed = uint64_t(require_int(o.Get("seed"), "seed", 0, (int64_t(1) << 53)));
    Napi::Value lv = o.Get("layers");
    if (!lv.IsArray()) throw_status(env, arg_error("Expected layers to be an array"));
    Napi::Array layers = lv.As<Napi::Array>();
    for (uint32_t i = 0; i < layers.Length(); i++) {
        Napi::Object l = require_object(layers.Get(i), "layer");
        std::string type = require_string(l.Get("type"), "layer type");
        LayerSpec ls{};
        if (type == "dense") {
            ls.kind = LayerSpec::Kind::Dense;
            ls.units = int(require_int(l.Get("units"), "units", 1, 1 << 28));
            ls.bias = opt_bool(l, "bias", true);
            ls.trainable = opt_bool(l, "trainable", true);
            ls.quant = parse_quant(env, l);
        } else if (type == "activation") {
            ls.kind = LayerSpec::Kind::Activation;
            ls.act = parse_act(env, require_string(l.Get("activation"), "activation"));
            ls.alpha = ls.act == Act::Quantize ? float(opt_number(l, "levels", 4.0)) : float(opt_number(l, "alpha", 0.01));
            if (ls.act == Act::Quantize && !(ls.alpha >= 2.0f && ls.alpha <= 65536.0f))
                throw_status(env, arg_error("quantize levels must be in [2, 65536]"));
        } else if (type == "conv2d" || type == "maxPool2d" || type == "avgPool2d") {
            using K = LayerSpec::Kind;
            ls.kind = type == "conv2d" ? K::Conv2d : type == "maxPool2d" ? K::MaxPool2d : K::AvgPool2d;
            if (ls.kind == K::Conv2d) {
                ls.units = int(require_int(l.Get("filters"), "filters", 1, 1 << 20));
                ls.bias = opt_bool(l, "bias", true);
                ls.quant = parse_quant(env, l);
            }
            auto pair = [&](const char* key, int lo, int* a, int* b) {
                Napi::Value v = l.Get(key);
                if (!v.IsArray() || v.As<Napi::Array>().Length() != 2) throw_status(env, arg_error(std::string(key) + " must be a pair of integers"));
                *a = int(require_int(v.As<Napi::Array>().Get(uint32_t(0)), key, lo, 1 << 16));
                *b = int(require_int(v.As<Napi::Array>().Get(uint32_t(1)), key, lo, 1 << 16));
            };
            pair("kernel", 1, &ls.kh, &ls.kw);
            pair("strides", 1, &ls.sh, &ls.sw);
            pair("dilation", 1, &ls.dh, &ls.dw);
            Napi::Value pad = l.Get("padding");
            if (pad.IsString() && pad.As<Napi::String>().Utf8Value() == "same") ls.ph = ls.pw = -1;
            else if (pad.IsString() && pad.As<Napi::String>().Utf8Value() == "valid") ls.ph = ls.pw = 0;
            else pair("padding", 0, &ls.ph, &ls.pw);
        } else if (type == "rnn" || type == "gru" || type == "lstm" || type == "lif") {
            using K = LayerSpec::Kind;
            ls.kind = type == "rnn" ? K::Rnn : type == "gru" ? K::Gru : type == "lstm" ? K::Lstm : K::Lif;
            ls.units = int(require_int(l.Get("units"), "units", 1, 1 << 20));
            ls.return_sequences = opt_bool(l, "returnSequences", ls.kind == K::Lif);
            ls.beta = float(opt_number(l, "beta", 0.9));
            ls.threshold = float(opt_number(l, "threshold", 1.0));
            ls.slope = float(opt_number(l, "slope", 5.0));
        } else if (type == "graphConv") {  // { units, graph: { nodes, edges: [[i, j], ...] } }
            ls.kind = LayerSpec::Kind::GraphConv;
            ls.units = int(require_int(l.Get("units"), "units", 1, 1 << 20));
            Napi::Object g = require_object(l.Get("graph"), "graph");
            ls.nodes = int(require_int(g.Get("nodes"), "graph.nodes", 1, 1 << 24));
            Napi::Value ev = g.Get("edges");
            if (!ev.IsArray()) throw_status(env, arg_error("graph.edges must be an array of [i, j] pairs"));
            Napi::Array ea = ev.As<Napi::Array>();
            for (uint32_t e = 0; e < ea.Length(); e++) {
                Napi::Value pr = ea.Get(e);
                if (!pr.IsArray() || pr.As<Napi::Array>().Length() != 2) throw_status(env, arg_error("graph.edges must be an array of [i, j] pairs"));
                ls.edges.emplace_back(int(require_int(pr.As<Napi::Array>().Get(uint32_t(0)), "edge", 0, 1 << 24)),
                                      int(require_int(pr.As<Napi::Array>().Get(uint32_t(1)), "edge", 0, 1 << 24)));
            }
        } else if (type == "repeat") {
            ls.kind = LayerSpec::Kind::Repeat;
            ls.steps = int(require_int(l.Get("steps"), "steps", 1, 1 << 16));
        } else if (type == "residualBegin" || type == "concatBegin") {  // both open a block (a skip from its input)
            ls.kind = LayerSpec::Kind::ResidualBegin;
        } else if (type == "residualEnd" || type == "concatEnd") {
            ls.kind = type == "residualEnd" ? LayerSpec::Kind::ResidualEnd : LayerSpec::Kind::ConcatEnd;
        } else if (type == "layerNorm" || type == "batchNorm") {
            ls.kind = type == "layerNorm" ? LayerSpec::Kind::LayerNorm : LayerSpec::Kind::BatchNorm;
        } else if (type == "groupNorm") {
            ls.kind = LayerSpec::Kind::GroupNorm;
            ls.groups = int(require_int(l.Get("groups"), "groups", 1, 1 << 20));
        } else if (type == "dropout") {
            ls.kind = LayerSpec::Kind::Dropout;
            ls.rate = float(require_number(l.Get("rate"), "rate"));
        } else if (type == "timeMean") {
            ls.kind = LayerSpec::Kind::TimeMean;
        } else if (type == "globalAvgPool") {
            ls.kind = LayerSpec::Kind::GlobalAvgPool;
        } else if (type == "flatten") {
            ls.kind = LayerSpec::Kind::Flatten;
        } else {
            throw_status(env, arg_error("unknown layer type '" + type + "'"));
        }
        spec.layers.push_back(ls);
    }
    return spec;
}


EstimatorConfig parse_estimator(Napi::Env env, const Napi::Value& v) {
    Napi::Object o = require_object(v, "estimator");
    EstimatorConfig e;
    std::string kind = require_string(o.Get("kind"), "estimator kind");
    // data-parallel shards: the global index of this batch's first sample (noise rows, dropout masks)
    e.ulr.sample_base = uint32_t(o.Get("sampleOffset").IsUndefined() ? 0 : require_int(o.Get("sampleOffset"), "sampleOffset", 0, 1 << 30));
    if (kind == "bp") return e;
    if (kind == "spsa" || kind == "es") {
        e.kind = kind == "spsa" ? EstimatorConfig::Kind::Spsa : EstimatorConfig::Kind::Es;
        e.wp.population = int(require_int(o.Get("population"), "population", 1, 1 << 20));
        e.wp.sigma = float(require_number(o.Get("sigma"), "sigma"));
        e.wp.antithetic = opt_bool(o, "antithetic", true);
        e.wp.rank_shaping = opt_bool(o, "rankShaping", true);
        return e;
    }
    if (kind != "ulr") throw_status(env, arg_error("unknown estimator '" + kind + "'"));
    e.kind = EstimatorConfig::Kind::Ulr;
    UlrConfig& c = e.ulr;
    Napi::Value cv = o.Get("copies");
    if (cv.IsString() && cv.As<Napi::String>().Utf8Value() == "auto") {  // budget: `budget` copies per layer
        c.auto_copies = true;
        c.copies = int(o.Get("budget").IsUndefined() ? 32 : require_int(o.Get("budget"), "budget", 2, 1 << 20));
    } else if (cv.IsArray()) {
        Napi::Array a = cv.As<Napi::Array>();
        for (uint32_t i = 0; i < a.Length(); i++) c.copies_per_layer.push_back(int(require_int(a.Get(i), "copies", 0, 1 << 20)));
        c.copies = c.copies_per_layer.empty() ? 0 : *std::max_element(c.copies_per_layer.begin(), c.copies_per_layer.end());
    } else {
        c.copies = int(require_int(cv, "copies", 0, 1 << 20));
    }
    c.qmc = opt_bool(o, "qmc", false);
    Napi::Value ls = o.Get("learnSigma");
    if (!ls.IsUndefined()) {
        c.learn_sigma = true;
        c.sigma_lr = float(opt_number(require_object(ls, "learnSigma"), "lr", 0.01));
    }
    Napi::Value sched = o.Get("sigmaSchedule");
    if (!sched.IsUndefined()) {
        Napi::Object so = require_object(sched, "sigmaSchedule");
        std::string kind = require_string(so.Get("kind"), "sigmaSchedule.kind");
        using Sch = UlrConfig::Schedule;
        if (kind == "constant") c.schedule = Sch::Constant;
        else if (kind == "step") c.schedule = Sch::Step;
        else if (kind == "exponential") c.schedule = Sch::Exponential;
        else if (kind == "cosine") c.schedule = Sch::Cosine;
        else throw_status(env, arg_error("unknown sigma schedule '" + kind + "'"));
        c.every = int(so.Get("every").IsUndefined() ? 1 : require_int(so.Get("every"), "every", 1, 1 << 20));
        c.gamma = float(opt_number(so, "gamma", 0.5));
        c.min_factor = float(opt_number(so, "min", 0.0));
        if (!(c.gamma > 0.0f && c.gamma <= 1.0f) || !(c.min_factor >= 0.0f && c.min_factor <= 1.0f))
            throw_status(env, arg_error("sigmaSchedule gamma must be in (0, 1] and min in [0, 1]"));
    }
    Napi::Value bl = o.Get("blocks");
    if (bl.IsArray()) {
        Napi::Array a = bl.As<Napi::Array>();
        for (uint32_t i = 0; i < a.Length(); i++) c.blocks.push_back(int(require_int(a.Get(i), "blocks", 1, 1 << 20)));
    }
    if (!o.Get("injection").IsUndefined()) {
        std::string inj = require_string(o.Get("injection"), "injection");
        if (inj == "layerwise") c.layerwise = true;
        else if (inj != "all") throw_status(env, arg_error("unknown injection '" + inj + "'"));
    }
    Napi::Value s = o.Get("sigma");
    c.sigma.clear();
    if (s.IsArray()) {  // one entry per dense layer: a number, or an array with one sigma per output channel
        Napi::Array a = s.As<Napi::Array>();
        bool channels = false;
        for (uint32_t i = 0; i < a.Length(); i++) channels = channels || a.Get(i).IsArray();
        for (uint32_t i = 0; i < a.Length(); i++) {
            Napi::Value v = a.Get(i);
            std::vector<float> ch;
            if (v.IsArray()) {
                Napi::Array va = v.As<Napi::Array>();
                for (uint32_t j = 0; j < va.Length(); j++) ch.push_back(float(require_number(va.Get(j), "sigma")));
                float mean = 0.0f;
                for (float f : ch) mean += f / float(ch.empty() ? 1 : ch.size());
                c.sigma.push_back(ch.empty() ? 0.0f : mean);
            } else {
                c.sigma.push_back(float(require_number(v, "sigma")));
            }
            if (channels) c.sigma_channels.push_back(ch);
        }
    } else {
        c.sigma.push_back(float(require_number(s, "sigma")));
    }
    c.antithetic = opt_bool(o, "antithetic", false);
    std::string baseline = o.Get("baseline").IsUndefined() ? "loo" : require_string(o.Get("baseline"), "baseline");
    if (baseline == "loo") c.baseline = Baseline::LeaveOneOut;
    else if (baseline == "none") c.baseline = Baseline::None;
    else if (baseline == "mean") c.baseline = Baseline::BatchMean;
    else if (baseline == "clean") c.baseline = Baseline::Clean;
    else if (baseline == "running") c.baseline = Baseline::Running;
    else throw_status(env, arg_error("unknown baseline '" + baseline + "'"));
    std::string density = o.Get("noise").IsUndefined() ? "normal" : require_string(o.Get("noise"), "noise");
    if (density == "normal") c.density = Density::Normal;
    else if (density == "laplace") c.density = Density::Laplace;
    else if (density == "logistic") c.density = Density::Logistic;
    else throw_status(env, arg_error("unknown noise density '" + density + "'"));
    std::string score = o.Get("score").IsUndefined() ? "exact" : require_string(o.Get("score"), "score");
    if (score == "exact") c.score = Score::Exact;
    else if (score == "sign") c.score = Score::Sign;
    else throw_status(env, arg_error("unknown score '" + score + "'"));
    c.shared_prefix = opt_bool(o, "sharedPrefix", true);
    c.store_noise = opt_bool(o, "storeNoise", true);
    Napi::Value mods = o.Get("modules");
    if (mods.IsArray()) {  // [[0, e0], [e0, e1], ...]: consecutive ranges of dense layers
        Napi::Array a = mods.As<Napi::Array>();
        int prev = 0;
        for (uint32_t i = 0; i < a.Length(); i++) {
            Napi::Value r = a.Get(i);
            if (!r.IsArray() || r.As<Napi::Array>().Length() != 2)
                throw_status(env, arg_error("modules must be [start, end] pairs of dense layer indices"));
            int start = int(require_int(r.As<Napi::Array>().Get(uint32_t(0)), "modules", 0, 1 << 20));
            int end = int(require_int(r.As<Napi::Array>().Get(uint32_t(1)), "modules", 1, 1 << 20));
            if (start != prev || end <= start)
                throw_status(env, arg_error("modules must be consecutive non-empty [start, end) ranges from dense layer 0"));
            c.modules.push_back(end);
            prev = end;
        }
    }
    c.concurrent = opt_bool(o, "concurrent", true);
    c.pipeline = opt_bool(o, "pipeline", false);
    c.exact_boundary = opt_bool(o, "exactBoundary", false);
    if (!o.Get("seed").IsUndefined()) {
        c.seed = uint64_t(require_int(o.Get("seed"), "seed", 0, int64_t(1) << 53));
        c.has_seed = true;
    }
    return e;
}

// lib/schedules.ts's plain object; validate_optimizer checks the ranges.
static LrSchedule parse_schedule(Napi::Env env, const Napi::Value& v) {
    Napi::Object o = require_object(v, "optimizer schedule");
    LrSchedule c;
    const std::string kind = require_string(o.Get("kind"), "schedule kind");
    if (kind == "constant") c.kind = ScheduleKind::Constant;
    else if (kind == "step") c.kind = ScheduleKind::Step;
    else if (kind == "exponential") c.kind = ScheduleKind::Exponential;
    else if (kind == "cosine") c.kind = ScheduleKind::Cosine;
    else throw_status(env, arg_error("unknown schedule '" + kind + "'"));
    auto count = [&](const char* key, int64_t def, int64_t lo) {
        Napi::Value x = o.Get(key);
        return x.IsUndefined() ? def : require_int(x, key, lo, int64_t(1) << 52);
    };
    c.warmup = count("warmup", 0, 0);
    c.every = count("every", 1, 1);
    c.steps = count("steps", 1, 1);
    c.gamma = opt_number(o, "gamma", 1.0);
    c.min_lr = opt_number(o, "minLr", 0.0);
    return c;
}

OptimizerConfig parse_optimizer(Napi::Env env, const Napi::Value& v) {
    Napi::Object o = require_object(v, "optimizer");
    OptimizerConfig c;
    std::string kind = require_string(o.Get("kind"), "optimizer kind");
    if (kind == "sgd") c.kind = OptKind::Sgd;
    else if (kind == "adam") c.kind = OptKind::Adam;
    else if (kind == "adamw") c.kind = OptKind::AdamW;
    else throw_status(env, arg_error("unknown optimizer '" + kind + "'"));
    c.lr = float(opt_number(o, "lr", c.lr));
    c.momentum = float(opt_number(o, "momentum", 0.0));
    c.nesterov = opt_bool(o, "nesterov", false);
    c.beta1 = float(opt_number(o, "beta1", c.beta1));
    c.beta2 = float(opt_number(o, "beta2", c.beta2));
    c.eps = float(opt_number(o, "eps", c.eps));
    c.weight_decay = float(opt_number(o, "weightDecay", 0.0));
    c.clip_norm = float(opt_number(o, "clipNorm", 0.0));
    Napi::Value sv = o.Get("schedule");
    if (!sv.IsUndefined() && !sv.IsNull()) c.schedule = parse_schedule(env, sv);
    check(env, validate_optimizer(c));
    return c;
}

DataRef parse_inputs(Napi::Env env, const Model& m, const Napi::Value& xv, const Napi::Value& rv) {
    Napi::Float32Array x = require_f32(xv, "x");
    DataRef d;
    d.rows = require_int(rv, "rows", 0, int64_t(1) << 40);
    if (int64_t(x.ElementLength()) != d.rows * m.inputs)
        throw_status(env, {StatusCode::Shape, "x has " + std::to_string(x.ElementLength()) +
                                                  " values, expected rows x inputs = " + std::to_string(d.rows) +
                                                  " x " + std::to_string(m.inputs)});
    d.x = x.Data();
    return d;
}

DataRef parse_data(Napi::Env env, const Model& m, const Napi::Value& xv, const Napi::Value& yv,
                   const Napi::Value& rv) {
    Napi::Float32Array x = require_f32(xv, "x");
    DataRef d;
    d.rows = require_int(rv, "rows", 1, int64_t(1) << 40);
    d.x = x.Data();
    int64_t y_len = 0;
    if (yv.IsTypedArray() && yv.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) {
        auto y = yv.As<Napi::Int32Array>();
        d.y.labels = y.Data(), y_len = int64_t(y.ElementLength());
    } else if (yv.IsTypedArray() && yv.As<Napi::TypedArray>().TypedArrayType() == napi_float32_array) {
        auto y = yv.As<Napi::Float32Array>();
        d.y.values = y.Data(), y_len = int64_t(y.ElementLength());
    } else {
        throw_status(env, arg_error("Expected y to be an Int32Array (labels) or a Float32Array (targets)"));
    }
    check(env, validate_data(m, d.x, int64_t(x.ElementLength()), d.y, y_len, d.rows));
    return d;
}

namespace {
template <typename T>
Napi::TypedArrayOf<T> typed(const Napi::Value& v) {
    return v.As<Napi::TypedArrayOf<T>>();
}
}  // namespace

void own_data(Napi::Env env, const Model& m, const Napi::Value& xv, const Napi::Value& yv, const Napi::Value& rv,
              OwnedData* out) {
    DataRef d = parse_data(env, m, xv, yv, rv);  // validated: the lengths below are the arrays' own
    auto x = typed<float>(xv);
    out->x.assign(d.x, d.x + x.ElementLength());
    if (d.y.labels) out->labels.assign(d.y.labels, d.y.labels + typed<int32_t>(yv).ElementLength());
    if (d.y.values) out->values.assign(d.y.values, d.y.values + typed<float>(yv).ElementLength());
    out->ref = d;
    out->ref.x = out->x.data();
    if (d.y.labels) out->ref.y.labels = out->labels.data();
    if (d.y.values) out->ref.y.values = out->values.data();
}

void own_inputs(Napi::Env env, const Model& m, const Napi::Value& xv, const Napi::Value& rv, OwnedData* out) {
    DataRef d = parse_inputs(env, m, xv, rv);
    out->x.assign(d.x, d.x + typed<float>(xv).ElementLength());
    out->ref = d;
    out->ref.x = out->x.data();
}

ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
    Napi::Env env = info.Env();
    OF_NAPI_BEGIN
    std::unique_ptr<Model> m;
    check(env, Model::create(parse_spec(env, info[0]), &m));
    model_ = std::move(m);
    OF_NAPI_END(env)
}

Model& ModelWrap::model(Napi::Env env, Use use) {
    if (!model_) throw_status(env, {StatusCode::Disposed, "this model has been disposed"});
    if (use != Use::Read && model_->busy.load())
        throw_status(env, {StatusCode::Busy, "the model is training (fit in progress); wait for it or cancel it"});
    if (use == Use::Mutate && *pending_ > 0)
        throw_status(env, {StatusCode::Busy, std::to_string(*pending_) + " async prediction(s) are reading this model; await them first"});
    return *model_;
}

Napi::Value ModelWrap::CheckIdle(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    model(env, Use::Mutate);
    return env.Undefined();
}

Napi::Value ModelWrap::Parameters(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    OF_NAPI_BEGIN
    Model& m = model(env, Use::Read);  // views are safe to hand out during fit; values change as it trains
    Napi::Array out = Napi::Array::New(env);
    uint32_t idx = 0;
    auto add = [&](const TensorInfo& t) {
        int64_t n = 1;
        for (int s : t.shape) n *= s;
        auto* keep = new std::shared_ptr<Buffer>(m.params);  // the view keeps the slab alive
        Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
            env, m.params->data() + t.offset, size_t(n) * sizeof(float),
            [](Napi::Env, void*, std::shared_ptr<Buffer>* hint) { delete hint; }, keep);
        Napi::Object p = Napi::Object::New(env);
        p.Set("name", t.name);
        Napi::Array sh = Napi::Array::New(env, t.shape.size());
        for (size_t i = 0; i < t.shape.size(); i++) sh.Set(uint32_t(i), t.shape[i]);
        p.Set("shape", sh);
        p.Set("data", Napi::Float32Array::New(env, size_t(n), ab, 0));
        out.Set(idx++, p);
    };
    for (const auto& unit : unit_tensors(m))
        for (const TensorInfo& t : unit) add(t);
    return out;
    OF_NAPI_END(env)
}

Napi::Value ModelWrap::Predict(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    OF_NAPI_BEGIN
    Model& m = model(env);
    DataRef d = parse_inputs(env, m, info[0], info[1]);
    Napi::Float32Array out = Napi::Float32Array::New(env, size_t(d.rows) * m.outputs);
    check(env, m.forward(out.Data(), d.x, d.rows, m.infer));
    return out;
    OF_NAPI_END(env)
}

Napi::Value ModelWrap::PredictAsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    OF_NAPI_BEGIN
    return start_infer(info, this, false);
    OF_NAPI_END(env)
}

Napi::Value ModelWrap::EvaluateAsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    OF_NAPI_BEGIN
    return start_infer(info, this, true);
    OF_NAPI_END(env)
}

Napi::Value ModelWrap::Evaluate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    OF_NAPI_BEGIN
    Model& m = model(env);
    DataRef d = parse_data(env, m, info[0], info[1], info[2]);
    double loss, acc;
    check(env, m.evaluate(d.x, d.y, d.rows, &loss, &acc, m.infer));
    Napi::Object r = Napi::Object::New(env);
    r.Set("loss", loss);
    r.Set("accuracy", acc);
    return r;
    OF_NAPI_END(env)
}

namespace {
// The (x, y, rows[, estimator]) head shared by gradients(), trainStep() and inputGradients(): one batch and a
// checked estimator (read from argument 3 when `from_arg`, else the one passed in, e.g. BP). Every argument that
// can run JS (a getter) is read before the data pointers are taken, and the caller reads no object after it.
DataRef parse_batch(Napi::Env env, const Napi::CallbackInfo& info, const Model& m, EstimatorConfig* e,
                    bool from_arg = true) {
    if (from_arg) *e = parse_estimator(env, info[3]);
    DataRef d = parse_data(env, m, info[0], info[1], info[2]);
    if (d.rows > (int64_t(1) << 30)) throw_status(env, {StatusCode::Shape, "batch too large"});
    check(env, validate_estimator(m, *e));
    return d;
}
}  // namespace

// gradients(x, y, rows, estimator, step, lossFn?) -> { grads: Float32Array (slab layout), loss }
Napi::Value ModelWrap::Gradients(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    OF_NAPI_BEGIN
    Model& m = model(env, Use::Mutate);
    EstimatorConfig e;
    DataRef d = parse_batch(env, info, m, &e);
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
        throw_status(env, {StatusCode::Numeric, "non-finite loss for this batch (seed " + std::to_string(m.seed) + ")"});
    Napi::Float32Array g = Napi::Float32Array::New(env, size_t(m.n_params));
    std::copy(m.grads.data(), m.grads.data() + m.n_params, g.Data());
    for (int64_t i = 0; i < m.n_params; i++)
        if (!std::isfinite(g.Data()[i]))
            throw_status(env, {StatusCode::Numeric, "non-finite gradient at parameter index " + std::to_string(i)});
    Napi::Object r = Napi::Object::New(env);
    r.Set("grads", g);
    r.Set("loss", st.loss);
    return r;
    OF_NAPI_END(env)
}

// setBackend(name, tf32): 'cpu', 'cuda' (ERR_BACKEND where it cannot run) or 'sim' (the host simulation of a
// device, for tests); tf32: true, false, or undefined (TF32 GEMMs for ULR only).
Napi::Value ModelWrap::SetBackend(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    OF_NAPI_BEGIN
    Model& m = model(env, Use::Mutate);
    std::string name = require_string(info[0], "backend");
    int tf32 = info[1].IsUndefined() ? -1 : info[1].ToBoolean() ? 1 : 0;
    std::unique_ptr<Device> dev;
    if (name == "sim") dev = make_sim_device();
    else if (name == "cuda") check(env, make_cuda_device(0, tf32 != 0, &dev));
    else if (name != "cpu") throw_status(env, {StatusCode::Config, "backend must be 'cpu', 'cuda' or 'sim', not '" + name + "'"});
    m.device = dev ? std::make_shared<DeviceTrainer>(std::move(dev), tf32) : nullptr;
    m.placement = "cpu";
    return env.Undefined();
    OF_NAPI_END(env)
}

// backend() -> { name, device, blas, tf32, placement }: the model's backend and where its last fit or step ran.
Napi::Value ModelWrap::Backend(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    OF_NAPI_BEGIN
    Model& m = model(env, Use::Read);
    Napi::Object r = Napi::Object::New(env);
    DeviceInfo d = m.device ? m.device->info() : DeviceInfo{"cpu", "host CPU", "oneforward", false};
    r.Set("name", d.name);
    r.Set("device", d.device);
    r.Set("blas", d.blas);
    r.Set("tf32", d.tf32);
    r.Set("placement", m.placement);
    return r;
    OF_NAPI_END(env)
}

// memoryEstimate(estimator, batchSize) -> { bytes, parameters, gradients, optimizer, activations, partials, workspace }
Napi::Value ModelWrap::MemoryEstimate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    OF_NAPI_BEGIN
    EstimatorConfig e = parse_estimator(env, info[0]);  // before the model: its getters may run JS
    const int B = int(require_int(info[1], "batchSize", 1, int64_t(1) << 30));
    StepMemory mem;
    check(env, step_memory(model(env), e, B, &mem));
    Napi::Object r = Napi::Object::New(env);
    r.Set("bytes", mem.total());
    r.Set("parameters", mem.parameters);
    r.Set("gradients", mem.gradients);
    r.Set("optimizer", mem.optimizer);
    r.Set("activations", mem.activations);
    r.Set("partials", mem.partials);
    r.Set("workspace", mem.workspace);
    return r;
    OF_NAPI_END(env)
}

// trainStep(x, y, rows, estimator, optimizer) -> { loss }
Napi::Value ModelWrap::TrainStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    OF_NAPI_BEGIN
    Model& m = model(env, Use::Mutate);
    OptimizerConfig o = parse_optimizer(env, info[4]);  // before the data pointers: its getters may run JS
    EstimatorConfig e;
    DataRef d = parse_batch(env, info, m, &e);
    StepStats st;
    check(env, placed_train_step(m, d.x, d.y, int(d.rows), e, o, &st));
    Napi::Object r = Napi::Object::New(env);
    r.Set("loss", st.loss);
    return r;
    OF_NAPI_END(env)
}

namespace {

// A Float32Array argument of exactly `n` finite values (ERR_SHAPE / ERR_NUMERIC otherwise).
const float* finite_floats(Napi::Env env, const Napi::Value& v, int64_t n, const std::string& what) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
        throw_status(env, arg_error(what + " must be a Float32Array"));
    Napi::Float32Array a = v.As<Napi::Float32Array>();
    if (int64_t(a.ElementLength()) != n)
        throw_status(env, {StatusCode::Shape, what + " has " + std::to_string(a.ElementLength()) + " values, expected " + std::to_string(n)});
    for (int64_t i = 0; i < n; i++)
        if (!std::isfinite(a.Data()[i])) throw_status(env, {StatusCode::Numeric, "non-finite value in " + what + " at index " + std::to_string(i)});
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
    OF_NAPI_BEGIN
    Model& m = model(env, Use::Mutate);
    OptimizerConfig o = parse_optimizer(env, info[1]);  // before the gradient pointer: its getters may run JS
    const float* g = finite_floats(env, info[0], m.n_params, "gradients");
    const int rows = int(require_int(info[2], "rows", 1, 1 << 30));
    std::copy(g, g + m.n_params, m.grads.data());
    check(env, apply_update(m, o, rows));
    return env.Undefined();
    OF_NAPI_END(env)
}

namespace {

// A ULR estimator restricted to copies [k0, k1) of its K (copy-parallel ranks), with the noise rows a single
// process with K copies would use.
EstimatorConfig copy_slice(Napi::Env env, const Napi::CallbackInfo& info, const Model& m, EstimatorConfig e, int* k0, int* k1) {
    if (e.kind != EstimatorConfig::Kind::Ulr) throw_status(env, {StatusCode::Config, "copy-parallel training needs ulr()"});
    const UlrConfig& c = e.ulr;
    if (c.baseline != Baseline::LeaveOneOut && c.baseline != Baseline::BatchMean && c.baseline != Baseline::None)
        throw_status(env, {StatusCode::Config, "copy-parallel training supports baselines 'loo', 'mean' and 'none'"});
    const int K = c.copies;
    *k0 = int(require_int(info[4], "k0", 0, K - 2));
    *k1 = int(require_int(info[5], "k1", *k0 + 2, K));
    EstimatorConfig s = e;
    s.ulr.copies = *k1 - *k0;
    s.ulr.slice_total = uint32_t(K);
    s.ulr.slice_offset = uint32_t(*k0);
    check(env, validate_estimator(m, s));
    return s;
}

}  // namespace

// copyLosses(x, y, rows, estimator (ulr, K copies), k0, k1) -> Float32Array (rows x K): the losses of copies
// [k0, k1) of every sample (forward only), zeros elsewhere. Summed over ranks: every copy's loss.
Napi::Value ModelWrap::CopyLosses(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    OF_NAPI_BEGIN
    Model& m = model(env, Use::Mutate);
    EstimatorConfig e;
    DataRef d = parse_batch(env, info, m, &e);
    int k0 = 0, k1 = 0;
    EstimatorConfig s = copy_slice(env, info, m, e, &k0, &k1);
    const int K = e.ulr.copies, B = int(d.rows);
    Napi::Float32Array out = Napi::Float32Array::New(env, size_t(B) * size_t(K));
    std::fill(out.Data(), out.Data() + size_t(B) * size_t(K), 0.0f);
    bool collected = false;
    LossHook hook = [&](const float* o, const Targets& t, int R, int C, int rep, float* loss) -> Status {
        m.k->loss_forward(loss, o, t.labels, t.values, R, C, rep, m.loss, m.groups);
        for (int r = 0; r < R; r++) out.Data()[int64_t(r / rep) * K + k0 + r % rep] = loss[r];
        collected = true;
        return {StatusCode::Abort, "losses collected"};  // the forward is all this phase needs
    };
    StepStats st;
    Status status = placed_gradients(m, d.x, d.y, B, s, m.step, &st, &hook);
    if (!collected) check(env, status);
    return out;
    OF_NAPI_END(env)
}

// copyGradients(x, y, rows, estimator, k0, k1, losses (rows x K, every copy)) -> Float32Array (parameterCount): this
// rank's share of the estimate -- its copies, with row weights (and the leave-one-out baseline) from all K losses.
// Summed over ranks: the single-process estimate.
Napi::Value ModelWrap::CopyGradients(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    OF_NAPI_BEGIN
    Model& m = model(env, Use::Mutate);
    EstimatorConfig e;
    DataRef d = parse_batch(env, info, m, &e);
    int k0 = 0, k1 = 0;
    EstimatorConfig s = copy_slice(env, info, m, e, &k0, &k1);
    const int K = e.ulr.copies, B = int(d.rows), Kr = k1 - k0;
    const float* all = finite_floats(env, info[6], int64_t(B) * K, "losses");
    std::vector<float> w(size_t(B) * size_t(K)), pseudo(size_t(B) * size_t(Kr));
    m.k->lr_row_weights(w.data(), all, nullptr, B, K, e.ulr.baseline, e.ulr.antithetic, 1.0f / float(int64_t(B) * K));
    // with baseline 'none' the slice's row weights are loss / (B Kr): hand it w (B Kr) as its losses
    for (int b = 0; b < B; b++)
        for (int j = 0; j < Kr; j++) pseudo[size_t(b) * Kr + j] = w[size_t(b) * K + k0 + j] * float(int64_t(B) * Kr);
    s.ulr.baseline = Baseline::None;
    LossHook hook = [&](const float*, const Targets&, int R, int, int, float* loss) -> Status {
        std::copy(pseudo.begin(), pseudo.begin() + R, loss);
        return {};
    };
    StepStats st;
    check(env, placed_gradients(m, d.x, d.y, B, s, m.step, &st, &hook));
    Napi::Float32Array g = Napi::Float32Array::New(env, size_t(m.n_params));
    std::copy(m.grads.data(), m.grads.data() + m.n_params, g.Data());
    return g;
    OF_NAPI_END(env)
}

// perturbationLosses(x, y, rows, estimator (spsa | es), p0, p1) -> Float32Array (2 P): the mean batch losses at
// theta + eps z_p (first P) and theta - eps z_p (last P) for the directions [p0, p1) of this step; zeros elsewhere.
Napi::Value ModelWrap::PerturbationLosses(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    OF_NAPI_BEGIN
    Model& m = model(env, Use::Mutate);
    EstimatorConfig e;
    DataRef d = parse_batch(env, info, m, &e);
    require_seed_replay(env, m, e);
    const int P = e.wp.population;
    const int p0 = int(require_int(info[4], "p0", 0, P)), p1 = int(require_int(info[5], "p1", p0, P));
    Napi::Float32Array out = Napi::Float32Array::New(env, size_t(2 * P));
    std::fill(out.Data(), out.Data() + 2 * P, 0.0f);
    check(env, placed_seed_replay_losses(m, d.x, d.y, int(d.rows), e, p0, p1, out.Data(), out.Data() + P));
    return out;
    OF_NAPI_END(env)
}

// applyPerturbationUpdate(losses (2 P), estimator, optimizer, rows): every direction's coefficient from all the
// losses, the gradient by seed replay, and the optimizer update (the same on every rank).
Napi::Value ModelWrap::ApplyPerturbationUpdate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    OF_NAPI_BEGIN
    Model& m = model(env, Use::Mutate);
    EstimatorConfig e = parse_estimator(env, info[1]);
    require_seed_replay(env, m, e);
    const int P = e.wp.population;
    OptimizerConfig o = parse_optimizer(env, info[2]);  // before the loss pointer: its getters may run JS
    const float* l = finite_floats(env, info[0], 2 * int64_t(P), "losses");
    const int rows = int(require_int(info[3], "rows", 1, 1 << 30));
    check(env, placed_seed_replay_update(m, e, o, l, l + P, rows));
    return env.Undefined();
    OF_NAPI_END(env)
}

Napi::Value ModelWrap::Fit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    OF_NAPI_BEGIN
    return start_fit(info, this);
    OF_NAPI_END(env)
}

Napi::Value ModelWrap::Cancel(const Napi::CallbackInfo& info) {
    if (model_) model_->cancel.store(true);
    return info.Env().Undefined();
}

Napi::Value ModelWrap::Dispose(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    OF_NAPI_BEGIN
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
    OF_NAPI_END(env)
}

namespace {
Napi::Array number_array(Napi::Env env, const std::vector<double>& v) {
    Napi::Array a = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); i++) a.Set(uint32_t(i), v[i]);
    return a;
}
}  // namespace

Napi::Value ModelWrap::State(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object r = Napi::Object::New(env);
    r.Set("disposed", !model_);
    if (model_) {
        r.Set("step", double(model_->step));
        r.Set("epochs", double(model_->epochs_run));
        r.Set("epochStep", double(model_->epoch_step));
        r.Set("frozen", model_->frozen);
        if (!model_->log_sigma.empty()) r.Set("logSigma", number_array(env, model_->log_sigma));
        r.Set("busy", model_->busy.load());
        r.Set("parameterCount", double(model_->n_params));
        r.Set("inputs", model_->inputs);
        r.Set("outputs", model_->outputs);
    }
    return r;
}

// exportState() -> { step, epochsRun, epochStep, optKind, optT, m, v }: the training state a checkpoint needs
// besides the parameters (copies; m and v are null before the first optimizer step).
Napi::Value ModelWrap::ExportState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    OF_NAPI_BEGIN
    Model& m = model(env);
    Napi::Object r = Napi::Object::New(env);
    r.Set("step", double(m.step));
    r.Set("epochsRun", double(m.epochs_run));
    r.Set("epochStep", double(m.epoch_step));
    r.Set("optKind", m.opt_kind);
    r.Set("optT", double(m.opt_t));
    r.Set("runningLoss", m.has_running ? Napi::Value(Napi::Number::New(env, m.running_loss)) : env.Null());
    r.Set("layerVar", m.layer_var.empty() ? env.Null() : Napi::Value(number_array(env, m.layer_var)));
    r.Set("logSigma", m.log_sigma.empty() ? env.Null() : Napi::Value(number_array(env, m.log_sigma)));
    std::vector<double> bn;  // batchNorm running statistics, unit by unit: mean then variance
    for (const DenseUnit& u : m.units)
        if (u.kind == UnitKind::BatchNorm) bn.insert(bn.end(), u.running->begin(), u.running->end());
    r.Set("bnRunning", bn.empty() ? env.Null() : Napi::Value(number_array(env, bn)));
    bool has = m.opt_kind >= 0;
    for (const char* key : {"m", "v"}) {
        const Buffer& b = key[0] == 'm' ? m.opt_m : m.opt_v;
        if (!has) {
            r.Set(key, env.Null());
            continue;
        }
        Napi::Float32Array a = Napi::Float32Array::New(env, size_t(m.n_params));
        std::copy(b.data(), b.data() + m.n_params, a.Data());
        r.Set(key, a);
    }
    return r;
    OF_NAPI_END(env)
}

// importState(state): the inverse of exportState, checked field by field.
Napi::Value ModelWrap::ImportState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    OF_NAPI_BEGIN
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
    Napi::Value lv = o.Get("layerVar");
    m.layer_var.clear();
    if (lv.IsArray()) {
        Napi::Array a = lv.As<Napi::Array>();
        if (a.Length() != m.units.size()) throw_status(env, {StatusCode::Checkpoint, "layerVar has the wrong length for this model"});
        for (uint32_t l = 0; l < a.Length(); l++) m.layer_var.push_back(require_number(a.Get(l), "layerVar"));
    }
    Napi::Value ls = o.Get("logSigma");
    m.log_sigma.clear();
    if (ls.IsArray()) {
        Napi::Array a = ls.As<Napi::Array>();
        if (a.Length() != m.units.size()) throw_status(env, {StatusCode::Checkpoint, "logSigma has the wrong length for this model"});
        for (uint32_t l = 0; l < a.Length(); l++) m.log_sigma.push_back(require_number(a.Get(l), "logSigma"));
    }
    Napi::Value bv = o.Get("bnRunning");
    if (bv.IsArray()) {
        Napi::Array a = bv.As<Napi::Array>();
        size_t want = 0;
        for (const DenseUnit& u : m.units)
            if (u.kind == UnitKind::BatchNorm) want += u.running->size();
        if (a.Length() != want) throw_status(env, {StatusCode::Checkpoint, "bnRunning has the wrong length for this model"});
        uint32_t i = 0;
        for (const DenseUnit& u : m.units) {
            if (u.kind != UnitKind::BatchNorm) continue;
            const size_t C = u.running->size() / 2;
            for (size_t j = 0; j < u.running->size(); j++) {
                const double v = require_number(a.Get(i++), "bnRunning");
                if (!std::isfinite(v) || (j >= C && v < 0.0)) throw_status(env, {StatusCode::Checkpoint, "bnRunning holds a bad value"});
                (*u.running)[j] = float(v);
            }
        }
    }
    return env.Undefined();
    OF_NAPI_END(env)
}

// setFrozen(n): the first n dense layers stop training (0 unfreezes; at least one layer stays trainable).
Napi::Value ModelWrap::SetFrozen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    OF_NAPI_BEGIN
    Model& m = model(env, Use::Mutate);
    const int frozen = int(require_int(info[0], "frozen layers", 0, int64_t(m.param_units()) - 1));
    if (frozen != m.frozen) {  // a pipelined first module kept from before indexes the other units: drop it
        m.ws.first[0].pending = m.ws.first[1].pending = false;
        if (m.device) m.device->reset_pipeline();
    }
    m.frozen = frozen;
    return env.Undefined();
    OF_NAPI_END(env)
}

// inputGradients(x, y, rows) -> { grads: Float32Array (rows x inputs), loss }: d(mean loss)/dx by backprop
// (for white-box attacks such as FGSM and PGD). The model must be differentiable.
Napi::Value ModelWrap::InputGradients(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    OF_NAPI_BEGIN
    Model& m = model(env);
    EstimatorConfig bp;  // backprop: the model must be differentiable
    DataRef d = parse_batch(env, info, m, &bp, false);
    Napi::Float32Array dx = Napi::Float32Array::New(env, size_t(d.rows) * m.inputs);
    StepStats st;
    check(env, bp_gradients(m, d.x, d.y, int(d.rows), &st, dx.Data()));
    Napi::Object r = Napi::Object::New(env);
    r.Set("grads", dx);
    r.Set("loss", st.loss);
    return r;
    OF_NAPI_END(env)
}

}  // namespace of::addon

