// cpu::gemm against a double-precision triple loop on random data: every
// transpose pair, epilogue and alpha/beta case, padded leading dimensions,
// shapes around the micro-tile and cache-block edges, the MNIST MLP shapes,
// every instruction set this CPU has, and the threaded path.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <cumulus/core/error.hpp>
#include <cumulus/core/parallel.hpp>
#include <cumulus/core/random.hpp>
#include <cumulus/cpu/gemm.hpp>

namespace {

using cumulus::Epilogue;
using cumulus::Transpose;
using cumulus::cpu::GemmIsa;
using Index = std::int64_t;

constexpr Transpose kNo = Transpose::No, kYes = Transpose::Yes;

std::vector<GemmIsa> supported_isas() {
    std::vector<GemmIsa> out;
    for (GemmIsa isa : {GemmIsa::Generic, GemmIsa::Avx2, GemmIsa::Avx512})
        if (cumulus::cpu::gemm_isa_supported(isa)) out.push_back(isa);
    return out;
}

const char* tname(Transpose t) { return t == kNo ? "N" : "T"; }

const char* epi_name(Epilogue e) {
    return e == Epilogue::None ? "none" : e == Epilogue::Bias ? "bias" : "bias_relu";
}

// A rows x cols matrix with row stride ld; the padding holds NaN so that a
// read of it shows up in the result.
template <typename T>
std::vector<T> random_matrix(Index rows, Index cols, Index ld, cumulus::Philox& rng) {
    std::vector<T> m(static_cast<std::size_t>(std::max<Index>(rows * ld, 1)), std::numeric_limits<T>::quiet_NaN());
    for (Index i = 0; i < rows; ++i)
        for (Index j = 0; j < cols; ++j) m[i * ld + j] = static_cast<T>(rng.uniform(-1.f, 1.f));
    return m;
}

struct Case {
    Transpose ta = kNo, tb = kNo;
    Index M = 1, N = 1, K = 1;
    double alpha = 1, beta = 0;
    Epilogue epi = Epilogue::None;
    Index pad_a = 0, pad_b = 0, pad_c = 0;  // leading dimension beyond the row length
    Index row_step = 1;                     // check every row_step-th row (big shapes)

    std::string str() const {
        std::ostringstream os;
        os << tname(ta) << tname(tb) << " M=" << M << " N=" << N << " K=" << K << " alpha=" << alpha
           << " beta=" << beta << " epi=" << epi_name(epi) << " pads=" << pad_a << "," << pad_b << "," << pad_c;
        return os.str();
    }
};

// Runs one case through gemm_with_isa and checks it against the reference
// (unless told not to). Returns the computed C (with padding).
template <typename T>
std::vector<T> check_case(GemmIsa isa, const Case& c, std::uint64_t seed, bool verify = true) {
    CAPTURE(c.str());
    CAPTURE(cumulus::cpu::gemm_isa_name(isa));
    CAPTURE(sizeof(T));
    cumulus::Philox rng(seed, 3);
    const Index a_rows = c.ta == kNo ? c.M : c.K, a_cols = c.ta == kNo ? c.K : c.M;
    const Index b_rows = c.tb == kNo ? c.K : c.N, b_cols = c.tb == kNo ? c.N : c.K;
    const Index lda = a_cols + c.pad_a, ldb = b_cols + c.pad_b, ldc = c.N + c.pad_c;
    const auto A = random_matrix<T>(a_rows, a_cols, lda, rng);
    const auto B = random_matrix<T>(b_rows, b_cols, ldb, rng);
    auto C = random_matrix<T>(c.M, c.N, ldc, rng);
    const auto bias = random_matrix<T>(1, c.N, c.N, rng);
    // beta == 0 must not read C: poison it.
    if (c.beta == 0)
        for (Index i = 0; i < c.M; ++i)
            for (Index j = 0; j < c.N; ++j) C[i * ldc + j] = std::numeric_limits<T>::quiet_NaN();
    const auto C0 = C;

    cumulus::cpu::gemm_with_isa<T>(isa, c.ta, c.tb, c.M, c.N, c.K, T(c.alpha), A.data(), lda, B.data(), ldb,
                                   T(c.beta), C.data(), ldc, c.epi, c.epi == Epilogue::None ? nullptr : bias.data());
    if (!verify) return C;

    // The error of a float sum of K products grows like sqrt(K) times the
    // size of its terms; the bound uses the sum of |terms| of each element.
    const double eps = std::numeric_limits<T>::epsilon();
    Index bad = 0;
    std::string first;
    for (Index i = 0; i < c.M; ++i) {
        const bool checked = i % c.row_step == 0 || i == c.M - 1;
        for (Index j = 0; j < ldc; ++j) {
            const T got = C[i * ldc + j];
            if (j >= c.N) {  // padding of C is never written
                if (!std::isnan(got)) ++bad;
                continue;
            }
            if (!checked) continue;
            double dot = 0, mag = 0;
            for (Index k = 0; k < c.K; ++k) {
                const double a = c.ta == kNo ? A[i * lda + k] : A[k * lda + i];
                const double b = c.tb == kNo ? B[k * ldb + j] : B[j * ldb + k];
                dot += a * b;
                mag += std::abs(a * b);
            }
            double want = c.alpha * dot;
            mag = std::abs(c.alpha) * mag;
            if (c.beta != 0) {
                want += c.beta * double(C0[i * ldc + j]);
                mag += std::abs(c.beta * double(C0[i * ldc + j]));
            }
            if (c.epi != Epilogue::None) {
                want += double(bias[j]);
                mag += std::abs(double(bias[j]));
            }
            if (c.epi == Epilogue::BiasRelu && want < 0) want = 0;
            const double tol = 4 * eps * std::sqrt(double(c.K) + 1) * mag + 1e-30;
            if (!(std::abs(double(got) - want) <= tol)) {
                if (bad == 0) {
                    std::ostringstream os;
                    os.precision(9);
                    os << "C(" << i << "," << j << ") = " << got << ", want " << want << " (tol " << tol << ")";
                    first = os.str();
                }
                ++bad;
            }
        }
    }
    CHECK_MESSAGE(bad == 0, first, " and ", bad, " elements wrong in all");
    return C;
}

const Transpose kPairs[4][2] = {{kNo, kNo}, {kNo, kYes}, {kYes, kNo}, {kYes, kYes}};

}  // namespace

