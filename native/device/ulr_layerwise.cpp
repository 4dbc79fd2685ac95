// ULR with layer-wise injection on the device: one clean forward, then per layer a group of copies noisy at that
// layer only, each group reducing its own layer's gradient through its copy sum G_l = sum_k w s(e).
#include <algorithm>
#include <climits>

#include "device/trainer.h"
#include "estimators/blocks.h"

namespace of {

// Layer-wise injection (estimators/layerwise.cpp, one layer per group, fixed copies per layer): a clean forward of
// the B samples keeps every layer's pre-activation and activation; layer l's group of K_l copies per sample starts
// from its clean pre-activation plus noise, runs the later layers clean, and reduces through G_l = sum_k w s(e) on B
// rows. Every group's losses go to one buffer (rows: the groups' rows in order), so the step statistics cover them.
Status DeviceTrainer::ulr_layerwise(Model& m, int B, const UlrConfig& c, uint32_t step, const float* x, int* rows_out,
                                    const Targets& y, const LossHook* hook) {
    Device* d = dev_.get();
    const int L = int(m.units.size()), C = m.outputs;
    const uint64_t seed = c.has_seed ? c.seed : m.seed;
    const bool tf32 = tf32_for(EstimatorConfig::Kind::Ulr);
    lw_copies_ =
        layerwise_copies(m, c);  // copies 'auto': from the running variances; read_layer_var records this step's
    auto copies = [&](int l) { return lw_copies_[size_t(l)]; };
    auto sigma = [&](int l) { return c.sigma.size() == 1 ? c.sigma[0] : c.sigma[size_t(l)]; };
    std::vector<const float*> sigmas;
    OF_TRY(channel_sigmas(L, c, &sigmas));
    auto alpha = [&](int l) { return sigmas[size_t(l)] ? 1.0f : 1.0f / sigma(l); };
    // groups of consecutive layers perturbed together (blocks), by default one layer each; a group uses its first
    // layer's copies
    std::vector<int> gstart;
    for (int l = 0, b = 0; l < L; l += c.blocks.empty() ? 1 : c.blocks[size_t(b++)]) gstart.push_back(l);
    const int NG = int(gstart.size());
    auto gend = [&](int g) { return g + 1 < NG ? gstart[size_t(g) + 1] : L; };
    std::vector<int64_t> off(size_t(NG) + 1, 0);
    int kmax = 1, width = 1, depth = 1;
    for (int g = 0; g < NG; g++) {
        const int l = gstart[size_t(g)];
        int R = 0;
        OF_TRY(step_rows(B, copies(l), &R));
        off[size_t(g) + 1] = off[size_t(g)] + R;
        kmax = std::max(kmax, copies(l));
        depth = std::max(depth, gend(g) - l);
    }
    for (const Unit& u : m.units) width = std::max(width, u.O);
    const int64_t total = off[size_t(NG)];
    OF_CHECK(total <= INT_MAX / 4, Shape, "batch x copies is too large");
    // 1. the clean forward (bp's, which keeps v and a per layer); its losses for the clean baseline
    OF_TRY(bp(m, B, x, 0, true));
    if (c.baseline == Baseline::Clean) {
        OF_TRY(clean_.reserve(d, size_t(B) * sizeof(float)));
        OF_TRY(clean_hit_.reserve(d, size_t(B) * sizeof(int)));
        OF_TRY(d->loss_rows(dev::LossArgs{clean_.f(), clean_hit_.as<int>(), a_[size_t(L - 1)]->f(),
                                          labels_.as<int32_t>(), values_.f(), B, C, 1, m.loss, m.groups},
                            B));
    }
    const int64_t Rmax = int64_t(B) * kmax;
    OF_TRY(loss_.reserve(d, size_t(total) * sizeof(float)));
    OF_TRY(hit_.reserve(d, size_t(total) * sizeof(int)));
    OF_TRY(w_.reserve(d, size_t(Rmax) * sizeof(float)));
    OF_TRY(lw_a_.reserve(d, size_t(Rmax) * width * sizeof(float)));
    OF_TRY(lw_b_.reserve(d, size_t(Rmax) * width * sizeof(float)));
    while (int(lw_ga_.size()) < depth)
        lw_ga_.push_back(std::make_unique<DeviceBuffer>()), lw_ge_.push_back(std::make_unique<DeviceBuffer>());
    for (int i = 0; i < depth; i++) {  // a group's i-th layer: its noisy activations and noise
        OF_TRY(lw_ga_[size_t(i)]->reserve(d, size_t(Rmax) * width * sizeof(float)));
        OF_TRY(lw_ge_[size_t(i)]->reserve(d, size_t(Rmax) * width * sizeof(float)));
    }
    OF_TRY(g_.reserve(d, size_t(B) * width * sizeof(float)));
    if (c.auto_copies) {
        OF_TRY(sg_rows_.reserve(d, size_t(Rmax) * sizeof(double)));
        OF_TRY(sg_part_.reserve(d, size_t((Rmax + dev::kReduceRows - 1) / dev::kReduceRows) * sizeof(double)));
        OF_TRY(sg_.reserve(d, size_t(L) * sizeof(double)));
    }
    const float* P = theta_;
    const float running = m.has_running ? float(m.running_loss) : 0.0f;
    auto bias = [&](const Unit& u) -> const float* { return u.b_off < 0 ? nullptr : P + u.b_off; };
    for (int g = 0; g < NG; g++) {
        const int l = gstart[size_t(g)], lend = gend(g);
        const Unit& u = m.units[size_t(l)];
        const int K = copies(l), R = B * K;
        auto noisy = [&](int j, const float* pre, int rep) {
            const Unit& uj = m.units[size_t(j)];
            const dev::NoisyArgs na{lw_ga_[size_t(j - l)]->f(),
                                    lw_ge_[size_t(j - l)]->f(),
                                    pre,
                                    j == l ? nullptr : bias(uj),
                                    uj.O,
                                    sigma(j),
                                    R,
                                    uj.O,
                                    rep,
                                    uj.act,
                                    uj.alpha,
                                    seed,
                                    step,
                                    uint32_t(j),
                                    0,
                                    c.antithetic ? 1 : 0,
                                    int(c.density),
                                    sigmas[size_t(j)]};
            return noise_forward(na, c.qmc ? K : 0, c.qmc ? qmc_dim0(m, j) : 0);
        };
        // the group: its first layer noisy from its clean pre-activation (bias included), its other layers noisy from
        // their noisy inputs, the rest clean
        OF_TRY(noisy(l, e_[size_t(l)]->f(), K));
        const float* cur = lw_ga_[0]->f();
        for (int j = l + 1; j < lend; j++) {
            const Unit& uj = m.units[size_t(j)];
            float* v = lw_ga_[size_t(j - l)]->f();
            OF_TRY(d->gemm(false, true, R, uj.O, uj.I, 1.0f, cur, uj.I, P + uj.w_off, uj.I, 0.0f, v, uj.O, tf32));
            OF_TRY(noisy(j, v, 1));
            cur = v;
        }
        for (int j = lend; j < L; j++) {
            const Unit& uj = m.units[size_t(j)];
            float* next = cur == lw_a_.f() ? lw_b_.f() : lw_a_.f();
            OF_TRY(d->gemm(false, true, R, uj.O, uj.I, 1.0f, cur, uj.I, P + uj.w_off, uj.I, 0.0f, next, uj.O, tf32));
            OF_TRY(d->bias_act(dev::BiasActArgs{next, next, bias(uj), uj.O, uj.act, uj.alpha}, int64_t(R) * uj.O));
            cur = next;
        }
        float* loss = loss_.f() + off[size_t(g)];
        OF_TRY(d->loss_rows(dev::LossArgs{loss, hit_.as<int>() + off[size_t(g)], cur, labels_.as<int32_t>(),
                                          values_.f(), R, C, K, m.loss, m.groups},
                            R));
        if (hook) OF_TRY(js_losses(cur, y, R, C, K, *hook, loss));  // one call per group, its rows (sample, copy)
        OF_TRY(row_weights(B, K, loss, running, c, 1.0f / float(int64_t(B) * K)));
        const float* a_prev = l == 0 ? x : a_[size_t(l - 1)]->f();
        if (c.auto_copies) {  // this layer's estimate variance (times sigma^2): sum_r w_r^2 |s(e_r)|^2
                              // |a_prev(sample)|^2
            OF_TRY(d->var_rows(dev::VarRowsArgs{sg_rows_.as<double>(), lw_ge_[0]->f(), w_.f(), a_prev, u.O, u.I, K,
                                                c.density, c.score},
                               R));
            const dev::DSumArgs ds{sg_part_.as<double>(), sg_.as<double>() + l, sg_rows_.as<double>(), R};
            OF_TRY(d->dsum_partial(ds, (R + dev::kReduceRows - 1) / dev::kReduceRows));
            OF_TRY(d->dsum_final(ds, 1));
        }
        // the first layer through G = sum_k w s(e) on B rows (its input is clean); the others per row
        OF_TRY(d->copy_sum(scored_sum(lw_ge_[0]->f(), K, u.O, c, sigmas[size_t(l)]), int64_t(B) * u.O));
        OF_TRY(weight_grads(m, l, B, g_.f(), alpha(l), a_prev, tf32));
        for (int j = l + 1; j < lend; j++) {
            const Unit& uj = m.units[size_t(j)];
            float* Sj = lw_ge_[size_t(j - l)]->f();
            OF_TRY(d->score_rows(dev::ScoreRowsArgs{Sj, w_.f(), uj.O, c.density, c.score, sigmas[size_t(j)]},
                                 int64_t(R) * uj.O));
            OF_TRY(weight_grads(m, j, R, Sj, alpha(j), lw_ga_[size_t(j - l - 1)]->f(), tf32));
        }
    }
    *rows_out = int(total);
    return {};
}

}  // namespace of
