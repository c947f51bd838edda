// General matrix multiply on the GPU, the twin of cumulus/cpu/gemm.hpp:
//
//   C(M,N) = epi(alpha * op(A) * op(B) + beta * C), row-major
//
// op(A) is M x K (A stored M x K when ta == No, K x M when Yes); op(B) is
// K x N (B stored K x N when tb == No, N x K when Yes). Epilogue::Bias adds
// bias[j] to column j, BiasRelu then takes max(., 0) (NaN passes through).
// beta == 0 never reads C; alpha == 0 or K == 0 never reads A or B.
//
// FP32 SIMT (no tensor cores): a block computes a BM x BN tile of C, walking
// K in steps of BK through two shared-memory buffers (the next tile is
// loaded into registers while the current one is multiplied, then stored
// into the other buffer: one barrier per step). Each thread keeps a TM x TN
// block of accumulators, read from shared memory as VW-wide vectors in
// TM/VW row groups and TN/VW column groups spread over the tile, so the
// 16-byte shared loads of a warp hit distinct banks. Global loads are 16
// bytes wide where the operand's base pointer and leading dimension allow
// (and all four elements are inside the matrix); elsewhere scalar, with
// zero fill past the edges, so any M, N, K works.
//
// Three tile shapes; gemm_auto_tile takes the largest that still gives
// every SM a block (the MLP's M = 128 products need the small ones to fill
// the chip) without padding the output much more than the small tile does.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <type_traits>

#include <cumulus/core/error.hpp>
#include <cumulus/core/op_types.hpp>
#include <cumulus/cuda/runtime.cuh>

namespace cumulus::cuda {

template <int BM_, int BN_, int BK_, int TM_, int TN_, int MIN_BLOCKS_ = 0>
struct GemmConfig {
    // Resident blocks per SM that __launch_bounds__ asks ptxas to fit (it
    // then caps the registers); 0 leaves the register count to ptxas.
    static constexpr int kMinBlocks = MIN_BLOCKS_;
    static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_;
    static constexpr int kThreads = (BM / TM) * (BN / TN);
    static constexpr int VM = TM < 4 ? TM : 4;  // vector width of a thread's row group
    static constexpr int VN = TN < 4 ? TN : 4;
    static constexpr int GM = TM / VM;  // row groups per thread, BM / GM rows apart
    static constexpr int GN = TN / VN;
    static constexpr int PAD = 4;  // keeps shared rows 16-byte aligned, shifts banks
    static_assert(BM % TM == 0 && BN % TN == 0 && TM % VM == 0 && TN % VN == 0);
    static_assert(BM % 4 == 0 && BN % 4 == 0 && BK % 4 == 0, "tiles are loaded in groups of 4");
};

using GemmLarge = GemmConfig<128, 128, 8, 8, 8>;  // 256 threads, 64 outputs each
using GemmMedium = GemmConfig<64, 64, 16, 4, 4>;  // 256 threads, 16 outputs each
using GemmSmall = GemmConfig<32, 32, 32, 2, 2>;   // 256 threads, 4 outputs each

// ---------------------------------------------------------------- kernels

namespace detail {

// Loads a ROWS x COLS tile of a row-major matrix X (rows_total x cols_total,
// leading dimension ld) starting at (r0, c0) into registers, as groups of 4
// consecutive columns. Out-of-range elements are 0.
template <typename T, int ROWS, int COLS, int THREADS>
struct TileLoader {
    static constexpr int kGroups = ROWS * COLS / 4;
    static constexpr int kPerThread = (kGroups + THREADS - 1) / THREADS;
    T regs[kPerThread][4];

