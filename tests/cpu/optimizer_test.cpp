#include <cumulus/cpu/optimizer.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "ops_test_util.hpp"

using cumulus::test::kSizes;
using cumulus::test::uniform_vector;

namespace {

constexpr int kSteps = 5;

// Weights and velocities are O(1) and may cancel to near 0, so the bound has
// an absolute part of a few roundings of an O(1) number in T.
template <typename T>
constexpr double rtol() {
    return sizeof(T) == 4 ? 1e-5 : 1e-12;
}
template <typename T>
constexpr double atol() {
    return sizeof(T) == 4 ? 1e-6 : 1e-14;
}

}  // namespace

TEST_CASE_TEMPLATE("rmsprop_update over several steps matches a double reference", T, float, double) {
    const float lr = 0.01f, rho = 0.9f, eps = 1e-7f;
    for (std::int64_t n : kSizes) {
        CAPTURE(n);
        auto w = uniform_vector<T>(n, 51);
        std::vector<T> ms(w.size(), T(0));
        std::vector<double> rw(w.begin(), w.end()), rms(w.size(), 0.0);
        for (int s = 0; s < kSteps; ++s) {
            const auto g = uniform_vector<T>(n, 52 + s);
            cumulus::cpu::rmsprop_update(w.data(), g.data(), ms.data(), n, lr, rho, eps);
            for (std::size_t i = 0; i < rw.size(); ++i) {
                const double gi = g[i];
                rms[i] = double(rho) * rms[i] + (1 - double(rho)) * gi * gi;
                rw[i] -= double(lr) * gi / (std::sqrt(rms[i]) + double(eps));
            }
        }
        CUMULUS_CHECK_CLOSE(ms, rms, rtol<T>(), 1e-12);
        CUMULUS_CHECK_CLOSE(w, rw, rtol<T>(), atol<T>());
    }
}

TEST_CASE_TEMPLATE("rmsprop_update: one Keras step from w = 1, g = 0.5", T, float, double) {
    T w = 1, g = T(0.5), ms = 0;
    cumulus::cpu::rmsprop_update(&w, &g, &ms, 1, 0.001f, 0.9f, 1e-7f);
    // Keras: ms = 0.1 * 0.25; w -= lr * g / (sqrt(ms) + eps).
    const double rho = 0.9f, want_ms = (1 - rho) * 0.25;
    const double want = 1 - double(0.001f) * 0.5 / (std::sqrt(want_ms) + double(1e-7f));
    CHECK(double(ms) == doctest::Approx(want_ms).epsilon(1e-7));
    CHECK(double(w) == doctest::Approx(want).epsilon(sizeof(T) == 4 ? 1e-7 : 1e-15));
    // The increment is 0.0031623 (lr * sign(g) / sqrt(1 - rho)).
    CHECK(1 - double(w) == doctest::Approx(0.001 / std::sqrt(0.1)).epsilon(1e-4));
}

TEST_CASE_TEMPLATE("rmsprop_update adds eps outside the square root, as Keras' RMSprop", T, float, double) {
    // With ms far below eps the placement decides the step: sqrt(ms) + eps
    // gives 3.15e-3, sqrt(ms + eps) would give 3.15e-4.
    T w = 0, g = T(1e-4), ms = 0;
    cumulus::cpu::rmsprop_update(&w, &g, &ms, 1, 0.001f, 0.9f, 1e-7f);
    const double want_ms = (1 - double(0.9f)) * double(g) * double(g);
    CHECK(double(w) == doctest::Approx(-double(0.001f) * double(g) / (std::sqrt(want_ms) + double(1e-7f))).epsilon(1e-6));
    CHECK(double(w) == doctest::Approx(-0.001 * 1e-4 / (std::sqrt(0.1) * 1e-4 + 1e-7)).epsilon(1e-4));
    CHECK(double(w) < -3e-3);
}

