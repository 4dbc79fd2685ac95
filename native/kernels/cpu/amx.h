// Intel AMX: eight tile registers of up to 16 rows x 64 bytes, and TDPBF16PS, which adds the products of an (m, 2k)
// bfloat16 tile A and a (k, 2n) tile B of pair words (B's row q holds (B(2q, j), B(2q + 1, j)) for n columns j) into an
// (m, n) float32 tile: 16 x 16 x 32 products an instruction, sixteen times a vdpbf16ps. ULR's noisy copies with
// precision 'bf16' (bf16.h) take their products on it where the CPU has it and Linux lets the process use it.
//
// Its sums are its own: TDPBF16PS does not replay a chain of float32 FMAs (on the Sapphire Rapids class Xeon these
// kernels were written on, 87% of the elements of 16 x 16 x 256 products differ in their last bits from the chain),
// so the AMX kernels give other bits than the emulation -- the same bits on one CPU whatever the thread count, as
// each element's products are summed in a fixed order (32 at a time, KC-deep slices as gemm_tile.h) by one task.
#pragma once
#include <cstddef>
#include <cstdint>

// The AMX kernels' functions: the tiles and the AVX-512 BF16 moves that pack them.
#define OF_AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16")))

namespace of::cpu {

// Whether the AMX kernels may run: the CPU has AMX-TILE and AMX-BF16, ONEFORWARD_SIMD caps nothing, and the kernel
// granted the process the tile data state (arch_prctl ARCH_REQ_XCOMP_PERM, asked once; Linux 5.16 and later).
bool amx_usable();

// A tile configuration (palette 1): each tile's rows and bytes per row. Kernels load one (load_tile_config) for the
// products they run and release the tiles (_tile_release) before they return, so a thread never carries tile state
// past a task.
struct alignas(64) AmxConfig {
    uint8_t palette = 1, start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
    void tile(int t, int rows_, int bytes) { rows[t] = uint8_t(rows_), colsb[t] = uint16_t(bytes); }
};

// LDTILECFG of cfg. (GCC's _tile_loadconfig names only the first 8 bytes as its operand, so the compiler may drop
// the stores of the rows and widths before it; this names all 64.)
inline void load_tile_config(const AmxConfig& cfg) { __asm__ volatile("ldtilecfg %0" ::"m"(cfg)); }

// gemm_bf16 (bf16.h, no kscale) on the tiles (gemm_amx.cpp), where amx_usable(): false, having written nothing, where
// there is no memory for B's tiles (the caller takes the emulation).
bool gemm_bf16_amx(float* C, ptrdiff_t rsc, ptrdiff_t csc, const float* A, ptrdiff_t rsa, ptrdiff_t csa, const float* B,
                   ptrdiff_t rsb, ptrdiff_t csb, int M, int N, int K, float alpha, float beta);
// Floats of one thread's scratch for gemm_bf16_amx in products of reductions and columns of at most W, whose B (K x N)
// is at most Wn (a weight matrix in the copies' forwards).
double gemm_amx_scratch_floats(double W, double Wn);

}  // namespace of::cpu
