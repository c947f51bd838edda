// 2-D max and average pooling on NHWC tensors, dispatched by device; the
// geometry is a cpu::ConvShape with oc == c (ops::pool2d_shape). CUDA
// operands run cumulus/cuda/pool.cuh (in translation units nvcc compiles).
#pragma once

#include <cstdint>

#include <cumulus/core/tensor.hpp>
#include <cumulus/cpu/pool.hpp>
#include <cumulus/ops/conv.hpp>
#include <cumulus/ops/dispatch.hpp>
#if CUMULUS_WITH_CUDA && defined(__CUDACC__)
#include <cumulus/cuda/pool.cuh>
#endif

namespace cumulus::ops {

// The geometry of a kh x kw window with strides sh x sw over x (N, H, W, C).
inline ConvShape pool2d_shape(const Shape& x, std::int64_t kh, std::int64_t kw, std::int64_t sh, std::int64_t sw,
                              Padding p) {
    CUMULUS_CHECK(x.rank() == 4, "pool2d: expected x of shape (N, H, W, C), got ", x.str());
    return cpu::pool_shape(x[0], x[1], x[2], x[3], kh, kw, sh, sw, p);
}

// y = window maxima; argmax (int32, same shape as y) records where each came from.
template <typename T>
void max_pool2d_forward(const ConvShape& s, const Tensor<T>& x, Tensor<T>& y, Tensor<std::int32_t>& argmax) {
    constexpr const char* op = "max_pool2d_forward";
    detail::check_tensor(op, "x", x, s.n, s.h, s.w, s.c);
    detail::check_tensor(op, "y", y, s.n, s.oh, s.ow, s.c);
    detail::check_tensor(op, "argmax", argmax, s.n, s.oh, s.ow, s.c);
    check_same_device(op, x, y);
    check_same_device(op, x, argmax);
    CUMULUS_DISPATCH(op, x.device(), cpu::max_pool_forward(s, x.data(), y.data(), argmax.data()),
                     cuda::max_pool_forward(s, x.data(), y.data(), argmax.data()));
}

template <typename T>
void max_pool2d_backward(const ConvShape& s, const Tensor<T>& dy, const Tensor<std::int32_t>& argmax,
                         Tensor<T>& dx) {
    constexpr const char* op = "max_pool2d_backward";
    detail::check_tensor(op, "dy", dy, s.n, s.oh, s.ow, s.c);
    detail::check_tensor(op, "argmax", argmax, s.n, s.oh, s.ow, s.c);
    detail::check_tensor(op, "dx", dx, s.n, s.h, s.w, s.c);
    check_same_device(op, dy, argmax);
    check_same_device(op, dy, dx);
    CUMULUS_DISPATCH(op, dy.device(), cpu::max_pool_backward(s, dy.data(), argmax.data(), dx.data()),
                     cuda::max_pool_backward(s, dy.data(), argmax.data(), dx.data()));
}

template <typename T>
void avg_pool2d_forward(const ConvShape& s, const Tensor<T>& x, Tensor<T>& y) {
    constexpr const char* op = "avg_pool2d_forward";
    detail::check_tensor(op, "x", x, s.n, s.h, s.w, s.c);
    detail::check_tensor(op, "y", y, s.n, s.oh, s.ow, s.c);
    check_same_device(op, x, y);
    CUMULUS_DISPATCH(op, x.device(), cpu::avg_pool_forward(s, x.data(), y.data()),
                     cuda::avg_pool_forward(s, x.data(), y.data()));
}

template <typename T>
void avg_pool2d_backward(const ConvShape& s, const Tensor<T>& dy, Tensor<T>& dx) {
    constexpr const char* op = "avg_pool2d_backward";
    detail::check_tensor(op, "dy", dy, s.n, s.oh, s.ow, s.c);
    detail::check_tensor(op, "dx", dx, s.n, s.h, s.w, s.c);
    check_same_device(op, dy, dx);
    CUMULUS_DISPATCH(op, dy.device(), cpu::avg_pool_backward(s, dy.data(), dx.data()),
                     cuda::avg_pool_backward(s, dy.data(), dx.data()));
}

}  // namespace cumulus::ops
