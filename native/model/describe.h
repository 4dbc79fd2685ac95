// What a layer list computes, as Model::create lays it out (the one shape inference): per layer of the spec, the
// shape it gives and its parameter tensors. No parameter slab is allocated, and nothing here infers a shape.
#pragma once
#include <vector>

#include "core/status.h"
#include "model/model.h"
#include "model/units.h"

namespace of {

// One layer of a spec: its output ([features], [H, W, C] or [steps, features]) and the tensors of the units it
// made (none for an activation, a flatten or a block's begin and end).
struct LayerInfo {
    std::vector<int> output;
    std::vector<UnitTensor> tensors;
};

// The layout of spec.layers on spec's input, whatever the model's loss and last layer: those checks are a model's
// (Model::create), not the layers'. On an error, `out` holds the layers before the failing one (without tensors),
// so the failing layer is out->size().
Status describe_layers(const ModelSpec& spec, std::vector<LayerInfo>* out);

}  // namespace of