TEST_CASE_TEMPLATE("sgd_update: plain, momentum and nesterov against a double reference", T, float, double) {
    const float lr = 0.05f;
    for (float momentum : {0.0f, 0.9f}) {
        for (bool nesterov : {false, true}) {
            for (std::int64_t n : kSizes) {
                CAPTURE(momentum);
                CAPTURE(nesterov);
                CAPTURE(n);
                auto w = uniform_vector<T>(n, 53);
                std::vector<T> v(w.size(), T(0));
                std::vector<double> rw(w.begin(), w.end()), rv(w.size(), 0.0);
                for (int s = 0; s < kSteps; ++s) {
                    const auto g = uniform_vector<T>(n, 54 + s);
                    cumulus::cpu::sgd_update(w.data(), g.data(), momentum == 0 ? nullptr : v.data(), n, lr, momentum,
                                             nesterov);
                    for (std::size_t i = 0; i < rw.size(); ++i) {
                        const double gi = g[i], m = momentum;
                        if (momentum == 0) {
                            rw[i] -= double(lr) * gi;
                            continue;
                        }
                        rv[i] = m * rv[i] - double(lr) * gi;
                        rw[i] += nesterov ? m * rv[i] - double(lr) * gi : rv[i];
                    }
                }
                CUMULUS_CHECK_CLOSE(v, rv, rtol<T>(), atol<T>());
                CUMULUS_CHECK_CLOSE(w, rw, rtol<T>(), atol<T>());
            }
        }
    }
}

TEST_CASE_TEMPLATE("sgd_update: two hand-computed Keras steps", T, float, double) {
    // w = 1, g = 0.5 twice, lr 0.1, momentum 0.9.
    T w = 1, v = 0;
    const T g = T(0.5);
    cumulus::cpu::sgd_update(&w, &g, &v, 1, 0.1f, 0.9f, false);
    CHECK(double(w) == doctest::Approx(0.95));
    cumulus::cpu::sgd_update(&w, &g, &v, 1, 0.1f, 0.9f, false);
    CHECK(double(v) == doctest::Approx(-0.095));
    CHECK(double(w) == doctest::Approx(0.855));

    w = 1, v = 0;
    cumulus::cpu::sgd_update(&w, &g, &v, 1, 0.1f, 0.9f, true);
    CHECK(double(w) == doctest::Approx(0.905));
    cumulus::cpu::sgd_update(&w, &g, &v, 1, 0.1f, 0.9f, true);
    CHECK(double(w) == doctest::Approx(0.7695));

    w = 1;
    cumulus::cpu::sgd_update(&w, &g, static_cast<T*>(nullptr), 1, 0.1f, 0.0f, false);
    CHECK(double(w) == doctest::Approx(0.95));
    CHECK_THROWS_AS(cumulus::cpu::sgd_update(&w, &g, static_cast<T*>(nullptr), 1, 0.1f, 0.9f, false), cumulus::Error);
}

TEST_CASE_TEMPLATE("adam_update over several steps matches a double reference", T, float, double) {
    const float lr = 0.01f, b1 = 0.9f, b2 = 0.999f, eps = 1e-7f;
    for (std::int64_t n : kSizes) {
        CAPTURE(n);
        auto w = uniform_vector<T>(n, 55);
        std::vector<T> m(w.size(), T(0)), v(w.size(), T(0));
        std::vector<double> rw(w.begin(), w.end()), rm(w.size(), 0.0), rv(w.size(), 0.0);
        for (int s = 1; s <= kSteps; ++s) {
            const auto g = uniform_vector<T>(n, 56 + s);
            cumulus::cpu::adam_update(w.data(), g.data(), m.data(), v.data(), n, lr, b1, b2, eps, s);
            const double alpha = double(lr) * std::sqrt(1 - std::pow(double(b2), s)) / (1 - std::pow(double(b1), s));
            for (std::size_t i = 0; i < rw.size(); ++i) {
                const double gi = g[i];
                rm[i] = double(b1) * rm[i] + (1 - double(b1)) * gi;
                rv[i] = double(b2) * rv[i] + (1 - double(b2)) * gi * gi;
                rw[i] -= alpha * rm[i] / (std::sqrt(rv[i]) + double(eps));
            }
        }
        CUMULUS_CHECK_CLOSE(m, rm, rtol<T>(), atol<T>());
        CUMULUS_CHECK_CLOSE(v, rv, rtol<T>(), 1e-12);
        CUMULUS_CHECK_CLOSE(w, rw, rtol<T>(), atol<T>());
    }
}

