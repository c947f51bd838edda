// The CUDA convolution and pooling kernels (cumulus/cuda/conv.cuh, pool.cuh)
// against the CPU references (cumulus/cpu/conv.hpp, pool.hpp, in double) on
// fresh random inputs of many shapes: odd sizes, 1x1 and 5x5 kernels, strides
// 1-3, both paddings (TensorFlow's 'same' pads more after than before for
// even totals), channels not a multiple of 4, one-image batches. Outputs are
// NaN-poisoned before each call, so an element a kernel forgets shows. Where
// cuDNN supports the same configuration (symmetric padding), it is compared
// too, as the reference, FP32, NHWC. Also: a Conv2D + MaxPool2D model trains
// for a few steps on the GPU as on the CPU.
//
// A plain main: exits 77 with the reason when there is no CUDA device.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#if CUMULUS_HAVE_CUDNN
#include "cudnn_util.hpp"
#endif

#include <cumulus/cpu/conv.hpp>
#include <cumulus/cpu/pool.hpp>
#include <cumulus/cuda.hpp>
#include <cumulus/data/dataset.hpp>
#include <cumulus/nn/conv2d.hpp>
#include <cumulus/nn/dense.hpp>
#include <cumulus/nn/flatten.hpp>
#include <cumulus/nn/pool.hpp>
#include <cumulus/nn/sequential.hpp>
#include <cumulus/ops/conv.hpp>
#include <cumulus/ops/pool.hpp>
#include <cumulus/optim/adam.hpp>
#include <cumulus/train/fit.hpp>

#include "cuda_test_util.hpp"

using namespace cumulus;
using cuda_test::expect;

namespace {

struct Case {
    std::int64_t n, h, w, c, kh, kw, oc, sh, sw;
    cpu::Padding pad;
};

std::string describe(const Case& k) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "n=%lld %lldx%lldx%lld k=%lldx%lld o=%lld s=%lldx%lld %s", (long long)k.n,
                  (long long)k.h, (long long)k.w, (long long)k.c, (long long)k.kh, (long long)k.kw, (long long)k.oc,
                  (long long)k.sh, (long long)k.sw, cpu::padding_name(k.pad));
    return buf;
}

// max |got - want| / max(1, max |want|): float32 sums of a few hundred terms land near 1e-6.
double rel_err(const std::vector<float>& got, const std::vector<float>& want, int* nans = nullptr) {
    double err = 0, scale = 1;
    int bad = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
        scale = std::max(scale, double(std::fabs(want[i])));
        if (std::isnan(got[i]) != std::isnan(want[i])) ++bad;
        else if (!std::isnan(want[i])) err = std::max(err, double(std::fabs(got[i] - want[i])));
    }
    if (nans) *nans = bad;
    return err / scale;
}

void check_close(const std::vector<float>& got, const std::vector<float>& want, double tol, const std::string& what) {
    int nans = 0;
    const double e = rel_err(got, want, &nans);
    expect(got.size() == want.size() && nans == 0 && e <= tol,
           what + ": relative error " + std::to_string(e) + ", " + std::to_string(nans) + " NaN mismatches");
}

std::vector<Case> cases(Philox& rng) {
    using P = cpu::Padding;
    std::vector<Case> v = {
        {100, 28, 28, 1, 5, 5, 32, 1, 1, P::Same},   // Deep MNIST conv 1
        {3, 14, 14, 32, 5, 5, 64, 1, 1, P::Same},    // Deep MNIST conv 2 (small batch)
        {2, 28, 28, 1, 3, 3, 64, 1, 1, P::Same},     // Fashion CNN conv 1
        {2, 14, 14, 64, 3, 3, 32, 1, 1, P::Same},    // Fashion CNN conv 2
        {1, 1, 1, 1, 1, 1, 1, 1, 1, P::Valid},       // everything 1
        {2, 7, 5, 3, 1, 1, 5, 1, 1, P::Valid},       // pointwise
        {1, 8, 8, 2, 2, 2, 3, 2, 2, P::Same},        // even kernel: no padding needed
        {2, 9, 7, 5, 4, 3, 6, 2, 3, P::Same},        // asymmetric 'same' padding
        {1, 11, 13, 3, 3, 5, 7, 3, 2, P::Valid},
        {3, 6, 6, 4, 6, 6, 2, 1, 1, P::Valid},       // the kernel covers the image
        {1, 5, 5, 1, 7, 7, 1, 1, 1, P::Same},        // kernel larger than the image
        {2, 10, 10, 8, 3, 3, 130, 1, 1, P::Same},    // filters past one tile
        {2, 9, 8, 3, 1, 1, 4, 2, 2, P::Valid},       // kernel smaller than the stride: input pixels no tap reads
        {2, 7, 9, 3, 3, 2, 5, 1, 2, P::Same},        // mixed strides (the strided gather with sh = 1)
        {1, 10, 6, 2, 2, 3, 3, 3, 1, P::Valid},      // and sw = 1
    };
    for (int i = 0; i < 12; ++i) {
        Case k;
        k.n = 1 + rng.below(4);
        k.h = 1 + rng.below(17);
        k.w = 1 + rng.below(17);
        k.c = 1 + rng.below(9);
        k.kh = 1 + rng.below(5);
        k.kw = 1 + rng.below(5);
        k.oc = 1 + rng.below(40);
        k.sh = 1 + rng.below(3);
        k.sw = 1 + rng.below(3);
        k.pad = rng.below(2) ? P::Same : P::Valid;
        if (k.pad == P::Valid && (k.kh > k.h || k.kw > k.w)) k.pad = P::Same;
        v.push_back(k);
    }
    return v;
}

