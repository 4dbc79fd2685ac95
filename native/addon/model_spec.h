// The JS model spec ({ inputs, inputShape, loss, seed, layers }) -> ModelSpec. Each layer's options are read by
// its layer type (units/registry.h) through a reader over the JS object; bad values throw typed argument errors.
#pragma once
#include <napi.h>

#include "model/model.h"

namespace of::addon {

ModelSpec parse_model_spec(Napi::Env env, const Napi::Value& v);

}  // namespace of::addon
