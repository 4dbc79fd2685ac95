// Optimizer updates on the parameter slab (one contiguous float array for every tensor, llm.c-style).
// SGD (momentum, Nesterov), Adam, AdamW; L2 weight decay (SGD/Adam) or decoupled decay (AdamW);
// global gradient-norm clipping; a learning-rate schedule (kernels/schedule.h). All run natively inside the
// training step.
#pragma once
#include <cstdint>

#include "kernels/schedule.h"

namespace of {

enum class OptKind : int { Sgd = 0, Adam, AdamW };

struct OptimizerConfig {
    OptKind kind = OptKind::Adam;
    float lr = 1e-3f;
    float momentum = 0.0f;                            // SGD
    bool nesterov = false;                            // SGD
    float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;  // Adam/AdamW
    float weight_decay = 0.0f;
    float clip_norm = 0.0f;  // 0: no clipping
    LrSchedule schedule;     // update t uses schedule_lr(schedule, lr, t)
};

namespace cpu {

// Global L2 norm of g (n), summed in fixed chunks in float64: the same value for any thread count.
double grad_norm(const float* g, int64_t n);
// The gradient-clipping factor min(1, clip / |g|) as a float (1 when clip <= 0).
float clip_factor(const float* g, int64_t n, float clip);

// params (n) updated in place; grads (n) may be scaled in place by clipping; m, v (n) optimizer state
// (v unused by SGD); t = 1-based update count (Adam bias correction, the lr schedule).
void optimizer_step(float* params, float* grads, float* m, float* v, int64_t n, const OptimizerConfig& cfg, int64_t t);

}  // namespace cpu
}  // namespace of