TEST_CASE_TEMPLATE("adam_update: the first step moves each weight by about lr * sign(g)", T, float, double) {
    const std::int64_t n = 1003;
    const float lr = 0.001f;
    const auto w0 = uniform_vector<T>(n, 58);
    const auto g = uniform_vector<T>(n, 59, -10, 10);
    auto w = w0;
    std::vector<T> m(w.size(), T(0)), v(w.size(), T(0));
    cumulus::cpu::adam_update(w.data(), g.data(), m.data(), v.data(), n, lr, 0.9f, 0.999f, 1e-7f, 1);
    for (std::int64_t i = 0; i < n; ++i) {
        if (std::abs(double(g[i])) < 0.1) continue;
        const double step = double(w0[i]) - double(w[i]);
        // |step| = lr * |g| / (|g| + eps / sqrt(1 - b2)): within 3.2e-5 relative
        // of lr for |g| >= 0.1, plus float rounding of w (ulp 1.2e-7 near 1).
        CHECK(std::abs(step - double(lr) * (g[i] > 0 ? 1 : -1)) <= double(lr) * 1e-4 + (sizeof(T) == 4 ? 2e-7 : 0));
    }

    // Hand-computed Keras step: w = 1, g = 0.5, defaults.
    T w1 = 1, g1 = T(0.5), m1 = 0, v1 = 0;
    cumulus::cpu::adam_update(&w1, &g1, &m1, &v1, 1, 0.001f, 0.9f, 0.999f, 1e-7f, 1);
    const double alpha = double(0.001f) * std::sqrt(1 - double(0.999f)) / (1 - double(0.9f));
    const double want_m = (1 - double(0.9f)) * 0.5, want_v = (1 - double(0.999f)) * 0.25;
    CHECK(double(w1) ==
          doctest::Approx(1 - alpha * want_m / (std::sqrt(want_v) + double(1e-7f))).epsilon(sizeof(T) == 4 ? 1e-7 : 1e-15));
    CHECK(double(w1) == doctest::Approx(0.999000006325).epsilon(sizeof(T) == 4 ? 1e-7 : 1e-9));

    CHECK_THROWS_AS(cumulus::cpu::adam_update(&w1, &g1, &m1, &v1, 1, 0.001f, 0.9f, 0.999f, 1e-7f, 0), cumulus::Error);
}

TEST_CASE_TEMPLATE("adam_update adds eps to sqrt(v) without bias correction, as Keras", T, float, double) {
    // g = 1e-8 at step 1: Keras steps by alpha * m / (sqrt(v) + eps) = 3.15e-3 * lr;
    // the PyTorch form lr * m_hat / (sqrt(v_hat) + eps) would step by 0.099 * lr.
    T w = 0, g = T(1e-8), m = 0, v = 0;
    cumulus::cpu::adam_update(&w, &g, &m, &v, 1, 0.001f, 0.9f, 0.999f, 1e-7f, 1);
    const double b1 = 0.9f, b2 = 0.999f, gd = double(g);
    const double alpha = double(0.001f) * std::sqrt(1 - b2) / (1 - b1);
    const double want = -alpha * (1 - b1) * gd / (std::sqrt((1 - b2) * gd * gd) + double(1e-7f));
    CHECK(double(w) == doctest::Approx(want).epsilon(1e-5));
    CHECK(double(w) == doctest::Approx(-3.1524e-6).epsilon(1e-3));
}
