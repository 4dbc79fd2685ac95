// Convolution and pooling kernels on channels-last images (each row of a batch is one H x W x C image, the
// tfjs / TensorFlow default). A convolution is im2row + one GEMM: the patches of n images form
// A (n Ho Wo, kh kw C), and  V = A W^T  with W (Co, kh kw C)  gives the output (n Ho Wo, Co), which is the
// channels-last output (n, Ho, Wo, Co) already. Its weight gradient is  dV^T A , its input gradient
// row2im(dV W) -- the same GEMM kernels as a dense layer, so the LR reduction of a convolution is its BP
// weight-gradient GEMM with the LR row weights as the GEMM's row scale (docs/method.md 3.3, issue 4).
#pragma once
#include <cstdint>

namespace of {

// Geometry of a conv or pooling layer: input H x W x C, output Ho x Wo x Co, kernel kh x kw, stride, zero
// padding (top/left; the bottom/right padding is whatever the output size implies), dilation.
struct ConvGeom {
    int H = 0, W = 0, C = 0;
    int Ho = 0, Wo = 0, Co = 0;
    int kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
    int64_t in_size() const { return int64_t(H) * W * C; }
    int64_t positions() const { return int64_t(Ho) * Wo; }
    int patch() const { return kh * kw * C; }
    // The padded extent that every window reads: (Ho - 1) s + (k - 1) d + 1 per axis.
    int padded_h() const { return (Ho - 1) * sh + (kh - 1) * dh + 1; }
    int padded_w() const { return (Wo - 1) * sw + (kw - 1) * dw + 1; }
};

enum class PoolKind : int { Max = 0, Avg };

namespace cpu {

// Patches: A (n Ho Wo, kh kw C) overwritten from x (n, H W C); out-of-image taps are 0.
void im2row(float* A, const float* x, int n, const ConvGeom& g);
// The adjoint: dx (n, H W C) = sum of the patch gradients dA (n Ho Wo, kh kw C) at their taps; overwritten.
void row2im(float* dx, const float* dA, int n, const ConvGeom& g);
// Pooling over kh x kw windows per channel (Co == C): y (n, Ho Wo C) overwritten. Max ignores padding taps;
// Avg divides by the number of taps inside the image.
void pool_forward(float* y, const float* x, int n, const ConvGeom& g, PoolKind kind);
// dx (n, H W C) overwritten: max routes dy to the first maximal tap of x, avg spreads it over the taps.
void pool_backward(float* dx, const float* dy, const float* x, int n, const ConvGeom& g, PoolKind kind);

// Direct convolution (conv_direct.cpp), for the shapes where it beats im2row + GEMM (few channels): each returns
// false, having written nothing useful, when the shape or the CPU does not suit it (or its scratch cannot be had);
// the caller then takes the im2row + GEMM path. W is (Co, kh kw C) as everywhere.
bool conv_direct_suits(const ConvGeom& g);
// y (n Ho Wo, Co) = the patches of x times W^T.
bool conv_forward(float* y, const float* x, const float* W, int n, const ConvGeom& g);
// dx (n, H W C) = row2im(dv W), overwritten.
bool conv_input_grad(float* dx, const float* dv, const float* W, int n, const ConvGeom& g);
// dW (Co, kh kw C) = alpha sum_i s_i dv_i^T patches_i over the n images (s == nullptr: all 1), overwritten.
bool conv_weight_grad(float* dW, const float* dv, const float* x, const float* s, int n, const ConvGeom& g,
                      float alpha);

}  // namespace cpu
}  // namespace of
