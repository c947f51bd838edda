// 2-D max and average pooling on the GPU, the twins of cumulus/cpu/pool.hpp:
// NHWC, TensorFlow's windows (a cpu::ConvShape with oc == c), the same
// rules: max takes the first maximum of the window in row-major order and
// records its index within the image ((y * w + x) * c + channel); average
// divides by the number of input elements inside the window.
//
// One thread per output element forward. Backward gathers instead of
// scattering: one thread per input element sums the gradients of the outputs
// whose windows hold it (for max, those whose argmax is this element), so
// overlapping windows need no atomics and the result is the same every run.
// All memory-bound: a forward pass reads x once per window it lies in and
// writes y (and argmax) once.
//
// Not yet run on a GPU (written on a machine without one):
// tests/cuda/conv_vs_cpu_test.cu checks these against the CPU.
#pragma once

#include <cstdint>
#include <limits>

#include <cumulus/core/error.hpp>
#include <cumulus/cpu/conv.hpp>
#include <cumulus/cuda/runtime.cuh>

namespace cumulus::cuda {

namespace pool_detail {

struct Geometry {
    int n, h, w, c, kh, kw, sh, sw, oh, ow, pt, pl;
};

inline Geometry geometry(const cpu::ConvShape& s, const char* op) {
    CUMULUS_CHECK(s.oc == s.c && s.n >= 0 && s.h > 0 && s.w > 0 && s.c > 0 && s.oh > 0 && s.ow > 0, op,
                  ": bad geometry n=", s.n, " h=", s.h, " w=", s.w, " c=", s.c, " -> ", s.oh, "x", s.ow, "x", s.oc);
    CUMULUS_CHECK(s.in_size() < std::numeric_limits<int>::max() && s.out_size() < std::numeric_limits<int>::max(),
                  op, ": tensors of 2^31 elements or more are not supported");
    auto i = [](std::int64_t v) { return static_cast<int>(v); };
    return {i(s.n), i(s.h), i(s.w), i(s.c), i(s.kh), i(s.kw), i(s.sh), i(s.sw), i(s.oh), i(s.ow), i(s.pt), i(s.pl)};
}

// Element idx of an NHWC tensor of h x w x c images: image, row, column, channel.
struct Pixel {
    int n, y, x, c;
};
__device__ __forceinline__ Pixel unflatten(int idx, int h, int w, int c) {
    const int ci = idx % c, r = idx / c;
    const int x = r % w, r2 = r / w;
    return {r2 / h, r2 % h, x, ci};
}

// The window of output (oy, ox), clipped to the image: rows [y0, y1), columns [x0, x1).
struct Window {
    int y0, y1, x0, x1;
    __device__ __forceinline__ int count() const { return (y1 - y0) * (x1 - x0); }
};
__device__ __forceinline__ Window window(const Geometry& g, int oy, int ox) {
    const int ys = oy * g.sh - g.pt, xs = ox * g.sw - g.pl;
    return {ys < 0 ? 0 : ys, ys + g.kh < g.h ? ys + g.kh : g.h, xs < 0 ? 0 : xs, xs + g.kw < g.w ? xs + g.kw : g.w};
}

// The outputs whose windows hold input row iy: oy in [first, last].
__device__ __forceinline__ void covering(int i, int pad, int k, int s, int out, int& first, int& last) {
    // oy * s - pad <= i < oy * s - pad + k
    const int t = i + pad;
    first = t < k ? 0 : (t - k) / s + 1;
    last = t / s < out - 1 ? t / s : out - 1;
}

}  // namespace pool_detail

// ---------------------------------------------------------------- kernels
//
// Grid-stride loops over the output (forward) or input (backward) elements;
// the index is 64-bit, since idx + stride may pass 2^31 while total <= INT_MAX.

template <typename T>
__global__ void max_pool_forward_kernel(pool_detail::Geometry g, const T* __restrict__ x, T* __restrict__ y,
                                        std::int32_t* __restrict__ argmax) {
    const int total = g.n * g.oh * g.ow * g.c;
    for (std::int64_t idx = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; idx < total;
         idx += std::int64_t(gridDim.x) * blockDim.x) {
        const pool_detail::Pixel o = pool_detail::unflatten(int(idx), g.oh, g.ow, g.c);
        const pool_detail::Window win = pool_detail::window(g, o.y, o.x);
        const T* img = x + std::int64_t(o.n) * g.h * g.w * g.c;
        T m = T(0);
        int best = -1;
        for (int iy = win.y0; iy < win.y1; ++iy)
            for (int ix = win.x0; ix < win.x1; ++ix) {
                const int at = (iy * g.w + ix) * g.c + o.c;
                const T v = img[at];
                if (best < 0 || v > m) m = v, best = at;  // strictly greater: the first maximum stays
            }
        y[idx] = m;
        argmax[idx] = best;
    }
}

template <typename T>
__global__ void max_pool_backward_kernel(pool_detail::Geometry g, const T* __restrict__ dy,
                                         const std::int32_t* __restrict__ argmax, T* __restrict__ dx) {
    const int total = g.n * g.h * g.w * g.c;
    for (std::int64_t idx = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; idx < total;
         idx += std::int64_t(gridDim.x) * blockDim.x) {
        const pool_detail::Pixel p = pool_detail::unflatten(int(idx), g.h, g.w, g.c);
        const int at = (p.y * g.w + p.x) * g.c + p.c;
        int oy0, oy1, ox0, ox1;
        pool_detail::covering(p.y, g.pt, g.kh, g.sh, g.oh, oy0, oy1);
        pool_detail::covering(p.x, g.pl, g.kw, g.sw, g.ow, ox0, ox1);
        T s = T(0);
        for (int oy = oy0; oy <= oy1; ++oy)
            for (int ox = ox0; ox <= ox1; ++ox) {
                const std::int64_t o = ((std::int64_t(p.n) * g.oh + oy) * g.ow + ox) * g.c + p.c;
                if (argmax[o] == at) s += dy[o];
            }
        dx[idx] = s;
    }
}

template <typename T>
__global__ void avg_pool_forward_kernel(pool_detail::Geometry g, const T* __restrict__ x, T* __restrict__ y) {
    const int total = g.n * g.oh * g.ow * g.c;
    for (std::int64_t idx = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; idx < total;
         idx += std::int64_t(gridDim.x) * blockDim.x) {
        const pool_detail::Pixel o = pool_detail::unflatten(int(idx), g.oh, g.ow, g.c);
        const pool_detail::Window win = pool_detail::window(g, o.y, o.x);
        const T* img = x + std::int64_t(o.n) * g.h * g.w * g.c;
        T s = T(0);
        for (int iy = win.y0; iy < win.y1; ++iy)
            for (int ix = win.x0; ix < win.x1; ++ix) s += img[(iy * g.w + ix) * g.c + o.c];
        y[idx] = s / T(win.count());
    }
}

template <typename T>
__global__ void avg_pool_backward_kernel(pool_detail::Geometry g, const T* __restrict__ dy, T* __restrict__ dx) {
    const int total = g.n * g.h * g.w * g.c;
    for (std::int64_t idx = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; idx < total;
         idx += std::int64_t(gridDim.x) * blockDim.x) {
        const pool_detail::Pixel p = pool_detail::unflatten(int(idx), g.h, g.w, g.c);
        int oy0, oy1, ox0, ox1;
        pool_detail::covering(p.y, g.pt, g.kh, g.sh, g.oh, oy0, oy1);
        pool_detail::covering(p.x, g.pl, g.kw, g.sw, g.ow, ox0, ox1);
        T s = T(0);
        for (int oy = oy0; oy <= oy1; ++oy)
            for (int ox = ox0; ox <= ox1; ++ox)
                s += dy[((std::int64_t(p.n) * g.oh + oy) * g.ow + ox) * g.c + p.c] /
                     T(pool_detail::window(g, oy, ox).count());
        dx[idx] = s;
    }
}

// ---------------------------------------------------------------- launchers

// y = window maxima; argmax their indices within the image. Device pointers.
template <typename T>
void max_pool_forward(const cpu::ConvShape& s, const T* x, T* y, std::int32_t* argmax,
                      cudaStream_t stream = current_stream()) {
    const auto g = pool_detail::geometry(s, "cuda::max_pool_forward");
    if (s.out_size() == 0) return;
    max_pool_forward_kernel<<<grid_for(s.out_size()), kThreads, 0, stream>>>(g, x, y, argmax);
    CUMULUS_CUDA_CHECK_LAUNCH();
}

template <typename T>
void max_pool_backward(const cpu::ConvShape& s, const T* dy, const std::int32_t* argmax, T* dx,
                       cudaStream_t stream = current_stream()) {
    const auto g = pool_detail::geometry(s, "cuda::max_pool_backward");
    if (s.in_size() == 0) return;
    max_pool_backward_kernel<<<grid_for(s.in_size()), kThreads, 0, stream>>>(g, dy, argmax, dx);
    CUMULUS_CUDA_CHECK_LAUNCH();
}

template <typename T>
void avg_pool_forward(const cpu::ConvShape& s, const T* x, T* y, cudaStream_t stream = current_stream()) {
    const auto g = pool_detail::geometry(s, "cuda::avg_pool_forward");
    if (s.out_size() == 0) return;
    avg_pool_forward_kernel<<<grid_for(s.out_size()), kThreads, 0, stream>>>(g, x, y);
    CUMULUS_CUDA_CHECK_LAUNCH();
}

template <typename T>
void avg_pool_backward(const cpu::ConvShape& s, const T* dy, T* dx, cudaStream_t stream = current_stream()) {
    const auto g = pool_detail::geometry(s, "cuda::avg_pool_backward");
    if (s.in_size() == 0) return;
    avg_pool_backward_kernel<<<grid_for(s.in_size()), kThreads, 0, stream>>>(g, dy, dx);
    CUMULUS_CUDA_CHECK_LAUNCH();
}

}  // namespace cumulus::cuda
