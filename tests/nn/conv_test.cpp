// Conv2D, MaxPool2D and AvgPool2D layers: finite-difference gradients in
// double, Keras' shapes, names and parameter counts, and a small CNN that
// learns a synthetic task.
#include "gradcheck.hpp"

#include <cumulus/core/random.hpp>
#include <cumulus/data/dataset.hpp>
#include <cumulus/nn/conv2d.hpp>
#include <cumulus/nn/dense.hpp>
#include <cumulus/nn/dropout.hpp>
#include <cumulus/nn/flatten.hpp>
#include <cumulus/nn/pool.hpp>
#include <cumulus/nn/sequential.hpp>
#include <cumulus/optim/adam.hpp>
#include <cumulus/train/fit.hpp>

#include "../test_util.hpp"

using namespace cumulus;
using gradcheck::check_layer;
using gradcheck::random_tensor;
using nn::Padding;

namespace {

struct ConvCase {
    std::int64_t n, h, w, c, filters;
    nn::Size2 kernel, strides;
    Padding padding;
};

}  // namespace

TEST_CASE("Conv2D gradients: strides, both paddings, odd sizes, channels not a multiple of 4") {
    const ConvCase cases[] = {
        {1, 5, 5, 1, 2, 3, 1, Padding::Valid},
        {2, 5, 6, 3, 3, 3, 1, Padding::Same},
        {2, 7, 5, 2, 3, {3, 2}, 2, Padding::Same},
        {1, 8, 7, 3, 2, {4, 3}, {3, 2}, Padding::Valid},
        {2, 6, 6, 5, 3, 5, 3, Padding::Same},
        {1, 4, 4, 2, 3, 1, 1, Padding::Valid},
    };
    Philox rng(11);
    for (const auto& k : cases) {
        for (auto act : {nn::Activation::Linear, nn::Activation::ReLU}) {
            for (bool bias : {true, false}) {
                CAPTURE(k.h);
                CAPTURE(k.w);
                CAPTURE(k.c);
                CAPTURE(k.kernel.h);
                CAPTURE(k.strides.h);
                CAPTURE(nn::padding_name(k.padding));
                CAPTURE(bias);
                nn::Conv2D<double> conv(k.filters, k.kernel, k.strides, k.padding, act, bias);
                conv.build(Shape{k.h, k.w, k.c}, 5);
                if (bias)  // non-zero biases so that ReLU's kink moves around
                    for (std::int64_t i = 0; i < k.filters; ++i) conv.bias().value[i] = 0.1 * double(i % 3) - 0.1;
                check_layer(conv, random_tensor(Shape{k.n, k.h, k.w, k.c}, rng), nn::Context{});
            }
        }
    }
}

TEST_CASE("MaxPool2D and AvgPool2D gradients") {
    struct PoolCase {
        std::int64_t n, h, w, c;
        nn::Size2 pool, strides;
        Padding padding;
    };
    const PoolCase cases[] = {
        {1, 4, 4, 1, 2, 0, Padding::Valid},       {2, 5, 7, 3, 2, 0, Padding::Same},
        {2, 7, 6, 5, 3, 2, Padding::Same},        {1, 9, 8, 3, {3, 2}, {3, 1}, Padding::Valid},
        {2, 5, 5, 2, 3, 1, Padding::Same},
    };
    Philox rng(12);
    for (const auto& k : cases) {
        CAPTURE(k.h);
        CAPTURE(k.w);
        CAPTURE(k.pool.h);
        CAPTURE(nn::padding_name(k.padding));
        nn::MaxPool2D<double> mp(k.pool, k.strides, k.padding);
        mp.build(Shape{k.h, k.w, k.c}, 0);
        check_layer(mp, random_tensor(Shape{k.n, k.h, k.w, k.c}, rng), nn::Context{});
        nn::AvgPool2D<double> ap(k.pool, k.strides, k.padding);
        ap.build(Shape{k.h, k.w, k.c}, 0);
        check_layer(ap, random_tensor(Shape{k.n, k.h, k.w, k.c}, rng), nn::Context{});
    }
}

TEST_CASE("layer output shapes follow TensorFlow's arithmetic") {
    nn::Conv2D<float> a(4, 5, 2, Padding::Same);
    CHECK(a.build(Shape{28, 28, 1}, 0) == Shape{14, 14, 4});
    nn::Conv2D<float> b(4, {4, 2}, {3, 1}, Padding::Valid);
    CHECK(b.build(Shape{9, 5, 3}, 0) == Shape{2, 4, 4});
    nn::MaxPool2D<float> c(2, 0, Padding::Same);
    CHECK(c.build(Shape{5, 5, 6}, 0) == Shape{3, 3, 6});
    nn::AvgPool2D<float> d(3, 2, Padding::Valid);
    CHECK(d.build(Shape{7, 7, 2}, 0) == Shape{3, 3, 2});
    nn::Conv2D<float> e(4, 5);
    CHECK(test_util::contains(test_util::error_of([&] { e.build(Shape{4, 4, 1}, 0); }), "larger"));
    nn::Conv2D<float> f(4, 3);
    CHECK(test_util::contains(test_util::error_of([&] { f.build(Shape{16}, 0); }), "(None, height, width, channels)"));
    CHECK(test_util::contains(test_util::error_of([] { nn::Conv2D<float>(0, 3); }), "filters"));
    CHECK(test_util::contains(test_util::error_of([] { nn::MaxPool2D<float>(0); }), "pool size"));
}

