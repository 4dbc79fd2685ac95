// JS values to native structs: the estimator and optimizer configs, and data sets (parse.h); the model spec is
// model_spec.cpp.
#include "addon/parse.h"

#include <algorithm>

#include "addon/args.h"

namespace of::addon {

// A schedule's kind by name, for the learning rate and for sigma (field: where the name is read; what: the
// schedule named in the unknown-name error).
static ScheduleKind schedule_kind(Napi::Env env, const Napi::Value& v, const char* field, const char* what) {
    return named<ScheduleKind>(env, require_string(v, field),
                               {{"constant", ScheduleKind::Constant},
                                {"step", ScheduleKind::Step},
                                {"exponential", ScheduleKind::Exponential},
                                {"cosine", ScheduleKind::Cosine}},
                               what);
}

EstimatorConfig parse_estimator(Napi::Env env, const Napi::Value& v) {
    Napi::Object o = require_object(v, "estimator");
    EstimatorConfig e;
    std::string kind = require_string(o.Get("kind"), "estimator kind");
    // data-parallel shards: the global index of this batch's first sample (noise rows, dropout masks)
    e.ulr.sample_base = uint32_t(opt_int(o, "sampleOffset", 0, 0, 1 << 30));
    if (kind == "bp") {
        e.bp.sigma = float(opt_number(o, "sigma", e.bp.sigma));
        return e;
    }
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
        c.copies = int(opt_int(o, "budget", 32, 2, 1 << 20));
    } else if (cv.IsArray()) {
        Napi::Array a = cv.As<Napi::Array>();
        for (uint32_t i = 0; i < a.Length(); i++)
            c.copies_per_layer.push_back(int(require_int(a.Get(i), "copies", 0, 1 << 20)));
        c.copies =
            c.copies_per_layer.empty() ? 0 : *std::max_element(c.copies_per_layer.begin(), c.copies_per_layer.end());
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
        c.schedule = schedule_kind(env, so.Get("kind"), "sigmaSchedule.kind", "sigma schedule");
        c.every = int(opt_int(so, "every", 1, 1, 1 << 20));
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
    c.layerwise =
        named<bool>(env, opt_string(o, "injection", "all"), {{"all", false}, {"layerwise", true}}, "injection");
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
    c.baseline = named<Baseline>(env, opt_string(o, "baseline", "loo"),
                                 {{"loo", Baseline::LeaveOneOut},
                                  {"none", Baseline::None},
                                  {"mean", Baseline::BatchMean},
                                  {"clean", Baseline::Clean},
                                  {"running", Baseline::Running}},
                                 "baseline");
    c.density = named<Density>(
        env, opt_string(o, "noise", "normal"),
        {{"normal", Density::Normal}, {"laplace", Density::Laplace}, {"logistic", Density::Logistic}}, "noise density");
    c.score =
        named<Score>(env, opt_string(o, "score", "exact"), {{"exact", Score::Exact}, {"sign", Score::Sign}}, "score");
    c.shared_prefix = opt_bool(o, "sharedPrefix", true);
    c.store_noise = opt_bool(o, "storeNoise", true);
    const std::string precision = opt_string(o, "precision", "float32");
    if (precision == "bf16") c.precision = UlrConfig::Precision::Bf16;
    else if (precision != "float32")
        throw_status(env, arg_error("unknown precision '" + precision + "' (float32 or bf16)"));
    Napi::Value mods = o.Get("modules");
    if (mods.IsArray()) {  // [[0, e0], [e0, e1], ...]: consecutive ranges of layers with parameters
        Napi::Array a = mods.As<Napi::Array>();
        int prev = 0;
        for (uint32_t i = 0; i < a.Length(); i++) {
            Napi::Value r = a.Get(i);
            if (!r.IsArray() || r.As<Napi::Array>().Length() != 2)
                throw_status(env, arg_error("modules must be [start, end] pairs of indices of layers with parameters"));
            int start = int(require_int(r.As<Napi::Array>().Get(uint32_t(0)), "modules", 0, 1 << 20));
            int end = int(require_int(r.As<Napi::Array>().Get(uint32_t(1)), "modules", 1, 1 << 20));
            if (start != prev || end <= start)
                throw_status(env,
                             arg_error("modules must be consecutive non-empty [start, end) ranges from dense layer 0"));
            c.modules.push_back(end);
            prev = end;
        }
    }
    c.concurrent = opt_bool(o, "concurrent", true);
    c.pipeline = opt_bool(o, "pipeline", false);
    c.exact_boundary = opt_bool(o, "exactBoundary", false);
    c.has_seed = !o.Get("seed").IsUndefined();
    c.seed = uint64_t(opt_int(o, "seed", int64_t(c.seed), 0, int64_t(1) << 53));
    return e;
}

// lib/schedules.ts's plain object; validate_optimizer checks the ranges.
static LrSchedule parse_schedule(Napi::Env env, const Napi::Value& v) {
    Napi::Object o = require_object(v, "optimizer schedule");
    LrSchedule c;
    c.kind = schedule_kind(env, o.Get("kind"), "schedule kind", "schedule");
    c.warmup = opt_int(o, "warmup", 0, 0, int64_t(1) << 52);
    c.every = opt_int(o, "every", 1, 1, int64_t(1) << 52);
    c.steps = opt_int(o, "steps", 1, 1, int64_t(1) << 52);
    c.gamma = opt_number(o, "gamma", 1.0);
    c.min_lr = opt_number(o, "minLr", 0.0);
    return c;
}

OptimizerConfig parse_optimizer(Napi::Env env, const Napi::Value& v) {
    Napi::Object o = require_object(v, "optimizer");
    OptimizerConfig c;
    c.kind = named<OptKind>(env, require_string(o.Get("kind"), "optimizer kind"),
                            {{"sgd", OptKind::Sgd}, {"adam", OptKind::Adam}, {"adamw", OptKind::AdamW}}, "optimizer");
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
    check(env, validate_tokens(m, d.x, d.rows));
    return d;
}

DataRef parse_data(Napi::Env env, const Model& m, const Napi::Value& xv, const Napi::Value& yv, const Napi::Value& rv) {
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
