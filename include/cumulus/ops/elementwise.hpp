// Element-wise ops on tensors (ReLU, bias, scaling), dispatched by device.
#pragma once

#include <cumulus/core/tensor.hpp>
#include <cumulus/cpu/elementwise.hpp>
#include <cumulus/ops/dispatch.hpp>
#if CUMULUS_WITH_CUDA && defined(__CUDACC__)
#include <cumulus/cuda/elementwise.cuh>
#endif

namespace cumulus::ops {

template <typename T>
void relu_forward(const Tensor<T>& x, Tensor<T>& y) {
    CUMULUS_CHECK(x.numel() == y.numel(), "relu_forward: ", x.shape().str(), " -> ", y.shape().str());
    check_same_device("relu_forward", x, y);
    CUMULUS_DISPATCH("relu_forward", x.device(), cpu::relu_forward(x.data(), y.data(), x.numel()),
                     cuda::relu_forward(x.data(), y.data(), x.numel()));
}

// dx = y > 0 ? dy : 0, where y is the ReLU's output.
template <typename T>
void relu_backward(const Tensor<T>& y, const Tensor<T>& dy, Tensor<T>& dx) {
    CUMULUS_CHECK(y.numel() == dy.numel() && dy.numel() == dx.numel(), "relu_backward: mismatched sizes ",
                  y.shape().str(), ", ", dy.shape().str(), ", ", dx.shape().str());
    check_same_device("relu_backward", y, dy);
    check_same_device("relu_backward", y, dx);
    CUMULUS_DISPATCH("relu_backward", y.device(), cpu::relu_backward(y.data(), dy.data(), dx.data(), y.numel()),
                     cuda::relu_backward(y.data(), dy.data(), dx.data(), y.numel()));
}

// y[r, c] += bias[c] for a (rows, cols) y.
template <typename T>
void bias_add(Tensor<T>& y, const Tensor<T>& bias) {
    const std::int64_t cols = bias.numel();
    CUMULUS_CHECK(cols > 0 && y.numel() % cols == 0, "bias_add: ", bias.numel(), " biases for ", y.shape().str());
    check_same_device("bias_add", y, bias);
    CUMULUS_DISPATCH("bias_add", y.device(), cpu::bias_add(y.data(), bias.data(), y.numel() / cols, cols),
                     cuda::bias_add(y.data(), bias.data(), y.numel() / cols, cols));
}

}  // namespace cumulus::ops
