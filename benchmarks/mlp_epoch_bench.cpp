// One training epoch of the Keras mnist_mlp model (60000 examples, batch
// 128, RMSprop, dropout 0.2), the figure to compare with
// benchmarks/torch_mlp.py on the same machine (tools/bench-mlp runs both).
#include <benchmark/benchmark.h>

#include <cumulus/core/random.hpp>
#include <cumulus/data/dataset.hpp>
#include <cumulus/data/mnist.hpp>
#include <cumulus/nn/dense.hpp>
#include <cumulus/nn/dropout.hpp>
#include <cumulus/optim/rmsprop.hpp>
#include <cumulus/train/fit.hpp>

using namespace cumulus;

namespace {

// MNIST when it can be found, else random images of the same size (the
// time per epoch does not depend on the pixel values).
const data::Dataset& mnist_train() {
    static data::Dataset d = [] {
        try {
            auto m = data::load_mnist(data::MnistKind::mnist);
            return data::Dataset::from_uint8(m.train.images, m.train.labels);
        } catch (const Error&) {
            auto x = Tensor<std::uint8_t>::empty(Shape{60000, 28, 28});
            auto y = Tensor<std::uint8_t>::empty(Shape{60000});
            Philox rng(1);
            for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = std::uint8_t(rng.below(256));
            for (std::int64_t i = 0; i < y.numel(); ++i) y[i] = std::uint8_t(rng.below(10));
            return data::Dataset::from_uint8(x, y);
        }
    }();
    return d;
}

void BM_mlp_epoch(benchmark::State& state) {
    const auto train = mnist_train().reshape_examples(Shape{784});
    nn::Sequential<float> model(Shape{784}, 0);
    model.add(nn::Dense<float>(512, nn::Activation::ReLU));
    model.add(nn::Dropout<float>(0.2f));
    model.add(nn::Dense<float>(512, nn::Activation::ReLU));
    model.add(nn::Dropout<float>(0.2f));
    model.add(nn::Dense<float>(10, nn::Activation::Softmax));
    optim::RMSprop<float> opt;
    train::FitOptions<float> o;
    o.epochs = 1;
    o.batch_size = 128;
    o.verbose = train::Verbosity::Silent;
    for (auto _ : state) train::fit(model, opt, train, o);
    state.counters["examples_per_s"] =
        benchmark::Counter(double(train.size()), benchmark::Counter::kIsIterationInvariantRate);
    state.counters["threads"] = ThreadPool::global().size();
}
BENCHMARK(BM_mlp_epoch)->Unit(benchmark::kSecond)->Iterations(3)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
