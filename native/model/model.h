// Model: a stack of dense units (dense layer + at most one activation), one parameter slab holding every
// tensor (llm.c-style: W0, b0, W1, b1, ...), the gradient slab in the same layout, optimizer state, and
// the forward workspaces the estimators reuse across steps. Not thread-safe: one owner at a time
// (the addon's busy flag enforces it while fit() runs on its own thread).
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/buffer.h"
#include "core/status.h"
#include "kernels/kernels.h"
#include "units/registry.h"

namespace of {

class DeviceTrainer;  // device/trainer.h

// One layer of the spec: its type (units/registry.h) and the options the types read.
struct LayerSpec {
    const LayerType* type = nullptr;
    int units = 0;  // dense: out-features; conv2d: filters
    bool bias = true;
    bool trainable = true;    // dense: false freezes it (only a leading run of dense layers may be frozen)
    Act act = Act::Identity;  // activation
    float alpha = 0.01f;      // leaky-relu slope
    // conv2d / pooling: kernel, stride, dilation; padding top/left (ph = pw = -1: 'same', the TensorFlow rule)
    int kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1, ph = 0, pw = 0;
    // recurrent (units = hidden size): all steps' outputs or only the last; lif: leak beta, threshold,
    // surrogate slope (BP only); repeat: steps
    bool return_sequences = false;
    float beta = 0.9f, threshold = 1.0f, slope = 5.0f;
    int steps = 1;
    float rate = 0.0f;  // dropout
    int groups = 1;     // groupNorm
    int quant = 0;      // dense, conv2d: 0 real weights, 1 binary, 2 ternary
    int nodes = 0;      // graphConv: the graph's nodes and undirected edges
    std::vector<std::pair<int, int>> edges;
    // dense: a low-rank adapter of this rank (0: none) and its alpha (the update is scaled by alpha / rank; 0: rank)
    int adapter_rank = 0;
    float adapter_alpha = 0.0f;
    int vocab = 0;        // embedding: token ids in [0, vocab) (units: the embedding width)
    int heads = 1;        // multiHeadAttention
    bool causal = false;  // multiHeadAttention: position t attends to positions <= t only
};

// One layer as Model::create lays it out: the shape it gives ([features], [H, W, C] or [steps, features]) and the
// units made up to it.
struct LayerLayout {
    std::vector<int> output;
    int units = 0;
};

struct ModelSpec {
    int inputs = 0;
    int in_h = 0, in_w = 0, in_c = 0;  // image input (channels-last), when the first layers are spatial
    int in_t = 0, in_f = 0;            // sequence input (steps, features per step), when the first layer is recurrent
    std::vector<LayerSpec> layers;
    LossKind loss = LossKind::CrossEntropy;
    uint64_t seed = 0;
};

// The normalized adjacency of a graph convolution, D^-1/2 (A + I) D^-1/2 (Kipf & Welling 2017), in CSR form.
// Symmetric, so it is its own transpose in the backward.
struct Graph {
    int N = 0;
    std::vector<int> row_ptr, col;
    std::vector<float> val;
};

// Geometry of a sequence unit: T steps of F input features, H hidden units, G gates (rnn 1, gru 3, lstm 4,
// lif 1). Parameters: W (G H, F), then U (G H, H) (not for lif), then b (G H).
struct SeqGeom {
    int T = 0, F = 0, H = 0, G = 1;
    bool return_sequences = false;
    float beta = 0.9f, threshold = 1.0f, slope = 5.0f;  // lif
    bool has_u = true;                                  // recurrent weights U (every kind but lif)
};

// One computing layer of any kind plus at most one activation. I, O: values per row in and out (a conv's O is
// Ho Wo Co). Dense and conv units have parameters and take ULR noise on their pre-activation; pools do not.
struct Unit {
    int I, O;
    int64_t w_off, b_off;  // offsets into the slab; b_off < 0 when the layer has no bias (w_off < 0: none)
    Act act = Act::Identity;
    float alpha = 0.01f;
    const UnitKind* kind = nullptr;      // what it computes (units/unit.h), set by the layer type that builds it
    ConvGeom g{};                        // conv / pool geometry
    SeqGeom q{};                         // sequence geometry (rnn, gru, lstm, lif, repeat, timeMean)
    std::shared_ptr<const Graph> graph;  // graphConv (its geometry: g.Ho = N positions, g.C = F, g.Co = H)
    // The last unit of a residual block: its output (after its activation) gets the block's input added (the input of
    // unit skip_from), then post_act. A concat unit (the end of a concat block) reads the input of unit skip_from too:
    // per position (g.Ho of them) it writes that input's g.C values, then its own input's g.Co values.
    int skip_from = -1;
    bool starts_block = false;  // the first unit of a residual or concat block (its input is the block's skip)
    bool ends_residual() const { return skip_from >= 0 && !concat(); }  // adds the skip to its output
    bool concat() const;                                                // a concat block's join (units/block.cpp)
    bool pool() const;                                                  // max or avg pooling (units/pool.cpp)
    bool image_conv() const;                                            // conv2d (units/conv.cpp)
    float rate = 0.0f;  // dropout: the fraction of values zeroed in training
    int groups = 1;     // groupNorm: channel groups, each normalized over all positions of a row
    int quant = 0;      // dense, conv2d: the forward uses binary (1) or ternary (2) weights of the real ones
    // embedding: q.T tokens -> q.T rows of q.F values from a (vocab, q.F) table; positionalEmbedding: q.T x q.F;
    // attend: q.T positions of Q, K, V (q.F values each) in, heads of q.F / heads values, causal or not
    int vocab = 0, heads = 1;
    bool causal = false;
    Act post_act = Act::Identity;
    float post_alpha = 0.01f;
    // adapter (LoRA): y = x W^T + (alpha / r) (x A^T) B^T + b, W (O, I) and b frozen at base_off and b_off, the
    // factors A (r, I) then B (O, r) at w_off (its n_par: the factors alone)
    int rank = 0;
    float scale = 0.0f;  // alpha / r
    int64_t base_off = -1;
    int64_t n_par = 0;  // parameter values (weights and bias)
    bool param() const { return n_par > 0; }
    bool recurrent() const { return unit_family(kind) == UnitFamily::Recurrent; }
    // a linear map of flat rows, out (rows, O) = in (rows, I) W^T + b (an adapter adds its low-rank term)
    bool flat_linear() const { return param() && unit_family(kind) == UnitFamily::Plain; }
    // conv and graphConv: a dense map per output position of gathered inputs (im2row patches, or neighbour sums)
    bool convlike() const { return unit_family(kind) == UnitFamily::ConvLike; }
    // rows of the GEMM view: a conv's output (rows Ho Wo, Co); a dense layer's (rows, O)
    // layerNorm: per position (g.Ho of them) over the last axis (g.Co values), gain and bias per value of that axis
    bool norm() const { return unit_family(kind) == UnitFamily::Norm; }
    bool positional() const { return convlike() || norm(); }
    int64_t gemm_rows(int64_t rows) const {
        return positional() ? rows * g.positions() : recurrent() ? rows * q.T : rows;
    }
    int gemm_cols() const { return positional() ? g.Co : O; }
    int fan_in() const { return norm() ? 1 : convlike() ? g.patch() : I; }
    // batchNorm: running mean and variance (inference), and this step's batch mean and variance (training; ULR's
    // noisy passes use the clean batch's), g.Co values each; shared with the model's copies of the unit
    std::shared_ptr<std::vector<float>> running, batch;
    // ULR noise values per row: the pre-activation (dense, conv), or every gate at every step (recurrent)
    int noise_width() const;
};

// Targets of a batch: class labels (cross-entropy) or values (rows, outputs) for MSE.
struct Targets {
    const int32_t* labels = nullptr;
    const float* values = nullptr;
};

// Scratch for clean forward passes. Each caller owns one, so several can run at once (read-only on the model).
struct InferScratch {
    Buffer d0, d1, out, loss, cols, aux, seq, skip, eff;
};

struct Model {
    // With `layout`: the layers alone, no parameter slab (model/describe.h). Each layer that builds appends its row,
    // so on an error the failing layer is layout->size().
    static Status create(const ModelSpec& spec, std::unique_ptr<Model>* out,
                         std::vector<LayerLayout>* layout = nullptr);