    __device__ __forceinline__ void load(const T* __restrict__ X, std::int64_t ld, std::int64_t rows_total,
                                         std::int64_t cols_total, std::int64_t r0, std::int64_t c0, bool vec_ok,
                                         int tid) {
#pragma unroll
        for (int p = 0; p < kPerThread; ++p) {
            const int g = tid + p * THREADS;
            if (kGroups % THREADS != 0 && g >= kGroups) break;
            const int r = g / (COLS / 4), c = (g % (COLS / 4)) * 4;
            const std::int64_t gr = r0 + r, gc = c0 + c;
            if constexpr (std::is_same_v<T, float>) {
                if (vec_ok && gr < rows_total && gc + 3 < cols_total) {
                    const float4 v = *reinterpret_cast<const float4*>(X + gr * ld + gc);
                    regs[p][0] = v.x;
                    regs[p][1] = v.y;
                    regs[p][2] = v.z;
                    regs[p][3] = v.w;
                    continue;
                }
            }
#pragma unroll
            for (int j = 0; j < 4; ++j)
                regs[p][j] = gr < rows_total && gc + j < cols_total ? X[gr * ld + gc + j] : T(0);
        }
    }

    // Stores into a shared tile S[k][x] (k-major, row stride LD). `k_is_col`:
    // the loaded tile's columns are k (so it is transposed on the way).
    template <int LD, bool k_is_col>
    __device__ __forceinline__ void store(T* S, int tid) const {
#pragma unroll
        for (int p = 0; p < kPerThread; ++p) {
            const int g = tid + p * THREADS;
            if (kGroups % THREADS != 0 && g >= kGroups) break;
            const int r = g / (COLS / 4), c = (g % (COLS / 4)) * 4;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                if constexpr (k_is_col) S[(c + j) * LD + r] = regs[p][j];
                else S[r * LD + c + j] = regs[p][j];
            }
        }
    }
};

template <typename T, int V>
__device__ __forceinline__ void load_fragment(const T* s, T* out) {
    if constexpr (std::is_same_v<T, float> && V == 4) {
        const float4 v = *reinterpret_cast<const float4*>(s);
        out[0] = v.x;
        out[1] = v.y;
        out[2] = v.z;
        out[3] = v.w;
    } else {
#pragma unroll
        for (int i = 0; i < V; ++i) out[i] = s[i];
    }
}

// acc += the BK-deep product of one shared A tile (As[k][m], row stride
// BM + PAD) and B tile (Bs[k][n], row stride BN + PAD) for this thread's
// TM x TN block: its fragments are TM / VM row groups and TN / VN column
// groups, read as vectors (see the top of this file). Shared by gemm_kernel
// and the implicit GEMMs of conv.cuh.
template <typename Cfg, typename T>
__device__ __forceinline__ void multiply_tile(const T* as, const T* bs, T (&acc)[Cfg::TM][Cfg::TN], int tx, int ty) {
    constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, TM = Cfg::TM, TN = Cfg::TN;
    constexpr int VM = Cfg::VM, VN = Cfg::VN, GM = Cfg::GM, GN = Cfg::GN;
    constexpr int LDA_S = BM + Cfg::PAD, LDB_S = BN + Cfg::PAD;
#pragma unroll
    for (int k = 0; k < BK; ++k) {
        T a[TM], b[TN];
#pragma unroll
        for (int g = 0; g < GM; ++g) load_fragment<T, VM>(as + k * LDA_S + g * (BM / GM) + ty * VM, a + g * VM);
#pragma unroll
        for (int g = 0; g < GN; ++g) load_fragment<T, VN>(bs + k * LDB_S + g * (BN / GN) + tx * VN, b + g * VN);
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] += a[i] * b[j];
    }
}

// Where accumulator (i, j) of thread (tx, ty) sits in the block's tile:
// row group i / VM is BM / GM rows from the last, and likewise for columns.
template <typename Cfg>
__device__ __forceinline__ int tile_row(int i, int ty) {
    return (i / Cfg::VM) * (Cfg::BM / Cfg::GM) + ty * Cfg::VM + (i % Cfg::VM);
}
template <typename Cfg>
__device__ __forceinline__ int tile_col(int j, int tx) {
    return (j / Cfg::VN) * (Cfg::BN / Cfg::GN) + tx * Cfg::VN + (j % Cfg::VN);
}

}  // namespace detail