TEST_CASE("Conv2D initialises as Keras: glorot-uniform kernel over kh*kw*channels, zero bias") {
    nn::Conv2D<double> conv(64, 5, 1, Padding::Same);
    conv.build(Shape{14, 14, 32}, 3);
    const double limit = std::sqrt(6.0 / double(25 * 32 + 25 * 64));
    const auto& k = conv.kernel().value;
    CHECK(k.shape() == Shape{5, 5, 32, 64});
    double lo = 0, hi = 0, sum2 = 0;
    for (std::int64_t i = 0; i < k.numel(); ++i) {
        lo = std::min(lo, k[i]);
        hi = std::max(hi, k[i]);
        sum2 += k[i] * k[i];
    }
    CHECK(lo >= -limit);
    CHECK(hi <= limit);
    CHECK(hi > 0.99 * limit);
    CHECK(std::sqrt(sum2 / double(k.numel())) == doctest::Approx(limit / std::sqrt(3.0)).epsilon(0.02));
    for (std::int64_t i = 0; i < 64; ++i) CHECK(conv.bias().value[i] == 0.0);
}

TEST_CASE("the distributed-MNIST CNN has Keras' summary and 3,274,634 parameters") {
    nn::Sequential<float> model(Shape{28, 28, 1});
    model.add(nn::Conv2D<float>(32, 5, 1, Padding::Same, nn::Activation::ReLU));
    model.add(nn::MaxPool2D<float>(2, 2));
    model.add(nn::Conv2D<float>(64, 5, 1, Padding::Same, nn::Activation::ReLU));
    model.add(nn::MaxPool2D<float>(2, 2));
    model.add(nn::Flatten<float>());
    model.add(nn::Dense<float>(1024, nn::Activation::ReLU));
    model.add(nn::Dropout<float>(0.4f));
    model.add(nn::Dense<float>(10));
    CHECK(model.param_count() == 3274634);
    const std::string expected =
        "Model: \"sequential\"\n"
        "_________________________________________________________________\n"
        "Layer (type)                 Output Shape              Param #   \n"
        "=================================================================\n"
        "conv2d (Conv2D)              (None, 28, 28, 32)        832       \n"
        "_________________________________________________________________\n"
        "max_pooling2d (MaxPooling2D) (None, 14, 14, 32)        0         \n"
        "_________________________________________________________________\n"
        "conv2d_1 (Conv2D)            (None, 14, 14, 64)        51264     \n"
        "_________________________________________________________________\n"
        "max_pooling2d_1 (MaxPooling2 (None, 7, 7, 64)          0         \n"
        "_________________________________________________________________\n"
        "flatten (Flatten)            (None, 3136)              0         \n"
        "_________________________________________________________________\n"
        "dense (Dense)                (None, 1024)              3212288   \n"
        "_________________________________________________________________\n"
        "dropout (Dropout)            (None, 1024)              0         \n"
        "_________________________________________________________________\n"
        "dense_1 (Dense)              (None, 10)                10250     \n"
        "=================================================================\n"
        "Total params: 3,274,634\n"
        "Trainable params: 3,274,634\n"
        "Non-trainable params: 0\n"
        "_________________________________________________________________\n";
    CHECK(model.summary() == expected);
    nn::Sequential<float> avg(Shape{8, 8, 3});
    avg.add(nn::AvgPool2D<float>(2));
    CHECK(avg.layer(0).name() == "average_pooling2d");
}

TEST_CASE("a small CNN learns where a bar is") {
    // 10x10 images with one bright 3-pixel bar: horizontal or vertical, in
    // the top or bottom half: four classes that a dense layer on raw pixels
    // could also learn, but only slowly from 256 examples.
    const std::int64_t n = 256, side = 10;
    auto x = Tensor<std::uint8_t>::empty(Shape{n, side, side, 1});
    auto y = Tensor<std::uint8_t>::empty(Shape{n});
    Philox rng(3, 9);
    for (std::int64_t i = 0; i < n; ++i) {
        const int c = static_cast<int>(rng.below(4));
        y[i] = static_cast<std::uint8_t>(c);
        std::uint8_t* img = x.data() + i * side * side;
        for (std::int64_t p = 0; p < side * side; ++p) img[p] = static_cast<std::uint8_t>(rng.below(40));
        const bool vertical = c % 2 == 1, bottom = c >= 2;
        const std::int64_t r0 = (bottom ? 5 : 0) + rng.below(3), c0 = rng.below(8);
        for (std::int64_t t = 0; t < 3; ++t) {
            const std::int64_t r = vertical ? r0 + t : r0 + 1, col = vertical ? c0 + 1 : c0 + t;
            img[r * side + col] = static_cast<std::uint8_t>(200 + rng.below(55));
        }
    }
    auto data = data::Dataset::from_uint8(x, y);
    nn::Sequential<float> model(Shape{side, side, 1}, 1);
    model.add(nn::Conv2D<float>(6, 3, 1, Padding::Same, nn::Activation::ReLU));
    model.add(nn::MaxPool2D<float>(2));
    model.add(nn::Conv2D<float>(8, 3, 1, Padding::Valid, nn::Activation::ReLU));
    model.add(nn::AvgPool2D<float>(2, 1, Padding::Same));
    model.add(nn::Flatten<float>());
    model.add(nn::Dense<float>(4, nn::Activation::Softmax));
    optim::Adam<float> adam(0.01f);
    train::FitOptions<float> fo;
    fo.epochs = 15;
    fo.batch_size = 16;
    fo.verbose = train::Verbosity::Silent;
    const double before = train::evaluate(model, data).accuracy;
    train::fit(model, adam, data, fo);
    const auto after = train::evaluate(model, data);
    CAPTURE(before);
    CHECK(before < 0.5);
    CHECK(after.accuracy > 0.95);
}