TEST_CASE("gemm: odd and block-edge shapes, all transposes, every instruction set") {
    // (M, N, K): unit, primes, one either side of the micro-tiles (6, 8, 12,
    // 16, 32 wide) and of the K block (256), more rows than an M block (144,
    // 192), more columns than an N block (1024).
    const Index shapes[][3] = {{1, 1, 1},   {7, 13, 17},   {31, 29, 37},  {2, 3, 1},    {12, 32, 8},
                               {13, 33, 9}, {11, 31, 255}, {25, 17, 257}, {6, 16, 600}, {5, 1100, 3},
                               {300, 7, 5}, {49, 65, 40},  {1, 40, 70},   {40, 1, 70}};
    std::uint64_t seed = 1;
    for (GemmIsa isa : supported_isas()) {
        for (const auto& pair : kPairs) {
            for (const auto& s : shapes) {
                Case c;
                c.ta = pair[0];
                c.tb = pair[1];
                c.M = s[0];
                c.N = s[1];
                c.K = s[2];
                // Cycle through the epilogues, the betas and the paddings.
                c.epi = static_cast<Epilogue>(seed % 3);
                c.beta = seed % 4 == 0 ? 0.0 : seed % 4 == 1 ? 1.0 : seed % 4 == 2 ? 0.5 : 0.0;
                c.alpha = seed % 5 == 0 ? -1.5 : 1.0;
                c.pad_a = seed % 2 ? 3 : 0;
                c.pad_b = seed % 3 ? 0 : 5;
                c.pad_c = seed % 2 ? 0 : 2;
                check_case<float>(isa, c, seed);
                if (isa != GemmIsa::Avx512) check_case<double>(isa, c, seed);
                ++seed;
            }
        }
    }
}

TEST_CASE("gemm: every epilogue with every beta and alpha") {
    std::uint64_t seed = 100;
    for (GemmIsa isa : supported_isas()) {
        for (Epilogue epi : {Epilogue::None, Epilogue::Bias, Epilogue::BiasRelu}) {
            for (double beta : {0.0, 1.0, 0.5}) {
                for (int pair = 0; pair < 4; ++pair) {
                    Case c;
                    c.ta = kPairs[pair][0];
                    c.tb = kPairs[pair][1];
                    c.M = 19;
                    c.N = 37;
                    c.K = 270;  // two K blocks: beta applies once, the epilogue once
                    c.alpha = pair % 2 ? 0.25 : 1.0;
                    c.beta = beta;
                    c.epi = epi;
                    c.pad_a = 1;
                    c.pad_b = 2;
                    c.pad_c = 3;
                    check_case<float>(isa, c, seed);
                    if (isa != GemmIsa::Avx512) check_case<double>(isa, c, seed);
                    ++seed;
                }
            }
        }
    }
}

