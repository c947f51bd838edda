// Reductions on the GPU: the bias gradient (column sums) and row argmax.
// The twins of cumulus/cpu/reduce.hpp. Sums run in double in a fixed order
// (no atomics), so a result does not change from run to run.
#pragma once

#include <cstdint>
#include <limits>

#include <cumulus/core/error.hpp>
#include <cumulus/cuda/runtime.cuh>

namespace cumulus::cuda {

// ---------------------------------------------------------------- device helpers

// A candidate maximum: value and column. The order picks what the CPU's
// argmax_row picks: a NaN beats every number, then the larger value; ties
// (equal values, or two NaNs) go to the smaller column, i.e. the first.
template <typename T>
struct ArgMax {
    T value;
    std::int64_t index;  // -1: none yet
};

template <typename T>
__device__ __forceinline__ bool argmax_better(const ArgMax<T>& a, const ArgMax<T>& b) {
    if (a.index < 0) return false;
    if (b.index < 0) return true;
    const bool an = a.value != a.value, bn = b.value != b.value;
    if (an != bn) return an;
    if (!an && a.value != b.value) return a.value > b.value;
    return a.index < b.index;
}

// The argmax of one row x[0..cols) over the lanes of a warp; every lane gets the result.
template <typename T>
__device__ __forceinline__ ArgMax<T> warp_argmax_row(const T* x, std::int64_t cols, int lane) {
    ArgMax<T> best{T(0), -1};
    for (std::int64_t c = lane; c < cols; c += 32) {
        const ArgMax<T> cand{x[c], c};
        if (argmax_better(cand, best)) best = cand;
    }
    for (int off = 16; off > 0; off >>= 1) {
        ArgMax<T> other;
        other.value = __shfl_xor_sync(0xffffffffu, best.value, off);
        other.index = __shfl_xor_sync(0xffffffffu, best.index, off);
        if (argmax_better(other, best)) best = other;
    }
    return best;
}

// exp in the precision of its argument (expf for float, as std::exp on the CPU).
__device__ __forceinline__ float device_exp(float x) { return expf(x); }
__device__ __forceinline__ double device_exp(double x) { return ::exp(x); }

__device__ __forceinline__ double warp_sum(double v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// ---------------------------------------------------------------- kernels

// Block (32, kBiasGradRows): threadIdx.x picks a column of the block's 32
// (coalesced rows), threadIdx.y a row phase; the phases are summed in shared
// memory in a fixed order.
inline constexpr int kBiasGradRows = 16;

template <typename T>
__global__ void bias_grad_kernel(const T* __restrict__ dy, T* __restrict__ db, std::int64_t rows, std::int64_t cols,
                                 bool accumulate) {
    __shared__ double partial[kBiasGradRows][33];
    const std::int64_t c = std::int64_t(blockIdx.x) * 32 + threadIdx.x;
    double s = 0;
    if (c < cols)
        for (std::int64_t r = threadIdx.y; r < rows; r += kBiasGradRows) s += static_cast<double>(dy[r * cols + c]);
    partial[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        double total = 0;
        for (int k = 0; k < kBiasGradRows; ++k) total += partial[k][threadIdx.x];
        db[c] = accumulate ? static_cast<T>(static_cast<double>(db[c]) + total) : static_cast<T>(total);
    }
}

// One warp per row.
template <typename T>
__global__ void argmax_rows_kernel(const T* __restrict__ x, std::int32_t* __restrict__ out, std::int64_t rows,
                                   std::int64_t cols) {
    const int lane = threadIdx.x & 31;
    const std::int64_t warps = std::int64_t(gridDim.x) * (blockDim.x / 32);
    for (std::int64_t r = std::int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; r < rows; r += warps) {
        const ArgMax<T> best = warp_argmax_row(x + r * cols, cols, lane);
        if (lane == 0) out[r] = static_cast<std::int32_t>(best.index);
    }
}

// ---------------------------------------------------------------- launchers

// db[c] (+)= sum_r dy[r, c].   dy: (rows, cols), db: (cols)
template <typename T>
void bias_grad(const T* dy, T* db, std::int64_t rows, std::int64_t cols, bool accumulate = false,
               cudaStream_t stream = current_stream()) {
    CUMULUS_CHECK(rows >= 0 && cols >= 0, "bias_grad: negative shape (", rows, ", ", cols, ")");
    if (cols == 0) return;
    const std::int64_t blocks = ceil_div(cols, 32);
    CUMULUS_CHECK(blocks <= std::numeric_limits<int>::max(), "bias_grad: ", cols, " columns is too many");
    bias_grad_kernel<<<unsigned(blocks), dim3(32, kBiasGradRows), 0, stream>>>(dy, db, rows, cols, accumulate);
    CUMULUS_CUDA_CHECK_LAUNCH();
}

// out[r] = argmax_c x[r, c] (first maximum; NaN counts as the maximum).
template <typename T>
void argmax_rows(const T* x, std::int32_t* out, std::int64_t rows, std::int64_t cols,
                 cudaStream_t stream = current_stream()) {
    CUMULUS_CHECK(rows >= 0, "argmax_rows: negative rows ", rows);
    if (rows == 0) return;
    CUMULUS_CHECK(cols >= 1 && cols <= std::numeric_limits<std::int32_t>::max(), "argmax_rows: cols ", cols,
                  " must be in [1, 2^31)");
    // One warp per row: kThreads / 32 rows per block.
    argmax_rows_kernel<<<grid_for(rows * 32), kThreads, 0, stream>>>(x, out, rows, cols);
    CUMULUS_CUDA_CHECK_LAUNCH();
}

}  // namespace cumulus::cuda
