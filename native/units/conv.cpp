// The conv-like units: a dense map per output position of gathered inputs, out (rows Ho Wo, Co) = cols W^T + b.
//   conv2d:    cols = im2row patches of a channels-last image, W (Co, kh kw C), Glorot-uniform over the fans
//              kh kw C and kh kw Co (as tfjs); 'same' padding follows TensorFlow.
//   graphConv: cols = A^ X, the normalized neighbour sums D^-1/2 (A + I) D^-1/2 X of node features (N, F)
//              (Kipf & Welling 2017), W (H, F); A^ is symmetric, so it is its own adjoint in the backward.
//   per position (dense on a sequence, an attention's projections; their kinds are defined beside their layers):
//              cols = X itself (T positions of F features: a 1x1 window), W (units, F) -- a linear map on rows T
//              times as many.
// Also the window geometry that pooling shares (units/conv.h).
#include "units/conv.h"

#include <algorithm>
#include <cmath>

#include "core/shape.h"
#include "device/unit_pass.h"

namespace of {

extern const UnitKind conv2d_kind, graph_conv_kind;

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

// An image conv takes the direct kernels where they suit its shape (kernels/cpu/conv.h), else im2row + GEMM.
bool direct(const Unit& u) { return u.image_conv(); }
// neither an image conv nor a graph's: a linear map per position of a sequence, whose patches are its input itself
bool per_position(const Unit& u) { return !direct(u) && !u.graph; }

// The gathered inputs of a conv-like unit (rows positions, patch): im2row patches, the graph's neighbour sums, or a
// per-position dense's input itself; and their adjoint.
const float* gather(const KernelTable& k, const Unit& u, float* cols, const float* in, int rows) {
    if (per_position(u)) return in;
    if (u.graph) graph_aggregate(cols, in, rows, *u.graph, u.g.C);
    else k.im2row(cols, in, rows, u.g);
    return cols;
}
void scatter(const KernelTable& k, const Unit& u, float* din, const float* dcols, int rows) {
    if (u.graph) graph_aggregate(din, dcols, rows, *u.graph, u.g.C);  // A^ is symmetric
    else k.row2im(din, dcols, rows, u.g);
}

}  // namespace

void convlike_forward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, float* out,
                      float* cols, const SeqCtx*) {
    if (direct(u) && k.conv_forward(out, in, theta + u.w_off, rows, u.g)) return;
    k.gemm_nt(out, gather(k, u, cols, in, rows), theta + u.w_off, int(u.gemm_rows(rows)), u.g.Co, u.g.patch(), 1.0f,
              0.0f);
}

// dW = dv^T cols, db = colsum(dv) over every position; din = the adjoint of the gather applied to dv W
void convlike_backward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows,
                       const float* dv, float* dW, float* din, float* cols, const SeqCtx*) {
    const int n = int(u.gemm_rows(rows)), P = u.g.patch();
    if (dW) {
        if (!direct(u) || !k.conv_weight_grad(dW, dv, in, nullptr, rows, u.g, 1.0f))
            k.gemm_tn(dW, dv, gather(k, u, cols, in, rows), nullptr, u.g.Co, P, n, 1.0f, 0.0f);
        if (u.b_off >= 0) k.col_sum(dW + int64_t(u.g.Co) * P, dv, n, u.g.Co);
    }
    if (!din || (direct(u) && k.conv_input_grad(din, dv, theta + u.w_off, rows, u.g))) return;
    if (per_position(u)) {
        k.gemm_nn(din, dv, theta + u.w_off, n, P, u.g.Co, 1.0f, 0.0f);
    } else {
        k.gemm_nn(cols, dv, theta + u.w_off, n, P, u.g.Co, 1.0f, 0.0f);
        scatter(k, u, din, cols, rows);
    }
}

