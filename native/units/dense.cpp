// dense: out (rows, O) = in (rows, I) W^T + b, W (O, I) then b (O) in the slab. Glorot-uniform weights, zero bias.
// A leading run of dense layers may be frozen (fine-tuning); the forward may use binary or ternary weights. On a
// sequence it acts per position (units/conv.cpp's per-position dense).
// With an adapter (rank > 0) the layer is an adapter unit (units/adapter.cpp).
#include <algorithm>
#include <cmath>

#include "core/shape.h"
#include "device/unit_pass.h"
#include "units/conv.h"

namespace of {
namespace {

void read(const LayerReader& r, LayerSpec& l) {
    l.units = int(r.integer("units", 1, 1 << 28));
    l.bias = r.flag_or("bias", true);
    l.trainable = r.flag_or("trainable", true);
    l.quant = read_quant(r);
    const double rank = r.number_or("adapterRank", 0.0), alpha = r.number_or("adapterAlpha", 0.0);
    if (rank != std::floor(rank) || rank < 0.0 || rank > double(1 << 28)) r.fail("adapterRank must be an integer >= 1");
    if (!(alpha >= 0.0)) r.fail("adapterAlpha must be positive");
    l.adapter_rank = int(rank), l.adapter_alpha = float(alpha);
}

Status build(const LayerSpec& l, ModelBuilder& b) {
    Model& m = b.m;
    OF_CHECK(!b.spatial, Config, b.where + ": dense needs a flat input; add flatten() after the spatial layers");
    OF_TRY(check_positive(l.units, "dense units"));
    if (b.seq) {  // per position: (T, F) -> (T, units), a conv-like unit (units/conv.h)
        OF_CHECK(l.trainable, Config, b.where + ": a dense layer on a sequence cannot be frozen");
        if (!l.adapter_rank) return add_position_dense(b, UnitKind::SeqDense, l.units, l.bias, l.quant);
        Unit u{b.width, 0, -1, -1};  // an adapter per position: T positions of F inputs (units/adapter.cpp)
        u.g.H = u.g.Ho = b.T, u.g.W = u.g.Wo = 1, u.g.C = b.F, u.g.Co = l.units;
        OF_TRY(b.output(u, uint64_t(b.T), uint64_t(l.units)));
        OF_TRY(adapter_layout(l, b, u));
        b.F = l.units;
        b.add(u);
        return {};
    }
    uint64_t wn = 0;
    OF_TRY(checked_mul(uint64_t(b.width), uint64_t(l.units), &wn, "dense weight"));
    OF_CHECK(l.trainable || int(m.units.size()) == m.frozen, Config,
             b.where + ": only a leading run of dense layers can be frozen");
    if (!l.trainable) m.frozen++;
    Unit u{b.width, l.units, -1, -1};
    u.kind = UnitKind::Dense, u.quant = l.quant;
    if (l.quant) m.has_quant = true;
    if (l.adapter_rank > 0) OF_TRY(adapter_layout(l, b, u));  // units/adapter.cpp
    else OF_TRY(b.params(u, wn, l.bias ? uint64_t(l.units) : 0));
    b.add(u);
    return {};
}

void init(const Unit& u, float* theta, uint64_t seed, uint32_t unit) {
    init_uniform(u, theta, std::sqrt(6.0f / float(u.I + u.O)), seed, unit);
}

void tensors(const Unit& u, const std::string& name, std::vector<UnitTensor>& out) {
    out.push_back({name + ".weight", u.w_off, {u.O, u.I}});
    if (u.b_off >= 0) out.push_back({name + ".bias", u.b_off, {u.O}});
}

void forward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, float* out, float*,
             const SeqCtx*) {
    k.gemm_nt(out, in, theta + u.w_off, rows, u.O, u.I, 1.0f, 0.0f);
}

// dW = dv^T in, db = colsum(dv), din = dv W
void backward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, const float* dv,
              float* dW, float* din, float*, const SeqCtx*) {
    if (dW) {
        k.gemm_tn(dW, dv, in, nullptr, u.O, u.I, rows, 1.0f, 0.0f);
        if (u.b_off >= 0) k.col_sum(dW + int64_t(u.O) * u.I, dv, rows, u.O);
    }
    if (din) k.gemm_nn(din, dv, theta + u.w_off, rows, u.I, u.O, 1.0f, 0.0f);
}

// dW = alpha (diag(w) S)^T in, db = alpha colsum(diag(w) S)
void lr_reduce(const KernelTable& k, const Unit& u, const float* in, int rows, const float* S, const float* w,
               float alpha, float* dW, float* db, float*, float* wexp) {
    k.gemm_tn(dW, S, in, w, u.O, u.I, rows, alpha, 0.0f);
    if (u.b_off < 0) return;
    if (!w && alpha == 1.0f) return k.col_sum(db, S, rows, u.O);
    if (!w) std::fill(wexp, wexp + rows, 1.0f);
    k.lr_bias_reduce(db, w ? w : wexp, S, rows, u.O, alpha, false);
}

const DeviceUnitOps device{true};  // a GEMM unit, in module training too

}  // namespace

extern const LayerType dense_layer{"dense", UnitKind::Dense, read, build};
extern const UnitOps dense_unit{UnitFamily::Plain, "dense", &device, init, tensors, forward, backward, lr_reduce};

}  // namespace of
