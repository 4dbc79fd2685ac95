// dropout: in training, out (rows, O) = in * keep / (1 - rate), keep drawn per (sample, value) from Philox, and the
// gradient through the same mask; the identity in inference (the clean forward here). No parameters.
#include <algorithm>

#include "device/unit_pass.h"
#include "units/unit.h"

namespace of {

extern const UnitKind dropout_kind;

namespace {

void read(const LayerReader& r, LayerSpec& l) { l.rate = float(r.number("rate")); }

Status build(const LayerSpec& l, ModelBuilder& b) {  // any shape, unchanged
    OF_CHECK(!b.m.units.empty(), Config, b.where + ": dropout needs a layer before it");
    OF_CHECK(l.rate >= 0.0f && l.rate < 1.0f, Config, b.where + ": dropout rate must be in [0, 1)");
    Unit u{b.width, b.width, -1, -1};
    u.kind = &dropout_kind;
    u.rate = l.rate;
    b.add(u);
    return {};
}

// the identity (inference)
void forward(const KernelTable&, const Unit& u, const float*, const float* in, int rows, float* out, float*,
             const SeqCtx*) {
    std::copy(in, in + int64_t(rows) * u.O, out);
}
void backward(const KernelTable&, const Unit& u, const float*, const float*, int rows, const float* dv, float*,
              float* din, float*, const SeqCtx*) {
    if (din) std::copy(dv, dv + int64_t(rows) * u.O, din);
}

// Training: out = in * keep / (1 - rate), keep drawn per (sample, value) from Philox (seed, step, unit), the same for
// every copy of a sample (row r is sample sample0 + r / rep); the gradient through the same mask. The device's body
// (device/ops_elementwise.h) row by row.
void mask(const Unit& u, const float*, const float* in, int rows, float* out, const TrainCtx& t) {
    const dev::DropoutArgs a{out, in, u.O, t.rep, uint32_t(t.sample0), t.seed, t.step, t.unit, u.rate};
    for (int r = 0; r < rows; r++) dev::dropout_span(a, r, 0, u.O);
}

// On a device: the mask (the identity in inference), and the same mask on the gradient.
Status device_mask(const UnitPass& p, const float* x, float* y) {
    const Unit& u = p.u;
    return p.d->dropout(dev::DropoutArgs{y, x, u.O, p.rep, p.sample0, p.seed, p.step, uint32_t(p.l), u.rate},
                        p.values());
}
Status device_forward(const UnitPass& p, const float* x, float* v) {
    if (p.t.inference()) return p.d->add(dev::AddArgs{v, x, 0}, p.values());
    return device_mask(p, x, v);
}
Status device_backward(const UnitPass& p, const float*, const float* dv, float, bool, float* din) {
    return device_mask(p, dv, din);
}
const DeviceUnitOps device{false, device_forward, device_backward};

}  // namespace

extern const LayerType dropout_layer{"dropout", &dropout_kind, read, build};
extern const UnitKind dropout_kind{UnitFamily::Plain, nullptr, &device, nullptr, nullptr, forward,
                                   backward,          nullptr, nullptr, mask,    nullptr, mask};

}  // namespace of
