// The token kinds on the device (units/embedding.cpp, units/attention.cpp; kernels in ops_token.h): embedding and
// positionalEmbedding's forward and parameter gradients, and attend's backward. multiHeadAttention's projections are
// per-position dense units (1x1 conv-like: unit_passes.cpp) and attend's forward a parameter-free unit (plain()).
#include <climits>
#include <cmath>

#include "device/trainer.h"

namespace of {

// The batch's token index, for the embedding's gradient: per table row v, the positions p = r T + t of the B rows
// of x that read it, increasing (a counting sort on the host, where the ids are), so that each table value's sum runs
// in the CPU's order without atomics.
Status DeviceTrainer::token_index(const Model& m, const float* x, int B) {
    const Unit& u = m.units[0];
    const int64_t n = int64_t(B) * u.q.T;
    OF_CHECK(n < INT_MAX, Shape, "batch x steps is too large for the embedding's token index");
    tok_start_host_.assign(size_t(u.vocab) + 1, 0);
    for (int64_t p = 0; p < n; p++) {
        const int64_t id = dev::token_of(x[p], u.vocab);
        if (id >= 0) tok_start_host_[size_t(id) + 1]++;
    }
    for (int v = 0; v < u.vocab; v++) tok_start_host_[size_t(v) + 1] += tok_start_host_[size_t(v)];
    tok_pos_host_.resize(size_t(tok_start_host_.back()) + 1);
    std::vector<int> next(tok_start_host_.begin(), tok_start_host_.end() - 1);
    for (int64_t p = 0; p < n; p++) {
        const int64_t id = dev::token_of(x[p], u.vocab);
        if (id >= 0) tok_pos_host_[size_t(next[size_t(id)]++)] = int(p);
    }
    tok_rows_ = B;
    Device* d = dev_.get();
    OF_TRY(tok_start_.reserve(d, tok_start_host_.size() * sizeof(int)));
    OF_TRY(tok_pos_.reserve(d, tok_pos_host_.size() * sizeof(int)));
    OF_TRY(d->upload(tok_start_.as<int>(), tok_start_host_.data(), tok_start_host_.size() * sizeof(int)));
    return d->upload(tok_pos_.as<int>(), tok_pos_host_.data(), tok_pos_host_.size() * sizeof(int));
}

// embedding: out = E[ids]; positionalEmbedding: out = x + P
Status DeviceTrainer::token_linear(const Model& m, int l, int rows, const float* x, float* out) {
    const Unit& u = m.units[size_t(l)];
    const float* W = theta_ + u.w_off;
    if (u.kind == UnitKind::Embedding)
        return dev_->embed(dev::EmbedArgs{out, x, W, u.q.F, u.vocab}, int64_t(rows) * u.O);
    return dev_->positional_add(dev::PositionalArgs{out, x, W, u.O}, int64_t(rows) * u.O);
}

// The table's gradient times alpha from dv at the output of `rows` rows: the embedding's from the token index (rows:
// the batch's B), the positional table's the column sums of dv
Status DeviceTrainer::token_grads(const Model& m, int l, int rows, const float* dv, float alpha) {
    const Unit& u = m.units[size_t(l)];
    float* G = grads_.f() + u.w_off;
    if (u.kind == UnitKind::PositionalEmbedding) return col_sum(G, dv, rows, u.O, alpha);
    OF_CHECK(rows == tok_rows_, Internal, "the embedding's gradient without its batch's token index");
    return dev_->embed_grad(dev::EmbedGradArgs{G, dv, tok_start_.as<int>(), tok_pos_.as<int>(), u.q.F, alpha},
                            int64_t(u.vocab) * u.q.F);
}

dev::AttendArgs DeviceTrainer::attend_args(const Unit& u, float* out, const float* qkv, const float* dout) {
    const int d = u.q.F / u.heads;
    return {
        out, qkv, dout, attn_stats_.as<double>(), u.q.T, u.q.F, u.heads, u.causal ? 1 : 0, 1.0f / std::sqrt(float(d))};
}

// attend's input gradient (dQ, dK, dV) from dv at its output: each query's softmax statistics, then per position
Status DeviceTrainer::attend_grad(const Model& m, int l, int rows, const float* dv, const float* x, float* din) {
    const Unit& u = m.units[size_t(l)];
    const int64_t n = int64_t(rows) * u.heads * u.q.T;
    OF_TRY(attn_stats_.reserve(dev_.get(), size_t(n) * 3 * sizeof(double)));
    const dev::AttendArgs a = attend_args(u, din, x, dv);
    OF_TRY(dev_->attend_stats(a, n));
    return dev_->attend_backward(a, n);
}

}  // namespace of
