#include "gradcheck.hpp"

#include <cumulus/nn/activation.hpp>
#include <cumulus/nn/dense.hpp>
#include <cumulus/nn/dropout.hpp>
#include <cumulus/nn/flatten.hpp>
#include <cumulus/nn/loss.hpp>
#include <cumulus/nn/sequential.hpp>

using namespace cumulus;
using gradcheck::check_layer;
using gradcheck::random_tensor;

TEST_CASE("Dense gradients, every activation but softmax, odd sizes") {
    Philox rng(1);
    for (auto act : {nn::Activation::Linear, nn::Activation::ReLU}) {
        for (auto [batch, in, out] : {std::tuple{1, 1, 1}, std::tuple{3, 5, 7}, std::tuple{7, 13, 4}}) {
            for (bool bias : {true, false}) {
                nn::Dense<double> d(out, act, bias);
                d.build(Shape{in}, 3);
                if (bias)  // non-zero biases so that ReLU's kink moves around
                    for (std::int64_t i = 0; i < out; ++i) d.bias().value[i] = 0.1 * (i % 3) - 0.1;
                auto x = random_tensor(Shape{batch, in}, rng);
                CAPTURE(batch);
                CAPTURE(in);
                CAPTURE(out);
                check_layer(d, x, nn::Context{});
            }
        }
    }
}

TEST_CASE("ReLU and Flatten gradients") {
    Philox rng(2);
    nn::ReLU<double> relu;
    relu.build(Shape{11}, 0);
    check_layer(relu, random_tensor(Shape{3, 11}, rng), nn::Context{});
    nn::Flatten<double> flat;
    flat.build(Shape{2, 3, 5}, 0);
    check_layer(flat, random_tensor(Shape{4, 2, 3, 5}, rng), nn::Context{});
}

TEST_CASE("Dropout gradients with a fixed mask, and identity at inference") {
    Philox rng(3);
    nn::Dropout<double> drop(0.4f);
    drop.build(Shape{37}, 0);
    nn::Context train;
    train.training = true;
    train.seed = 1234;
    train.step = 5;
    auto x = random_tensor(Shape{5, 37}, rng);
    check_layer(drop, x, train);
    // Some elements dropped, the rest scaled by 1 / (1 - rate).
    auto y = drop.forward(x, train);
    int dropped = 0;
    for (std::int64_t i = 0; i < x.numel(); ++i) {
        if (y[i] == 0.0) ++dropped;
        else CHECK(y[i] == doctest::Approx(x[i] / (1.0 - double(0.4f))).epsilon(1e-12));
    }
    CHECK(dropped > 0);
    CHECK(dropped < x.numel());
    auto y_eval = drop.forward(x, nn::Context{});
    CHECK(y_eval.data() == x.data());
}

TEST_CASE("softmax cross-entropy gradient of a whole small model") {
    // 6 -> Dense 5 ReLU -> Dropout -> Dense 4 ReLU -> Dense 3 softmax, L = mean xent.
    nn::Sequential<double> model(Shape{6}, 11);
    model.add(nn::Dense<double>(5, nn::Activation::ReLU));
    model.add(nn::Dropout<double>(0.25f));
    model.add(nn::Dense<double>(4, nn::Activation::ReLU));
    model.add(nn::Dense<double>(3, nn::Activation::Softmax));
    for (auto* p : model.parameters())
        if (p->name == "bias")
            for (std::int64_t i = 0; i < p->value.numel(); ++i) p->value[i] = 0.05 * double(i % 4) - 0.07;  // never exactly 0: no ReLU kink at eps
    Philox rng(4);
    const std::int64_t batch = 9;
    auto x = random_tensor(Shape{batch, 6}, rng, 2.0);
    auto labels = Tensor<std::int32_t>::empty(Shape{batch});
    for (std::int64_t i = 0; i < batch; ++i) labels[i] = std::int32_t(rng.below(3));

    nn::Context ctx;
    ctx.training = true;
    ctx.seed = 5;
    ctx.step = 2;
    ctx.defer_softmax = true;
    nn::SoftmaxCrossEntropy loss;
    loss.check(model);
    auto mean_loss = [&] {
        auto logits = model.forward(x, ctx);
        return loss(logits, labels, nullptr, batch).loss_sum / double(batch);
    };
    auto logits = model.forward(x, ctx);
    auto dlogits = Tensor<double>::empty(logits.shape());
    loss(logits, labels, &dlogits, batch);
    model.backward(dlogits, ctx);
    const double eps = 1e-6;
    int checked = 0;
    for (auto* p : model.parameters()) {
        auto g = p->grad.clone();
        for (std::int64_t i = 0; i < p->value.numel(); ++i) {
            double old = p->value[i];
            p->value[i] = old + eps;
            double lp = mean_loss();
            p->value[i] = old - eps;
            double lm = mean_loss();
            p->value[i] = old;
            double num = (lp - lm) / (2 * eps);
            CAPTURE(p->name);
            CAPTURE(i);
            CHECK(std::fabs(num - g[i]) <= 1e-6 * std::max(1.0, std::fabs(num)));
            ++checked;
        }
    }
    CHECK(checked == model.param_count());
}
