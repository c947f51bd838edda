#include <regex>
#include <sstream>

#include <doctest/doctest.h>

#include "synthetic.hpp"

#include <cumulus/nn/dense.hpp>
#include <cumulus/nn/dropout.hpp>
#include <cumulus/optim/adam.hpp>
#include <cumulus/optim/rmsprop.hpp>
#include <cumulus/optim/sgd.hpp>
#include <cumulus/train/fit.hpp>

using namespace cumulus;

namespace {
nn::Sequential<float> small_mlp(std::int64_t features, int classes, std::uint64_t seed) {
    nn::Sequential<float> m(Shape{features}, seed);
    m.add(nn::Dense<float>(32, nn::Activation::ReLU));
    m.add(nn::Dropout<float>(0.1f));
    m.add(nn::Dense<float>(classes, nn::Activation::Softmax));
    return m;
}

train::FitOptions<float> quiet(int epochs, std::int64_t batch, std::uint64_t seed = 0) {
    train::FitOptions<float> o;
    o.epochs = epochs;
    o.batch_size = batch;
    o.seed = seed;
    o.verbose = train::Verbosity::Silent;
    return o;
}
}  // namespace

TEST_CASE("a small MLP fits a separable set to 100%") {
    auto data = synthetic::separable(600, 4, 6, 1);
    auto model = small_mlp(24, 4, 3);
    optim::RMSprop<float> opt(0.01f);
    auto h = train::fit(model, opt, data, quiet(8, 32));
    REQUIRE(h.epochs.size() == 8);
    CHECK(h.epochs.back().loss < h.epochs.front().loss);
    auto e = train::evaluate(model, data, 64);
    CHECK(e.accuracy == 1.0);
    CHECK(e.samples == 600);
}

TEST_CASE("every optimizer lowers the loss") {
    auto data = synthetic::separable(400, 3, 5, 2);
    std::vector<std::unique_ptr<optim::Optimizer<float>>> opts;
    opts.push_back(std::make_unique<optim::SGD<float>>(0.1f));
    opts.push_back(std::make_unique<optim::SGD<float>>(0.05f, 0.9f));
    opts.push_back(std::make_unique<optim::SGD<float>>(0.05f, 0.9f, true));
    opts.push_back(std::make_unique<optim::Adam<float>>(0.01f));
    opts.push_back(std::make_unique<optim::RMSprop<float>>(0.01f));
    for (auto& o : opts) {
        CAPTURE(o->name());
        auto model = small_mlp(15, 3, 4);
        auto before = train::evaluate(model, data, 100);
        train::fit(model, *o, data, quiet(4, 20));
        auto after = train::evaluate(model, data, 100);
        CHECK(after.loss < 0.5 * before.loss);
        CHECK(after.accuracy > 0.95);
    }
}

TEST_CASE("the same seed gives the same trajectory; another seed does not") {
    auto data = synthetic::separable(300, 3, 4, 3);
    auto run = [&](std::uint64_t seed) {
        auto model = small_mlp(12, 3, seed);
        optim::Adam<float> opt;
        auto h = train::fit(model, opt, data, quiet(2, 16, seed));
        std::vector<float> w;
        for (auto* p : model.parameters()) {
            auto v = p->value.to_vector();
            w.insert(w.end(), v.begin(), v.end());
        }
        return std::pair{h.epochs.back().loss, w};
    };
    auto a = run(7), b = run(7), c = run(8);
    CHECK(a.first == b.first);
    CHECK(a.second == b.second);
    CHECK(a.second != c.second);
}

