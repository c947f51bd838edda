// Batch assembly on the GPU, the twin of cumulus/cpu/data.hpp: the dataset
// lives on the device as uint8; one kernel gathers the rows of a batch by
// index and converts them to T (x * scale, the CPU's formula).
#pragma once

#include <cstdint>
#include <vector>

#include <cumulus/core/error.hpp>
#include <cumulus/cpu/data.hpp>
#include <cumulus/cuda/runtime.cuh>

namespace cumulus::cuda {

// ---------------------------------------------------------------- kernels

// out[i, f] = T(data[indices[offset + i], f]) * scale; labels likewise when
// label_out is given. `offset` is read from the device when offset_ptr is
// set (a graph replays the same launch for every batch of an epoch). An index
// outside [0, total_rows) gives a row of NaN and label -1 (the loss counts
// it), never an out-of-bounds read.
template <typename T, typename L>
__global__ void gather_normalize_kernel(const std::uint8_t* __restrict__ data, std::int64_t total_rows,
                                        std::int64_t features, const std::int64_t* __restrict__ indices,
                                        const std::int64_t* offset_ptr, std::int64_t count, T scale,
                                        T* __restrict__ out, const std::uint8_t* __restrict__ labels,
                                        L* __restrict__ label_out) {
    const std::int64_t base = offset_ptr ? *offset_ptr : 0;
    const std::int64_t n = count * features;
    for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
         i += std::int64_t(gridDim.x) * blockDim.x) {
        const std::int64_t row = i / features, f = i - row * features;
        const std::int64_t src = indices[base + row];
        const bool ok = src >= 0 && src < total_rows;
        out[i] = ok ? static_cast<T>(data[src * features + f]) * scale : T(NAN);
        if (label_out && f == 0) label_out[row] = ok ? static_cast<L>(labels[src]) : L(-1);
    }
}

// Labels only (rows without features).
template <typename L>
__global__ void gather_labels_kernel(const std::uint8_t* __restrict__ labels, std::int64_t total_rows,
                                     const std::int64_t* __restrict__ indices, std::int64_t count,
                                     L* __restrict__ out) {
    for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < count;
         i += std::int64_t(gridDim.x) * blockDim.x) {
        const std::int64_t src = indices[i];
        out[i] = src >= 0 && src < total_rows ? static_cast<L>(labels[src]) : L(-1);
    }
}

// The counters of a training step on the device, advanced by the step itself
// (so a replayed graph sees new values): state[0] the offset of the next
// batch in the epoch's order, state[1] the dropout step (updates done so far),
// state[2] the number of the next optimizer update (state[1] + 1).
// (A template, as every kernel here: a plain __global__ function defined in a
// header would be defined again by each .cu file of a program.)
template <int = 0>
__global__ void advance_step_kernel(std::int64_t* state, std::int64_t rows) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        state[0] += rows;
        state[1] += 1;
        state[2] += 1;
    }
}

// ---------------------------------------------------------------- launchers

inline void advance_step(std::int64_t* state, std::int64_t rows, cudaStream_t stream = current_stream()) {
    advance_step_kernel<0><<<1, 32, 0, stream>>>(state, rows);
    CUMULUS_CUDA_CHECK_LAUNCH();
}

// Device indices, already on the device: x rows and (optionally) labels of
// indices[offset .. offset + count), offset from *offset_ptr when given.
// No host sync; bad indices give NaN rows and label -1 (see the kernel).
template <typename T, typename L>
void gather_batch(const std::uint8_t* data, const std::uint8_t* labels, std::int64_t total_rows,
                  std::int64_t features, const std::int64_t* device_indices, const std::int64_t* offset_ptr,
                  std::int64_t count, T scale, T* out, L* label_out, cudaStream_t stream = current_stream()) {
    CUMULUS_CHECK(features >= 1 && count >= 0 && total_rows >= 0, "gather_batch: bad sizes (", count, " rows of ",
                  features, " features from ", total_rows, ")");
    if (count == 0) return;
    gather_normalize_kernel<<<grid_for(count * features), kThreads, 0, stream>>>(
        data, total_rows, features, device_indices, offset_ptr, count, scale, out, labels, label_out);
    CUMULUS_CUDA_CHECK_LAUNCH();
}

// The twin of cpu::gather_normalize: `indices` live on the host, are checked
// there, and are copied to the device.
template <typename T>
void gather_normalize(const std::uint8_t* data, std::int64_t total_rows, std::int64_t features,
                      const std::int64_t* indices, std::int64_t count, T scale, T* out,
                      cudaStream_t stream = current_stream()) {
    CUMULUS_CHECK(features >= 0, "gather_normalize: negative features ", features);
    cpu::detail::check_gather_indices("gather_normalize", indices, count, total_rows);
    if (count == 0 || features == 0) return;
    Scratch<std::int64_t> dev(static_cast<std::size_t>(count), stream);
    CUMULUS_CUDA_CHECK(cudaMemcpyAsync(dev.get(), indices, std::size_t(count) * sizeof(std::int64_t),
                                       cudaMemcpyHostToDevice, stream));
    gather_batch<T, std::int32_t>(data, nullptr, total_rows, features, dev.get(), nullptr, count, scale, out, nullptr,
                                  stream);
    // CUDA says a copy from pageable memory "might" return before it has read
    // the host array; the caller may reuse it at once.
    CUMULUS_CUDA_CHECK(cudaStreamSynchronize(stream));
}

template <typename L>
void gather_labels(const std::uint8_t* labels, std::int64_t total_rows, const std::int64_t* indices,
                   std::int64_t count, L* out, cudaStream_t stream = current_stream()) {
    cpu::detail::check_gather_indices("gather_labels", indices, count, total_rows);
    if (count == 0) return;
    Scratch<std::int64_t> dev(static_cast<std::size_t>(count), stream);
    CUMULUS_CUDA_CHECK(cudaMemcpyAsync(dev.get(), indices, std::size_t(count) * sizeof(std::int64_t),
                                       cudaMemcpyHostToDevice, stream));
    gather_labels_kernel<<<grid_for(count), kThreads, 0, stream>>>(labels, total_rows, dev.get(), count, out);
    CUMULUS_CUDA_CHECK_LAUNCH();
    CUMULUS_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace cumulus::cuda