#if CUMULUS_HAVE_CUDNN
// Runs one pass with the first of cuDNN's perf results (best first) that
// is supported, uses no tensor cores and succeeds: run(algo, workspace,
// bytes) returns cuDNN's status, bytes(algo, &n) the workspace it needs.
// The heuristics only predict support, so a candidate that fails is passed
// over rather than ending the test. The descriptor asks for CUDNN_FMA_MATH,
// and a result in CUDNN_DEFAULT_MATH is taken too, since FP32 data under FMA
// math cannot use TF32 (were it to, the 1e-5 checks against the CPU would
// fail). The FFT and Winograd algorithms (`transformed`) are passed over
// too: their rounding, not ours, could reach the tolerance, and a
// reference should be exact. Returns the algorithm used, or -1 if none ran.
template <typename Perf, typename Bytes, typename Run>
int run_first_fp32(const Perf* perf, int n, std::initializer_list<int> transformed, Bytes&& bytes, Run&& run) {
    for (int i = 0; i < n; ++i) {
        if (std::find(transformed.begin(), transformed.end(), int(perf[i].algo)) != transformed.end()) continue;
        if (perf[i].status != CUDNN_STATUS_SUCCESS ||
            (perf[i].mathType != CUDNN_FMA_MATH && perf[i].mathType != CUDNN_DEFAULT_MATH))
            continue;
        std::size_t ws_bytes = 0;
        if (bytes(perf[i].algo, &ws_bytes) != CUDNN_STATUS_SUCCESS) continue;
        cuda::Scratch<unsigned char> ws(ws_bytes);
        if (run(perf[i].algo, ws.get(), ws_bytes) == CUDNN_STATUS_SUCCESS) return int(perf[i].algo);
    }
    return -1;
}

