#include <cumulus/cpu/reduce.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "ops_test_util.hpp"

using cumulus::test::uniform_vector;

namespace {

// Narrow shapes take the row-chunk path, wide ones the column-block path;
// the last of each kind is above the parallel threshold.
const std::vector<std::pair<std::int64_t, std::int64_t>> kShapes = {
    {1, 1}, {7, 3}, {33, 10}, {1003, 17}, {5003, 10}, {0, 5}, {3, 64}, {65, 300}, {201, 257}, {2, 70001}};

template <typename T>
std::vector<std::int64_t> naive_argmax(const std::vector<T>& x, std::int64_t rows, std::int64_t cols) {
    std::vector<std::int64_t> out(static_cast<std::size_t>(rows));
    for (std::int64_t r = 0; r < rows; ++r) {
        std::int64_t best = 0;
        for (std::int64_t c = 0; c < cols; ++c) {
            const T v = x[r * cols + c], b = x[r * cols + best];
            if (std::isnan(v)) {
                best = c;
                break;
            }
            if (v > b) best = c;
        }
        out[static_cast<std::size_t>(r)] = best;
    }
    return out;
}

}  // namespace

TEST_CASE_TEMPLATE("bias_grad sums columns like a double reference", T, float, double) {
    for (const auto& shape : kShapes) {
        const std::int64_t rows = shape.first, cols = shape.second;
        CAPTURE(rows);
        CAPTURE(cols);
        const auto dy = uniform_vector<T>(rows * cols, 21);
        std::vector<double> want(static_cast<std::size_t>(cols), 0.0);
        for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t c = 0; c < cols; ++c) want[c] += double(dy[r * cols + c]);
        std::vector<T> db(static_cast<std::size_t>(cols), T(123));
        cumulus::cpu::bias_grad(dy.data(), db.data(), rows, cols);
        // The sum is kept in double and rounded to T once.
        const double atol = sizeof(T) == 4 ? 1e-6 : 1e-13 * double(rows + 1);
        CUMULUS_CHECK_CLOSE(db, want, sizeof(T) == 4 ? 1e-7 : 1e-14, atol);

        const auto prev = uniform_vector<T>(cols, 22);
        auto acc = prev;
        cumulus::cpu::bias_grad(dy.data(), acc.data(), rows, cols, /*accumulate=*/true);
        for (std::size_t c = 0; c < want.size(); ++c) want[c] += double(prev[c]);
        CUMULUS_CHECK_CLOSE(acc, want, sizeof(T) == 4 ? 1e-7 : 1e-14, atol);
    }
}

TEST_CASE("bias_grad keeps float sums accurate over many rows") {
    // 1e5 rows of 0.1f: a float accumulator would drift by ~1e-3 relative.
    const std::int64_t rows = 100000, cols = 2;
    std::vector<float> dy(static_cast<std::size_t>(rows * cols), 0.1f);
    std::vector<float> db(cols);
    cumulus::cpu::bias_grad(dy.data(), db.data(), rows, cols);
    const float want = static_cast<float>(double(0.1f) * double(rows));
    CHECK(db[0] == want);
    CHECK(db[1] == want);
}

TEST_CASE_TEMPLATE("argmax_rows: first maximum wins, NaN counts as the maximum", T, float, double) {
    for (const auto& shape : kShapes) {
        const std::int64_t rows = shape.first, cols = shape.second;
        if (rows == 0) continue;
        CAPTURE(rows);
        CAPTURE(cols);
        // Few distinct values, so ties are common.
        auto x = uniform_vector<T>(rows * cols, 23, 0, 4);
        for (auto& v : x) v = std::floor(v);
        std::vector<std::int32_t> out(static_cast<std::size_t>(rows), -1);
        cumulus::cpu::argmax_rows(x.data(), out.data(), rows, cols);
        const auto want = naive_argmax(x, rows, cols);
        CUMULUS_CHECK_CLOSE(out, want, 0.0);
    }
    const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
    const std::vector<T> x = {1, nan, 5, nan,  // NaN beats a later maximum
                              nan, 9, 9, 9,    // NaN first
                              2, 7, 7, -1,     // tie: first
                              -inf, -inf, -inf, -inf, 3, inf, 1, inf};
    std::vector<std::int32_t> out(5, -1);
    cumulus::cpu::argmax_rows(x.data(), out.data(), 5, 4);
    CHECK(out == std::vector<std::int32_t>{1, 0, 1, 0, 1});
}

TEST_CASE_TEMPLATE("count_correct agrees with argmax for every label type", T, float, double) {
    const std::int64_t rows = 4099, cols = 10;  // above the parallel threshold
    auto x = uniform_vector<T>(rows * cols, 24);
    std::vector<std::int32_t> am(rows);
    cumulus::cpu::argmax_rows(x.data(), am.data(), rows, cols);
    cumulus::Philox rng(25);
    std::vector<std::int32_t> l32(rows);
    std::int64_t want = 0;
    for (std::int64_t r = 0; r < rows; ++r) {
        // About half the labels are the argmax.
        l32[r] = rng.bernoulli(0.5f) ? am[r] : static_cast<std::int32_t>(rng.below(cols));
        want += l32[r] == am[r];
    }
    std::vector<std::int64_t> l64(l32.begin(), l32.end());
    std::vector<std::uint8_t> l8(l32.begin(), l32.end());
    CHECK(cumulus::cpu::count_correct(x.data(), l32.data(), rows, cols) == want);
    CHECK(cumulus::cpu::count_correct(x.data(), l64.data(), rows, cols) == want);
    CHECK(cumulus::cpu::count_correct(x.data(), l8.data(), rows, cols) == want);
    CHECK(cumulus::cpu::count_correct(x.data(), l8.data(), 7, cols) ==
          std::count_if(l32.begin(), l32.begin() + 7, [&, r = 0](std::int32_t l) mutable { return l == am[r++]; }));

    l32[77] = 10;
    CHECK_THROWS_WITH_AS(cumulus::cpu::count_correct(x.data(), l32.data(), rows, cols),
                         doctest::Contains("label 10 of row 77"), cumulus::Error);
    l64[5] = -1;
    CHECK_THROWS_AS(cumulus::cpu::count_correct(x.data(), l64.data(), rows, cols), cumulus::Error);
    l8[0] = 200;
    CHECK_THROWS_AS(cumulus::cpu::count_correct(x.data(), l8.data(), rows, cols), cumulus::Error);
}

TEST_CASE_TEMPLATE("sum matches a compensated reference", T, float, double) {
    for (std::int64_t n : {0, 1, 7, 33, 1003, 8192, 8193, 70001, 1000003}) {
        CAPTURE(n);
        const auto x = uniform_vector<T>(n, 26, -1, 3);
        long double want = 0;
        for (T v : x) want += static_cast<long double>(v);
        const double got = cumulus::cpu::sum(x.data(), n);
        CHECK(std::abs(got - double(want)) <= 1e-13 * double(n + 1));
    }
}