TEST_CASE("gemm: the MNIST MLP shapes (batch 128 and the last batch of 96)") {
    // Forward X W (+ b, relu), backward data dY W^T, backward weights X^T dY.
    const Case shapes[] = {
        {kNo, kNo, 128, 512, 784, 1, 0, Epilogue::BiasRelu, 0, 0, 0, 9},
        {kNo, kNo, 128, 512, 512, 1, 0, Epilogue::BiasRelu, 0, 0, 0, 9},
        {kNo, kNo, 128, 10, 512, 1, 0, Epilogue::Bias, 0, 0, 0, 1},
        {kNo, kNo, 96, 512, 784, 1, 0, Epilogue::BiasRelu, 0, 0, 0, 9},
        {kNo, kYes, 128, 512, 512, 1, 0, Epilogue::None, 0, 0, 0, 9},
        {kNo, kYes, 128, 512, 10, 1, 0, Epilogue::None, 0, 0, 0, 9},
        {kNo, kYes, 96, 512, 10, 1, 0, Epilogue::None, 0, 0, 0, 9},
        {kYes, kNo, 784, 512, 128, 1, 0, Epilogue::None, 0, 0, 0, 23},
        {kYes, kNo, 512, 512, 128, 1, 0, Epilogue::None, 0, 0, 0, 23},
        {kYes, kNo, 512, 10, 128, 1, 0, Epilogue::None, 0, 0, 0, 5},
        {kYes, kNo, 784, 512, 96, 1, 1, Epilogue::None, 0, 0, 0, 23},  // gradient accumulation
    };
    std::uint64_t seed = 500;
    const GemmIsa best = cumulus::cpu::gemm_best_isa();
    for (const Case& c : shapes) {
        check_case<float>(best, c, seed);
        if (best != GemmIsa::Generic && c.N < 16) check_case<float>(GemmIsa::Avx2, c, seed);
        ++seed;
    }
}

TEST_CASE("gemm: K == 0, alpha == 0 and empty outputs") {
    const Index M = 5, N = 7;
    std::vector<float> bias(N);
    for (Index j = 0; j < N; ++j) bias[j] = float(j) - 3;
    std::vector<float> nan_ab(64, std::numeric_limits<float>::quiet_NaN());

    SUBCASE("K == 0, beta == 0: C = epi(0), C not read") {
        std::vector<float> C(M * N, std::numeric_limits<float>::quiet_NaN());
        cumulus::cpu::gemm<float>(kNo, kNo, M, N, 0, 1.f, nan_ab.data(), 0, nan_ab.data(), N, 0.f, C.data(), N,
                                  Epilogue::BiasRelu, bias.data());
        for (Index i = 0; i < M; ++i)
            for (Index j = 0; j < N; ++j) CHECK(C[i * N + j] == std::max(bias[j], 0.f));
    }
    SUBCASE("K == 0, beta == 0.5: C = 0.5 C + bias") {
        std::vector<float> C(M * N, 2.f);
        cumulus::cpu::gemm<float>(kYes, kYes, M, N, 0, 1.f, nullptr, M, nullptr, 0, 0.5f, C.data(), N,
                                  Epilogue::Bias, bias.data());
        for (Index i = 0; i < M; ++i)
            for (Index j = 0; j < N; ++j) CHECK(C[i * N + j] == 1.f + bias[j]);
    }
    SUBCASE("alpha == 0: A and B not read") {
        std::vector<double> C(M * N, 4.0), A(M * 3, std::nan("")), B(3 * N, std::nan(""));
        cumulus::cpu::gemm<double>(kNo, kNo, M, N, 3, 0.0, A.data(), 3, B.data(), N, 0.25, C.data(), N);
        for (double v : C) CHECK(v == 1.0);
    }
    SUBCASE("M == 0 or N == 0: nothing happens, null pointers allowed") {
        std::vector<float> C(4, 9.f);
        cumulus::cpu::gemm<float>(kNo, kNo, 0, N, 3, 1.f, nullptr, 3, nullptr, N, 0.f, nullptr, N);
        cumulus::cpu::gemm<float>(kNo, kNo, 2, 0, 3, 1.f, nullptr, 3, nullptr, 0, 0.f, C.data(), 2,
                                  Epilogue::Bias, nullptr);
        for (float v : C) CHECK(v == 9.f);
    }
}

