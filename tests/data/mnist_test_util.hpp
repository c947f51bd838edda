// MNIST-shaped test data: a split of random pixels and labels.
#pragma once

#include <cstdint>
#include <random>

#include <cumulus/core/tensor.hpp>
#include <cumulus/data/mnist.hpp>

namespace test_util {

// n random 28x28 images (bytes 0..255) and labels 0..9, drawn from `rng`.
inline cumulus::data::MnistSplit random_mnist_split(std::int64_t n, std::mt19937& rng) {
    using cumulus::Shape;
    using cumulus::Tensor;
    cumulus::data::MnistSplit s;
    s.images = Tensor<std::uint8_t>::empty(Shape{n, 28, 28});
    s.labels = Tensor<std::uint8_t>::empty(Shape{n});
    for (std::int64_t i = 0; i < s.images.numel(); ++i) s.images.data()[i] = std::uint8_t(rng() % 256);
    for (std::int64_t i = 0; i < n; ++i) s.labels.data()[i] = std::uint8_t(rng() % 10);
    return s;
}

inline cumulus::data::MnistSplit random_mnist_split(std::int64_t n, std::uint32_t seed) {
    std::mt19937 rng(seed);
    return random_mnist_split(n, rng);
}

}  // namespace test_util
