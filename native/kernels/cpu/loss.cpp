// Losses per row (softmax cross-entropy with integer labels, mean squared error, the 0-1 loss) and the
// gradients of the first two (the 0-1 loss has none: BP refuses it).
// Softmax uses max-subtraction and log-sum-exp in float32; the row loss is what LR weights are built from.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/thread_pool.h"
#include "device/ops.h"
#include "kernels/cpu/ops.h"

namespace of::cpu {

// The loss of one group of C logits against its label (and whether the arg-max hit it) is device/ops.h's
// dev::class_loss: the CPU and the devices share it.
using dev::class_loss;

int64_t loss_forward(float* loss, const float* y, const int32_t* labels, const float* values, int R, int C, int rep,
                     LossKind kind, int groups) {
    int chunk = std::max(64, (R + 31) / 32);
    int tasks = (R + chunk - 1) / chunk;
    std::vector<int64_t> correct(size_t(tasks), 0);
    const int Cg = C / groups;
    ThreadPool::instance().parallel_for(
        tasks,
        [&](int t) {  // ~20 cycles per output (exp)
            int r1 = std::min(R, (t + 1) * chunk);
            for (int r = t * chunk; r < r1; r++) {
                const float* yr = y + int64_t(r) * C;
                if (kind != LossKind::Mse) {
                    const int32_t* lr = labels + int64_t(r / rep) * groups;
                    float sum = 0.0f;
                    int n = 0;
                    for (int p = 0; p < groups; p++) {
                        if (lr[p] < 0) continue;  // unlabeled (groups > 1 only)
                        bool hit = false;
                        sum += class_loss(yr + int64_t(p) * Cg, Cg, lr[p], kind, &hit);
                        correct[size_t(t)] += hit;
                        n++;
                    }
                    loss[r] = n > 0 ? sum / float(n) : 0.0f;
                } else {
                    const float* tr = values + int64_t(r / rep) * C;
                    float s = 0.0f;
                    for (int c = 0; c < C; c++) s += (yr[c] - tr[c]) * (yr[c] - tr[c]);
                    loss[r] = s / float(C);
                }
            }
        },
        int64_t(R) * C * 20);
    int64_t total = 0;
    for (int64_t c : correct) total += c;
    return total;
}

void loss_backward(float* dy, const float* y, const int32_t* labels, const float* values, int R, int C, LossKind kind,
                   int groups) {
    float inv_r = 1.0f / float(R);
    const int Cg = C / groups;
    for (int r = 0; r < R; r++) {
        const float* yr = y + int64_t(r) * C;
        float* d = dy + int64_t(r) * C;
        if (kind == LossKind::CrossEntropy) {  // (softmax - onehot) / (R n), n labeled groups of the row
            const int32_t* lr = labels + int64_t(r) * groups;
            int n = 0;
            for (int p = 0; p < groups; p++) n += lr[p] >= 0;
            std::fill(d, d + C, 0.0f);
            for (int p = 0; p < groups; p++) {
                if (lr[p] < 0) continue;
                const float* yp = yr + int64_t(p) * Cg;
                float* dp = d + int64_t(p) * Cg;
                float mx = *std::max_element(yp, yp + Cg);
                float s = 0.0f;
                for (int c = 0; c < Cg; c++) s += (dp[c] = std::exp(yp[c] - mx));
                float inv = inv_r / float(n) / s;
                for (int c = 0; c < Cg; c++) dp[c] *= inv;
                dp[lr[p]] -= inv_r / float(n);
            }
        } else {  // 2 (y - t) / (R C)
            const float* tr = values + int64_t(r) * C;
            float k = 2.0f * inv_r / float(C);
            for (int c = 0; c < C; c++) d[c] = k * (yr[c] - tr[c]);
        }
    }
}

}  // namespace of::cpu
