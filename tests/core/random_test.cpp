// Philox4x32-10 against the Random123 known-answer vectors, and the
// statistics of the draws built on it. Seeds are fixed, so nothing here can
// flake; the bounds are still many standard errors wide so that a correct
// change of the draw algorithm does not trip them.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <map>
#include <numeric>
#include <vector>

#include <cumulus/core/error.hpp>
#include <cumulus/core/philox.hpp>
#include <cumulus/core/random.hpp>
#include <cumulus/core/tensor.hpp>

using cumulus::Philox;
using cumulus::PhiloxBlock;

namespace {

std::array<std::uint32_t, 4> block(PhiloxBlock b) { return {b.v[0], b.v[1], b.v[2], b.v[3]}; }

std::array<std::uint32_t, 4> philox(std::array<std::uint32_t, 4> ctr, std::uint32_t k0, std::uint32_t k1) {
    return block(cumulus::philox4x32_10(PhiloxBlock{{ctr[0], ctr[1], ctr[2], ctr[3]}}, k0, k1));
}

std::vector<std::uint32_t> draw_u32(Philox rng, int n) {
    std::vector<std::uint32_t> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = rng.next_u32();
    return v;
}

struct Moments {
    double mean = 0, var = 0;
};

template <typename F>
Moments moments(int n, F&& draw) {
    double sum = 0, sum2 = 0;
    for (int i = 0; i < n; ++i) {
        double x = draw();
        sum += x;
        sum2 += x * x;
    }
    Moments m;
    m.mean = sum / n;
    m.var = sum2 / n - m.mean * m.mean;
    return m;
}

}  // namespace

