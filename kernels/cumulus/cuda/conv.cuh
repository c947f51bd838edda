// 2-D convolution on the GPU, the twin of cumulus/cpu/conv.hpp: NHWC
// activations, HWIO kernels, TensorFlow's padding (the geometry is a
// cpu::ConvShape). All three passes are implicit GEMMs: no im2col matrix is
// ever written; each shared-memory tile of it is gathered from x (or dy) as
// it is needed.
//
//   forward         y (P x O)   = A (P x K) . W (K x O)          P = N*OH*OW, K = KH*KW*C,
//                                                                A[p, (i,j,c)] = x at tap (i, j) of output p
//   backward data   dx (Q x C)  = D (Q x K') . W' (K' x C)       Q = N*H*W, K' = KH*KW*O,
//                                                                D[q, (i,j,o)] = dy[output whose tap (i, j)
//                                                                lands on q, channel o] (0 when none),
//                                                                W'[(i,j,o), c] = w[i, j, c, o]
//   backward filter dW (K x O)  = A^T (K x P) . dy (P x O)       P split over blocks; the partial sums are
//                                                                added in a fixed order (no atomics)
//
// The tile machinery is gemm.cuh's (FP32 SIMT, double-buffered shared
// memory, a TM x TN register block per thread); what differs is how a tile
// is fetched: a gather functor per operand, element by element, zero past
// the edges and in the padding, with the index arithmetic split so that the
// K loop pays for one tap (or pixel) decomposition per step, by
// multiply-high, and a few adds per element (see conv_detail). Counted work at the Deep-MNIST shapes (batch
// 100): 28x28x1->32 5x5 is 0.13 GFLOP a pass, 14x14x32->64 5x5 is 2.0 GFLOP;
// the minimum traffic is a few MB, so these are arithmetic-bound.
//
// Not yet run on a GPU (written on a machine without one): tests/cuda/conv_vs_cpu_test.cu
// and benchmarks/cuda_conv_bench.cu are what check and time it.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <type_traits>

#include <cumulus/core/error.hpp>
#include <cumulus/core/op_types.hpp>
#include <cumulus/cpu/conv.hpp>
#include <cumulus/cuda/gemm.cuh>
#include <cumulus/cuda/runtime.cuh>

