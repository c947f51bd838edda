// A small, separable classification problem stored as uint8 images.
#pragma once

#include <cumulus/core/random.hpp>
#include <cumulus/data/dataset.hpp>

namespace synthetic {

// Class c lights up features [c*width, (c+1)*width) on top of faint noise.
inline cumulus::data::Dataset separable(std::int64_t n, int classes, std::int64_t width, std::uint64_t seed) {
    using namespace cumulus;
    const std::int64_t features = classes * width;
    auto x = Tensor<std::uint8_t>::empty(Shape{n, features});
    auto y = Tensor<std::uint8_t>::empty(Shape{n});
    Philox rng(seed, 5);
    for (std::int64_t i = 0; i < n; ++i) {
        const int c = static_cast<int>(rng.below(static_cast<std::uint32_t>(classes)));
        y[i] = static_cast<std::uint8_t>(c);
        for (std::int64_t j = 0; j < features; ++j) {
            const bool on = j / width == c;
            x[i * features + j] = static_cast<std::uint8_t>(on ? 150 + rng.below(100) : rng.below(60));
        }
    }
    return data::Dataset::from_uint8(x, y);
}

}  // namespace synthetic