// cuDNN's forward, backward-data and backward-filter for the same case (FP32,
// NHWC, wherever cuDNN's padding computes the same: cudnn_util::expressible);
// its filter layout is OHWI, so the HWIO kernel is transposed on the host.
// Returns false when cuDNN cannot express the case or offers no FP32
// algorithm for one of the passes.
bool cudnn_reference(const cpu::ConvShape& s, const std::vector<float>& x, const std::vector<float>& w,
                     const std::vector<float>& dy, std::vector<float>& y, std::vector<float>& dx,
                     std::vector<float>& dw, std::string& algos) {
    if (!cudnn_util::expressible(s)) return false;
    // One handle for the whole test, never destroyed: at static destruction
    // the CUDA runtime may be gone already.
    static const cudnnHandle_t handle = [] {
        cudnnHandle_t h;
        CUDNN_CHECK(cudnnCreate(&h));
        return h;
    }();
    CUDNN_CHECK(cudnnSetStream(handle, cuda::current_stream()));
    const cudnn_util::ConvDescriptors desc(s);
    std::vector<float> w_ohwi(w.size());
    for (std::int64_t i = 0; i < s.kh; ++i)
        for (std::int64_t j = 0; j < s.kw; ++j)
            for (std::int64_t c = 0; c < s.c; ++c)
                for (std::int64_t o = 0; o < s.oc; ++o)
                    w_ohwi[std::size_t(((o * s.kh + i) * s.kw + j) * s.c + c)] =
                        w[std::size_t(((i * s.kw + j) * s.c + c) * s.oc + o)];
    auto dx_ = cuda_test::to_device(Shape{s.in_size()}, x);
    auto dw_ = cuda_test::to_device(Shape{s.kernel_size()}, w_ohwi);
    auto ddy = cuda_test::to_device(Shape{s.out_size()}, dy);
    auto dyo = Tensor<float>::empty(Shape{s.out_size()}, Device::cuda(0));
    auto dxo = Tensor<float>::empty(Shape{s.in_size()}, Device::cuda(0));
    auto dwo = Tensor<float>::empty(Shape{s.kernel_size()}, Device::cuda(0));
    const float one = 1.0f, zero = 0.0f;
    // The algorithms: cuDNN's heuristics' candidates, in their order (a
    // fixed algorithm may not support NHWC, or a case).
    cudnnConvolutionFwdAlgoPerf_t fwd[16];
    cudnnConvolutionBwdDataAlgoPerf_t bwd_data[16];
    cudnnConvolutionBwdFilterAlgoPerf_t bwd_filter[16];
    int n_fwd = 0, n_data = 0, n_filter = 0;
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(handle, desc.x, desc.w, desc.conv, desc.y, 16, &n_fwd, fwd));
    CUDNN_CHECK(
        cudnnGetConvolutionBackwardDataAlgorithm_v7(handle, desc.w, desc.y, desc.conv, desc.x, 16, &n_data, bwd_data));
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle, desc.x, desc.y, desc.conv, desc.w, 16, &n_filter,
                                                              bwd_filter));
    const int f = run_first_fp32(
        fwd, n_fwd,
        {CUDNN_CONVOLUTION_FWD_ALGO_FFT, CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING, CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD,
         CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED},
        [&](auto algo, std::size_t* n) {
            return cudnnGetConvolutionForwardWorkspaceSize(handle, desc.x, desc.w, desc.conv, desc.y, algo, n);
        },
        [&](auto algo, void* ws, std::size_t n) {
            return cudnnConvolutionForward(handle, &one, desc.x, dx_.data(), desc.w, dw_.data(), desc.conv, algo, ws, n,
                                           &zero, desc.y, dyo.data());
        });
    const int d = run_first_fp32(
        bwd_data, n_data,
        {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT, CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING,
         CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD, CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED},
        [&](auto algo, std::size_t* n) {
            return cudnnGetConvolutionBackwardDataWorkspaceSize(handle, desc.w, desc.y, desc.conv, desc.x, algo, n);
        },
        [&](auto algo, void* ws, std::size_t n) {
            return cudnnConvolutionBackwardData(handle, &one, desc.w, dw_.data(), desc.y, ddy.data(), desc.conv, algo,
                                                ws, n, &zero, desc.x, dxo.data());
        });
    const int g = run_first_fp32(
        bwd_filter, n_filter,
        {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING,
         CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED},
        [&](auto algo, std::size_t* n) {
            return cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, desc.x, desc.y, desc.conv, desc.w, algo, n);
        },
        [&](auto algo, void* ws, std::size_t n) {
            return cudnnConvolutionBackwardFilter(handle, &one, desc.x, dx_.data(), desc.y, ddy.data(), desc.conv, algo,
                                                  ws, n, &zero, desc.w, dwo.data());
        });
    if (f < 0 || d < 0 || g < 0) return false;
    algos = "cuDNN algorithms " + std::to_string(f) + "/" + std::to_string(d) + "/" + std::to_string(g);
    y = dyo.to_vector();
    dx = dxo.to_vector();
    const auto dw_ohwi = dwo.to_vector();
    dw.assign(w.size(), 0.0f);
    for (std::int64_t i = 0; i < s.kh; ++i)
        for (std::int64_t j = 0; j < s.kw; ++j)
            for (std::int64_t c = 0; c < s.c; ++c)
                for (std::int64_t o = 0; o < s.oc; ++o)
                    dw[std::size_t(((i * s.kw + j) * s.c + c) * s.oc + o)] =
                        dw_ohwi[std::size_t(((o * s.kh + i) * s.kw + j) * s.c + c)];
    return true;
}
#endif

