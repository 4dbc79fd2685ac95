// What the conv-like kinds share (units/conv.cpp): a window over a channels-last image, read from the spec and laid
// over the image the builder holds, which conv2d and pooling use; and the conv-like math, which the kinds that apply
// a linear map per position of a sequence (dense on one: units/dense.cpp; an attention's projections:
// units/attention.cpp) take for their own.
#pragma once
#include "units/unit.h"

namespace of {

// kernel, strides, dilation and padding ('same', 'valid' or [top, left])
void read_window(const LayerReader& r, LayerSpec& l);
// u.g's input, window and output size for the builder's image (global: one window over the whole image); not g.Co.
Status image_window(const LayerSpec& l, ModelBuilder& b, Unit& u, bool global);
// Appends u (g.Co set): its output, Ho Wo Co per row, is the next layer's image (global: a flat vector).
Status add_image_unit(ModelBuilder& b, Unit& u, bool global);

// out (rows Ho Wo, Co) = cols W^T, cols the unit's gathered inputs (a per-position unit's: its input itself); its
// BP backward, LR reduction and Glorot-uniform init (UnitKind's forward, backward, lr_reduce and init).
void convlike_forward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows, float* out,
                      float* cols, const SeqCtx*);
void convlike_backward(const KernelTable& k, const Unit& u, const float* theta, const float* in, int rows,
                       const float* dv, float* dW, float* din, float* cols, const SeqCtx*);
void convlike_lr_reduce(const KernelTable& k, const Unit& u, const float* in, int rows, const float* S, const float* w,
                        float alpha, float* dW, float* db, float* cols, float* wexp);
void convlike_init(const Unit& u, float* theta, uint64_t seed, uint32_t unit);
// A per-position unit's tensors <name>.weight (units, F) and <name>.bias (units), and its device passes: a GEMM
// whose patches are its input.
void position_tensors(const Unit& u, const std::string& name, std::vector<UnitTensor>& out);
extern const DeviceUnitOps position_device;
// Appends a unit of `kind` that applies a linear map per position of the builder's sequence, (T, F) -> (T, units):
// weight (units, F), then the bias when `bias`.
Status add_position_linear(ModelBuilder& b, const UnitKind* kind, int units, bool bias, int quant);

}  // namespace of