    int inputs = 0, outputs = 0;
    int groups = 1;       // labels per row: > 1 when the output is a sequence or node set classified per position
    int token_vocab = 0;  // > 0: the input is token ids in [0, token_vocab) (the first layer looks them up)
    LossKind loss = LossKind::CrossEntropy;
    uint64_t seed = 0;
    std::vector<Unit> units;
    bool mlp = true;  // a multilayer perceptron (every unit dense, real weights): a frozen prefix runs as a sub-model
    int64_t n_params = 0;
    std::shared_ptr<Buffer> params;  // shared: JS views of parameters() keep it alive after dispose
    Buffer grads, opt_m, opt_v;
    // Slab ranges [begin, end) that never train (an adapter's base weight and bias), sorted: their gradient is 0 for
    // every estimator, SPSA / ES do not perturb them, and the optimizer (weight decay included) never changes them.
    std::vector<std::pair<int64_t, int64_t>> frozen_ranges;
    void zero_frozen(float* slab) const;  // slab values in frozen_ranges = 0
    int frozen = 0;                       // leading layers with parameters excluded from training (fine-tuning)
    uint32_t step = 0;                    // training steps taken: the noise counter's step
    uint32_t epochs_run = 0;              // epochs completed: the shuffle counter
    uint32_t epoch_step = 0;              // batches done in an epoch that was cut short (cancel); 0 between epochs
    int64_t opt_t = 0;                    // optimizer updates since its state was reset
    double running_loss = 0.0;            // ULR running-average baseline: EMA of earlier steps' mean loss
    bool has_running = false;
    std::vector<double> log_sigma;  // learnable ULR sigma per dense layer (empty until first used)
    bool uses_batch_stats = false;  // some unit normalizes with its batch's statistics in training (Unit::running)
    bool has_quant = false;         // some layer computes with binary or ternary weights
    // The parameters the forward computes with: theta itself, or a copy in `scratch` with the binary / ternary
    // weights of the layers that use them (per output row: sign(W) mean|W|; ternary keeps |W| > 0.7 mean|W|).
    const float* effective(const float* theta, Buffer& scratch) const;
    std::vector<double> layer_var;  // layer-wise auto copies: running per-copy variance per layer (empty: none)
    int opt_kind = -1;              // OptKind of the state in opt_m/opt_v; -1: none yet
    const KernelTable* k = &cpu_kernels();
    // backend 'cuda' (or its host simulation 'sim'): the steps it supports run on a device (device/trainer.h)
    std::shared_ptr<DeviceTrainer> device;
    std::string placement = "cpu";  // where the last fit or step ran: "cuda", "sim", or "cpu (why not the device)"
    std::atomic<bool> busy{false};
    std::atomic<bool> cancel{false};
    std::atomic<bool> at_epoch_end{false};  // fit waits while its epoch callback runs: the state may be read (saved)

