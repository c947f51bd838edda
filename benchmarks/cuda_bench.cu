// The CUDA kernels next to their references, on the device: the hand-written
// SGEMM next to cuBLAS SGEMM (FP32, tensor cores off) at the MLP's shapes
// (batch 128, forward and both backward products; split along K where the
// output tiles leave SMs idle, as the Dense layer runs them) and at 1024^3 ..
// 4096^3;
// the fused softmax cross-entropy and the fused optimizer update next to
// their bandwidth floor (bytes moved / a measured device-to-device copy);
// one epoch of the Keras mnist_mlp model (synthetic uint8 data of MNIST's
// shape: the time does not depend on the pixel values).
//
// Device work is timed with CUDA events around `kReps` launches after a
// warm-up, queued behind a busy wait so that the host's issue rate is not
// what is timed (manual time per launch; cuda_bench_util.hpp). Counters:
// TFLOP/s for GEMM, GB/s for the memory-bound kernels. tools/gpu-check turns the JSON output into a table.
#include <benchmark/benchmark.h>
#include <cublas_v2.h>

#include <cmath>
#include <iterator>
#include <string>
#include <vector>

#include <cumulus/cuda.hpp>
#include <cumulus/data/dataset.hpp>
#include <cumulus/nn/dense.hpp>
#include <cumulus/nn/dropout.hpp>
#include <cumulus/nn/sequential.hpp>
#include <cumulus/optim/rmsprop.hpp>
#include <cumulus/train/fit.hpp>

#include "cuda_bench_util.hpp"

using namespace cumulus;

namespace {

using cuda_bench::have_device;
using cuda_bench::random_device;
using cuda_bench::time_device;

// The products benchmarked: M, N, K, ta, tb (the label names each).
constexpr std::int64_t kGemmShapes[][5] = {
    {128, 512, 784, 0, 0},   {128, 512, 512, 0, 0},   {128, 10, 512, 0, 0},     // MLP forward
    {784, 512, 128, 1, 0},   {512, 512, 128, 1, 0},   {512, 10, 128, 1, 0},     // dW = x^T dz
    {128, 512, 10, 0, 1},    {128, 512, 512, 0, 1},   {128, 784, 512, 0, 1},    // dx = dz W^T
    {1024, 1024, 1024, 0, 0}, {2048, 2048, 2048, 0, 0}, {4096, 4096, 4096, 0, 0},
};

void gemm_args(benchmark::internal::Benchmark* b) {
    for (const auto& g : kGemmShapes) b->Args({g[0], g[1], g[2], g[3], g[4]});
    b->UseManualTime()->Unit(benchmark::kMicrosecond);
}

// The MLP's nine products come first in kGemmShapes.
constexpr int kMlpShapes = 9;

// The same products with each tile shape forced (6th arg: a GemmTile), the
// MLP's on the medium and small tiles also split along K in 2, 4 and 8
// ranges (7th arg: the K splits, as gemm_split_for makes them; each count
// once), the large squares on the large tile also in 2.
struct TileRow {
    int shape;  // index into kGemmShapes
    cuda::GemmTile tile;
    std::int64_t splits;
};
std::vector<TileRow> fixed_tile_rows() {
    std::vector<TileRow> rows;
    for (int i = 0; i < int(std::size(kGemmShapes)); ++i) {
        const std::int64_t K = kGemmShapes[i][2];
        for (auto t : {cuda::GemmTile::Large, cuda::GemmTile::Medium, cuda::GemmTile::Small}) {
            rows.push_back({i, t, 1});
            // The large squares: the large tile also split in two (1024^3's plan on 132 SMs).
            if (i >= kMlpShapes && t == cuda::GemmTile::Large) rows.push_back({i, t, 2});
            if (i >= kMlpShapes || t == cuda::GemmTile::Large) continue;
            std::int64_t last = 1;
            for (std::int64_t want : {2, 4, 8}) {
                const std::int64_t splits = cuda::gemm_split_for(t, K, want).splits;
                if (splits != last) rows.push_back({i, t, splits});
                last = splits;
            }
        }
    }
    return rows;
}
void add_tile_row(benchmark::internal::Benchmark* b, const TileRow& r) {
    const auto& g = kGemmShapes[r.shape];
    b->Args({g[0], g[1], g[2], g[3], g[4], std::int64_t(r.tile), r.splits});
}
void gemm_tile_args(benchmark::internal::Benchmark* b) {
    for (const TileRow& r : fixed_tile_rows()) add_tile_row(b, r);
    b->UseManualTime()->Unit(benchmark::kMicrosecond);
}

// A workspace of `need` floats on the device (none for 0), and its pointer.
struct Workspace {
    Tensor<float> t;
    explicit Workspace(std::int64_t need) {
        if (need > 0) t = Tensor<float>::empty(Shape{need}, Device::cuda(0));
    }
    float* data() { return t.defined() ? t.data() : nullptr; }
};

struct GemmOperands {
    std::int64_t M, N, K;
    Transpose ta, tb;
    Tensor<float> A, B, C;
    explicit GemmOperands(benchmark::State& st)
        : M(st.range(0)), N(st.range(1)), K(st.range(2)), ta(st.range(3) ? Transpose::Yes : Transpose::No),
          tb(st.range(4) ? Transpose::Yes : Transpose::No), A(random_device(M * K, 1)), B(random_device(K * N, 2)),
          C(random_device(M * N, 3)) {}
    std::int64_t lda() const { return ta == Transpose::No ? K : M; }
    std::int64_t ldb() const { return tb == Transpose::No ? N : K; }
    void counters(benchmark::State& st) const {
        st.counters["TFLOP/s"] = benchmark::Counter(2.0 * double(M) * double(N) * double(K) * double(st.iterations()) / 1e12,
                                                    benchmark::Counter::kIsRate);
        st.SetLabel(label());
    }
    std::string label() const {
        return std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) +
               (ta == Transpose::Yes ? " At" : "") + (tb == Transpose::Yes ? " Bt" : "");
    }
};