TEST_CASE("gemm: threaded and serial runs agree bit for bit, and with the reference") {
    // Large enough to be split over the pool; inside a parallel region the
    // same call runs on one thread.
    Case c;
    c.M = 203;
    c.N = 300;
    c.K = 130;
    c.epi = Epilogue::Bias;
    c.pad_c = 1;
    c.row_step = 7;
    for (GemmIsa isa : supported_isas()) {
        for (int pair = 0; pair < 4; ++pair) {
            // Every transpose pair on the best instruction set, two on the others.
            if (isa != cumulus::cpu::gemm_best_isa() && pair % 3 != 0) continue;
            c.ta = kPairs[pair][0];
            c.tb = kPairs[pair][1];
            const auto threaded = check_case<float>(isa, c, 77);
            std::vector<float> serial;
            // Range 0 runs on this thread, inside the region.
            cumulus::parallel_for(2, [&](Index begin, Index, int) {
                if (begin == 0) serial = check_case<float>(isa, c, 77, false);
            });
            CHECK(std::memcmp(threaded.data(), serial.data(), threaded.size() * sizeof(float)) == 0);
        }
    }
    INFO("pool threads: ", cumulus::ThreadPool::global().size());
}

TEST_CASE("gemm: concurrent calls from several threads") {
    // Each thread has its own packing buffers.
    std::vector<std::thread> threads;
    std::vector<int> ok(4, 0);
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([t, &ok] {
            const Index M = 40 + t, N = 70, K = 90;
            std::vector<float> A(M * K, 1.f), B(K * N, 0.5f), C(M * N);
            for (int rep = 0; rep < 20; ++rep)
                cumulus::cpu::gemm<float>(kNo, kNo, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, C.data(), N);
            ok[t] = std::all_of(C.begin(), C.end(), [](float v) { return v == 45.f; });
        });
    }
    for (auto& th : threads) th.join();
    for (int t = 0; t < 4; ++t) CHECK(ok[t] == 1);
}

TEST_CASE("gemm: bad arguments throw cumulus::Error") {
    std::vector<float> A(100), B(100), C(100), bias(10);
    using cumulus::cpu::gemm;
    // M=4, N=5, K=6.
    CHECK_THROWS_AS(gemm<float>(kNo, kNo, -1, 5, 6, 1.f, A.data(), 6, B.data(), 5, 0.f, C.data(), 5),
                    cumulus::Error);
    CHECK_THROWS_AS(gemm<float>(kNo, kNo, 4, 5, -6, 1.f, A.data(), 6, B.data(), 5, 0.f, C.data(), 5),
                    cumulus::Error);
    CHECK_THROWS_AS(gemm<float>(kNo, kNo, 4, 5, 6, 1.f, A.data(), 5, B.data(), 5, 0.f, C.data(), 5),
                    cumulus::Error);  // lda < K
    CHECK_THROWS_AS(gemm<float>(kYes, kNo, 4, 5, 6, 1.f, A.data(), 3, B.data(), 5, 0.f, C.data(), 5),
                    cumulus::Error);  // A^T stored K x M: lda < M
    CHECK_THROWS_AS(gemm<float>(kNo, kNo, 4, 5, 6, 1.f, A.data(), 6, B.data(), 4, 0.f, C.data(), 5),
                    cumulus::Error);  // ldb < N
    CHECK_THROWS_AS(gemm<float>(kNo, kYes, 4, 5, 6, 1.f, A.data(), 6, B.data(), 5, 0.f, C.data(), 5),
                    cumulus::Error);  // B^T stored N x K: ldb < K
    CHECK_THROWS_AS(gemm<float>(kNo, kNo, 4, 5, 6, 1.f, A.data(), 6, B.data(), 5, 0.f, C.data(), 4),
                    cumulus::Error);  // ldc < N
    CHECK_THROWS_AS(gemm<float>(kNo, kNo, 4, 5, 6, 1.f, A.data(), 6, B.data(), 5, 0.f, nullptr, 5),
                    cumulus::Error);
    CHECK_THROWS_AS(gemm<float>(kNo, kNo, 4, 5, 6, 1.f, nullptr, 6, B.data(), 5, 0.f, C.data(), 5),
                    cumulus::Error);
    CHECK_THROWS_AS(
        gemm<float>(kNo, kNo, 4, 5, 6, 1.f, A.data(), 6, B.data(), 5, 0.f, C.data(), 5, Epilogue::Bias, nullptr),
        cumulus::Error);
    // The message names what was wrong.
    try {
        gemm<float>(kNo, kNo, 4, 5, 6, 1.f, A.data(), 5, B.data(), 5, 0.f, C.data(), 5);
        FAIL("no throw");
    } catch (const cumulus::Error& e) {
        CHECK(std::string(e.what()).find("lda=5") != std::string::npos);
    }
    // The valid call passes.
    CHECK_NOTHROW(gemm<float>(kNo, kNo, 4, 5, 6, 1.f, A.data(), 6, B.data(), 5, 0.f, C.data(), 5, Epilogue::BiasRelu,
                              bias.data()));
}