template <typename Cfg, bool TA, bool TB, typename T>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kMinBlocks)
    gemm_kernel(std::int64_t M, std::int64_t N, std::int64_t K, T alpha, const T* __restrict__ A, std::int64_t lda,
                const T* __restrict__ B, std::int64_t ldb, T beta, T* __restrict__ C, std::int64_t ldc,
                int epilogue, const T* __restrict__ bias, bool vec_a, bool vec_b) {
    constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, TM = Cfg::TM, TN = Cfg::TN, THREADS = Cfg::kThreads;
    constexpr int LDA_S = BM + Cfg::PAD, LDB_S = BN + Cfg::PAD;
    __shared__ __align__(16) T As[2][BK * LDA_S];  // As[k][m]
    __shared__ __align__(16) T Bs[2][BK * LDB_S];  // Bs[k][n]

    const int tid = threadIdx.x;
    const int tx = tid % (BN / TN), ty = tid / (BN / TN);
    // One block per output tile, in row-major order of the tiles (a row of
    // blocks shares its A rows): a 1-D grid, so M has no 65535-tile limit.
    const std::int64_t n_tiles = (N + BN - 1) / BN, tile = blockIdx.x;
    const std::int64_t m0 = tile / n_tiles * BM, n0 = tile % n_tiles * BN;

    // op(A) tile: A stored M x K (rows m, cols k) or K x M (rows k, cols m).
    using LoaderA = detail::TileLoader<T, TA ? BK : BM, TA ? BM : BK, THREADS>;
    using LoaderB = detail::TileLoader<T, TB ? BN : BK, TB ? BK : BN, THREADS>;
    LoaderA la;
    LoaderB lb;
    auto load_tiles = [&](std::int64_t k0) {
        if constexpr (TA) la.load(A, lda, K, M, k0, m0, vec_a, tid);
        else la.load(A, lda, M, K, m0, k0, vec_a, tid);
        if constexpr (TB) lb.load(B, ldb, N, K, n0, k0, vec_b, tid);
        else lb.load(B, ldb, K, N, k0, n0, vec_b, tid);
    };
    auto store_tiles = [&](int buf) {
        la.template store<LDA_S, !TA>(As[buf], tid);  // stored M x K: columns are k, transpose
        lb.template store<LDB_S, TB>(Bs[buf], tid);   // stored N x K: columns are k, transpose
    };

    T acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = T(0);

    const std::int64_t k_tiles = (K + BK - 1) / BK;
    load_tiles(0);
    store_tiles(0);
    __syncthreads();
    for (std::int64_t kt = 0; kt < k_tiles; ++kt) {
        const int buf = int(kt & 1);
        const bool more = kt + 1 < k_tiles;
        if (more) load_tiles((kt + 1) * BK);  // in flight while this tile is multiplied
        detail::multiply_tile<Cfg>(As[buf], Bs[buf], acc, tx, ty);
        // The other buffer was last read in step kt - 1, before the barrier
        // that ended it; the barrier below orders these stores before step kt + 1.
        if (more) store_tiles(buf ^ 1);
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const std::int64_t m = m0 + detail::tile_row<Cfg>(i, ty);
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const std::int64_t n = n0 + detail::tile_col<Cfg>(j, tx);
            if (n >= N) continue;
            T v = alpha * acc[i][j];
            if (beta != T(0)) v += beta * C[m * ldc + n];
            if (epilogue != int(Epilogue::None)) v += bias[n];
            if (epilogue == int(Epilogue::BiasRelu)) v = v < T(0) ? T(0) : v;
            C[m * ldc + n] = v;
        }
    }
}

