// Per-unit building blocks shared by the clean forward, generic BP and generic ULR (estimators/generic.cpp):
// a unit's linear part (dense GEMM, conv im2row + GEMM, or pooling), its bias + activation, its backward, and
// its likelihood-ratio reduction. `theta` is a parameter slab in the model's layout; `cols` is scratch of
// rows x patch_width() floats (conv patches, an adapter's low-rank products). Each kind implements them in its file in
// native/units/; these entry points dispatch through the registry (units/registry.cpp).
#pragma once
#include <map>

#include "model/model.h"
#include "model/recurrent.h"

namespace of {

// What a sequence unit needs besides cols: its aux (rows x seq_aux_width, kept from forward to backward), state
// scratch (rows x Model::seq_scratch_width()), the BPTT pre-activation gradients (rows x noise_width) and
// per-step row weights (rows x T).
struct SeqCtx {
    float* aux = nullptr;
    float* scratch = nullptr;
    float* dP = nullptr;
    float* wexp = nullptr;
};

// out (rows, O) = the unit's pre-activation without bias (units with parameters) or its output, overwritten.
// Sequence units (the whole recurrence of a recurrent one) need `sq`.
void unit_linear(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, float* out,
                 float* cols, const SeqCtx* sq = nullptr);
// What a unit's training-mode forward needs besides its input (unit_train_linear).
struct TrainCtx {
    const float* skip = nullptr;  // a concat unit: the block's input, row r / skip_rep
    int skip_rep = 1;
    int rep = 1, sample0 = 0;  // dropout: row r is sample sample0 + r / rep (one mask per sample, shared by its copies)
    uint64_t seed = 0;
    uint32_t step = 0, unit = 0;
    bool batch_stats = false;  // batchNorm: this batch's statistics from `in` first (else the ones it holds)
};
// unit_linear in training mode: dropout draws its masks, batchNorm normalizes with the batch's statistics, a concat
// unit joins the block's input; every other kind is unit_linear.
void unit_train_linear(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, float* out,
                       float* cols, const SeqCtx* sq, const TrainCtx& t);
// unit_backward in training mode, the backward of unit_train_linear: dropout applies its masks to the gradient; every
// other kind is unit_backward.
void unit_train_backward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows,
                         const float* dv, float* dW, float* din, float* cols, const SeqCtx* sq, const TrainCtx& t);
// The clean (inference) forward of one unit: out (rows, O) = its output after bias and activation, with the block's
// input `skip` (rows, the block's I) added at a residual block's end or joined by a concat unit (else unused).
void unit_clean_forward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, float* out,
                        float* cols, const SeqCtx* sq, const float* skip);
// Clean: v += bias (per output, or per channel for conv), a = act(v). a may alias v.
void unit_bias_act(const KernelTable& k, const Unit& u, const float* theta, float* a, float* v, int rows);
// Backward from dv (rows, O), the gradient at the pre-activation: the unit's weight gradient into dW and its bias
// gradient right after it (overwritten) when dW != nullptr, and din (rows, I) when non-null. in: the unit's
// input rows.
void unit_backward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, const float* dv,
                   float* dW, float* din, float* cols, const SeqCtx* sq = nullptr);
// The end of a residual block: a (rows, O) += src row r / rep (the block's input), then a = post_act(a).
void residual_add(const KernelTable& k, const Unit& u, float* a, const float* src, int rows, int rep);
// A concat unit: out (rows, O) per position = [src row r / rep (g.C values), f (g.Co values)]; and its backward,
// which splits dout into df (rows, g.Co per position) and dsrc (rows, g.C per position).
void concat_forward(const Unit& u, float* out, const float* f, const float* src, int rows, int rep);
void concat_backward(const Unit& u, const float* dout, float* df, float* dsrc, int rows);
// batchNorm in training: this batch's mean and (biased) variance per channel over rows and positions, into
// u.batch; the running statistics move by momentum 0.1 towards them (unbiased variance).
void measure_batch_stats(const Unit& u, const float* in, int rows);
void update_running_stats(const Unit& u, int rows);
// gain * (x - mean) / sqrt(var + eps) with the batch statistics (training) into out (rows, O).
void apply_batch_stats(const Unit& u, const float* theta, const float* in, int rows, float* out, int rep = 1);
// Values of the unit's parameters: weights then bias (0 for pools).
inline int64_t param_size(const Unit& u) { return u.n_par; }
// LR reduction of a noisy unit: dW = alpha (diag(w) S)^T in  in the unit's GEMM view, db = alpha colsum(diag(w) S);
// S (rows, O) scores, w (rows) row weights (nullptr: all 1). dW, db overwritten (db unused without bias; an
// adapter writes its factors' gradients at dW and nothing at db). theta: the parameters (an adapter's reduction reads
// its factors). wexp: scratch of rows x positions floats (conv; dense: rows).
void unit_lr_reduce(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, const float* S,
                    const float* w, float alpha, float* dW, float* db, float* cols, float* wexp);
// The unit's bias expanded to one value per output (conv: per channel, repeated over positions): out (O).
void unit_bias_row(const Unit& u, const float* theta, float* out);
// The parameter tensors of a model's units in order, named <name><n>.weight, .recurrent, .bias: n counts the units
// that share the name (a dense layer's and a per-position dense's both count as dense<n>; a multiHeadAttention's
// two projections share one n: attention<n>.qkv.weight, attention<n>.out.weight).
struct UnitTensor {
    std::string name;
    int64_t offset;  // into the parameter slab
    std::vector<int> shape;
};
class TensorNames {
   public:
    std::vector<UnitTensor> of(const Unit& u);  // the next unit's tensors (none without parameters)

   private:
    std::map<std::string, int> count_;
};

}  // namespace of
