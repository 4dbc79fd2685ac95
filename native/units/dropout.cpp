// dropout: in training, out (rows, O) = in * keep / (1 - rate), keep drawn per (sample, value) from Philox, and the
// gradient through the same mask; the identity in inference (the clean forward here). No parameters.
#include <algorithm>

#include "device/unit_pass.h"
#include "rng/philox.h"
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
// every copy of a sample (row r is sample sample0 + r / rep); the gradient through the same mask.
void mask(const Unit& u, const float*, const float* in, int rows, float* out, const TrainCtx& t) {
    const double cut = double(u.rate) * 4294967296.0;  // drop when the 32-bit word is below rate 2^32
    const float scale = 1.0f / (1.0f - u.rate);
    for (int r = 0; r < rows; r++) {
        const uint32_t sample = uint32_t(t.sample0 + r / t.rep);
        const float* x = in + int64_t(r) * u.O;
        float* y = out + int64_t(r) * u.O;
        for (int j0 = 0; j0 < u.O; j0 += 4) {
            const U32x4 w = philox4x32_10(uint32_t(j0 / 4), sample, philox_stream(kStreamMask, t.unit), t.step,
                                          uint32_t(t.seed), uint32_t(t.seed >> 32));
            for (int j = j0; j < std::min(u.O, j0 + 4); j++) y[j] = double(w.v[j - j0]) < cut ? 0.0f : x[j] * scale;
        }
    }
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
