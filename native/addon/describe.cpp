// describeLayers(spec) -> { layers: [{ output, tensors: [{ name, shape }] }], error?: { code, message } }: the layout
// of a spec's layers (model/describe.h) as plain JS data, for lib/layers/topology.ts. A layer that does not fit is
// returned, not thrown: `layers` then holds those before it. Bad arguments throw. Nothing is kept or allocated.
#include "model/describe.h"

#include "addon/args.h"
#include "addon/model_spec.h"
#include "addon/model_wrap.h"

namespace of::addon {

Napi::Value DescribeLayersJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<LayerInfo> layers;
    const Status s = describe_layers(parse_model_spec(env, info[0]), &layers);
    Napi::Array rows = Napi::Array::New(env, layers.size());
    for (size_t i = 0; i < layers.size(); i++) {
        Napi::Array tensors = Napi::Array::New(env, layers[i].tensors.size());
        for (size_t j = 0; j < layers[i].tensors.size(); j++) {
            Napi::Object t = Napi::Object::New(env);
            t.Set("name", layers[i].tensors[j].name);
            t.Set("shape", js_array(env, layers[i].tensors[j].shape));
            tensors.Set(uint32_t(j), t);
        }
        Napi::Object l = Napi::Object::New(env);
        l.Set("output", js_array(env, layers[i].output));
        l.Set("tensors", tensors);
        rows.Set(uint32_t(i), l);
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("layers", rows);
    if (!s.ok()) {
        Napi::Object error = Napi::Object::New(env);
        error.Set("code", status_code_name(s.code));
        error.Set("message", s.message);
        out.Set("error", error);
    }
    return out;
}

}  // namespace of::addon
