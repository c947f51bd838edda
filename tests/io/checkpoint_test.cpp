#include <filesystem>
#include <fstream>

#include <doctest/doctest.h>

#include "../train/synthetic.hpp"

#include <cumulus/io/checkpoint.hpp>
#include <cumulus/optim/adam.hpp>
#include <cumulus/train/fit.hpp>

using namespace cumulus;
namespace fs = std::filesystem;

namespace {
fs::path temp_dir(const std::string& name) {
    auto p = fs::temp_directory_path() / ("cumulus_ckpt_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(p);
    return p;
}
}  // namespace

TEST_CASE("save_model / load_model round trip gives bit-identical predictions") {
    auto data = synthetic::separable(90, 3, 4, 11);
    nn::Sequential<float> model(Shape{12}, 5, "my_model");
    model.add(nn::Dense<float>(16, nn::Activation::ReLU));
    model.add(nn::Dropout<float>(0.3f));
    model.add(nn::Dense<float>(8, nn::Activation::Linear, false));
    model.add(nn::ReLU<float>());
    model.add(nn::Dense<float>(3, nn::Activation::Softmax));
    optim::Adam<float> opt;
    train::FitOptions<float> o;
    o.epochs = 2;
    o.batch_size = 16;
    o.verbose = train::Verbosity::Silent;
    train::fit(model, opt, data, o);

    const auto dir = temp_dir("roundtrip");
    io::save_model(model, dir.string(), &opt);
    CHECK(fs::exists(dir / "model.json"));
    CHECK(fs::exists(dir / "model.safetensors"));

    auto loaded = io::load_model<float>(dir.string());
    CHECK(loaded.summary() == model.summary());
    auto a = train::predict(model, data, 32).to_vector();
    auto b = train::predict(loaded, data, 32).to_vector();
    REQUIRE(a.size() == b.size());
    CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);

    // The optimizer's state comes back too: one more step from either gives the same weights.
    optim::Adam<float> opt2;
    io::load_weights(loaded, dir.string(), &opt2);
    CHECK(opt2.iterations() == opt.iterations());
    o.epochs = 1;
    train::fit(model, opt, data, o);
    train::fit(loaded, opt2, data, o);
    auto pa = model.parameters(), pb = loaded.parameters();
    for (std::size_t i = 0; i < pa.size(); ++i) CHECK(pa[i]->value.to_vector() == pb[i]->value.to_vector());
    fs::remove_all(dir);
}

TEST_CASE("loading into the wrong architecture or from a broken file says what is wrong") {
    nn::Sequential<float> model(Shape{4});
    model.add(nn::Dense<float>(3, nn::Activation::Softmax));
    const auto dir = temp_dir("bad");
    io::save_model(model, dir.string());

    nn::Sequential<float> other(Shape{5});
    other.add(nn::Dense<float>(3, nn::Activation::Softmax));
    CHECK_THROWS_WITH_AS(io::load_weights(other, dir.string()), doctest::Contains("dense/kernel"), Error);

    {
        std::ofstream f(dir / "model.json");
        f << "{ not json";
    }
    CHECK_THROWS_WITH_AS(io::load_model<float>(dir.string()), doctest::Contains("model.json"), Error);
    {
        std::ofstream f(dir / "model.json");
        f << R"({"format": "cumulus.model", "dtype": "float32", "config": {"input_shape": [4], "layers": [{"class_name": "Bogus", "config": {"name": "x"}}]}})";
    }
    CHECK_THROWS_WITH_AS(io::load_model<float>(dir.string()), doctest::Contains("unknown layer class 'Bogus'"), Error);
    CHECK_THROWS_AS(io::load_model<float>((dir / "missing").string()), Error);
    fs::remove_all(dir);
}
