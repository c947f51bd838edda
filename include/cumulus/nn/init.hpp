// Weight initialisers, with Keras' defaults.
#pragma once

#include <cmath>
#include <cstdint>

#include <cumulus/core/random.hpp>
#include <cumulus/core/tensor.hpp>

namespace cumulus::nn {

// Glorot (Xavier) uniform: U(-l, l) with l = sqrt(6 / (fan_in + fan_out)),
// the Keras default kernel initialiser.
template <typename T>
void glorot_uniform(Tensor<T>& w, std::int64_t fan_in, std::int64_t fan_out, Philox& rng) {
    const double limit = std::sqrt(6.0 / double(fan_in + fan_out));
    fill_uniform(w, T(-limit), T(limit), rng);
}

// The random stream for the initial weights of layer `index`: independent of
// the dropout streams (which use the layer index directly as the stream id).
inline Philox init_stream(std::uint64_t seed, int index) {
    return Philox(seed, (std::uint64_t{1} << 32) | std::uint64_t(index));
}

}  // namespace cumulus::nn
