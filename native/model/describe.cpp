// Layer descriptions: a model's units read back per layer of its spec (see describe.h).
#include "model/describe.h"

#include <map>

namespace of {

std::vector<std::vector<TensorInfo>> unit_tensors(const Model& m) {
    std::vector<std::vector<TensorInfo>> out(m.units.size());
    std::map<UnitKind, int> count;  // tensors are numbered per kind: dense0, dense1, ..., conv0, ..., gru0, ...
    static const std::map<UnitKind, std::string> names{{UnitKind::Dense, "dense"},
                                                       {UnitKind::Conv2d, "conv"},
                                                       {UnitKind::LayerNorm, "norm"},
                                                       {UnitKind::BatchNorm, "batchnorm"},
                                                       {UnitKind::GroupNorm, "groupnorm"},
                                                       {UnitKind::GraphConv, "graph"},
                                                       {UnitKind::Rnn, "rnn"},
                                                       {UnitKind::Gru, "gru"},
                                                       {UnitKind::Lstm, "lstm"},
                                                       {UnitKind::Lif, "lif"}};
    for (size_t i = 0; i < m.units.size(); i++) {
        const DenseUnit& u = m.units[i];
        if (!u.param()) continue;
        const std::string name = names.at(u.kind) + std::to_string(count[u.kind]++);
        auto add = [&](const char* what, int64_t offset, std::vector<int> shape) {
            out[i].push_back({name + what, std::move(shape), offset});
        };
        if (u.kind == UnitKind::Dense) {
            add(".weight", u.w_off, {u.O, u.I});
            if (u.b_off >= 0) add(".bias", u.b_off, {u.O});
        } else if (u.kind == UnitKind::Conv2d) {
            add(".weight", u.w_off, {u.g.Co, u.g.kh, u.g.kw, u.g.C});
            if (u.b_off >= 0) add(".bias", u.b_off, {u.g.Co});
        } else if (u.norm()) {
            add(".weight", u.w_off, {u.g.Co});
            add(".bias", u.b_off, {u.g.Co});
        } else if (u.kind == UnitKind::GraphConv) {
            add(".weight", u.w_off, {u.g.Co, u.g.C});
            add(".bias", u.b_off, {u.g.Co});
        } else if (u.recurrent()) {  // gates in the order of recurrent.h
            const int GH = u.q.G * u.q.H;
            add(".weight", u.w_off, {GH, u.q.F});
            if (u.q.has_u) add(".recurrent", u.w_off + int64_t(GH) * u.q.F, {GH, u.q.H});
            add(".bias", u.b_off, {GH});
        }
    }
    return out;
}

Status describe_layers(const ModelSpec& spec, std::vector<LayerInfo>* out) {
    using K = LayerSpec::Kind;
    // A flatten after the last layer and the mse loss make the whole-model checks pass whatever the layers give.
    ModelSpec laid = spec;
    laid.layers.push_back(LayerSpec{K::Flatten});
    laid.loss = LossKind::Mse;
    std::unique_ptr<Model> m;
    OF_TRY(Model::create(laid, &m, /*with_params=*/false));
    const auto tensors = unit_tensors(*m);
    // The shape flowing between layers, and the input shape of each open block.
    std::vector<int> shape = spec.in_h > 0   ? std::vector<int>{spec.in_h, spec.in_w, spec.in_c}
                             : spec.in_t > 0 ? std::vector<int>{spec.in_t, spec.in_f}
                                             : std::vector<int>{spec.inputs};
    std::vector<std::vector<int>> blocks;
    size_t next = 0;  // the next unit: each layer below makes one, but activations, flatten and block markers
    out->clear();
    for (const LayerSpec& l : spec.layers) {
        LayerInfo info;
        const bool makes_unit =
            l.kind != K::Activation && l.kind != K::Flatten && l.kind != K::ResidualBegin && l.kind != K::ResidualEnd;
        OF_CHECK(!makes_unit || next < m->units.size(), Internal,
                 "describe: the layers and the model's units disagree");
        const DenseUnit* u = makes_unit ? &m->units[next] : nullptr;
        if (u) info.tensors = tensors[next++];
        switch (l.kind) {
            case K::Activation:
            case K::Dropout:
            case K::LayerNorm:
            case K::BatchNorm:
            case K::GroupNorm: break;  // the shape is unchanged
            case K::Flatten: {
                int64_t n = 1;
                for (int v : shape) n *= v;
                shape = {int(n)};
                break;
            }
            case K::ResidualBegin: blocks.push_back(shape); break;
            case K::ResidualEnd:
            case K::ConcatEnd:
                OF_CHECK(!blocks.empty(), Internal, "describe: a block end without its beginning");
                if (l.kind == K::ResidualEnd) {
                    blocks.pop_back();
                    break;
                }
                // concat: the block's input positions, with [x, f(x)] along the last axis
                shape = blocks.back(), blocks.pop_back();
                shape.back() = u->g.C + u->g.Co;
                break;
            case K::Dense: shape = {u->O}; break;
            case K::Conv2d:
            case K::MaxPool2d:
            case K::AvgPool2d: shape = {u->g.Ho, u->g.Wo, u->g.Co}; break;
            case K::GlobalAvgPool: shape = {u->g.Co}; break;
            case K::Rnn:
            case K::Gru:
            case K::Lstm:
            case K::Lif:
                shape = u->q.return_sequences ? std::vector<int>{u->q.T, u->q.H} : std::vector<int>{u->q.H};
                break;
            case K::Repeat: shape = {u->q.T, u->q.F}; break;
            case K::TimeMean: shape = {u->q.F}; break;
            case K::GraphConv: shape = {u->g.Ho, u->g.Co}; break;
        }
        info.output = shape;
        out->push_back(std::move(info));
    }
    OF_CHECK(next == m->units.size(), Internal, "describe: the layers and the model's units disagree");
    return {};
}

}  // namespace of
