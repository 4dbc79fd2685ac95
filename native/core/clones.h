// OF_CLONES: a function compiled for AVX-512, AVX2 and the baseline ISA, the best one picked at load time (GCC's
// target_clones). For elementwise loops: each clone does the same IEEE operations in the same order (the build has
// -ffp-contract=off), so the bits do not depend on the CPU.
#pragma once

#define OF_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
// OF_FLAT_CLONES: OF_CLONES with every call inside inlined (flatten), so shared scalar bodies (device/ops_*.h)
// vectorize in each clone.
#define OF_FLAT_CLONES OF_CLONES __attribute__((flatten))
