// The distributed step and its all-reduce protocol (see distributed.h), and copy-parallel ULR's two halves.
#include "model/distributed.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/gemm.h"

namespace of {

namespace {

using Mode = DistributedConfig::Mode;

// The first index of part r of n items split into `size` contiguous parts.
int split(int r, int size, int n) { return int(int64_t(r) * n / size); }

// Copy-parallel ULR: this rank's copies [k0, k1) of K, whole antithetic pairs.
void copy_range(const UlrConfig& c, const DistributedConfig& d, int* k0, int* k1) {
    const int unit = c.antithetic ? 2 : 1, units = c.copies / unit;
    *k0 = unit * split(d.rank, d.size, units);
    *k1 = unit * split(d.rank + 1, d.size, units);
}

Status copy_slice_estimator(const Model& m, const EstimatorConfig& e, int k0, int k1, EstimatorConfig* out) {
    OF_CHECK(e.kind == EstimatorConfig::Kind::Ulr, Config, "copy-parallel training needs ulr()");
    const UlrConfig& c = e.ulr;
    OF_CHECK(c.baseline == Baseline::LeaveOneOut || c.baseline == Baseline::BatchMean || c.baseline == Baseline::None,
             Config, "copy-parallel training supports baselines 'loo', 'mean' and 'none'");
    OF_CHECK(k0 >= 0 && k1 >= k0 + 2 && k1 <= c.copies, Config, "a copy slice holds at least 2 of the K copies");
    EstimatorConfig s = e;
    s.ulr.copies = k1 - k0;
    s.ulr.slice_total = uint32_t(c.copies);
    s.ulr.slice_offset = uint32_t(k0);
    OF_TRY(validate_estimator(m, s));
    *out = s;
    return {};
}

// A rank's slot travels through a float32 sum exactly, since the other ranks add zeros there: an integer as two
// 20-bit halves (exact below 2^44), a double as float hi + float lo (about 48 bits).
void put_int(float* p, int64_t v) { p[0] = float(v & 0xfffff), p[1] = float(v >> 20); }
int64_t get_int(const float* p) { return int64_t(p[0]) + (int64_t(p[1]) << 20); }
void put_double(float* p, double v) { p[0] = float(v), p[1] = float(v - double(p[0])); }
double get_double(const float* p) { return double(p[0]) + double(p[1]); }

// One all-reduce of a step: n payload floats, then per rank its loss sum (2), hits (2), rows (2) and stop flag (1).
class Exchange {
   public:
    static constexpr size_t kSlot = 7;
    Exchange(const DistributedConfig& d, size_t n) : d_(d), n_(n), buf_(n + kSlot * size_t(d.size), 0.0f) {}
    float* payload() { return buf_.data(); }
    void report(double loss_sum, int64_t hits, int64_t rows, bool stop) {
        float* s = buf_.data() + n_ + kSlot * size_t(d_.rank);
        put_double(s, loss_sum), put_int(s + 2, hits), put_int(s + 4, rows);
        s[6] = stop ? 1.0f : 0.0f;
    }
    Status run() { return d_.allreduce(buf_.data(), buf_.size()); }
    bool stopped() const {
        for (int r = 0; r < d_.size; r++)
            if (slot(r)[6] != 0.0f) return true;
        return false;
    }
    // The whole batch's statistics, summed in rank order (the same on every rank).
    StepStats total() const {
        StepStats st;
        double sum = 0.0;
        for (int r = 0; r < d_.size; r++) {
            sum += get_double(slot(r));
            st.correct += get_int(slot(r) + 2);
            st.rows += get_int(slot(r) + 4);
        }
        st.loss = st.rows ? sum / double(st.rows) : 0.0;
        return st;
    }

