#include <cumulus/cpu/elementwise.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "ops_test_util.hpp"

using cumulus::test::kSizes;
using cumulus::test::tol;
using cumulus::test::uniform_vector;

TEST_CASE_TEMPLATE("bias_add matches a double reference", T, float, double) {
    const std::vector<std::pair<std::int64_t, std::int64_t>> shapes = {{1, 1}, {7, 3}, {33, 10}, {1003, 17}, {257, 300}};
    for (const auto& shape : shapes) {
        const std::int64_t rows = shape.first, cols = shape.second;
        CAPTURE(rows);
        CAPTURE(cols);
        auto y = uniform_vector<T>(rows * cols, 1);
        const auto bias = uniform_vector<T>(cols, 2);
        std::vector<double> want(y.size());
        for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t c = 0; c < cols; ++c)
                want[r * cols + c] = double(y[r * cols + c]) + double(bias[c]);
        cumulus::cpu::bias_add(y.data(), bias.data(), rows, cols);
        CUMULUS_CHECK_CLOSE(y, want, tol<T>());
    }
}

TEST_CASE_TEMPLATE("relu forward and backward, separate and in place", T, float, double) {
    for (std::int64_t n : kSizes) {
        CAPTURE(n);
        const auto x = uniform_vector<T>(n, 3);
        const auto dy = uniform_vector<T>(n, 4);
        std::vector<T> want_y(x.size()), want_dx(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) {
            want_y[i] = x[i] > 0 ? x[i] : T(0);
            want_dx[i] = x[i] > 0 ? dy[i] : T(0);
        }
        std::vector<T> y(x.size(), T(-7));
        cumulus::cpu::relu_forward(x.data(), y.data(), n);
        CHECK(y == want_y);
        std::vector<T> dx(x.size(), T(-7));
        cumulus::cpu::relu_backward(y.data(), dy.data(), dx.data(), n);
        CHECK(dx == want_dx);

        auto inplace = x;
        cumulus::cpu::relu_forward(inplace.data(), inplace.data(), n);
        CHECK(inplace == want_y);
        auto g = dy;
        cumulus::cpu::relu_backward(y.data(), g.data(), g.data(), n);
        CHECK(g == want_dx);
    }
}

TEST_CASE("relu passes NaN through and treats the boundary as inactive") {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const std::vector<float> x = {nan, -0.0f, 0.0f, -1.0f, 2.0f};
    std::vector<float> y(x.size());
    cumulus::cpu::relu_forward(x.data(), y.data(), 5);
    CHECK(std::isnan(y[0]));
    CHECK(y[1] == 0.0f);
    CHECK(y[2] == 0.0f);
    CHECK(y[3] == 0.0f);
    CHECK(y[4] == 2.0f);
    const std::vector<float> dy = {1, 1, 1, 1, 1};
    std::vector<float> dx(x.size());
    cumulus::cpu::relu_backward(y.data(), dy.data(), dx.data(), 5);
    CHECK(dx == std::vector<float>{0, 0, 0, 0, 1});
}

TEST_CASE_TEMPLATE("scale and axpy match a double reference", T, float, double) {
    for (std::int64_t n : kSizes) {
        CAPTURE(n);
        const auto x = uniform_vector<T>(n, 5);
        const auto y0 = uniform_vector<T>(n, 6);
        const T alpha = T(-1.75);

        auto s = x;
        std::vector<double> want_s(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) want_s[i] = double(alpha) * double(x[i]);
        cumulus::cpu::scale(s.data(), alpha, n);
        CUMULUS_CHECK_CLOSE(s, want_s, tol<T>());

        auto y = y0;
        std::vector<double> want_y(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) want_y[i] = double(y0[i]) + double(alpha) * double(x[i]);
        cumulus::cpu::axpy(alpha, x.data(), y.data(), n);
        // Cancellation in y + alpha * x: compare with an absolute floor.
        CUMULUS_CHECK_CLOSE(y, want_y, tol<T>(), 4 * tol<T>());

        auto z = x;  // x aliasing y: z += alpha * z
        cumulus::cpu::axpy(alpha, z.data(), z.data(), n);
        std::vector<double> want_z(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) want_z[i] = double(x[i]) * (1.0 + double(alpha));
        CUMULUS_CHECK_CLOSE(z, want_z, 4 * tol<T>(), 4 * tol<T>());
    }
}

TEST_CASE("elementwise ops reject negative sizes") {
    float v = 0;
    CHECK_THROWS_AS(cumulus::cpu::relu_forward(&v, &v, -1), cumulus::Error);
    CHECK_THROWS_AS(cumulus::cpu::bias_add(&v, &v, 2, -1), cumulus::Error);
}