namespace cumulus::cuda {

namespace conv_detail {

// 32-bit index arithmetic in the gathers (64-bit division costs several
// times more); check_geometry keeps every tensor under 2^31 elements.
using Index = int;

// n / d for 0 <= n < 2^31 and 1 <= d < 2^31 with a multiply-high, a add
// and a shift instead of a division (a 32-bit division by a value only
// known at run time is some twenty instructions on the GPU). With
// shift = ceil(log2 d) and mul = floor(2^32 (2^shift - d) / d) + 1,
// q = (umulhi(n, mul) + n) >> shift = floor(n M / 2^(32 + shift)) for
// M = floor(2^(32 + shift) / d) + 1, exact for every n < 2^32 (Granlund and
// Montgomery 1994, the round-up method); n < 2^31 keeps the sum in 32 bits.
struct FastDiv {
    unsigned mul = 1, shift = 0;  // d = 1
    FastDiv() = default;
    explicit FastDiv(std::int64_t d) {
        CUMULUS_CHECK(d >= 1 && d <= std::numeric_limits<int>::max(), "FastDiv: divisor ", d, " is not in [1, 2^31)");
        while ((std::int64_t(1) << shift) < d) ++shift;
        mul = static_cast<unsigned>(((std::uint64_t(1) << 32) * ((std::uint64_t(1) << shift) - std::uint64_t(d))) /
                                        std::uint64_t(d) +
                                    1);
    }
    __host__ __device__ __forceinline__ Index div(Index n) const {
#if defined(__CUDA_ARCH__) || defined(CUMULUS_CUDA_EMULATION)
        const unsigned hi = __umulhi(unsigned(n), mul);
#else
        const unsigned hi = unsigned((std::uint64_t(unsigned(n)) * mul) >> 32);
#endif
        return Index((hi + unsigned(n)) >> shift);
    }
};

// The geometry, as kernel arguments, with the divisors the gathers use.
struct Geometry {
    Index n, h, w, c, kh, kw, oc, sh, sw, oh, ow, pt, pl;
    FastDiv by_ohw, by_ow, by_hw, by_w, by_kwc, by_kwo, by_c, by_oc, by_sh, by_sw;
};

inline Geometry geometry(const cpu::ConvShape& s) {
    auto i = [](std::int64_t v) { return static_cast<Index>(v); };
    return {i(s.n),  i(s.h),  i(s.w),  i(s.c),  i(s.kh),  i(s.kw),
            i(s.oc), i(s.sh), i(s.sw), i(s.oh), i(s.ow),  i(s.pt),
            i(s.pl), FastDiv(s.oh * s.ow), FastDiv(s.ow), FastDiv(s.h * s.w), FastDiv(s.w), FastDiv(s.kw * s.c),
            FastDiv(s.kw * s.oc), FastDiv(s.c), FastDiv(s.oc), FastDiv(s.sh), FastDiv(s.sw)};
}

// The operands of the implicit GEMM are gathers. Each splits its index
// arithmetic in two: fixed(i) for the index a thread keeps through the whole
// K loop (the row m of A, the column n of B: the block's thread count is a
// multiple of BK and of BN, so a thread loads its A elements at one k
// offset and its B elements at one n), computed once; step(k) for the
// reduction index, once per K step; at(fixed, step) is then a few adds and
// compares and one load. All three are called only inside the matrix.

// im2col(x)[p, k], the forward pass's A: output pixel p = (n, oy, ox), tap
// k = (i, j, ci).
template <typename T>
struct Im2col {
    const T* x;
    Geometry g;
    struct Fixed {
        Index pix, iy0, ix0;  // x offset of the tap (0, 0, 0) (may lie in the padding), its row and column
    };
    struct Step {
        Index i, j, off;  // tap row and column, offset of the tap from tap (0, 0, 0)
    };
    __device__ __forceinline__ Fixed fixed(std::int64_t p64) const {
        const Index p = Index(p64);
        const Index n = g.by_ohw.div(p), r = p - n * g.oh * g.ow;
        const Index oy = g.by_ow.div(r), ox = r - oy * g.ow;
        const Index iy0 = oy * g.sh - g.pt, ix0 = ox * g.sw - g.pl;
        return {n * g.h * g.w * g.c + (iy0 * g.w + ix0) * g.c, iy0, ix0};
    }
    __device__ __forceinline__ Step step(std::int64_t k64) const {
        const Index k = Index(k64);
        const Index i = g.by_kwc.div(k), r = k - i * g.kw * g.c;
        const Index j = g.by_c.div(r), ci = r - j * g.c;
        return {i, j, (i * g.w + j) * g.c + ci};
    }
    __device__ __forceinline__ T at(const Fixed& f, const Step& s) const {
        const Index iy = f.iy0 + s.i, ix = f.ix0 + s.j;
        if (unsigned(iy) >= unsigned(g.h) || unsigned(ix) >= unsigned(g.w)) return T(0);
        return x[f.pix + s.off];
    }
};

// The same matrix read transposed, (k, p): the backward-filter pass's A,
// whose rows are taps and whose reduction runs over output pixels.
template <typename T>
struct Im2colT {
    Im2col<T> a;
    using Fixed = typename Im2col<T>::Step;
    using Step = typename Im2col<T>::Fixed;
    __device__ __forceinline__ Fixed fixed(std::int64_t k) const { return a.step(k); }
    __device__ __forceinline__ Step step(std::int64_t p) const { return a.fixed(p); }
    __device__ __forceinline__ T at(const Fixed& f, const Step& s) const { return a.at(s, f); }
};

// A row-major K x N matrix with leading dimension ld, as the B operand
// (the weights of the forward pass, dy of the backward-filter pass).
template <typename T>
struct Dense {
    const T* p;
    std::int64_t ld;
    using Fixed = std::int64_t;  // the column
    using Step = std::int64_t;   // the row's offset
    __device__ __forceinline__ Fixed fixed(std::int64_t n) const { return n; }
    __device__ __forceinline__ Step step(std::int64_t k) const { return k * ld; }
    __device__ __forceinline__ T at(Fixed f, Step s) const { return p[s + f]; }
};

// D[q, (i, j, o)], the backward-data pass's A: dy at the output pixel whose
// tap (i, j) reads input pixel q (0 when there is none). Input pixel
// (iy, ix) is read by tap (i, j) of output (oy, ox) when oy * sh + i - pt =
// iy, so oy = (iy + pt - i) / sh when that divides.
//
// With ty0 = iy + pt = qy * sh + ry and tap row i = qi * sh + ri, ty0 - i
// divides by sh exactly when ry == ri, and then oy = qy - qi (likewise for
// columns). So fixed() splits the pixel, step() the tap, once each, and at()
// is one compare of the packed remainders, two subtractions, two unsigned
// compares, an add and one load: dy[base + off], with base = offset of
// (n, qy, qx, 0) and off = o - (qi * OW + qj) * O. kUnitStride (sh = sw = 1)
// drops the divisions and the remainders (always 0: the compiler folds the
// compare away), as for the forward pass's im2col.
//
// base and off are in unsigned (wrapping) arithmetic: base may pass 2^31
// near the size limit and off is negative, but their sum, for an element
// inside dy, is its offset (under 2^31).
template <typename T, bool kUnitStride>
struct DyTaps {
    const T* dy;
    Geometry g;
    struct Fixed {
        unsigned base;  // dy offset of (n, qy, qx, 0), which may lie outside the image
        Index qy, qx;   // (iy + pt) / sh, (ix + pl) / sw
        Index rem;      // ((iy + pt) % sh) * sw + (ix + pl) % sw
    };
    struct Step {
        Index qi, qj;  // i / sh, j / sw
        Index rem;     // (i % sh) * sw + j % sw
        unsigned off;  // o - (qi * OW + qj) * O
    };
    __device__ __forceinline__ Fixed fixed(std::int64_t q64) const {
        const Index q = Index(q64);
        const Index n = g.by_hw.div(q), r = q - n * g.h * g.w;
        const Index iy = g.by_w.div(r), ix = r - iy * g.w;
        const Index ty0 = iy + g.pt, tx0 = ix + g.pl;
        const Index qy = kUnitStride ? ty0 : g.by_sh.div(ty0), qx = kUnitStride ? tx0 : g.by_sw.div(tx0);
        const unsigned base = unsigned(n) * unsigned(g.oh * g.ow * g.oc) +
                              (unsigned(qy) * unsigned(g.ow) + unsigned(qx)) * unsigned(g.oc);
        return {base, qy, qx, kUnitStride ? 0 : (ty0 - qy * g.sh) * g.sw + (tx0 - qx * g.sw)};
    }
    __device__ __forceinline__ Step step(std::int64_t k64) const {
        const Index k = Index(k64);
        const Index i = g.by_kwo.div(k), r = k - i * g.kw * g.oc;
        const Index j = g.by_oc.div(r), o = r - j * g.oc;
        const Index qi = kUnitStride ? i : g.by_sh.div(i), qj = kUnitStride ? j : g.by_sw.div(j);
        return {qi, qj, kUnitStride ? 0 : (i - qi * g.sh) * g.sw + (j - qj * g.sw),
                unsigned(o) - (unsigned(qi) * unsigned(g.ow) + unsigned(qj)) * unsigned(g.oc)};
    }
    __device__ __forceinline__ T at(const Fixed& f, const Step& s) const {
        const Index oy = f.qy - s.qi, ox = f.qx - s.qj;
        if (f.rem != s.rem || unsigned(oy) >= unsigned(g.oh) || unsigned(ox) >= unsigned(g.ow)) return T(0);
        return dy[f.base + s.off];
    }
};

// W'[(i, j, o), c] = w[i, j, c, o], the backward-data pass's B.
template <typename T>
struct KernelT {
    const T* w;
    Geometry g;
    using Fixed = Index;  // c * oc
    using Step = Index;   // offset of (i, j, 0, o)
    __device__ __forceinline__ Fixed fixed(std::int64_t c) const { return Index(c) * g.oc; }
    __device__ __forceinline__ Step step(std::int64_t k64) const {
        const Index k = Index(k64);
        const Index ij = g.by_oc.div(k), o = k - ij * g.oc;
        return ij * g.c * g.oc + o;
    }
    __device__ __forceinline__ T at(Fixed f, Step s) const { return w[s + f]; }
};

}  // namespace conv_detail

// ---------------------------------------------------------------- kernels

// C(M, N) [+ split * split_stride] = epi(op A(M, K) . B(K, N)) over the K range
// of split blockIdx.z ([z * k_split, (z + 1) * k_split) of [0, K)). ga and gb
// are gathers (see conv_detail): A[m, k] = ga.at(ga.fixed(m), ga.step(k)),
// B[k, n] = gb.at(gb.fixed(n), gb.step(k)).
template <typename Cfg, typename T, typename GA, typename GB>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kMinBlocks)
    implicit_gemm_kernel(std::int64_t M, std::int64_t N, std::int64_t K, std::int64_t k_split, GA ga, GB gb,
                         T* __restrict__ C, std::int64_t ldc, std::int64_t split_stride, int epilogue,
                         const T* __restrict__ bias) {
    constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, TM = Cfg::TM, TN = Cfg::TN, THREADS = Cfg::kThreads;
    constexpr int LDA_S = BM + Cfg::PAD, LDB_S = BN + Cfg::PAD;
    constexpr int A_PER = (BM * BK + THREADS - 1) / THREADS, B_PER = (BK * BN + THREADS - 1) / THREADS;
    __shared__ __align__(16) T As[2][BK * LDA_S];  // As[k][m]
    __shared__ __align__(16) T Bs[2][BK * LDB_S];  // Bs[k][n]

    const int tid = threadIdx.x;
    const int tx = tid % (BN / TN), ty = tid / (BN / TN);
    // Output tiles in row-major order on grid.x (no 65535-tile limit on M), splits on grid.z.
    const std::int64_t n_tiles = (N + BN - 1) / BN, tile = blockIdx.x;
    const std::int64_t m0 = tile / n_tiles * BM, n0 = tile % n_tiles * BN;
    const std::int64_t kb = std::int64_t(blockIdx.z) * k_split;
    const std::int64_t ke = kb + k_split < K ? kb + k_split : K;
    T* out = C + std::int64_t(blockIdx.z) * split_stride;

    static_assert(THREADS % BK == 0 && THREADS % BN == 0, "a thread loads A at one k offset and B at one column");
    // A: consecutive threads take consecutive k (the channel runs of x are
    // contiguous), each thread the rows tid / BK + p * THREADS / BK at k
    // offset tid % BK; B: consecutive n (rows of W are contiguous), each
    // thread the column tid % BN at the k offsets tid / BN + p * THREADS / BN.
    const int a_k = tid % BK, b_n = tid % BN;
    typename GA::Fixed fa[A_PER];
    bool a_in[A_PER];
#pragma unroll
    for (int p = 0; p < A_PER; ++p) {
        const int e = tid + p * THREADS;
        const std::int64_t m = m0 + e / BK;
        a_in[p] = e < BM * BK && m < M;
        fa[p] = a_in[p] ? ga.fixed(m) : typename GA::Fixed{};
    }
    const bool b_in = n0 + b_n < N;
    const typename GB::Fixed fb = b_in ? gb.fixed(n0 + b_n) : typename GB::Fixed{};

    T ra[A_PER], rb[B_PER];
    auto load_tiles = [&](std::int64_t k0) {
        const std::int64_t ka = k0 + a_k;
        const bool ka_in = ka < ke;
        const typename GA::Step sa = ka_in ? ga.step(ka) : typename GA::Step{};
#pragma unroll
        for (int p = 0; p < A_PER; ++p) ra[p] = a_in[p] && ka_in ? ga.at(fa[p], sa) : T(0);
#pragma unroll
        for (int p = 0; p < B_PER; ++p) {
            const int e = tid + p * THREADS;
            const std::int64_t k = k0 + e / BN;
            rb[p] = e < BK * BN && b_in && k < ke ? gb.at(fb, gb.step(k)) : T(0);
        }
    };
    auto store_tiles = [&](int buf) {
#pragma unroll
        for (int p = 0; p < A_PER; ++p) {
            const int e = tid + p * THREADS;
            if (e < BM * BK) As[buf][(e % BK) * LDA_S + e / BK] = ra[p];
        }
#pragma unroll
        for (int p = 0; p < B_PER; ++p) {
            const int e = tid + p * THREADS;
            if (e < BK * BN) Bs[buf][(e / BN) * LDB_S + e % BN] = rb[p];
        }
    };

    T acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = T(0);

    const std::int64_t k_tiles = ke > kb ? (ke - kb + BK - 1) / BK : 0;
    if (k_tiles > 0) {
        load_tiles(kb);
        store_tiles(0);
    }
    __syncthreads();
    for (std::int64_t kt = 0; kt < k_tiles; ++kt) {
        const int buf = int(kt & 1);
        const bool more = kt + 1 < k_tiles;
        if (more) load_tiles(kb + (kt + 1) * BK);
        detail::multiply_tile<Cfg>(As[buf], Bs[buf], acc, tx, ty);
        if (more) store_tiles(buf ^ 1);  // the other buffer's last reads ended at the previous barrier
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
            T v = acc[i][j];
            if (epilogue != int(Epilogue::None)) v += bias[n];
            if (epilogue == int(Epilogue::BiasRelu)) v = v < T(0) ? T(0) : v;
            out[m * ldc + n] = v;
        }
    }
}

