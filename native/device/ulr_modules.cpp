// ULR with local modules on the device: noise only at each module's boundary, the LR estimate of the loss gradient
// there (alpha w s(E)) backpropagated inside the module only; pipelined modules reduce the first module one step late.
#include <algorithm>

#include "device/unit_pass.h"
#include "estimators/blocks.h"
#include "units/unit.h"

namespace of {

// Local module training (estimators/hybrid.cpp; dense, conv and pooling units): noise only on each module's last
// pre-activation, its boundary; each module gets the LR estimate of the loss gradient there, alpha w s(E) (alpha =
// 1 / sigma, or 1 with per-channel sigma), and backpropagates it inside itself only. The first module runs on B rows
// and takes its boundary estimate summed over copies (G = sum_k w s(E)); the others run on the R copy rows. Module
// ends are unit indices (pools before a layer belong to its module); noise layer ids are unit indices, as on the CPU.
// Module training on the device: the kinds whose entries say so (dense, conv and pooling units), no blocks.
bool DeviceTrainer::modules_run(const Model& m) {
    for (const Unit& u : m.units) {
        const DeviceUnitOps* o = u.kind->device;
        if (u.skip_from >= 0 || !o || !o->modules) return false;
    }
    return true;
}

Status DeviceTrainer::ulr_modules(Model& m, int B, const UlrConfig& c, uint32_t step, const float* x, const Targets& y,
                                  const LossHook* hook) {
    Device* d = dev_.get();
    const int K = c.copies, L = int(m.units.size()), C = m.outputs;
    int R = 0;
    OF_TRY(step_rows(B, K, &R));
    const uint64_t seed = c.has_seed ? c.seed : m.seed;
    const bool tf32 = tf32_for(EstimatorConfig::Kind::Ulr);
    const std::vector<int> ends = module_unit_ends(m, c.modules);
    const int e0 = ends[0];
    const std::vector<float> sigma = unit_sigmas(m, c);
    std::vector<const float*> sigmas;
    OF_TRY(channel_sigmas(m, c, &sigmas));
    auto rows_of = [&](int l) { return l < e0 - 1 ? B : R; };  // the first module's inner units run on B rows
    while (int(a_.size()) < L)
        a_.push_back(std::make_unique<DeviceBuffer>()), e_.push_back(std::make_unique<DeviceBuffer>());
    while (int(cols_.size()) < L) cols_.push_back(std::make_unique<DeviceBuffer>());
    int64_t width = m.inputs;
    for (int l = 0; l < L; l++) {
        const Unit& u = m.units[size_t(l)];
        width = std::max<int64_t>({width, u.I, u.O});
        OF_TRY(a_[size_t(l)]->reserve(d, size_t(rows_of(l)) * u.O * sizeof(float)));
        OF_TRY(e_[size_t(l)]->reserve(
            d, size_t(rows_of(l)) * u.O * sizeof(float)));  // v (inside a module) or E (boundary)
    }
    OF_TRY(v0_.reserve(d, size_t(B) * m.units[size_t(e0 - 1)].O * sizeof(float)));
    OF_TRY(g_.reserve(d, size_t(B) * m.units[size_t(e0 - 1)].O * sizeof(float)));
    OF_TRY(loss_.reserve(d, size_t(R) * sizeof(float)));
    OF_TRY(hit_.reserve(d, size_t(R) * sizeof(int)));
    OF_TRY(w_.reserve(d, size_t(R) * sizeof(float)));
    const bool pipelined = c.pipeline && c.training;
    const int64_t drows = std::max<int64_t>(R, pipelined && pipe_.pending ? pipe_.B : 0);
    OF_TRY(d0_.reserve(d, size_t(drows) * width * sizeof(float)));
    OF_TRY(d1_.reserve(d, size_t(drows) * width * sizeof(float)));
    auto input = [&](int l) { return l == 0 ? x : a_[size_t(l - 1)]->f(); };
    auto bias = [&](const Unit& u) -> const float* { return u.b_off < 0 ? nullptr : theta_ + u.b_off; };
    auto boundary = [&](int l) { return std::find(ends.begin(), ends.end(), l + 1) != ends.end(); };

    // module j's reductions on `rows` rows from D (its boundary's weighted scores, summed over copies for the first),
    // then BP inside the module from alpha D; x0: the model's input rows
    auto reduce = [&](size_t j, int rows, const float* D, const float* x0) -> Status {
        const int s = j == 0 ? 0 : ends[j - 1], top = ends[j] - 1;
        const Unit& ut = m.units[size_t(top)];
        auto in = [&](int l) { return l == 0 ? x0 : a_[size_t(l - 1)]->f(); };
        const float alpha = sigmas[size_t(top)] ? 1.0f : 1.0f / sigma[size_t(top)];
        OF_TRY(backward(pass(m, top, rows, tf32), in(top), D, alpha, true, nullptr));
        if (top == s) return {};
        float* dcur = d0_.f();
        float* dnext = d1_.f();
        OF_TRY(d->axpy(dev::AxpyArgs{dcur, nullptr, D, alpha}, int64_t(rows) * ut.O));
        for (int l = top; l > s;
             l--) {  // the gradient into unit l - 1's output, then through its activation and itself
            OF_TRY(backward(pass(m, l, rows, tf32), in(l), dcur, 1.0f, false, dnext));
            const Unit& p = m.units[size_t(l - 1)];
            OF_TRY(d->act_backward(
                dev::ActBackArgs{dnext, dnext, e_[size_t(l - 1)]->f(), a_[size_t(l - 1)]->f(), p.act, p.alpha},
                int64_t(rows) * p.O));
            std::swap(dcur, dnext);
            if (p.param()) OF_TRY(backward(pass(m, l - 1, rows, tf32), in(l - 1), dcur, 1.0f, true, nullptr));
        }
        return {};
    };
    // Pipelined (training only): the first module's reduction runs one step late. This step reduces the previous
    // step's first module (its B-row state kept in pipe_) with today's weights, as the CPU does; with none pending,
    // the first module's gradient is zero. Its own state goes to pipe_ at the end.
    auto swap_first = [&]() {  // the first module's B-row buffers <-> pipe_'s
        const int n = pipe_.end;
        while (int(pipe_.a.size()) < n)
            pipe_.a.push_back(std::make_unique<DeviceBuffer>()), pipe_.e.push_back(std::make_unique<DeviceBuffer>()),
                pipe_.cols.push_back(std::make_unique<DeviceBuffer>());
        for (int l = 0; l < n; l++) {
            if (l < n - 1) std::swap(a_[size_t(l)], pipe_.a[size_t(l)]), std::swap(e_[size_t(l)], pipe_.e[size_t(l)]);
            std::swap(cols_[size_t(l)], pipe_.cols[size_t(l)]);
        }
    };
    if (pipelined) {
        const Unit& ue = m.units[size_t(e0 - 1)];
        if (pipe_.pending && pipe_.end == e0) {
            swap_first();
            Status st = reduce(0, pipe_.B, pipe_.g.f(), pipe_.x.f());
            swap_first();
            OF_TRY(st);
        } else {
            OF_TRY(d->zero(grads_.f(), size_t(ue.w_off + ue.n_par) * sizeof(float)));
        }
        pipe_.pending = false;
    }

    // forward: the first module's units (its boundary's linear part included) on B rows, its boundary's K noisy copies
    // of them, then the other modules on R rows
    for (int l = 0; l < L; l++) {
        const Unit& u = m.units[size_t(l)];
        const int rows = l < e0 ? B : R;
        if (!u.param()) {  // a pool
            OF_TRY(forward_act(pass(m, l, rows, tf32), input(l), e_[size_t(l)]->f(), a_[size_t(l)]->f()));
            continue;
        }
        float* v = !boundary(l) ? e_[size_t(l)]->f() : l == e0 - 1 ? v0_.f() : a_[size_t(l)]->f();
        OF_TRY(forward(pass(m, l, rows, tf32), input(l), v));
        if (!boundary(l)) {
            OF_TRY(d->bias_act(dev::BiasActArgs{a_[size_t(l)]->f(), v, bias(u), u.gemm_cols(), u.act, u.alpha},
                               int64_t(rows) * u.O));
            continue;
        }
        float *a = a_[size_t(l)]->f(), *E = e_[size_t(l)]->f();
        const int rep = l == e0 - 1 ? K : 1, antithetic = c.antithetic ? 1 : 0, density = int(c.density);
        const dev::NoisyArgs na{a,    E,           v,   bias(u),    u.gemm_cols(), sigma[size_t(l)],
                                R,    u.O,         rep, u.act,      u.alpha,       seed,
                                step, uint32_t(l), 0,   antithetic, density,       sigmas[size_t(l)]};
        OF_TRY(d->noisy_forward(na, int64_t(R) * dev::noise_counters(u.O)));
    }
    OF_TRY(d->loss_rows(dev::LossArgs{loss_.f(), hit_.as<int>(), a_[size_t(L - 1)]->f(), labels_.as<int32_t>(),
                                      values_.f(), R, C, K, m.loss, m.groups},
                        R));
    if (hook) OF_TRY(js_losses(a_[size_t(L - 1)]->f(), y, R, C, K, *hook, loss_.f()));
    const float running = m.has_running ? float(m.running_loss) : 0.0f;
    OF_TRY(row_weights(B, K, loss_.f(), running, c, 1.0f / float(R)));

    // each module: the boundary's scores (the first module's summed over copies), its reductions
    for (size_t j = 0; j < ends.size(); j++) {
        const int top = ends[j] - 1;
        const Unit& ut = m.units[size_t(top)];
        float* S = e_[size_t(top)]->f();
        if (j > 0) {
            OF_TRY(d->score_rows(dev::ScoreRowsArgs{S, w_.f(), ut.O, c.density, c.score, sigmas[size_t(top)]},
                                 int64_t(R) * ut.O));
            OF_TRY(reduce(j, R, S, x));
            continue;
        }
        OF_TRY(d->copy_sum(scored_sum(S, K, ut.O, c, sigmas[size_t(top)]), int64_t(B) * ut.O));
        if (!pipelined) OF_TRY(reduce(0, B, g_.f(), x));
    }
    if (pipelined) {  // this step's first module waits for the next step
        const Unit& ue = m.units[size_t(e0 - 1)];
        OF_TRY(pipe_.g.reserve(d, size_t(B) * ue.O * sizeof(float)));
        OF_TRY(pipe_.x.reserve(d, size_t(B) * m.inputs * sizeof(float)));
        OF_TRY(d->add(dev::AddArgs{pipe_.g.f(), g_.f(), 0}, int64_t(B) * ue.O));
        OF_TRY(d->add(dev::AddArgs{pipe_.x.f(), x, 0}, int64_t(B) * m.inputs));
        pipe_.end = e0;
        swap_first();
        pipe_.pending = true, pipe_.B = B;
    }
    return {};
}

}  // namespace of
