// Shared helpers for the CPU op tests: random inputs and an element-by-element
// comparison that reports the first mismatch instead of thousands.
#pragma once

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <cumulus/core/random.hpp>

namespace cumulus::test {

// Sizes every elementwise test runs over: odd ones, and one above the
// parallel threshold so the threaded path runs too.
inline const std::vector<std::int64_t> kSizes = {0, 1, 7, 33, 1000 + 3, 70001};

template <typename T>
std::vector<T> uniform_vector(std::int64_t n, std::uint64_t seed, double lo = -1, double hi = 1) {
    cumulus::Philox rng(seed, 11);
    std::vector<T> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = static_cast<T>(lo + (hi - lo) * static_cast<double>(rng.uniform()));
    return v;
}

template <typename T>
std::vector<T> normal_vector(std::int64_t n, std::uint64_t seed, double stddev = 1) {
    cumulus::Philox rng(seed, 12);
    std::vector<T> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = static_cast<T>(stddev * static_cast<double>(rng.normal()));
    return v;
}

// Relative tolerance of an op that rounds a few times in T.
template <typename T>
constexpr double tol() {
    return sizeof(T) == 4 ? 2e-6 : 1e-14;
}

// "" when |got - want| <= atol + rtol * |want| everywhere, else the first miss.
template <typename G, typename W>
std::string first_mismatch(const G& got, const W& want, double rtol, double atol = 0) {
    if (got.size() != want.size()) return "sizes differ";
    std::int64_t bad = 0;
    std::ostringstream os;
    for (std::size_t i = 0; i < got.size(); ++i) {
        const double g = static_cast<double>(got[i]), w = static_cast<double>(want[i]);
        const bool ok = (std::isnan(g) && std::isnan(w)) || std::abs(g - w) <= atol + rtol * std::abs(w);
        if (!ok && bad++ == 0) os.precision(17), os << "index " << i << ": got " << g << ", want " << w;
    }
    if (bad) os << " (" << bad << " of " << got.size() << " differ)";
    return os.str();
}

}  // namespace cumulus::test

#define CUMULUS_CHECK_CLOSE(got, want, rtol, ...)                                       \
    do {                                                                                \
        const std::string cumulus_miss_ = ::cumulus::test::first_mismatch(got, want, rtol, ##__VA_ARGS__); \
        CHECK_MESSAGE(cumulus_miss_.empty(), cumulus_miss_);                            \
    } while (0)