// ---------------------------------------------------------------- launchers

namespace conv_detail {

// The medium tile, with the resident blocks per SM asked of ptxas: three
// (at most 80 registers) for every gather but one (left to itself, ptxas
// gives the stride-1 backward-data gather 64 registers and spills one,
// reloaded every K step); two (at most 128) for the strided backward-data
// gather, whose pixel and tap keep four values each and which spills at 80
// (tests/cuda/kernel_resources.py shows both).
template <typename GA>
inline constexpr int kMediumMinBlocks = 3;
template <typename T>
inline constexpr int kMediumMinBlocks<DyTaps<T, false>> = 2;
template <typename GA>
using ConvMedium = GemmConfig<64, 64, 16, 4, 4, kMediumMinBlocks<GA>>;

// The tile every convolution pass on this thread takes, Auto (the default)
// for gemm_auto_tile's choice; for tests and benchmarks, through ConvTileScope.
inline GemmTile& conv_tile_override() {
    thread_local GemmTile t = GemmTile::Auto;
    return t;
}

// The tile for an M x N output: gemm_auto_tile's, unless a ConvTileScope says otherwise.
inline GemmTile conv_tile(std::int64_t M, std::int64_t N) {
    const GemmTile t = conv_tile_override();
    return t == GemmTile::Auto ? gemm_auto_tile(M, N) : t;
}

template <typename T, typename GA, typename GB>
void implicit_gemm(std::int64_t M, std::int64_t N, std::int64_t K, GA ga, GB gb, T* C, std::int64_t ldc,
                   Epilogue epi, const T* bias, std::int64_t splits, std::int64_t split_stride, cudaStream_t stream) {
    CUMULUS_CHECK(splits >= 1, "implicit_gemm: splits must be positive");
    const std::int64_t k_split = ceil_div(K, splits);
    auto launch = [&](auto cfg) {
        using Cfg = decltype(cfg);
        const std::int64_t tiles = ceil_div(N, Cfg::BN) * ceil_div(M, Cfg::BM);
        CUMULUS_CHECK(tiles <= std::numeric_limits<int>::max() && splits <= 65535, "conv2d: a ", M, " x ", N,
                      " product in ", splits, " K splits is too large for one launch (", tiles, " tiles of ", Cfg::BM,
                      " x ", Cfg::BN, "; at most 2^31 - 1 tiles and 65535 splits)");
        const dim3 grid{static_cast<unsigned>(tiles), 1, static_cast<unsigned>(splits)};
        implicit_gemm_kernel<Cfg, T, GA, GB><<<grid, Cfg::kThreads, 0, stream>>>(M, N, K, k_split, ga, gb, C, ldc,
                                                                                 split_stride, int(epi), bias);
        CUMULUS_CUDA_CHECK_LAUNCH();
    };
    switch (conv_tile(M, N)) {
        case GemmTile::Large: launch(GemmLarge{}); break;
        case GemmTile::Medium: launch(ConvMedium<GA>{}); break;
        default: launch(GemmSmall{}); break;
    }
}

inline void check_geometry(const cpu::ConvShape& s, const char* op) {
    CUMULUS_CHECK(s.n >= 0 && s.h > 0 && s.w > 0 && s.c > 0 && s.kh > 0 && s.kw > 0 && s.oc > 0 && s.sh > 0 &&
                      s.sw > 0 && s.oh > 0 && s.ow > 0 && s.pt >= 0 && s.pl >= 0,
                  op, ": bad geometry n=", s.n, " h=", s.h, " w=", s.w, " c=", s.c, " k=", s.kh, "x", s.kw,
                  " padding top ", s.pt, " left ", s.pl, " -> ", s.oh, "x", s.ow, "x", s.oc);
    // The gathers index in 32 bits and divide by these products (FastDiv):
    // each must be at most 2^31 - 1, checked factor by factor so that none
    // overflows on the way.
    constexpr std::int64_t kMax = std::numeric_limits<int>::max();
    auto under = [&](std::initializer_list<std::int64_t> factors) {
        std::int64_t p = 1;
        for (const std::int64_t f : factors) {
            if (f > kMax || (f > 0 && p > kMax / f)) return false;  // p * f > 2^31 - 1
            p *= f;
        }
        return true;
    };
    const struct {
        const char* what;
        bool ok;
        const char* fix;
    } limits[] = {
        {"N*H*W*C (the input)", under({s.n, s.h, s.w, s.c}), "split the batch"},
        {"H*W (an image)", under({s.h, s.w}), "split the image into tiles"},
        {"N*OH*OW*O (the output)", under({s.n, s.oh, s.ow, s.oc}), "split the batch"},
        {"OH*OW (an output image)", under({s.oh, s.ow}), "split the image into tiles"},
        {"KH*KW*C*O (the kernel)", under({s.kh, s.kw, s.c, s.oc}), "split the filters over several convolutions"},
        {"N*OH*OW*KH*KW (the taps)", under({s.n, s.oh, s.ow, s.kh, s.kw}), "split the batch"},
        {"SH*SW (the strides)", under({s.sh, s.sw}), "use smaller strides"}};
    for (const auto& l : limits)
        CUMULUS_CHECK(l.ok, op, ": ", l.what, " must be under 2^31 for n=", s.n, " ", s.h, "x", s.w, "x", s.c,
                      " k=", s.kh, "x", s.kw, " stride ", s.sh, "x", s.sw, " -> ", s.oh, "x", s.ow, "x", s.oc,
                      " (the gathers index in 32 bits); ", l.fix);
}

}  // namespace conv_detail

