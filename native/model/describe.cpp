// Layer descriptions: Model::create's layout of a spec, read per layer (see describe.h).
#include "model/describe.h"

#include <map>

#include "units/registry.h"

namespace of {

Status describe_layers(const ModelSpec& spec, std::vector<LayerInfo>* out) {
    // A flatten after the last layer and the mse loss make the checks of a whole model pass whatever the layers give.
    ModelSpec laid = spec;
    laid.layers.push_back(LayerSpec{find_layer_type("flatten")});
    laid.loss = LossKind::Mse;
    std::vector<LayerLayout> layout;
    std::unique_ptr<Model> m;
    const Status s = Model::create(laid, &m, &layout);
    out->clear();
    for (size_t i = 0; i < layout.size() && i < spec.layers.size(); i++) out->push_back({layout[i].output, {}});
    if (!s.ok()) return s;
    TensorNames names;  // as parameters() names them
    for (size_t i = 0, u = 0; i < out->size(); i++) {
        for (; u < size_t(layout[i].units); u++) {
            const std::vector<UnitTensor> t = names.of(m->units[u]);
            (*out)[i].tensors.insert((*out)[i].tensors.end(), t.begin(), t.end());
        }
    }
    return {};
}

}  // namespace of
