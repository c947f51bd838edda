// CPU convolution and pooling at the CNN shapes: the fast path (im2col chunks
// + blocked GEMM, all pool threads) for forward (bias + ReLU fused),
// backward-data and backward-filter, reported as GFLOP/s of the direct
// convolution (2 * N*OH*OW * KH*KW*C * O per pass); pooling as GB/s of
// input + output. BM_conv_ref times the direct reference on the smallest
// shape, for scale.
//
//   mnist1: batch 100, 28x28x1 -> 32, 5x5 same  (mnist_cnn's first layer)
//   mnist2: batch 100, 14x14x32 -> 64, 5x5 same (its second layer)
//   big3x3: batch 64, 56x56x64 -> 64, 3x3 same
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include <cumulus/core/random.hpp>
#include <cumulus/cpu/conv.hpp>
#include <cumulus/cpu/pool.hpp>

namespace {

using cumulus::Epilogue;
using cumulus::cpu::ConvShape;
using cumulus::cpu::Padding;
using Index = std::int64_t;

struct Case {
    const char* name;
    Index n, h, w, c, k, oc;
};

const Case kCases[] = {
    {"mnist1_b100_28x28x1_5x5x32", 100, 28, 28, 1, 5, 32},
    {"mnist2_b100_14x14x32_5x5x64", 100, 14, 14, 32, 5, 64},
    {"big3x3_b64_56x56x64_3x3x64", 64, 56, 56, 64, 3, 64},
};

std::vector<float> random_vector(Index n, std::uint64_t seed) {
    cumulus::Philox rng(seed, 3);
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = float(2.0 * rng.uniform() - 1.0);
    return v;
}

enum class Pass { Forward, BackwardData, BackwardFilter, Reference };

void BM_conv(benchmark::State& state, Case c, Pass pass) {
    const ConvShape s = cumulus::cpu::conv_shape(c.n, c.h, c.w, c.c, c.k, c.k, c.oc, 1, 1, Padding::Same);
    const auto x = random_vector(s.in_size(), 1), w = random_vector(s.kernel_size(), 2);
    const auto b = random_vector(s.oc, 3), dy = random_vector(s.out_size(), 4);
    std::vector<float> y(static_cast<std::size_t>(s.out_size())), dx(static_cast<std::size_t>(s.in_size())),
        dw(static_cast<std::size_t>(s.kernel_size()));
    for (auto _ : state) {
        switch (pass) {
            case Pass::Forward:
                cumulus::cpu::conv2d_forward(s, x.data(), w.data(), y.data(), Epilogue::BiasRelu, b.data());
                break;
            case Pass::BackwardData: cumulus::cpu::conv2d_backward_data(s, dy.data(), w.data(), dx.data()); break;
            case Pass::BackwardFilter:
                cumulus::cpu::conv2d_backward_filter(s, x.data(), dy.data(), dw.data());
                break;
            case Pass::Reference:
                cumulus::cpu::conv2d_forward_ref(s, x.data(), w.data(), b.data(), y.data(), true);
                break;
        }
        benchmark::ClobberMemory();
    }
    const double flops = 2.0 * double(s.rows()) * double(s.patch()) * double(s.oc);
    state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_pool(benchmark::State& state, Case c, bool max, bool backward) {
    // The pool after the conv: 2x2 stride 2 over the conv's output.
    const ConvShape s = cumulus::cpu::pool_shape(c.n, c.h, c.w, c.oc, 2, 2, 2, 2, Padding::Valid);
    const auto x = random_vector(s.in_size(), 5), dy = random_vector(s.out_size(), 6);
    std::vector<float> y(static_cast<std::size_t>(s.out_size())), dx(static_cast<std::size_t>(s.in_size()));
    std::vector<std::int32_t> arg(static_cast<std::size_t>(s.out_size()));
    cumulus::cpu::max_pool_forward(s, x.data(), y.data(), arg.data());
    for (auto _ : state) {
        if (max && !backward) cumulus::cpu::max_pool_forward(s, x.data(), y.data(), arg.data());
        if (max && backward) cumulus::cpu::max_pool_backward(s, dy.data(), arg.data(), dx.data());
        if (!max && !backward) cumulus::cpu::avg_pool_forward(s, x.data(), y.data());
        if (!max && backward) cumulus::cpu::avg_pool_backward(s, dy.data(), dx.data());
        benchmark::ClobberMemory();
    }
    const double bytes = 4.0 * double(s.in_size() + s.out_size()) + (max ? 4.0 * double(s.out_size()) : 0.0);
    state.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

int register_all() {
    for (const auto& c : kCases) {
        const std::string n = c.name;
        benchmark::RegisterBenchmark(("conv_fwd/" + n).c_str(), BM_conv, c, Pass::Forward)->UseRealTime()
            ->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(("conv_bwd_data/" + n).c_str(), BM_conv, c, Pass::BackwardData)->UseRealTime()
            ->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(("conv_bwd_filter/" + n).c_str(), BM_conv, c, Pass::BackwardFilter)
            ->UseRealTime()->Unit(benchmark::kMillisecond);
        for (bool max : {true, false})
            for (bool bwd : {false, true})
                benchmark::RegisterBenchmark(
                    (std::string(max ? "maxpool" : "avgpool") + (bwd ? "_bwd/" : "_fwd/") + n).c_str(), BM_pool, c,
                    max, bwd)
                    ->UseRealTime()->Unit(benchmark::kMillisecond);
    }
    benchmark::RegisterBenchmark("conv_fwd_reference/mnist1_b100_28x28x1_5x5x32", BM_conv, kCases[0], Pass::Reference)
        ->UseRealTime()->Unit(benchmark::kMillisecond);
    return 0;
}

const int registered = register_all();

}  // namespace

BENCHMARK_MAIN();
