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
// the edges and in the padding. Counted work at the Deep-MNIST shapes (batch
// 100): 28x28x1->32 5x5 is 0.13 GFLOP a pass, 14x14x32->64 5x5 is 2.0 GFLOP;
// the minimum traffic is a few MB, so these are arithmetic-bound.
//
// Not yet run on a GPU (written on a machine without one): tests/cuda/conv_vs_cpu_test.cu
// and the conv cases of benchmarks/cuda_bench.cu are what check and time it.
#pragma once

#include <cstdint>
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

// The geometry, as kernel arguments.
struct Geometry {
    Index n, h, w, c, kh, kw, oc, sh, sw, oh, ow, pt, pl;
};

inline Geometry geometry(const cpu::ConvShape& s) {
    auto i = [](std::int64_t v) { return static_cast<Index>(v); };
    return {i(s.n), i(s.h), i(s.w), i(s.c), i(s.kh), i(s.kw), i(s.oc), i(s.sh), i(s.sw), i(s.oh), i(s.ow),
            i(s.pt), i(s.pl)};
}

// im2col(x)[p, k]: output pixel p = (n, oy, ox), k = (i, j, ci).
template <typename T>
struct Im2col {
    const T* x;
    Geometry g;
    __device__ __forceinline__ T operator()(std::int64_t p64, std::int64_t k64) const {
        const Index p = Index(p64), k = Index(k64);
        const Index n = p / (g.oh * g.ow), r = p - n * g.oh * g.ow;
        const Index oy = r / g.ow, ox = r - oy * g.ow;
        const Index i = k / (g.kw * g.c), r2 = k - i * g.kw * g.c;
        const Index j = r2 / g.c, ci = r2 - j * g.c;
        const Index iy = oy * g.sh - g.pt + i, ix = ox * g.sw - g.pl + j;
        if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) return T(0);
        return x[((n * g.h + iy) * g.w + ix) * g.c + ci];
    }
};

// The same matrix read transposed: (k, p).
template <typename T>
struct Im2colT {
    Im2col<T> a;
    __device__ __forceinline__ T operator()(std::int64_t k, std::int64_t p) const { return a(p, k); }
};

// A row-major matrix with leading dimension ld.
template <typename T>
struct Dense {
    const T* p;
    std::int64_t ld;
    __device__ __forceinline__ T operator()(std::int64_t r, std::int64_t c) const { return p[r * ld + c]; }
};

// D[q, (i, j, o)]: dy at the output pixel whose tap (i, j) reads input pixel q.
template <typename T>
struct DyTaps {
    const T* dy;
    Geometry g;
    __device__ __forceinline__ T operator()(std::int64_t q64, std::int64_t k64) const {
        const Index q = Index(q64), k = Index(k64);
        const Index n = q / (g.h * g.w), r = q - n * g.h * g.w;
        const Index iy = r / g.w, ix = r - iy * g.w;
        const Index i = k / (g.kw * g.oc), r2 = k - i * g.kw * g.oc;
        const Index j = r2 / g.oc, o = r2 - j * g.oc;
        const Index ty = iy + g.pt - i, tx = ix + g.pl - j;
        if (ty < 0 || tx < 0 || ty % g.sh != 0 || tx % g.sw != 0) return T(0);
        const Index oy = ty / g.sh, ox = tx / g.sw;
        if (oy >= g.oh || ox >= g.ow) return T(0);
        return dy[((n * g.oh + oy) * g.ow + ox) * g.oc + o];
    }
};

// W'[(i, j, o), c] = w[i, j, c, o].
template <typename T>
struct KernelT {
    const T* w;
    Geometry g;
    __device__ __forceinline__ T operator()(std::int64_t k64, std::int64_t c64) const {
        const Index k = Index(k64), c = Index(c64);
        const Index ij = k / g.oc, o = k - ij * g.oc;
        return w[(ij * g.c + c) * g.oc + o];
    }
};

}  // namespace conv_detail

// ---------------------------------------------------------------- kernels

// C(M, N) [+ split * split_stride] = epi(op A(M, K) . B(K, N)) over the K range
// of split blockIdx.z ([z * k_split, (z + 1) * k_split) of [0, K)). ga(m, k)
// and gb(k, n) fetch one element each and are called only inside the matrix.
template <typename Cfg, typename T, typename GA, typename GB>
__global__ void __launch_bounds__(Cfg::kThreads)
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

    T ra[A_PER], rb[B_PER];
    // A: consecutive threads take consecutive k (the channel runs of x are contiguous);
    // B: consecutive n (rows of W are contiguous).
    auto load_tiles = [&](std::int64_t k0) {
#pragma unroll
        for (int p = 0; p < A_PER; ++p) {
            const int e = tid + p * THREADS;
            const int kk = e % BK, mm = e / BK;
            const std::int64_t m = m0 + mm, k = k0 + kk;
            ra[p] = (e < BM * BK && m < M && k < ke) ? ga(m, k) : T(0);
        }
#pragma unroll
        for (int p = 0; p < B_PER; ++p) {
            const int e = tid + p * THREADS;
            const int nn = e % BN, kk = e / BN;
            const std::int64_t n = n0 + nn, k = k0 + kk;
            rb[p] = (e < BK * BN && n < N && k < ke) ? gb(k, n) : T(0);
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

// out[i] = sum over z of parts[z * count + i], z in order.
template <typename T>
__global__ void sum_splits_kernel(const T* __restrict__ parts, std::int64_t splits, std::int64_t count,
                                  T* __restrict__ out) {
    for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < count;
         i += std::int64_t(gridDim.x) * blockDim.x) {
        T s = T(0);
        for (std::int64_t z = 0; z < splits; ++z) s += parts[z * count + i];
        out[i] = s;
    }
}

// ---------------------------------------------------------------- launchers

namespace conv_detail {

// The tile for an M x N output: the largest whose grid still fills the device.
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
    switch (gemm_auto_tile(M, N)) {
        case GemmTile::Large: launch(GemmLarge{}); break;
        case GemmTile::Medium: launch(GemmMedium{}); break;
        default: launch(GemmSmall{}); break;
    }
}

inline void check_geometry(const cpu::ConvShape& s, const char* op) {
    CUMULUS_CHECK(s.n >= 0 && s.h > 0 && s.w > 0 && s.c > 0 && s.kh > 0 && s.kw > 0 && s.oc > 0 && s.sh > 0 &&
                      s.sw > 0 && s.oh > 0 && s.ow > 0,
                  op, ": bad geometry n=", s.n, " h=", s.h, " w=", s.w, " c=", s.c, " k=", s.kh, "x", s.kw,
                  " -> ", s.oh, "x", s.ow, "x", s.oc);
    constexpr std::int64_t kMax = std::numeric_limits<int>::max();
    CUMULUS_CHECK(s.in_size() < kMax && s.out_size() < kMax && s.kernel_size() < kMax &&
                      s.n * s.oh * s.ow * s.kh * s.kw < kMax,
                  op, ": tensors of 2^31 elements or more are not supported (input ", s.in_size(), ", output ",
                  s.out_size(), ")");
}

}  // namespace conv_detail

