// What the kinds share while a model is built: the builder's slab layout and output checks, uniform init from
// Philox, the weights option; and the two layer types that make no unit: an activation (it joins the unit before
// it, or follows a residual block's sum) and flatten (it only forgets the layout).
#include <algorithm>

#include "core/shape.h"
#include "rng/philox.h"
#include "units/unit.h"

namespace of {

Status ModelBuilder::params(Unit& u, uint64_t weights, uint64_t bias) {
    u.w_off = int64_t(total);
    total += weights;
    if (bias) u.b_off = int64_t(total), total += bias;
    OF_CHECK(total <= kMaxElements, Shape, "model has too many parameters");
    u.n_par = int64_t(total) - u.w_off;
    return {};
}

Status ModelBuilder::params(Unit& u, uint64_t rows, uint64_t cols, const char* what, uint64_t bias) {
    uint64_t weights = 0;
    OF_TRY(checked_mul(rows, cols, &weights, what));
    return params(u, weights, bias);
}

Status ModelBuilder::output(Unit& u, uint64_t a, uint64_t b) {
    uint64_t on = 0;
    OF_TRY(checked_mul(a, b, &on, "layer output"));
    OF_CHECK(on <= uint64_t(1) << 28, Shape, where + ": output too large");
    u.O = int(on);
    return {};
}

void ModelBuilder::add(const Unit& u) {
    m.units.push_back(u);
    width = u.O;
    if (!u.flat_linear() || u.quant || u.rank) m.mlp = false;  // the fused dense estimators no longer apply
}

// Uniforms in [-1, 1) from the top 24 bits of each Philox word, times bound.
void init_uniform(const Unit& u, float* theta, float bound, uint64_t seed, uint32_t unit) {
    fill_uniform(theta + u.w_off, (u.b_off < 0 ? u.w_off + u.n_par : u.b_off) - u.w_off, bound, seed, unit, 0);
}

void fill_uniform(float* w, int64_t n, float bound, uint64_t seed, uint32_t unit, uint32_t draw) {
    for (int64_t g = 0; g < (n + 3) / 4; g++) {
        U32x4 r = philox4x32_10(uint32_t(g), uint32_t(g >> 32), philox_stream(kStreamInit, unit), draw, uint32_t(seed),
                                uint32_t(seed >> 32));
        for (int j = 0; j < 4 && 4 * g + j < n; j++)
            w[4 * g + j] = (2.0f * (float(r.v[j] >> 8) * (1.0f / 16777216.0f)) - 1.0f) * bound;
    }
}

int read_quant(const LayerReader& r) {
    const std::string s = r.text_or("weights", "real");
    if (s == "binary") return 1;
    if (s == "ternary") return 2;
    if (s != "real") r.fail("unknown weights '" + s + "' (real, binary or ternary)");
    return 0;
}

void expand_row_weights(float* wexp, const float* w, int rows, int64_t positions) {
    for (int r = 0; r < rows; r++) std::fill(wexp + r * positions, wexp + (r + 1) * positions, w ? w[r] : 1.0f);
}

namespace {

void read_activation(const LayerReader& r, LayerSpec& l) {
    const std::string name = r.text("activation");
    if (!act_named(name, &l.act)) r.fail("unknown activation '" + name + "'");
    l.alpha = l.act == Act::Quantize ? float(r.number_or("levels", 4.0)) : float(r.number_or("alpha", 0.01));
    if (l.act == Act::Quantize && !(l.alpha >= 2.0f && l.alpha <= 65536.0f))
        r.fail("quantize levels must be in [2, 65536]");
}

Status build_activation(const LayerSpec& l, ModelBuilder& b) {
    if (b.residual_end == b.index - 1) {  // relu(x + f(x)): applies to the sum
        b.m.units.back().post_act = l.act, b.m.units.back().post_alpha = l.alpha;
        return {};
    }
    OF_CHECK(!b.m.units.empty(), Config,
             "the first layer must be dense, conv2d or a pooling layer (an activation needs a layer before it)");
    Unit& u = b.m.units.back();
    OF_CHECK(u.act == Act::Identity, Config, b.where + ": two activations in a row are not supported");
    u.act = l.act;
    u.alpha = l.alpha;
    return {};
}

Status build_flatten(const LayerSpec&, ModelBuilder& b) {
    b.spatial = b.seq = false;
    return {};
}

}  // namespace

extern const LayerType activation_layer{"activation", nullptr, read_activation, build_activation};
extern const LayerType flatten_layer{"flatten", nullptr, nullptr, build_flatten};

}  // namespace of
