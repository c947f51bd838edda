// The CUDA convolution and pooling kernels next to cuDNN, on the device, at
// the CNNs' real shapes: batch 100 28x28x1 -> 32 (5x5 same; Deep MNIST conv
// 1), batch 100 14x14x32 -> 64 (5x5 same; conv 2), and batch 64 56x56x64 ->
// 64 (3x3 same), each forward, backward-data and backward-filter; 2x2 max
// pooling forward and backward. cuDNN runs FP32 without tensor cores
// (CUDNN_FMA_MATH), NHWC, with the fastest algorithm cudnnFind* reports for
// the case. Also one epoch of the mnist_cnn model (60000 examples of
// MNIST's shape, batch 100, Adam) through train::fit on the GPU, to set next
// to benchmarks/torch_cnn.py --device cuda.
//
// Counted work: a convolution pass is 2 * N*OH*OW * KH*KW*C * O FLOP (0.13,
// 2.0 and 7.4 GFLOP for the three shapes); the counter reports TFLOP/s.
// Timed with CUDA events around kReps launches after a warm-up, queued
// behind a busy wait so that the host's issue rate is not what is timed
// (cuda_bench_util.hpp).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include <cumulus/cpu/conv.hpp>
#include <cumulus/cpu/pool.hpp>
#include <cumulus/cuda.hpp>
#include <cumulus/data/dataset.hpp>
#include <cumulus/nn/conv2d.hpp>
#include <cumulus/nn/dense.hpp>
#include <cumulus/nn/dropout.hpp>
#include <cumulus/nn/flatten.hpp>
#include <cumulus/nn/pool.hpp>
#include <cumulus/nn/sequential.hpp>
#include <cumulus/optim/adam.hpp>
#include <cumulus/train/fit.hpp>

#include "../tests/cuda/cudnn_util.hpp"  // CUDNN_CHECK, owners, the descriptors
#include "cuda_bench_util.hpp"

using namespace cumulus;