// What the layers run: gemm_auto_plan's tile and K split, with a workspace
// (the label names the tile and, as "/s7", the K ranges).
void BM_gemm_cumulus(benchmark::State& state) {
    if (!have_device(state)) return;
    GemmOperands o(state);
    const std::int64_t need = cuda::gemm_workspace(o.M, o.N, o.K);
    Workspace ws(need);
    time_device(state, [&] {
        cuda::gemm(o.ta, o.tb, o.M, o.N, o.K, 1.0f, o.A.data(), o.lda(), o.B.data(), o.ldb(), 0.0f, o.C.data(), o.N,
                   Epilogue::None, nullptr, cuda::current_stream(), ws.data(), need);
    });
    o.counters(state);
    const auto plan = cuda::gemm_auto_plan(o.M, o.N, o.K);
    state.SetLabel(o.label() + " " + cuda::gemm_tile_name(plan.tile) +
                   (plan.split.splits > 1 ? "/s" + std::to_string(plan.split.splits) : std::string()));
}
CUDA_BENCHMARK(BM_gemm_cumulus)->Apply(gemm_args);

// Which tile and K split the automatic choice (cuda::gemm_auto_plan, as
// BM_gemm_cumulus runs it) should take: every tile at
// every product, some splits at the MLP's; the label names the tile and the
// split ("32x32x32/s2": two K ranges) and marks the automatic one.
void BM_gemm_tile(benchmark::State& state) {
    if (!have_device(state)) return;
    GemmOperands o(state);
    const auto tile = static_cast<cuda::GemmTile>(state.range(5));
    const cuda::GemmSplit split = cuda::gemm_split_for(tile, o.K, state.range(6));
    const std::int64_t need = cuda::gemm_split_workspace(split, o.M, o.N);
    Workspace ws(need);
    time_device(state, [&] {
        cuda::gemm_planned({tile, split}, o.ta, o.tb, o.M, o.N, o.K, 1.0f, o.A.data(), o.lda(), o.B.data(), o.ldb(),
                           0.0f, o.C.data(), o.N, ws.data(), need);
    });
    o.counters(state);
    const auto plan = cuda::gemm_auto_plan(o.M, o.N, o.K);
    const bool is_auto = tile == plan.tile && split.splits == plan.split.splits;
    const std::string config =
        std::string(cuda::gemm_tile_name(tile)) + (split.splits > 1 ? "/s" + std::to_string(split.splits) : "");
    state.SetLabel(o.label() + " " + config + (is_auto ? " auto" : ""));
}
CUDA_BENCHMARK(BM_gemm_tile)->Apply(gemm_tile_args);

