// multiHeadAttention over a sequence (T, D), as three units: a per-position projection D -> 3D (Q, K, V, with bias;
// the conv-like math of units/conv.h), the parameter-free `attend` unit below, and a per-position projection D -> D.
// Per head h of d = D / heads values (Q, K, V columns h d .. h d + d - 1 of their D):
//   S_ts = Q_t . K_s / sqrt(d) (+ -inf for s > t when causal),  P_t = softmax_s(S_t),  O_t = sum_s P_ts V_s.
// Backward (P recomputed from Q, K): dV_s = sum_t P_ts dO_t; dP_ts = dO_t . V_s;
//   dS_ts = P_ts (dP_ts - sum_s' P_ts' dP_ts');  dQ_t = sum_s dS_ts K_s / sqrt(d);  dK_s = sum_t dS_ts Q_t / sqrt(d).
// Under ULR the noise lands on the projections' pre-activations; softmax and the mask need no derivative there.
#include <algorithm>
#include <cmath>

#include "device/unit_pass.h"
#include "units/conv.h"

namespace of {

extern const UnitKind attention_qkv_kind, attend_kind, attention_out_kind;

namespace {

void read(const LayerReader& r, LayerSpec& l) {
    l.heads = int(r.integer("heads", 1, 1 << 16));
    l.causal = r.flag_or("causal", false);
}

Status build(const LayerSpec& l, ModelBuilder& b) {
    OF_CHECK(b.seq, Config,
             b.where +
                 ": multiHeadAttention needs a sequence input [steps, features] (an embedding before it, or "
                 "inputShape)");
    const int D = b.F;
    OF_CHECK(l.heads >= 1 && D % l.heads == 0, Config,
             b.where + ": multiHeadAttention heads (" + std::to_string(l.heads) + ") must divide the features (" +
                 std::to_string(D) + ")");
    OF_TRY(add_position_linear(b, &attention_qkv_kind, 3 * D, true, 0));
    Unit u{b.width, 0, -1, -1};
    u.kind = &attend_kind;
    u.q.T = b.T, u.q.F = D, u.heads = l.heads, u.causal = l.causal;
    OF_TRY(b.output(u, uint64_t(b.T), uint64_t(D)));
    b.F = D;
    b.add(u);
    return add_position_linear(b, &attention_out_kind, D, true, 0);
}

// One (row, head): where its Q, K, V values lie and its scaled dots, the device's (device/ops_token.h AttendHead)
dev::AttendHead head_of(const Unit& u, const float* in, int r, int h) {
    const int D = u.q.F, d = D / u.heads;
    return {in + int64_t(r) * u.q.T * 3 * D, u.q.T, D, d, h * d, u.causal ? 1 : 0, 1.0f / std::sqrt(float(d))};
}

// Position t's attention weights P_t (T values; 0 past the last key), each dot computed once (the device recomputes
// them; the same bits). The head by value: a copy that the stores into p cannot alias (it stays in registers).
void weights(const dev::AttendHead a, int t, float* p) {
    float mx = -INFINITY;
    for (int s = 0; s <= a.last(t); s++) p[s] = a.logit(t, s), mx = std::max(mx, p[s]);
    double sum = 0.0;
    for (int s = 0; s <= a.last(t); s++) sum += p[s] = a.shifted_exp(p[s], mx);
    for (int s = 0; s <= a.last(t); s++) p[s] = a.normalized(p[s], sum);
    std::fill(p + a.last(t) + 1, p + a.T, 0.0f);
}

// in (rows, T 3D) -> out (rows, T D)
void forward(const KernelTable&, const Unit& u, const float*, const float* in, int rows, float* out, float*,
             const SeqCtx*) {
    std::vector<float> p(size_t(u.q.T));
    for (int r = 0; r < rows; r++)
        for (int h = 0; h < u.heads; h++) {
            const dev::AttendHead a = head_of(u, in, r, h);
            for (int t = 0; t < a.T; t++) {
                weights(a, t, p.data());
                float* o = out + (int64_t(r) * a.T + t) * a.D + a.off;
                std::fill(o, o + a.d, 0.0f);
                for (int s = 0; s <= a.last(t); s++) {
                    const float* vs = a.v(s);
                    for (int i = 0; i < a.d; i++) o[i] += p[size_t(s)] * vs[i];
                }
            }
        }
}

void backward(const KernelTable&, const Unit& u, const float*, const float* in, int rows, const float* dout, float*,
              float* din, float*, const SeqCtx*) {
    if (!din) return;
    std::fill(din, din + int64_t(rows) * u.I, 0.0f);
    std::vector<float> p(size_t(u.q.T)), dp(size_t(u.q.T));
    for (int r = 0; r < rows; r++)
        for (int h = 0; h < u.heads; h++) {
            const dev::AttendHead a = head_of(u, in, r, h);
            float* drow = din + int64_t(r) * u.I;
            for (int t = 0; t < a.T; t++) {
                weights(a, t, p.data());
                const float* dO = dout + (int64_t(r) * a.T + t) * a.D + a.off;
                float* dq = drow + int64_t(t) * 3 * a.D + a.off;
                double c = 0.0;  // sum_s P_ts dP_ts
                for (int s = 0; s <= a.last(t); s++) {
                    const float* vs = a.v(s);
                    float* dv = drow + int64_t(s) * 3 * a.D + 2 * a.D + a.off;
                    float dot = 0.0f;  // dP_ts (attend_dp), with dV_s's term
                    for (int i = 0; i < a.d; i++) dot += dO[i] * vs[i], dv[i] += p[size_t(s)] * dO[i];
                    dp[size_t(s)] = dot;
                    c += double(p[size_t(s)]) * dot;
                }
                const float* qt = a.q(t);
                for (int s = 0; s <= a.last(t); s++) {
                    const float ds = a.score_grad(p[size_t(s)], dp[size_t(s)], c);
                    const float* ks = a.k(s);
                    float* dk = drow + int64_t(s) * 3 * a.D + a.D + a.off;
                    for (int i = 0; i < a.d; i++) dq[i] += ds * ks[i], dk[i] += ds * qt[i];
                }
            }
        }
}

// On a device (kernels in ops_token.h): attend, and its input gradient (dQ, dK, dV) from each query's softmax
// statistics (3 per row, head and position, in the unit's buffer 0), then per position.
dev::AttendArgs attend_args(const UnitPass& p, float* out, const float* qkv, const float* dout) {
    const Unit& u = p.u;
    const float scale = 1.0f / std::sqrt(float(u.q.F / u.heads));
    return {out, qkv, dout, p.buffer(0).as<double>(), u.q.T, u.q.F, u.heads, u.causal ? 1 : 0, scale};
}
Status device_forward(const UnitPass& p, const float* x, float* v) {
    return p.d->attend(attend_args(p, v, x, nullptr), int64_t(p.rows) * p.u.heads * p.u.q.T);
}
Status device_backward(const UnitPass& p, const float* x, const float* dv, float, bool, float* din) {
    const int64_t n = int64_t(p.rows) * p.u.heads * p.u.q.T;
    OF_TRY(p.buffer(0).reserve(p.d, size_t(n) * 3 * sizeof(double)));
    const dev::AttendArgs a = attend_args(p, din, x, dv);
    OF_TRY(p.d->attend_stats(a, n));
    return p.d->attend_backward(a, n);
}
const DeviceUnitOps device{false, device_forward, device_backward};

// the projections' tensors: attention<n>.qkv.weight (3D, D) and .bias, then attention<n>.out.weight (D, D) and .bias
void qkv_tensors(const Unit& u, const std::string& name, std::vector<UnitTensor>& out) {
    position_tensors(u, name + ".qkv", out);
}
void out_tensors(const Unit& u, const std::string& name, std::vector<UnitTensor>& out) {
    position_tensors(u, name + ".out", out);
}

}  // namespace

extern const LayerType attention_layer{"multiHeadAttention", &attend_kind, read, build};
extern const UnitKind attend_kind{UnitFamily::Plain, nullptr, &device, nullptr, nullptr, forward, backward};
extern const UnitKind attention_qkv_kind{UnitFamily::ConvLike, "attention",      &position_device,  convlike_init,
                                         qkv_tensors,          convlike_forward, convlike_backward, convlike_lr_reduce};
extern const UnitKind attention_out_kind{UnitFamily::ConvLike,
                                         "attention",
                                         &position_device,
                                         convlike_init,
                                         out_tensors,
                                         convlike_forward,
                                         convlike_backward,
                                         convlike_lr_reduce,
                                         nullptr,
                                         nullptr,
                                         nullptr,
                                         nullptr,
                                         true};

}  // namespace of
