// Helpers for the CUDA tests: plain mains (not doctest) that exit 77 with
// the reason on stdout when no CUDA device can be used, count failures, and
// move data between host vectors and device tensors.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <cumulus/core/random.hpp>
#include <cumulus/core/tensor.hpp>
#include <cumulus/cuda.hpp>

namespace cuda_test {

inline constexpr int kSkip = 77;
inline int failures = 0;
inline int checks = 0;

inline void expect(bool ok, const std::string& what) {
    ++checks;
    if (!ok) {
        ++failures;
        if (failures <= 50) std::printf("FAILED: %s\n", what.c_str());
    }
}

// Prints why and returns true when there is no device (the test then exits 77).
inline bool no_device() {
    const std::string why = cumulus::cuda::unavailable_reason();
    if (why.empty()) {
        const auto& p = cumulus::cuda::device_properties(0);
        std::printf("device 0: %s (sm_%d%d, %d SMs)\n", p.name, p.major, p.minor, p.multiProcessorCount);
        return false;
    }
    std::printf("SKIPPED: no CUDA device (%s)\n", why.c_str());
    return true;
}

inline int finish(const char* name) {
    std::printf("%s: %s (%d checks, %d failed)\n", failures ? "FAILED" : "PASSED", name, checks, failures);
    return failures ? 1 : 0;
}

template <typename T>
cumulus::Tensor<T> to_device(const cumulus::Shape& s, const std::vector<T>& v) {
    return cumulus::Tensor<T>::from_vector(s, v).to(cumulus::Device::cuda(0));
}

// Every byte 0xFF: a NaN for float and double, -1 for integers.
template <typename T>
void poison(cumulus::Tensor<T>& t) {
    CUMULUS_CUDA_CHECK(cudaMemsetAsync(t.data(), 0xFF, t.nbytes(), cumulus::cuda::current_stream()));
}

// The grid-size cases (hundreds of thousands of blocks) test tile indexing,
// not shared memory; tools/gpu-check sets CUMULUS_TEST_SKIP_LARGE=1 for
// racecheck, where they would take many minutes. Says so when it skips.
inline bool skip_large(const char* what) {
    const char* v = std::getenv("CUMULUS_TEST_SKIP_LARGE");
    if (v == nullptr || *v == '\0' || std::strcmp(v, "0") == 0) return false;
    std::printf("skipped (CUMULUS_TEST_SKIP_LARGE): %s\n", what);
    return true;
}

inline std::vector<float> random_floats(std::int64_t n, cumulus::Philox& rng, float lo = -1.0f, float hi = 1.0f) {
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = lo + (hi - lo) * rng.uniform();
    return v;
}

inline bool same_bits(float a, float b) {
    std::uint32_t x, y;
    std::memcpy(&x, &a, 4);
    std::memcpy(&y, &b, 4);
    return x == y;
}

// |a - b| <= atol + rtol * |b|, NaN only against NaN.
inline bool close(double a, double b, double rtol, double atol) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    return std::fabs(a - b) <= atol + rtol * std::fabs(b);
}

}  // namespace cuda_test
