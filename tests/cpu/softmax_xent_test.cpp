#include <cumulus/cpu/softmax_xent.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "ops_test_util.hpp"

using cumulus::cpu::XentResult;
using cumulus::test::uniform_vector;

namespace {

const std::vector<std::pair<std::int64_t, std::int64_t>> kShapes = {
    {1, 1}, {7, 3}, {33, 10}, {1003, 17}, {4099, 10}, {3, 1003}};

// Plain double softmax of one row, no shift (the inputs are small).
std::vector<double> ref_softmax_row(const double* x, std::int64_t cols) {
    std::vector<double> p(static_cast<std::size_t>(cols));
    double s = 0;
    for (std::int64_t c = 0; c < cols; ++c) s += p[c] = std::exp(x[c]);
    for (auto& v : p) v /= s;
    return p;
}

template <typename T>
std::vector<double> to_double(const std::vector<T>& v) {
    return std::vector<double>(v.begin(), v.end());
}

std::vector<std::int32_t> random_labels(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
    cumulus::Philox rng(seed);
    std::vector<std::int32_t> l(static_cast<std::size_t>(rows));
    for (auto& v : l) v = static_cast<std::int32_t>(rng.below(static_cast<std::uint32_t>(cols)));
    return l;
}

}  // namespace

TEST_CASE_TEMPLATE("softmax and log_softmax match a double reference, also in place", T, float, double) {
    for (const auto& shape : kShapes) {
        const std::int64_t rows = shape.first, cols = shape.second;
        CAPTURE(rows);
        CAPTURE(cols);
        const auto x = uniform_vector<T>(rows * cols, 41, -5, 5);
        const auto xd = to_double(x);
        std::vector<double> want_p, want_lp;
        for (std::int64_t r = 0; r < rows; ++r) {
            const auto p = ref_softmax_row(xd.data() + r * cols, cols);
            for (double v : p) {
                want_p.push_back(v);
                want_lp.push_back(std::log(v));
            }
        }
        std::vector<T> p(x.size()), lp(x.size());
        cumulus::cpu::softmax(x.data(), p.data(), rows, cols);
        cumulus::cpu::log_softmax(x.data(), lp.data(), rows, cols);
        CUMULUS_CHECK_CLOSE(p, want_p, 4 * cumulus::test::tol<T>());
        CUMULUS_CHECK_CLOSE(lp, want_lp, 4 * cumulus::test::tol<T>(), 4 * cumulus::test::tol<T>());

        auto ip = x;
        cumulus::cpu::softmax(ip.data(), ip.data(), rows, cols);
        CHECK(ip == p);
        auto ilp = x;
        cumulus::cpu::log_softmax(ilp.data(), ilp.data(), rows, cols);
        CHECK(ilp == lp);
    }
}

TEST_CASE_TEMPLATE("softmax_xent: loss, gradient and count against a double reference", T, float, double) {
    for (const auto& shape : kShapes) {
        const std::int64_t rows = shape.first, cols = shape.second;
        CAPTURE(rows);
        CAPTURE(cols);
        const auto x = uniform_vector<T>(rows * cols, 42, -4, 4);
        const auto xd = to_double(x);
        const auto labels = random_labels(rows, cols, 43);
        double want_loss = 0;
        std::int64_t want_correct = 0;
        std::vector<double> want_g;
        for (std::int64_t r = 0; r < rows; ++r) {
            const double* row = xd.data() + r * cols;
            const auto p = ref_softmax_row(row, cols);
            want_loss -= std::log(p[labels[r]]);
            std::int64_t am = 0;
            for (std::int64_t c = 1; c < cols; ++c)
                if (row[c] > row[am]) am = c;
            want_correct += am == labels[r];
            for (std::int64_t c = 0; c < cols; ++c) want_g.push_back((p[c] - (c == labels[r])) / double(rows));
        }
        std::vector<T> g(x.size(), T(-9));
        const XentResult res = cumulus::cpu::softmax_xent(x.data(), labels.data(), g.data(), rows, cols, rows);
        CHECK(res.correct == want_correct);
        CHECK(std::abs(res.loss_sum - want_loss) <= 4 * cumulus::test::tol<T>() * (want_loss + 1));
        CUMULUS_CHECK_CLOSE(g, want_g, 4 * cumulus::test::tol<T>(), 1e-3 * cumulus::test::tol<T>());

        const XentResult eval = cumulus::cpu::softmax_xent(x.data(), labels.data(), static_cast<T*>(nullptr), rows,
                                                           cols, 0);
        CHECK(eval.loss_sum == res.loss_sum);
        CHECK(eval.correct == res.correct);

        auto inplace = x;
        const XentResult ip =
            cumulus::cpu::softmax_xent(inplace.data(), labels.data(), inplace.data(), rows, cols, rows);
        CHECK(inplace == g);
        CHECK(ip.loss_sum == res.loss_sum);
        CHECK(ip.correct == res.correct);
    }
}

