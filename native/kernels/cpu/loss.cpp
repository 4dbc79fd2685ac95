// Losses per row (softmax cross-entropy with integer labels, mean squared error, the 0-1 loss) and the gradients of
// the first two (the 0-1 loss has none: BP refuses it). The row bodies are the device's (device/ops_loss.h
// loss_row, loss_grad_at): this file only splits the rows over the thread pool and counts the hits.
#include <algorithm>
#include <vector>

#include "core/thread_pool.h"
#include "device/ops_loss.h"
#include "kernels/cpu/ops.h"

namespace of::cpu {

int64_t loss_forward(float* loss, const float* y, const int32_t* labels, const float* values, int R, int C, int rep,
                     LossKind kind, int groups) {
    int chunk = std::max(64, (R + 31) / 32);
    int tasks = (R + chunk - 1) / chunk;
    std::vector<int64_t> correct(size_t(tasks), 0);
    // constants where they are known (MSE, or one group) so that the row body's other branches fold away
    auto rows = [&](int t, LossKind k, int P) {
        const dev::LossArgs a{loss, nullptr, y, labels, values, R, C, rep, k, P};
        int64_t hits = 0;
        for (int r = t * chunk, r1 = std::min(R, (t + 1) * chunk); r < r1; r++) hits += dev::loss_row(a, r);
        correct[size_t(t)] = hits;
    };
    ThreadPool::instance().parallel_for(
        tasks,
        [&](int t) {
            kind == LossKind::Mse ? rows(t, LossKind::Mse, 1) : groups == 1 ? rows(t, kind, 1) : rows(t, kind, groups);
        },
        int64_t(R) * C * 20);  // ~20 cycles per output (exp)
    int64_t total = 0;
    for (int64_t c : correct) total += c;
    return total;
}

void loss_backward(float* dy, const float* y, const int32_t* labels, const float* values, int R, int C, LossKind kind,
                   int groups) {
    auto rows = [&](int P) {  // one group a constant, as in loss_forward
        const dev::LossArgs a{dy, nullptr, y, labels, values, R, C, 1, kind, P};
        for (int r = 0; r < R; r++) dev::loss_grad_at(a, r);
    };
    groups == 1 ? rows(1) : rows(groups);
}

}  // namespace of::cpu