// The gathers' division by multiply-high against the / operator: every
// divisor to 4096 and some large ones, numerators at and around multiples
// of the divisor, random ones, and the largest, 2^31 - 1.
void test_fast_div() {
    Philox rng(2026, 13);
    std::vector<std::int64_t> divisors;
    for (std::int64_t d = 1; d <= 4096; ++d) divisors.push_back(d);
    for (std::int64_t d : {65535LL, 65536LL, 65537LL, 1000003LL, (1LL << 30) - 1, 1LL << 30, (1LL << 30) + 1,
                           (1LL << 31) - 2, (1LL << 31) - 1})
        divisors.push_back(d);
    for (int i = 0; i < 64; ++i) divisors.push_back(1 + std::int64_t(rng.next_u32() % ((1u << 31) - 1)));
    long long bad = 0, checked = 0;
    std::string first;
    for (std::int64_t d : divisors) {
        const cuda::conv_detail::FastDiv f(d);
        auto check = [&](std::int64_t n) {
            if (n < 0 || n > std::numeric_limits<int>::max()) return;
            ++checked;
            if (f.div(int(n)) != int(n / d) && bad++ == 0)
                first = std::to_string(n) + " / " + std::to_string(d) + " gave " + std::to_string(f.div(int(n)));
        };
        for (std::int64_t q : {std::int64_t(0), std::int64_t(1), std::int64_t(2), std::int64_t(3), std::int64_t(1000),
                               std::int64_t(std::numeric_limits<int>::max()) / d})
            for (std::int64_t off : {-1, 0, 1}) check(q * d + off);
        check(std::numeric_limits<int>::max());
        for (int i = 0; i < 64; ++i) check(std::int64_t(rng.next_u32() & 0x7fffffffu));
    }
    expect(bad == 0, "FastDiv: " + std::to_string(bad) + " of " + std::to_string(checked) + " quotients wrong, first " + first);
    bool refused = false;
    try {
        cuda::conv_detail::FastDiv zero(0);
    } catch (const std::exception&) {
        refused = true;
    }
    expect(refused, "FastDiv(0) is refused");
}

// Random operands of a convolution, on the host and on the device, drawn
// in a fixed order (x, w, bias, dy).
struct ConvOperands {
    std::vector<float> x, w, bias, dy;
    Tensor<float> gx, gw, gb, gdy;
};

ConvOperands random_operands(const cpu::ConvShape& s, Philox& rng) {
    ConvOperands o;
    o.x = cuda_test::random_floats(s.in_size(), rng);
    o.w = cuda_test::random_floats(s.kernel_size(), rng);
    o.bias = cuda_test::random_floats(s.oc, rng);
    o.dy = cuda_test::random_floats(s.out_size(), rng);
    o.gx = cuda_test::to_device(Shape{s.n, s.h, s.w, s.c}, o.x);
    o.gw = cuda_test::to_device(Shape{s.kh, s.kw, s.c, s.oc}, o.w);
    o.gb = cuda_test::to_device(Shape{s.oc}, o.bias);
    o.gdy = cuda_test::to_device(Shape{s.n, s.oh, s.ow, s.oc}, o.dy);
    return o;
}

