// Inverted dropout on the GPU, the twin of cumulus/cpu/dropout.hpp: element
// i is kept iff philox_uniform_at(seed, stream, step, i) >= rate, so the GPU
// draws the CPU's mask bit for bit. One thread per Philox block (4 elements).
#pragma once

#include <cstdint>

#include <cumulus/core/error.hpp>
#include <cumulus/core/philox.hpp>
#include <cumulus/cuda/runtime.cuh>

namespace cumulus::cuda {

// ---------------------------------------------------------------- kernels

// out[i] = keep(i) ? in[i] * scale : 0. Block b holds elements 4b..4b+3 and
// uses counter {uint32(b), stream, step}, as cpu::detail::dropout_apply.
// When step_ptr is set the step is read from it (a graph replays the launch
// with a new step every time).
template <typename T>
__global__ void dropout_kernel(const T* in, T* out, std::int64_t n, float rate, T scale, std::uint32_t key0,
                               std::uint32_t key1, std::uint32_t stream, std::uint32_t step0, std::uint32_t step1,
                               const std::uint64_t* step_ptr) {
    if (step_ptr) {
        const std::uint64_t step = *step_ptr;
        step0 = static_cast<std::uint32_t>(step);
        step1 = static_cast<std::uint32_t>(step >> 32);
    }
    const std::int64_t blocks = (n + 3) / 4;
    for (std::int64_t blk = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; blk < blocks;
         blk += std::int64_t(gridDim.x) * blockDim.x) {
        const PhiloxBlock r =
            philox4x32_10(PhiloxBlock{{static_cast<std::uint32_t>(blk), stream, step0, step1}}, key0, key1);
        const std::int64_t i0 = blk * 4;
        const std::int64_t left = n - i0;
        const int m = left < 4 ? static_cast<int>(left) : 4;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            if (j < m) {
                const T v = in[i0 + j] * scale;
                out[i0 + j] = uint_to_unit_float(r.v[j]) >= rate ? v : T(0);
            }
        }
    }
}

template <typename T>
__global__ void copy_kernel(const T* in, T* out, std::int64_t n) {
    for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
         i += std::int64_t(gridDim.x) * blockDim.x)
        out[i] = in[i];
}

// ---------------------------------------------------------------- launchers

namespace detail {
template <typename T>
void dropout_launch(const char* op, const T* in, T* out, std::int64_t n, float rate, std::uint64_t seed,
                    std::uint32_t stream_id, std::uint64_t step, const std::uint64_t* step_ptr,
                    cudaStream_t stream) {
    CUMULUS_CHECK(n >= 0, op, ": negative size ", n);
    CUMULUS_CHECK(rate >= 0.0f && rate < 1.0f, op, ": rate must be in [0, 1), got ", rate);
    if (n == 0) return;
    if (rate == 0.0f) {
        if (in != out) {
            copy_kernel<<<grid_for(n), kThreads, 0, stream>>>(in, out, n);
            CUMULUS_CUDA_CHECK_LAUNCH();
        }
        return;
    }
    const T scale = T(1) / (T(1) - static_cast<T>(rate));  // computed on the host, as the CPU does
    dropout_kernel<<<grid_for((n + 3) / 4), kThreads, 0, stream>>>(
        in, out, n, rate, scale, static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32), stream_id,
        static_cast<std::uint32_t>(step), static_cast<std::uint32_t>(step >> 32), step_ptr);
    CUMULUS_CUDA_CHECK_LAUNCH();
}
}  // namespace detail

// y = mask * x / (1 - rate); rate 0 copies. x == y is allowed.
template <typename T>
void dropout_forward(const T* x, T* y, std::int64_t n, float rate, std::uint64_t seed, std::uint32_t stream_id,
                     std::uint64_t step, cudaStream_t stream = current_stream()) {
    detail::dropout_launch("dropout_forward", x, y, n, rate, seed, stream_id, step, nullptr, stream);
}

// dx = mask * dy / (1 - rate), the forward pass's mask. dx == dy is allowed.
template <typename T>
void dropout_backward(const T* dy, T* dx, std::int64_t n, float rate, std::uint64_t seed, std::uint32_t stream_id,
                      std::uint64_t step, cudaStream_t stream = current_stream()) {
    detail::dropout_launch("dropout_backward", dy, dx, n, rate, seed, stream_id, step, nullptr, stream);
}

// The same with the step read on the device from *step_ptr when the kernel runs.
template <typename T>
void dropout_forward_at(const T* x, T* y, std::int64_t n, float rate, std::uint64_t seed, std::uint32_t stream_id,
                        const std::uint64_t* step_ptr, cudaStream_t stream = current_stream()) {
    CUMULUS_CHECK(step_ptr != nullptr, "dropout_forward_at: null step pointer");
    detail::dropout_launch("dropout_forward", x, y, n, rate, seed, stream_id, 0, step_ptr, stream);
}

template <typename T>
void dropout_backward_at(const T* dy, T* dx, std::int64_t n, float rate, std::uint64_t seed, std::uint32_t stream_id,
                         const std::uint64_t* step_ptr, cudaStream_t stream = current_stream()) {
    CUMULUS_CHECK(step_ptr != nullptr, "dropout_backward_at: null step pointer");
    detail::dropout_launch("dropout_backward", dy, dx, n, rate, seed, stream_id, 0, step_ptr, stream);
}

}  // namespace cumulus::cuda
