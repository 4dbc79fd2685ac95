// The plan of a ULR step (ulr_plan.cpp; ulr.cpp and the device's runner, device/ulr_groups.cpp, run it): its copies in
// groups. A group perturbs the param units [start, end) of the step's units with K copies per sample: injection 'all'
// is one group of every trainable unit, 'layerwise' one group per layer with parameters (copies K_l: layerwise_copies),
// blocks several layers per group. Units before a group's start run clean (the shared B-row prefix); its start's K
// copies read the clean pre-activation and reduce through G = sum_k w s(E) on B rows; its later units are noisy per
// row; the units after it run clean on its B K rows. Frozen layers (m.frozen) start no group. Local modules are one
// group from the first boundary on, noisy only at the boundaries (module_unit_ends).
#pragma once
#include <utility>
#include <vector>

#include "estimators/estimator.h"

namespace of {

struct Group {
    int start = 0, end = 0;  // units [start, end): start has parameters; the group's noisy units are its param units
    int K = 0;               // copies per sample
    int64_t out0 = 0;        // its first row in the step's list of all groups' rows
};

// The param-unit index (the order of the layers with parameters) of each group's first unit, frozen units skipped,
// with the param-unit index after its last unit.
std::vector<std::pair<int, int>> group_ranges(const Model& m, const UlrConfig& c);
// The groups of a step in units (kl: layerwise_copies, read with injection 'layerwise'); out0 is left 0.
std::vector<Group> plan_groups(const Model& m, const UlrConfig& c, const std::vector<int>& kl);

}  // namespace of