// y = epilogue(conv(x, w) [+ bias]), as cpu::conv2d_forward; device pointers.
template <typename T>
void conv2d_forward(const cpu::ConvShape& s, const T* x, const T* w, T* y, Epilogue epilogue = Epilogue::None,
                    const T* bias = nullptr, cudaStream_t stream = current_stream()) {
    conv_detail::check_geometry(s, "cuda::conv2d_forward");
    if (s.n == 0) return;
    CUMULUS_CHECK(epilogue == Epilogue::None || bias != nullptr, "cuda::conv2d_forward: the bias epilogue needs a bias");
    const auto g = conv_detail::geometry(s);
    conv_detail::implicit_gemm<T>(s.n * s.oh * s.ow, s.oc, s.kh * s.kw * s.c, conv_detail::Im2col<T>{x, g},
                                  conv_detail::Dense<T>{w, s.oc}, y, s.oc, epilogue, bias, 1, 0, stream);
}

// dx = dL/dx from dy = dL/d(pre-activation output), as cpu::conv2d_backward_data.
template <typename T>
void conv2d_backward_data(const cpu::ConvShape& s, const T* dy, const T* w, T* dx,
                          cudaStream_t stream = current_stream()) {
    conv_detail::check_geometry(s, "cuda::conv2d_backward_data");
    if (s.n == 0) return;
    const auto g = conv_detail::geometry(s);
    conv_detail::implicit_gemm<T>(s.n * s.h * s.w, s.c, s.kh * s.kw * s.oc, conv_detail::DyTaps<T>{dy, g},
                                  conv_detail::KernelT<T>{w, g}, dx, s.c, Epilogue::None, nullptr, 1, 0, stream);
}

// The split of the reduction over output pixels in the backward-filter
// product: enough blocks for about two per SM, each summing at least 256
// pixels.
inline std::int64_t conv2d_filter_splits(const cpu::ConvShape& s) {
    const std::int64_t P = s.n * s.oh * s.ow, K = s.kh * s.kw * s.c;
    const GemmTile t = gemm_auto_tile(K, s.oc);
    const std::int64_t bm = t == GemmTile::Large ? GemmLarge::BM : t == GemmTile::Medium ? GemmMedium::BM : GemmSmall::BM;
    const std::int64_t bn = t == GemmTile::Large ? GemmLarge::BN : t == GemmTile::Medium ? GemmMedium::BN : GemmSmall::BN;
    const std::int64_t tiles = ceil_div(K, bm) * ceil_div(s.oc, bn);
    const std::int64_t want = ceil_div(2 * std::int64_t(device_properties().multiProcessorCount), tiles);
    std::int64_t splits = want < ceil_div(P, 256) ? want : ceil_div(P, 256);
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
    const std::int64_t K = s.kernel_size() / s.oc, P = s.n * s.oh * s.ow, KO = s.kernel_size();
    const auto g = conv_detail::geometry(s);
    const conv_detail::Im2colT<T> a{conv_detail::Im2col<T>{x, g}};
    const conv_detail::Dense<T> b{dy, s.oc};
    const std::int64_t splits = P == 0 ? 1 : conv2d_filter_splits(s);
    if (splits == 1) {
        // P == 0 too: the kernel writes zeros.
        conv_detail::implicit_gemm<T>(K, s.oc, P, a, b, dw, s.oc, Epilogue::None, nullptr, 1, 0, stream);
        return;
    }
    CUMULUS_CHECK(!workspace || workspace_elems >= splits * KO, "cuda::conv2d_backward_filter: the workspace holds ",
                  workspace_elems, " elements; this geometry needs ", splits * KO, " (conv2d_filter_workspace)");
    Scratch<T> own(workspace ? 0 : static_cast<std::size_t>(splits * KO), stream);
    T* parts = workspace ? workspace : own.get();
    conv_detail::implicit_gemm<T>(K, s.oc, P, a, b, parts, s.oc, Epilogue::None, nullptr, splits, KO, stream);
    sum_splits_kernel<<<grid_for(KO), kThreads, 0, stream>>>(parts, splits, KO, dw);
    CUMULUS_CUDA_CHECK_LAUNCH();
}

}  // namespace cumulus::cuda
