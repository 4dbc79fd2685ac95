// describeLayers(spec): the layout of a spec's layers (model/describe.h) as plain JS data, for lib/layers/topology.ts.
// No model is kept and no parameter is allocated.
#include "model/describe.h"

#include "addon/errors.h"
#include "addon/model_wrap.h"
#include "addon/parse.h"

namespace of::addon {

namespace {

Napi::Array int_array(Napi::Env env, const std::vector<int>& v) {
    Napi::Array a = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); i++) a.Set(uint32_t(i), v[i]);
    return a;
}

}  // namespace

Napi::Value DescribeLayersJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    OF_NAPI_BEGIN
    std::vector<LayerInfo> layers;
    check(env, describe_layers(parse_spec(env, info[0]), &layers));
    Napi::Array out = Napi::Array::New(env, layers.size());
    for (size_t i = 0; i < layers.size(); i++) {
        Napi::Array tensors = Napi::Array::New(env, layers[i].tensors.size());
        for (size_t j = 0; j < layers[i].tensors.size(); j++) {
            Napi::Object t = Napi::Object::New(env);
            t.Set("name", layers[i].tensors[j].name);
            t.Set("shape", int_array(env, layers[i].tensors[j].shape));
            tensors.Set(uint32_t(j), t);
        }
        Napi::Object l = Napi::Object::New(env);
        l.Set("output", int_array(env, layers[i].output));
        l.Set("tensors", tensors);
        out.Set(uint32_t(i), l);
    }
    return out;
    OF_NAPI_END(env)
}

}  // namespace of::addon
