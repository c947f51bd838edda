// Elementwise CUDA kernels: bias add, ReLU forward/backward, scale, axpy.
// The twins of cumulus/cpu/elementwise.hpp, same signatures plus a stream.
// Grid-stride loops with 64-bit indices: any n, any grid size.
#pragma once

#include <cstdint>

#include <cumulus/core/error.hpp>
#include <cumulus/cuda/runtime.cuh>

namespace cumulus::cuda {

// ---------------------------------------------------------------- kernels

template <typename T>
__global__ void bias_add_kernel(T* __restrict__ y, const T* __restrict__ bias, std::int64_t rows,
                                std::int64_t cols) {
    const std::int64_t n = rows * cols;
    for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
         i += std::int64_t(gridDim.x) * blockDim.x)
        y[i] += bias[i % cols];
}

// x < 0 ? 0 : x keeps NaN, as the CPU's.
template <typename T>
__global__ void relu_forward_kernel(const T* x, T* y, std::int64_t n) {
    for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
         i += std::int64_t(gridDim.x) * blockDim.x) {
        const T v = x[i];
        y[i] = v < T(0) ? T(0) : v;
    }
}

template <typename T>
__global__ void relu_backward_kernel(const T* y, const T* dy, T* dx, std::int64_t n) {
    for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
         i += std::int64_t(gridDim.x) * blockDim.x) {
        const T g = dy[i];
        dx[i] = y[i] > T(0) ? g : T(0);
    }
}

template <typename T>
__global__ void scale_kernel(T* x, T alpha, std::int64_t n) {
    for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
         i += std::int64_t(gridDim.x) * blockDim.x)
        x[i] *= alpha;
}

template <typename T>
__global__ void axpy_kernel(T alpha, const T* x, T* y, std::int64_t n) {
    for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
         i += std::int64_t(gridDim.x) * blockDim.x)
        y[i] += alpha * x[i];
}

// ---------------------------------------------------------------- launchers

// y[r, c] += bias[c].   y: (rows, cols), bias: (cols)
template <typename T>
void bias_add(T* y, const T* bias, std::int64_t rows, std::int64_t cols, cudaStream_t stream = current_stream()) {
    CUMULUS_CHECK(rows >= 0 && cols >= 0, "bias_add: negative shape (", rows, ", ", cols, ")");
    if (rows == 0 || cols == 0) return;
    bias_add_kernel<<<grid_for(rows * cols), kThreads, 0, stream>>>(y, bias, rows, cols);
    CUMULUS_CUDA_CHECK_LAUNCH();
}

// y = max(x, 0), NaN kept. x == y is allowed.
template <typename T>
void relu_forward(const T* x, T* y, std::int64_t n, cudaStream_t stream = current_stream()) {
    CUMULUS_CHECK(n >= 0, "relu_forward: negative size ", n);
    if (n == 0) return;
    relu_forward_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, y, n);
    CUMULUS_CUDA_CHECK_LAUNCH();
}

// dx = y > 0 ? dy : 0. dx == dy is allowed.
template <typename T>
void relu_backward(const T* y, const T* dy, T* dx, std::int64_t n, cudaStream_t stream = current_stream()) {
    CUMULUS_CHECK(n >= 0, "relu_backward: negative size ", n);
    if (n == 0) return;
    relu_backward_kernel<<<grid_for(n), kThreads, 0, stream>>>(y, dy, dx, n);
    CUMULUS_CUDA_CHECK_LAUNCH();
}

// x *= alpha.
template <typename T>
void scale(T* x, T alpha, std::int64_t n, cudaStream_t stream = current_stream()) {
    CUMULUS_CHECK(n >= 0, "scale: negative size ", n);
    if (n == 0) return;
    scale_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, alpha, n);
    CUMULUS_CUDA_CHECK_LAUNCH();
}

// y += alpha * x. x == y is allowed.
template <typename T>
void axpy(T alpha, const T* x, T* y, std::int64_t n, cudaStream_t stream = current_stream()) {
    CUMULUS_CHECK(n >= 0, "axpy: negative size ", n);
    if (n == 0) return;
    axpy_kernel<<<grid_for(n), kThreads, 0, stream>>>(alpha, x, y, n);
    CUMULUS_CUDA_CHECK_LAUNCH();
}

}  // namespace cumulus::cuda