// dW = alpha (diag(w) S)^T cols, db = alpha colsum(diag(w) S): every output position of a row shares its weight
void convlike_lr_reduce(const KernelTable& k, const Unit& u, const float* in, int rows, const float* S, const float* w,
                        float alpha, float* dW, float* db, float* cols, float* wexp) {
    const int n = int(u.gemm_rows(rows));
    expand_row_weights(wexp, w, rows, u.g.positions());
    if (!direct(u) || !k.conv_weight_grad(dW, S, in, w, rows, u.g, alpha))
        k.gemm_tn(dW, S, gather(k, u, cols, in, rows), wexp, u.g.Co, u.g.patch(), n, alpha, 0.0f);
    if (u.b_off >= 0) k.lr_bias_reduce(db, wexp, S, n, u.g.Co, alpha, false);
}

void convlike_init(const Unit& u, float* theta, uint64_t seed, uint32_t unit) {
    init_uniform(u, theta, std::sqrt(6.0f / float(u.g.patch() + u.g.kh * u.g.kw * u.g.Co)), seed, unit);
}

void position_tensors(const Unit& u, const std::string& name, std::vector<UnitTensor>& out) {
    out.push_back({name + ".weight", u.w_off, {u.g.Co, u.g.C}});
    if (u.b_off >= 0) out.push_back({name + ".bias", u.b_off, {u.g.Co}});
}

