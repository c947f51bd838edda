// Elementwise CPU kernels: bias add, ReLU forward/backward, scale, axpy.
// Raw pointers over contiguous row-major memory; the CUDA twin
// (cumulus/cuda/elementwise.cuh) has the same signatures plus a stream.
#pragma once

#include <cstdint>

#include <cumulus/core/error.hpp>
#include <cumulus/core/parallel.hpp>

namespace cumulus::cpu {

namespace detail {
// Below this many elements a thread hand-off costs more than the loop.
inline constexpr std::int64_t kElementwiseGrain = 32768;
inline int elementwise_parts(std::int64_t n) { return n >= kElementwiseGrain ? 0 : 1; }
}  // namespace detail

// y[r, c] += bias[c].   y: (rows, cols), bias: (cols)
template <typename T>
void bias_add(T* y, const T* bias, std::int64_t rows, std::int64_t cols) {
    CUMULUS_CHECK(rows >= 0 && cols >= 0, "bias_add: negative shape (", rows, ", ", cols, ")");
    parallel_for(
        rows,
        [&](std::int64_t b, std::int64_t e, int) {
            for (std::int64_t r = b; r < e; ++r) {
                T* row = y + r * cols;
                for (std::int64_t c = 0; c < cols; ++c) row[c] += bias[c];
            }
        },
        detail::elementwise_parts(rows * cols));
}

// y = max(x, 0); NaN propagates (as std::max(x, 0)). x == y is allowed.
template <typename T>
void relu_forward(const T* x, T* y, std::int64_t n) {
    CUMULUS_CHECK(n >= 0, "relu_forward: negative size ", n);
    parallel_for(
        n,
        [&](std::int64_t b, std::int64_t e, int) {
            for (std::int64_t i = b; i < e; ++i) y[i] = x[i] < T(0) ? T(0) : x[i];
        },
        detail::elementwise_parts(n));
}

// dx = y > 0 ? dy : 0, where y is the ReLU output. dx == dy is allowed.
template <typename T>
void relu_backward(const T* y, const T* dy, T* dx, std::int64_t n) {
    CUMULUS_CHECK(n >= 0, "relu_backward: negative size ", n);
    parallel_for(
        n,
        [&](std::int64_t b, std::int64_t e, int) {
            for (std::int64_t i = b; i < e; ++i) {
                // Both operands loaded unconditionally, so the select vectorises.
                const T g = dy[i];
                dx[i] = y[i] > T(0) ? g : T(0);
            }
        },
        detail::elementwise_parts(n));
}

// x *= alpha.
template <typename T>
void scale(T* x, T alpha, std::int64_t n) {
    CUMULUS_CHECK(n >= 0, "scale: negative size ", n);
    parallel_for(
        n,
        [&](std::int64_t b, std::int64_t e, int) {
            for (std::int64_t i = b; i < e; ++i) x[i] *= alpha;
        },
        detail::elementwise_parts(n));
}

// y += alpha * x. x == y is allowed.
template <typename T>
void axpy(T alpha, const T* x, T* y, std::int64_t n) {
    CUMULUS_CHECK(n >= 0, "axpy: negative size ", n);
    parallel_for(
        n,
        [&](std::int64_t b, std::int64_t e, int) {
            for (std::int64_t i = b; i < e; ++i) y[i] += alpha * x[i];
        },
        detail::elementwise_parts(n));
}

}  // namespace cumulus::cpu