void test_conv(Philox& rng) {
    int cudnn_cases = 0;
    for (const Case& k : cases(rng)) {
        const auto s = cpu::conv_shape(k.n, k.h, k.w, k.c, k.kh, k.kw, k.oc, k.sh, k.sw, k.pad);
        const std::string what = describe(k);
        auto operands = random_operands(s, rng);
        const auto &x = operands.x, &w = operands.w, &bias = operands.bias, &dy = operands.dy;
        auto &gx = operands.gx, &gw = operands.gw, &gb = operands.gb, &gdy = operands.gdy;
        auto gy = Tensor<float>::empty(Shape{s.n, s.oh, s.ow, s.oc}, Device::cuda(0));
        auto gdx = Tensor<float>::empty(Shape{s.n, s.h, s.w, s.c}, Device::cuda(0));
        auto gdw = Tensor<float>::empty(Shape{s.kh, s.kw, s.c, s.oc}, Device::cuda(0));

        std::vector<float> want(static_cast<std::size_t>(s.out_size()));
        std::vector<float> want_dx(static_cast<std::size_t>(s.in_size())), want_dw(static_cast<std::size_t>(s.kernel_size()));
        cpu::conv2d_backward_data_ref(s, dy.data(), w.data(), want_dx.data());
        cpu::conv2d_backward_filter_ref(s, x.data(), dy.data(), want_dw.data());
        // The three passes with the automatic tile, then (but for the large
        // first case, slow on the emulation) with each tile forced: the
        // automatic choice need not take every tile for every gather.
        auto passes = [&](cuda::GemmTile tile) {
            const cuda::ConvTileScope scope(tile);
            const std::string at = what + " tile " + cuda::gemm_tile_name(tile);
            for (Epilogue e : {Epilogue::None, Epilogue::Bias, Epilogue::BiasRelu}) {
                cpu::conv2d_forward_ref(s, x.data(), w.data(), e == Epilogue::None ? nullptr : bias.data(),
                                        want.data(), e == Epilogue::BiasRelu);
                cuda_test::poison(gy);
                ops::conv2d_forward(s, gx, gw, gy, e, e == Epilogue::None ? nullptr : &gb);
                check_close(gy.to_vector(), want, 1e-5, "conv2d_forward " + at + " epilogue " + std::to_string(int(e)));
            }
            cuda_test::poison(gdx);
            ops::conv2d_backward_data(s, gdy, gw, gdx);
            check_close(gdx.to_vector(), want_dx, 1e-5, "conv2d_backward_data " + at);
            // With and without a kept workspace (the layer's way and the launcher's scratch).
            Tensor<float> ws;
            for (int round = 0; round < 2; ++round) {
                cuda_test::poison(gdw);
                ops::conv2d_backward_filter(s, gx, gdy, gdw, round ? &ws : nullptr);
                check_close(gdw.to_vector(), want_dw, 1e-5,
                            "conv2d_backward_filter " + at + (round ? " (workspace)" : " (scratch)"));
            }
        };
        passes(cuda::GemmTile::Auto);
        if (s.out_size() <= 200000 && s.in_size() <= 200000)
            for (auto tile : {cuda::GemmTile::Large, cuda::GemmTile::Medium, cuda::GemmTile::Small}) passes(tile);
#if CUMULUS_HAVE_CUDNN
        std::vector<float> ry, rdx, rdw;
        std::string algos;
        if (cudnn_reference(s, x, w, dy, ry, rdx, rdw, algos)) {
            ++cudnn_cases;
            const std::string with = what + " (" + algos + ")";
            cpu::conv2d_forward_ref(s, x.data(), w.data(), static_cast<const float*>(nullptr), want.data(), false);
            check_close(ry, want, 1e-5, "cuDNN forward vs the CPU reference " + with);
            check_close(rdx, want_dx, 1e-5, "cuDNN backward data vs the CPU reference " + with);
            check_close(rdw, want_dw, 1e-5, "cuDNN backward filter vs the CPU reference " + with);
            cuda_test::poison(gy);
            ops::conv2d_forward(s, gx, gw, gy);
            check_close(gy.to_vector(), ry, 1e-5, "conv2d_forward vs cuDNN " + with);
        }
#endif
    }
    std::printf("conv: %d cases compared with cuDNN too\n", cudnn_cases);
#if CUMULUS_HAVE_CUDNN
    // Most random cases have symmetric padding: none compared means the
    // reference never ran, which must not pass unseen.
    expect(cudnn_cases > 0, "conv: no case was compared with cuDNN (no FP32 algorithm offered?)");
#endif
}

void test_pool(Philox& rng) {
    for (Case k : cases(rng)) {
        k.kh = std::min<std::int64_t>(k.kh, 4), k.kw = std::min<std::int64_t>(k.kw, 4);
        if (k.pad == cpu::Padding::Valid && (k.kh > k.h || k.kw > k.w)) k.pad = cpu::Padding::Same;
        const auto s = cpu::pool_shape(k.n, k.h, k.w, k.c, k.kh, k.kw, k.sh, k.sw, k.pad);
        const std::string what = describe(k);
        auto x = cuda_test::random_floats(s.in_size(), rng);
        if (x.size() > 3) x[1] = x[2];  // a tie: the first maximum must win on both
        const auto dy = cuda_test::random_floats(s.out_size(), rng);
        auto gx = cuda_test::to_device(Shape{s.n, s.h, s.w, s.c}, x);
        auto gdy = cuda_test::to_device(Shape{s.n, s.oh, s.ow, s.c}, dy);
        auto gy = Tensor<float>::empty(Shape{s.n, s.oh, s.ow, s.c}, Device::cuda(0));
        auto ga = Tensor<std::int32_t>::empty(Shape{s.n, s.oh, s.ow, s.c}, Device::cuda(0));
        auto gdx = Tensor<float>::empty(Shape{s.n, s.h, s.w, s.c}, Device::cuda(0));

        std::vector<float> y(static_cast<std::size_t>(s.out_size())), dx(static_cast<std::size_t>(s.in_size()));
        std::vector<std::int32_t> a(static_cast<std::size_t>(s.out_size()));
        cpu::max_pool_forward(s, x.data(), y.data(), a.data());
        cuda_test::poison(gy);
        cuda_test::poison(ga);
        ops::max_pool2d_forward(s, gx, gy, ga);
        check_close(gy.to_vector(), y, 0, "max_pool forward " + what);
        expect(ga.to_vector() == a, "max_pool argmax " + what);
        cpu::max_pool_backward(s, dy.data(), a.data(), dx.data());
        cuda_test::poison(gdx);
        ops::max_pool2d_backward(s, gdy, ga, gdx);
        check_close(gdx.to_vector(), dx, 1e-6, "max_pool backward " + what);

        cpu::avg_pool_forward(s, x.data(), y.data());
        cuda_test::poison(gy);
        ops::avg_pool2d_forward(s, gx, gy);
        check_close(gy.to_vector(), y, 1e-6, "avg_pool forward " + what);
        cpu::avg_pool_backward(s, dy.data(), dx.data());
        cuda_test::poison(gdx);
        ops::avg_pool2d_backward(s, gdy, gdx);
        check_close(gdx.to_vector(), dx, 1e-6, "avg_pool backward " + what);
    }
}