namespace {

using cuda_bench::have_device;
using cuda_bench::random_device;
using cuda_bench::time_device;

// args: shape index, pass (0 forward, 1 backward data, 2 backward filter)
cpu::ConvShape conv_case(std::int64_t i) {
    switch (i) {
        case 0: return cpu::conv_shape(100, 28, 28, 1, 5, 5, 32, 1, 1, cpu::Padding::Same);
        case 1: return cpu::conv_shape(100, 14, 14, 32, 5, 5, 64, 1, 1, cpu::Padding::Same);
        default: return cpu::conv_shape(64, 56, 56, 64, 3, 3, 64, 1, 1, cpu::Padding::Same);
    }
}

std::string conv_label(const cpu::ConvShape& s, int pass) {
    static const char* passes[] = {"fwd", "bwd-data", "bwd-filter"};
    return std::to_string(s.n) + "x" + std::to_string(s.h) + "x" + std::to_string(s.w) + "x" + std::to_string(s.c) +
           "->" + std::to_string(s.oc) + " " + std::to_string(s.kh) + "x" + std::to_string(s.kw) + " " + passes[pass];
}

void conv_args(benchmark::internal::Benchmark* b) {
    for (int i = 0; i < 3; ++i)
        for (int p = 0; p < 3; ++p) b->Args({i, p});
    b->UseManualTime()->Unit(benchmark::kMicrosecond);
}

double conv_flops(const cpu::ConvShape& s) { return 2.0 * double(s.n * s.oh * s.ow) * double(s.kh * s.kw * s.c) * double(s.oc); }

// The operands of one conv case on the device, the same for both libraries:
// random x, kernel and dy (fixed seeds), and room for y, dx and dw.
struct ConvOperands {
    Tensor<float> x, w, dy, y, dx, dw;
    explicit ConvOperands(const cpu::ConvShape& s)
        : x(random_device(s.in_size(), 1)),
          w(random_device(s.kernel_size(), 2)),
          dy(random_device(s.out_size(), 3)),
          y(Tensor<float>::empty(Shape{s.out_size()}, Device::cuda(0))),
          dx(Tensor<float>::empty(Shape{s.in_size()}, Device::cuda(0))),
          dw(Tensor<float>::empty(Shape{s.kernel_size()}, Device::cuda(0))) {}
};

void BM_conv_cumulus(benchmark::State& state) {
    if (!have_device(state)) return;
    const auto s = conv_case(state.range(0));
    const int pass = int(state.range(1));
    ConvOperands t(s);
    auto &x = t.x, &w = t.w, &dy = t.dy, &y = t.y, &dx = t.dx, &dw = t.dw;
    auto ws = Tensor<float>::empty(Shape{std::max<std::int64_t>(1, cuda::conv2d_filter_workspace(s))}, Device::cuda(0));
    time_device(state, [&] {
        if (pass == 0) cuda::conv2d_forward(s, x.data(), w.data(), y.data());
        else if (pass == 1) cuda::conv2d_backward_data(s, dy.data(), w.data(), dx.data());
        else cuda::conv2d_backward_filter(s, x.data(), dy.data(), dw.data(), ws.data(), ws.numel());
    });
    state.counters["TFLOP/s"] = benchmark::Counter(conv_flops(s) * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
    state.SetLabel(conv_label(s, pass));
}
CUDA_BENCHMARK(BM_conv_cumulus)->Apply(conv_args);

// Which tile the automatic choice should take for each pass: every tile
// forced (cuda::ConvTileScope) at every case; the label names the tile and
// marks the automatic one (tools/gpu-summary prints where a forced one wins).
void BM_conv_tile(benchmark::State& state) {
    if (!have_device(state)) return;
    const auto s = conv_case(state.range(0));
    const int pass = int(state.range(1));
    const auto tile = static_cast<cuda::GemmTile>(state.range(2));
    ConvOperands t(s);
    const bool is_auto = tile == cuda::conv2d_pass_tile(s, static_cast<cuda::ConvPass>(pass));
    // Inside the scope: the workspace is sized for the forced tile's split.
    const cuda::ConvTileScope scope(tile);
    auto ws_t = Tensor<float>::empty(Shape{std::max<std::int64_t>(1, cuda::conv2d_filter_workspace(s))}, Device::cuda(0));
    time_device(state, [&] {
        if (pass == 0) cuda::conv2d_forward(s, t.x.data(), t.w.data(), t.y.data());
        else if (pass == 1) cuda::conv2d_backward_data(s, t.dy.data(), t.w.data(), t.dx.data());
        else cuda::conv2d_backward_filter(s, t.x.data(), t.dy.data(), t.dw.data(), ws_t.data(), ws_t.numel());
    });
    state.counters["TFLOP/s"] = benchmark::Counter(conv_flops(s) * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
    state.SetLabel(conv_label(s, pass) + " " + cuda::gemm_tile_name(tile) + (is_auto ? " auto" : ""));
}
void conv_tile_args(benchmark::internal::Benchmark* b) {
    for (int i = 0; i < 3; ++i)
        for (int p = 0; p < 3; ++p)
            for (auto t : {cuda::GemmTile::Large, cuda::GemmTile::Medium, cuda::GemmTile::Small})
                b->Args({i, p, static_cast<int>(t)});
    b->UseManualTime()->Unit(benchmark::kMicrosecond);
}
CUDA_BENCHMARK(BM_conv_tile)->Apply(conv_tile_args);

// A handle on the library stream and the descriptors of one case (the
// three shapes have symmetric 'same' padding: odd kernels, stride 1).
struct CudnnConv {
    cudnn_util::Handle h;
    cudnn_util::ConvDescriptors d;
    explicit CudnnConv(const cpu::ConvShape& s) : d(s) {
        CUDNN_CHECK(cudnnCreate(h.out()));
        CUDNN_CHECK(cudnnSetStream(h, cuda::current_stream()));
    }
};

// Asks cuDNN for its algorithms for one pass (find(&found, perf) fills up to
// 8), takes the fastest that runs in plain FP32 (no tensor cores: reported
// in CUDNN_FMA_MATH, as the descriptor asks, or CUDNN_DEFAULT_MATH), and times
// run(algo, workspace, bytes) with it. False (the benchmark marked failed)
// when there is none.
template <typename Perf, typename Find, typename Run>
bool time_fastest_fp32(benchmark::State& state, std::string& algo, Find&& find, Run&& run) {
    Perf perf[8];
    int found = 0;
    CUDNN_CHECK(find(&found, perf));
    int best = -1;
    for (int i = 0; i < found && best < 0; ++i)  // cuDNN lists them fastest first
        if (perf[i].status == CUDNN_STATUS_SUCCESS &&
            (perf[i].mathType == CUDNN_FMA_MATH || perf[i].mathType == CUDNN_DEFAULT_MATH))
            best = i;
    if (best < 0) {
        state.SkipWithError("cuDNN found no FP32 algorithm for this pass");
        return false;
    }
    const std::size_t bytes = perf[best].memory;
    algo = std::to_string(int(perf[best].algo));
    cuda::Scratch<unsigned char> ws(bytes);
    const auto a = perf[best].algo;
    time_device(state, [&] { CUDNN_CHECK(run(a, ws.get(), bytes)); });
    return true;
}

void BM_conv_cudnn(benchmark::State& state) {
    if (!have_device(state)) return;
    const auto s = conv_case(state.range(0));
    const int pass = int(state.range(1));
    ConvOperands t(s);
    auto &x = t.x, &w = t.w, &dy = t.dy, &y = t.y, &dx = t.dx, &dw = t.dw;
    CudnnConv c(s);
    const float one = 1.0f, zero = 0.0f;
    std::string algo;
    bool ok = false;
    if (pass == 0)
        ok = time_fastest_fp32<cudnnConvolutionFwdAlgoPerf_t>(
            state, algo,
            [&](int* found, auto* perf) {
                return cudnnFindConvolutionForwardAlgorithm(c.h, c.d.x, c.d.w, c.d.conv, c.d.y, 8, found, perf);
            },
            [&](auto a, void* ws, std::size_t bytes) {
                return cudnnConvolutionForward(c.h, &one, c.d.x, x.data(), c.d.w, w.data(), c.d.conv, a, ws, bytes,
                                               &zero, c.d.y, y.data());
            });
    else if (pass == 1)
        ok = time_fastest_fp32<cudnnConvolutionBwdDataAlgoPerf_t>(
            state, algo,
            [&](int* found, auto* perf) {
                return cudnnFindConvolutionBackwardDataAlgorithm(c.h, c.d.w, c.d.y, c.d.conv, c.d.x, 8, found, perf);
            },
            [&](auto a, void* ws, std::size_t bytes) {
                return cudnnConvolutionBackwardData(c.h, &one, c.d.w, w.data(), c.d.y, dy.data(), c.d.conv, a, ws,
                                                    bytes, &zero, c.d.x, dx.data());
            });
    else
        ok = time_fastest_fp32<cudnnConvolutionBwdFilterAlgoPerf_t>(
            state, algo,
            [&](int* found, auto* perf) {
                return cudnnFindConvolutionBackwardFilterAlgorithm(c.h, c.d.x, c.d.y, c.d.conv, c.d.w, 8, found, perf);
            },
            [&](auto a, void* ws, std::size_t bytes) {
                return cudnnConvolutionBackwardFilter(c.h, &one, c.d.x, x.data(), c.d.y, dy.data(), c.d.conv, a, ws,
                                                      bytes, &zero, c.d.w, dw.data());
            });
    if (!ok) return;
    state.counters["TFLOP/s"] = benchmark::Counter(conv_flops(s) * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
    state.SetLabel(conv_label(s, pass) + " (algo " + algo + ")");
}
CUDA_BENCHMARK(BM_conv_cudnn)->Apply(conv_args);

// ---- 2x2 max pooling after the three convolutions; args: shape, pass (0 fwd, 1 bwd)

cpu::ConvShape pool_case(std::int64_t i) {
    const auto c = conv_case(i);
    return cpu::pool_shape(c.n, c.oh, c.ow, c.oc, 2, 2, 2, 2, cpu::Padding::Valid);
}

void pool_args(benchmark::internal::Benchmark* b) {
    for (int i = 0; i < 3; ++i)
        for (int p = 0; p < 2; ++p) b->Args({i, p});
    b->UseManualTime()->Unit(benchmark::kMicrosecond);
}

std::string pool_label(const cpu::ConvShape& s, int pass) {
    return std::to_string(s.n) + "x" + std::to_string(s.h) + "x" + std::to_string(s.w) + "x" + std::to_string(s.c) +
           " max 2x2 " + (pass ? "bwd" : "fwd");
}

void BM_pool_cumulus(benchmark::State& state) {
    if (!have_device(state)) return;
    const auto s = pool_case(state.range(0));
    const int pass = int(state.range(1));
    auto x = random_device(s.in_size(), 4), dy = random_device(s.out_size(), 5);
    auto y = Tensor<float>::empty(Shape{s.out_size()}, Device::cuda(0));
    auto dx = Tensor<float>::empty(Shape{s.in_size()}, Device::cuda(0));
    auto arg = Tensor<std::int32_t>::empty(Shape{s.out_size()}, Device::cuda(0));
    cuda::max_pool_forward(s, x.data(), y.data(), arg.data());
    time_device(state, [&] {
        if (pass == 0) cuda::max_pool_forward(s, x.data(), y.data(), arg.data());
        else cuda::max_pool_backward(s, dy.data(), arg.data(), dx.data());
    });
    state.SetLabel(pool_label(s, pass));
}
CUDA_BENCHMARK(BM_pool_cumulus)->Apply(pool_args);

void BM_pool_cudnn(benchmark::State& state) {
    if (!have_device(state)) return;
    const auto s = pool_case(state.range(0));
    const int pass = int(state.range(1));
    auto x = random_device(s.in_size(), 4), dy = random_device(s.out_size(), 5);
    auto y = Tensor<float>::empty(Shape{s.out_size()}, Device::cuda(0));
    auto dx = Tensor<float>::empty(Shape{s.in_size()}, Device::cuda(0));
    cudnn_util::Handle h;
    CUDNN_CHECK(cudnnCreate(h.out()));
    CUDNN_CHECK(cudnnSetStream(h, cuda::current_stream()));
    cudnn_util::TensorDesc xd, yd;
    cudnn_util::PoolDesc pd;
    CUDNN_CHECK(cudnnCreateTensorDescriptor(xd.out()));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(yd.out()));
    CUDNN_CHECK(cudnnCreatePoolingDescriptor(pd.out()));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, int(s.n), int(s.c), int(s.h), int(s.w)));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, int(s.n), int(s.c), int(s.oh), int(s.ow)));
    CUDNN_CHECK(cudnnSetPooling2dDescriptor(pd, CUDNN_POOLING_MAX, CUDNN_NOT_PROPAGATE_NAN, 2, 2, 0, 0, 2, 2));
    const float one = 1.0f, zero = 0.0f;
    CUDNN_CHECK(cudnnPoolingForward(h, pd, &one, xd, x.data(), &zero, yd, y.data()));
    time_device(state, [&] {
        if (pass == 0) CUDNN_CHECK(cudnnPoolingForward(h, pd, &one, xd, x.data(), &zero, yd, y.data()));
        else
            CUDNN_CHECK(cudnnPoolingBackward(h, pd, &one, yd, y.data(), yd, dy.data(), xd, x.data(), &zero, xd, dx.data()));
    });
    state.SetLabel(pool_label(s, pass));
}
CUDA_BENCHMARK(BM_pool_cudnn)->Apply(pool_args);

