// What a layer list computes, read back from the model Model::create lays out for it: per layer of the spec, its
// output shape and its parameter tensors. Model::create is the one shape inference; this file adds none, it names
// the units' tensors and reads each unit's geometry in spec order. Not the parameters themselves.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/model.h"

namespace of {

// One parameter tensor: its name (dense0.weight, conv0.bias, lstm1.recurrent, ...), shape and offset in the slab.
struct TensorInfo {
    std::string name;
    std::vector<int> shape;
    int64_t offset = 0;
};

// One layer of a spec: its output ([features], [H, W, C] or [steps, features]) and the tensors it owns (a block's
// begin and end own none: its inner layers do).
struct LayerInfo {
    std::vector<int> output;
    std::vector<TensorInfo> tensors;
};

// The tensors of each unit of m (empty for a unit without parameters), named per kind in unit order:
// dense (O, I) and (O); conv (Co, kh, kw, C) and (Co); norms (C) and (C); graphConv (H, F) and (H);
// recurrent W (G H, F), U (G H, H) (not lif) and b (G H).
std::vector<std::vector<TensorInfo>> unit_tensors(const Model& m);

// The layout of spec.layers on spec's input, whatever the model's loss and last layer: the checks of a whole model
// (its output and its loss) are Model::create's, not the layers'. No parameter slab is allocated. `out` gets one
// LayerInfo per layer of spec.layers.
Status describe_layers(const ModelSpec& spec, std::vector<LayerInfo>* out);

}  // namespace of
