// 2-D convolution on tensors (NHWC x, HWIO w), dispatched by device. The
// geometry is a cpu::ConvShape (TensorFlow's padding arithmetic), made from
// the tensors' shapes by ops::conv2d_shape. CUDA operands run the implicit
// GEMM kernels of cumulus/cuda/conv.cuh (in translation units nvcc compiles).
#pragma once

#include <cumulus/core/op_types.hpp>
#include <cumulus/core/tensor.hpp>
#include <cumulus/cpu/conv.hpp>
#include <cumulus/ops/dispatch.hpp>
#if CUMULUS_WITH_CUDA && defined(__CUDACC__)
#include <cumulus/cuda/conv.cuh>
#endif

namespace cumulus::ops {

using cpu::ConvShape;
using cpu::Padding;

// The geometry of conv(x, w): x is (N, H, W, C), w is (KH, KW, C, O).
inline ConvShape conv2d_shape(const Shape& x, const Shape& w, std::int64_t sh, std::int64_t sw, Padding p) {
    CUMULUS_CHECK(x.rank() == 4 && w.rank() == 4, "conv2d: expected x (N, H, W, C) and w (KH, KW, C, O), got ",
                  x.str(), " and ", w.str());
    CUMULUS_CHECK(x[3] == w[2], "conv2d: x has ", x[3], " channels but the kernel ", w.str(), " expects ", w[2]);
    return cpu::conv_shape(x[0], x[1], x[2], x[3], w[0], w[1], w[3], sh, sw, p);
}

namespace detail {

template <typename T>
void check_tensor(const char* op, const char* what, const Tensor<T>& t, std::int64_t a, std::int64_t b,
                  std::int64_t c, std::int64_t d) {
    const Shape want{a, b, c, d};
    CUMULUS_CHECK(t.defined() && t.shape() == want, op, ": ", what, " should have shape ", want.str(), ", got ",
                  t.defined() ? t.shape().str() : std::string("an undefined tensor"));
}

}  // namespace detail

// y = epilogue(conv(x, w) [+ bias]). Epilogue::Bias and BiasRelu need a bias of O elements.
template <typename T>
void conv2d_forward(const ConvShape& s, const Tensor<T>& x, const Tensor<T>& w, Tensor<T>& y,
                    Epilogue epilogue = Epilogue::None, const Tensor<T>* bias = nullptr) {
    constexpr const char* op = "conv2d_forward";
    detail::check_tensor(op, "x", x, s.n, s.h, s.w, s.c);
    detail::check_tensor(op, "kernel", w, s.kh, s.kw, s.c, s.oc);
    detail::check_tensor(op, "y", y, s.n, s.oh, s.ow, s.oc);
    check_same_device(op, x, w);
    check_same_device(op, x, y);
    const T* b = nullptr;
    if (epilogue != Epilogue::None) {
        CUMULUS_CHECK(bias != nullptr && bias->numel() == s.oc, op, ": the bias epilogue needs a bias of ", s.oc,
                      " elements");
        check_same_device(op, x, *bias);
        b = bias->data();
    }
    CUMULUS_DISPATCH(op, x.device(), cpu::conv2d_forward(s, x.data(), w.data(), y.data(), epilogue, b),
                     cuda::conv2d_forward(s, x.data(), w.data(), y.data(), epilogue, b));
}

// dx = dL/dx from dy = dL/d(pre-activation output).
template <typename T>
void conv2d_backward_data(const ConvShape& s, const Tensor<T>& dy, const Tensor<T>& w, Tensor<T>& dx) {
    constexpr const char* op = "conv2d_backward_data";
    detail::check_tensor(op, "dy", dy, s.n, s.oh, s.ow, s.oc);
    detail::check_tensor(op, "kernel", w, s.kh, s.kw, s.c, s.oc);
    detail::check_tensor(op, "dx", dx, s.n, s.h, s.w, s.c);
    check_same_device(op, dy, w);
    check_same_device(op, dy, dx);
    CUMULUS_DISPATCH(op, dy.device(), cpu::conv2d_backward_data(s, dy.data(), w.data(), dx.data()),
                     cuda::conv2d_backward_data(s, dy.data(), w.data(), dx.data()));
}

// dw = dL/dw (HWIO) from x and dy = dL/d(pre-activation output). On a GPU
// the partial sums of the split reduction go to `workspace` when given (it is
// grown as needed: a layer that keeps one allocates nothing after its first
// step, as a captured CUDA graph requires); the CPU ignores it.
template <typename T>
void conv2d_backward_filter(const ConvShape& s, const Tensor<T>& x, const Tensor<T>& dy, Tensor<T>& dw,
                            Tensor<T>* workspace = nullptr) {
    constexpr const char* op = "conv2d_backward_filter";
    detail::check_tensor(op, "x", x, s.n, s.h, s.w, s.c);
    detail::check_tensor(op, "dy", dy, s.n, s.oh, s.ow, s.oc);
    detail::check_tensor(op, "dw", dw, s.kh, s.kw, s.c, s.oc);
    check_same_device(op, x, dy);
    check_same_device(op, x, dw);
#if CUMULUS_WITH_CUDA && defined(__CUDACC__)
    if (!x.device().is_cpu()) {
        const std::int64_t need = workspace ? cuda::conv2d_filter_workspace(s) : 0;
        T* ws = detail::grow_workspace(workspace, need, x.device());
        cuda::conv2d_backward_filter(s, x.data(), dy.data(), dw.data(), ws, need);
        return;
    }
#else
    (void)workspace;
#endif
    CUMULUS_DISPATCH(op, x.device(), cpu::conv2d_backward_filter(s, x.data(), dy.data(), dw.data()), (void)0);
}

}  // namespace cumulus::ops
