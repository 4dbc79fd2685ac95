// The learned tables of a token model (no bias; shapes per row):
//   embedding:           T token ids (floats holding integers in [0, vocab), checked by validate_tokens before any
//                        read) -> (T, D), out_t = E[id_t]; E (vocab, D). Its input has no gradient.
//   positionalEmbedding: (T, D) -> (T, D), out_t = x_t + P_t; P (T, D) (GPT-2's learned positions).
// Both start uniform with variance 1 (+-sqrt 3; PyTorch's nn.Embedding starts at N(0, 1)). Under ULR the noise lands
// on their output like any unit's pre-activation, so the LR gradient of a table row is the sum of alpha w s(E) over
// the positions that read it. The noise is absolute (sigma): on tables of GPT-2's scale (0.02) a layerNorm after them
// amplifies it some 30 times (a tiny GPT block's layers, mean of 16 ULR estimates: cosine to BP 0.28 at +-0.05,
// 0.96 at unit variance).
#include <algorithm>
#include <climits>
#include <cmath>

#include "core/shape.h"
#include "device/unit_pass.h"
#include "units/unit.h"

namespace of {

extern const UnitKind embedding_kind, positional_embedding_kind;

namespace {

const float kTableInit = std::sqrt(3.0f);

void read_embedding(const LayerReader& r, LayerSpec& l) {
    l.vocab = int(r.integer("vocab", 1, 1 << 24));
    l.units = int(r.integer("dim", 1, 1 << 20));
}

Status build_embedding(const LayerSpec& l, ModelBuilder& b) {
    OF_CHECK(b.m.units.empty() && !b.spatial && !b.seq, Config,
             b.where +
                 ": embedding must be the first layer: it reads the model's input of token ids (embedding({ "
                 "vocab, dim, steps }))");
    Unit u{b.width, 0, -1, -1};
    u.kind = &embedding_kind;
    u.vocab = l.vocab, u.q.T = b.width, u.q.F = l.units;
    b.m.token_vocab = l.vocab;
    u.g.Ho = u.q.T, u.g.Wo = 1, u.g.C = u.g.Co = u.q.F;  // its output per position (noise channels: D)
    OF_TRY(b.params(u, uint64_t(l.vocab), uint64_t(l.units), "embedding table", 0));
    OF_TRY(b.output(u, uint64_t(u.q.T), uint64_t(u.q.F)));
    b.seq = true, b.T = u.q.T, b.F = u.q.F;
    b.add(u);
    return {};
}

Status build_positional(const LayerSpec&, ModelBuilder& b) {
    OF_CHECK(b.seq, Config, b.where + ": positionalEmbedding needs a sequence input (an embedding before it)");
    Unit u{b.width, b.width, -1, -1};
    u.kind = &positional_embedding_kind;
    u.q.T = b.T, u.q.F = b.F;
    u.g.Ho = b.T, u.g.Wo = 1, u.g.C = u.g.Co = b.F;
    OF_TRY(b.params(u, uint64_t(b.width), 0));
    b.add(u);
    return {};
}

void init(const Unit& u, float* theta, uint64_t seed, uint32_t unit) { init_uniform(u, theta, kTableInit, seed, unit); }

void tensors_embedding(const Unit& u, const std::string& name, std::vector<UnitTensor>& out) {
    out.push_back({name + ".weight", u.w_off, {u.vocab, u.q.F}});
}
void tensors_positional(const Unit& u, const std::string& name, std::vector<UnitTensor>& out) {
    out.push_back({name + ".weight", u.w_off, {u.q.T, u.q.F}});
}

// out (rows, T D): row t = E[id_t] (a value that is no token id reads as zeros), by the device's body (ops_token.h)
void forward_embedding(const KernelTable&, const Unit& u, const float* theta, const float* in, int rows, float* out,
                       float*, const SeqCtx*) {
    const dev::EmbedArgs a{out, in, theta + u.w_off, u.q.F, u.vocab};
    for (int64_t p = 0; p < int64_t(rows) * u.q.T; p++) dev::embed_span(a, p, 0, u.q.F);
}

// dE[id] += f_r g_(r, t) over every row r and position t that reads id (f_r: the row's factor)
void scatter_rows(const Unit& u, const float* in, int rows, const float* g, const float* w, float alpha, float* dE) {
    const int D = u.q.F;
    std::fill(dE, dE + int64_t(u.vocab) * D, 0.0f);
    for (int r = 0; r < rows; r++) {
        const float f = alpha * (w ? w[r] : 1.0f);
        for (int t = 0; t < u.q.T; t++) {
            const int64_t i = int64_t(r) * u.q.T + t, id = dev::token_of(in[i], u.vocab);
            if (id < 0) continue;
            for (int j = 0; j < D; j++) dE[id * D + j] += f * g[i * D + j];
        }
    }
}

// dE from dv; the ids have no gradient (din: zeros)
void backward_embedding(const KernelTable&, const Unit& u, const float*, const float* in, int rows, const float* dv,
                        float* dW, float* din, float*, const SeqCtx*) {
    if (dW) scatter_rows(u, in, rows, dv, nullptr, 1.0f, dW);
    if (din) std::fill(din, din + int64_t(rows) * u.I, 0.0f);
}

void lr_embedding(const KernelTable&, const Unit& u, const float* in, int rows, const float* S, const float* w,
                  float alpha, float* dW, float*, float*, float*) {
    scatter_rows(u, in, rows, S, w, alpha, dW);
}

// out = x + P per row
void forward_positional(const KernelTable&, const Unit& u, const float* theta, const float* in, int rows, float* out,
                        float*, const SeqCtx*) {
    const dev::PositionalArgs a{out, in, theta + u.w_off, u.O};
    for (int r = 0; r < rows; r++) dev::positional_add_span(a, r, 0, u.O);
}

// dP = colsum(dv), din = dv
void backward_positional(const KernelTable& k, const Unit& u, const float*, const float*, int rows, const float* dv,
                         float* dW, float* din, float*, const SeqCtx*) {
    if (dW) k.col_sum(dW, dv, rows, u.O);
    if (din) std::copy(dv, dv + int64_t(rows) * u.O, din);
}

// dP = alpha colsum(diag(w) S): the LR reduction of a bias
void lr_positional(const KernelTable& k, const Unit& u, const float*, int rows, const float* S, const float* w,
                   float alpha, float* dW, float*, float*, float* wexp) {
    if (!w) std::fill(wexp, wexp + rows, 1.0f);
    k.lr_bias_reduce(dW, w ? w : wexp, S, rows, u.O, alpha, false);
}

// On a device (kernels in ops_token.h). The batch's token index, for the embedding's gradient: per table row v, the
// positions p = r T + t of the batch's rows that read it, increasing (a counting sort on the host, where the ids
// are), in the unit's buffers 0 (the starts) and 1 (the positions), so that each table value's sum runs in the CPU's
// order without atomics.
Status device_token_index(const UnitPass& p, const float* x) {
    const Unit& u = p.u;
    const int64_t n = int64_t(p.rows) * u.q.T;
    OF_CHECK(n < INT_MAX, Shape, "batch x steps is too large for the embedding's token index");
    std::vector<int> start(size_t(u.vocab) + 1, 0);
    for (int64_t i = 0; i < n; i++) {
        const int64_t id = dev::token_of(x[i], u.vocab);
        if (id >= 0) start[size_t(id) + 1]++;
    }
    for (int v = 0; v < u.vocab; v++) start[size_t(v) + 1] += start[size_t(v)];
    std::vector<int> pos(size_t(start.back()) + 1), next(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < n; i++) {
        const int64_t id = dev::token_of(x[i], u.vocab);
        if (id >= 0) pos[size_t(next[size_t(id)]++)] = int(i);
    }
    DeviceBuffer &s = p.buffer(0), &q = p.buffer(1);
    OF_TRY(s.reserve(p.d, start.size() * sizeof(int)));
    OF_TRY(q.reserve(p.d, pos.size() * sizeof(int)));
    OF_TRY(p.d->upload(s.as<int>(), start.data(), start.size() * sizeof(int)));
    return p.d->upload(q.as<int>(), pos.data(), pos.size() * sizeof(int));
}
// out = E[ids]; dE times alpha from the token index (rows: the batch's); the ids have no gradient
Status device_embed(const UnitPass& p, const float* x, float* out) {
    const Unit& u = p.u;
    return p.d->embed(dev::EmbedArgs{out, x, p.weights(), u.q.F, u.vocab}, p.values());
}
Status device_embed_backward(const UnitPass& p, const float*, const float* dv, float alpha, bool weights, float* din) {
    const Unit& u = p.u;
    if (din) OF_TRY(p.d->zero(din, size_t(p.rows) * u.I * sizeof(float)));
    if (!weights) return {};
    OF_CHECK(p.rows == p.t.batch_rows(), Internal, "the embedding's gradient without its batch's token index");
    const int *start = p.buffer(0).as<int>(), *pos = p.buffer(1).as<int>();
    const dev::EmbedGradArgs a{p.t.grads() + u.w_off, dv, start, pos, u.q.F, alpha};
    return p.d->embed_grad(a, int64_t(u.vocab) * u.q.F);
}
// out = x + P; dP = alpha colsum(dv); din = dv
Status device_positional(const UnitPass& p, const float* x, float* out) {
    return p.d->positional_add(dev::PositionalArgs{out, x, p.weights(), p.u.O}, p.values());
}
Status device_positional_backward(const UnitPass& p, const float*, const float* dv, float alpha, bool weights,
                                  float* din) {
    if (weights) OF_TRY(p.t.col_sum(p.t.grads() + p.u.w_off, dv, p.rows, p.u.O, alpha));
    return din ? p.d->add(dev::AddArgs{din, dv, 0}, int64_t(p.rows) * p.u.I) : Status{};
}
const DeviceUnitOps embedding_device{false, device_embed, device_embed_backward, nullptr, nullptr, device_token_index};
const DeviceUnitOps positional_device{false, device_positional, device_positional_backward};

}  // namespace

extern const LayerType embedding_layer{"embedding", &embedding_kind, read_embedding, build_embedding};
extern const LayerType positional_embedding_layer{"positionalEmbedding", &positional_embedding_kind, nullptr,
                                                  build_positional};
// the Norm family: their output is T positions of D values (ULR's noise channels, one sigma per value of D)
extern const UnitKind embedding_kind{UnitFamily::Norm,  "embedding",       &embedding_device,  init,
                                     tensors_embedding, forward_embedding, backward_embedding, lr_embedding};
extern const UnitKind positional_embedding_kind{
    UnitFamily::Norm,   "position",         &positional_device,  init,
    tensors_positional, forward_positional, backward_positional, lr_positional};

}  // namespace of