// C = epi(beta * C): K == 0 or alpha == 0.
template <typename T>
__global__ void gemm_scale_only_kernel(std::int64_t M, std::int64_t N, T beta, T* C, std::int64_t ldc, int epilogue,
                                       const T* bias) {
    const std::int64_t total = M * N;
    for (std::int64_t idx = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; idx < total;
         idx += std::int64_t(gridDim.x) * blockDim.x) {
        const std::int64_t m = idx / N, n = idx - m * N;
        T v = beta == T(0) ? T(0) : beta * C[m * ldc + n];
        if (epilogue != int(Epilogue::None)) v += bias[n];
        if (epilogue == int(Epilogue::BiasRelu)) v = v < T(0) ? T(0) : v;
        C[m * ldc + n] = v;
    }
}

// ---------------------------------------------------------------- launchers

enum class GemmTile { Auto, Large, Medium, Small };

inline const char* gemm_tile_name(GemmTile t) {
    switch (t) {
        case GemmTile::Auto: return "auto";
        case GemmTile::Large: return "128x128x8";
        case GemmTile::Medium: return "64x64x16";
        case GemmTile::Small: return "32x32x32";
    }
    return "?";
}

// The output block of a tile (Auto has none: resolve it with gemm_auto_tile first).
struct GemmTileDims {
    std::int64_t bm, bn;
};
inline GemmTileDims gemm_tile_dims(GemmTile t) {
    switch (t) {
        case GemmTile::Large: return {GemmLarge::BM, GemmLarge::BN};
        case GemmTile::Medium: return {GemmMedium::BM, GemmMedium::BN};
        case GemmTile::Small: return {GemmSmall::BM, GemmSmall::BN};
        case GemmTile::Auto: break;
    }
    CUMULUS_CHECK(false, "gemm_tile_dims: GemmTile::Auto has no dimensions; resolve it with gemm_auto_tile");
    return {0, 0};
}

namespace detail {

inline bool aligned16(const void* p, std::int64_t ld, std::size_t elem) {
    return reinterpret_cast<std::uintptr_t>(p) % 16 == 0 && (ld * std::int64_t(elem)) % 16 == 0;
}

template <typename Cfg, typename T>
void gemm_launch(bool ta, bool tb, std::int64_t M, std::int64_t N, std::int64_t K, T alpha, const T* A,
                 std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc, Epilogue epi,
                 const T* bias, cudaStream_t stream) {
    const std::int64_t tiles = ceil_div(N, Cfg::BN) * ceil_div(M, Cfg::BM);
    CUMULUS_CHECK(tiles <= std::numeric_limits<int>::max(), "gemm: ", M, " x ", N, " is too large for one launch (",
                  tiles, " tiles of ", Cfg::BM, " x ", Cfg::BN, "; at most 2^31 - 1)");
    const dim3 grid{static_cast<unsigned>(tiles)};
    const bool va = aligned16(A, lda, sizeof(T)), vb = aligned16(B, ldb, sizeof(T));
    const int e = int(epi);
    if (!ta && !tb)
        gemm_kernel<Cfg, false, false, T>
            <<<grid, Cfg::kThreads, 0, stream>>>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, e, bias, va, vb);
    else if (!ta && tb)
        gemm_kernel<Cfg, false, true, T>
            <<<grid, Cfg::kThreads, 0, stream>>>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, e, bias, va, vb);
    else if (ta && !tb)
        gemm_kernel<Cfg, true, false, T>
            <<<grid, Cfg::kThreads, 0, stream>>>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, e, bias, va, vb);
    else
        gemm_kernel<Cfg, true, true, T>
            <<<grid, Cfg::kThreads, 0, stream>>>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, e, bias, va, vb);
    CUMULUS_CUDA_CHECK_LAUNCH();
}

}  // namespace detail

