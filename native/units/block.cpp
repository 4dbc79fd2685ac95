// Residual and concat blocks. A block opens at its first unit, whose input (the block's input, the skip) is kept:
//   residual: out = post_act(act(f(x)) + x) at the block's last unit (skip_from); f(x) keeps x's shape
//   concat:   a concat unit after the block's layers, out = [x, f(x)] per position (pixel, step) along the last
//             axis; f(x) keeps x's positions. No parameters; its forward and backward need the skip, so the
//             callers run concat_forward / concat_backward.
#include "device/unit_pass.h"
#include "units/unit.h"

namespace of {

extern const UnitKind concat_kind;

namespace {

Status build_begin(const LayerSpec&, ModelBuilder& b) {  // residualBegin and concatBegin
    OF_CHECK(b.block_start < 0, Config, b.where + ": residual blocks do not nest yet");
    OF_CHECK(!b.m.units.empty(), Config, b.where + ": a residual block cannot be the first layer");
    b.block_start = int(b.m.units.size()), b.block = b;
    return {};
}

Status build_residual_end(const LayerSpec&, ModelBuilder& b) {
    Model& m = b.m;
    OF_CHECK(b.block_start >= 0, Config, b.where + ": residual end without a beginning");
    OF_CHECK(int(m.units.size()) > b.block_start, Config, b.where + ": an empty residual block");
    const LayerShape& x = b.block;
    const bool same = b.width == x.width && b.spatial == x.spatial && b.seq == x.seq &&
                      (!b.spatial || (b.H == x.H && b.W == x.W && b.C == x.C)) &&
                      (!b.seq || (b.T == x.T && b.F == x.F));
    OF_CHECK(same, Shape, b.where + ": a residual block's output must have its input's shape");
    m.units.back().skip_from = b.block_start;
    m.units[size_t(b.block_start)].starts_block = true;
    m.mlp = false;
    b.block_start = -1;
    b.residual_end = b.index;
    return {};
}

// [x, f(x)] along the last axis: features, channels or per-step features
Status build_concat_end(const LayerSpec&, ModelBuilder& b) {
    Model& m = b.m;
    OF_CHECK(b.block_start >= 0, Config, b.where + ": concat end without a beginning");
    OF_CHECK(int(m.units.size()) > b.block_start, Config, b.where + ": an empty concat block");
    const LayerShape& x = b.block;
    OF_CHECK(b.spatial == x.spatial && b.seq == x.seq && (!b.spatial || (b.H == x.H && b.W == x.W)) &&
                 (!b.seq || b.T == x.T),
             Shape, b.where + ": a concat block's output must keep its input's positions (image size, steps)");
    Unit u{b.width, 0, -1, -1};
    u.kind = &concat_kind;
    u.skip_from = b.block_start;
    m.units[size_t(b.block_start)].starts_block = true;
    const int P = b.spatial ? b.H * b.W : b.seq ? b.T : 1;
    u.g.Ho = P, u.g.Wo = 1, u.g.C = x.width / P, u.g.Co = b.width / P;
    u.O = b.width + x.width;
    if (b.spatial) b.C += x.C;
    if (b.seq) b.F += x.F;
    b.add(u);
    b.block_start = -1;
    return {};
}

void pass(const KernelTable&, const Unit&, const float*, const float*, int, float*, float*, const SeqCtx*) {}
void pass_back(const KernelTable&, const Unit&, const float*, const float*, int, const float*, float*, float*, float*,
               const SeqCtx*) {}

}  // namespace

void residual_add(const KernelTable& k, const Unit& u, float* a, const float* src, int rows, int rep) {
    for (int r = 0; r < rows; r++) {
        float* ar = a + int64_t(r) * u.O;
        const float* sr = src + int64_t(r / rep) * u.O;
        for (int o = 0; o < u.O; o++) ar[o] += sr[o];
    }
    if (u.post_act != Act::Identity) k.bias_act_forward(a, a, nullptr, rows, u.O, u.post_act, u.post_alpha);
}

// The join and its gradient's split: the device's bodies (device/ops_elementwise.h), a position at a time
void concat_forward(const Unit& u, float* out, const float* f, const float* src, int rows, int rep) {
    const dev::ConcatArgs a{out, f, src, u.g.Ho, u.g.C, u.g.Co, rep};
    for (int r = 0; r < rows; r++)
        for (int p = 0; p < u.g.Ho; p++) dev::concat_span(a, r, p, 0, u.g.C + u.g.Co);
}

void concat_backward(const Unit& u, const float* dout, float* df, float* dsrc, int rows) {
    const dev::ConcatBackArgs a{df, dsrc, dout, u.g.Ho, u.g.C, u.g.Co};
    for (int r = 0; r < rows; r++)
        for (int p = 0; p < u.g.Ho; p++) dev::concat_backward_span(a, r, p, 0, u.g.C + u.g.Co);
}

extern const LayerType residual_begin_layer{"residualBegin", nullptr, nullptr, build_begin};
extern const LayerType concat_begin_layer{"concatBegin", nullptr, nullptr, build_begin};
extern const LayerType residual_end_layer{"residualEnd", nullptr, nullptr, build_residual_end};
extern const LayerType concat_end_layer{"concatEnd", &concat_kind, nullptr, build_concat_end};
namespace {
void concat_train(const Unit& u, const float*, const float* in, int rows, float* out, const TrainCtx& t) {
    concat_forward(u, out, in, t.skip, rows, t.skip_rep);
}

// On a device: the join, and the split of its gradient (the block input's part waits at the block's start)
Status device_forward(const UnitPass& p, const float* x, float* v) {
    const Unit& u = p.u;
    return p.d->concat(dev::ConcatArgs{v, x, p.skip, u.g.Ho, u.g.C, u.g.Co, p.skip_rep}, p.values());
}
Status device_backward(const UnitPass& p, const float*, const float* dv, float, bool, float* din) {
    const Unit& u = p.u;
    return p.d->concat_backward(dev::ConcatBackArgs{din, p.skip_grad, dv, u.g.Ho, u.g.C, u.g.Co}, p.values());
}
const DeviceUnitOps device{false, device_forward, device_backward};

}  // namespace

extern const UnitKind concat_kind{UnitFamily::Plain, nullptr, &device, nullptr,     nullptr, pass,
                                  pass_back,         nullptr, nullptr, concat_train};
bool Unit::concat() const { return kind == &concat_kind; }

}  // namespace of
