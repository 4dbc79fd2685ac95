// Backend registry: the CPU kernel table, and what "auto" resolves to and why: CUDA when it is compiled in and a
// device answers (device/device.h cuda_available), else the CPU.
#include "core/thread_pool.h"
#include "device/device.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/gemm.h"
#include "kernels/kernels.h"

namespace of {

const KernelTable& cpu_kernels() {
    static const KernelTable table = {
        "cpu",
        cpu::gemm,
        cpu::bias_act_forward,
        cpu::act_backward,
        cpu::noise_fill,
        cpu::noisy_bias_act_forward,
        cpu::loss_forward,
        cpu::loss_backward,
        cpu::lr_row_weights,
        cpu::score_transform,
        cpu::lr_copy_sum,
        cpu::lr_bias_reduce,
        cpu::col_sum,
        cpu::optimizer_step,
        cpu::im2row,
        cpu::row2im,
        cpu::conv_forward,
        cpu::conv_input_grad,
        cpu::conv_weight_grad,
        cpu::pool_forward,
        cpu::pool_backward,
    };
    return table;
}

const KernelTable& cpu_kernels_bf16() {
    static const KernelTable table = [] {
        KernelTable t = cpu_kernels();
        t.name = "cpu-bf16";
        t.gemm = cpu::gemm_bf16;
        t.conv_forward = cpu::conv_forward_bf16;
        return t;
    }();
    return table;
}

BackendInfo backend_info() {
    BackendInfo info;
    info.compiled = {"cpu"};
#ifdef ONEFORWARD_WITH_CUDA
    info.compiled.push_back("cuda");
#endif
    const bool cuda = cuda_available(&info.reason, &info.cuda_devices);
    info.active = cuda ? "cuda" : "cpu";
    info.threads = ThreadPool::instance().threads();
    info.simd = cpu::gemm_isa();
    info.bf16 = cpu::bf16_kernels();
    info.blas = "oneforward";
    return info;
}

}  // namespace of