// The tile the automatic choice takes for an M x N product: the largest
// whose grid still has a block for every SM and which computes at most 1/8
// more outputs, rounded up to whole tiles, than the smallest tile does (a
// 128-wide tile on a 32-column product would do four times the arithmetic).
inline GemmTile gemm_auto_tile(std::int64_t M, std::int64_t N) {
    const std::int64_t sms = device_properties().multiProcessorCount;
    auto blocks = [&](std::int64_t bm, std::int64_t bn) { return ceil_div(M, bm) * ceil_div(N, bn); };
    auto padded = [&](std::int64_t bm, std::int64_t bn) { return blocks(bm, bn) * bm * bn; };
    const auto small = gemm_tile_dims(GemmTile::Small);
    const std::int64_t least = padded(small.bm, small.bn);
    for (const GemmTile t : {GemmTile::Large, GemmTile::Medium}) {
        const auto d = gemm_tile_dims(t);
        if (blocks(d.bm, d.bn) >= sms && padded(d.bm, d.bn) * 8 <= least * 9) return t;
    }
    return GemmTile::Small;
}

// gemm() with a chosen tile (for tests and benchmarks).
template <typename T>
void gemm_with_tile(GemmTile tile, Transpose ta, Transpose tb, std::int64_t M, std::int64_t N, std::int64_t K,
                    T alpha, const T* A, std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C,
                    std::int64_t ldc, Epilogue epilogue = Epilogue::None, const T* bias = nullptr,
                    cudaStream_t stream = current_stream()) {
    static_assert(std::is_floating_point_v<T>, "gemm: T must be float or double");
    CUMULUS_CHECK(M >= 0 && N >= 0 && K >= 0, "gemm: negative size M=", M, " N=", N, " K=", K);
    const std::int64_t a_row = ta == Transpose::No ? K : M, b_row = tb == Transpose::No ? N : K;
    CUMULUS_CHECK(lda >= a_row, "gemm: lda=", lda, " is less than the row length ", a_row, " of A");
    CUMULUS_CHECK(ldb >= b_row, "gemm: ldb=", ldb, " is less than the row length ", b_row, " of B");
    CUMULUS_CHECK(ldc >= N, "gemm: ldc=", ldc, " is less than N=", N);
    if (M == 0 || N == 0) return;
    CUMULUS_CHECK(C != nullptr, "gemm: C is null for a ", M, " x ", N, " product");
    if (epilogue != Epilogue::None)
        CUMULUS_CHECK(bias != nullptr, "gemm: the bias epilogue needs a bias of N=", N, " entries, got null");
    if (K == 0 || alpha == T(0)) {
        gemm_scale_only_kernel<<<grid_for(M * N), kThreads, 0, stream>>>(M, N, beta, C, ldc, int(epilogue), bias);
        CUMULUS_CUDA_CHECK_LAUNCH();
        return;
    }
    CUMULUS_CHECK(A != nullptr && B != nullptr, "gemm: A or B is null with M=", M, " N=", N, " K=", K);
    if (tile == GemmTile::Auto) tile = gemm_auto_tile(M, N);
    const bool a_t = ta == Transpose::Yes, b_t = tb == Transpose::Yes;
    switch (tile) {
        case GemmTile::Large:
            detail::gemm_launch<GemmLarge>(a_t, b_t, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epilogue, bias,
                                           stream);
            break;
        case GemmTile::Medium:
            detail::gemm_launch<GemmMedium>(a_t, b_t, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epilogue, bias,
                                            stream);
            break;
        default:
            detail::gemm_launch<GemmSmall>(a_t, b_t, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epilogue, bias,
                                           stream);
            break;
    }
}

// C(M,N) = epi(alpha * op(A) * op(B) + beta * C), row-major; see the top of
// this file. Same contract as cpu::gemm; all pointers are device pointers.
template <typename T>
void gemm(Transpose ta, Transpose tb, std::int64_t M, std::int64_t N, std::int64_t K, T alpha, const T* A,
          std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc,
          Epilogue epilogue = Epilogue::None, const T* bias = nullptr, cudaStream_t stream = current_stream()) {
    gemm_with_tile(GemmTile::Auto, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epilogue, bias, stream);
}

}  // namespace cumulus::cuda
