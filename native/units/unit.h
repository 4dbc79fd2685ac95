// The seam every unit kind implements, one file per kind (or tight family) in native/units/. A layer type reads
// its options from the JS spec and turns them into units (shape inference, parameter layout); a unit kind
// initializes its parameters and computes its clean forward, BP backward and LR reduction. The entry points of
// model/units.h dispatch here through the registry (units/registry.h). Not a place for estimator logic.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/units.h"

namespace of {

struct DeviceUnitOps;  // device/unit_pass.h

// One layer's options in the JS spec (the addon reads them from a JS object). A method given a bad or missing
// value does not return: the addon's reader throws its typed argument error.
class LayerReader {
   public:
    virtual ~LayerReader() = default;
    virtual bool is_text(const char* key) const = 0;
    virtual int64_t integer(const char* key, int64_t lo, int64_t hi) const = 0;
    virtual double number(const char* key) const = 0;  // finite
    virtual double number_or(const char* key, double def) const = 0;
    virtual bool flag_or(const char* key, bool def) const = 0;
    virtual std::string text(const char* key) const = 0;
    virtual std::string text_or(const char* key, const std::string& def) const = 0;
    virtual void int_pair(const char* key, int64_t lo, int64_t hi, int* a, int* b) const = 0;  // [a, b]
    // [[i, j], ...], each value in [lo, hi] (`item` names one value in messages)
    virtual std::vector<std::pair<int, int>> int_pairs(const char* key, const char* item, int64_t lo,
                                                       int64_t hi) const = 0;
    virtual std::unique_ptr<LayerReader> object(const char* key) const = 0;  // nested options: their keys read as key.x
    [[noreturn]] virtual void fail(const std::string& what) const = 0;
};

// What a layer receives: `width` values per row, an image (H, W, C), a sequence (T, F) or flat.
struct LayerShape {
    int width = 0;
    bool spatial = false, seq = false;
    int H = 0, W = 0, C = 0, T = 0, F = 0;
};

// Model::create's state while it reads the layers: the shape the next layer receives (the base), the block being
// read, and the parameter slab laid out so far.
struct ModelBuilder : LayerShape {
    explicit ModelBuilder(Model& model) : m(model) {}
    Model& m;
    int index = 0;         // the layer being read
    std::string where;     // "layer <index>", for messages
    uint64_t total = 0;    // parameter values laid out so far
    int block_start = -1;  // the residual or concat block being read: its first unit, and the shape of its input
    LayerShape block;
    int residual_end =
        -2;  // the layer that closed the last residual block (an activation right after it follows the sum)

    // Lays out `weights` values at u.w_off, then `bias` values at u.b_off (0: no bias, b_off stays -1); sets u.n_par.
    Status params(Unit& u, uint64_t weights, uint64_t bias);
    // The same with weights = rows x cols, a product checked for size (`what` names it).
    Status params(Unit& u, uint64_t rows, uint64_t cols, const char* what, uint64_t bias);
    // u.O = a b values per row, at most 2^28.
    Status output(Unit& u, uint64_t a, uint64_t b);
    // Appends u: the next layer reads its output (width = u.O). Clears m.mlp unless u is a plain dense unit.
    void add(const Unit& u);
};

// A `type` of the JS layer spec.
struct LayerType {
    const char* name;
    const UnitKind* unit;  // the kind of unit it makes (nullptr: it makes none, or its build chooses)
    void (*read)(const LayerReader& r, LayerSpec& l);  // its options into l; nullptr: none
    Status (*build)(const LayerSpec& l, ModelBuilder& b);
};

// A unit kind: what it computes. forward, backward and lr_reduce are model/units.h's unit_linear, unit_backward and
// unit_lr_reduce for this kind (their comments give the buffers). A unit points at its kind (Unit::kind).
struct UnitKind {
    UnitFamily family;
    const char* tensor_name;      // its parameter tensors are <tensor_name><n>.weight, ... (nullptr: no parameters)
    const DeviceUnitOps* device;  // its passes on a device (device/unit_pass.h); nullptr: it runs on the CPU
    // the parameters' start values (Philox stream init, counter = the unit's index, element); nullptr: none
    void (*init)(const Unit& u, float* theta, uint64_t seed, uint32_t unit);
    void (*tensors)(const Unit& u, const std::string& name, std::vector<UnitTensor>& out);
    void (*forward)(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, float* out,
                    float* cols, const SeqCtx* sq);
    void (*backward)(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows,
                     const float* dv, float* dW, float* din, float* cols, const SeqCtx* sq);
    // nullptr: no parameters, or reduced by its own function (recurrent: seq_reduce)
    void (*lr_reduce)(const KernelTable& k, const Unit& u, const float* in, int rows, const float* S, const float* w,
                      float alpha, float* dW, float* db, float* cols, float* wexp);
    int (*noise_width)(const Unit& u);  // ULR noise values per row; nullptr: O (the pre-activation)
    // training mode, where it differs from forward (model/units.h unit_train_linear); nullptr: forward
    void (*train_forward)(const Unit& u, const float* theta, const float* in, int rows, float* out, const TrainCtx& t);
    // an LR reduction that reads the unit's parameters (an adapter's low-rank factors) in place of lr_reduce: the
    // gradient of its trainable parameters into dW; nullptr: lr_reduce
    void (*lr_reduce_params)(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows,
                             const float* S, const float* w, float alpha, float* dW, float* cols);
    // its input gradient din from dv, where training mode differs (unit_train_backward); nullptr: backward
    void (*train_backward)(const Unit& u, const float* theta, const float* dv, int rows, float* din, const TrainCtx& t);
    // its tensors continue the name the last unit of its tensor_name opened (an attention's output projection)
    bool continues_name = false;
};

// Shared by the kinds (units/build.cpp).
// Weights uniform in +-bound from Philox, 4 values per call; the bias is left alone.
void init_uniform(const Unit& u, float* theta, float bound, uint64_t seed, uint32_t unit);
// n values uniform in +-bound: draw `draw` of the unit's init stream (init_uniform is draw 0).
void fill_uniform(float* w, int64_t n, float bound, uint64_t seed, uint32_t unit, uint32_t draw);
// weights: 'real' (0, the default), 'binary' (1) or 'ternary' (2)
int read_quant(const LayerReader& r);
// rows * positions row weights: row r's weight (nullptr: 1) repeated over its positions
void expand_row_weights(float* wexp, const float* w, int rows, int64_t positions);

}  // namespace of
