// Learning-rate schedules: the lr of optimizer update t, a pure function of t (1-based, the count that Adam's bias
// correction uses and checkpoints keep), so a resumed fit or a loaded model continues its schedule. The CPU
// optimizer, the device trainer and fit's reports all call schedule_lr; nothing else computes a learning rate.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace of {

enum class ScheduleKind : int { Constant = 0, Step, Exponential, Cosine };

struct LrSchedule {
    ScheduleKind kind = ScheduleKind::Constant;
    int64_t warmup = 0;   // updates of linear warm-up before the schedule starts
    int64_t every = 1;    // Step: updates between two decays
    double gamma = 1.0;   // Step, Exponential: the decay factor
    int64_t steps = 1;    // Cosine: updates from lr down to min_lr
    double min_lr = 0.0;  // Cosine: the final lr (absolute, <= lr)
};

// The lr of update t >= 1 from the base lr. Update t <= warmup uses lr t / warmup; after it, with
// s = t - warmup - 1 (0 at the schedule's first update):
//   Constant     lr
//   Step         lr gamma^floor(s / every)
//   Exponential  lr gamma^s
//   Cosine       min_lr + (lr - min_lr) (1 + cos(pi min(s, steps) / steps)) / 2
// Computed in float64 and rounded once, so a constant schedule gives lr's own bits (the unscheduled update).
inline float schedule_lr(const LrSchedule& c, float lr, int64_t t) {
    constexpr double kPi = 3.14159265358979323846;
    t = std::max<int64_t>(t, 1);
    if (t <= c.warmup) return float(double(lr) * double(t) / double(c.warmup));
    const int64_t s = t - c.warmup - 1;
    switch (c.kind) {
        case ScheduleKind::Step:
            return float(double(lr) * std::pow(c.gamma, double(s / std::max<int64_t>(c.every, 1))));
        case ScheduleKind::Exponential: return float(double(lr) * std::pow(c.gamma, double(s)));
        case ScheduleKind::Cosine: {
            const double u = double(std::min(s, c.steps)) / double(std::max<int64_t>(c.steps, 1));
            return float(c.min_lr + (double(lr) - c.min_lr) * 0.5 * (1.0 + std::cos(kPi * u)));
        }
        default: return lr;
    }
}

}  // namespace of