TEST_CASE("softmax_xent gradient of the mean loss matches central differences (double)") {
    const std::int64_t rows = 5, cols = 7;
    for (std::int64_t grad_rows : {rows, 3 * rows}) {
        CAPTURE(grad_rows);
        auto x = uniform_vector<double>(rows * cols, 44, -3, 3);
        const auto labels = random_labels(rows, cols, 45);
        // Probability targets (rows sum to 1) for the one-hot variant.
        auto t = uniform_vector<double>(rows * cols, 46, 0, 1);
        for (std::int64_t r = 0; r < rows; ++r) {
            double s = 0;
            for (std::int64_t c = 0; c < cols; ++c) s += t[r * cols + c];
            for (std::int64_t c = 0; c < cols; ++c) t[r * cols + c] /= s;
        }
        std::vector<double> g(x.size()), gt(x.size());
        cumulus::cpu::softmax_xent(x.data(), labels.data(), g.data(), rows, cols, grad_rows);
        cumulus::cpu::softmax_xent_onehot(x.data(), t.data(), gt.data(), rows, cols, grad_rows);
        auto mean_loss = [&](bool soft) {
            const XentResult r = soft ? cumulus::cpu::softmax_xent_onehot(x.data(), t.data(), static_cast<double*>(nullptr),
                                                                          rows, cols, 0)
                                      : cumulus::cpu::softmax_xent(x.data(), labels.data(),
                                                                   static_cast<double*>(nullptr), rows, cols, 0);
            return r.loss_sum / double(grad_rows);
        };
        const double h = 1e-5;
        std::vector<double> fd(x.size()), fdt(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) {
            const double x0 = x[i];
            x[i] = x0 + h;
            const double up = mean_loss(false), upt = mean_loss(true);
            x[i] = x0 - h;
            const double dn = mean_loss(false), dnt = mean_loss(true);
            x[i] = x0;
            fd[i] = (up - dn) / (2 * h);
            fdt[i] = (upt - dnt) / (2 * h);
        }
        CUMULUS_CHECK_CLOSE(g, fd, 1e-6, 1e-9);
        CUMULUS_CHECK_CLOSE(gt, fdt, 1e-6, 1e-9);
    }
}

TEST_CASE_TEMPLATE("integer labels and one-hot targets agree", T, float, double) {
    for (const auto& shape : kShapes) {
        const std::int64_t rows = shape.first, cols = shape.second;
        CAPTURE(rows);
        CAPTURE(cols);
        const auto x = uniform_vector<T>(rows * cols, 47, -4, 4);
        const auto l32 = random_labels(rows, cols, 48);
        const std::vector<std::int64_t> l64(l32.begin(), l32.end());
        std::vector<T> onehot(x.size(), T(0));
        for (std::int64_t r = 0; r < rows; ++r) onehot[r * cols + l32[r]] = T(1);
        std::vector<T> g32(x.size()), g64(x.size()), goh(x.size());
        const auto r32 = cumulus::cpu::softmax_xent(x.data(), l32.data(), g32.data(), rows, cols, rows);
        const auto r64 = cumulus::cpu::softmax_xent(x.data(), l64.data(), g64.data(), rows, cols, rows);
        const auto roh = cumulus::cpu::softmax_xent_onehot(x.data(), onehot.data(), goh.data(), rows, cols, rows);
        CHECK(r64.loss_sum == r32.loss_sum);
        CHECK(r64.correct == r32.correct);
        CHECK(g64 == g32);
        CHECK(roh.correct == r32.correct);
        CHECK(std::abs(roh.loss_sum - r32.loss_sum) <= 1e-12 * (r32.loss_sum + 1));
        CUMULUS_CHECK_CLOSE(goh, g32, 2 * cumulus::test::tol<T>(), 1e-3 * cumulus::test::tol<T>());
        if (cols <= 255) {
            const std::vector<std::uint8_t> l8(l32.begin(), l32.end());
            const auto r8 = cumulus::cpu::softmax_xent(x.data(), l8.data(), static_cast<T*>(nullptr), rows, cols, 0);
            CHECK(r8.loss_sum == r32.loss_sum);
            CHECK(r8.correct == r32.correct);
        }
    }
}

