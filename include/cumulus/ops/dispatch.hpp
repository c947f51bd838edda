// How an op picks its implementation: it runs where its operands live.
#pragma once

#include <cumulus/core/config.hpp>
#include <cumulus/core/device.hpp>
#include <cumulus/core/error.hpp>
#include <cumulus/core/tensor.hpp>

namespace cumulus::ops::detail {

// The error for a CUDA tensor reaching an op that this build cannot run there.
[[noreturn]] inline void no_cuda_kernel(const char* op, Device d) {
    CUMULUS_FAIL(op, ": operands live on ", d.str(),
                 " but this translation unit was compiled without the CUDA kernels "
                 "(compile it with nvcc and CUMULUS_WITH_CUDA=1, or move the tensors to the CPU)");
}

// The scratch a device op keeps in a caller's tensor: null when there is no
// tensor or the op needs none; else the tensor's data, the tensor replaced
// first when it is smaller than `need` elements or on another device. A
// layer that keeps the tensor allocates only on its first step (a captured
// CUDA graph allocates nothing).
template <typename T>
T* grow_workspace(Tensor<T>* workspace, std::int64_t need, Device d) {
    if (!workspace || need <= 0) return nullptr;
    if (!workspace->defined() || workspace->numel() < need || !(workspace->device() == d))
        *workspace = Tensor<T>::empty(Shape{need}, d);
    return workspace->data();
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
