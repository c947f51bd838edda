// Every CUDA op family against its CPU twin on fresh random inputs of odd,
// tiny and large shapes; outputs NaN-poisoned before each call so that an
// unwritten element fails. GEMM also against a float64 reference (with an
// element-wise bound from |A||B|) and against cuBLAS SGEMM. Dropout masks
// must equal the CPU's bit for bit.
#include <cublas_v2.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <cumulus/cpu/data.hpp>
#include <cumulus/cpu/dropout.hpp>
#include <cumulus/cpu/elementwise.hpp>
#include <cumulus/cpu/gemm.hpp>
#include <cumulus/cpu/optimizer.hpp>
#include <cumulus/cpu/reduce.hpp>
#include <cumulus/cpu/softmax_xent.hpp>
#include <cumulus/cuda.hpp>

#include "cuda_test_util.hpp"

using namespace cumulus;
using cuda_test::expect;

namespace {

std::string dims(std::int64_t a, std::int64_t b, std::int64_t c) {
    return "(" + std::to_string(a) + ", " + std::to_string(b) + ", " + std::to_string(c) + ")";
}

// ---------------------------------------------------------------- GEMM

struct GemmCase {
    std::int64_t M, N, K;
};

// `splits`: 1 is one launch (gemm_with_tile); n > 1 about n K splits
// (gemm_split_k), their partials in a NaN-filled workspace of exactly the
// size needed, or in the launcher's scratch when `workspace` is false; 0 the
// automatic plan (gemm_auto_plan: tile and split) with a workspace of
// gemm_workspace(M, N, K) elements
// (what ops::matmul does, tile Auto only).
void check_gemm(Philox& rng, cublasHandle_t blas, GemmCase g, Transpose ta, Transpose tb, cuda::GemmTile tile,
                Epilogue epi, float alpha, float beta, int pad, int offset, std::int64_t splits = 1,
                bool workspace = true) {
    const std::int64_t M = g.M, N = g.N, K = g.K;
    const std::int64_t a_rows = ta == Transpose::No ? M : K, a_cols = ta == Transpose::No ? K : M;
    const std::int64_t b_rows = tb == Transpose::No ? K : N, b_cols = tb == Transpose::No ? N : K;
    const std::int64_t lda = a_cols + pad, ldb = b_cols + pad, ldc = N + pad;
    // Buffers start `offset` floats in, so that offset 1 defeats 16-byte alignment.
    auto A = cuda_test::random_floats(offset + a_rows * lda, rng);
    auto B = cuda_test::random_floats(offset + b_rows * ldb, rng);
    auto C0 = cuda_test::random_floats(offset + M * ldc, rng);
    auto bias = cuda_test::random_floats(N, rng);
    auto dA = cuda_test::to_device(Shape{std::int64_t(A.size())}, A);
    auto dB = cuda_test::to_device(Shape{std::int64_t(B.size())}, B);
    auto dC = cuda_test::to_device(Shape{std::int64_t(C0.size())}, C0);
    auto dbias = cuda_test::to_device(Shape{N}, bias);
    if (beta == 0.0f) cuda_test::poison(dC);  // beta 0 must never read C
    const float* bias_arg = epi == Epilogue::None ? nullptr : dbias.data();
    if (splits == 1) {
        cuda::gemm_with_tile(tile, ta, tb, M, N, K, alpha, dA.data() + offset, lda, dB.data() + offset, ldb, beta,
                             dC.data() + offset, ldc, epi, bias_arg);
    } else {
        const auto t = tile == cuda::GemmTile::Auto ? cuda::gemm_auto_tile(M, N) : tile;
        const std::int64_t need = splits == 0 ? cuda::gemm_workspace(M, N, K)
                                              : cuda::gemm_split_workspace(cuda::gemm_split_for(t, K, splits), M, N);
        Tensor<float> ws;
        if (need > 0 && workspace) {
            ws = Tensor<float>::empty(Shape{need}, Device::cuda(0));
            cuda_test::poison(ws);
        }
        if (splits == 0)
            cuda::gemm(ta, tb, M, N, K, alpha, dA.data() + offset, lda, dB.data() + offset, ldb, beta,
                       dC.data() + offset, ldc, epi, bias_arg, cuda::current_stream(), ws.defined() ? ws.data() : nullptr,
                       need);
        else
            cuda::gemm_split_k(tile, splits, ta, tb, M, N, K, alpha, dA.data() + offset, lda, dB.data() + offset, ldb,
                               beta, dC.data() + offset, ldc, ws.defined() ? ws.data() : nullptr, need, epi, bias_arg);
    }
    std::vector<float> C = dC.to_vector();

    // float64 reference, and the same over |A|, |B|, |C|, |bias| for a bound per element.
    std::vector<double> Ad(A.begin(), A.end()), Bd(B.begin(), B.end()), Cd(C0.begin(), C0.end());
    std::vector<double> Aa(Ad), Ba(Bd), Ca(Cd);
    for (auto& x : Aa) x = std::fabs(x);
    for (auto& x : Ba) x = std::fabs(x);
    for (auto& x : Ca) x = std::fabs(x);
    std::vector<double> biasd(bias.begin(), bias.end()), biasa(biasd);
    for (auto& x : biasa) x = std::fabs(x);
    const Epilogue lin = epi == Epilogue::BiasRelu ? Epilogue::Bias : epi;
    cpu::gemm<double>(ta, tb, M, N, K, alpha, Ad.data() + offset, lda, Bd.data() + offset, ldb, beta,
                      Cd.data() + offset, ldc, lin, epi == Epilogue::None ? nullptr : biasd.data());
    cpu::gemm<double>(ta, tb, M, N, K, std::fabs(alpha), Aa.data() + offset, lda, Ba.data() + offset, ldb,
                      std::fabs(beta), Ca.data() + offset, ldc, lin, epi == Epilogue::None ? nullptr : biasa.data());
    int bad = 0;
    double err2 = 0, ref2 = 0;
    for (std::int64_t i = 0; i < M; ++i)
        for (std::int64_t j = 0; j < N; ++j) {
            const std::size_t at = std::size_t(offset + i * ldc + j);
            double ref = Cd[at];
            if (epi == Epilogue::BiasRelu) ref = ref < 0 ? 0 : ref;
            const double got = C[at];
            const double bound = 1e-6 + 2e-6 * std::sqrt(double(K) + 1) * Ca[at];
            if (!(std::fabs(got - ref) <= bound)) ++bad;
            err2 += (got - ref) * (got - ref);
            ref2 += ref * ref;
        }
    // The padding between rows must be left alone.
    int pad_touched = 0;
    for (std::int64_t i = 0; i < M; ++i)
        for (std::int64_t j = N; j < ldc; ++j) {
            const std::size_t at = std::size_t(offset + i * ldc + j);
            if (beta != 0.0f && !cuda_test::same_bits(C[at], C0[at])) ++pad_touched;
            if (beta == 0.0f && !std::isnan(C[at])) ++pad_touched;
        }
    const std::string what = "gemm " + dims(M, N, K) + " ta=" + std::to_string(int(ta)) +
                             " tb=" + std::to_string(int(tb)) + " tile=" + cuda::gemm_tile_name(tile) +
                             " epi=" + std::to_string(int(epi)) + " alpha=" + std::to_string(alpha) +
                             " beta=" + std::to_string(beta) + " pad=" + std::to_string(pad) +
                             " offset=" + std::to_string(offset) + " splits=" + std::to_string(splits) +
                             (workspace ? "" : " (scratch)");
    expect(bad == 0, what + ": " + std::to_string(bad) + " elements off the float64 reference");
    expect(pad_touched == 0, what + ": wrote " + std::to_string(pad_touched) + " elements outside the matrix");
    expect(ref2 == 0 || std::sqrt(err2 / ref2) < 1e-5, what + ": relative error " + std::to_string(std::sqrt(err2 / ref2)));

    // cuBLAS (column-major) computes C^T = op(B)^T op(A)^T; only the plain product compares.
    if (epi == Epilogue::None && K > 0) {
        auto dR = cuda_test::to_device(Shape{std::int64_t(C0.size())}, C0);
        expect(cublasSetStream(blas, cuda::current_stream()) == CUBLAS_STATUS_SUCCESS, what + ": cublasSetStream");
        const cublasStatus_t st = cublasSgemm(
            blas, tb == Transpose::Yes ? CUBLAS_OP_T : CUBLAS_OP_N, ta == Transpose::Yes ? CUBLAS_OP_T : CUBLAS_OP_N,
            int(N), int(M), int(K), &alpha, dB.data() + offset, int(ldb), dA.data() + offset, int(lda), &beta,
            dR.data() + offset, int(ldc));
        expect(st == CUBLAS_STATUS_SUCCESS, what + ": cublasSgemm failed");
        std::vector<float> R = dR.to_vector();
        double d2 = 0, r2 = 0;
        for (std::int64_t i = 0; i < M; ++i)
            for (std::int64_t j = 0; j < N; ++j) {
                const std::size_t at = std::size_t(offset + i * ldc + j);
                d2 += double(C[at] - R[at]) * double(C[at] - R[at]);
                r2 += double(R[at]) * double(R[at]);
            }
        expect(r2 == 0 || std::sqrt(d2 / r2) < 1e-5, what + ": differs from cuBLAS by " + std::to_string(std::sqrt(d2 / r2)));
    }
}

void test_gemm(Philox& rng) {
    cublasHandle_t blas = nullptr;
    expect(cublasCreate(&blas) == CUBLAS_STATUS_SUCCESS, "cublasCreate");
    // FP32, no tensor cores
    expect(cublasSetMathMode(blas, CUBLAS_PEDANTIC_MATH) == CUBLAS_STATUS_SUCCESS, "cublasSetMathMode");
    const cuda::GemmTile tiles[] = {cuda::GemmTile::Large, cuda::GemmTile::Medium, cuda::GemmTile::Small,
                                    cuda::GemmTile::Auto};
    const Transpose ts[] = {Transpose::No, Transpose::Yes};
    // Tiny, primes, K off every tile multiple, one-wide edges.
    const GemmCase small[] = {{1, 1, 1}, {1, 7, 3}, {5, 1, 2}, {3, 5, 0}, {2, 3, 5}, {13, 17, 19}, {31, 33, 1},
                              {37, 41, 43}, {65, 63, 9}, {129, 127, 17}, {4, 8, 12}, {64, 64, 64}};
    for (auto g : small)
        for (auto tile : tiles)
            for (auto ta : ts)
                for (auto tb : ts) {
                    check_gemm(rng, blas, g, ta, tb, tile, Epilogue::None, 1.0f, 0.0f, 0, 0);
                    check_gemm(rng, blas, g, ta, tb, tile, Epilogue::BiasRelu, 0.5f, 0.0f, 3, 1);
                    check_gemm(rng, blas, g, ta, tb, tile, Epilogue::Bias, -1.25f, 0.75f, 1, 0);
                }
    // The MLP's products (forward, and the two backward ones) and some larger odd ones.
    const GemmCase mlp[] = {{128, 512, 784}, {128, 512, 512}, {128, 10, 512}, {96, 512, 784}, {300, 257, 1001}};
    for (auto g : mlp)
        for (auto tile : tiles) {
            check_gemm(rng, blas, g, Transpose::No, Transpose::No, tile, Epilogue::BiasRelu, 1.0f, 0.0f, 0, 0);
            check_gemm(rng, blas, g, Transpose::Yes, Transpose::No, tile, Epilogue::None, 1.0f, 0.0f, 0, 0);
            check_gemm(rng, blas, g, Transpose::No, Transpose::Yes, tile, Epilogue::None, 1.0f, 1.0f, 0, 0);
            check_gemm(rng, blas, g, Transpose::Yes, Transpose::Yes, tile, Epilogue::Bias, 2.0f, 0.5f, 2, 1);
        }
    check_gemm(rng, blas, {784, 512, 128}, Transpose::Yes, Transpose::No, cuda::GemmTile::Auto, Epilogue::None, 1.0f,
               0.0f, 0, 0);  // dW1 = x^T dz
    check_gemm(rng, blas, {128, 784, 512}, Transpose::No, Transpose::Yes, cuda::GemmTile::Auto, Epilogue::None, 1.0f,
               0.0f, 0, 0);  // dx = dz W^T
    // More row tiles than a grid's y dimension holds (65535): the tiles are on grid.x. Not on
    // the emulation (131,072 blocks of 256 fibers: too slow there), where the
    // same tile arithmetic runs in every multi-tile case above.
#ifndef CUMULUS_CUDA_EMULATION
    if (!cuda_test::skip_large("GEMM 2097127 x 33 x 2 (131,072 tiles)"))
        check_gemm(rng, blas, {65535 * 32 + 7, 33, 2}, Transpose::No, Transpose::No, cuda::GemmTile::Small,
                   Epilogue::None, 1.0f, 0.0f, 0, 0);  // and two column tiles
#endif
    // alpha 0 reads neither A nor B; NaN in C passes through relu.
    check_gemm(rng, blas, {7, 9, 11}, Transpose::No, Transpose::No, cuda::GemmTile::Auto, Epilogue::BiasRelu, 0.0f,
               1.5f, 0, 0);
    cublasDestroy(blas);
}

// Split-K: the split arithmetic, products split in 2 .. 100 ranges on every
// tile (any M, N, K; ranges shorter than a tile's K step are rounded up), the
// automatic plan at the MLP's products as Dense runs them, and the errors.
void test_gemm_split(Philox& rng) {
    using cuda::GemmTile;
    const GemmTile tiles[] = {GemmTile::Large, GemmTile::Medium, GemmTile::Small};
    int bad = 0;
    for (auto t : tiles) {
        const std::int64_t bk = cuda::gemm_tile_dims(t).bk;
        for (std::int64_t K = 1; K <= 300; ++K)
            for (std::int64_t want = 1; want <= 20; ++want) {
                const auto sp = cuda::gemm_split_for(t, K, want);
                const bool ok = sp.splits >= 1 && sp.splits <= want && sp.splits * sp.depth >= K &&
                                (sp.splits - 1) * sp.depth < K && (sp.splits == 1 || sp.depth % bk == 0);
                bad += !ok;
            }
    }
    expect(bad == 0, "gemm_split_for: " + std::to_string(bad) + " splits with an empty, unaligned or missing range");
    // The automatic split fills the SMs at most once over, with at most K / 64 ranges.
    const std::int64_t sms = cuda::device_properties().multiProcessorCount;
    for (const GemmCase g : {GemmCase{128, 512, 784}, {128, 10, 512}, {512, 10, 128}, {128, 512, 10}, {4096, 4096, 4096},
                             {1, 1, 100000}, {33, 33, 63}}) {
        for (auto t : tiles) {
            const auto d = cuda::gemm_tile_dims(t);
            const std::int64_t blocks = cuda::ceil_div(g.M, d.bm) * cuda::ceil_div(g.N, d.bn);
            const auto sp = cuda::gemm_auto_split(t, g.M, g.N, g.K);
            const bool ok = sp.splits == 1 || (blocks * sp.splits <= sms && sp.splits * 64 <= g.K && blocks < sms);
            expect(ok, "gemm_auto_split " + dims(g.M, g.N, g.K) + " on " + cuda::gemm_tile_name(t) + ": " +
                           std::to_string(sp.splits) + " splits of " + std::to_string(sp.depth));
        }
    }
    // On a chip of 128 SMs or more (H100, H200: 132), the MLP's first product
    // on the small tile (64 output tiles) splits in two.
    if (sms >= 128)
        expect(cuda::gemm_auto_split(GemmTile::Small, 128, 512, 784).splits == 2,
               "gemm_auto_split: 128 x 512 x 784 on " + std::to_string(sms) + " SMs splits in two");
    // gemm_auto_plan on 132 SMs (H100 SXM, H200, the emulation): the plans
    // docs/performance.md lists, and a workspace of the plan's size.
    if (sms == 132) {
        const struct {
            GemmCase g;
            GemmTile tile;
            std::int64_t splits;
        } plans[] = {{{128, 512, 784}, GemmTile::Medium, 7}, {{128, 512, 512}, GemmTile::Medium, 8},
                     {{128, 10, 512}, GemmTile::Small, 8},   {{784, 512, 128}, GemmTile::Medium, 1},
                     {{512, 512, 128}, GemmTile::Small, 1},  {{512, 10, 128}, GemmTile::Small, 1},
                     {{128, 512, 10}, GemmTile::Small, 1},   {{1024, 1024, 1024}, GemmTile::Large, 2},
                     {{4096, 4096, 4096}, GemmTile::Large, 1}, {{100, 1024, 3136}, GemmTile::Large, 16}};
        for (const auto& p : plans) {
            const auto got = cuda::gemm_auto_plan(p.g.M, p.g.N, p.g.K);
            const std::int64_t ws = p.splits > 1 ? p.splits * p.g.M * p.g.N : 0;
            expect(got.tile == p.tile && got.split.splits == p.splits && cuda::gemm_workspace(p.g.M, p.g.N, p.g.K) == ws,
                   "gemm_auto_plan " + dims(p.g.M, p.g.N, p.g.K) + ": " + cuda::gemm_tile_name(got.tile) + "/s" +
                       std::to_string(got.split.splits) + ", expected " + cuda::gemm_tile_name(p.tile) + "/s" +
                       std::to_string(p.splits));
        }
    }
    // Every plan is a tile unsplit or split as gemm_auto_split splits it, and
    // never costs more than gemm_auto_tile unsplit. Without a workspace
    // (split_ok false) the plan never splits, and where the plan with one
    // does not split either, both are the same (so ops::matmul, which passes
    // no workspace when gemm_workspace is 0, runs the planned tile).
    for (const GemmCase g : {GemmCase{1, 1, 1}, {7, 9, 1000}, {96, 512, 784}, {120, 250, 700}, {33, 65, 129},
                             {3000, 17, 64}, {2048, 2048, 2048}, {784, 512, 128}, {512, 512, 128}, {128, 784, 512}}) {
        const auto p = cuda::gemm_auto_plan(g.M, g.N, g.K);
        const auto q = cuda::gemm_auto_plan(g.M, g.N, g.K, /*split_ok=*/false);
        const auto base = cuda::GemmPlan{cuda::gemm_auto_tile(g.M, g.N), {1, g.K}};
        const bool ok = (p.split.splits == 1 || p.split.splits == cuda::gemm_auto_split(p.tile, g.M, g.N, g.K).splits) &&
                        cuda::gemm_plan_cost(p, g.M, g.N) <= cuda::gemm_plan_cost(base, g.M, g.N) &&
                        q.split.splits == 1 && (p.split.splits > 1 || q.tile == p.tile);
        expect(ok, "gemm_auto_plan " + dims(g.M, g.N, g.K) + ": " + cuda::gemm_tile_name(p.tile) + "/s" +
                       std::to_string(p.split.splits) + ", without a workspace " + cuda::gemm_tile_name(q.tile) +
                       "/s" + std::to_string(q.split.splits));
    }
    // A GemmSplitScope turns the automatic split off on this thread, and back on when it ends.
    {
        const std::int64_t usual = cuda::gemm_auto_split(GemmTile::Small, 128, 10, 512).splits;
        expect(usual > 1 || sms <= 4, "128 x 10 x 512 (4 output tiles) splits on " + std::to_string(sms) + " SMs");
        {
            const cuda::GemmSplitScope off(false);
            const auto plan = cuda::gemm_auto_plan(128, 512, 784);
            expect(cuda::gemm_auto_split(GemmTile::Small, 128, 10, 512).splits == 1 &&
                       cuda::gemm_workspace(128, 10, 512) == 0 && plan.split.splits == 1 &&
                       plan.tile == cuda::gemm_auto_tile(128, 512),
                   "GemmSplitScope(false): no automatic split, and the plan is gemm_auto_tile's");
            const cuda::GemmSplitScope on(true);
            expect(cuda::gemm_auto_split(GemmTile::Small, 128, 10, 512).splits == usual,
                   "a nested GemmSplitScope(true) splits again");
        }
        expect(cuda::gemm_auto_split(GemmTile::Small, 128, 10, 512).splits == usual,
               "the split is back after the scopes end");
    }

    cublasHandle_t blas = nullptr;
    expect(cublasCreate(&blas) == CUBLAS_STATUS_SUCCESS, "cublasCreate");
    expect(cublasSetMathMode(blas, CUBLAS_PEDANTIC_MATH) == CUBLAS_STATUS_SUCCESS, "cublasSetMathMode");
    const Transpose ts[] = {Transpose::No, Transpose::Yes};
    const GemmCase cases[] = {{1, 1, 97}, {5, 1, 1000}, {13, 17, 19}, {37, 41, 300}, {65, 63, 129}, {128, 10, 512}};
    int n = 0;
    for (auto g : cases)
        for (auto t : tiles)
            for (std::int64_t splits : {2, 3, 7, 100}) {
                const Transpose ta = ts[n % 2], tb = ts[n / 2 % 2];
                const Epilogue epi = n % 3 == 0 ? Epilogue::None : n % 3 == 1 ? Epilogue::BiasRelu : Epilogue::Bias;
                const float beta = n % 2 ? 0.0f : 0.5f;
                check_gemm(rng, blas, g, ta, tb, t, epi, n % 4 ? 1.0f : -0.75f, beta, n % 3, n % 2, splits);
                ++n;
            }
    check_gemm(rng, blas, {37, 41, 300}, Transpose::Yes, Transpose::No, GemmTile::Small, Epilogue::Bias, 1.0f, 0.25f,
               1, 1, 5, /*workspace=*/false);
    // The automatic plan with a workspace, at the MLP's nine products, a 96-row last batch and an odd one.
    const struct {
        GemmCase g;
        Transpose ta, tb;
        Epilogue epi;
    } mlp[] = {{{128, 512, 784}, Transpose::No, Transpose::No, Epilogue::BiasRelu},
               {{128, 512, 512}, Transpose::No, Transpose::No, Epilogue::BiasRelu},
               {{128, 10, 512}, Transpose::No, Transpose::No, Epilogue::Bias},
               {{784, 512, 128}, Transpose::Yes, Transpose::No, Epilogue::None},
               {{512, 512, 128}, Transpose::Yes, Transpose::No, Epilogue::None},
               {{512, 10, 128}, Transpose::Yes, Transpose::No, Epilogue::None},
               {{128, 512, 10}, Transpose::No, Transpose::Yes, Epilogue::None},
               {{128, 512, 512}, Transpose::No, Transpose::Yes, Epilogue::None},
               {{96, 512, 784}, Transpose::No, Transpose::No, Epilogue::BiasRelu},
               {{120, 250, 700}, Transpose::Yes, Transpose::Yes, Epilogue::Bias}};
    for (const auto& c : mlp) check_gemm(rng, blas, c.g, c.ta, c.tb, GemmTile::Auto, c.epi, 1.0f, 0.0f, 0, 0, 0);
    cublasDestroy(blas);

    // A workspace smaller than the split needs, and more splits than grid.z holds, are refused.
    auto A = Tensor<float>::zeros(Shape{64 * 1024}, Device::cuda(0));
    auto C = Tensor<float>::zeros(Shape{64 * 64}, Device::cuda(0));
    auto threw = [&](auto fn, const char* needle) {
        try {
            fn();
        } catch (const Error& e) {
            return std::string(e.what()).find(needle) != std::string::npos;
        }
        return false;
    };
    expect(threw(
               [&] {
                   cuda::gemm_split_k(GemmTile::Small, 4, Transpose::No, Transpose::No, 64, 64, 1024, 1.0f, A.data(),
                                      1024, A.data(), 64, 0.0f, C.data(), 64, C.data(), 64 * 64);
               },
               "gemm_split_workspace"),
           "gemm_split_k refuses a workspace smaller than the split needs");
    expect(threw(
               [&] {
                   cuda::gemm_split_k(GemmTile::Small, 70000, Transpose::No, Transpose::No, 1, 1,
                                      std::int64_t(70000) * 32, 1.0f, A.data(), std::int64_t(70000) * 32, A.data(), 1,
                                      0.0f, C.data(), 1, nullptr, 0);
               },
               "at most 65535"),
           "gemm_split_k refuses more than 65535 K splits");
    expect(threw(
               [&] {
                   cuda::gemm_split_k(GemmTile::Small, -1, Transpose::No, Transpose::No, 4, 4, 4, 1.0f, A.data(), 4,
                                      A.data(), 4, 0.0f, C.data(), 4, nullptr, 0);
               },
               "K splits must be"),
           "gemm_split_k refuses a negative split count");
}

// ---------------------------------------------------------------- elementwise, reduce

void test_elementwise(Philox& rng) {
    for (std::int64_t n : {1, 3, 4, 5, 255, 256, 257, 1000, 100003, 1 << 20}) {
        auto x = cuda_test::random_floats(n, rng);
        x[0] = NAN;  // propagates through relu forward
        auto dx = cuda_test::to_device(Shape{n}, x);
        auto dy = Tensor<float>::empty(Shape{n}, Device::cuda(0));
        cuda_test::poison(dy);
        cuda::relu_forward(dx.data(), dy.data(), n);
        std::vector<float> want(x.size());
        cpu::relu_forward(x.data(), want.data(), n);
        auto got = dy.to_vector();
        int bad = 0;
        for (std::int64_t i = 0; i < n; ++i) bad += !cuda_test::same_bits(got[i], want[i]);
        expect(bad == 0, "relu_forward n=" + std::to_string(n));

        auto g = cuda_test::random_floats(n, rng);
        auto dg = cuda_test::to_device(Shape{n}, g);
        auto dgx = Tensor<float>::empty(Shape{n}, Device::cuda(0));
        cuda_test::poison(dgx);
        cuda::relu_backward(dy.data(), dg.data(), dgx.data(), n);
        cpu::relu_backward(want.data(), g.data(), want.data(), n);
        got = dgx.to_vector();
        bad = 0;
        for (std::int64_t i = 0; i < n; ++i) bad += !cuda_test::same_bits(got[i], want[i]);
        expect(bad == 0, "relu_backward n=" + std::to_string(n));

        // scale, axpy (in place)
        auto y = cuda_test::random_floats(n, rng);
        auto dyy = cuda_test::to_device(Shape{n}, y);
        cuda::scale(dyy.data(), 0.37f, n);
        cuda::axpy(-1.5f, dg.data(), dyy.data(), n);
        cpu::scale(y.data(), 0.37f, n);
        cpu::axpy(-1.5f, g.data(), y.data(), n);
        got = dyy.to_vector();
        bad = 0;
        for (std::int64_t i = 0; i < n; ++i) bad += !cuda_test::close(got[i], y[i], 1e-6, 1e-6);  // FMA vs not
        expect(bad == 0, "scale + axpy n=" + std::to_string(n));
    }
    for (auto [rows, cols] : std::vector<std::pair<std::int64_t, std::int64_t>>{
             {1, 1}, {1, 10}, {128, 10}, {128, 512}, {7, 33}, {1000, 3}, {3, 1000}, {4097, 65}}) {
        auto y = cuda_test::random_floats(rows * cols, rng);
        auto b = cuda_test::random_floats(cols, rng);
        auto dy = cuda_test::to_device(Shape{rows, cols}, y);
        auto db = cuda_test::to_device(Shape{cols}, b);
        cuda::bias_add(dy.data(), db.data(), rows, cols);
        cpu::bias_add(y.data(), b.data(), rows, cols);
        auto got = dy.to_vector();
        int bad = 0;
        for (std::size_t i = 0; i < y.size(); ++i) bad += !cuda_test::same_bits(got[i], y[i]);
        expect(bad == 0, "bias_add " + dims(rows, cols, 0));

        // bias_grad (sums in double on both sides), plain and accumulating
        auto dbg = Tensor<float>::empty(Shape{cols}, Device::cuda(0));
        cuda_test::poison(dbg);
        cuda::bias_grad(dy.data(), dbg.data(), rows, cols);
        std::vector<float> want(static_cast<std::size_t>(cols));
        cpu::bias_grad(y.data(), want.data(), rows, cols);
        got = dbg.to_vector();
        bad = 0;
        for (std::int64_t c = 0; c < cols; ++c) bad += !cuda_test::close(got[c], want[c], 1e-6, 1e-6);
        expect(bad == 0, "bias_grad " + dims(rows, cols, 0));
        cuda::bias_grad(dy.data(), dbg.data(), rows, cols, true);
        cpu::bias_grad(y.data(), want.data(), rows, cols, true);
        got = dbg.to_vector();
        bad = 0;
        for (std::int64_t c = 0; c < cols; ++c) bad += !cuda_test::close(got[c], want[c], 1e-6, 1e-6);
        expect(bad == 0, "bias_grad accumulate " + dims(rows, cols, 0));

        // argmax, with ties and NaN
        if (cols > 2 && rows > 1) {
            y[1] = y[2];
            y[std::size_t(cols + 2)] = NAN;
        }
        auto dx = cuda_test::to_device(Shape{rows, cols}, y);
        auto di = Tensor<std::int32_t>::empty(Shape{rows}, Device::cuda(0));
        cuda_test::poison(di);
        cuda::argmax_rows(dx.data(), di.data(), rows, cols);
        std::vector<std::int32_t> wi(static_cast<std::size_t>(rows));
        cpu::argmax_rows(y.data(), wi.data(), rows, cols);
        expect(di.to_vector() == wi, "argmax_rows " + dims(rows, cols, 0));
    }
}

// ---------------------------------------------------------------- dropout

void test_dropout(Philox& rng) {
    for (std::int64_t n : {1, 2, 3, 4, 5, 7, 1023, 65536, 100003}) {
        for (float rate : {0.0f, 0.2f, 0.5f, 0.9f}) {
            const std::uint64_t seed = 0x9e3779b97f4a7c15ull ^ std::uint64_t(n);
            const std::uint32_t stream = 3;
            const std::uint64_t step = 0x100000007ull;
            auto x = cuda_test::random_floats(n, rng);
            auto dx = cuda_test::to_device(Shape{n}, x);
            auto dy = Tensor<float>::empty(Shape{n}, Device::cuda(0));
            cuda_test::poison(dy);
            cuda::dropout_forward(dx.data(), dy.data(), n, rate, seed, stream, step);
            std::vector<float> want(x.size());
            cpu::dropout_forward(x.data(), want.data(), n, rate, seed, stream, step);
            auto got = dy.to_vector();
            int bad = 0;
            for (std::int64_t i = 0; i < n; ++i) bad += !cuda_test::same_bits(got[i], want[i]);
            const std::string what = " n=" + std::to_string(n) + " rate=" + std::to_string(rate);
            expect(bad == 0, "dropout_forward bit-identical" + what);

            // backward in place, and the device-step variant
            cuda::dropout_backward(dx.data(), dx.data(), n, rate, seed, stream, step);
            cpu::dropout_backward(x.data(), x.data(), n, rate, seed, stream, step);
            got = dx.to_vector();
            bad = 0;
            for (std::int64_t i = 0; i < n; ++i) bad += !cuda_test::same_bits(got[i], x[i]);
            expect(bad == 0, "dropout_backward in place" + what);

            auto dstep = cuda_test::to_device(Shape{1}, std::vector<std::int64_t>{std::int64_t(step)});
            auto dz = Tensor<float>::empty(Shape{n}, Device::cuda(0));
            cuda_test::poison(dz);
            cuda::dropout_forward_at(dy.data(), dz.data(), n, rate, seed, stream,
                                     reinterpret_cast<const std::uint64_t*>(dstep.data()));
            cpu::dropout_forward(want.data(), want.data(), n, rate, seed, stream, step);
            got = dz.to_vector();
            bad = 0;
            for (std::int64_t i = 0; i < n; ++i) bad += !cuda_test::same_bits(got[i], want[i]);
            expect(bad == 0, "dropout_forward_at (device step)" + what);
        }
    }
}

// ---------------------------------------------------------------- softmax cross-entropy

void test_softmax_xent(Philox& rng) {
    for (auto [rows, cols] : std::vector<std::pair<std::int64_t, std::int64_t>>{
             {1, 1}, {1, 10}, {3, 2}, {128, 10}, {96, 10}, {9, 33}, {17, 1000}, {5000, 7}, {2, 100000}}) {
        auto x = cuda_test::random_floats(rows * cols, rng, -8.0f, 8.0f);
        if (rows * cols > 40) x[5] = 1e30f;  // huge logits stay finite after the shift
        std::vector<std::int32_t> labels(static_cast<std::size_t>(rows));
        for (auto& l : labels) l = std::int32_t(rng.below(std::uint32_t(cols)));
        auto dx = cuda_test::to_device(Shape{rows, cols}, x);
        auto dl = cuda_test::to_device(Shape{rows}, labels);
        const std::string what = " " + dims(rows, cols, 0);

        auto dp = Tensor<float>::empty(Shape{rows, cols}, Device::cuda(0));
        cuda_test::poison(dp);
        cuda::softmax(dx.data(), dp.data(), rows, cols);
        std::vector<float> want(x.size());
        cpu::softmax(x.data(), want.data(), rows, cols);
        auto got = dp.to_vector();
        int bad = 0;
        for (std::size_t i = 0; i < x.size(); ++i) bad += !cuda_test::close(got[i], want[i], 1e-5, 1e-7);
        expect(bad == 0, "softmax" + what);

        for (std::int64_t grad_rows : {rows, rows + 5}) {
            auto dg = Tensor<float>::empty(Shape{rows, cols}, Device::cuda(0));
            cuda_test::poison(dg);
            auto r = cuda::softmax_xent(dx.data(), dl.data(), dg.data(), rows, cols, grad_rows);
            std::vector<float> wg(x.size());
            auto w = cpu::softmax_xent(x.data(), labels.data(), wg.data(), rows, cols, grad_rows);
            // expf on the device and std::exp on the host differ by an ulp or two.
            expect(cuda_test::close(r.loss_sum, w.loss_sum, 1e-5, 1e-9),
                   "softmax_xent loss" + what + ": " + std::to_string(r.loss_sum) + " vs " + std::to_string(w.loss_sum));
            expect(r.correct == w.correct, "softmax_xent correct" + what);
            got = dg.to_vector();
            bad = 0;
            for (std::size_t i = 0; i < x.size(); ++i) bad += !cuda_test::close(got[i], wg[i], 1e-5, 1e-6 / double(grad_rows));
            expect(bad == 0, "softmax_xent gradient" + what);
        }
        // no gradient; in place (dlogits == logits)
        auto r0 = cuda::softmax_xent(dx.data(), dl.data(), static_cast<float*>(nullptr), rows, cols, 1);
        auto w0 = cpu::softmax_xent(x.data(), labels.data(), static_cast<float*>(nullptr), rows, cols, 1);
        expect(cuda_test::close(r0.loss_sum, w0.loss_sum, 1e-5, 1e-9) && r0.correct == w0.correct,
               "softmax_xent without gradient" + what);
        cuda::softmax_xent(dx.data(), dl.data(), dx.data(), rows, cols, rows);
        cpu::softmax_xent(x.data(), labels.data(), x.data(), rows, cols, rows);
        got = dx.to_vector();
        bad = 0;
        for (std::size_t i = 0; i < x.size(); ++i) bad += !cuda_test::close(got[i], x[i], 1e-5, 1e-6 / double(rows));
        expect(bad == 0, "softmax_xent in place" + what);
    }
    // A bad label throws before anything runs.
    auto dx = cuda_test::to_device(Shape{2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6});
    auto dl = cuda_test::to_device(Shape{2}, std::vector<std::int32_t>{1, 3});
    bool threw = false;
    try {
        cuda::softmax_xent(dx.data(), dl.data(), static_cast<float*>(nullptr), 2, 3, 2);
    } catch (const Error&) {
        threw = true;
    }
    expect(threw, "softmax_xent throws on a label outside [0, cols)");
    // Labels on the device (fit's path) are not checked first: a bad one is
    // counted, and its row gets a zero gradient, not whatever was there.
    auto dx4 = cuda_test::to_device(Shape{4, 3}, std::vector<float>{1, 2, 3, 4, 5, 6, 0, 0, 0, 3, 1, 2});
    auto dl4 = cuda_test::to_device(Shape{4}, std::vector<std::int32_t>{1, 3, -1, 0});
    auto g4 = cuda_test::to_device(Shape{4, 3}, std::vector<float>(12, std::numeric_limits<float>::quiet_NaN()));
    cuda::Scratch<cuda::XentTotals> totals(1);
    cuda::softmax_xent_async(dx4.data(), dl4.data(), g4.data(), 4, 3, 4, totals.get(), false);
    cuda::XentTotals t{};
    // The kernels ran on the library's non-blocking stream: a plain cudaMemcpy
    // (the legacy stream) would not wait for them. copy_bytes copies on the
    // current stream and synchronizes.
    copy_bytes(&t, Device::cpu(), totals.get(), Device::cuda(0), sizeof t);
    const std::vector<float> good_x{1, 2, 3, 3, 1, 2};
    const std::vector<std::int32_t> good_l{1, 0};
    std::vector<float> good_g(6);
    const auto want = cpu::softmax_xent(good_x.data(), good_l.data(), good_g.data(), 2, 3, 4);
    const auto g = g4.to_vector();
    bool rows_ok = true;
    for (int c = 0; c < 3; ++c) {
        rows_ok = rows_ok && g[3 + c] == 0.0f && g[6 + c] == 0.0f;  // the two bad rows
        rows_ok = rows_ok && cuda_test::close(g[c], good_g[c], 1e-5, 1e-7) &&
                  cuda_test::close(g[9 + c], good_g[3 + c], 1e-5, 1e-7);
    }
    expect(t.bad_labels == 2 && t.correct == want.correct && cuda_test::close(t.loss_sum, want.loss_sum, 1e-5, 1e-9) &&
               rows_ok,
           "softmax_xent_async: bad device labels counted, their rows' gradient zero, the others as on the CPU");
}

// ---------------------------------------------------------------- optimizers

void test_optimizers(Philox& rng) {
    const std::vector<std::int64_t> sizes = {1, 5, 4096, 4097, 401408, 512, 10, 262144};
    for (int which = 0; which < 4; ++which) {
        // Per-tensor launchers and the multi-tensor launch, three steps each, vs the CPU.
        std::vector<std::vector<float>> w, g, s0, s1;
        std::vector<Tensor<float>> dw, dg, ds0, ds1, mw, ms0, ms1;
        for (auto n : sizes) {
            w.push_back(cuda_test::random_floats(n, rng));
            g.push_back(cuda_test::random_floats(n, rng));
            s0.push_back(cuda_test::random_floats(n, rng, 0.0f, 1.0f));
            s1.push_back(cuda_test::random_floats(n, rng, 0.0f, 1.0f));
            dw.push_back(cuda_test::to_device(Shape{n}, w.back()));
            dg.push_back(cuda_test::to_device(Shape{n}, g.back()));
            ds0.push_back(cuda_test::to_device(Shape{n}, s0.back()));
            ds1.push_back(cuda_test::to_device(Shape{n}, s1.back()));
            mw.push_back(dw.back().clone());
            ms0.push_back(ds0.back().clone());
            ms1.push_back(ds1.back().clone());
        }
        std::vector<cuda::ParamSlots<float>> slots;
        for (std::size_t i = 0; i < sizes.size(); ++i)
            slots.push_back({mw[i].data(), dg[i].data(), ms0[i].data(), ms1[i].data(), sizes[i], 0});
        cuda::MultiTensorList<float> list(slots);
        // Device counters as fit keeps them: [2] is the number of the next update.
        auto counters = cuda_test::to_device(Shape{3}, std::vector<std::int64_t>{0, 0, 1});
        const char* names[] = {"rmsprop", "sgd momentum", "sgd nesterov", "adam"};
        for (int step = 1; step <= 3; ++step) {
            for (std::size_t i = 0; i < sizes.size(); ++i) {
                const auto n = sizes[i];
                switch (which) {
                    case 0:
                        cpu::rmsprop_update(w[i].data(), g[i].data(), s0[i].data(), n, 0.01f, 0.9f, 1e-7f);
                        cuda::rmsprop_update(dw[i].data(), dg[i].data(), ds0[i].data(), n, 0.01f, 0.9f, 1e-7f);
                        break;
                    case 1:
                    case 2:
                        cpu::sgd_update(w[i].data(), g[i].data(), s0[i].data(), n, 0.05f, 0.9f, which == 2);
                        cuda::sgd_update(dw[i].data(), dg[i].data(), ds0[i].data(), n, 0.05f, 0.9f, which == 2);
                        break;
                    default:
                        cpu::adam_update(w[i].data(), g[i].data(), s0[i].data(), s1[i].data(), n, 0.01f, 0.9f, 0.999f,
                                         1e-7f, step);
                        cuda::adam_update(dw[i].data(), dg[i].data(), ds0[i].data(), ds1[i].data(), n, 0.01f, 0.9f,
                                          0.999f, 1e-7f, step);
                }
            }
            switch (which) {
                case 0: cuda::rmsprop_update_multi(list, {0.01f, 0.9f, 1e-7f}); break;
                case 1:
                case 2: cuda::sgd_update_multi(list, {0.05f, 0.9f, which == 2}); break;
                default: {
                    cuda::AdamArgs a{0.01f, 0.9f, 0.999f, 1e-7f, 0,
                                     reinterpret_cast<const long long*>(counters.data() + 2)};
                    cuda::adam_update_multi(list, a);
                    cuda::advance_step(counters.data(), 0);
                }
            }
        }
        for (std::size_t i = 0; i < sizes.size(); ++i) {
            const std::string what = std::string(names[which]) + " n=" + std::to_string(sizes[i]);
            for (int k = 0; k < 2; ++k) {
                auto got_w = (k ? mw[i] : dw[i]).to_vector();
                auto got_s = (k ? ms0[i] : ds0[i]).to_vector();
                // Adam's second slot (v) too; RMSprop and SGD leave s1 untouched, which is checked the same way.
                auto got_s1 = (k ? ms1[i] : ds1[i]).to_vector();
                int bad = 0;
                for (std::size_t j = 0; j < got_w.size(); ++j)
                    bad += !cuda_test::close(got_w[j], w[i][j], 1e-5, 1e-6) ||
                           !cuda_test::close(got_s[j], s0[i][j], 1e-5, 1e-6) ||
                           !cuda_test::close(got_s1[j], s1[i][j], 1e-5, 1e-6);
                expect(bad == 0, what + (k ? " (multi-tensor)" : " (one tensor)") + ": " + std::to_string(bad) + " off");
            }
        }
    }
}

// ---------------------------------------------------------------- data

void test_gather(Philox& rng) {
    for (auto [rows, features, count] : std::vector<std::tuple<std::int64_t, std::int64_t, std::int64_t>>{
             {1, 1, 1}, {10, 3, 7}, {1000, 784, 128}, {60000, 784, 96}, {5, 4097, 9}}) {
        std::vector<std::uint8_t> data(static_cast<std::size_t>(rows * features)), labels(static_cast<std::size_t>(rows));
        for (auto& v : data) v = std::uint8_t(rng.below(256));
        for (auto& v : labels) v = std::uint8_t(rng.below(10));
        std::vector<std::int64_t> idx(static_cast<std::size_t>(count));
        for (auto& i : idx) i = std::int64_t(rng.below(std::uint32_t(rows)));
        auto dd = cuda_test::to_device(Shape{rows, features}, data);
        auto dl = cuda_test::to_device(Shape{rows}, labels);
        auto out = Tensor<float>::empty(Shape{count, features}, Device::cuda(0));
        auto lout = Tensor<std::int32_t>::empty(Shape{count}, Device::cuda(0));
        cuda_test::poison(out);
        cuda_test::poison(lout);
        const float scale = 1.0f / 255.0f;
        cuda::gather_normalize(dd.data(), rows, features, idx.data(), count, scale, out.data());
        cuda::gather_labels(dl.data(), rows, idx.data(), count, lout.data());
        std::vector<float> want(static_cast<std::size_t>(count * features));
        std::vector<std::int32_t> wl(static_cast<std::size_t>(count));
        cpu::gather_normalize(data.data(), rows, features, idx.data(), count, scale, want.data());
        cpu::gather_labels(labels.data(), rows, idx.data(), count, wl.data());
        auto got = out.to_vector();
        int bad = 0;
        for (std::size_t i = 0; i < got.size(); ++i) bad += !cuda_test::same_bits(got[i], want[i]);
        const std::string what = " " + dims(rows, features, count);
        expect(bad == 0, "gather_normalize" + what);
        expect(lout.to_vector() == wl, "gather_labels" + what);

        // device indices with a device offset, x and labels in one launch
        auto didx = cuda_test::to_device(Shape{count + 2}, [&] {
            std::vector<std::int64_t> v{-1, -1};
            v.insert(v.end(), idx.begin(), idx.end());
            return v;
        }());
        auto off = cuda_test::to_device(Shape{1}, std::vector<std::int64_t>{2});
        cuda_test::poison(out);
        cuda_test::poison(lout);
        cuda::gather_batch<float, std::int32_t>(dd.data(), dl.data(), rows, features, didx.data(), off.data(), count,
                                                scale, out.data(), lout.data());
        got = out.to_vector();
        bad = 0;
        for (std::size_t i = 0; i < got.size(); ++i) bad += !cuda_test::same_bits(got[i], want[i]);
        expect(bad == 0 && lout.to_vector() == wl, "gather_batch (device indices and offset)" + what);
    }
    // An index out of range throws before anything is copied.
    auto dd = cuda_test::to_device(Shape{2, 2}, std::vector<std::uint8_t>{1, 2, 3, 4});
    auto out = Tensor<float>::empty(Shape{1, 2}, Device::cuda(0));
    std::int64_t bad_index = 2;
    bool threw = false;
    try {
        cuda::gather_normalize(dd.data(), 2, 2, &bad_index, 1, 1.0f, out.data());
    } catch (const Error&) {
        threw = true;
    }
    expect(threw, "gather_normalize throws on an index out of range");
}

}  // namespace

int main() {
    if (cuda_test::no_device()) return cuda_test::kSkip;
    try {
        Philox rng(20261122, 0);
        test_gemm(rng);
        test_gemm_split(rng);
        test_elementwise(rng);
        test_dropout(rng);
        test_softmax_xent(rng);
        test_optimizers(rng);
        test_gather(rng);
        cuda::synchronize();
    } catch (const std::exception& e) {
        expect(false, std::string("exception: ") + e.what());
    }
    return cuda_test::finish("CUDA ops vs CPU");
}