// While one lives, every convolution pass on this thread uses `tile` (Auto:
// the automatic choice) instead of gemm_auto_tile's: for tests and
// benchmarks, as gemm_with_tile is for GEMMs. Scopes nest.
class ConvTileScope {
public:
    explicit ConvTileScope(GemmTile tile) : saved_(conv_detail::conv_tile_override()) {
        conv_detail::conv_tile_override() = tile;
    }
    ~ConvTileScope() { conv_detail::conv_tile_override() = saved_; }
    ConvTileScope(const ConvTileScope&) = delete;
    ConvTileScope& operator=(const ConvTileScope&) = delete;

private:
    GemmTile saved_;
};

// The three passes of a convolution, and the GEMM each computes: an M x N
// output over a K-long reduction (the table at the top of this file).
enum class ConvPass { Forward, BackwardData, BackwardFilter };

struct ConvProduct {
    std::int64_t m, n, k;
};

inline ConvProduct conv2d_pass_product(const cpu::ConvShape& s, ConvPass pass) {
    switch (pass) {
        case ConvPass::Forward: return {s.n * s.oh * s.ow, s.oc, s.kh * s.kw * s.c};
        case ConvPass::BackwardData: return {s.n * s.h * s.w, s.c, s.kh * s.kw * s.oc};
        case ConvPass::BackwardFilter: return {s.kh * s.kw * s.c, s.oc, s.n * s.oh * s.ow};
    }
    CUMULUS_CHECK(false, "conv2d_pass_product: unknown pass ", int(pass));
    return {0, 0, 0};
}

