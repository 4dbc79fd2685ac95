// maxPool2d, avgPool2d and globalAvgPool: per channel over kh x kw windows of a channels-last image (Co = C), no
// parameters. Max ignores padding taps and routes the gradient to the first maximal tap; avg divides by the taps
// inside the image. globalAvgPool is one avg window over the whole image, giving a flat vector.
#include "device/unit_pass.h"
#include "units/conv.h"

namespace of {

extern const UnitKind max_pool_kind, avg_pool_kind;

namespace {

PoolKind pool_kind(const Unit& u) { return u.kind == &max_pool_kind ? PoolKind::Max : PoolKind::Avg; }

Status build(const LayerSpec& l, ModelBuilder& b, bool global) {
    Unit u{b.width, 0, -1, -1};
    OF_TRY(image_window(l, b, u, global));
    u.kind = l.type->unit;
    u.g.Co = b.C;
    return add_image_unit(b, u, global);
}
Status build_window(const LayerSpec& l, ModelBuilder& b) { return build(l, b, false); }
Status build_global(const LayerSpec& l, ModelBuilder& b) { return build(l, b, true); }

void forward(const KernelTable& k, const Unit& u, const float*, const float* in, int rows, float* out, float*,
             const SeqCtx*) {
    k.pool_forward(out, in, rows, u.g, pool_kind(u));
}

void backward(const KernelTable& k, const Unit& u, const float*, const float* in, int rows, const float* dv, float*,
              float* din, float*, const SeqCtx*) {
    if (din) k.pool_backward(din, dv, in, rows, u.g, pool_kind(u));
}

Status device_forward(const UnitPass& p, const float* x, float* v) {
    return p.d->pool(dev::PoolArgs{v, x, p.u.g, pool_kind(p.u)}, p.values());
}
Status device_backward(const UnitPass& p, const float* x, const float* dv, float, bool, float* din) {
    return p.d->pool_backward(dev::PoolBackArgs{din, dv, x, p.u.g, pool_kind(p.u)}, int64_t(p.rows) * p.u.I);
}
const DeviceUnitOps device{true, device_forward, device_backward};

}  // namespace

extern const LayerType max_pool_layer{"maxPool2d", &max_pool_kind, read_window, build_window};
extern const LayerType avg_pool_layer{"avgPool2d", &avg_pool_kind, read_window, build_window};
extern const LayerType global_avg_pool_layer{"globalAvgPool", &avg_pool_kind, nullptr, build_global};
extern const UnitKind max_pool_kind{UnitFamily::Plain, nullptr, &device, nullptr, nullptr, forward, backward};
extern const UnitKind avg_pool_kind{UnitFamily::Plain, nullptr, &device, nullptr, nullptr, forward, backward};
bool Unit::pool() const { return kind == &max_pool_kind || kind == &avg_pool_kind; }

}  // namespace of
