// Reductions on tensors (bias gradient, argmax), dispatched by device.
#pragma once

#include <cumulus/core/tensor.hpp>
#include <cumulus/cpu/reduce.hpp>
#include <cumulus/ops/dispatch.hpp>
#if CUMULUS_WITH_CUDA && defined(__CUDACC__)
#include <cumulus/cuda/reduce.cuh>
#endif

namespace cumulus::ops {

// db[c] = sum over rows of dy[r, c], dy viewed as (rows, db.numel()).
template <typename T>
void bias_grad(const Tensor<T>& dy, Tensor<T>& db) {
    const std::int64_t cols = db.numel();
    CUMULUS_CHECK(cols > 0 && dy.numel() % cols == 0, "bias_grad: ", dy.shape().str(), " into ", cols, " columns");
    check_same_device("bias_grad", dy, db);
    CUMULUS_DISPATCH("bias_grad", dy.device(), cpu::bias_grad(dy.data(), db.data(), dy.numel() / cols, cols),
                     cuda::bias_grad(dy.data(), db.data(), dy.numel() / cols, cols));
}

// out[r] = index of the largest element of row r of x (rows, cols).
template <typename T>
void argmax_rows(const Tensor<T>& x, Tensor<std::int32_t>& out) {
    CUMULUS_CHECK(x.rank() == 2 && out.numel() == x.dim(0), "argmax_rows: ", x.shape().str(), " -> ",
                  out.shape().str());
    check_same_device("argmax_rows", x, out);
    CUMULUS_DISPATCH("argmax_rows", x.device(), cpu::argmax_rows(x.data(), out.data(), x.dim(0), x.dim(1)),
                     cuda::argmax_rows(x.data(), out.data(), x.dim(0), x.dim(1)));
}

}  // namespace cumulus::ops