// The tile a pass takes: gemm_auto_tile's for its product, or a
// ConvTileScope's while one lives.
inline GemmTile conv2d_pass_tile(const cpu::ConvShape& s, ConvPass pass) {
    const ConvProduct p = conv2d_pass_product(s, pass);
    return conv_detail::conv_tile(p.m, p.n);
}

// y = epilogue(conv(x, w) [+ bias]), as cpu::conv2d_forward; device pointers.
template <typename T>
void conv2d_forward(const cpu::ConvShape& s, const T* x, const T* w, T* y, Epilogue epilogue = Epilogue::None,
                    const T* bias = nullptr, cudaStream_t stream = current_stream()) {
    conv_detail::check_geometry(s, "cuda::conv2d_forward");
    if (s.n == 0) return;
    CUMULUS_CHECK(epilogue == Epilogue::None || bias != nullptr, "cuda::conv2d_forward: the bias epilogue needs a bias");
    const auto g = conv_detail::geometry(s);
    const ConvProduct p = conv2d_pass_product(s, ConvPass::Forward);
    conv_detail::implicit_gemm<T>(p.m, p.n, p.k, conv_detail::Im2col<T>{x, g}, conv_detail::Dense<T>{w, s.oc}, y,
                                  s.oc, epilogue, bias, 1, 0, stream);
}

