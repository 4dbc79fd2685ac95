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
// The bodies live in one header per family (ops_*.h); this one gathers them and lists the kernels.
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
#define OF_DEVICE_KERNELS(X)             \
    X(noisy_forward, NoisyArgs)          \
    X(qmc_noise, QmcArgs)                \
    X(noisy_apply, NoisyArgs)            \
    X(im2row, PatchArgs)                 \
    X(graph, GraphArgs)                  \
    X(pool, PoolArgs)                    \
    X(row2im, PatchArgs)                 \
    X(pool_backward, PoolBackArgs)       \
    X(dropout, DropoutArgs)              \
    X(skip_add, SkipArgs)                \
    X(add, AddArgs)                      \
    X(axpy, AxpyArgs)                    \
    X(quantize, QuantArgs)               \
    X(concat, ConcatArgs)                \
    X(concat_backward, ConcatBackArgs)   \
    X(layer_norm, NormArgs)              \
    X(group_norm, NormArgs)              \
    X(layer_norm_backward, NormBackArgs) \
    X(group_norm_backward, NormBackArgs) \
    X(bn_stats, BatchStatsArgs)          \
    X(bn_apply, BatchApplyArgs)          \
    X(bn_backward_sums, BatchBackArgs)   \
    X(bn_backward, BatchBackArgs)        \
    X(bn_running, RunningArgs)           \
    X(seq_input, SeqArgs)                \
    X(seq_cell, SeqArgs)                 \
    X(seq_candidate, SeqArgs)            \
    X(seq_output, SeqArgs)               \
    X(seq_back_cell, SeqBackArgs)        \
    X(seq_back_reset, SeqBackArgs)       \
    X(repeat, TimeArgs)                  \
    X(repeat_backward, TimeArgs)         \
    X(time_mean, TimeArgs)               \
    X(time_mean_backward, TimeArgs)      \
    X(embed, EmbedArgs)                  \
    X(embed_grad, EmbedGradArgs)         \
    X(positional_add, PositionalArgs)    \
    X(attend, AttendArgs)                \
    X(attend_stats, AttendArgs)          \
    X(attend_backward, AttendArgs)       \
    X(bias_act, BiasActArgs)             \
    X(act_backward, ActBackArgs)         \
    X(loss_rows, LossArgs)               \
    X(loss_grad, LossArgs)               \
    X(row_sums, RowWeightArgs)           \
    X(row_totals, RowWeightArgs)         \
    X(sample_weights, RowWeightArgs)     \
    X(row_weights, RowWeightArgs)        \
    X(stats_partial, StatsArgs)          \
    X(stats_final, StatsArgs)            \
    X(score_rows, ScoreRowsArgs)         \
    X(score_cols, ScoreColsArgs)         \
    X(sigma_grad, SigmaGradArgs)         \
    X(var_rows, VarRowsArgs)             \
    X(dsum_partial, DSumArgs)            \
    X(dsum_final, DSumArgs)              \
    X(copy_sum, CopySumArgs)             \
    X(col_sum_partial, ColSumArgs)       \
    X(col_sum_final, ColSumArgs)         \
    X(sumsq_partial, SumSqArgs)          \
    X(sumsq_final, SumSqArgs)            \
    X(optimizer, OptArgs)

}  // namespace of::dev
