// CPU kernels other than GEMM: activations, fused bias + noise + activation, losses, the LR row weights and
// reductions, and the optimizers. Dimension letters (project-wide): B batch, K copies per sample (LR),
// R = B*K rows, I in-features, O out-features, C outputs of the loss; sigma is the noise scale.
// Each kernel states its buffers' shapes and whether it overwrites or accumulates.
#pragma once
#include <cstdint>
#include <string>

namespace of {

enum class Act : int { Identity = 0, Relu, LeakyRelu, Tanh, Sigmoid, Gelu, Step, Sign, Quantize };
enum class LossKind : int { CrossEntropy = 0, Mse, ZeroOne };  // ZeroOne: 1 when the arg-max is wrong (no derivative)
enum class Baseline : int { LeaveOneOut = 0, None, BatchMean, Clean, Running };
// Noise densities (standard forms, location 0, scale 1) and the score used in the gradient:
// exact s(e) = -d log p(e) / de (normal: e; logistic: tanh(e / 2) = 2u - 1; Laplace: sign(e)), or the
// sign-compressed score sign(e) / E|e| of the approximated-LR variant (arXiv 2403.12320).
enum class Density : int { Normal = 0, Laplace, Logistic };
enum class Score : int { Exact = 0, Sign };

bool act_differentiable(Act a);
const char* act_name(Act a);
bool act_named(const std::string& name, Act* a);  // false: no activation has that name

// Where noise comes from: element (row, j) of layer `layer` at `step` is noise_at(j, row0 + row, layer, step,
// seed, density) (rng/normal.h), or a QMC point (qmc_copies). With antithetic pairs the odd row of each pair
// uses the negated noise of the even row.
struct NoiseSpec {
    uint64_t seed;
    uint32_t step;
    uint32_t layer;
    uint32_t row0;  // global index of the first row handled
    bool antithetic;
    Density density = Density::Normal;
    // > 0: quasi-Monte Carlo normals. Rows are (sample, copy) with qmc_copies copies per sample; the copy index
    // picks a Sobol point (the pair index with antithetic mirrors), randomized per sample by a digital shift.
    uint32_t qmc_copies = 0;
    // QMC: the first Sobol dimension of this unit's values. Units take consecutive dimension ranges (qmc_dim0), so
    // the noise of a copy is one point of the joint space: units sharing dimensions would tie their noise together
    // through the shift difference, an error that more copies do not shrink.
    uint32_t qmc_dim = 0;
    // Copy-parallel slices: this call's rows are copies [slice_offset, slice_offset + slice_local) of samples whose
    // slice_total copies are spread over ranks. Local row l = row0 + r is global row
    // (l / slice_local) slice_total + slice_offset + l % slice_local. slice_local 0: rows are global as they are.
    uint32_t slice_local = 0, slice_total = 0, slice_offset = 0;
};

// The global noise row of row r of a call (see NoiseSpec).
inline uint32_t noise_global_row(const NoiseSpec& ns, int r) {
    const uint32_t l = ns.row0 + uint32_t(r);
    if (!ns.slice_local) return l;
    return (l / ns.slice_local) * ns.slice_total + ns.slice_offset + l % ns.slice_local;
}

namespace cpu {

// dy (n), pre-activation v (n), activation a (n) -> dv (n), overwritten (dv may alias dy).
void act_backward(float* dv, const float* dy, const float* v, const float* a, int64_t n, Act act, float alpha);

// Clean: v (R, O) += bias, then a = act(v); v keeps the pre-activation for BP. a may alias v (no BP).
void bias_act_forward(float* a, float* v, const float* bias, int R, int O, Act act, float alpha);

// Noise rows: E (R, O), overwritten, per NoiseSpec; rows split over the thread pool (inline inside a task).
void noise_fill(float* E, int R, int O, const NoiseSpec& ns);
// Row g (global row index) of a NoiseSpec's noise, before any antithetic negation: out (O), overwritten.
void noise_row_of(float* out, int O, uint32_t g, const NoiseSpec& ns);
// The QMC row (ns.qmc_copies > 0) value by value: the oracle noise_row_of's QMC kernels are tested against.
void qmc_row_naive(float* out, int O, uint32_t g, const NoiseSpec& ns);
// One row of n noise values: out (n), overwritten. _naive: the scalar noise_at() per element (the oracle).
void noise_row(float* out, int n, uint32_t row, uint32_t layer, uint32_t step, uint64_t seed, Density density);
void noise_row_naive(float* out, int n, uint32_t row, uint32_t layer, uint32_t step, uint64_t seed, Density density);

// Noisy: out[r, o] = act(pre[r / rep, o] + bias[o] + sigma[o] * eps[r, o]), out (R, O) overwritten, sigma (O),
// pre (R / rep, O); eps written to E (R, O) when E != nullptr. out may alias pre when rep == 1.
void noisy_bias_act_forward(float* out, float* E, const float* pre, const float* bias, const float* sigma, int R, int O,
                            int rep, Act act, float alpha, const NoiseSpec& ns);

// Per-row loss of outputs y (R, C) against targets of sample r / rep: labels (R / rep, groups) for cross-entropy
// and 0-1, values (R / rep, C) for MSE (mean over C). With groups P > 1 a row's C outputs are P groups of C / P
// classes (graph nodes, sequence steps), each with its own label, -1 = unlabeled; the row's loss is the mean over
// its labeled groups. loss (R), overwritten. Returns the number of labeled groups whose arg-max matches (0 for MSE).
int64_t loss_forward(float* loss, const float* y, const int32_t* labels, const float* values, int R, int C, int rep,
                     LossKind kind, int groups);
// d(mean loss over R rows)/dy: dy (R, C) overwritten.
void loss_backward(float* dy, const float* y, const int32_t* labels, const float* values, int R, int C, LossKind kind,
                   int groups);

// LR row weights: w[b, k] = (loss[b, k] - baseline[b, k]) * scale; loss, w (B * K), w overwritten.
// With antithetic pairs (copies 2j, 2j+1) the leave-one-out baseline leaves the whole pair out.
// Baseline::Clean and ::Running use clean[b] (B values): the noise-free loss of sample b, or a running average
// of earlier steps' losses.
void lr_row_weights(float* w, const float* loss, const float* clean, int B, int K, Baseline baseline, bool antithetic,
                    float scale);
// The score S(e) in place: e (n) -> s(e) for the density and score kind (a no-op for the exact normal score).
void score_transform(float* e, int64_t n, Density density, Score score);
// Shared-prefix copy sum: G[b, o] = sum_k w[b, k] * S[b * K + k, o]; G (B, O) overwritten, S (B * K, O).
void lr_copy_sum(float* G, const float* w, const float* S, int B, int K, int O);
// Column reduction: db[o] (+)= alpha * sum_r w[r] * E[r, o]; db (O), accumulate when `accumulate`.
void lr_bias_reduce(float* db, const float* w, const float* E, int R, int O, float alpha, bool accumulate);
// Plain column sums: db[o] = sum_r d[r, o]; db (O) overwritten.
void col_sum(float* db, const float* d, int R, int O);

}  // namespace cpu
}  // namespace of