// A small CNN: 30 steps on the GPU follow the CPU's trajectory.
void test_training(Philox& rng) {
    const std::int64_t n = 256;
    std::vector<std::uint8_t> px(static_cast<std::size_t>(n * 12 * 12)), labels(static_cast<std::size_t>(n));
    for (auto& v : px) v = std::uint8_t(rng.below(256));
    for (auto& v : labels) v = std::uint8_t(rng.below(4));
    auto images = Tensor<std::uint8_t>::from_vector(Shape{n, 12, 12}, px);
    auto lab = Tensor<std::uint8_t>::from_vector(Shape{n}, labels);
    const auto ds = data::Dataset::from_uint8(images, lab).reshape_examples(Shape{12, 12, 1});
    auto run = [&](Device d) {
        nn::Sequential<float> m(Shape{12, 12, 1}, 3);
        m.add(nn::Conv2D<float>(6, 3, 1, nn::Padding::Same, nn::Activation::ReLU));
        m.add(nn::MaxPool2D<float>(2));
        m.add(nn::Conv2D<float>(5, 3, 2, nn::Padding::Valid, nn::Activation::ReLU));
        m.add(nn::AvgPool2D<float>(2, 1, nn::Padding::Same));
        m.add(nn::Flatten<float>());
        m.add(nn::Dense<float>(4, nn::Activation::Softmax));
        m.to(d);
        optim::Adam<float> opt(0.01f);
        train::FitOptions<float> fo;
        fo.epochs = 1;
        fo.batch_size = 8;  // 32 steps
        fo.seed = 11;
        fo.verbose = train::Verbosity::Silent;
        const auto h = train::fit(m, opt, ds, fo);
        std::vector<std::vector<float>> w;
        for (auto* p : m.parameters()) w.push_back(p->value.to_vector());
        return std::make_pair(h.epochs.back().loss, w);
    };
    const auto cpu_run = run(Device::cpu());
    const auto gpu_run = run(Device::cuda(0));
    expect(cuda_test::close(gpu_run.first, cpu_run.first, 1e-4, 0),
           "CNN epoch loss on the GPU " + std::to_string(gpu_run.first) + " vs the CPU " + std::to_string(cpu_run.first));
    double worst = 0;
    for (std::size_t p = 0; p < cpu_run.second.size(); ++p)
        for (std::size_t i = 0; i < cpu_run.second[p].size(); ++i)
            worst = std::max(worst, double(std::fabs(gpu_run.second[p][i] - cpu_run.second[p][i])));
    expect(worst <= 1e-3, "CNN final weights on the GPU within 1e-3 of the CPU: " + std::to_string(worst));
    std::printf("CNN, 32 steps: loss %.6f (GPU) vs %.6f (CPU), weights within %.3g\n", gpu_run.first, cpu_run.first,
                worst);
}