// ---- one epoch of the mnist_cnn model (60000 x 28x28x1, batch 100, Adam)

void BM_cnn_epoch(benchmark::State& state) {
    if (!have_device(state)) return;
    const std::int64_t n = 60000;
    Philox rng(12, 0);
    std::vector<std::uint8_t> x(static_cast<std::size_t>(n * 784)), y(static_cast<std::size_t>(n));
    for (auto& v : x) v = std::uint8_t(rng.below(256));
    for (auto& v : y) v = std::uint8_t(rng.below(10));
    auto ds = data::Dataset::from_uint8(Tensor<std::uint8_t>::from_vector(Shape{n, 28, 28, 1}, x),
                                        Tensor<std::uint8_t>::from_vector(Shape{n}, y))
                  .to(Device::cuda(0));
    nn::Sequential<float> model(Shape{28, 28, 1}, 0);
    model.add(nn::Conv2D<float>(32, 5, 1, nn::Padding::Same, nn::Activation::ReLU));
    model.add(nn::MaxPool2D<float>(2, 2));
    model.add(nn::Conv2D<float>(64, 5, 1, nn::Padding::Same, nn::Activation::ReLU));
    model.add(nn::MaxPool2D<float>(2, 2));
    model.add(nn::Flatten<float>());
    model.add(nn::Dense<float>(1024, nn::Activation::ReLU));
    model.add(nn::Dropout<float>(0.4f));
    model.add(nn::Dense<float>(10));
    model.to(Device::cuda(0));
    optim::Adam<float> opt(0.001f);
    train::FitOptions<float> fo;
    fo.batch_size = 100;
    fo.verbose = train::Verbosity::Silent;
    fo.loss = nn::SoftmaxCrossEntropy{.from_logits = true};  // the model ends in logits
    train::fit(model, opt, ds, fo);  // warm-up epoch
    int epoch = 1;
    for (auto _ : state) {
        fo.initial_epoch = epoch;
        fo.epochs = ++epoch;
        train::fit(model, opt, ds, fo);
    }
    state.SetLabel("mnist_cnn, batch 100");
}
CUDA_BENCHMARK(BM_cnn_epoch)->Iterations(3)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