    // Scratch reused across steps (grown on demand, never shrunk).
    InferScratch infer;  // for synchronous predict/evaluate and fit's validation
    struct Workspace {
        std::vector<Buffer> a, v;                 // per unit (BP): activations, pre-activations
        Buffer loss, d0, d1, cols;                // BP (cols: conv patches)
        std::vector<Buffer> aux;                  // BP: per unit, what a recurrent unit keeps for its backward
        std::vector<Buffer> inner, sum, pending;  // BP of residual blocks: act(v) and the sum at a block's end; the
                                                  // skip gradient waiting at its start
        Buffer seq, dP, wexp;          // BP of recurrent units: state scratch, pre-activation gradients, step weights
        Buffer eff;                    // the effective parameters (binary / ternary weights)
        Buffer v0, g, ones, partials;  // ULR: clean first layer, G = sum_k w E_1, block partial gradients
        Buffer outputs, hook_loss;     // ULR with a loss hook: every row's output, the losses it returned
        Buffer theta, z;               // SPSA / ES: a perturbed parameter slab and one direction
        // ULR modules: the first module's B-row forward (its input, and per unit what BP's backward reads:
        // estimators/bp.h), G = sum_k w s(E) at its boundary, and a recurrent boundary's U and b gradient (from the
        // copies). Two sets: with pipelining the previous step's set is reduced while this step's is filled.
        struct FirstModule {
            Buffer x, g, ub;
            std::vector<Buffer> v, a, aux, inner, sum;
            int B = 0, end = 0;    // rows, the module's end unit
            uint32_t step = 0;     // the step of its forward (dropout masks)
            bool pending = false;  // pipelining: holds a step whose reduction has not run yet
        } first[2];
        int first_cur = 0;
    } ws;

    float* W(const Unit& u) const { return params->data() + u.w_off; }
    float* b(const Unit& u) const { return u.b_off < 0 ? nullptr : params->data() + u.b_off; }
    int max_width() const;
    int64_t patch_width() const;        // the most cols scratch per input row: conv patches, adapter products
    int64_t max_positions() const;      // the most GEMM-view rows per input row (conv positions, steps; at least 1)
    int param_units() const;            // units with parameters (the noisy layers of ULR)
    int frozen_end() const;             // the unit after the last frozen one (0: none frozen)
    int64_t seq_scratch_width() const;  // recurrent state scratch per row (0: no recurrent unit)
    // The clean forward's chunking (forward_with): rows per pass, per-row widths it keeps, and the floats its
    // InferScratch holds for a pass over `rows` rows (step_memory counts them with the same functions).
    int64_t forward_chunk() const;
    int64_t forward_aux_width() const;
    int64_t forward_skip_width() const;
    double forward_scratch_floats(int64_t rows) const;
    int64_t max_noise_width() const;  // the widest unit's ULR noise per row

    // Clean forward of `rows` rows: x (rows, inputs) -> out (rows, outputs), overwritten. Reads the parameters
    // only, so concurrent calls with separate scratch are safe (not concurrently with training).
    Status forward(float* out, const float* x, int64_t rows, InferScratch& sc) const;
    // The same with another parameter slab `theta` (layout of params): weight-perturbation estimators.
    Status forward_with(const float* theta, float* out, const float* x, int64_t rows, InferScratch& sc) const;
    // Mean loss and accuracy (cross-entropy) of a clean forward, in chunks.
    Status evaluate(const float* x, const Targets& y, int64_t rows, double* loss, double* accuracy,
                    InferScratch& sc) const;
};

// Checks a data set before use: sizes, non-finite inputs, labels in range. O(rows * cols).
Status validate_data(const Model& m, const float* x, int64_t x_len, const Targets& y, int64_t y_len, int64_t rows);
// correct hits over the labeled rows (with per-position labels, the labeled positions); 0 for MSE.
double accuracy_of(const Model& m, const Targets& y, int64_t rows, int64_t correct);
// A model that starts with an embedding reads token ids: every x value an integer in [0, vocab) (else a Data error).
Status validate_tokens(const Model& m, const float* x, int64_t rows);

}  // namespace of
