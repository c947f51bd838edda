// CPU GEMM throughput (GFLOP/s, wall clock, all pool threads) on the shapes
// of the Keras MNIST MLP at batch 128 (and the last batch of 96), plus 512^3
// and 1024^3; each shape on the instruction set gemm() picks, and the big
// ones on the others too. BM_gemm_lab runs the micro-kernel variants tried
// while tuning. With -DCUMULUS_BENCH_CBLAS (cpu_gemm.cmake sets it when a
// CBLAS is installed) BM_cblas runs the same shapes through cblas_sgemm.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include <cumulus/core/parallel.hpp>
#include <cumulus/core/random.hpp>
#include <cumulus/cpu/gemm.hpp>

#if defined(CUMULUS_BENCH_CBLAS) && __has_include(<cblas.h>)
#include <cblas.h>
#define CUMULUS_HAVE_CBLAS 1
#else
#define CUMULUS_HAVE_CBLAS 0
#endif

namespace {

using cumulus::Epilogue;
using cumulus::Transpose;
using cumulus::cpu::GemmIsa;
using Index = std::int64_t;
namespace detail = cumulus::cpu::gemm_detail;

constexpr Transpose kNo = Transpose::No, kYes = Transpose::Yes;

struct Shape {
    const char* name;
    Transpose ta, tb;
    Index M, N, K;
    Epilogue epi;
};

// Names read M x K x N (batch x in x out for the forward pass). fwd: X W + b,
// relu; bwd_data: dY W^T (tb = Yes); bwd_w: X^T dY (ta = Yes).
const Shape kShapes[] = {
    {"fwd1_128x784x512", kNo, kNo, 128, 512, 784, Epilogue::BiasRelu},
    {"fwd2_128x512x512", kNo, kNo, 128, 512, 512, Epilogue::BiasRelu},
    {"fwd3_128x512x10", kNo, kNo, 128, 10, 512, Epilogue::Bias},
    {"fwd1_96x784x512", kNo, kNo, 96, 512, 784, Epilogue::BiasRelu},
    {"bwd_data2_128x512x512T", kNo, kYes, 128, 512, 512, Epilogue::None},
    {"bwd_data3_128x10x512T", kNo, kYes, 128, 512, 10, Epilogue::None},
    {"bwd_w1_784x128Tx512", kYes, kNo, 784, 512, 128, Epilogue::None},
    {"bwd_w2_512x128Tx512", kYes, kNo, 512, 512, 128, Epilogue::None},
    {"bwd_w3_512x128Tx10", kYes, kNo, 512, 10, 128, Epilogue::None},
    {"sq512", kNo, kNo, 512, 512, 512, Epilogue::None},
    {"sq1024", kNo, kNo, 1024, 1024, 1024, Epilogue::None},
};

template <typename T>
struct Operands {
    std::vector<T> A, B, C, bias;
    Index lda, ldb;
    explicit Operands(const Shape& s) {
        cumulus::Philox rng(7);
        auto fill = [&](std::vector<T>& v, Index n) {
            v.resize(static_cast<std::size_t>(n));
            for (auto& x : v) x = T(rng.uniform(-1.f, 1.f));
        };
        fill(A, s.M * s.K);
        fill(B, s.K * s.N);
        fill(C, s.M * s.N);
        fill(bias, s.N);
        lda = s.ta == kNo ? s.K : s.M;
        ldb = s.tb == kNo ? s.N : s.K;
    }
};

void set_counters(benchmark::State& state, const Shape& s) {
    state.counters["flops"] = benchmark::Counter(2.0 * double(s.M) * double(s.N) * double(s.K),
                                                 benchmark::Counter::kIsIterationInvariantRate);
    state.counters["threads"] = cumulus::ThreadPool::global().size();
}

template <typename T>
void BM_gemm(benchmark::State& state, Shape s, GemmIsa isa) {
    if (!cumulus::cpu::gemm_isa_supported(isa)) {
        state.SkipWithError("instruction set not supported by this CPU");
        return;
    }
    Operands<T> o(s);
    const T* bias = s.epi == Epilogue::None ? nullptr : o.bias.data();
    for (auto _ : state) {
        cumulus::cpu::gemm_with_isa<T>(isa, s.ta, s.tb, s.M, s.N, s.K, T(1), o.A.data(), o.lda, o.B.data(), o.ldb,
                                       T(0), o.C.data(), s.N, s.epi, bias);
        benchmark::DoNotOptimize(o.C.data());
        benchmark::ClobberMemory();
    }
    set_counters(state, s);
    state.SetLabel(detail::spec_for<T>(isa, s.N).name);
}

#if CUMULUS_GEMM_X86
// Kernel variants tried while tuning, through the same driver.
void BM_gemm_lab(benchmark::State& state, Shape s, detail::KernelSpec<float> spec, GemmIsa isa) {
    if (!cumulus::cpu::gemm_isa_supported(isa)) {
        state.SkipWithError("instruction set not supported by this CPU");
        return;
    }
    Operands<float> o(s);
    const detail::Problem<float> p{s.ta, s.tb, s.M,   s.N,       s.K,   1.f,   o.A.data(),
                                   o.lda, o.B.data(), o.ldb,   0.f, o.C.data(), s.N, s.epi,
                                   s.epi == Epilogue::None ? nullptr : o.bias.data()};
    for (auto _ : state) {
        detail::run(spec, p);
        benchmark::DoNotOptimize(o.C.data());
        benchmark::ClobberMemory();
    }
    set_counters(state, s);
    state.SetLabel(spec.name);
}
#endif

#if CUMULUS_HAVE_CBLAS
void BM_cblas(benchmark::State& state, Shape s) {
    Operands<float> o(s);
    for (auto _ : state) {
        cblas_sgemm(CblasRowMajor, s.ta == kNo ? CblasNoTrans : CblasTrans, s.tb == kNo ? CblasNoTrans : CblasTrans,
                    int(s.M), int(s.N), int(s.K), 1.f, o.A.data(), int(o.lda), o.B.data(), int(o.ldb), 0.f,
                    o.C.data(), int(s.N));
        benchmark::DoNotOptimize(o.C.data());
        benchmark::ClobberMemory();
    }
    set_counters(state, s);
}
#endif

void register_all() {
    const GemmIsa best = cumulus::cpu::gemm_best_isa();
    for (const Shape& s : kShapes) {
        benchmark::RegisterBenchmark((std::string("BM_gemm/") + s.name).c_str(), BM_gemm<float>, s, best)
            ->UseRealTime();
    }
    // The other instruction sets: how much AVX-512 and AVX2 each bring.
    for (const Shape& s : kShapes) {
        for (GemmIsa isa : {GemmIsa::Avx512, GemmIsa::Avx2, GemmIsa::Generic}) {
            if (isa == best) continue;
            const std::string name = std::string("BM_gemm_") + cumulus::cpu::gemm_isa_name(isa) + "/" + s.name;
            benchmark::RegisterBenchmark(name.c_str(), BM_gemm<float>, s, isa)->UseRealTime();
        }
    }
    for (int i : {1, 9, 10}) {
        const std::string name = std::string("BM_gemm_double/") + kShapes[i].name;
        benchmark::RegisterBenchmark(name.c_str(), BM_gemm<double>, kShapes[i], best)->UseRealTime();
    }
#if CUMULUS_GEMM_X86
    const detail::KernelSpec<float> lab[] = {
        detail::avx512_spec<12, 2>(256, 144, 1024, "avx512 12x32"),
        detail::avx512_spec<14, 2>(256, 140, 1024, "avx512 14x32"),
        detail::avx512_spec<8, 2>(256, 144, 1024, "avx512 8x32"),
        detail::avx512_spec<6, 2>(256, 144, 1024, "avx512 6x32"),
        detail::avx512_spec<6, 4>(256, 144, 1024, "avx512 6x64"),
        detail::avx512_spec<12, 1>(256, 144, 1024, "avx512 12x16"),
        detail::avx512_spec<12, 2>(128, 144, 1024, "avx512 12x32 kc128"),
        detail::avx512_spec<12, 2>(512, 144, 1024, "avx512 12x32 kc512"),
        detail::avx2_spec<6, 2>(256, 144, 1024, "avx2 6x16"),
        detail::avx2_spec<4, 3>(256, 144, 1024, "avx2 4x24"),
    };
    for (int i : {0, 2, 4, 6, 10}) {
        for (const auto& spec : lab) {
            const GemmIsa isa = std::string(spec.name).rfind("avx512", 0) == 0 ? GemmIsa::Avx512 : GemmIsa::Avx2;
            const std::string name = std::string("BM_gemm_lab/") + kShapes[i].name + "/" + spec.name;
            benchmark::RegisterBenchmark(name.c_str(), BM_gemm_lab, kShapes[i], spec, isa)->UseRealTime();
        }
    }
#endif
#if CUMULUS_HAVE_CBLAS
    for (const Shape& s : kShapes)
        benchmark::RegisterBenchmark((std::string("BM_cblas/") + s.name).c_str(), BM_cblas, s)->UseRealTime();
#endif
}

}  // namespace

int main(int argc, char** argv) {
    register_all();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::AddCustomContext("gemm_isa", cumulus::cpu::gemm_isa_name(cumulus::cpu::gemm_best_isa()));
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
