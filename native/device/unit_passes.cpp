// One unit's passes on the device (model/units.h's semantics), through its kind's entries (device/unit_pass.h); the
// GEMM unit's where an entry is left out: the linear part out = X W^T, its weight gradient dv^T X with column sums
// for the bias, and its input gradient dv W, through the patches' adjoint for a conv-like unit.
#include "device/unit_pass.h"
#include "units/unit.h"

namespace of {
UnitPass DeviceTrainer::pass(const Model& m, int l, int rows, bool tf32) {
    return UnitPass{*this, dev_.get(), m, m.units[size_t(l)], l, rows, tf32};
}

DeviceBuffer& DeviceTrainer::unit_buffer(int l, int slot) {
    grow(unit_buffers_, size_t(l + 1));
    return (*unit_buffers_[size_t(l)])[size_t(slot)];
}

Status DeviceTrainer::col_sum(float* out, const float* d, int R, int O, float alpha, const float* mul) {
    const int chunks = (R + dev::kReduceRows - 1) / dev::kReduceRows;
    dev::ColSumArgs a{out, nullptr, d, R, O, alpha, mul};
    if (chunks == 1) {  // one launch
        a.direct = 1;
        return dev_->col_sum_partial(a, O);
    }
    OF_TRY(col_part_.reserve(dev_.get(), size_t(chunks) * O * sizeof(float)));
    a.part = col_part_.f();
    OF_TRY(dev_->col_sum_partial(a, int64_t(chunks) * O));
    return dev_->col_sum_final(a, O);
}

// A conv-like unit's patches go to cols_[l]: its weight gradient reads them.
Status DeviceTrainer::forward(const UnitPass& p, const float* x, float* v) {
    const DeviceUnitOps& o = *p.u.kind->device;
    if (o.forward) return o.forward(p, x, v);
    const Unit& u = p.u;
    const int n = int(u.gemm_rows(p.rows)), cols = u.gemm_cols(), fan = u.fan_in();
    const float* X = x;
    if (o.patches) {
        grow(cols_, size_t(p.l + 1));
        OF_TRY(cols_[size_t(p.l)]->reserve(dev_.get(), size_t(n) * fan * sizeof(float)));
        OF_TRY(o.patches(p, x, cols_[size_t(p.l)]->f()));
        X = cols_[size_t(p.l)]->f();
    }
    return dev_->gemm(false, true, n, cols, fan, 1.0f, X, fan, theta_ + u.w_off, fan, 0.0f, v, cols, p.tf32);
}

Status DeviceTrainer::forward_act(const UnitPass& p, const float* x, float* v, float* a) {
    const Unit& u = p.u;
    OF_TRY(forward(p, x, v));
    const float* bias = u.b_off < 0 || u.recurrent() ? nullptr : theta_ + u.b_off;  // recurrent: added inside
    if (!bias && u.act == Act::Identity && a == v) return {};
    return dev_->bias_act(dev::BiasActArgs{a, v, bias, u.gemm_cols(), u.act, u.alpha}, int64_t(p.rows) * u.O);
}

Status DeviceTrainer::backward(const UnitPass& p, const float* x, const float* dv, float alpha, bool weights,
                               float* din) {
    const DeviceUnitOps& o = *p.u.kind->device;
    if (!weights && !din) return {};
    if (o.backward) return o.backward(p, x, dv, alpha, weights, din);
    const Unit& u = p.u;
    const int n = int(u.gemm_rows(p.rows)), cols = u.gemm_cols(), fan = u.fan_in();
    if (weights) {
        float* G = grads_.f();
        OF_TRY(dev_->gemm(true, false, cols, fan, n, alpha, dv, cols, o.patches ? cols_[size_t(p.l)]->f() : x, fan,
                          0.0f, G + u.w_off, fan, p.tf32));
        if (u.b_off >= 0) OF_TRY(col_sum(G + u.b_off, dv, n, cols, alpha));
    }
    if (!din) return {};
    const float* W = params_.f() + u.w_off;
    if (!o.patches) return dev_->gemm(false, false, n, fan, cols, 1.0f, dv, cols, W, fan, 0.0f, din, fan, p.tf32);
    OF_TRY(dcols_.reserve(dev_.get(), size_t(n) * fan * sizeof(float)));
    OF_TRY(dev_->gemm(false, false, n, fan, cols, 1.0f, dv, cols, W, fan, 0.0f, dcols_.f(), fan, p.tf32));
    return o.patches_adjoint(p, dcols_.f(), din);
}

}  // namespace of