// Tile configurations the library does not use, timed next to its own (the
// summary's "gemm tile:" lines compare them too): 0, the large tile held to
// 128 registers so that two blocks share an SM (as __launch_bounds__ asks;
// the library's takes up to 135 and gets one); 1 and 2, the small tile's 32 x
// 32 outputs with 4 x 4 (64 threads) or 2 x 4 (128 threads) per thread
// instead of 2 x 2, so fewer shared loads per FFMA (it is LDS-bound), split
// along K as the small tile is. Whether one should replace a library tile
// is for the GPU to say.
using GemmLarge2Blocks = cuda::GemmConfig<128, 128, 8, 8, 8, 2>;
using GemmSmall4x4 = cuda::GemmConfig<32, 32, 32, 4, 4>;
using GemmSmall2x4 = cuda::GemmConfig<32, 32, 32, 2, 4>;
constexpr const char* kGemmVariants[] = {"128x128x8/2blk", "32x32x32/4x4", "32x32x32/2x4"};

void gemm_variant_args(benchmark::internal::Benchmark* b) {
    int i = 0;
    for (const auto& g : kGemmShapes) {
        for (std::int64_t v = 0; v < 3; ++v)
            if (v == 0 || i < kMlpShapes) b->Args({g[0], g[1], g[2], g[3], g[4], v});
        ++i;
    }
    b->UseManualTime()->Unit(benchmark::kMicrosecond);
}

void BM_gemm_variant(benchmark::State& state) {
    if (!have_device(state)) return;
    GemmOperands o(state);
    const std::int64_t v = state.range(5);
    const cuda::GemmSplit split = v == 0 ? cuda::GemmSplit{1, o.K}
                                         : cuda::gemm_auto_split(cuda::GemmTile::Small, o.M, o.N, o.K);
    Workspace ws(cuda::gemm_split_workspace(split, o.M, o.N));
    float* parts = ws.data();
    auto run = [&](auto cfg) {
        time_device(state, [&] {
            cuda::detail::gemm_run<decltype(cfg), float>(o.ta, o.tb, o.M, o.N, o.K, split, parts, 1.0f, o.A.data(),
                                                          o.lda(), o.B.data(), o.ldb(), 0.0f, o.C.data(), o.N,
                                                          Epilogue::None, nullptr, cuda::current_stream());
        });
    };
    if (v == 0) run(GemmLarge2Blocks{});
    else if (v == 1) run(GemmSmall4x4{});
    else run(GemmSmall2x4{});
    // A fast wrong answer is no figure: the variant must agree with the library's tile.
    auto ref = Tensor<float>::empty(Shape{o.M * o.N}, Device::cuda(0));
    cuda::gemm_with_tile(v == 0 ? cuda::GemmTile::Large : cuda::GemmTile::Small, o.ta, o.tb, o.M, o.N, o.K, 1.0f,
                         o.A.data(), o.lda(), o.B.data(), o.ldb(), 0.0f, ref.data(), o.N);
    const std::vector<float> got = o.C.to_vector(), want = ref.to_vector();
    double d2 = 0, r2 = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
        d2 += double(got[i] - want[i]) * double(got[i] - want[i]);
        r2 += double(want[i]) * double(want[i]);
    }
    if (!(d2 <= 1e-10 * r2)) {
        state.SkipWithError(("tile variant " + std::string(kGemmVariants[v]) + " differs from the library's tile by " +
                             std::to_string(std::sqrt(d2 / (r2 > 0 ? r2 : 1))) + " (relative)")
                                .c_str());
        return;
    }
    o.counters(state);
    state.SetLabel(o.label() + " " + kGemmVariants[v] +
                   (split.splits > 1 ? "/s" + std::to_string(split.splits) : std::string()));
}
CUDA_BENCHMARK(BM_gemm_variant)->Apply(gemm_variant_args);

