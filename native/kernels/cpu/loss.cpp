// Losses per row (softmax cross-entropy with integer labels, mean squared error, the 0-1 loss) and the
// gradients of the first two (the 0-1 loss has none: BP refuses it).
// Softmax uses max-subtraction and log-sum-exp in float32; the row loss is what LR weights are built from.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/ops.h"

namespace of::cpu {

int64_t loss_forward(float* loss, const float* y, const int32_t* labels, const float* values, int R, int C, int rep,
                     LossKind kind) {
    int chunk = std::max(64, (R + 31) / 32);
    int tasks = (R + chunk - 1) / chunk;
    std::vector<int64_t> correct(size_t(tasks), 0);
    ThreadPool::instance().parallel_for(tasks, [&](int t) {  // ~20 cycles per output (exp)
        int r1 = std::min(R, (t + 1) * chunk);
        for (int r = t * chunk; r < r1; r++) {
            const float* yr = y + int64_t(r) * C;
            if (kind == LossKind::CrossEntropy || kind == LossKind::ZeroOne) {
                int label = labels[r / rep];
                int arg = 0;
                float mx = yr[0];
                for (int c = 1; c < C; c++)
                    if (yr[c] > mx) mx = yr[c], arg = c;
                float s = 0.0f;
                for (int c = 0; c < C; c++) s += std::exp(yr[c] - mx);
                loss[r] = kind == LossKind::ZeroOne ? float(arg != label) : std::log(s) + mx - yr[label];
                correct[size_t(t)] += arg == label;
            } else {
                const float* tr = values + int64_t(r / rep) * C;
                float s = 0.0f;
                for (int c = 0; c < C; c++) s += (yr[c] - tr[c]) * (yr[c] - tr[c]);
                loss[r] = s / float(C);
            }
        }
    }, int64_t(R) * C * 20);
    int64_t total = 0;
    for (int64_t c : correct) total += c;
    return total;
}

void loss_backward(float* dy, const float* y, const int32_t* labels, const float* values, int R, int C, LossKind kind) {
    float inv_r = 1.0f / float(R);
    for (int r = 0; r < R; r++) {
        const float* yr = y + int64_t(r) * C;
        float* d = dy + int64_t(r) * C;
        if (kind == LossKind::CrossEntropy) {  // (softmax - onehot) / R
            float mx = *std::max_element(yr, yr + C);
            float s = 0.0f;
            for (int c = 0; c < C; c++) s += (d[c] = std::exp(yr[c] - mx));
            float inv = inv_r / s;
            for (int c = 0; c < C; c++) d[c] *= inv;
            d[labels[r]] -= inv_r;
        } else {  // 2 (y - t) / (R C)
            const float* tr = values + int64_t(r) * C;
            float k = 2.0f * inv_r / float(C);
            for (int c = 0; c < C; c++) d[c] = k * (yr[c] - tr[c]);
        }
    }
}

}  // namespace of::cpu
