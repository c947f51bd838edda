#include <cumulus/cpu/data.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "ops_test_util.hpp"

namespace {

std::vector<std::uint8_t> random_bytes(std::int64_t n, std::uint64_t seed) {
    cumulus::Philox rng(seed);
    std::vector<std::uint8_t> v(static_cast<std::size_t>(n));
    for (auto& b : v) b = static_cast<std::uint8_t>(rng.below(256));
    return v;
}

// Random indices with repeats, always including the first and last row.
std::vector<std::int64_t> random_indices(std::int64_t count, std::int64_t total, std::uint64_t seed) {
    cumulus::Philox rng(seed);
    std::vector<std::int64_t> idx(static_cast<std::size_t>(count));
    for (auto& i : idx) i = rng.below(static_cast<std::uint32_t>(total));
    if (count > 0) idx.front() = total - 1;
    if (count > 1) idx.back() = 0;
    return idx;
}

}  // namespace

TEST_CASE_TEMPLATE("gather_normalize picks rows and scales pixels", T, float, double) {
    struct Case {
        std::int64_t total, features, count;
    };
    // The last case (128 x 784, an MNIST batch) takes the parallel path.
    for (Case k : {Case{1, 1, 1}, Case{7, 3, 7}, Case{33, 10, 50}, Case{1003, 17, 1}, Case{500, 784, 128},
                   Case{10, 5, 0}}) {
        CAPTURE(k.total);
        CAPTURE(k.features);
        CAPTURE(k.count);
        const auto data = random_bytes(k.total * k.features, 61);
        const auto idx = random_indices(k.count, k.total, 62);
        const T scale = T(1) / T(255);
        std::vector<T> out(static_cast<std::size_t>(k.count * k.features), T(-1));
        cumulus::cpu::gather_normalize(data.data(), k.total, k.features, idx.data(), k.count, scale, out.data());
        std::vector<double> want;
        for (std::int64_t i = 0; i < k.count; ++i)
            for (std::int64_t f = 0; f < k.features; ++f)
                want.push_back(double(data[idx[i] * k.features + f]) / 255.0);
        CUMULUS_CHECK_CLOSE(out, want, cumulus::test::tol<T>());
        for (std::size_t i = 0; i < out.size(); ++i) {
            // Exactly T(pixel) * scale, as the GPU twin must compute it.
            const auto px = data[idx[i / k.features] * k.features + i % k.features];
            if (out[i] != static_cast<T>(px) * scale) {
                FAIL_CHECK("element " << i << " is not T(pixel) * scale");
                break;
            }
        }
    }
}

TEST_CASE("gather_labels converts to every label type") {
    const std::int64_t total = 1003, count = 77;
    const auto labels = random_bytes(total, 63);
    const auto idx = random_indices(count, total, 64);
    std::vector<std::int32_t> l32(count);
    std::vector<std::int64_t> l64(count);
    std::vector<std::uint8_t> l8(count);
    std::vector<float> lf(count);
    cumulus::cpu::gather_labels(labels.data(), total, idx.data(), count, l32.data());
    cumulus::cpu::gather_labels(labels.data(), total, idx.data(), count, l64.data());
    cumulus::cpu::gather_labels(labels.data(), total, idx.data(), count, l8.data());
    cumulus::cpu::gather_labels(labels.data(), total, idx.data(), count, lf.data());
    for (std::int64_t i = 0; i < count; ++i) {
        const auto want = labels[idx[i]];
        CHECK(l32[i] == want);
        CHECK(l64[i] == want);
        CHECK(l8[i] == want);
        CHECK(lf[i] == float(want));
    }
}

TEST_CASE("gather rejects indices outside the dataset before writing") {
    const std::int64_t total = 10, features = 4;
    const auto data = random_bytes(total * features, 65);
    std::vector<float> out(3 * features, -1.0f);
    std::vector<std::int32_t> labels(3, -1);
    for (std::int64_t bad : {std::int64_t{-1}, total, std::int64_t{1} << 40}) {
        CAPTURE(bad);
        const std::vector<std::int64_t> idx = {0, bad, 1};
        CHECK_THROWS_WITH_AS(cumulus::cpu::gather_normalize(data.data(), total, features, idx.data(), 3, 1.0f,
                                                            out.data()),
                             doctest::Contains("at position 1"), cumulus::Error);
        CHECK_THROWS_AS(cumulus::cpu::gather_labels(data.data(), total, idx.data(), 3, labels.data()), cumulus::Error);
    }
    CHECK(out == std::vector<float>(out.size(), -1.0f));
    CHECK(labels == std::vector<std::int32_t>(3, -1));
}
