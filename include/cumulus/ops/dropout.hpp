// Inverted dropout on tensors, dispatched by device. The mask is a function
// of (seed, stream, step, element index), so forward and backward agree and a
// GPU reproduces the CPU's mask bit for bit.
#pragma once

#include <cumulus/core/tensor.hpp>
#include <cumulus/cpu/dropout.hpp>
#include <cumulus/ops/dispatch.hpp>
#if CUMULUS_WITH_CUDA && defined(__CUDACC__)
#include <cumulus/cuda/dropout.cuh>
#endif

namespace cumulus::ops {

struct DropoutKey {
    std::uint64_t seed = 0;
    std::uint32_t stream = 0;  // one per layer
    std::uint64_t step = 0;    // one per training step
};

template <typename T>
void dropout_forward(const Tensor<T>& x, Tensor<T>& y, float rate, DropoutKey k) {
    CUMULUS_CHECK(x.numel() == y.numel(), "dropout_forward: ", x.shape().str(), " -> ", y.shape().str());
    check_same_device("dropout_forward", x, y);
    CUMULUS_DISPATCH("dropout_forward", x.device(),
                     cpu::dropout_forward(x.data(), y.data(), x.numel(), rate, k.seed, k.stream, k.step),
                     cuda::dropout_forward(x.data(), y.data(), x.numel(), rate, k.seed, k.stream, k.step));
}

template <typename T>
void dropout_backward(const Tensor<T>& dy, Tensor<T>& dx, float rate, DropoutKey k) {
    CUMULUS_CHECK(dy.numel() == dx.numel(), "dropout_backward: ", dy.shape().str(), " -> ", dx.shape().str());
    check_same_device("dropout_backward", dy, dx);
    CUMULUS_DISPATCH("dropout_backward", dy.device(),
                     cpu::dropout_backward(dy.data(), dx.data(), dy.numel(), rate, k.seed, k.stream, k.step),
                     cuda::dropout_backward(dy.data(), dx.data(), dy.numel(), rate, k.seed, k.stream, k.step));
}

}  // namespace cumulus::ops
