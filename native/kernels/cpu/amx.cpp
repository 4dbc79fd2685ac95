// Whether the AMX kernels may run (amx.h).
#include "kernels/cpu/amx.h"

#include <cstdlib>

#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace of::cpu {

bool amx_usable() {
    static const bool yes = [] {
#if defined(__linux__) && defined(__x86_64__) && defined(__GNUC__)
        const char* cap = std::getenv("ONEFORWARD_SIMD");
        if (cap && *cap) return false;
        __builtin_cpu_init();
        if (!__builtin_cpu_supports("amx-tile") || !__builtin_cpu_supports("amx-bf16") ||
            !__builtin_cpu_supports("avx512bf16"))
            return false;
        // The tile data (8 KiB of state a thread) is off until the process asks for it; a kernel without the
        // request interface (before 5.16) refuses, and then the instructions must not run.
        constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
        return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
#else
        return false;
#endif
    }();
    return yes;
}

}  // namespace of::cpu
