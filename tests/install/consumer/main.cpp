// Uses an installed cumulus and checks a small result. The umbrella header
// proves every installed header compiles with only what the exported target
// brings; the core headers are named too, as a user including one would.
#include <cumulus/cumulus.hpp>

#include <cumulus/core/parallel.hpp>
#include <cumulus/core/random.hpp>
#include <cumulus/core/shape.hpp>
#include <cumulus/core/tensor.hpp>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <vector>

int main() {
    std::vector<float> values(24);
    std::iota(values.begin(), values.end(), 1.0f);  // 1 .. 24
    auto t = cumulus::Tensor<float>::from_vector(cumulus::Shape{4, 6}, values);
    auto rows = t.slice(1, 3).reshape({-1, 3});  // elements 7 .. 18 as (4, 3)

    std::atomic<std::int64_t> sum{0};
    cumulus::parallel_for(rows.numel(), [&](std::int64_t b, std::int64_t e, int) {
        std::int64_t s = 0;
        for (std::int64_t i = b; i < e; ++i) s += static_cast<std::int64_t>(rows[i]);
        sum += s;
    });

    cumulus::Philox rng(0, 0);
    std::uint32_t first = rng.next_u32();  // Random123 known answer for counter 0, key 0

    bool ok = rows.shape().str() == "(4, 3)" && sum == 150 && first == 0x6627e8d5u;
    std::printf("cumulus consumer: shape %s, sum %lld, philox %08x: %s\n", rows.shape().str().c_str(),
                static_cast<long long>(sum.load()), first, ok ? "ok" : "WRONG");
    return ok ? 0 : 1;
}