namespace {

// Output size and top/left padding of a window over n inputs (TensorFlow's rule for 'same': out = ceil(n / s),
// the total padding split with the smaller half on top).
Status window(int n, int k, int s, int d, int pad, int* out, int* pad_out, const std::string& what) {
    const int eff = d * (k - 1) + 1;
    if (pad < 0) {
        *out = (n + s - 1) / s;
        *pad_out = std::max((*out - 1) * s + eff - n, 0) / 2;
    } else {
        OF_CHECK(n + 2 * pad >= eff, Shape,
                 what + ": the window (" + std::to_string(eff) + ") is larger than the padded input (" +
                     std::to_string(n + 2 * pad) + ")");
        *out = (n + 2 * pad - eff) / s + 1;
        *pad_out = pad;
    }
    return {};
}

void read_conv2d(const LayerReader& r, LayerSpec& l) {
    l.units = int(r.integer("filters", 1, 1 << 20));
    l.bias = r.flag_or("bias", true);
    l.quant = read_quant(r);
    read_window(r, l);
}

Status build_conv2d(const LayerSpec& l, ModelBuilder& b) {
    Unit u{b.width, 0, -1, -1};
    OF_TRY(image_window(l, b, u, false));
    OF_TRY(check_positive(l.units, "conv2d filters"));
    u.kind = &conv2d_kind;
    u.quant = l.quant;
    b.m.has_quant = b.m.has_quant || l.quant != 0;
    u.g.Co = l.units;
    OF_TRY(b.params(u, uint64_t(u.g.patch()), uint64_t(u.g.Co), "conv2d kernel", l.bias ? uint64_t(u.g.Co) : 0));
    OF_CHECK(l.trainable, Config, b.where + ": only dense layers can be frozen");
    return add_image_unit(b, u, false);
}

void tensors_conv2d(const Unit& u, const std::string& name, std::vector<UnitTensor>& out) {
    out.push_back({name + ".weight", u.w_off, {u.g.Co, u.g.kh, u.g.kw, u.g.C}});
    if (u.b_off >= 0) out.push_back({name + ".bias", u.b_off, {u.g.Co}});
}

void read_graph_conv(const LayerReader& r, LayerSpec& l) {  // { units, graph: { nodes, edges: [[i, j], ...] } }
    l.units = int(r.integer("units", 1, 1 << 20));
    const std::unique_ptr<LayerReader> g = r.object("graph");
    l.nodes = int(g->integer("nodes", 1, 1 << 24));
    l.edges = g->int_pairs("edges", "edge", 0, 1 << 24);
}

// node features (N, F) -> (N, H): A^ X W^T + b
Status build_graph_conv(const LayerSpec& l, ModelBuilder& b) {
    OF_CHECK(b.seq && b.T == l.nodes, Config,
             b.where + ": graphConv needs node features [nodes, features] with nodes = " + std::to_string(l.nodes) +
                 " (inputShape on the first layer)");
    OF_TRY(check_positive(l.units, "graphConv units"));
    auto g = std::make_shared<Graph>();
    g->N = l.nodes;
    std::vector<std::vector<int>> adj(size_t(l.nodes));
    for (const auto& e : l.edges) {
        OF_CHECK(e.first >= 0 && e.first < l.nodes && e.second >= 0 && e.second < l.nodes, Config,
                 b.where + ": edge (" + std::to_string(e.first) + ", " + std::to_string(e.second) +
                     ") names a node outside [0, " + std::to_string(l.nodes) + ")");
        adj[size_t(e.first)].push_back(e.second);
        adj[size_t(e.second)].push_back(e.first);
    }
    std::vector<float> inv_sqrt_deg(size_t(l.nodes));
    for (int i = 0; i < l.nodes; i++) {
        auto& a = adj[size_t(i)];
        a.push_back(i);  // self-loop
        std::sort(a.begin(), a.end());
        a.erase(std::unique(a.begin(), a.end()), a.end());
        inv_sqrt_deg[size_t(i)] = 1.0f / std::sqrt(float(a.size()));
    }
    g->row_ptr.push_back(0);
    for (int i = 0; i < l.nodes; i++) {
        for (int j : adj[size_t(i)])
            g->col.push_back(j), g->val.push_back(inv_sqrt_deg[size_t(i)] * inv_sqrt_deg[size_t(j)]);
        g->row_ptr.push_back(int(g->col.size()));
    }
    Unit u{b.width, 0, -1, -1};
    u.kind = &graph_conv_kind;
    u.graph = g;
    u.g.H = l.nodes, u.g.W = 1, u.g.C = b.F, u.g.Ho = l.nodes, u.g.Wo = 1, u.g.Co = l.units;
    OF_TRY(b.params(u, uint64_t(b.F), uint64_t(l.units), "graphConv weight", uint64_t(l.units)));
    OF_TRY(b.output(u, uint64_t(l.nodes), uint64_t(l.units)));
    b.F = l.units;
    b.add(u);
    return {};
}

// On a device: an image conv's patches by im2row, their adjoint by row2im; a graph's by A^ both ways (its CSR
// adjacency goes to the device on first use, into the unit's buffers 0-2)
Status im2row(const UnitPass& p, const float* x, float* cols) {
    return p.d->im2row(dev::PatchArgs{cols, x, p.u.g}, p.u.gemm_rows(p.rows) * p.u.g.patch());
}
Status row2im(const UnitPass& p, const float* dcols, float* din) {
    return p.d->row2im(dev::PatchArgs{din, dcols, p.u.g}, int64_t(p.rows) * p.u.I);
}
Status aggregate(const UnitPass& p, const float* x, float* out) {
    const Graph& h = *p.u.graph;
    DeviceBuffer &row_ptr = p.buffer(0), &col = p.buffer(1), &val = p.buffer(2);
    if (!row_ptr.size()) {
        OF_TRY(col.assign(p.d, h.col.data(), h.col.size() * sizeof(int)));
        OF_TRY(val.assign(p.d, h.val.data(), h.val.size() * sizeof(float)));
        OF_TRY(row_ptr.assign(p.d, h.row_ptr.data(), h.row_ptr.size() * sizeof(int)));
    }
    const dev::GraphArgs a{out, x, row_ptr.as<int>(), col.as<int>(), val.f(), h.N, p.u.g.C};
    return p.d->graph(a, int64_t(p.rows) * h.N * p.u.g.C);
}
const DeviceUnitOps conv2d_device{true, nullptr, nullptr, im2row, row2im};
const DeviceUnitOps graph_device{false, nullptr, nullptr, aggregate, aggregate};

}  // namespace

