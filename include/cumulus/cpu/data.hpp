// Batch assembly on the CPU: gather dataset rows by index, converting uint8
// pixels and labels to the training types.
#pragma once

#include <cstdint>

#include <cumulus/core/error.hpp>
#include <cumulus/core/parallel.hpp>

namespace cumulus::cpu {

namespace detail {

inline constexpr std::int64_t kGatherGrain = 32768;

inline void check_gather_indices(const char* op, const std::int64_t* indices, std::int64_t count,
                                 std::int64_t total_rows) {
    CUMULUS_CHECK(count >= 0 && total_rows >= 0, op, ": negative count ", count, " or total_rows ", total_rows);
    for (std::int64_t i = 0; i < count; ++i)
        CUMULUS_CHECK(indices[i] >= 0 && indices[i] < total_rows, op, ": index ", indices[i], " at position ", i,
                      " is out of range [0, ", total_rows, ")");
}

}  // namespace detail

// out[i, f] = T(data[indices[i], f]) * scale.
//   data: (total_rows, features) uint8, out: (count, features)
// Every index is checked before anything is written.
template <typename T>
void gather_normalize(const std::uint8_t* data, std::int64_t total_rows, std::int64_t features,
                      const std::int64_t* indices, std::int64_t count, T scale, T* out) {
    CUMULUS_CHECK(features >= 0, "gather_normalize: negative features ", features);
    detail::check_gather_indices("gather_normalize", indices, count, total_rows);
    parallel_for(
        count,
        [&](std::int64_t b, std::int64_t e, int) {
            for (std::int64_t i = b; i < e; ++i) {
                const std::uint8_t* src = data + indices[i] * features;
                T* dst = out + i * features;
                for (std::int64_t f = 0; f < features; ++f) dst[f] = static_cast<T>(src[f]) * scale;
            }
        },
        count * features >= detail::kGatherGrain ? 0 : 1);
}

// out[i] = L(labels[indices[i]]).   labels: (total_rows) uint8, out: (count)
template <typename L>
void gather_labels(const std::uint8_t* labels, std::int64_t total_rows, const std::int64_t* indices,
                   std::int64_t count, L* out) {
    detail::check_gather_indices("gather_labels", indices, count, total_rows);
    for (std::int64_t i = 0; i < count; ++i) out[i] = static_cast<L>(labels[indices[i]]);
}

}  // namespace cumulus::cpu
