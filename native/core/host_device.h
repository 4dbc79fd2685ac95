// OF_HOST_DEVICE marks a function that both the host compiler and nvcc compile (rng/, device/ops.h,
// device/tiled_gemm.h): under nvcc it is __host__ __device__, elsewhere a plain inline function.
#pragma once

#if defined(__CUDACC__)
#define OF_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define OF_HOST_DEVICE inline
#endif
