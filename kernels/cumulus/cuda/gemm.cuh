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
// Given a workspace, gemm_auto_plan may take another tile and split the
// product along K (gemm_auto_split) where its cost model says that idle SMs
// cost more than a split does: each K range's partial product goes to the
// workspace, and gemm_sum_splits_kernel adds them in a fixed order and
// applies alpha, beta and the epilogue (no atomics: the same result every
// run).
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
    gemm_kernel(std::int64_t M, std::int64_t N, std::int64_t K, std::int64_t k_split, T alpha,
                const T* __restrict__ A, std::int64_t lda, const T* __restrict__ B, std::int64_t ldb, T beta,
                T* __restrict__ C, std::int64_t ldc, std::int64_t split_stride, int epilogue,
                const T* __restrict__ bias, bool vec_a, bool vec_b) {
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
    // Split z of the K range (grid.z; one split when gridDim.z == 1): the
    // range [kb, ke), its partial product to C + z * split_stride.
    const std::int64_t kb = std::int64_t(blockIdx.z) * k_split;
    const std::int64_t ke = kb + k_split < K ? kb + k_split : K;
    T* __restrict__ out = C + std::int64_t(blockIdx.z) * split_stride;

    // op(A) tile: A stored M x K (rows m, cols k) or K x M (rows k, cols m).
    using LoaderA = detail::TileLoader<T, TA ? BK : BM, TA ? BM : BK, THREADS>;
    using LoaderB = detail::TileLoader<T, TB ? BN : BK, TB ? BK : BN, THREADS>;
    LoaderA la;
    LoaderB lb;
    auto load_tiles = [&](std::int64_t k0) {
        if constexpr (TA) la.load(A, lda, ke, M, k0, m0, vec_a, tid);
        else la.load(A, lda, M, ke, m0, k0, vec_a, tid);
        if constexpr (TB) lb.load(B, ldb, N, ke, n0, k0, vec_b, tid);
        else lb.load(B, ldb, ke, N, k0, n0, vec_b, tid);
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

    const std::int64_t k_tiles = (ke - kb + BK - 1) / BK;
    load_tiles(kb);
    store_tiles(0);
    __syncthreads();
    for (std::int64_t kt = 0; kt < k_tiles; ++kt) {
        const int buf = int(kt & 1);
        const bool more = kt + 1 < k_tiles;
        if (more) load_tiles(kb + (kt + 1) * BK);  // in flight while this tile is multiplied
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
            if (beta != T(0)) v += beta * out[m * ldc + n];
            if (epilogue != int(Epilogue::None)) v += bias[n];
            if (epilogue == int(Epilogue::BiasRelu)) v = v < T(0) ? T(0) : v;
            out[m * ldc + n] = v;
        }
    }
}

