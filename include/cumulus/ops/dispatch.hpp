// How an op picks its implementation: it runs where its operands live.
#pragma once

#include <cumulus/core/config.hpp>
#include <cumulus/core/device.hpp>
#include <cumulus/core/error.hpp>

namespace cumulus::ops::detail {

// The error for a CUDA tensor reaching an op that this build cannot run there.
[[noreturn]] inline void no_cuda_kernel(const char* op, Device d) {
    CUMULUS_FAIL(op, ": operands live on ", d.str(),
                 " but this translation unit was compiled without the CUDA kernels "
                 "(compile it with nvcc and CUMULUS_WITH_CUDA=1, or move the tensors to the CPU)");
}

}  // namespace cumulus::ops::detail

// CUMULUS_DISPATCH(name, device, cpu_expr, cuda_expr): cpu_expr on CPU
// operands, cuda_expr (compiled only by nvcc with CUMULUS_WITH_CUDA) on CUDA
// operands, a clear error otherwise.
#if CUMULUS_WITH_CUDA && defined(__CUDACC__)
#define CUMULUS_DISPATCH(name, device, cpu_expr, cuda_expr) \
    do {                                                    \
        if ((device).is_cpu()) {                            \
            cpu_expr;                                       \
        } else {                                            \
            cuda_expr;                                      \
        }                                                   \
    } while (0)
#else
#define CUMULUS_DISPATCH(name, device, cpu_expr, cuda_expr)                    \
    do {                                                                       \
        if ((device).is_cpu()) {                                               \
            cpu_expr;                                                          \
        } else {                                                               \
            ::cumulus::ops::detail::no_cuda_kernel(name, (device));            \
        }                                                                      \
    } while (0)
#endif