void BM_gemm_cublas(benchmark::State& state) {
    if (!have_device(state)) return;
    GemmOperands o(state);
    cublasHandle_t h = nullptr;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
        state.SkipWithError("cublasCreate failed");
        return;
    }
    // FP32 on CUDA cores: the default math mode keeps at least FP32's mantissa
    // (no TF32 unless asked for; tools/gpu-check also sets
    // NVIDIA_TF32_OVERRIDE=0), and is cuBLAS's fastest such mode. Pedantic
    // math, which the tests use, may be slower: it would flatter the ratio.
    // A failed call must not be timed as a fast one: each status is checked.
    struct Handle {
        cublasHandle_t h;
        ~Handle() { cublasDestroy(h); }
    } guard{h};
    auto check = [](cublasStatus_t st, const char* what) {
        if (st != CUBLAS_STATUS_SUCCESS) CUMULUS_FAIL(what, " failed: cuBLAS status ", int(st));
    };
    check(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    check(cublasSetStream(h, cuda::current_stream()), "cublasSetStream");
    const float one = 1.0f, zero = 0.0f;
    time_device(state, [&] {
        // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T.
        check(cublasSgemm(h, o.tb == Transpose::Yes ? CUBLAS_OP_T : CUBLAS_OP_N,
                          o.ta == Transpose::Yes ? CUBLAS_OP_T : CUBLAS_OP_N, int(o.N), int(o.M), int(o.K), &one,
                          o.B.data(), int(o.ldb()), o.A.data(), int(o.lda()), &zero, o.C.data(), int(o.N)),
              "cublasSgemm");
    });
    o.counters(state);
}
CUDA_BENCHMARK(BM_gemm_cublas)->Apply(gemm_args);

// ---- bandwidth: the floor for the memory-bound kernels

void set_bandwidth(benchmark::State& st, double bytes) {
    st.counters["GB/s"] = benchmark::Counter(bytes * double(st.iterations()) / 1e9, benchmark::Counter::kIsRate);
    st.counters["bytes"] = bytes;
}

void BM_d2d_copy(benchmark::State& state) {
    if (!have_device(state)) return;
    const std::int64_t n = std::int64_t(1) << 28;  // 1 GiB of floats each way
    auto a = Tensor<float>::empty(Shape{n}, Device::cuda(0));
    auto b = Tensor<float>::empty(Shape{n}, Device::cuda(0));
    CUMULUS_CUDA_CHECK(cudaMemsetAsync(a.data(), 1, a.nbytes(), cuda::current_stream()));
    time_device(state, [&] {
        CUMULUS_CUDA_CHECK(cudaMemcpyAsync(b.data(), a.data(), a.nbytes(), cudaMemcpyDeviceToDevice,
                                           cuda::current_stream()));
    });
    set_bandwidth(state, 2.0 * double(a.nbytes()));  // read + write
}
CUDA_BENCHMARK(BM_d2d_copy)->UseManualTime()->Unit(benchmark::kMicrosecond);

// rows x cols logits; reads logits + labels, writes the gradient.
void BM_softmax_xent(benchmark::State& state) {
    if (!have_device(state)) return;
    const std::int64_t rows = state.range(0), cols = state.range(1);
    auto x = random_device(rows * cols, 4);
    std::vector<std::int32_t> lab(static_cast<std::size_t>(rows));
    for (std::int64_t i = 0; i < rows; ++i) lab[std::size_t(i)] = std::int32_t(i % cols);
    auto labels = Tensor<std::int32_t>::from_vector(Shape{rows}, lab).to(Device::cuda(0));
    auto g = Tensor<float>::empty(Shape{rows * cols}, Device::cuda(0));
    auto totals = Tensor<std::uint8_t>::empty(Shape{std::int64_t(sizeof(cuda::XentTotals))}, Device::cuda(0));
    cuda::XentWorkspace ws;
    time_device(state, [&] {
        cuda::softmax_xent_async(x.data(), labels.data(), g.data(), rows, cols, rows,
                                 reinterpret_cast<cuda::XentTotals*>(totals.data()), true, &ws);
    });
    set_bandwidth(state, double(rows * cols) * 8.0 + double(rows) * 4.0);
    state.SetLabel(std::to_string(rows) + "x" + std::to_string(cols));
}
CUDA_BENCHMARK(BM_softmax_xent)->Args({128, 10})->Args({65536, 10})->Args({8192, 1000})->UseManualTime()->Unit(benchmark::kMicrosecond);

