#include <doctest/doctest.h>

#include <cumulus/nn/activation.hpp>
#include <cumulus/nn/dense.hpp>
#include <cumulus/nn/dropout.hpp>
#include <cumulus/nn/flatten.hpp>
#include <cumulus/nn/sequential.hpp>

using namespace cumulus;

namespace {
nn::Sequential<float> seed_model() {
    nn::Sequential<float> model(Shape{784});
    model.add(nn::Dense<float>(512, nn::Activation::ReLU));
    model.add(nn::Dropout<float>(0.2f));
    model.add(nn::Dense<float>(512, nn::Activation::ReLU));
    model.add(nn::Dropout<float>(0.2f));
    model.add(nn::Dense<float>(10, nn::Activation::Softmax));
    return model;
}
}  // namespace

TEST_CASE("summary of the Keras mnist_mlp model is Keras' table") {
    auto model = seed_model();
    const std::string expected =
        "Model: \"sequential\"\n"
        "_________________________________________________________________\n"
        "Layer (type)                 Output Shape              Param #   \n"
        "=================================================================\n"
        "dense (Dense)                (None, 512)               401920    \n"
        "_________________________________________________________________\n"
        "dropout (Dropout)            (None, 512)               0         \n"
        "_________________________________________________________________\n"
        "dense_1 (Dense)              (None, 512)               262656    \n"
        "_________________________________________________________________\n"
        "dropout_1 (Dropout)          (None, 512)               0         \n"
        "_________________________________________________________________\n"
        "dense_2 (Dense)              (None, 10)                5130      \n"
        "=================================================================\n"
        "Total params: 669,706\n"
        "Trainable params: 669,706\n"
        "Non-trainable params: 0\n"
        "_________________________________________________________________\n";
    CHECK(model.summary() == expected);
    CHECK(model.param_count() == 669706);
    CHECK(model.ends_with_softmax());
}

TEST_CASE("layer names follow Keras' snake_case rule") {
    CHECK(nn::detail::snake_case("Dense") == "dense");
    CHECK(nn::detail::snake_case("ReLU") == "re_lu");
    CHECK(nn::detail::snake_case("MaxPool2D") == "max_pool2d");
    CHECK(nn::detail::snake_case("Conv2D") == "conv2d");
    CHECK(nn::detail::thousands(0) == "0");
    CHECK(nn::detail::thousands(1000) == "1,000");
    CHECK(nn::detail::thousands(3274634) == "3,274,634");
}

TEST_CASE("shape errors name the layer, its index and the shapes") {
    nn::Sequential<float> model(Shape{28, 28});
    try {
        model.add(nn::Dense<float>(10));
        FAIL("expected an error");
    } catch (const Error& e) {
        std::string m = e.what();
        CHECK(m.find("layer 'dense' (Dense, index 0)") != std::string::npos);
        CHECK(m.find("(None, 28, 28)") != std::string::npos);
        CHECK(m.find("Flatten") != std::string::npos);
    }
    nn::Sequential<float> ok(Shape{28, 28});
    ok.add(nn::Flatten<float>());
    auto& d = ok.add(nn::Dense<float>(10));
    CHECK(d.input_shape() == Shape{784});
    auto wrong = Tensor<float>::zeros(Shape{2, 27, 28});
    try {
        ok.forward(wrong, nn::Context{});
        FAIL("expected an error");
    } catch (const Error& e) {
        CHECK(std::string(e.what()).find("expected input of shape (None, 28, 28), got (2, 27, 28)") !=
              std::string::npos);
    }
}

TEST_CASE("initial weights: Glorot uniform from the seed, zero biases") {
    auto a = seed_model();
    auto b = seed_model();
    auto& ka = a.parameters()[0]->value;
    auto& kb = b.parameters()[0]->value;
    REQUIRE(ka.numel() == 784 * 512);
    const double limit = std::sqrt(6.0 / (784 + 512));
    double sum = 0, sumsq = 0, maxabs = 0;
    for (std::int64_t i = 0; i < ka.numel(); ++i) {
        CHECK(ka[i] == kb[i]);
        sum += ka[i];
        sumsq += double(ka[i]) * ka[i];
        maxabs = std::max(maxabs, double(std::fabs(ka[i])));
    }
    const double n = double(ka.numel());
    CHECK(maxabs <= limit);
    CHECK(maxabs > 0.99 * limit);
    CHECK(std::fabs(sum / n) < 0.01 * limit);
    CHECK(sumsq / n == doctest::Approx(limit * limit / 3).epsilon(0.01));
    auto& bias = a.parameters()[1]->value;
    for (std::int64_t i = 0; i < bias.numel(); ++i) CHECK(bias[i] == 0.0f);
    // A different seed gives different weights.
    nn::Sequential<float> c(Shape{784}, 1);
    c.add(nn::Dense<float>(512, nn::Activation::ReLU));
    CHECK(c.parameters()[0]->value[0] != ka[0]);
}

TEST_CASE("the first layer with parameters computes no input gradient") {
    auto model = seed_model();
    CHECK_FALSE(model.layer(0).input_grad_needed());
    CHECK(model.layer(1).input_grad_needed());
    CHECK(model.layer(2).input_grad_needed());
}