   private:
    const float* slot(int r) const { return buf_.data() + n_ + kSlot * size_t(r); }
    const DistributedConfig& d_;
    size_t n_;
    std::vector<float> buf_;
};

bool cancelled(const std::atomic<bool>* cancel) { return cancel && cancel->load(); }

// This rank's part of a step, stoppable within one of its tasks by a cancel; a part that is cancelled or fails
// sets *stop (the step is then dropped on every rank) and returns why.
template <class Fn>
Status part(const std::atomic<bool>* cancel, bool* stop, const Fn& fn) {
    Status s;
    if (cancelled(cancel)) {
        s = {StatusCode::Abort, "training was cancelled"};
    } else {
        ThreadPool::CancelScope scope(cancel);
        s = fn();
        if (ThreadPool::cancelled()) s = {StatusCode::Abort, "training was cancelled"};
    }
    if (!s.ok()) *stop = true;
    return s;
}

// Reports this rank's slot (a cancel that came during its part counts), runs the all-reduce, and gives the common
// verdict: when any rank stopped, every rank stops, with its own error where it had one.
Status exchange(Exchange& ex, const std::atomic<bool>* cancel, Status own, bool stop, const StepStats& st) {
    if (own.ok() && cancelled(cancel)) own = {StatusCode::Abort, "training was cancelled"}, stop = true;
    ex.report(st.loss * double(st.rows), st.correct, st.rows, stop);
    OF_TRY(ex.run());
    if (!ex.stopped()) return {};
    if (!own.ok()) return own;
    return {StatusCode::Abort, "training was stopped on another rank (a cancel or an error there)"};
}

// Every rank's part of the gradient, fn(&its stats) into m.grads, then m.grads = the sum over the ranks and *total =
// the batch's statistics.
template <class Fn>
Status summed_gradients(Model& m, const FitConfig& cfg, const std::atomic<bool>* cancel, const Fn& fn,
                        StepStats* total) {
    Exchange ex(cfg.distributed, size_t(m.n_params));
    StepStats st;
    bool stop = false;
    Status own = part(cancel, &stop, [&] { return fn(&st); });
    if (own.ok()) std::copy(m.grads.data(), m.grads.data() + m.n_params, ex.payload());
    OF_TRY(exchange(ex, cancel, own, stop, st));
    std::copy(ex.payload(), ex.payload() + m.n_params, m.grads.data());
    *total = ex.total();
    return {};
}

// The end of a step, on every rank alike and as train_step: the loss check, maxGradNorm, the update.
Status update(Model& m, const FitConfig& cfg, int B, const StepStats& st) {
    if (!std::isfinite(st.loss)) return nonfinite_loss(m);
    if (cfg.max_grad_norm > 0.0)
        OF_TRY(check_grad_norm(m, cpu::grad_norm(m.grads.data(), m.n_params), cfg.max_grad_norm));
    return apply_update(m, cfg.optimizer, B);
}

// Data mode, this rank's part: its shard's estimate times (shard rows / B) into m.grads (zeros for an empty shard).
Status shard_gradients(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e,
                       const DistributedConfig& d, const LossHook* hook, StepStats* st) {
    const int lo = split(d.rank, d.size, B), hi = split(d.rank + 1, d.size, B);
    float* g = m.grads.data();
    if (hi == lo) {
        std::fill(g, g + m.n_params, 0.0f);
        return {};
    }
    EstimatorConfig s = training_estimator(m, e);
    s.ulr.sample_base = uint32_t(lo);  // BP's dropout masks follow it too
    const Targets shard{y.labels ? y.labels + int64_t(lo) * m.groups : nullptr,
                        y.values ? y.values + int64_t(lo) * m.outputs : nullptr};
    OF_TRY(placed_gradients(m, x + int64_t(lo) * m.inputs, shard, hi - lo, s, m.step, st, hook));
    if (hi - lo == B) return {};
    const double share = double(hi - lo) / double(B);
    for (int64_t i = 0; i < m.n_params; i++) g[i] = float(double(g[i]) * share);
    return {};
}

Status data_step(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, const FitConfig& cfg,
                 const std::atomic<bool>* cancel, StepStats* stats) {
    const LossHook* hook = cfg.loss_hook ? &cfg.loss_hook : nullptr;
    auto shard = [&](StepStats* st) { return shard_gradients(m, x, y, B, e, cfg.distributed, hook, st); };
    OF_TRY(summed_gradients(m, cfg, cancel, shard, stats));
    return update(m, cfg, B, *stats);
}

Status copies_step(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, const FitConfig& cfg,
                   const std::atomic<bool>* cancel, StepStats* stats) {
    int k0 = 0, k1 = 0;
    copy_range(e.ulr, cfg.distributed, &k0, &k1);
    Exchange losses(cfg.distributed, size_t(B) * size_t(e.ulr.copies));  // (B, K): every copy's loss once summed
    StepStats st;
    bool stop = false;
    Status own = part(cancel, &stop, [&] { return copy_slice_losses(m, x, y, B, e, k0, k1, losses.payload(), &st); });
    OF_TRY(exchange(losses, cancel, own, stop, st));
    *stats = losses.total();
    if (!std::isfinite(stats->loss)) return nonfinite_loss(m);
    auto share = [&](StepStats*) { return copy_slice_gradients(m, x, y, B, e, k0, k1, losses.payload()); };
    OF_TRY(summed_gradients(m, cfg, cancel, share, &st));  // st: no statistics travel with the shares
    return update(m, cfg, B, *stats);
}

Status seeds_step(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, const FitConfig& cfg,
                  const std::atomic<bool>* cancel, StepStats* stats) {
    const DistributedConfig& d = cfg.distributed;
    const int P = e.wp.population, p0 = split(d.rank, d.size, P), p1 = split(d.rank + 1, d.size, P);
    Exchange ex(d, 2 * size_t(P));  // the losses at theta + eps z_p (P), then at theta - eps z_p (P)
    float* plus = ex.payload();
    float* minus = plus + P;
    bool stop = false;
    Status own = part(cancel, &stop, [&] { return placed_seed_replay_losses(m, x, y, B, e, p0, p1, plus, minus); });
    OF_TRY(exchange(ex, cancel, own, stop, StepStats{}));
    perturbation_stats(e, B, plus, minus, stats);
    if (!std::isfinite(stats->loss)) return nonfinite_loss(m);
    return placed_seed_replay_update(m, e, cfg.optimizer, plus, minus, B);
}

// FNV-1a over the parameters' bits: replicas must start bit-identical.
uint64_t parameter_hash(const Model& m) {
    uint64_t h = 1469598103934665603ull;
    const float* p = m.params->data();
    for (int64_t i = 0; i < m.n_params; i++) {
        uint32_t w;
        std::memcpy(&w, p + i, sizeof w);
        h = (h ^ w) * 1099511628211ull;
    }
    return h;
}

}  // namespace

Status validate_distributed(const Model& m, const FitConfig& cfg, const LossHook* hook) {
    const DistributedConfig& d = cfg.distributed;
    OF_CHECK(d.size >= 1 && d.rank >= 0 && d.rank < d.size, Config, "distributed: rank must be in [0, size)");
    OF_CHECK(bool(d.allreduce), Config, "distributed: an all-reduce is needed");
    const EstimatorConfig& e = cfg.estimator;
    const UlrConfig& c = e.ulr;
    const bool ulr = e.kind == EstimatorConfig::Kind::Ulr;
    if (d.mode == Mode::Data) {
        OF_CHECK(ulr || e.kind == EstimatorConfig::Kind::Bp, Config,
                 "distributed mode 'data' trains bp() and ulr(); spsa() and es() train distributed with mode 'seeds'");
        OF_CHECK(!ulr || (!c.layerwise && c.modules.empty() && !c.qmc), Config,
                 "distributed mode 'data' needs ulr's injection 'all', without modules or qmc (each rank's noise "
                 "follows its samples)");
        OF_CHECK(!ulr || !c.learn_sigma, Config, "learnSigma is not supported distributed");
        OF_CHECK(!ulr || c.baseline != Baseline::Running, Config,
                 "baseline 'running' is not supported distributed (each rank would average only its shard's losses)");
        OF_CHECK(d.size == 1 || !m.uses_batch_stats, Config,
                 "batchNorm is not supported by distributed mode 'data' on several ranks (each rank would normalize by "
                 "its shard's statistics)");
    } else if (d.mode == Mode::Copies) {
        OF_CHECK(ulr, Config, "distributed mode 'copies' needs ulr()");
        OF_CHECK(!hook, Config, "a loss function is not supported by distributed mode 'copies'");
        const int unit = c.antithetic ? 2 : 1;
        OF_CHECK(c.copies / unit >= d.size && c.copies / d.size >= 2, Config,
                 "copy-parallel ULR needs at least 2 copies (whole pairs) per rank: " + std::to_string(c.copies) +
                     " copies over " + std::to_string(d.size) + " ranks");
        int k0 = 0, k1 = 0;
        copy_range(c, d, &k0, &k1);
        EstimatorConfig s;
        OF_TRY(copy_slice_estimator(m, e, k0, k1, &s));
    } else {
        OF_CHECK(e.kind == EstimatorConfig::Kind::Spsa || e.kind == EstimatorConfig::Kind::Es, Config,
                 "distributed mode 'seeds' needs spsa() or es()");
        OF_CHECK(cfg.max_grad_norm <= 0.0, Config, "maxGradNorm is not supported by distributed mode 'seeds'");
    }
    return {};
}

Status distributed_handshake(const Model& m, const DataRef& train, const FitConfig& cfg) {
    const DistributedConfig& d = cfg.distributed;
    struct Field {
        const char* what;
        uint64_t value;
    };
    const Field fields[] = {
        {"training rows", uint64_t(train.rows)},
        {"batchSize", uint64_t(cfg.batch)},
        {"epochs", uint64_t(cfg.epochs)},
        {"resume", cfg.resume},
        {"shuffle", cfg.shuffle},
        {"mode", uint64_t(d.mode)},
        {"seed", m.seed},
        {"parameterCount", uint64_t(m.n_params)},
        {"step", m.step},
        {"epochsRun", m.epochs_run},
        {"epochStep", m.epoch_step},
        {"optimizer updates", uint64_t(m.opt_t)},
        {"parameters (their hash)", parameter_hash(m)},
    };
    constexpr size_t F = sizeof fields / sizeof fields[0], kWords = 4;  // a value as 4 16-bit words: exact in float
    std::vector<float> buf(F * kWords * size_t(d.size), 0.0f);
    float* mine = buf.data() + F * kWords * size_t(d.rank);
    for (size_t f = 0; f < F; f++)
        for (size_t w = 0; w < kWords; w++) mine[f * kWords + w] = float((fields[f].value >> (16 * w)) & 0xffff);
    OF_TRY(d.allreduce(buf.data(), buf.size()));
    for (int r = 0; r < d.size; r++)
        for (size_t f = 0; f < F; f++) {
            const float* p = buf.data() + (size_t(r) * F + f) * kWords;
            uint64_t v = 0;
            bool words = true;  // a broken communicator may return anything
            for (size_t w = 0; w < kWords; w++) {
                words = words && p[w] >= 0.0f && p[w] <= 65535.0f;
                if (words) v |= uint64_t(p[w]) << (16 * w);
            }
            if (words && v == fields[f].value) continue;
            return {StatusCode::Config,
                    "distributed fit: rank " + std::to_string(r) + " has " + fields[f].what + " " + std::to_string(v) +
                        ", rank " + std::to_string(d.rank) + " has " + std::to_string(fields[f].value) +
                        "; every rank fits the same model (seed, state, parameters) on the same data with the "
                        "same options, once per rank"};
        }
    return {};
}

Status distributed_step(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e,
                        const FitConfig& cfg, const std::atomic<bool>* cancel, StepStats* stats) {
    switch (cfg.distributed.mode) {
        case Mode::Data: return data_step(m, x, y, B, e, cfg, cancel, stats);
        case Mode::Copies: return copies_step(m, x, y, B, e, cfg, cancel, stats);
        case Mode::Seeds: return seeds_step(m, x, y, B, e, cfg, cancel, stats);
    }
    return {StatusCode::Internal, "unknown distributed mode"};
}

Status copy_slice_losses(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, int k0, int k1,
                         float* losses, StepStats* stats) {
    EstimatorConfig s;
    OF_TRY(copy_slice_estimator(m, e, k0, k1, &s));
    const int K = e.ulr.copies;
    bool collected = false;
    LossHook hook = [&](const float* o, const Targets& t, int R, int C, int rep, float* loss) -> Status {
        stats->correct = m.k->loss_forward(loss, o, t.labels, t.values, R, C, rep, m.loss, m.groups);
        double sum = 0.0;
        for (int r = 0; r < R; r++) losses[int64_t(r / rep) * K + k0 + r % rep] = loss[r], sum += loss[r];
        stats->loss = R ? sum / R : 0.0;
        stats->rows = R;
        collected = true;
        return {StatusCode::Abort, "losses collected"};  // the forward is all this phase needs
    };
    StepStats st;
    Status status = placed_gradients(m, x, y, B, s, m.step, &st, &hook);
    return collected ? Status{} : status;
}

Status copy_slice_gradients(Model& m, const float* x, const Targets& y, int B, const EstimatorConfig& e, int k0, int k1,
                            const float* losses) {
    EstimatorConfig s;
    OF_TRY(copy_slice_estimator(m, e, k0, k1, &s));
    const int K = e.ulr.copies, Kr = k1 - k0;
    std::vector<float> w(size_t(B) * size_t(K)), pseudo(size_t(B) * size_t(Kr));
    m.k->lr_row_weights(w.data(), losses, nullptr, B, K, e.ulr.baseline, e.ulr.antithetic,
                        1.0f / float(int64_t(B) * K));
    // with baseline 'none' the slice's row weights are loss / (B Kr): hand it w (B Kr) as its losses
    for (int b = 0; b < B; b++)
        for (int j = 0; j < Kr; j++) pseudo[size_t(b) * Kr + j] = w[size_t(b) * K + k0 + j] * float(int64_t(B) * Kr);
    s.ulr.baseline = Baseline::None;
    LossHook hook = [&](const float*, const Targets&, int R, int, int, float* loss) -> Status {
        std::copy(pseudo.begin(), pseudo.begin() + R, loss);
        return {};
    };
    StepStats st;
    return placed_gradients(m, x, y, B, s, m.step, &st, &hook);
}

}  // namespace of
