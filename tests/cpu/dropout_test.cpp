#include <cumulus/cpu/dropout.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "ops_test_util.hpp"

using cumulus::cpu::dropout_backward;
using cumulus::cpu::dropout_forward;
using cumulus::cpu::dropout_keep;
using cumulus::test::kSizes;
using cumulus::test::uniform_vector;

namespace {

// A fixed stream whose mask is pinned below; the step uses both 32-bit halves.
constexpr std::uint64_t kSeed = 0x0123456789abcdefull;
constexpr std::uint32_t kStream = 3;
constexpr std::uint64_t kStep = (std::uint64_t{1} << 33) + 5;

std::vector<float> ones_through_dropout(std::int64_t n, float rate, std::uint64_t seed, std::uint32_t stream,
                                        std::uint64_t step) {
    std::vector<float> x(static_cast<std::size_t>(n), 1.0f), y(x.size());
    dropout_forward(x.data(), y.data(), n, rate, seed, stream, step);
    return y;
}

double agreement(const std::vector<float>& a, const std::vector<float>& b) {
    std::int64_t same = 0;
    for (std::size_t i = 0; i < a.size(); ++i) same += (a[i] != 0) == (b[i] != 0);
    return double(same) / double(a.size());
}

}  // namespace

TEST_CASE("Philox4x32-10 reproduces the Random123 known-answer vectors") {
    // Salmon et al. (Random123, kat_vectors): philox4x32 with 10 rounds.
    auto r = cumulus::philox4x32_10({{0, 0, 0, 0}}, 0, 0);
    CHECK(r.v[0] == 0x6627e8d5u);
    CHECK(r.v[1] == 0xe169c58du);
    CHECK(r.v[2] == 0xbc57ac4cu);
    CHECK(r.v[3] == 0x9b00dbd8u);
    r = cumulus::philox4x32_10({{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu, 0xffffffffu);
    CHECK(r.v[0] == 0x408f276du);
    CHECK(r.v[1] == 0x41c83b0eu);
    CHECK(r.v[2] == 0xa20bc7c6u);
    CHECK(r.v[3] == 0x6d5451fdu);
    r = cumulus::philox4x32_10({{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u);
    CHECK(r.v[0] == 0xd16cfe09u);
    CHECK(r.v[1] == 0x94fdccebu);
    CHECK(r.v[2] == 0x5001e420u);
    CHECK(r.v[3] == 0x24126ea1u);
}

TEST_CASE("the dropout mask for a fixed (seed, stream, step) is pinned") {
    // Any change to the mask rule breaks these; a GPU kernel must give the same.
    CHECK(cumulus::philox_uniform_at(kSeed, kStream, kStep, 0) == 0x1.3fad3p-4f);
    CHECK(cumulus::philox_uniform_at(kSeed, kStream, kStep, 1) == 0x1.26e6ep-1f);
    CHECK(cumulus::philox_uniform_at(kSeed, kStream, kStep, 5) == 0x1.ade548p-2f);
    CHECK(cumulus::philox_uniform_at(kSeed, kStream, kStep, 1000003) == 0x1.915548p-2f);

    const std::string want = "01001000101100111110010011100101";
    std::string keep, forward;
    const auto y = ones_through_dropout(32, 0.5f, kSeed, kStream, kStep);
    for (std::int64_t i = 0; i < 32; ++i) {
        keep += dropout_keep(i, 0.5f, kSeed, kStream, kStep) ? '1' : '0';
        forward += y[static_cast<std::size_t>(i)] == 2.0f ? '1' : (y[static_cast<std::size_t>(i)] == 0.0f ? '0' : '?');
    }
    CHECK(keep == want);
    CHECK(forward == want);
}

TEST_CASE_TEMPLATE("dropout forward and backward apply the shared rule exactly", T, float, double) {
    for (float rate : {0.1f, 0.5f, 0.9f}) {
        const T scale = T(1) / (T(1) - static_cast<T>(rate));
        for (std::int64_t n : kSizes) {
            CAPTURE(rate);
            CAPTURE(n);
            const std::uint64_t step = 17 + std::uint64_t(n);
            const auto x = uniform_vector<T>(n, 31);
            const auto dy = uniform_vector<T>(n, 32);
            std::vector<T> want_y(x.size()), want_dx(x.size());
            for (std::int64_t i = 0; i < n; ++i) {
                const bool k = dropout_keep(i, rate, 42, 7, step);
                want_y[i] = k ? x[i] * scale : T(0);
                want_dx[i] = k ? dy[i] * scale : T(0);
            }
            std::vector<T> y(x.size(), T(-9)), dx(x.size(), T(-9));
            dropout_forward(x.data(), y.data(), n, rate, 42, 7, step);
            dropout_backward(dy.data(), dx.data(), n, rate, 42, 7, step);
            CHECK(y == want_y);
            CHECK(dx == want_dx);

            auto again = x;  // in place, and recomputed: the same bits
            dropout_forward(again.data(), again.data(), n, rate, 42, 7, step);
            CHECK(again == want_y);
            auto g = dy;
            dropout_backward(g.data(), g.data(), n, rate, 42, 7, step);
            CHECK(g == want_dx);
        }
    }
}

TEST_CASE("dropout keeps a fraction 1 - rate of the elements") {
    const std::int64_t n = 200003;
    for (float rate : {0.2f, 0.5f, 0.75f}) {
        CAPTURE(rate);
        const auto y = ones_through_dropout(n, rate, 1234, 0, 99);
        std::int64_t kept = 0;
        for (float v : y) kept += v != 0;
        const double p = 1.0 - rate, frac = double(kept) / double(n);
        // Six standard deviations of a binomial proportion.
        CHECK(std::abs(frac - p) <= 6 * std::sqrt(p * (1 - p) / double(n)));
    }
}

TEST_CASE("the dropout mask depends on seed, stream and both halves of step") {
    const std::int64_t n = 100000;
    const auto base = ones_through_dropout(n, 0.5f, kSeed, kStream, kStep);
    CHECK(base == ones_through_dropout(n, 0.5f, kSeed, kStream, kStep));
    // Independent masks at rate 0.5 agree on half the elements.
    const double sd = 0.5 / std::sqrt(double(n));
    CHECK(std::abs(agreement(base, ones_through_dropout(n, 0.5f, kSeed + 1, kStream, kStep)) - 0.5) < 6 * sd);
    CHECK(std::abs(agreement(base, ones_through_dropout(n, 0.5f, kSeed ^ (1ull << 40), kStream, kStep)) - 0.5) <
          6 * sd);
    CHECK(std::abs(agreement(base, ones_through_dropout(n, 0.5f, kSeed, kStream + 1, kStep)) - 0.5) < 6 * sd);
    CHECK(std::abs(agreement(base, ones_through_dropout(n, 0.5f, kSeed, kStream, kStep + 1)) - 0.5) < 6 * sd);
    CHECK(std::abs(agreement(base, ones_through_dropout(n, 0.5f, kSeed, kStream, kStep ^ (1ull << 33))) - 0.5) <
          6 * sd);
}

TEST_CASE("dropout rate 0 copies; rates outside [0, 1) throw") {
    const auto x = uniform_vector<float>(1003, 33);
    std::vector<float> y(x.size(), -9.0f);
    dropout_forward(x.data(), y.data(), 1003, 0.0f, 1, 2, 3);
    CHECK(y == x);
    dropout_backward(x.data(), y.data(), 1003, 0.0f, 1, 2, 3);
    CHECK(y == x);
    for (float bad : {-0.1f, 1.0f, 1.5f, std::numeric_limits<float>::quiet_NaN()}) {
        CAPTURE(bad);
        CHECK_THROWS_AS(dropout_forward(x.data(), y.data(), 1003, bad, 1, 2, 3), cumulus::Error);
        CHECK_THROWS_AS(dropout_backward(x.data(), y.data(), 1003, bad, 1, 2, 3), cumulus::Error);
    }
}

TEST_CASE_TEMPLATE("dropped elements are exactly 0, even for inf and NaN inputs", T, float, double) {
    const std::int64_t n = 1003;
    const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
    std::vector<T> x(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) x[i] = i % 3 == 0 ? inf : (i % 3 == 1 ? -inf : nan);
    std::vector<T> y(x.size());
    dropout_forward(x.data(), y.data(), n, 0.5f, 5, 6, 7);
    std::int64_t dropped = 0;
    for (std::int64_t i = 0; i < n; ++i) {
        if (dropout_keep(i, 0.5f, 5, 6, 7)) {
            CHECK((std::isnan(x[i]) ? std::isnan(y[i]) : y[i] == x[i]));
        } else {
            ++dropped;
            CHECK(y[i] == T(0));
        }
    }
    CHECK(dropped > 0);
}
