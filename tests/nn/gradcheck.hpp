// Finite-difference gradient checks for layers and models, in double.
#pragma once

#include <cmath>
#include <vector>

#include <doctest/doctest.h>

#include <cumulus/core/random.hpp>
#include <cumulus/nn/layer.hpp>

namespace gradcheck {

using cumulus::Shape;
using cumulus::Tensor;

inline Tensor<double> random_tensor(const Shape& s, cumulus::Philox& rng, double scale = 1.0) {
    auto t = Tensor<double>::empty(s);
    for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = scale * (2.0 * rng.uniform() - 1.0);
    return t;
}

inline double dot(const Tensor<double>& a, const Tensor<double>& b) {
    double s = 0;
    for (std::int64_t i = 0; i < a.numel(); ++i) s += a[i] * b[i];
    return s;
}

// Checks dL/dx and dL/dparams of `layer` (already built) for L = sum(r * y)
// with a fixed random r, against central differences. Returns the largest
// relative error seen.
inline double check_layer(cumulus::nn::Layer<double>& layer, Tensor<double> x, const cumulus::nn::Context& ctx,
                          std::uint64_t seed = 7, double eps = 1e-6) {
    cumulus::Philox rng(seed, 99);
    layer.set_input_grad_needed(true);
    Tensor<double> y = layer.forward(x, ctx).clone();
    Tensor<double> r = random_tensor(y.shape(), rng);
    Tensor<double> dx = layer.backward(r, ctx).clone();
    std::vector<Tensor<double>> grads;
    for (auto* p : layer.parameters()) grads.push_back(p->grad.clone());

    auto loss = [&] { return dot(layer.forward(x, ctx), r); };
    double worst = 0;
    auto compare = [&](double analytic, double numeric) {
        double err = std::fabs(analytic - numeric) / std::max(1.0, std::fabs(analytic) + std::fabs(numeric));
        worst = std::max(worst, err);
        CHECK(err < 1e-6);
    };
    for (std::int64_t i = 0; i < x.numel(); ++i) {
        double old = x[i];
        x[i] = old + eps;
        double lp = loss();
        x[i] = old - eps;
        double lm = loss();
        x[i] = old;
        compare(dx[i], (lp - lm) / (2 * eps));
    }
    auto params = layer.parameters();
    for (std::size_t k = 0; k < params.size(); ++k) {
        auto& w = params[k]->value;
        for (std::int64_t i = 0; i < w.numel(); ++i) {
            double old = w[i];
            w[i] = old + eps;
            double lp = loss();
            w[i] = old - eps;
            double lm = loss();
            w[i] = old;
            compare(grads[k][i], (lp - lm) / (2 * eps));
        }
    }
    return worst;
}

}  // namespace gradcheck