const DeviceUnitOps position_device{false};  // a GEMM unit whose patches are its input itself

Status add_position_linear(ModelBuilder& b, const UnitKind* kind, int units, bool bias, int quant) {
    Unit u{b.width, 0, -1, -1};
    u.kind = kind;
    u.quant = quant;
    b.m.has_quant = b.m.has_quant || quant != 0;
    ConvGeom& g = u.g;  // a 1x1 window over T x 1 positions
    g.H = b.T, g.W = 1, g.C = b.F, g.Ho = b.T, g.Wo = 1, g.Co = units;
    OF_TRY(b.params(u, uint64_t(b.F), uint64_t(units), "per-position weight", bias ? uint64_t(units) : 0));
    OF_TRY(b.output(u, uint64_t(b.T), uint64_t(units)));
    b.F = units;
    b.add(u);
    return {};
}

void read_window(const LayerReader& r, LayerSpec& l) {
    r.int_pair("kernel", 1, 1 << 16, &l.kh, &l.kw);
    r.int_pair("strides", 1, 1 << 16, &l.sh, &l.sw);
    r.int_pair("dilation", 1, 1 << 16, &l.dh, &l.dw);
    const std::string pad = r.is_text("padding") ? r.text("padding") : "";
    if (pad == "same") l.ph = l.pw = -1;
    else if (pad == "valid") l.ph = l.pw = 0;
    else r.int_pair("padding", 0, 1 << 16, &l.ph, &l.pw);
}

Status image_window(const LayerSpec& l, ModelBuilder& b, Unit& u, bool global) {
    OF_CHECK(b.spatial, Config,
             b.where + ": conv2d and pooling need an image input (give the first layer inputShape [H, W, C])");
    OF_CHECK(!b.seq, Config, b.where + ": conv2d and pooling need an image input, not a sequence");
    OF_CHECK(l.kh >= 1 && l.kw >= 1 && l.sh >= 1 && l.sw >= 1 && l.dh >= 1 && l.dw >= 1, Config,
             b.where + ": kernel, stride and dilation must be positive");
    ConvGeom& g = u.g;
    g.H = b.H, g.W = b.W, g.C = b.C;
    if (global) g.kh = b.H, g.kw = b.W;
    else g.kh = l.kh, g.kw = l.kw, g.sh = l.sh, g.sw = l.sw, g.dh = l.dh, g.dw = l.dw;
    OF_TRY(window(b.H, g.kh, g.sh, g.dh, global ? 0 : l.ph, &g.Ho, &g.ph, b.where));
    OF_TRY(window(b.W, g.kw, g.sw, g.dw, global ? 0 : l.pw, &g.Wo, &g.pw, b.where));
    return {};
}

Status add_image_unit(ModelBuilder& b, Unit& u, bool global) {
    OF_TRY(b.output(u, uint64_t(u.g.positions()), uint64_t(u.g.Co)));
    b.H = u.g.Ho, b.W = u.g.Wo, b.C = u.g.Co;
    if (global) b.spatial = false;
    b.add(u);
    return {};
}

extern const LayerType conv2d_layer{"conv2d", &conv2d_kind, read_conv2d, build_conv2d};
extern const LayerType graph_conv_layer{"graphConv", &graph_conv_kind, read_graph_conv, build_graph_conv};
extern const UnitKind conv2d_kind{UnitFamily::ConvLike, "conv",           &conv2d_device,    convlike_init,
                                  tensors_conv2d,       convlike_forward, convlike_backward, convlike_lr_reduce};
extern const UnitKind graph_conv_kind{UnitFamily::ConvLike, "graph",          &graph_device,     convlike_init,
                                      position_tensors,     convlike_forward, convlike_backward, convlike_lr_reduce};
bool Unit::image_conv() const { return kind == &conv2d_kind; }

}  // namespace of