// The MLP's parameters (669,706) or a large set: RMSprop reads w, g, ms and writes w, ms.
void BM_rmsprop_multi(benchmark::State& state) {
    if (!have_device(state)) return;
    const std::vector<std::int64_t> sizes = state.range(0) == 0
                                                ? std::vector<std::int64_t>{784 * 512, 512, 512 * 512, 512, 512 * 10, 10}
                                                : std::vector<std::int64_t>{std::int64_t(1) << 26, 4097, 1 << 20};
    std::vector<Tensor<float>> w, g, s;
    std::vector<cuda::ParamSlots<float>> slots;
    double elems = 0;
    for (auto n : sizes) {
        w.push_back(random_device(n, 5));
        g.push_back(random_device(n, 6));
        s.push_back(random_device(n, 7, 0.01f, 1.0f));  // mean squares: positive
        slots.push_back({w.back().data(), g.back().data(), s.back().data(), nullptr, n, 0});
        elems += double(n);
    }
    cuda::MultiTensorList<float> list(slots);
    time_device(state, [&] { cuda::rmsprop_update_multi(list, {1e-3f, 0.9f, 1e-7f}); });
    set_bandwidth(state, elems * 4.0 * 5.0);
    state.SetLabel(state.range(0) == 0 ? "mnist_mlp params" : "68M params");
}
CUDA_BENCHMARK(BM_rmsprop_multi)->Arg(0)->Arg(1)->UseManualTime()->Unit(benchmark::kMicrosecond);

// ---- one epoch of the Keras mnist_mlp model (60000 x 784, batch 128)

// Args: graph (1: the step captured once and replayed), split (1: the
// Dense products planned by gemm_auto_plan; 0: gemm_auto_tile unsplit, one launch each).
void BM_mlp_epoch(benchmark::State& state) {
    if (!have_device(state)) return;
    const bool graph = state.range(0) != 0;
    const cuda::GemmSplitScope split(state.range(1) != 0);
    const std::int64_t n = 60000;
    Philox rng(11, 0);
    std::vector<std::uint8_t> x(static_cast<std::size_t>(n * 784)), y(static_cast<std::size_t>(n));
    for (auto& v : x) v = std::uint8_t(rng.below(256));
    for (auto& v : y) v = std::uint8_t(rng.below(10));
    auto ds = data::Dataset::from_uint8(Tensor<std::uint8_t>::from_vector(Shape{n, 784}, x),
                                        Tensor<std::uint8_t>::from_vector(Shape{n}, y))
                  .to(Device::cuda(0));
    nn::Sequential<float> model(Shape{784}, 0);
    model.add(nn::Dense<float>(512, nn::Activation::ReLU));
    model.add(nn::Dropout<float>(0.2f));
    model.add(nn::Dense<float>(512, nn::Activation::ReLU));
    model.add(nn::Dropout<float>(0.2f));
    model.add(nn::Dense<float>(10, nn::Activation::Softmax));
    model.to(Device::cuda(0));
    optim::RMSprop<float> opt(0.001f);
    train::FitOptions<float> fo;
    fo.batch_size = 128;
    fo.verbose = train::Verbosity::Silent;
    fo.cuda_graph = graph;
    train::fit(model, opt, ds, fo);  // warm-up epoch: allocations, graph capture
    int epoch = 1;
    for (auto _ : state) {
        fo.initial_epoch = epoch;
        fo.epochs = ++epoch;
        train::fit(model, opt, ds, fo);  // returns after the epoch's work is done (it reads the totals)
    }
    state.SetLabel(std::string(graph ? "cuda graph" : "no graph") + (state.range(1) ? "" : ", no split-K"));
}
CUDA_BENCHMARK(BM_mlp_epoch)
    ->Args({1, 1})
    ->Args({1, 0})
    ->Args({0, 1})
    ->Iterations(5)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// BM_gemm_tile's rows for each product's gemm_auto_plan where the fixed
// list lacks it (it depends on the SM count), so that every product has one
// row marked auto. Without a usable device nothing is added.
void register_plan_rows() {
    if (!cuda::unavailable_reason().empty()) return;
    const std::vector<TileRow> fixed = fixed_tile_rows();
    for (int i = 0; i < int(std::size(kGemmShapes)); ++i) {
        const auto& g = kGemmShapes[i];
        const auto plan = cuda::gemm_auto_plan(g[0], g[1], g[2]);
        const TileRow row{i, plan.tile, plan.split.splits};
        bool listed = false;
        for (const TileRow& r : fixed) listed = listed || (r.shape == i && r.tile == row.tile && r.splits == row.splits);
        if (listed) continue;
        auto* b = benchmark::RegisterBenchmark("BM_gemm_tile", ::cuda_bench::guarded<BM_gemm_tile>);
        add_tile_row(b, row);
        b->UseManualTime()->Unit(benchmark::kMicrosecond);
    }
}

}  // namespace

int main(int argc, char** argv) {
    register_plan_rows();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
