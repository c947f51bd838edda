// A sequential random generator over Philox4x32-10, with the draws the
// library needs: uniform, normal, Bernoulli, unbiased integers, shuffles.
#pragma once

#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include <cumulus/core/philox.hpp>
#include <cumulus/core/tensor.hpp>

namespace cumulus {

// The stream is selected by (seed, stream); the 64-bit block counter runs in
// counter words 0 and 1, the stream id in words 2 and 3.
class Philox {
public:
    explicit Philox(std::uint64_t seed = 0, std::uint64_t stream = 0) : seed_(seed), stream_(stream) {}

    std::uint32_t next_u32() {
        if (pos_ == 4) refill();
        return buf_.v[pos_++];
    }
    std::uint64_t next_u64() {
        std::uint64_t lo = next_u32();
        return lo | std::uint64_t(next_u32()) << 32;
    }
    // Uniform in [0, 1), 24 random bits.
    float uniform() { return uint_to_unit_float(next_u32()); }
    // Uniform in [lo, hi).
    float uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }
    // Standard normal (Box-Muller; the second value of each pair is kept).
    float normal() {
        if (has_spare_) {
            has_spare_ = false;
            return spare_;
        }
        // u1 in (0, 1] so that log(u1) is finite.
        double u1 = (double(next_u32() >> 8) + 1.0) / 16777216.0;
        double u2 = double(next_u32() >> 8) / 16777216.0;
        double r = std::sqrt(-2.0 * std::log(u1));
        constexpr double kTwoPi = 6.283185307179586;
        spare_ = float(r * std::sin(kTwoPi * u2));
        has_spare_ = true;
        return float(r * std::cos(kTwoPi * u2));
    }
    bool bernoulli(float p) { return uniform() < p; }
    // Uniform integer in [0, n), without modulo bias (Lemire's method).
    std::uint32_t below(std::uint32_t n) {
        CUMULUS_CHECK(n > 0, "Philox::below(0)");
        std::uint64_t m = std::uint64_t(next_u32()) * n;
        std::uint32_t low = std::uint32_t(m);
        if (low < n) {
            std::uint32_t threshold = std::uint32_t(-n) % n;
            while (low < threshold) {
                m = std::uint64_t(next_u32()) * n;
                low = std::uint32_t(m);
            }
        }
        return std::uint32_t(m >> 32);
    }

private:
    void refill() {
        PhiloxBlock c{{std::uint32_t(counter_), std::uint32_t(counter_ >> 32), std::uint32_t(stream_),
                       std::uint32_t(stream_ >> 32)}};
        buf_ = philox4x32_10(c, std::uint32_t(seed_), std::uint32_t(seed_ >> 32));
        ++counter_;
        pos_ = 0;
    }

    std::uint64_t seed_, stream_;
    std::uint64_t counter_ = 0;
    PhiloxBlock buf_{};
    int pos_ = 4;
    float spare_ = 0;
    bool has_spare_ = false;
};

// A uniformly random permutation of 0..n-1 (Fisher-Yates).
inline std::vector<std::int64_t> random_permutation(std::int64_t n, Philox& rng) {
    std::vector<std::int64_t> p(static_cast<std::size_t>(n));
    std::iota(p.begin(), p.end(), std::int64_t{0});
    for (std::int64_t i = n - 1; i > 0; --i) {
        auto j = static_cast<std::int64_t>(rng.below(static_cast<std::uint32_t>(i + 1)));
        std::swap(p[static_cast<std::size_t>(i)], p[static_cast<std::size_t>(j)]);
    }
    return p;
}

template <typename T>
void fill_uniform(Tensor<T>& t, T lo, T hi, Philox& rng) {
    CUMULUS_CHECK(t.device().is_cpu(), "fill_uniform: CPU tensors only");
    for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<T>(rng.uniform(float(lo), float(hi)));
}

template <typename T>
void fill_normal(Tensor<T>& t, T mean, T stddev, Philox& rng) {
    CUMULUS_CHECK(t.device().is_cpu(), "fill_normal: CPU tensors only");
    for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<T>(mean + stddev * rng.normal());
}

template <typename T>
void fill_bernoulli(Tensor<T>& t, float p, Philox& rng) {
    CUMULUS_CHECK(t.device().is_cpu(), "fill_bernoulli: CPU tensors only");
    for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = rng.bernoulli(p) ? T(1) : T(0);
}

}  // namespace cumulus
