// What conv2d and pooling share (units/conv.cpp): a window over a channels-last image, read from the spec and
// laid over the image the builder holds; and the per-position dense that dense and multiHeadAttention make.
#pragma once
#include "units/unit.h"

namespace of {

// kernel, strides, dilation and padding ('same', 'valid' or [top, left])
void read_window(const LayerReader& r, LayerSpec& l);
// u.g's input, window and output size for the builder's image (global: one window over the whole image); not g.Co.
Status image_window(const LayerSpec& l, ModelBuilder& b, Unit& u, bool global);
// Appends u (g.Co set): its output, Ho Wo Co per row, is the next layer's image (global: a flat vector).
Status add_image_unit(ModelBuilder& b, Unit& u, bool global);
// Appends a dense map applied per position of the builder's sequence, (T, F) -> (T, units): `kind` SeqDense, or an
// attention's projection (AttentionQkv, AttentionOut). Weight (units, F), then the bias when `bias`.
Status add_position_dense(ModelBuilder& b, UnitKind kind, int units, bool bias, int quant);

}  // namespace of
