// The parameter-free sequence reshapes: repeat (a vector -> T copies, in (rows, F) -> out (rows, T F)) and
// timeMean (T steps -> their mean, in (rows, T F) -> out (rows, F)). A row holds a sequence step-major: row r,
// step t, feature f at (r T + t) F + f.
#include "device/unit_pass.h"
#include "units/unit.h"

namespace of {

extern const UnitKind repeat_kind, time_mean_kind;

namespace {

void read_repeat(const LayerReader& r, LayerSpec& l) { l.steps = int(r.integer("steps", 1, 1 << 16)); }

Status build_repeat(const LayerSpec& l, ModelBuilder& b) {
    OF_CHECK(!b.seq && !b.spatial, Config, b.where + ": repeat needs a flat input");
    OF_CHECK(l.steps >= 1 && l.steps <= 1 << 16, Config, b.where + ": repeat steps must be in [1, 65536]");
    Unit u{b.width, 0, -1, -1};
    u.kind = &repeat_kind, u.q.T = l.steps, u.q.F = b.width;
    b.T = l.steps, b.F = b.width, b.seq = true;
    OF_TRY(b.output(u, uint64_t(u.q.T), uint64_t(u.q.F)));
    b.add(u);
    return {};
}

Status build_time_mean(const LayerSpec&, ModelBuilder& b) {
    OF_CHECK(
        b.seq, Config,
        b.where + ": this layer needs a sequence input (inputShape [steps, features] on the first layer, or repeat())");
    Unit u{b.width, 0, -1, -1};
    u.kind = &time_mean_kind, u.q.T = b.T, u.q.F = b.F;
    b.seq = false;
    OF_TRY(b.output(u, 1, uint64_t(u.q.F)));
    b.add(u);
    return {};
}

// The maps are the device's bodies (device/ops_recurrent.h), a row at a time.
// in (rows, F) -> out (rows, T F)
void forward_repeat(const KernelTable&, const Unit& u, const float*, const float* in, int rows, float* out, float*,
                    const SeqCtx*) {
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < u.q.T; t++)
            dev::step_copy_span(dev::TimeArgs{out, in, u.q.T, u.q.F}, r, t, 0, u.q.F, false);
}

// din = the sum of dout over the steps
void backward_repeat(const KernelTable&, const Unit& u, const float*, const float*, int rows, const float* dout, float*,
                     float* din, float*, const SeqCtx*) {
    for (int r = 0; din && r < rows; r++)
        dev::step_sum_span(dev::TimeArgs{din, dout, u.q.T, u.q.F}, r, 0, u.q.F, false);
}

// in (rows, T F) -> out (rows, F)
void forward_time_mean(const KernelTable&, const Unit& u, const float*, const float* in, int rows, float* out, float*,
                       const SeqCtx*) {
    for (int r = 0; r < rows; r++) dev::step_sum_span(dev::TimeArgs{out, in, u.q.T, u.q.F}, r, 0, u.q.F, true);
}

// din = dout / T at every step
void backward_time_mean(const KernelTable&, const Unit& u, const float*, const float*, int rows, const float* dout,
                        float*, float* din, float*, const SeqCtx*) {
    for (int r = 0; din && r < rows; r++)
        for (int t = 0; t < u.q.T; t++)
            dev::step_copy_span(dev::TimeArgs{din, dout, u.q.T, u.q.F}, r, t, 0, u.q.F, true);
}

// on a device: the same maps, one kernel each
Status device_repeat(const UnitPass& p, const float* x, float* v) {
    return p.d->repeat(dev::TimeArgs{v, x, p.u.q.T, p.u.q.F}, p.values());
}
Status device_repeat_grad(const UnitPass& p, const float*, const float* dv, float, bool, float* din) {
    return p.d->repeat_backward(dev::TimeArgs{din, dv, p.u.q.T, p.u.q.F}, int64_t(p.rows) * p.u.q.F);
}
Status device_time_mean(const UnitPass& p, const float* x, float* v) {
    return p.d->time_mean(dev::TimeArgs{v, x, p.u.q.T, p.u.q.F}, p.values());
}
Status device_time_mean_grad(const UnitPass& p, const float*, const float* dv, float, bool, float* din) {
    return p.d->time_mean_backward(dev::TimeArgs{din, dv, p.u.q.T, p.u.q.F}, int64_t(p.rows) * p.u.q.T * p.u.q.F);
}
const DeviceUnitOps repeat_device{false, device_repeat, device_repeat_grad};
const DeviceUnitOps time_mean_device{false, device_time_mean, device_time_mean_grad};

}  // namespace

extern const LayerType repeat_layer{"repeat", &repeat_kind, read_repeat, build_repeat};
extern const LayerType time_mean_layer{"timeMean", &time_mean_kind, nullptr, build_time_mean};
extern const UnitKind repeat_kind{UnitFamily::Plain, nullptr,        &repeat_device, nullptr,
                                  nullptr,           forward_repeat, backward_repeat};
extern const UnitKind time_mean_kind{UnitFamily::Plain, nullptr,           &time_mean_device, nullptr,
                                     nullptr,           forward_time_mean, backward_time_mean};

}  // namespace of
