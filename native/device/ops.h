// The device kernels' bodies: one OF_HOST_DEVICE function per kernel, `name_at(args, i)`, doing the work of index
// i of an n-index launch. The CUDA backend (native/cuda/) runs them as grid-stride kernels; the host simulation of
// a device (sim_device.cpp) runs them in loops over the thread pool. Same source, so the simulated device tests the
// indexing and the math of every kernel on a machine without a GPU; only the launches and the GEMM differ.
//
// Every body writes only the outputs of its own index, so any order of indices gives the same bits. Reductions are
// two-stage (fixed chunks, then a fixed-order sum of the chunks): deterministic on both sides. The CUDA sources are
// compiled with --fmad=false, so additions and multiplications round as on the CPU (-ffp-contract=off); the noise
// (Philox + our own log/sin/cos polynomials) is then bit-identical to cpu::noise_fill, and so are the activations
// (tanh, sigmoid, gelu's erf: core/fastmath.h). The losses' exp and log come from each side's math library and may
// differ in the last bit.
//
// The bodies live in one header per family (ops_*.h), each listing its kernels; this one gathers them.
#pragma once
#include "device/ops_activation.h"
#include "device/ops_conv.h"
#include "device/ops_elementwise.h"
#include "device/ops_loss.h"
#include "device/ops_noise.h"
#include "device/ops_norm.h"
#include "device/ops_optimizer.h"
#include "device/ops_recurrent.h"
#include "device/ops_reduce.h"
#include "device/ops_score.h"
#include "device/ops_token.h"

namespace of::dev {

// The kernels every device implements: X(name, Args) -> Status name(const Args&, int64_t n) runs name_at over n.
// Each family's header lists its own (OF_*_KERNELS).
#define OF_DEVICE_KERNELS(X)  \
    OF_NOISE_KERNELS(X)       \
    OF_CONV_KERNELS(X)        \
    OF_ELEMENTWISE_KERNELS(X) \
    OF_NORM_KERNELS(X)        \
    OF_TOKEN_KERNELS(X)       \
    OF_ACTIVATION_KERNELS(X)  \
    OF_LOSS_KERNELS(X)        \
    OF_SCORE_KERNELS(X)       \
    OF_REDUCE_KERNELS(X)      \
    OF_OPTIMIZER_KERNELS(X)   \
    OF_RECURRENT_KERNELS(X)

}  // namespace of::dev
