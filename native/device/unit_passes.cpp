// One unit's passes on the device (model/units.cpp's semantics): the linear part (dense GEMM, conv im2row + GEMM,
// graph aggregation, norms), the parameter-free units, and BP's pieces: the weight gradient dv^T x (or patches) with
// column sums for biases and norm gains, and the input gradient dv W through the conv or pool adjoint.
#include "device/trainer.h"

namespace of {
namespace {

// embedding and positionalEmbedding: a learned table read or added per position (tokens.cpp)
bool token_table(const Unit& u) { return u.kind == UnitKind::Embedding || u.kind == UnitKind::PositionalEmbedding; }

}  // namespace

// Every kind the passes below, bp.cpp and the reductions have kernels for. A kind missing here runs on the CPU (and
// says why) rather than through a default branch meant for another kind. Adapters are not here: the device's
// optimizer does not keep their frozen ranges.
bool DeviceTrainer::runs(const Unit& u) {
    if (u.recurrent()) return true;  // seq.cpp
    switch (u.kind) {
        case UnitKind::Dense:
        case UnitKind::Conv2d:
        case UnitKind::MaxPool2d:
        case UnitKind::AvgPool2d:
        case UnitKind::Repeat:
        case UnitKind::TimeMean:
        case UnitKind::GraphConv:
        case UnitKind::Concat:
        case UnitKind::Dropout:
        case UnitKind::LayerNorm:
        case UnitKind::BatchNorm:
        case UnitKind::GroupNorm:
        case UnitKind::Embedding:
        case UnitKind::PositionalEmbedding:
        case UnitKind::SeqDense:
        case UnitKind::AttentionQkv:
        case UnitKind::AttentionOut:
        case UnitKind::Attend: return true;
        default: return false;
    }
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

// A graph convolution's aggregation A^ x of `rows` rows into out; its CSR adjacency is uploaded on first use.
Status DeviceTrainer::aggregate(const Model& m, int l, float* out, const float* x, int rows) {
    const Unit& u = m.units[size_t(l)];
    while (int(graph_.size()) <= l) graph_.push_back(std::make_unique<Csr>());
    Csr& g = *graph_[size_t(l)];
    if (!g.ready) {
        const Graph& h = *u.graph;
        const size_t e = h.col.size();
        OF_TRY(g.row_ptr.reserve(dev_.get(), h.row_ptr.size() * sizeof(int)));
        OF_TRY(g.col.reserve(dev_.get(), e * sizeof(int)));
        OF_TRY(g.val.reserve(dev_.get(), e * sizeof(float)));
        OF_TRY(dev_->upload(g.row_ptr.as<int>(), h.row_ptr.data(), h.row_ptr.size() * sizeof(int)));
        OF_TRY(dev_->upload(g.col.as<int>(), h.col.data(), e * sizeof(int)));
        OF_TRY(dev_->upload(g.val.f(), h.val.data(), e * sizeof(float)));
        g.ready = true;
    }
    const dev::GraphArgs a{out, x, g.row_ptr.as<int>(), g.col.as<int>(), g.val.f(), u.graph->N, u.g.C};
    return dev_->graph(a, int64_t(rows) * u.graph->N * u.g.C);
}

// The linear part of unit l (dense, conv, layerNorm, groupNorm, the token tables) on `rows` rows of its input x into
// out (rows, O). A conv unit's patches go to cols_[l], a norm's x^ and 1 / sigma to xh_[l] and inv_[l]: the gradients
// read them.
Status DeviceTrainer::linear(const Model& m, int l, int rows, const float* x, float* out, bool tf32) {
    Device* d = dev_.get();
    const Unit& u = m.units[size_t(l)];
    const float* W = theta_ + u.w_off;
    if (token_table(u)) return token_linear(m, l, rows, x, out);
    if (u.kind == UnitKind::BatchNorm) {  // this batch's statistics (a clean B-row forward computed them); inference:
                                          // the running ones
        const float* st = inference_ ? bn_[size_t(l)]->running.f() : bn_[size_t(l)]->stats.f();
        return d->bn_apply(dev::BatchApplyArgs{out, x, st, W, u.g.Ho, u.g.Co, 1}, int64_t(rows) * u.O);
    }
    if (u.kind == UnitKind::LayerNorm || u.kind == UnitKind::GroupNorm) {
        const bool layer = u.kind == UnitKind::LayerNorm;
        const int64_t sets = int64_t(rows) * (layer ? u.g.Ho : u.groups);
        while (int(xh_.size()) <= l)
            xh_.push_back(std::make_unique<DeviceBuffer>()), inv_.push_back(std::make_unique<DeviceBuffer>());
        OF_TRY(xh_[size_t(l)]->reserve(d, size_t(rows) * u.O * sizeof(float)));
        OF_TRY(inv_[size_t(l)]->reserve(d, size_t(sets) * sizeof(float)));
        const dev::NormArgs na{xh_[size_t(l)]->f(), inv_[size_t(l)]->f(), x, u.g.Ho, u.g.Co, u.groups};
        OF_TRY(layer ? d->layer_norm(na, sets) : d->group_norm(na, sets));
        return d->add(dev::AddArgs{out, xh_[size_t(l)]->f(), 0, W, u.g.Co}, int64_t(rows) * u.O);  // gain x^
    }
    if (u.kind == UnitKind::Dense)
        return d->gemm(false, true, rows, u.O, u.I, 1.0f, x, u.I, W, u.I, 0.0f, out, u.O, tf32);
    const int64_t n = int64_t(rows) * u.g.positions();
    if (u.per_position())  // its patches are x itself
        return d->gemm(false, true, int(n), u.g.Co, u.g.patch(), 1.0f, x, u.g.patch(), W, u.g.patch(), 0.0f, out,
                       u.g.Co, tf32);
    OF_TRY(cols_[size_t(l)]->reserve(d, size_t(n) * u.g.patch() * sizeof(float)));
    if (u.kind == UnitKind::GraphConv) OF_TRY(aggregate(m, l, cols_[size_t(l)]->f(), x, rows));
    else OF_TRY(d->im2row(dev::PatchArgs{cols_[size_t(l)]->f(), x, u.g}, n * u.g.patch()));
    return d->gemm(false, true, int(n), u.g.Co, u.g.patch(), 1.0f, cols_[size_t(l)]->f(), u.g.patch(), W, u.g.patch(),
                   0.0f, out, u.g.Co, tf32);
}

// Parameter-free unit l (pooling, dropout, concat, repeat, timeMean, attend) on `rows` rows of x: v = its values, a =
// act(v) (a may be v). Dropout's mask: sample sample0 + r / rep for row r, keyed by (seed, step, unit). Concat: row r's
// block input is row r / rep of src.
Status DeviceTrainer::plain(const Model& m, int l, int rows, const float* x, float* v, float* a, const Mask& mask,
                            const float* src) {
    const Unit& u = m.units[size_t(l)];
    const int64_t n = int64_t(rows) * u.O;
    if (u.kind == UnitKind::Dropout && inference_)  // inference: the identity
        OF_TRY(dev_->add(dev::AddArgs{v, x, 0}, n));
    else if (u.kind == UnitKind::Repeat) OF_TRY(dev_->repeat(dev::TimeArgs{v, x, u.q.T, u.q.F}, n));
    else if (u.kind == UnitKind::TimeMean) OF_TRY(dev_->time_mean(dev::TimeArgs{v, x, u.q.T, u.q.F}, n));
    else if (u.kind == UnitKind::Attend)
        OF_TRY(dev_->attend(attend_args(u, v, x, nullptr), int64_t(rows) * u.heads * u.q.T));
    else if (u.kind == UnitKind::Concat)
        OF_TRY(dev_->concat(dev::ConcatArgs{v, x, src, u.g.Ho, u.g.C, u.g.Co, mask.rep}, n));
    else if (u.kind == UnitKind::Dropout)
        OF_TRY(dev_->dropout(
            dev::DropoutArgs{v, x, u.O, mask.rep, mask.sample0, mask.seed, mask.step, uint32_t(l), u.rate}, n));
    else OF_TRY(dev_->pool(dev::PoolArgs{v, x, u.g, u.kind == UnitKind::MaxPool2d ? PoolKind::Max : PoolKind::Avg}, n));
    if (u.act == Act::Identity && a == v) return {};
    return dev_->bias_act(dev::BiasActArgs{a, v, nullptr, u.O, u.act, u.alpha}, n);
}

// The gradients of unit l's parameters (dense, conv, graph conv, a norm with its x^ kept, the token tables) from dv,
// the gradient at its pre-activation on `rows` rows, times alpha: dv^T against its input x or its patches; a norm's
// gain from the column sums of dv x^; the bias from those of dv.
Status DeviceTrainer::weight_grads(const Model& m, int l, int rows, const float* dv, float alpha, const float* x,
                                   bool tf32) {
    const Unit& u = m.units[size_t(l)];
    if (token_table(u)) return token_grads(m, l, rows, dv, alpha);
    float* G = grads_.f();
    const int n = int(u.gemm_rows(rows)), cols = u.gemm_cols(), fan = u.fan_in();
    if (u.norm()) OF_TRY(col_sum(G + u.w_off, dv, n, cols, alpha, xh_[size_t(l)]->f()));
    else
        OF_TRY(dev_->gemm(true, false, cols, fan, n, alpha, dv, cols,
                          u.convlike() && !u.per_position() ? cols_[size_t(l)]->f() : x, fan, 0.0f, G + u.w_off, fan,
                          tf32));
    return u.b_off >= 0 ? col_sum(G + u.b_off, dv, n, cols, alpha) : Status{};
}

// The gradient at the input of unit l (dense, conv, graph conv, pooling, positionalEmbedding, attend) from dv at its
// pre-activation, on `rows` rows: dv W; a conv's patch gradients dv W through their adjoint (row2im, or A^ again: it is
// symmetric); a pool's adjoint; dv itself past a positional table; attend's dQ, dK, dV.
Status DeviceTrainer::input_grad(const Model& m, int l, int rows, const float* dv, const float* x, float* din,
                                 bool tf32) {
    Device* d = dev_.get();
    const Unit& u = m.units[size_t(l)];
    const float* W = params_.f() + u.w_off;
    if (u.kind == UnitKind::PositionalEmbedding) return d->add(dev::AddArgs{din, dv, 0}, int64_t(rows) * u.I);
    if (u.kind == UnitKind::Attend) return attend_grad(m, l, rows, dv, x, din);
    if (u.kind == UnitKind::MaxPool2d || u.kind == UnitKind::AvgPool2d)
        return d->pool_backward(
            dev::PoolBackArgs{din, dv, x, u.g, u.kind == UnitKind::MaxPool2d ? PoolKind::Max : PoolKind::Avg},
            int64_t(rows) * u.I);
    if (!u.convlike()) return d->gemm(false, false, rows, u.I, u.O, 1.0f, dv, u.O, W, u.I, 0.0f, din, u.I, tf32);
    const int n = int(u.gemm_rows(rows)), cols = u.gemm_cols(), fan = u.fan_in();
    if (u.per_position()) return d->gemm(false, false, n, fan, cols, 1.0f, dv, cols, W, fan, 0.0f, din, fan, tf32);
    OF_TRY(dcols_.reserve(d, size_t(n) * fan * sizeof(float)));
    OF_TRY(d->gemm(false, false, n, fan, cols, 1.0f, dv, cols, W, fan, 0.0f, dcols_.f(), fan, tf32));
    if (u.kind == UnitKind::GraphConv) return aggregate(m, l, din, dcols_.f(), rows);
    return d->row2im(dev::PatchArgs{din, dcols_.f(), u.g}, int64_t(rows) * u.I);
}

}  // namespace of