// dx = dL/dx from dy = dL/d(pre-activation output), as cpu::conv2d_backward_data.
template <typename T>
void conv2d_backward_data(const cpu::ConvShape& s, const T* dy, const T* w, T* dx,
                          cudaStream_t stream = current_stream()) {
    conv_detail::check_geometry(s, "cuda::conv2d_backward_data");
    if (s.n == 0) return;
    const auto g = conv_detail::geometry(s);
    const ConvProduct p = conv2d_pass_product(s, ConvPass::BackwardData);
    const conv_detail::KernelT<T> b{w, g};
    if (s.sh == 1 && s.sw == 1)
        conv_detail::implicit_gemm<T>(p.m, p.n, p.k, conv_detail::DyTaps<T, true>{dy, g}, b, dx, s.c, Epilogue::None,
                                      nullptr, 1, 0, stream);
    else
        conv_detail::implicit_gemm<T>(p.m, p.n, p.k, conv_detail::DyTaps<T, false>{dy, g}, b, dx, s.c,
                                      Epilogue::None, nullptr, 1, 0, stream);
}

// The split of the reduction over output pixels in the backward-filter
// product: enough blocks for about two per SM, each summing at least 256
// pixels.
inline std::int64_t conv2d_filter_splits(const cpu::ConvShape& s) {
    const ConvProduct p = conv2d_pass_product(s, ConvPass::BackwardFilter);
    const auto tile = gemm_tile_dims(conv2d_pass_tile(s, ConvPass::BackwardFilter));
    const std::int64_t tiles = ceil_div(p.m, tile.bm) * ceil_div(p.n, tile.bn);
    const std::int64_t want = ceil_div(2 * std::int64_t(device_properties().multiProcessorCount), tiles);
    std::int64_t splits = want < ceil_div(p.k, 256) ? want : ceil_div(p.k, 256);
    return splits < 1 ? 1 : splits > 1024 ? 1024 : splits;
}