// C(M, N) = epi(alpha * P + beta * C), where P is the sum of `splits`
// partial products parts[z * M * N + m * N + n], added in the order z = 0,
// 1, ... so that a result is the same every run. splits == 0 (K == 0 or
// alpha == 0) gives epi(beta * C): parts, A and B are not read. beta == 0
// never reads C. Also sums conv.cuh's split reductions (M = 1, alpha 1, beta 0).
template <typename T>
__global__ void gemm_sum_splits_kernel(const T* __restrict__ parts, std::int64_t splits, std::int64_t M,
                                       std::int64_t N, T alpha, T beta, T* __restrict__ C, std::int64_t ldc,
                                       int epilogue, const T* __restrict__ bias) {
    const std::int64_t total = M * N;
    for (std::int64_t idx = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; idx < total;
         idx += std::int64_t(gridDim.x) * blockDim.x) {
        const std::int64_t m = idx / N, n = idx - m * N;
        T v = T(0);
        if (splits > 0) {
            T sum = T(0);
            for (std::int64_t z = 0; z < splits; ++z) sum += parts[z * total + idx];
            v = alpha * sum;
        }
        if (beta != T(0)) v += beta * C[m * ldc + n];
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

// The block of a tile: bm x bn outputs, bk deep per K step (Auto has
// none: resolve it with gemm_auto_tile first).
struct GemmTileDims {
    std::int64_t bm, bn, bk;
};
inline GemmTileDims gemm_tile_dims(GemmTile t) {
    switch (t) {
        case GemmTile::Large: return {GemmLarge::BM, GemmLarge::BN, GemmLarge::BK};
        case GemmTile::Medium: return {GemmMedium::BM, GemmMedium::BN, GemmMedium::BK};
        case GemmTile::Small: return {GemmSmall::BM, GemmSmall::BN, GemmSmall::BK};
        case GemmTile::Auto: break;
    }
    CUMULUS_CHECK(false, "gemm_tile_dims: GemmTile::Auto has no dimensions; resolve it with gemm_auto_tile");
    return {0, 0, 0};
}

namespace detail {

inline bool aligned16(const void* p, std::int64_t ld, std::size_t elem) {
    return reinterpret_cast<std::uintptr_t>(p) % 16 == 0 && (ld * std::int64_t(elem)) % 16 == 0;
}

// One launch of gemm_kernel: `splits` K ranges of k_split each on grid.z,
// split z's product (epilogue and all) to C + z * split_stride.
template <typename Cfg, typename T>
void gemm_launch(bool ta, bool tb, std::int64_t M, std::int64_t N, std::int64_t K, std::int64_t splits,
                 std::int64_t k_split, T alpha, const T* A, std::int64_t lda, const T* B, std::int64_t ldb, T beta,
                 T* C, std::int64_t ldc, std::int64_t split_stride, Epilogue epi, const T* bias,
                 cudaStream_t stream) {
    const std::int64_t tiles = ceil_div(N, Cfg::BN) * ceil_div(M, Cfg::BM);
    CUMULUS_CHECK(tiles <= std::numeric_limits<int>::max(), "gemm: ", M, " x ", N, " is too large for one launch (",
                  tiles, " tiles of ", Cfg::BM, " x ", Cfg::BN, "; at most 2^31 - 1)");
    const dim3 grid{static_cast<unsigned>(tiles), 1, static_cast<unsigned>(splits)};
    const bool va = aligned16(A, lda, sizeof(T)), vb = aligned16(B, ldb, sizeof(T));
    const int e = int(epi);
    // Four explicit launches (the CUDA emulation rewrites each by name).
    if (!ta && !tb)
        gemm_kernel<Cfg, false, false, T><<<grid, Cfg::kThreads, 0, stream>>>(
            M, N, K, k_split, alpha, A, lda, B, ldb, beta, C, ldc, split_stride, e, bias, va, vb);
    else if (!ta && tb)
        gemm_kernel<Cfg, false, true, T><<<grid, Cfg::kThreads, 0, stream>>>(
            M, N, K, k_split, alpha, A, lda, B, ldb, beta, C, ldc, split_stride, e, bias, va, vb);
    else if (ta && !tb)
        gemm_kernel<Cfg, true, false, T><<<grid, Cfg::kThreads, 0, stream>>>(
            M, N, K, k_split, alpha, A, lda, B, ldb, beta, C, ldc, split_stride, e, bias, va, vb);
    else
        gemm_kernel<Cfg, true, true, T><<<grid, Cfg::kThreads, 0, stream>>>(
            M, N, K, k_split, alpha, A, lda, B, ldb, beta, C, ldc, split_stride, e, bias, va, vb);
    CUMULUS_CUDA_CHECK_LAUNCH();
}

}  // namespace detail

// How a product's K is split over blocks (split-K): `splits` ranges of
// `depth` each (the last may be shorter), depth a whole number of the
// tile's K steps so that every range starts 16-byte aligned.
struct GemmSplit {
    std::int64_t splits, depth;
};

namespace detail {

// The product on tile configuration Cfg in `split` (with more than one
// range, the partials in `parts`, then their sum): the arguments already
// checked by gemm_split_k. Benchmarks weigh other configurations through it.
template <typename Cfg, typename T>
void gemm_run(Transpose ta, Transpose tb, std::int64_t M, std::int64_t N, std::int64_t K, GemmSplit split, T* parts,
              T alpha, const T* A, std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc,
              Epilogue epilogue, const T* bias, cudaStream_t stream) {
    const bool a_t = ta == Transpose::Yes, b_t = tb == Transpose::Yes;
    if (split.splits <= 1) {
        gemm_launch<Cfg, T>(a_t, b_t, M, N, K, 1, K, alpha, A, lda, B, ldb, beta, C, ldc, 0, epilogue, bias, stream);
        return;
    }
    CUMULUS_CHECK(parts != nullptr, "gemm: ", split.splits, " K splits need a workspace for their partial products");
    gemm_launch<Cfg, T>(a_t, b_t, M, N, K, split.splits, split.depth, T(1), A, lda, B, ldb, T(0), parts, N, M * N,
                        Epilogue::None, nullptr, stream);
    gemm_sum_splits_kernel<T><<<grid_for(M * N), kThreads, 0, stream>>>(parts, split.splits, M, N, alpha, beta, C, ldc,
                                                                       int(epilogue), bias);
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

// The split for about `want` K ranges on `tile` (not Auto): `want` is
// rounded so that no range is empty; K == 0 gives one empty range.
inline GemmSplit gemm_split_for(GemmTile tile, std::int64_t K, std::int64_t want) {
    CUMULUS_CHECK(want >= 1, "gemm: the number of K splits must be positive, got ", want);
    if (K <= 0 || want == 1) return {1, K};
    const std::int64_t bk = gemm_tile_dims(tile).bk;
    const std::int64_t depth = ceil_div(ceil_div(K, want < K ? want : K), bk) * bk;
    return {ceil_div(K, depth), depth};
}

// Whether the automatic split may split on this thread (GemmSplitScope).
inline bool& gemm_auto_split_enabled() {
    thread_local bool enabled = true;
    return enabled;
}

// While one lives, the automatic split and plan on this thread are on or
// off (off: gemm() runs gemm_auto_tile in one launch, with a workspace or
// without, and gemm_workspace() is 0); for benchmarks that weigh the plan
// against that. Scopes nest.
class GemmSplitScope {
public:
    explicit GemmSplitScope(bool enabled) : saved_(gemm_auto_split_enabled()) { gemm_auto_split_enabled() = enabled; }
    ~GemmSplitScope() { gemm_auto_split_enabled() = saved_; }
    GemmSplitScope(const GemmSplitScope&) = delete;
    GemmSplitScope& operator=(const GemmSplitScope&) = delete;

private:
    bool saved_;
};

// The automatic split makes at most K / kGemmMinSplitDepth ranges: shallower
// ones are not worth a block of their own.
inline constexpr std::int64_t kGemmMinSplitDepth = 64;

// The split the automatic choice makes on `tile` (not Auto) when a workspace
// is at hand: none when a GemmSplitScope turned it off on this thread or the
// output tiles alone give every SM a block; else as many K ranges as keep
// the grid within one block per SM, at most K / kGemmMinSplitDepth of them
// (so at least 64 deep on average; the last range may be shorter). On 132 SMs the MLP's 128 x 512 x 784 product has 64
// output tiles of 32 x 32 and runs as two ranges (416 and 368 deep); its
// 128 x 10 x 512 one has 4 and runs as 8 ranges of 64.
inline GemmSplit gemm_auto_split(GemmTile tile, std::int64_t M, std::int64_t N, std::int64_t K) {
    const auto d = gemm_tile_dims(tile);
    const std::int64_t sms = device_properties().multiProcessorCount;
    const std::int64_t blocks = ceil_div(M, d.bm) * ceil_div(N, d.bn);
    if (!gemm_auto_split_enabled() || blocks == 0 || blocks >= sms) return {1, K};
    std::int64_t want = sms / blocks;
    const std::int64_t deepest = K / (kGemmMinSplitDepth > d.bk ? kGemmMinSplitDepth : d.bk);
    if (want > deepest) want = deepest;
    return gemm_split_for(tile, K, want < 1 ? 1 : want);
}

// Elements of workspace a split holds for an M x N product (0 for one range).
inline std::int64_t gemm_split_workspace(GemmSplit split, std::int64_t M, std::int64_t N) {
    if (split.splits <= 1 || M == 0 || N == 0) return 0;
    CUMULUS_CHECK(M <= std::numeric_limits<std::int64_t>::max() / N &&
                      split.splits <= std::numeric_limits<std::int64_t>::max() / (M * N),
                  "gemm: ", split.splits, " partial products of ", M, " x ", N, " overflow a 64-bit element count");
    return split.splits * M * N;
}

// A tile and a K split: what gemm() runs (gemm_auto_plan).
struct GemmPlan {
    GemmTile tile;
    GemmSplit split;
};

// The cost model gemm_auto_plan ranks plans by, in K steps of one block.
// Per K step every tile does the same work on an SM's shared-memory pipe
// (its fragment loads; the compiler's K loops show all three LDS- or
// FFMA-bound at about 1024 cycles a step with one block per SM): so a plan
// costs its waves (blocks over SMs, rounded up) times its K steps per
// block. A split adds the sum kernel, about kGemmSplitSumSteps steps for
// its launch, and its traffic ((2 * splits + 1) * M * N 4-byte elements:
// each partial written and read, the result written) at
// kGemmSplitBytesPerStep bytes a step (about half a microsecond of L2
// bandwidth). Both constants are estimates to be checked against
// BM_gemm_tile on a GPU.
inline constexpr double kGemmSplitSumSteps = 3.0;
inline constexpr double kGemmSplitBytesPerStep = 1.5e6;

inline double gemm_plan_cost(const GemmPlan& p, std::int64_t M, std::int64_t N) {
    const auto d = gemm_tile_dims(p.tile);
    const std::int64_t sms = device_properties().multiProcessorCount;
    const std::int64_t blocks = ceil_div(M, d.bm) * ceil_div(N, d.bn) * p.split.splits;
    double cost = double(ceil_div(blocks, sms)) * double(ceil_div(p.split.depth, d.bk));
    if (p.split.splits > 1)
        cost += kGemmSplitSumSteps +
                double(2 * p.split.splits + 1) * double(M) * double(N) * 4.0 / kGemmSplitBytesPerStep;
    return cost;
}

// What gemm() runs for an M x N x K product: of every tile that pads the
// output by at most 1/8 more than the small tile does, unsplit or (when
// `split_ok`: gemm() has a workspace) split by gemm_auto_split, the plan of
// least gemm_plan_cost; a tie keeps the unsplit gemm_auto_tile, all there is
// while a GemmSplitScope turned planning off. An unsplit best plan is the
// same with and without `split_ok`. On 132 SMs the seed MLP's 128 x 512 x
// 784 forward product, 64 small tiles unsplit (25 steps) or 128 split in
// two (13 steps and the sum), runs as 112 medium blocks in 7 K ranges of
// 112 (7 steps and the sum); its 784 x 512 x 128 dW product as 104 medium
// tiles (8 steps) rather than 400 small ones (4 waves of 4).
inline GemmPlan gemm_auto_plan(std::int64_t M, std::int64_t N, std::int64_t K, bool split_ok = true) {
    GemmPlan best{gemm_auto_tile(M, N), {1, K}};
    if (!gemm_auto_split_enabled() || M <= 0 || N <= 0 || K <= 0) return best;
    double best_cost = gemm_plan_cost(best, M, N);
    auto padded = [&](GemmTile t) {
        const auto d = gemm_tile_dims(t);
        return ceil_div(M, d.bm) * ceil_div(N, d.bn) * d.bm * d.bn;
    };
    const std::int64_t least = padded(GemmTile::Small);
    for (const GemmTile t : {GemmTile::Large, GemmTile::Medium, GemmTile::Small}) {
        if (padded(t) * 8 > least * 9) continue;
        const GemmSplit unsplit{1, K};
        const GemmSplit split = split_ok ? gemm_auto_split(t, M, N, K) : unsplit;
        for (const GemmSplit& s : {unsplit, split}) {
            const double c = gemm_plan_cost({t, s}, M, N);
            if (c < best_cost) best = {t, s}, best_cost = c;
        }
    }
    return best;
}

// Elements of workspace gemm() with a workspace wants for an M x N x K
// product (0: its plan splits nothing and needs none).
inline std::int64_t gemm_workspace(std::int64_t M, std::int64_t N, std::int64_t K) {
    if (M <= 0 || N <= 0 || K <= 0) return 0;
    return gemm_split_workspace(gemm_auto_plan(M, N, K).split, M, N);
}

// The plan gemm_split_k runs for a chosen tile and number of K splits. Tile
// Auto with splits 0: gemm_auto_plan's (unsplit without a workspace).
// Otherwise the tile (Auto: gemm_auto_tile) split about n ways for splits
// n >= 1 (as gemm_split_for rounds it), by gemm_auto_split for 0 with a
// workspace, not at all for 0 without.
inline GemmPlan gemm_resolve_plan(GemmTile tile, std::int64_t splits, std::int64_t M, std::int64_t N, std::int64_t K,
                                  bool has_workspace) {
    CUMULUS_CHECK(splits >= 0, "gemm: the number of K splits must be 0 (automatic) or positive, got ", splits);
    if (tile == GemmTile::Auto && splits == 0) return gemm_auto_plan(M, N, K, has_workspace);
    if (tile == GemmTile::Auto) tile = gemm_auto_tile(M, N);
    GemmPlan plan{tile, {1, K}};
    // (Not `{tile, c ? f() : GemmSplit{1, K}}`: a ternary with a braced
    // operand inside braces segfaults nvcc 13.0's front end.)
    if (splits > 0) plan.split = gemm_split_for(tile, K, splits);
    else if (has_workspace) plan.split = gemm_auto_split(tile, M, N, K);
    return plan;
}

// The product on `plan`'s tile (not Auto) in its K split. With more than
// one range, each range's partial product goes to `workspace` (at least
// gemm_split_workspace(plan.split, M, N) elements, checked; when it is
// null, to a launcher-owned scratch buffer, which a CUDA graph capture must
// not use), and a second kernel adds them in a fixed order and applies
// alpha, beta and the epilogue: the same result every run, and within float
// rounding of the unsplit product.
template <typename T>
void gemm_planned(GemmPlan plan, Transpose ta, Transpose tb, std::int64_t M, std::int64_t N, std::int64_t K, T alpha,
                  const T* A, std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc,
                  std::type_identity_t<T>* workspace, std::int64_t workspace_elems, Epilogue epilogue = Epilogue::None,
                  const std::type_identity_t<T>* bias = nullptr, cudaStream_t stream = current_stream()) {
    static_assert(std::is_floating_point_v<T>, "gemm: T must be float or double");
    CUMULUS_CHECK(M >= 0 && N >= 0 && K >= 0, "gemm: negative size M=", M, " N=", N, " K=", K);
    CUMULUS_CHECK(plan.tile != GemmTile::Auto, "gemm_planned: the plan's tile is Auto; resolve it with gemm_resolve_plan");
    const std::int64_t a_row = ta == Transpose::No ? K : M, b_row = tb == Transpose::No ? N : K;
    CUMULUS_CHECK(lda >= a_row, "gemm: lda=", lda, " is less than the row length ", a_row, " of A");
    CUMULUS_CHECK(ldb >= b_row, "gemm: ldb=", ldb, " is less than the row length ", b_row, " of B");
    CUMULUS_CHECK(ldc >= N, "gemm: ldc=", ldc, " is less than N=", N);
    CUMULUS_CHECK(workspace_elems >= 0, "gemm: negative workspace size ", workspace_elems);
    if (M == 0 || N == 0) return;
    CUMULUS_CHECK(C != nullptr, "gemm: C is null for a ", M, " x ", N, " product");
    if (epilogue != Epilogue::None)
        CUMULUS_CHECK(bias != nullptr, "gemm: the bias epilogue needs a bias of N=", N, " entries, got null");
    if (K == 0 || alpha == T(0)) {
        gemm_sum_splits_kernel<T><<<grid_for(M * N), kThreads, 0, stream>>>(nullptr, 0, M, N, alpha, beta, C, ldc,
                                                                           int(epilogue), bias);
        CUMULUS_CUDA_CHECK_LAUNCH();
        return;
    }
    CUMULUS_CHECK(A != nullptr && B != nullptr, "gemm: A or B is null with M=", M, " N=", N, " K=", K);
    const GemmSplit split = plan.split;
    CUMULUS_CHECK(split.splits <= 65535, "gemm: ", split.splits, " K splits of ", M, " x ", N, " x ", K,
                  " are too many for one launch (at most 65535)");
    const std::int64_t need = gemm_split_workspace(split, M, N);
    CUMULUS_CHECK(!workspace || workspace_elems >= need, "gemm: the workspace holds ", workspace_elems,
                  " elements; ", split.splits, " K splits of ", M, " x ", N, " x ", K, " need ", need,
                  " (gemm_split_workspace)");
    Scratch<T> own(workspace || need == 0 ? 0 : static_cast<std::size_t>(need), stream);
    T* parts = need == 0 ? nullptr : workspace ? workspace : own.get();
    auto run = [&](auto cfg) {
        detail::gemm_run<decltype(cfg), T>(ta, tb, M, N, K, split, parts, alpha, A, lda, B, ldb, beta, C, ldc,
                                           epilogue, bias, stream);
    };
    switch (plan.tile) {
        case GemmTile::Large: run(GemmLarge{}); break;
        case GemmTile::Medium: run(GemmMedium{}); break;
        default: run(GemmSmall{}); break;
    }
}

// gemm() with a chosen tile and a chosen number of K splits: the plan
// gemm_resolve_plan makes of them, run by gemm_planned.
template <typename T>
void gemm_split_k(GemmTile tile, std::int64_t splits, Transpose ta, Transpose tb, std::int64_t M, std::int64_t N,
                  std::int64_t K, T alpha, const T* A, std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C,
                  std::int64_t ldc, std::type_identity_t<T>* workspace, std::int64_t workspace_elems,
                  Epilogue epilogue = Epilogue::None, const std::type_identity_t<T>* bias = nullptr,
                  cudaStream_t stream = current_stream()) {
    gemm_planned(gemm_resolve_plan(tile, splits, M, N, K, workspace != nullptr), ta, tb, M, N, K, alpha, A, lda, B,
                 ldb, beta, C, ldc, workspace, workspace_elems, epilogue, bias, stream);
}

// gemm() with a chosen tile and no split (for tests and benchmarks).
template <typename T>
void gemm_with_tile(GemmTile tile, Transpose ta, Transpose tb, std::int64_t M, std::int64_t N, std::int64_t K,
                    T alpha, const T* A, std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C,
                    std::int64_t ldc, Epilogue epilogue = Epilogue::None, const std::type_identity_t<T>* bias = nullptr,
                    cudaStream_t stream = current_stream()) {
    gemm_split_k(tile, 1, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nullptr, 0, epilogue, bias, stream);
}

// C(M,N) = epi(alpha * op(A) * op(B) + beta * C), row-major; see the top of
// this file. Same contract as cpu::gemm; all pointers are device pointers.
// Runs gemm_auto_plan's tile: without a workspace, unsplit, in one launch;
// with one (device memory of at least gemm_workspace(M, N, K) elements,
// checked; a layer keeps it from step to step), split along K where the
// plan says so, as gemm_split_k describes.
template <typename T>
void gemm(Transpose ta, Transpose tb, std::int64_t M, std::int64_t N, std::int64_t K, T alpha, const T* A,
          std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc,
          Epilogue epilogue = Epilogue::None, const std::type_identity_t<T>* bias = nullptr,
          cudaStream_t stream = current_stream(), std::type_identity_t<T>* workspace = nullptr,
          std::int64_t workspace_elems = 0) {
    gemm_split_k(GemmTile::Auto, 0, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, workspace, workspace_elems,
                 epilogue, bias, stream);
}

}  // namespace cumulus::cuda
