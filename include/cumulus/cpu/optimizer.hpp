// Optimizer updates on the CPU: one step over n contiguous parameters, with
// the formulas of Keras 3 (keras/src/optimizers/*.py), which are also those of
// tf.keras 2.x and TensorFlow's ApplyRMSProp / ApplyAdam kernels.
//
// Per-element arithmetic runs in T, as Keras runs it in the variable's dtype;
// the step-dependent scalars are computed in double and rounded once.
#pragma once

#include <cmath>
#include <cstdint>

#include <cumulus/core/error.hpp>
#include <cumulus/core/parallel.hpp>

namespace cumulus::cpu {

namespace detail {
inline constexpr std::int64_t kOptimizerGrain = 32768;
inline int optimizer_parts(std::int64_t n) { return n >= kOptimizerGrain ? 0 : 1; }
}  // namespace detail

// RMSprop (Keras, no momentum, not centered):
//   ms = rho * ms + (1 - rho) * g^2
//   w -= lr * g / (sqrt(ms) + eps)        (eps outside the root, as Keras' RMSprop)
// Keras' defaults: lr 0.001, rho 0.9, eps 1e-7.
template <typename T>
void rmsprop_update(T* w, const T* g, T* ms, std::int64_t n, float lr, float rho, float eps) {
    CUMULUS_CHECK(n >= 0, "rmsprop_update: negative size ", n);
    const T t_rho = static_cast<T>(rho), t_one_minus_rho = static_cast<T>(1.0 - static_cast<double>(rho));
    const T t_lr = static_cast<T>(lr), t_eps = static_cast<T>(eps);
    parallel_for(
        n,
        [&](std::int64_t b, std::int64_t e, int) {
            for (std::int64_t i = b; i < e; ++i) {
                const T gi = g[i];
                const T s = t_rho * ms[i] + t_one_minus_rho * (gi * gi);
                ms[i] = s;
                w[i] -= t_lr * gi / (std::sqrt(s) + t_eps);
            }
        },
        detail::optimizer_parts(n));
}

// SGD (Keras):
//   momentum == 0:  w -= lr * g             (v is not touched and may be null)
//   otherwise:      v = momentum * v - lr * g
//                   w += v                            (classic)
//                   w += momentum * v - lr * g        (nesterov, with the new v)
template <typename T>
void sgd_update(T* w, const T* g, T* v, std::int64_t n, float lr, float momentum, bool nesterov) {
    CUMULUS_CHECK(n >= 0, "sgd_update: negative size ", n);
    const T t_lr = static_cast<T>(lr), t_mom = static_cast<T>(momentum);
    if (momentum == 0.0f) {
        parallel_for(
            n,
            [&](std::int64_t b, std::int64_t e, int) {
                for (std::int64_t i = b; i < e; ++i) w[i] -= t_lr * g[i];
            },
            detail::optimizer_parts(n));
        return;
    }
    CUMULUS_CHECK(v != nullptr || n == 0, "sgd_update: momentum ", momentum, " needs a velocity buffer, got null");
    parallel_for(
        n,
        [&](std::int64_t b, std::int64_t e, int) {
            for (std::int64_t i = b; i < e; ++i) {
                const T gi = g[i];
                const T vi = t_mom * v[i] - t_lr * gi;
                v[i] = vi;
                w[i] += nesterov ? t_mom * vi - t_lr * gi : vi;
            }
        },
        detail::optimizer_parts(n));
}

// Adam (Keras), step t >= 1 (the number of this update, counting from 1):
//   m = m + (1 - b1) * (g - m)             (= b1 * m + (1 - b1) * g)
//   v = v + (1 - b2) * (g^2 - v)           (= b2 * v + (1 - b2) * g^2)
//   alpha = lr * sqrt(1 - b2^t) / (1 - b1^t)
//   w -= alpha * m / (sqrt(v) + eps)
// eps is Kingma & Ba's "epsilon hat": in the bias-corrected form this is
// w -= lr * m_hat / (sqrt(v_hat) + eps / sqrt(1 - b2^t)). (PyTorch adds eps
// to sqrt(v_hat) instead; the two differ only where sqrt(v) is near eps.)
// Keras' defaults: lr 0.001, b1 0.9, b2 0.999, eps 1e-7.
template <typename T>
void adam_update(T* w, const T* g, T* m, T* v, std::int64_t n, float lr, float beta1, float beta2, float eps,
                 std::int64_t step) {
    CUMULUS_CHECK(n >= 0, "adam_update: negative size ", n);
    CUMULUS_CHECK(step >= 1, "adam_update: step must be >= 1 (the first update is step 1), got ", step);
    const double b1 = beta1, b2 = beta2, t = static_cast<double>(step);
    const T alpha = static_cast<T>(static_cast<double>(lr) * std::sqrt(1.0 - std::pow(b2, t)) / (1.0 - std::pow(b1, t)));
    const T one_minus_b1 = static_cast<T>(1.0 - b1), one_minus_b2 = static_cast<T>(1.0 - b2);
    const T t_eps = static_cast<T>(eps);
    parallel_for(
        n,
        [&](std::int64_t b, std::int64_t e, int) {
            for (std::int64_t i = b; i < e; ++i) {
                const T gi = g[i];
                const T mi = m[i] + (gi - m[i]) * one_minus_b1;
                const T vi = v[i] + (gi * gi - v[i]) * one_minus_b2;
                m[i] = mi;
                v[i] = vi;
                w[i] -= mi * alpha / (std::sqrt(vi) + t_eps);
            }
        },
        detail::optimizer_parts(n));
}

}  // namespace cumulus::cpu