TEST_CASE_TEMPLATE("softmax and the loss stay finite for huge logits", T, float, double) {
    // Rows: a huge winner, a huge loser, a tie of huge values.
    const std::vector<T> x = {T(1e4), T(-1e4), T(0),  //
                              T(-1e4), T(-1e4), T(-1e4 + 1),  //
                              T(1e4), T(1e4), T(-1e4)};
    std::vector<T> p(9), lp(9), g(9);
    cumulus::cpu::softmax(x.data(), p.data(), 3, 3);
    cumulus::cpu::log_softmax(x.data(), lp.data(), 3, 3);
    for (std::size_t i = 0; i < 9; ++i) {
        CHECK(std::isfinite(double(p[i])));
        CHECK(std::isfinite(double(lp[i])));
    }
    const double e = std::exp(-1.0), z = 1 + 2 * e;  // row 1 relative to its max
    CUMULUS_CHECK_CLOSE(p, (std::vector<double>{1, 0, 0, e / z, e / z, 1 / z, 0.5, 0.5, 0}), 4 * cumulus::test::tol<T>());
    CUMULUS_CHECK_CLOSE(lp,
                        (std::vector<double>{0, -2e4, -1e4, -1 - std::log(z), -1 - std::log(z), -std::log(z),
                                             -std::log(2.0), -std::log(2.0), -2e4 - std::log(2.0)}),
                        4 * cumulus::test::tol<T>(), 4 * cumulus::test::tol<T>());
    const std::vector<std::int64_t> labels = {1, 2, 0};
    const auto r = cumulus::cpu::softmax_xent(x.data(), labels.data(), g.data(), 3, 3, 3);
    CHECK(r.loss_sum == doctest::Approx(2e4 + std::log(z) + std::log(2.0)).epsilon(1e-9));
    CHECK(r.correct == 2);  // row 1's max is column 2; row 2's tie goes to column 0
    for (T v : g) CHECK(std::isfinite(double(v)));
    CHECK(double(g[0]) == doctest::Approx(1.0 / 3));
    CHECK(double(g[1]) == doctest::Approx(-1.0 / 3));
}

TEST_CASE("softmax_xent rejects labels outside [0, cols) before writing") {
    const std::int64_t rows = 4, cols = 3;
    const auto x = uniform_vector<float>(rows * cols, 49);
    std::vector<float> g(x.size(), -9.0f);
    const std::vector<std::int32_t> hi = {0, 1, 3, 2};
    CHECK_THROWS_WITH_AS(cumulus::cpu::softmax_xent(x.data(), hi.data(), g.data(), rows, cols, rows),
                         doctest::Contains("label 3 of row 2"), cumulus::Error);
    CHECK(g == std::vector<float>(x.size(), -9.0f));
    const std::vector<std::int64_t> neg = {0, -1, 0, 0};
    CHECK_THROWS_WITH_AS(cumulus::cpu::softmax_xent(x.data(), neg.data(), g.data(), rows, cols, rows),
                         doctest::Contains("label -1 of row 1"), cumulus::Error);
    const std::vector<std::uint8_t> big = {0, 0, 0, 255};
    CHECK_THROWS_WITH_AS(cumulus::cpu::softmax_xent(x.data(), big.data(), g.data(), rows, cols, rows),
                         doctest::Contains("label 255 of row 3"), cumulus::Error);
    const std::vector<std::int32_t> ok = {0, 1, 2, 0};
    CHECK_THROWS_AS(cumulus::cpu::softmax_xent(x.data(), ok.data(), g.data(), rows, cols, 0), cumulus::Error);
}