TEST_CASE("philox4x32_10: Random123 known-answer vectors") {
    using A = std::array<std::uint32_t, 4>;
    CHECK(philox({0, 0, 0, 0}, 0, 0) == A{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
    CHECK(philox({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, 0xffffffff, 0xffffffff) ==
          A{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
    CHECK(philox({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, 0xa4093822, 0x299f31d0) ==
          A{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

TEST_CASE("uint_to_unit_float maps to [0, 1) exactly") {
    CHECK(cumulus::uint_to_unit_float(0) == 0.0f);
    CHECK(cumulus::uint_to_unit_float(0xffffffffu) == 1.0f - std::ldexp(1.0f, -24));
    CHECK(cumulus::uint_to_unit_float(0xffffffffu) < 1.0f);
    CHECK(cumulus::uint_to_unit_float(0x80000000u) == 0.5f);
    CHECK(cumulus::uint_to_unit_float(0x000000ffu) == 0.0f);  // only the top 24 bits count
}

TEST_CASE("philox_uniform_at: element i is word i % 4 of block {i / 4, stream, step}") {
    const std::uint64_t seed = 0x0123456789abcdefull;
    const std::uint32_t stream = 7;
    const std::uint64_t step = 0x100000003ull;
    for (std::uint64_t i : {0ull, 1ull, 2ull, 3ull, 4ull, 5ull, 1001ull, (1ull << 33) + 2}) {
        CAPTURE(i);
        auto b = philox({std::uint32_t(i >> 2), stream, 3u, 1u}, 0x89abcdefu, 0x01234567u);
        CHECK(cumulus::philox_uniform_at(seed, stream, step, i) == cumulus::uint_to_unit_float(b[i & 3]));
    }
    // Each input changes the number.
    float base = cumulus::philox_uniform_at(1, 0, 0, 5);
    CHECK(base != cumulus::philox_uniform_at(2, 0, 0, 5));
    CHECK(base != cumulus::philox_uniform_at(1, 1, 0, 5));
    CHECK(base != cumulus::philox_uniform_at(1, 0, 1, 5));
    CHECK(base != cumulus::philox_uniform_at(1, 0, 0, 6));
}

TEST_CASE("Philox: the stream is the counter sequence under the seed") {
    // Seed 0, stream 0 starts with the first known-answer block.
    auto first = draw_u32(Philox(0, 0), 8);
    CHECK(first[0] == 0x6627e8d5);
    CHECK(first[1] == 0xe169c58d);
    CHECK(first[2] == 0xbc57ac4c);
    CHECK(first[3] == 0x9b00dbd8);
    auto second = philox({1, 0, 0, 0}, 0, 0);
    CHECK(std::equal(second.begin(), second.end(), first.begin() + 4));

    // Counter in words 0-1, stream in words 2-3, seed as the key.
    const std::uint64_t seed = 0xdeadbeef00c0ffeeull, stream = 0x500000002ull;
    Philox rng(seed, stream);
    for (std::uint32_t c = 0; c < 3; ++c) {
        auto b = philox({c, 0, 2, 5}, 0x00c0ffeeu, 0xdeadbeefu);
        for (int w = 0; w < 4; ++w) CHECK(rng.next_u32() == b[w]);
    }

    Philox r64(5, 1), r32(5, 1);
    for (int i = 0; i < 10; ++i) {
        std::uint64_t lo = r32.next_u32();
        std::uint64_t hi = r32.next_u32();
        CHECK(r64.next_u64() == (lo | hi << 32));
    }
}

TEST_CASE("Philox: same seed repeats, other seeds and streams differ") {
    auto a = draw_u32(Philox(42, 0), 64);
    CHECK(a == draw_u32(Philox(42, 0), 64));
    CHECK(a != draw_u32(Philox(43, 0), 64));
    CHECK(a != draw_u32(Philox(42, 1), 64));
    CHECK(a != draw_u32(Philox(42ull << 32, 0), 64));  // the seed's high word counts
    CHECK(a != draw_u32(Philox(42, 1ull << 32), 64));  // and the stream's
    CHECK(draw_u32(Philox(1, 2), 64) != draw_u32(Philox(2, 1), 64));

    // Streams are unrelated, not shifted copies of each other.
    auto b = draw_u32(Philox(42, 1), 64);
    int common = 0;
    for (auto x : a) common += std::count(b.begin(), b.end(), x) > 0;
    CHECK(common == 0);

    Philox x(9, 0), y(9, 0);
    for (int i = 0; i < 1000; ++i) {
        REQUIRE(x.uniform() == y.uniform());
        REQUIRE(x.normal() == y.normal());
    }
}

TEST_CASE("Philox::uniform: in [0, 1), mean 1/2, variance 1/12") {
    Philox rng(2024, 3);
    const int n = 200000;
    float lo = 1, hi = 0;
    bool in_range = true;
    auto m = moments(n, [&] {
        float u = rng.uniform();
        in_range = in_range && u >= 0.0f && u < 1.0f;
        lo = std::min(lo, u);
        hi = std::max(hi, u);
        return double(u);
    });
    CHECK(in_range);
    // Standard errors: mean 0.00065, variance 0.00017.
    CHECK(std::abs(m.mean - 0.5) < 0.01);
    CHECK(std::abs(m.var - 1.0 / 12) < 0.004);
    CHECK(lo < 0.001f);
    CHECK(hi > 0.999f);

    // Ten equal bins get about n / 10 each (binomial sd 134).
    std::array<int, 10> bins{};
    for (int i = 0; i < n; ++i) ++bins[static_cast<std::size_t>(rng.uniform() * 10)];
    for (int c : bins) CHECK(std::abs(c - n / 10) < 1500);

    bool ranged = true;
    for (int i = 0; i < 10000; ++i) {
        float u = rng.uniform(-3.0f, 5.0f);
        ranged = ranged && u >= -3.0f && u < 5.0f;
    }
    CHECK(ranged);
}

TEST_CASE("Philox::normal: mean 0, variance 1, about 68% within one sigma") {
    Philox rng(7, 0);
    const int n = 200000;
    int within = 0;
    bool finite = true;
    auto m = moments(n, [&] {
        float z = rng.normal();
        finite = finite && std::isfinite(z);
        within += std::abs(z) < 1.0f;
        return double(z);
    });
    CHECK(finite);
    // Standard errors: mean 0.0022, variance 0.0032, fraction 0.001.
    CHECK(std::abs(m.mean) < 0.03);
    CHECK(std::abs(m.var - 1.0) < 0.04);
    CHECK(std::abs(double(within) / n - 0.682689) < 0.012);
}

TEST_CASE("Philox::bernoulli: frequency follows p") {
    Philox rng(11, 0);
    const int n = 100000;
    for (float p : {0.1f, 0.3f, 0.5f, 0.9f}) {
        CAPTURE(p);
        int ones = 0;
        for (int i = 0; i < n; ++i) ones += rng.bernoulli(p);
        CHECK(std::abs(double(ones) / n - p) < 0.015);  // sd at most 0.0016
    }
    bool never = true, always = true;
    for (int i = 0; i < 10000; ++i) {
        never = never && !rng.bernoulli(0.0f);
        always = always && rng.bernoulli(1.0f);
    }
    CHECK(never);
    CHECK(always);
}

TEST_CASE("Philox::below: in range and unbiased") {
    Philox rng(3, 0);
    CHECK_THROWS_AS(rng.below(0), cumulus::Error);
    for (int i = 0; i < 100; ++i) REQUIRE(rng.below(1) == 0);

    for (std::uint32_t n : {2u, 3u, 7u, 10u, 1000u, 0x80000001u, 0xffffffffu}) {
        CAPTURE(n);
        bool ok = true;
        for (int i = 0; i < 5000; ++i) ok = ok && rng.below(n) < n;
        CHECK(ok);
    }

    // Ten values: each about n / 10 (sd 95).
    const int n = 100000;
    std::array<int, 10> counts{};
    for (int i = 0; i < n; ++i) ++counts[rng.below(10)];
    for (int c : counts) CHECK(std::abs(c - n / 10) < 1000);

    // For n = 3 * 2^30 the multiply-shift without rejection maps two 32-bit
    // inputs to every k with k % 3 == 0 and one to the others, so P(k % 3 == 0)
    // would be 1/2; the unbiased draw gives 1/3.
    int zero_mod3 = 0;
    const int m = 30000;
    for (int i = 0; i < m; ++i) zero_mod3 += rng.below(0xC0000000u) % 3 == 0;
    CHECK(std::abs(double(zero_mod3) / m - 1.0 / 3) < 0.03);
}

TEST_CASE("random_permutation: a permutation, deterministic, uniform") {
    for (std::int64_t n : {0, 1, 2, 5, 1000}) {
        CAPTURE(n);
        Philox rng(5, 0);
        auto p = cumulus::random_permutation(n, rng);
        REQUIRE(static_cast<std::int64_t>(p.size()) == n);
        auto sorted = p;
        std::sort(sorted.begin(), sorted.end());
        std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
        std::iota(ids.begin(), ids.end(), 0);
        CHECK(sorted == ids);
    }

    Philox a(5, 0), b(5, 0), c(6, 0);
    auto pa = cumulus::random_permutation(1000, a);
    CHECK(pa == cumulus::random_permutation(1000, b));
    CHECK(pa != cumulus::random_permutation(1000, c));
    CHECK(pa != cumulus::random_permutation(1000, a));  // the generator moved on
    std::vector<std::int64_t> identity(1000);
    std::iota(identity.begin(), identity.end(), 0);
    CHECK(pa != identity);

    // All 6 orders of 3 elements about equally often (sd 91 of 6000).
    Philox rng(8, 0);
    std::map<std::vector<std::int64_t>, int> seen;
    for (int i = 0; i < 36000; ++i) ++seen[cumulus::random_permutation(3, rng)];
    CHECK(seen.size() == 6);
    for (const auto& [perm, count] : seen) CHECK(std::abs(count - 6000) < 600);
}

TEST_CASE("fill_uniform, fill_normal, fill_bernoulli on tensors") {
    Philox rng(1, 0);
    auto t = cumulus::Tensor<float>::zeros({100, 50});
    cumulus::fill_uniform(t, -2.0f, 2.0f, rng);
    auto v = t.to_vector();
    CHECK(std::all_of(v.begin(), v.end(), [](float x) { return x >= -2.0f && x < 2.0f; }));
    double mean = std::accumulate(v.begin(), v.end(), 0.0) / v.size();
    CHECK(std::abs(mean) < 0.1);  // sd 0.016

    cumulus::fill_normal(t, 3.0f, 0.5f, rng);
    v = t.to_vector();
    mean = std::accumulate(v.begin(), v.end(), 0.0) / v.size();
    CHECK(std::abs(mean - 3.0) < 0.05);  // sd 0.007

    auto mask = cumulus::Tensor<std::uint8_t>::zeros({1000});
    cumulus::fill_bernoulli(mask, 0.25f, rng);
    auto mv = mask.to_vector();
    CHECK(std::all_of(mv.begin(), mv.end(), [](std::uint8_t x) { return x == 0 || x == 1; }));
    int ones = std::accumulate(mv.begin(), mv.end(), 0);
    CHECK(std::abs(ones - 250) < 80);  // sd 14

    // The same seed fills the same values.
    Philox r1(77, 0), r2(77, 0);
    auto a = cumulus::Tensor<float>::empty({33});
    auto b = cumulus::Tensor<float>::empty({33});
    cumulus::fill_normal(a, 0.0f, 1.0f, r1);
    cumulus::fill_normal(b, 0.0f, 1.0f, r2);
    CHECK(a.to_vector() == b.to_vector());
}