// A caller's workspace for the backward-filter partial sums is checked
// against what the geometry needs.
void test_filter_workspace() {
    const auto s = cpu::conv_shape(100, 28, 28, 1, 5, 5, 32, 1, 1, cpu::Padding::Same);  // mnist_cnn's first conv
    const std::int64_t need = cuda::conv2d_filter_workspace(s);
    expect(need > 0, "the first mnist_cnn conv splits its backward-filter sum");
    auto x = Tensor<float>::zeros(Shape{s.n, s.h, s.w, s.c}, Device::cuda(0));
    auto dy = Tensor<float>::zeros(Shape{s.n, s.oh, s.ow, s.oc}, Device::cuda(0));
    auto dw = Tensor<float>::empty(Shape{s.kh, s.kw, s.c, s.oc}, Device::cuda(0));
    auto ws = Tensor<float>::empty(Shape{need}, Device::cuda(0));
    std::string err;
    try {
        cuda::conv2d_backward_filter(s, x.data(), dy.data(), dw.data(), ws.data(), need - 1);
    } catch (const std::exception& e) {
        err = e.what();
    }
    expect(err.find("the workspace holds " + std::to_string(need - 1) + " elements") != std::string::npos,
           "a short workspace is refused, got '" + err + "'");
    cuda::conv2d_backward_filter(s, x.data(), dy.data(), dw.data(), ws.data(), need);
    const auto got = dw.to_vector();
    expect(std::all_of(got.begin(), got.end(), [](float v) { return v == 0.0f; }), "zero data, zero filter gradient");
}

