// Device kernels (ops.h): the token kinds (units/embedding.cpp, units/attention.cpp), in the CPU unit's order of
// operations, so the simulation gives the CPU's bits; the CPU runs the embedding's and positions' bodies and the
// attention head's arithmetic itself.
//   embed:            out_p = E[id_p] per position p of every row (one index per output value).
//   embed_grad:       dE[v] = sum over the positions p reading v, in increasing p, of alpha g_p (one index per table
//                     value); the positions come from the batch's token index (trainer: token_index), so the sum has
//                     the CPU's order and no atomics.
//   positional_add:   out = x + P per row (one index per value).
//   attend:           O_t = sum_s P_ts V_s per (row, head, query position t), P_t the stable softmax of the scaled
//                     dots, recomputed in three passes (max, sum in double, weights) as the CPU computes it.
//   attend_stats:     per (row, head, t): the softmax's max and sum, and c_t = sum_s P_ts dP_ts (dP_ts = dO_t . V_s).
//   attend_backward:  per (row, head, position j): dQ_j, dK_j and dV_j from dO and the stats, each a sum in the order
//                     the CPU adds into it (dQ over s, dK and dV over t, increasing).
#pragma once
#include <cmath>
#include <cstdint>

#include "core/host_device.h"

namespace of::dev {

// The table row a token value reads; -1 for a value that is not a token id (validated before: never read)
OF_HOST_DEVICE int64_t token_of(float v, int vocab) {
    return v >= 0.0f && v < float(vocab) && v == floorf(v) ? int64_t(v) : -1;
}

struct EmbedArgs {
    float* out;
    const float* ids;  // (rows, T) token values
    const float* E;    // (vocab, D)
    int D, vocab;
};
// values j0 <= j < j1 of position p (of rows T): E[id_p], zeros for a value that is not a token id
OF_HOST_DEVICE void embed_span(const EmbedArgs& a, int64_t p, int j0, int j1) {
    const int64_t id = token_of(a.ids[p], a.vocab);
    for (int j = j0; j < j1; j++) a.out[p * a.D + j] = id < 0 ? 0.0f : a.E[id * a.D + j];
}
OF_HOST_DEVICE void embed_at(const EmbedArgs& a, int64_t i) { embed_span(a, i / a.D, int(i % a.D), int(i % a.D) + 1); }

struct EmbedGradArgs {
    float* dE;         // (vocab, D)
    const float* g;    // (rows T, D): the gradient at the embedding's output
    const int* start;  // vocab + 1: table row v's positions are pos[start[v] .. start[v + 1])
    const int* pos;    // positions (row T + t), increasing within a table row
    int D;
    float alpha;
};
OF_HOST_DEVICE void embed_grad_at(const EmbedGradArgs& a, int64_t i) {
    const int64_t v = i / a.D, j = i % a.D;
    float s = 0.0f;
    for (int k = a.start[v]; k < a.start[v + 1]; k++) s += a.alpha * a.g[int64_t(a.pos[k]) * a.D + j];
    a.dE[i] = s;
}

struct PositionalArgs {
    float* out;
    const float* x;
    const float* P;  // O values: one row
    int O;
};
OF_HOST_DEVICE void positional_add_span(const PositionalArgs& a, int64_t r, int j0, int j1) {  // row r's j0 .. j1 - 1
    for (int j = j0; j < j1; j++) a.out[r * a.O + j] = a.x[r * a.O + j] + a.P[j];
}
OF_HOST_DEVICE void positional_add_at(const PositionalArgs& a, int64_t i) {
    positional_add_span(a, i / a.O, int(i % a.O), int(i % a.O) + 1);
}

// multiHeadAttention's attend over rows of (T, 3D) Q, K, V into (T, D); heads of d = D / heads values.
struct AttendArgs {
    float* out;         // attend: (rows, T D); attend_backward: din (rows, T 3D)
    const float* qkv;   // (rows, T 3D)
    const float* dout;  // attend_stats, attend_backward: the gradient at the output (rows, T D)
    double* stats;      // attend_stats, attend_backward: 3 per (row, head, t): max, sum, c
    int T, D, heads, causal;
    float scale;  // 1 / sqrt(d)
};
// One (row, head): its Q, K, V and its softmax rows (the CPU's too).
struct AttendHead {
    const float* qkv;
    int T, D, d, off, causal;
    float scale;
    OF_HOST_DEVICE const float* q(int t) const { return qkv + int64_t(t) * 3 * D + off; }
    OF_HOST_DEVICE const float* k(int s) const { return q(s) + D; }
    OF_HOST_DEVICE const float* v(int s) const { return q(s) + 2 * D; }
    OF_HOST_DEVICE int last(int t) const { return causal ? t : T - 1; }
    OF_HOST_DEVICE float logit(int t, int s) const {  // the scaled dot Q_t . K_s
        const float* qt = q(t);
        const float* ks = k(s);
        float dot = 0.0f;
        for (int i = 0; i < d; i++) dot += qt[i] * ks[i];
        return dot * scale;
    }
    OF_HOST_DEVICE float max_logit(int t) const {
        float mx = -INFINITY;
        for (int s = 0; s <= last(t); s++) mx = fmaxf(mx, logit(t, s));
        return mx;
    }
    // the softmax P_ts = e_s / sum_s' e_s' with e_s = exp(S_ts - max), the sum in double
    OF_HOST_DEVICE static float shifted_exp(float logit, float mx) { return expf(logit - mx); }
    OF_HOST_DEVICE static float normalized(float e, double sum) { return float(double(e) / sum); }
    OF_HOST_DEVICE double exp_sum(int t, float mx) const {
        double sum = 0.0;
        for (int s = 0; s <= last(t); s++) sum += shifted_exp(logit(t, s), mx);
        return sum;
    }
    OF_HOST_DEVICE float weight(int t, int s, float mx, double sum) const {
        return normalized(shifted_exp(logit(t, s), mx), sum);
    }
    // dS_ts scaled by 1 / sqrt(d): P_ts (dP_ts - c_t), c_t = sum_s P_ts dP_ts
    OF_HOST_DEVICE float score_grad(float p, float dp, double c) const { return p * (dp - float(c)) * scale; }
};
// Index i of (rows, heads, T): its head and its position
OF_HOST_DEVICE AttendHead attend_head(const AttendArgs& a, int64_t i, int* t) {
    *t = int(i % a.T);
    const int64_t rh = i / a.T, r = rh / a.heads;
    const int h = int(rh % a.heads), d = a.D / a.heads;
    return {a.qkv + r * a.T * 3 * a.D, a.T, a.D, d, h * d, a.causal, a.scale};
}

OF_HOST_DEVICE void attend_at(const AttendArgs& a, int64_t i) {
    int t = 0;
    const AttendHead h = attend_head(a, i, &t);
    const float mx = h.max_logit(t);
    const double sum = h.exp_sum(t, mx);
    float* o = a.out + (i / (int64_t(a.heads) * a.T) * a.T + t) * a.D + h.off;
    for (int j = 0; j < h.d; j++) o[j] = 0.0f;
    for (int s = 0; s <= h.last(t); s++) {
        const float p = h.weight(t, s, mx, sum);
        const float* vs = h.v(s);
        for (int j = 0; j < h.d; j++) o[j] += p * vs[j];
    }
}

// dO_t . V_s
OF_HOST_DEVICE float attend_dp(const AttendHead& h, const float* dO_t, int s) {
    const float* vs = h.v(s);
    float dot = 0.0f;
    for (int j = 0; j < h.d; j++) dot += dO_t[j] * vs[j];
    return dot;
}
OF_HOST_DEVICE const float* attend_dout(const AttendArgs& a, const AttendHead& h, int64_t i, int t) {
    return a.dout + (i / (int64_t(a.heads) * a.T) * a.T + t) * a.D + h.off;
}

OF_HOST_DEVICE void attend_stats_at(const AttendArgs& a, int64_t i) {
    int t = 0;
    const AttendHead h = attend_head(a, i, &t);
    const float mx = h.max_logit(t);
    const double sum = h.exp_sum(t, mx);
    const float* dO = attend_dout(a, h, i, t);
    double c = 0.0;
    for (int s = 0; s <= h.last(t); s++) c += double(h.weight(t, s, mx, sum)) * attend_dp(h, dO, s);
    double* st = a.stats + 3 * i;
    st[0] = mx, st[1] = sum, st[2] = c;
}

// position j's dQ (as a query), dK and dV (as a key and value); the stats of query t are at i - j + t
OF_HOST_DEVICE void attend_backward_at(const AttendArgs& a, int64_t i) {
    int j = 0;
    const AttendHead h = attend_head(a, i, &j);
    const int64_t row0 = i - j;  // the index of (row, head, t = 0)
    float* drow = a.out + (i / (int64_t(a.heads) * a.T)) * a.T * 3 * a.D;
    float* dq = drow + int64_t(j) * 3 * a.D + h.off;
    float* dk = dq + a.D;
    float* dv = dq + 2 * a.D;
    for (int x = 0; x < h.d; x++) dq[x] = dk[x] = dv[x] = 0.0f;
    auto ds = [&](int t, int s, float* p) {  // dS_ts scaled, and P_ts
        const double* st = a.stats + 3 * (row0 + t);
        *p = h.weight(t, s, float(st[0]), st[1]);
        return h.score_grad(*p, attend_dp(h, attend_dout(a, h, row0 + t, t), s), st[2]);
    };
    for (int s = 0; s <= h.last(j); s++) {  // j as the query
        float p = 0.0f;
        const float g = ds(j, s, &p);
        const float* ks = h.k(s);
        for (int x = 0; x < h.d; x++) dq[x] += g * ks[x];
    }
    for (int t = h.causal ? j : 0; t < h.T; t++) {  // j as a key and value of query t
        float p = 0.0f;
        const float g = ds(t, j, &p);
        const float* dO = attend_dout(a, h, row0 + t, t);
        const float* qt = h.q(t);
        for (int x = 0; x < h.d; x++) dv[x] += p * dO[x], dk[x] += g * qt[x];
    }
}

#define OF_TOKEN_KERNELS(X)           \
    X(embed, EmbedArgs)               \
    X(embed_grad, EmbedGradArgs)      \
    X(positional_add, PositionalArgs) \
    X(attend, AttendArgs)             \
    X(attend_stats, AttendArgs)       \
    X(attend_backward, AttendArgs)

}  // namespace of::dev
