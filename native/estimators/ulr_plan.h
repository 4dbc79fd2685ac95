// The plan of a ULR step (ulr_plan.cpp), written once per step and read by both runners, ulr.cpp and the device's
// device/ulr_groups.cpp: its copies in groups, and per unit its group, noise and noise scale. A group perturbs the
// param units [start, end) of the step's units with K copies per sample: injection 'all' is one group of every
// trainable unit, 'layerwise' one group per layer with parameters (copies K_l: layerwise_copies), blocks several layers
// per group. Units before a group's start run clean (the shared B-row prefix); its start's K copies read the clean
// pre-activation and reduce through G = sum_k w s(E) on B rows; its later units are noisy per row; the units after it
// run clean on its B K rows. Frozen layers (m.frozen) start no group. Local modules are one group from the first
// boundary on, noisy only at the boundaries (module_unit_ends). No forward and no reduction here.
#pragma once
#include <algorithm>
#include <vector>

#include "estimators/estimator.h"

namespace of {

struct Group {
    int start = 0, end = 0;  // units [start, end): start has parameters
    int K = 0;               // copies per sample
    int64_t out0 = 0;        // its first row in the step's list of all groups' rows
};

// A noisy unit's noise scale: sigma of its layer, per noise channel (ch, noise_channels values: a recurrent unit's one
// sigma per hidden unit serves all its gates) and per noise value (row, noise_width values: the channel's, repeated
// over positions or steps: the fused kernel's scale). alpha is the LR reductions' factor: 1 / sigma, or 1 with
// per-channel sigma, whose scores carry 1 / sigma of their value (divide_scores).
struct NoiseScale {
    float sigma = 0.0f, alpha = 1.0f;
    bool per_channel = false;
    std::vector<float> ch, row;
};
// s (rows, row.size()) /= the scale of its value, with per-channel sigma (else nothing).
void divide_scores(float* s, int64_t rows, const NoiseScale& ns);

// One unit's part in a step.
struct PlanUnit {
    int group = -1;        // its group; -1: before the first group (clean, B rows)
    int param = -1;        // its index among the layers with parameters; -1: none
    bool noisy = false;    // takes noise: a param unit of its group, or with modules a boundary
    uint32_t qmc_dim = 0;  // QMC: its noise's first Sobol dimension (qmc_dim0); else 0
    NoiseScale scale;      // a noisy unit's noise scale
};

struct UlrPlan {
    std::vector<int> copies;    // layer-wise: K per layer with parameters (layerwise_copies); else empty
    std::vector<Group> groups;  // in unit order, out0 set
    int64_t rows = 0;           // every group's rows: sum of B K
    int kmax = 2;               // the most copies of a group
    bool shared = true;         // a group's start runs once per sample and reduces through G (sharedPrefix; modules)
    std::vector<int> ends;      // modules: each module's end in units (module_unit_ends); empty: plain ULR
    // The clean B-row forward runs units [0, clean_end) whole: up to the last group's start, or to the output for the
    // clean baseline and for batchNorm (whose copies normalize with the clean batch's statistics). A group start's
    // clean pre-activation is the runner's: the CPU keeps every unit's from this pass and takes the last start's linear
    // part in it; the device recomputes each start's in its group.
    int clean_end = 0;
    std::vector<PlanUnit> units;

    bool modules() const { return !ends.empty(); }
    // Samples per block of the CPU runner (~256 rows of kmax copies each): fixed by the copies only, so results do
    // not depend on the thread count.
    int block_samples() const { return std::max(1, 256 / kmax); }
    bool starts_group(int l) const {
        const int g = units[size_t(l)].group;
        return g >= 0 && groups[size_t(g)].start == l;
    }
    // the start of a group reducing its copies through G on B rows
    bool via_g(int l) const { return shared && starts_group(l); }
    // a unit whose gradient sums over its group's B K rows (the CPU's block partials): every param unit of a group
    // but a start reducing through G, whose W takes G (a recurrent start's U and b still see each copy's states)
    bool per_row(const Model& m, int l) const {
        const Unit& u = m.units[size_t(l)];
        return units[size_t(l)].group >= 0 && u.param() && !(via_g(l) && !u.recurrent());
    }
};

// The plan of a step of B samples whose layers with parameters take kl copies (layer-wise; else unread). Unchecked:
// step_memory sizes steps too large to run.
UlrPlan ulr_plan(const Model& m, const UlrConfig& c, int B, const std::vector<int>& kl);
// This step's plan (layerwise_copies): Config without a layer to train, Shape when B K is too large.
Status plan_ulr_step(const Model& m, const UlrConfig& c, int B, UlrPlan* plan);

}  // namespace of