// Geometries whose products reach 2^31 are refused with the product named,
// before a launch, even where no tensor is large: an empty batch of huge
// images (whose H*W a gather divides by) and a huge kernel.
void test_geometry_limits() {
    auto message = [](auto&& call) {
        try {
            call();
        } catch (const std::exception& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    float* none = nullptr;
    const auto huge = cpu::conv_shape(0, 50000, 50000, 1, 3, 3, 8, 1, 1, cpu::Padding::Same);  // H*W = 2.5e9
    auto got = message([&] { cuda::conv2d_backward_filter(huge, none, none, none); });
    expect(got.find("cuda::conv2d_backward_filter: H*W (an image) must be under 2^31") != std::string::npos,
           "an empty batch of 50000x50000 images is refused for H*W, got '" + got + "'");
    got = message([&] { cuda::conv2d_forward(huge, none, none, none); });
    expect(got.find("cuda::conv2d_forward: H*W (an image) must be under 2^31") != std::string::npos,
           "and by the forward pass, got '" + got + "'");
    const auto wide = cpu::conv_shape(1, 8, 8, 65536, 3, 3, 4096, 1, 1, cpu::Padding::Same);  // 2.4e9 weights
    got = message([&] { cuda::conv2d_backward_data(wide, none, none, none); });
    expect(got.find("KH*KW*C*O (the kernel) must be under 2^31") != std::string::npos,
           "a 3x3x65536x4096 kernel is refused, got '" + got + "'");
    // Factors that would overflow 64 bits when multiplied are refused too.
    auto overflow = cpu::conv_shape(1, 8, 8, 1, 1, 1, 1, 1, 1, cpu::Padding::Valid);
    overflow.h = overflow.w = std::int64_t(1) << 40;
    got = message([&] { cuda::conv2d_forward(overflow, none, none, none); });
    expect(got.find("N*H*W*C (the input) must be under 2^31") != std::string::npos,
           "2^40 x 2^40 images are refused, got '" + got + "'");
    // Just under the limits passes the check (n = 0: nothing to launch).
    const auto edge = cpu::conv_shape(0, 46340, 46340, 1, 1, 1, 1, 1, 1, cpu::Padding::Valid);  // H*W = 2^31 - 9.5e4
    got = message([&] { cuda::conv2d_forward(edge, none, none, none); });
    expect(got == "no error", "46340x46340 images pass the geometry check, got '" + got + "'");
    // Strides whose product passes 2^31 would overflow DyTaps' packed remainders;
    // 2^31 - 1 itself (a prime: one stride of 2^31 - 1) still passes.
    const auto strided = cpu::conv_shape(1, 8, 8, 1, 1, 1, 1, 65536, 32768, cpu::Padding::Valid);
    got = message([&] { cuda::conv2d_backward_data(strided, none, none, none); });
    expect(got.find("SH*SW (the strides) must be under 2^31") != std::string::npos &&
               got.find("use smaller strides") != std::string::npos,
           "strides 65536x32768 are refused, got '" + got + "'");
    const auto at_limit = cpu::conv_shape(0, 8, 8, 1, 1, 1, 1, 2147483647, 1, cpu::Padding::Valid);
    got = message([&] { cuda::conv2d_backward_data(at_limit, none, none, none); });
    expect(got == "no error", "a product of exactly 2^31 - 1 passes, got '" + got + "'");
    auto negative_pad = cpu::conv_shape(1, 8, 8, 1, 3, 3, 1, 1, 1, cpu::Padding::Valid);
    negative_pad.pt = -1;
    got = message([&] { cuda::conv2d_backward_data(negative_pad, none, none, none); });
    expect(got.find("bad geometry") != std::string::npos && got.find("padding top -1") != std::string::npos,
           "a negative padding is refused, got '" + got + "'");
}

// More output tiles than a grid's y dimension holds (65535): the implicit
// GEMM puts its tiles on grid.x, row-major. A 1x1 convolution of 4 images of
// 1460 x 1460 is an 8.5M x 1 product (in each pass); one of
// 1 x 1100 x 1000 x 33 -> 33 on the small tile has two column tiles, so
// that both halves of the tile index are exercised (68,750 tiles), in each
// pass. Not on the emulation (hundreds of thousands of blocks of 256 fibers:
// too slow there), where the same tile arithmetic runs in every multi-tile
// case of test_conv; nor under racecheck (cuda_test::skip_large).
void test_many_tiles(Philox& rng) {
#ifndef CUMULUS_CUDA_EMULATION
    if (cuda_test::skip_large("conv2d with more than 65535 output tiles")) return;
    struct Big {
        cpu::ConvShape s;
        cuda::GemmTile tile;
    };
    const Big cases[] = {{cpu::conv_shape(4, 1460, 1460, 1, 1, 1, 1, 1, 1, cpu::Padding::Valid), cuda::GemmTile::Auto},
                         {cpu::conv_shape(1, 1100, 1000, 33, 1, 1, 33, 1, 1, cpu::Padding::Valid),
                          cuda::GemmTile::Small}};
    for (const Big& c : cases) {
        const auto& s = c.s;
        cuda::ConvTileScope scope(c.tile);
        for (const auto pass : {cuda::ConvPass::Forward, cuda::ConvPass::BackwardData}) {
            const auto p = cuda::conv2d_pass_product(s, pass);
            const auto t = cuda::gemm_tile_dims(cuda::conv2d_pass_tile(s, pass));
            const std::int64_t tiles = cuda::ceil_div(p.m, t.bm) * cuda::ceil_div(p.n, t.bn);
            expect(tiles > 65535, "the large case has more tiles than grid.y holds: " + std::to_string(tiles));
        }
        const std::string what = std::to_string(s.n) + "x" + std::to_string(s.h) + "x" + std::to_string(s.w) + "x" +
                                 std::to_string(s.c) + " -> " + std::to_string(s.oc) + " 1x1";
        auto operands = random_operands(s, rng);
        const auto &x = operands.x, &w = operands.w, &bias = operands.bias, &dy = operands.dy;
        auto &gx = operands.gx, &gw = operands.gw, &gb = operands.gb, &gdy = operands.gdy;
        auto gy = Tensor<float>::empty(Shape{s.n, s.oh, s.ow, s.oc}, Device::cuda(0));
        std::vector<float> want(static_cast<std::size_t>(s.out_size()));
        cpu::conv2d_forward_ref(s, x.data(), w.data(), bias.data(), want.data(), false);
        cuda_test::poison(gy);
        ops::conv2d_forward(s, gx, gw, gy, Epilogue::Bias, &gb);
        check_close(gy.to_vector(), want, 1e-5, "conv2d_forward, many tiles: " + what);
        auto gdx = Tensor<float>::empty(Shape{s.n, s.h, s.w, s.c}, Device::cuda(0));
        std::vector<float> want_dx(static_cast<std::size_t>(s.in_size()));
        cpu::conv2d_backward_data_ref(s, dy.data(), w.data(), want_dx.data());
        cuda_test::poison(gdx);
        ops::conv2d_backward_data(s, gdy, gw, gdx);
        check_close(gdx.to_vector(), want_dx, 1e-5, "conv2d_backward_data, many tiles: " + what);
    }
#else
    (void)rng;
#endif
}

}  // namespace

int main() {
    if (cuda_test::no_device()) return cuda_test::kSkip;
    try {
        Philox rng(2026, 12);
        test_fast_div();
        test_conv(rng);
        test_pool(rng);
        test_training(rng);
        test_filter_workspace();
        test_geometry_limits();
        test_many_tiles(rng);
        cuda::synchronize();
    } catch (const std::exception& e) {
        expect(false, std::string("exception: ") + e.what());
    }
    return cuda_test::finish("CUDA conv and pool vs CPU");
}
