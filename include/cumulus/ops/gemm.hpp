// matmul on 2-D tensors: the device-dispatching face of the GEMM family.
#pragma once

#include <type_traits>

#include <cumulus/core/op_types.hpp>
#include <cumulus/core/tensor.hpp>
#include <cumulus/cpu/gemm.hpp>
#include <cumulus/ops/dispatch.hpp>
#if CUMULUS_WITH_CUDA && defined(__CUDACC__)
#include <cumulus/cuda/gemm.cuh>
#endif

namespace cumulus::ops {

// c = epilogue(alpha * op(a) op(b) + beta * c [+ bias]); a, b, c are 2-D and
// contiguous. op(a) is (M, K), op(b) is (K, N), c is (M, N), bias is (N).
// On a GPU cuda::gemm_auto_plan picks the tile; given a `workspace`, it may
// also split a product too small to fill the chip along K, the partial
// products kept there (the tensor is grown as needed, so a layer that keeps
// one allocates nothing after its first step, as a captured CUDA graph
// requires). The CPU ignores it.
template <typename T>
void matmul(const Tensor<T>& a, Transpose ta, const Tensor<T>& b, Transpose tb, Tensor<T>& c, T alpha = T(1),
            T beta = T(0), Epilogue epilogue = Epilogue::None, const std::type_identity_t<Tensor<T>>* bias = nullptr,
            std::type_identity_t<Tensor<T>>* workspace = nullptr) {
    CUMULUS_CHECK(a.rank() == 2 && b.rank() == 2 && c.rank() == 2, "matmul: expected 2-D operands, got ",
                  a.shape().str(), ", ", b.shape().str(), " -> ", c.shape().str());
    const std::int64_t M = ta == Transpose::No ? a.dim(0) : a.dim(1);
    const std::int64_t K = ta == Transpose::No ? a.dim(1) : a.dim(0);
    const std::int64_t Kb = tb == Transpose::No ? b.dim(0) : b.dim(1);
    const std::int64_t N = tb == Transpose::No ? b.dim(1) : b.dim(0);
    CUMULUS_CHECK(K == Kb && c.dim(0) == M && c.dim(1) == N, "matmul: shapes do not chain: op(a) is (", M, ", ", K,
                  "), op(b) is (", Kb, ", ", N, "), c is ", c.shape().str());
    check_same_device("matmul", a, b);
    check_same_device("matmul", a, c);
    const T* bias_ptr = nullptr;
    if (epilogue != Epilogue::None) {
        CUMULUS_CHECK(bias != nullptr && bias->numel() == N, "matmul: the bias epilogue needs a bias of ", N,
                      " elements");
        check_same_device("matmul", a, *bias);
        bias_ptr = bias->data();
    }
#if CUMULUS_WITH_CUDA && defined(__CUDACC__)
    if (!a.device().is_cpu()) {
        // One plan for both the workspace's size and the launch.
        const cuda::GemmPlan plan = cuda::gemm_auto_plan(M, N, K, workspace != nullptr);
        const std::int64_t need = cuda::gemm_split_workspace(plan.split, M, N);
        T* ws = detail::grow_workspace(workspace, need, a.device());
        cuda::gemm_planned(plan, ta, tb, M, N, K, alpha, a.data(), a.dim(1), b.data(), b.dim(1), beta, c.data(),
                           c.dim(1), ws, need, epilogue, bias_ptr);
        return;
    }
#else
    (void)workspace;
#endif
    CUMULUS_DISPATCH("matmul", a.device(),
                     cpu::gemm(ta, tb, M, N, K, alpha, a.data(), a.dim(1), b.data(), b.dim(1), beta, c.data(),
                               c.dim(1), epilogue, bias_ptr),
                     (void)0);
}

}  // namespace cumulus::ops
