// Batch assembly: gather rows of a uint8 dataset and normalise them.
#pragma once

#include <cumulus/core/tensor.hpp>
#include <cumulus/cpu/data.hpp>
#include <cumulus/ops/dispatch.hpp>
#if CUMULUS_WITH_CUDA && defined(__CUDACC__)
#include <cumulus/cuda/data.cuh>
#endif

namespace cumulus::ops {

// out (count, features...) = data[indices] * scale; data is (N, features...).
// `indices` lives on the host; the CUDA side copies it.
template <typename T>
void gather_normalize(const Tensor<std::uint8_t>& data, const std::int64_t* indices, std::int64_t count, T scale,
                      Tensor<T>& out) {
    const std::int64_t rows = data.rank() ? data.dim(0) : 0;
    const std::int64_t features = rows ? data.numel() / rows : 0;
    CUMULUS_CHECK(out.numel() == count * features, "gather_normalize: ", count, " rows of ", features,
                  " features into ", out.shape().str());
    check_same_device("gather_normalize", data, out);
    CUMULUS_DISPATCH("gather_normalize", data.device(),
                     cpu::gather_normalize(data.data(), rows, features, indices, count, scale, out.data()),
                     cuda::gather_normalize(data.data(), rows, features, indices, count, scale, out.data()));
}

template <typename L>
void gather_labels(const Tensor<std::uint8_t>& labels, const std::int64_t* indices, std::int64_t count,
                   Tensor<L>& out) {
    CUMULUS_CHECK(out.numel() == count, "gather_labels: ", count, " labels into ", out.shape().str());
    check_same_device("gather_labels", labels, out);
    CUMULUS_DISPATCH("gather_labels", labels.device(),
                     cpu::gather_labels(labels.data(), labels.numel(), indices, count, out.data()),
                     cuda::gather_labels(labels.data(), labels.numel(), indices, count, out.data()));
}

}  // namespace cumulus::ops
