// The JS model spec -> ModelSpec: the model's own fields here, each layer's options read by its layer type
// (units/) through JsLayerReader, a LayerReader over the layer's JS object.
#include "addon/model_spec.h"

#include "addon/args.h"
#include "units/unit.h"

namespace of::addon {
namespace {

// v as two integers in [lo, hi] (named `item`) into *a, *b; false where v is not an array of two.
bool read_pair(const Napi::Value& v, const char* item, int64_t lo, int64_t hi, int* a, int* b) {
    if (!v.IsArray() || v.As<Napi::Array>().Length() != 2) return false;
    *a = int(require_int(v.As<Napi::Array>().Get(uint32_t(0)), item, lo, hi));
    *b = int(require_int(v.As<Napi::Array>().Get(uint32_t(1)), item, lo, hi));
    return true;
}

class JsLayerReader final : public LayerReader {
   public:
    JsLayerReader(Napi::Object o, std::string prefix) : o_(o), prefix_(std::move(prefix)) {}
    bool is_text(const char* key) const override { return o_.Get(key).IsString(); }
    int64_t integer(const char* key, int64_t lo, int64_t hi) const override {
        return require_int(o_.Get(key), name(key).c_str(), lo, hi);
    }
    double number(const char* key) const override { return require_number(o_.Get(key), name(key).c_str()); }
    double number_or(const char* key, double def) const override { return opt_number(o_, key, def); }
    bool flag_or(const char* key, bool def) const override { return opt_bool(o_, key, def); }
    std::string text(const char* key) const override { return require_string(o_.Get(key), name(key).c_str()); }
    std::string text_or(const char* key, const std::string& def) const override {
        return o_.Get(key).IsUndefined() ? def : text(key);
    }
    void int_pair(const char* key, int64_t lo, int64_t hi, int* a, int* b) const override {
        if (!read_pair(o_.Get(key), key, lo, hi, a, b)) fail(name(key) + " must be a pair of integers");
    }
    std::vector<std::pair<int, int>> int_pairs(const char* key, const char* item, int64_t lo,
                                               int64_t hi) const override {
        const std::string bad = name(key) + " must be an array of [i, j] pairs";
        Napi::Value v = o_.Get(key);
        if (!v.IsArray()) fail(bad);
        Napi::Array a = v.As<Napi::Array>();
        std::vector<std::pair<int, int>> out;
        for (uint32_t e = 0; e < a.Length(); e++) {
            int i = 0, j = 0;
            if (!read_pair(a.Get(e), item, lo, hi, &i, &j)) fail(bad);
            out.emplace_back(i, j);
        }
        return out;
    }
    std::unique_ptr<LayerReader> object(const char* key) const override {
        return std::make_unique<JsLayerReader>(require_object(o_.Get(key), name(key).c_str()), name(key) + ".");
    }
    [[noreturn]] void fail(const std::string& what) const override { throw_status(o_.Env(), arg_error(what)); }

   private:
    std::string name(const char* key) const { return prefix_ + key; }
    Napi::Object o_;
    std::string prefix_;
};

}  // namespace

ModelSpec parse_model_spec(Napi::Env env, const Napi::Value& v) {
    Napi::Object o = require_object(v, "spec");
    ModelSpec spec;
    spec.inputs = int(require_int(o.Get("inputs"), "inputs", 1, 1 << 28));
    Napi::Value shape = o.Get("inputShape");
    if (shape.IsArray()) {  // [H, W, C]: channels-last images; [steps, features]: sequences
        Napi::Array a = shape.As<Napi::Array>();
        auto dim = [&](uint32_t i, int64_t hi) { return int(require_int(a.Get(i), "inputShape", 1, hi)); };
        if (a.Length() == 2) spec.in_t = dim(0, 1 << 16), spec.in_f = dim(1, 1 << 24);
        else if (a.Length() == 3) spec.in_h = dim(0, 1 << 16), spec.in_w = dim(1, 1 << 16), spec.in_c = dim(2, 1 << 16);
        else throw_status(env, arg_error("inputShape must be [height, width, channels] or [steps, features]"));
    }
    spec.loss = named<LossKind>(
        env, require_string(o.Get("loss"), "loss"),
        {{"crossEntropy", LossKind::CrossEntropy}, {"mse", LossKind::Mse}, {"zeroOne", LossKind::ZeroOne}}, "loss");
    spec.seed = uint64_t(require_int(o.Get("seed"), "seed", 0, (int64_t(1) << 53)));
    Napi::Value lv = o.Get("layers");
    if (!lv.IsArray()) throw_status(env, arg_error("Expected layers to be an array"));
    Napi::Array layers = lv.As<Napi::Array>();
    for (uint32_t i = 0; i < layers.Length(); i++) {
        Napi::Object l = require_object(layers.Get(i), "layer");
        const std::string type = require_string(l.Get("type"), "layer type");
        LayerSpec ls{};
        ls.type = find_layer_type(type);
        if (!ls.type) throw_status(env, arg_error("unknown layer type '" + type + "'"));
        if (ls.type->read) ls.type->read(JsLayerReader(l, ""), ls);
        spec.layers.push_back(ls);
    }
    return spec;
}

}  // namespace of::addon
