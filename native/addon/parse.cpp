// JS values to native structs: the model spec, the estimator and optimizer configs, and data sets (parse.h).
#include "addon/parse.h"

#include <algorithm>

#include "addon/args.h"

namespace of::addon {

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

}  // namespace of::addon