// Elements of workspace conv2d_backward_filter needs (0 when it needs none).
inline std::int64_t conv2d_filter_workspace(const cpu::ConvShape& s) {
    const std::int64_t splits = conv2d_filter_splits(s);
    return splits > 1 ? splits * s.kernel_size() : 0;
}

// dw = dL/dw (HWIO) from x and dy, as cpu::conv2d_backward_filter. The
// partial sums go to `workspace`, of `workspace_elems` elements (at least
// conv2d_filter_workspace(s), checked); when it is null, to a
// launcher-owned scratch buffer, which a CUDA graph capture must not use.
template <typename T>
void conv2d_backward_filter(const cpu::ConvShape& s, const T* x, const T* dy, T* dw, T* workspace = nullptr,
                            std::int64_t workspace_elems = 0, cudaStream_t stream = current_stream()) {
    conv_detail::check_geometry(s, "cuda::conv2d_backward_filter");
    const ConvProduct p = conv2d_pass_product(s, ConvPass::BackwardFilter);
    const std::int64_t KO = s.kernel_size();
    const auto g = conv_detail::geometry(s);
    const conv_detail::Im2colT<T> a{conv_detail::Im2col<T>{x, g}};
    const conv_detail::Dense<T> b{dy, s.oc};
    const std::int64_t splits = p.k == 0 ? 1 : conv2d_filter_splits(s);
    if (splits == 1) {
        // No pixels (n == 0) too: the kernel writes zeros.
        conv_detail::implicit_gemm<T>(p.m, p.n, p.k, a, b, dw, s.oc, Epilogue::None, nullptr, 1, 0, stream);
        return;
    }
    CUMULUS_CHECK(!workspace || workspace_elems >= splits * KO, "cuda::conv2d_backward_filter: the workspace holds ",
                  workspace_elems, " elements; this geometry needs ", splits * KO, " (conv2d_filter_workspace)");
    Scratch<T> own(workspace ? 0 : static_cast<std::size_t>(splits * KO), stream);
    T* parts = workspace ? workspace : own.get();
    conv_detail::implicit_gemm<T>(p.m, p.n, p.k, a, b, parts, s.oc, Epilogue::None, nullptr, splits, KO, stream);
    // dw = the splits' sum, in order (M = 1: dw is one row of KO).
    gemm_sum_splits_kernel<T><<<grid_for(KO), kThreads, 0, stream>>>(parts, splits, 1, KO, T(1), T(0), dw, KO,
                                                                     int(Epilogue::None), nullptr);
    CUMULUS_CUDA_CHECK_LAUNCH();
}

}  // namespace cumulus::cuda