TEST_CASE("predict gives probabilities; predict_classes and evaluate agree with them") {
    auto data = synthetic::separable(123, 4, 3, 4);  // 123: the last batch is partial
    auto model = small_mlp(12, 4, 5);
    optim::RMSprop<float> opt(0.01f);
    train::fit(model, opt, data, quiet(2, 32));
    auto p = train::predict(model, data, 50);
    REQUIRE(p.shape() == Shape{123, 4});
    for (std::int64_t i = 0; i < 123; ++i) {
        double s = 0;
        for (int j = 0; j < 4; ++j) {
            CHECK(p.at(i, j) >= 0.0f);
            s += p.at(i, j);
        }
        CHECK(s == doctest::Approx(1.0).epsilon(1e-5));
    }
    auto cls = train::predict_classes(model, data, 7);
    std::int64_t right = 0;
    for (std::int64_t i = 0; i < 123; ++i) {
        int best = 0;
        for (int j = 1; j < 4; ++j)
            if (p.at(i, j) > p.at(i, best)) best = j;
        CHECK(cls[i] == best);
        right += cls[i] == data.labels()[i];
    }
    CHECK(train::evaluate(model, data, 9).accuracy == doctest::Approx(double(right) / 123));
}

TEST_CASE("progress lines look like Keras' when not on a terminal") {
    auto data = synthetic::separable(200, 2, 4, 5);
    auto val = synthetic::separable(50, 2, 4, 6);
    auto model = small_mlp(8, 2, 6);
    optim::RMSprop<float> opt;
    std::ostringstream out;
    auto o = quiet(2, 64);
    o.verbose = train::Verbosity::ProgressBar;
    o.out = &out;
    o.validation = &val;
    train::fit(model, opt, data, o);
    const std::string s = out.str();
    const std::regex line(R"(Epoch 1/2\n200/200 \[==============================\] - \d+s - loss: \d\.\d{4} - acc: \d\.\d{4} - val_loss: \d\.\d{4} - val_acc: \d\.\d{4}\nEpoch 2/2\n200/200 \[=+\] - \d+s - loss: .*\n)");
    CHECK_MESSAGE(std::regex_match(s, line), s);
}

TEST_CASE("callbacks see every batch and epoch, and can stop training") {
    struct Counter : train::Callback<float> {
        int begins = 0, batches = 0, epochs = 0, ends = 0;
        std::int64_t last_step = 0;
        int stop_after = -1;
        void on_train_begin(nn::Sequential<float>&, optim::Optimizer<float>&) override { ++begins; }
        void on_batch_end(const train::BatchLogs& l) override {
            ++batches;
            CHECK(l.step == last_step + 1);
            last_step = l.step;
            if (batches == stop_after) stop_training = true;
        }
        void on_epoch_end(const train::EpochLogs&) override { ++epochs; }
        void on_train_end(const train::History&) override { ++ends; }
    };
    auto data = synthetic::separable(100, 2, 3, 7);
    auto model = small_mlp(6, 2, 8);
    optim::SGD<float> opt;
    Counter c;
    auto o = quiet(3, 30);  // 4 batches per epoch
    o.callbacks = {&c};
    train::fit(model, opt, data, o);
    CHECK(c.begins == 1);
    CHECK(c.batches == 12);
    CHECK(c.epochs == 3);
    CHECK(c.ends == 1);
    CHECK(opt.iterations() == 12);

    Counter s;
    s.stop_after = 5;
    s.last_step = opt.iterations();  // the global step goes on from the first fit
    o.callbacks = {&s};
    train::fit(model, opt, data, o);
    CHECK(s.batches == 5);
}

TEST_CASE("fit rejects data that does not match the model") {
    auto data = synthetic::separable(10, 2, 3, 8);
    auto model = small_mlp(7, 2, 9);
    optim::SGD<float> opt;
    CHECK_THROWS_WITH_AS(train::fit(model, opt, data, quiet(1, 4)),
                         doctest::Contains("do not match the model's input shape"), Error);
    nn::Sequential<float> no_softmax(Shape{6});
    no_softmax.add(nn::Dense<float>(2));
    CHECK_THROWS_WITH_AS(train::fit(no_softmax, opt, data, quiet(1, 4)), doctest::Contains("does not end in a softmax"),
                         Error);
}
