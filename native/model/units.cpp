#include "model/units.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "rng/philox.h"

namespace of {
namespace {

// out (rows, N F) = A^ in per row: each node's normalized neighbour sum (A^ from the unit's graph).
void graph_aggregate(float* out, const float* in, int rows, const Graph& g, int F) {
    for (int r = 0; r < rows; r++) {
        const float* x = in + int64_t(r) * g.N * F;
        float* y = out + int64_t(r) * g.N * F;
        for (int i = 0; i < g.N; i++) {
            float* yi = y + int64_t(i) * F;
            std::fill(yi, yi + F, 0.0f);
            for (int e = g.row_ptr[size_t(i)]; e < g.row_ptr[size_t(i + 1)]; e++) {
                const float a = g.val[size_t(e)];
                const float* xj = x + int64_t(g.col[size_t(e)]) * F;
                for (int f = 0; f < F; f++) yi[f] += a * xj[f];
            }
        }
    }
}

// The gathered inputs of a conv-like unit: im2row patches, or the graph's neighbour sums; and their adjoint.
void gather(const KernelTable& k, const DenseUnit& u, float* cols, const float* in, int rows) {
    if (u.kind == UnitKind::Conv2d) k.im2row(cols, in, rows, u.g);
    else graph_aggregate(cols, in, rows, *u.graph, u.g.C);
}
void scatter(const KernelTable& k, const DenseUnit& u, float* din, const float* dcols, int rows) {
    if (u.kind == UnitKind::Conv2d) k.row2im(din, dcols, rows, u.g);
    else graph_aggregate(din, dcols, rows, *u.graph, u.g.C);  // A^ is symmetric
}

constexpr float kNormEps = 1e-5f;

// x^ of one position's n values, and 1 / sqrt(var + eps)
inline float normalize(const float* x, float* xh, int n) {
    double mu = 0.0, var = 0.0;
    for (int i = 0; i < n; i++) mu += x[i];
    mu /= n;
    for (int i = 0; i < n; i++) var += (x[i] - mu) * (x[i] - mu);
    const float inv = float(1.0 / std::sqrt(var / n + double(kNormEps)));
    for (int i = 0; i < n; i++) xh[i] = float(x[i] - mu) * inv;
    return inv;
}

// gain (x - mean) / sqrt(var + eps) per channel, positions of row r reading row r / rep of `in`... (rep: copies)
void batch_norm_with(const DenseUnit& u, const float* theta, const float* stats, const float* in, int rows, float* out, int rep) {
    const int C = u.g.Co, P = u.g.Ho;
    const float* gain = theta + u.w_off;
    std::vector<float> scale(static_cast<size_t>(C));
    for (int c = 0; c < C; c++) scale[size_t(c)] = gain[c] / std::sqrt(stats[C + c] + kNormEps);
    for (int r = 0; r < rows; r++)
        for (int p = 0; p < P; p++) {
            const float* x = in + (int64_t(r / rep) * P + p) * C;
            float* y = out + (int64_t(r) * P + p) * C;
            for (int c = 0; c < C; c++) y[c] = (x[c] - stats[c]) * scale[size_t(c)];
        }
}

// groupNorm: x^ (rows, O) of every (row, group) set -- all positions, the group's channels -- and 1 / sqrt(var + eps)
// per set (rows x groups)
void group_norm_xhat(const DenseUnit& u, const float* in, int rows, float* xh, float* invs) {
    const int C = u.g.Co, P = u.g.Ho, G = u.groups, Cg = C / G;
    const double n = double(P) * Cg;
    for (int r = 0; r < rows; r++)
        for (int g = 0; g < G; g++) {
            const float* x = in + int64_t(r) * u.O + int64_t(g) * Cg;
            double mu = 0.0, var = 0.0;
            for (int p = 0; p < P; p++)
                for (int c = 0; c < Cg; c++) mu += x[int64_t(p) * C + c];
            mu /= n;
            for (int p = 0; p < P; p++)
                for (int c = 0; c < Cg; c++) var += (x[int64_t(p) * C + c] - mu) * (x[int64_t(p) * C + c] - mu);
            const float inv = float(1.0 / std::sqrt(var / n + double(kNormEps)));
            invs[int64_t(r) * G + g] = inv;
            float* y = xh + int64_t(r) * u.O + int64_t(g) * Cg;
            for (int p = 0; p < P; p++)
                for (int c = 0; c < Cg; c++) y[int64_t(p) * C + c] = float(x[int64_t(p) * C + c] - mu) * inv;
        }
}

}  // namespace

void unit_linear(const KernelTable& k, const DenseUnit& u, const float* theta, const float* in, int rows, float* out,
                 float* cols, const SeqCtx* sq) {
    switch (u.kind) {
        case UnitKind::Rnn:
        case UnitKind::Gru:
        case UnitKind::Lstm:
        case UnitKind::Lif: seq_forward(k, u, theta, in, rows, out, sq->aux, nullptr, nullptr, sq->scratch); break;
        case UnitKind::Repeat: repeat_forward(in, rows, u.q.T, u.q.F, out); break;
        case UnitKind::Dropout: std::copy(in, in + int64_t(rows) * u.O, out); break;  // inference: the identity
        case UnitKind::Concat: break;  // needs the block's input: the callers handle it
        case UnitKind::BatchNorm: batch_norm_with(u, theta, u.running->data(), in, rows, out, 1); break;  // inference
        case UnitKind::GroupNorm: {
            std::vector<float> invs(size_t(rows) * size_t(u.groups));
            group_norm_xhat(u, in, rows, out, invs.data());
            const float* gain = theta + u.w_off;
            for (int64_t i = 0; i < int64_t(rows) * u.O; i++) out[i] *= gain[i % u.g.Co];
            break;
        }
        case UnitKind::LayerNorm: {  // gain * x^; the bias comes with the activation (or the noise)
            const int n = u.g.Co;
            const float* gain = theta + u.w_off;
            for (int64_t p = 0; p < int64_t(rows) * u.g.Ho; p++) {
                float* o = out + p * n;
                normalize(in + p * n, o, n);
                for (int c = 0; c < n; c++) o[c] *= gain[c];
            }
            break;
        }
        case UnitKind::TimeMean: time_mean_forward(in, rows, u.q.T, u.q.F, out); break;
        case UnitKind::Dense: k.gemm_nt(out, in, theta + u.w_off, rows, u.O, u.I, 1.0f, 0.0f); break;
        case UnitKind::Conv2d:
        case UnitKind::GraphConv:
            gather(k, u, cols, in, rows);
            k.gemm_nt(out, cols, theta + u.w_off, int(u.gemm_rows(rows)), u.g.Co, u.g.patch(), 1.0f, 0.0f);
            break;
        case UnitKind::MaxPool2d: k.pool_forward(out, in, rows, u.g, PoolKind::Max); break;
        case UnitKind::AvgPool2d: k.pool_forward(out, in, rows, u.g, PoolKind::Avg); break;
    }
}

void unit_bias_act(const KernelTable& k, const DenseUnit& u, const float* theta, float* a, float* v, int rows) {
    const bool conv = u.positional();  // a conv's bias is per channel; recurrent units add theirs inside
    const float* bias = u.b_off < 0 || u.recurrent() ? nullptr : theta + u.b_off;
    k.bias_act_forward(a, v, bias, conv ? int(u.gemm_rows(rows)) : rows, u.gemm_cols(), u.act, u.alpha);
}

void unit_backward(const KernelTable& k, const DenseUnit& u, const float* theta, const float* in, int rows,
                   const float* dv, float* dW, float* din, float* cols, const SeqCtx* sq) {
    switch (u.kind) {
        case UnitKind::Rnn:
        case UnitKind::Gru:
        case UnitKind::Lstm:
        case UnitKind::Lif: seq_backward(k, u, theta, in, rows, sq->aux, dv, dW, din, sq->dP, sq->scratch, sq->wexp); break;
        case UnitKind::Repeat:
            if (din) repeat_backward(dv, rows, u.q.T, u.q.F, din);
            break;
        case UnitKind::Concat:
        case UnitKind::Dropout: break;  // the callers handle them
        case UnitKind::GroupNorm: {
            const int C = u.g.Co, P = u.g.Ho, G = u.groups, Cg = C / G;
            const float* gain = theta + u.w_off;
            std::vector<float> xh(size_t(rows) * size_t(u.O)), invs(size_t(rows) * size_t(G));
            group_norm_xhat(u, in, rows, xh.data(), invs.data());
            if (dW) {
                std::fill(dW, dW + 2 * C, 0.0f);
                for (int64_t i = 0; i < int64_t(rows) * u.O; i++) dW[i % C] += dv[i] * xh[size_t(i)], dW[C + i % C] += dv[i];
            }
            if (!din) break;
            const double n = double(P) * Cg;
            for (int r = 0; r < rows; r++)
                for (int g = 0; g < G; g++) {
                    const int64_t base = int64_t(r) * u.O + int64_t(g) * Cg;
                    double m1 = 0.0, m2 = 0.0;
                    for (int p = 0; p < P; p++)
                        for (int c = 0; c < Cg; c++) {
                            const int64_t i = base + int64_t(p) * C + c;
                            const double d = double(dv[i]) * gain[g * Cg + c];
                            m1 += d, m2 += d * xh[size_t(i)];
                        }
                    m1 /= n, m2 /= n;
                    const float inv = invs[size_t(r) * size_t(G) + size_t(g)];
                    for (int p = 0; p < P; p++)
                        for (int c = 0; c < Cg; c++) {
                            const int64_t i = base + int64_t(p) * C + c;
                            din[i] = inv * float(double(dv[i]) * gain[g * Cg + c] - m1 - xh[size_t(i)] * m2);
                        }
                }
            break;
        }
        case UnitKind::BatchNorm: {  // through the batch statistics (training mode)
            const int C = u.g.Co;
            const int64_t n = int64_t(rows) * u.g.Ho;
            const float* gain = theta + u.w_off;
            const float* st = u.batch->data();
            std::vector<double> sg(static_cast<size_t>(C), 0.0), sgx(static_cast<size_t>(C), 0.0);  // sums of dy and dy x^ per channel
            std::vector<float> inv(static_cast<size_t>(C));
            for (int c = 0; c < C; c++) inv[size_t(c)] = 1.0f / std::sqrt(st[C + c] + kNormEps);
            for (int64_t p = 0; p < n; p++)
                for (int c = 0; c < C; c++) {
                    const float xh = (in[p * C + c] - st[c]) * inv[size_t(c)];
                    sg[size_t(c)] += dv[p * C + c], sgx[size_t(c)] += dv[p * C + c] * xh;
                }
            if (dW)
                for (int c = 0; c < C; c++) dW[c] = float(sgx[size_t(c)]), dW[C + c] = float(sg[size_t(c)]);
            if (din)
                for (int64_t p = 0; p < n; p++)
                    for (int c = 0; c < C; c++) {
                        const float xh = (in[p * C + c] - st[c]) * inv[size_t(c)];
                        din[p * C + c] = gain[c] * inv[size_t(c)] * float(dv[p * C + c] - sg[size_t(c)] / n - xh * sgx[size_t(c)] / n);
                    }
            break;
        }
        case UnitKind::LayerNorm: {
            const int n = u.g.Co;
            const float* gain = theta + u.w_off;
            std::vector<float> xh(size_t(n), 0.0f);
            if (dW) std::fill(dW, dW + 2 * n, 0.0f);
            for (int64_t p = 0; p < int64_t(rows) * u.g.Ho; p++) {
                const float inv = normalize(in + p * n, xh.data(), n);
                const float* g = dv + p * n;
                if (dW)
                    for (int c = 0; c < n; c++) dW[c] += g[c] * xh[size_t(c)], dW[n + c] += g[c];
                if (!din) continue;
                double m1 = 0.0, m2 = 0.0;  // means of dx^ and dx^ x^
                for (int c = 0; c < n; c++) m1 += g[c] * gain[c], m2 += g[c] * gain[c] * xh[size_t(c)];
                m1 /= n, m2 /= n;
                float* d = din + p * n;
                for (int c = 0; c < n; c++) d[c] = inv * float(g[c] * gain[c] - m1 - xh[size_t(c)] * m2);
            }
            break;
        }
        case UnitKind::TimeMean:
            if (din) time_mean_backward(dv, rows, u.q.T, u.q.F, din);
            break;
        case UnitKind::Dense:
            if (dW) {
                k.gemm_tn(dW, dv, in, nullptr, u.O, u.I, rows, 1.0f, 0.0f);
                if (u.b_off >= 0) k.col_sum(dW + int64_t(u.O) * u.I, dv, rows, u.O);
            }
            if (din) k.gemm_nn(din, dv, theta + u.w_off, rows, u.I, u.O, 1.0f, 0.0f);
            break;
        case UnitKind::Conv2d:
        case UnitKind::GraphConv: {
            const int n = int(u.gemm_rows(rows)), P = u.g.patch();
            if (dW) {
                gather(k, u, cols, in, rows);
                k.gemm_tn(dW, dv, cols, nullptr, u.g.Co, P, n, 1.0f, 0.0f);
                if (u.b_off >= 0) k.col_sum(dW + int64_t(u.g.Co) * P, dv, n, u.g.Co);
            }
            if (din) {
                k.gemm_nn(cols, dv, theta + u.w_off, n, P, u.g.Co, 1.0f, 0.0f);
                scatter(k, u, din, cols, rows);
            }
            break;
        }
        case UnitKind::MaxPool2d:
            if (din) k.pool_backward(din, dv, in, rows, u.g, PoolKind::Max);
            break;
        case UnitKind::AvgPool2d:
            if (din) k.pool_backward(din, dv, in, rows, u.g, PoolKind::Avg);
            break;
    }
}

void unit_lr_reduce(const KernelTable& k, const DenseUnit& u, const float* in, int rows, const float* S, const float* w,
                    float alpha, float* dW, float* db, float* cols, float* wexp) {
    if (u.kind == UnitKind::Dense) {
        k.gemm_tn(dW, S, in, w, u.O, u.I, rows, alpha, 0.0f);
        if (u.b_off >= 0) {
            if (!w && alpha == 1.0f) {
                k.col_sum(db, S, rows, u.O);
            } else {
                if (!w) std::fill(wexp, wexp + rows, 1.0f);
                k.lr_bias_reduce(db, w ? w : wexp, S, rows, u.O, alpha, false);
            }
        }
        return;
    }
    if (u.kind == UnitKind::GroupNorm) {  // d gain = alpha sum w S x^, d bias = alpha sum w S
        const int C = u.g.Co;
        std::vector<float> xh(size_t(rows) * size_t(u.O)), invs(size_t(rows) * size_t(u.groups));
        group_norm_xhat(u, in, rows, xh.data(), invs.data());
        std::fill(dW, dW + C, 0.0f);
        for (int r = 0; r < rows; r++) {
            const float f = alpha * (w ? w[r] : 1.0f);
            for (int64_t i = int64_t(r) * u.O; i < int64_t(r + 1) * u.O; i++) dW[i % C] += f * S[i] * xh[size_t(i)];
        }
        const int64_t pos = u.g.positions();
        for (int r = 0; r < rows; r++) std::fill(wexp + r * pos, wexp + (r + 1) * pos, w ? w[r] : 1.0f);
        k.lr_bias_reduce(db, wexp, S, int(u.gemm_rows(rows)), C, alpha, false);
        return;
    }
    if (u.kind == UnitKind::LayerNorm || u.kind == UnitKind::BatchNorm) {  // d gain = alpha sum w S x^, d bias = alpha sum w S
        const int n = u.g.Co;
        std::vector<float> xh(size_t(n), 0.0f);
        std::fill(dW, dW + n, 0.0f);
        const float* st = u.kind == UnitKind::BatchNorm ? u.batch->data() : nullptr;  // the clean batch's statistics
        for (int r = 0; r < rows; r++)
            for (int p = 0; p < u.g.Ho; p++) {
                const int64_t at = (int64_t(r) * u.g.Ho + p) * n;
                if (st)
                    for (int c = 0; c < n; c++) xh[size_t(c)] = (in[at + c] - st[c]) / std::sqrt(st[n + c] + kNormEps);
                else
                    normalize(in + at, xh.data(), n);
                const float f = alpha * (w ? w[r] : 1.0f);
                for (int c = 0; c < n; c++) dW[c] += f * S[at + c] * xh[size_t(c)];
            }
        const int64_t pos = u.g.positions();
        for (int r = 0; r < rows; r++) std::fill(wexp + r * pos, wexp + (r + 1) * pos, w ? w[r] : 1.0f);
        k.lr_bias_reduce(db, wexp, S, int(u.gemm_rows(rows)), n, alpha, false);
        return;
    }
    // conv: every output position of a row shares the row's weight
    const int64_t pos = u.g.positions();
    const int n = int(u.gemm_rows(rows));
    for (int r = 0; r < rows; r++) std::fill(wexp + r * pos, wexp + (r + 1) * pos, w ? w[r] : 1.0f);
    gather(k, u, cols, in, rows);
    k.gemm_tn(dW, S, cols, wexp, u.g.Co, u.g.patch(), n, alpha, 0.0f);
    if (u.b_off >= 0) k.lr_bias_reduce(db, wexp, S, n, u.g.Co, alpha, false);
}

void residual_add(const KernelTable& k, const DenseUnit& u, float* a, const float* src, int rows, int rep) {
    for (int r = 0; r < rows; r++) {
        float* ar = a + int64_t(r) * u.O;
        const float* sr = src + int64_t(r / rep) * u.O;
        for (int o = 0; o < u.O; o++) ar[o] += sr[o];
    }
    if (u.post_act != Act::Identity) k.bias_act_forward(a, a, nullptr, rows, u.O, u.post_act, u.post_alpha);
}

void batch_norm_stats(const DenseUnit& u, const float* in, int rows) {
    const int C = u.g.Co;
    const int64_t n = int64_t(rows) * u.g.Ho;
    std::vector<double> mu(size_t(C), 0.0), var(size_t(C), 0.0);
    for (int64_t p = 0; p < n; p++)
        for (int c = 0; c < C; c++) mu[size_t(c)] += in[p * C + c];
    for (int c = 0; c < C; c++) mu[size_t(c)] /= double(n);
    for (int64_t p = 0; p < n; p++)
        for (int c = 0; c < C; c++) var[size_t(c)] += (in[p * C + c] - mu[size_t(c)]) * (in[p * C + c] - mu[size_t(c)]);
    for (int c = 0; c < C; c++) (*u.batch)[size_t(c)] = float(mu[size_t(c)]), (*u.batch)[size_t(C + c)] = float(var[size_t(c)] / double(n));
}

void batch_norm_update_running(const DenseUnit& u, int rows) {
    const int C = u.g.Co;
    const double n = double(rows) * u.g.Ho, unbias = n > 1 ? n / (n - 1) : 1.0;
    for (int c = 0; c < C; c++) {
        float& m = (*u.running)[size_t(c)];
        float& v = (*u.running)[size_t(C + c)];
        m = 0.9f * m + 0.1f * (*u.batch)[size_t(c)];
        v = 0.9f * v + 0.1f * float((*u.batch)[size_t(C + c)] * unbias);
    }
}

void batch_norm_apply(const DenseUnit& u, const float* theta, const float* in, int rows, float* out, int rep) {
    batch_norm_with(u, theta, u.batch->data(), in, rows, out, rep);
}

void dropout_apply(const DenseUnit& u, float* out, const float* in, int rows, int rep, int sample0, uint64_t seed, uint32_t step,
                   uint32_t unit) {
    const double cut = double(u.rate) * 4294967296.0;  // drop when the 32-bit word is below rate 2^32
    const float scale = 1.0f / (1.0f - u.rate);
    for (int r = 0; r < rows; r++) {
        const uint32_t sample = uint32_t(sample0 + r / rep);
        const float* x = in + int64_t(r) * u.O;
        float* y = out + int64_t(r) * u.O;
        for (int j0 = 0; j0 < u.O; j0 += 4) {
            const U32x4 w = philox4x32_10(uint32_t(j0 / 4), sample, philox_stream(kStreamDropout, unit), step, uint32_t(seed),
                                          uint32_t(seed >> 32));
            for (int j = j0; j < std::min(u.O, j0 + 4); j++) y[j] = double(w.v[j - j0]) < cut ? 0.0f : x[j] * scale;
        }
    }
}

void concat_forward(const DenseUnit& u, float* out, const float* f, const float* src, int rows, int rep) {
    const int P = u.g.Ho, a = u.g.C, b = u.g.Co;
    for (int r = 0; r < rows; r++)
        for (int p = 0; p < P; p++) {
            float* o = out + int64_t(r) * u.O + int64_t(p) * (a + b);
            const float* s = src + int64_t(r / rep) * P * a + int64_t(p) * a;
            const float* x = f + int64_t(r) * P * b + int64_t(p) * b;
            std::copy(s, s + a, o);
            std::copy(x, x + b, o + a);
        }
}

void concat_backward(const DenseUnit& u, const float* dout, float* df, float* dsrc, int rows) {
    const int P = u.g.Ho, a = u.g.C, b = u.g.Co;
    for (int r = 0; r < rows; r++)
        for (int p = 0; p < P; p++) {
            const float* d = dout + int64_t(r) * u.O + int64_t(p) * (a + b);
            std::copy(d, d + a, dsrc + int64_t(r) * P * a + int64_t(p) * a);
            std::copy(d + a, d + a + b, df + int64_t(r) * P * b + int64_t(p) * b);
        }
}

void unit_bias_row(const DenseUnit& u, const float* theta, float* out) {
    const int C = u.gemm_cols();
    for (int64_t i = 0; i < u.O; i++) out[i] = u.b_off < 0 ? 0.0f : theta[u.b_off + i % C];
}

}  // namespace of
