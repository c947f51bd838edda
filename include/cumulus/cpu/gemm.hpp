// General matrix multiply on the CPU, row-major:
//
//   C(M,N) = epi(alpha * op(A) * op(B) + beta * C)
//
// op(A) is M x K (A stored M x K when ta == No, K x M when Yes); op(B) is
// K x N (B stored K x N when tb == No, N x K when Yes). Epilogue::Bias adds
// bias[j] to column j, BiasRelu then takes max(., 0) (NaN passes through).
// beta == 0 never reads C; alpha == 0 or K == 0 never reads A or B.
//
// How it is fast (the GotoBLAS / BLIS scheme): op(B) is packed in blocks of
// KC x NC and op(A) in blocks of MC x KC into thread-local, grow-only, aligned
// buffers (no allocation once warm), laid out so that a register-blocked
// micro-kernel reads both sequentially. The float micro-kernels use AVX-512
// or AVX2+FMA through target attributes, picked at run time with
// __builtin_cpu_supports, so consumers need no -march flag; other CPUs get a
// portable kernel over the same blocking, and so does double (used for
// references and gradient checks; compiled for AVX2 where the CPU has it).
// Products above a few MFLOP are split over ThreadPool::global() as one
// rectangle of C per thread; smaller ones run on the calling thread.
//
// gemm_best_isa() says which kernel set runs; gemm_with_isa() picks one (for
// tests and benchmarks).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <cumulus/core/allocator.hpp>
#include <cumulus/core/config.hpp>
#include <cumulus/core/error.hpp>
#include <cumulus/core/op_types.hpp>
#include <cumulus/core/parallel.hpp>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define CUMULUS_GEMM_X86 1
#include <immintrin.h>
#define CUMULUS_GEMM_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define CUMULUS_GEMM_TARGET_AVX512 __attribute__((target("avx512f,avx2,fma")))
#else
#define CUMULUS_GEMM_X86 0
#endif

#if defined(__GNUC__) && !defined(__CUDACC__)
// The micro-kernels keep their accumulators in arrays; fully unrolled loops
// let the compiler put every element in a register, also at -O2.
#define CUMULUS_GEMM_UNROLL _Pragma("GCC unroll 64")
#define CUMULUS_GEMM_UNROLL_K _Pragma("GCC unroll 4")
#else
#define CUMULUS_GEMM_UNROLL
#define CUMULUS_GEMM_UNROLL_K
#endif

namespace cumulus::cpu {

// The instruction sets the float micro-kernels are written for.
enum class GemmIsa { Generic, Avx2, Avx512 };

inline const char* gemm_isa_name(GemmIsa isa) {
    switch (isa) {
        case GemmIsa::Avx2: return "avx2";
        case GemmIsa::Avx512: return "avx512";
        default: return "generic";
    }
}

inline bool gemm_isa_supported(GemmIsa isa) {
#if CUMULUS_GEMM_X86
    static const bool avx2 = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }();
    static const bool avx512 = avx2 && __builtin_cpu_supports("avx512f");
    switch (isa) {
        case GemmIsa::Avx2: return avx2;
        case GemmIsa::Avx512: return avx512;
        default: return true;
    }
#else
    return isa == GemmIsa::Generic;
#endif
}

// The instruction set gemm() uses on this CPU.
inline GemmIsa gemm_best_isa() {
    static const GemmIsa best = gemm_isa_supported(GemmIsa::Avx512) ? GemmIsa::Avx512
                                : gemm_isa_supported(GemmIsa::Avx2) ? GemmIsa::Avx2
                                                                     : GemmIsa::Generic;
    return best;
}

namespace gemm_detail {

using Index = std::int64_t;

constexpr Index ceil_div(Index a, Index b) { return (a + b - 1) / b; }
constexpr Index round_up(Index a, Index b) { return ceil_div(a, b) * b; }

template <typename T>
struct Problem {
    Transpose ta, tb;
    Index M, N, K;
    T alpha;
    const T* A;
    Index lda;
    const T* B;
    Index ldb;
    T beta;
    T* C;
    Index ldc;
    Epilogue epilogue;
    const T* bias;
};

// Where one micro-tile's m x n result goes and what happens to it on the way:
// c = alpha * acc (+ beta * c when read_c) (+ bias[j]) (relu).
template <typename T>
struct Tile {
    T* c;
    Index ldc;
    int m, n;
    T alpha, beta;
    bool read_c;
    const T* bias;  // already offset to the tile's first column; null for none
    bool relu;
};

template <typename T>
inline T relu_keep_nan(T v) {
    return v < T(0) ? T(0) : v;
}

// acc is m x n (of an MR x NR tile) with row stride acc_ld.
template <typename T>
CUMULUS_FORCEINLINE void store_tile_scalar(const T* acc, int acc_ld, const Tile<T>& t) {
    for (int i = 0; i < t.m; ++i) {
        T* c = t.c + i * t.ldc;
        for (int j = 0; j < t.n; ++j) {
            T v = t.alpha * acc[i * acc_ld + j];
            if (t.read_c) v += t.beta * c[j];
            if (t.bias) v += t.bias[j];
            if (t.relu) v = relu_keep_nan(v);
            c[j] = v;
        }
    }
}

// ---------------------------------------------------------------- kernels
//
// A micro-kernel multiplies a packed MR x kc sliver of op(A) (MR values per
// k) by a packed kc x NR sliver of op(B) (NR values per k, 64-byte aligned)
// and stores the m x n part of the MR x NR result through a Tile. Reading A
// in place instead (no transposing pack) was tried: rows of A a power-of-two
// apart (lda = 512, 1024) alias in L1 and made it up to 3x slower.

template <typename T>
using KernelFn = void (*)(Index kc, const T* a, const T* b, const Tile<T>& t);

template <typename T, int MR, int NR>
CUMULUS_FORCEINLINE void kernel_portable_body(Index kc, const T* __restrict a, const T* __restrict b,
                                              const Tile<T>& t) {
    T acc[MR * NR] = {};
    for (Index k = 0; k < kc; ++k) {
        CUMULUS_GEMM_UNROLL
        for (int i = 0; i < MR; ++i) {
            const T ai = a[i];
            CUMULUS_GEMM_UNROLL
            for (int j = 0; j < NR; ++j) acc[i * NR + j] += ai * b[j];
        }
        a += MR;
        b += NR;
    }
    store_tile_scalar(acc, NR, t);
}

template <typename T, int MR, int NR>
void kernel_portable(Index kc, const T* a, const T* b, const Tile<T>& t) {
    kernel_portable_body<T, MR, NR>(kc, a, b, t);
}

#if CUMULUS_GEMM_X86

// The portable kernel compiled for AVX2+FMA: what double gets on such CPUs.
template <typename T, int MR, int NR>
CUMULUS_GEMM_TARGET_AVX2 void kernel_portable_avx2(Index kc, const T* a, const T* b, const Tile<T>& t) {
    kernel_portable_body<T, MR, NR>(kc, a, b, t);
}

// MR x (8 * NV) floats, NV ymm accumulators per row.
template <int MR, int NV>
CUMULUS_GEMM_TARGET_AVX2 void kernel_avx2(Index kc, const float* __restrict a, const float* __restrict b,
                                          const Tile<float>& t) {
    __m256 acc[MR][NV];
    CUMULUS_GEMM_UNROLL
    for (int i = 0; i < MR; ++i) {
        CUMULUS_GEMM_UNROLL
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_ps();
    }
    CUMULUS_GEMM_UNROLL_K
    for (Index k = 0; k < kc; ++k) {
        __m256 bv[NV];
        CUMULUS_GEMM_UNROLL
        for (int v = 0; v < NV; ++v) bv[v] = _mm256_load_ps(b + 8 * v);
        CUMULUS_GEMM_UNROLL
        for (int i = 0; i < MR; ++i) {
            const __m256 ai = _mm256_broadcast_ss(a + i);
            CUMULUS_GEMM_UNROLL
            for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(ai, bv[v], acc[i][v]);
        }
        a += MR;
        b += 8 * NV;
    }

    const __m256 va = _mm256_set1_ps(t.alpha), vb = _mm256_set1_ps(t.beta), zero = _mm256_setzero_ps();
    const bool full = t.n == 8 * NV;
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i mask[NV];
    __m256 bias[NV];
    CUMULUS_GEMM_UNROLL
    for (int v = 0; v < NV; ++v) {
        mask[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32(t.n - 8 * v), iota);
        bias[v] = !t.bias ? zero : full ? _mm256_loadu_ps(t.bias + 8 * v) : _mm256_maskload_ps(t.bias + 8 * v, mask[v]);
    }
    CUMULUS_GEMM_UNROLL
    for (int i = 0; i < MR; ++i) {
        if (i >= t.m) break;
        float* c = t.c + i * t.ldc;
        CUMULUS_GEMM_UNROLL
        for (int v = 0; v < NV; ++v) {
            __m256 x = _mm256_mul_ps(va, acc[i][v]);
            if (t.read_c) {
                const __m256 old = full ? _mm256_loadu_ps(c + 8 * v) : _mm256_maskload_ps(c + 8 * v, mask[v]);
                x = _mm256_fmadd_ps(vb, old, x);
            }
            if (t.bias) x = _mm256_add_ps(x, bias[v]);
            if (t.relu) x = _mm256_max_ps(zero, x);  // max(0, NaN) is NaN
            if (full) _mm256_storeu_ps(c + 8 * v, x);
            else _mm256_maskstore_ps(c + 8 * v, mask[v], x);
        }
    }
}

// MR x (16 * NV) floats, NV zmm accumulators per row.
template <int MR, int NV>
CUMULUS_GEMM_TARGET_AVX512 void kernel_avx512(Index kc, const float* __restrict a, const float* __restrict b,
                                              const Tile<float>& t) {
    __m512 acc[MR][NV];
    CUMULUS_GEMM_UNROLL
    for (int i = 0; i < MR; ++i) {
        CUMULUS_GEMM_UNROLL
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
    }
    CUMULUS_GEMM_UNROLL_K
    for (Index k = 0; k < kc; ++k) {
        __m512 bv[NV];
        CUMULUS_GEMM_UNROLL
        for (int v = 0; v < NV; ++v) bv[v] = _mm512_load_ps(b + 16 * v);
        CUMULUS_GEMM_UNROLL
        for (int i = 0; i < MR; ++i) {
            const __m512 ai = _mm512_set1_ps(a[i]);
            CUMULUS_GEMM_UNROLL
            for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
        }
        a += MR;
        b += 16 * NV;
    }

    const __m512 va = _mm512_set1_ps(t.alpha), vb = _mm512_set1_ps(t.beta), zero = _mm512_setzero_ps();
    __mmask16 mask[NV];
    __m512 bias[NV];
    CUMULUS_GEMM_UNROLL
    for (int v = 0; v < NV; ++v) {
        const int rest = t.n - 16 * v;
        mask[v] = rest >= 16 ? __mmask16(0xFFFF) : rest <= 0 ? __mmask16(0) : __mmask16((1u << rest) - 1);
        bias[v] = t.bias ? _mm512_maskz_loadu_ps(mask[v], t.bias + 16 * v) : zero;
    }
    CUMULUS_GEMM_UNROLL
    for (int i = 0; i < MR; ++i) {
        if (i >= t.m) break;
        float* c = t.c + i * t.ldc;
        CUMULUS_GEMM_UNROLL
        for (int v = 0; v < NV; ++v) {
            __m512 x = _mm512_mul_ps(va, acc[i][v]);
            if (t.read_c) x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[v], c + 16 * v), x);
            if (t.bias) x = _mm512_add_ps(x, bias[v]);
            // Zero where x < 0 (false for NaN, which passes through).
            if (t.relu) x = _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(x, zero, _CMP_LT_OQ), zero);
            _mm512_mask_storeu_ps(c + 16 * v, mask[v], x);
        }
    }
}

#endif  // CUMULUS_GEMM_X86

// ---------------------------------------------------------------- packing

// out[k * W + w] = src[k * ks + w * ws] for k < kc, w < W, zero for w >= n.
// The constant-stride cases (a copy: ws == 1) vectorize.
template <typename T, int W>
CUMULUS_FORCEINLINE void pack_sliver(const T* src, Index ks, Index ws, Index kc, Index n, T* __restrict out) {
    if (n == W && ws == 1) {
        for (Index k = 0; k < kc; ++k) {
            CUMULUS_GEMM_UNROLL
            for (int w = 0; w < W; ++w) out[k * W + w] = src[k * ks + w];
        }
    } else if (n == W && ks == 1) {
        for (Index k = 0; k < kc; ++k) {
            CUMULUS_GEMM_UNROLL
            for (int w = 0; w < W; ++w) out[k * W + w] = src[k + w * ws];
        }
    } else {
        for (Index k = 0; k < kc; ++k)
            for (int w = 0; w < W; ++w) out[k * W + w] = w < n ? src[k * ks + w * ws] : T(0);
    }
}

// Rows [i0, i0 + mc) and columns [p0, p0 + kc) of op(A) into slivers of MR
// rows, k-major, the last sliver zero-padded.
template <typename T, int MR>
void pack_a(Transpose ta, const T* A, Index lda, Index i0, Index mc, Index p0, Index kc, T* __restrict out) {
    // Element (i, k) of op(A) is A[i * rs + k * cs].
    const Index rs = ta == Transpose::No ? lda : 1, cs = ta == Transpose::No ? 1 : lda;
    for (Index ir = 0; ir < mc; ir += MR, out += kc * MR)
        pack_sliver<T, MR>(A + (i0 + ir) * rs + p0 * cs, cs, rs, kc, std::min<Index>(MR, mc - ir), out);
}

// Rows [p0, p0 + kc) and columns [j0, j0 + nc) of op(B) into slivers of NR
// columns, k-major, the last sliver zero-padded.
template <typename T, int NR>
void pack_b(Transpose tb, const T* B, Index ldb, Index p0, Index kc, Index j0, Index nc, T* __restrict out) {
    // Element (k, j) of op(B) is B[k * rs + j * cs].
    const Index rs = tb == Transpose::No ? ldb : 1, cs = tb == Transpose::No ? 1 : ldb;
    for (Index jr = 0; jr < nc; jr += NR, out += kc * NR)
        pack_sliver<T, NR>(B + p0 * rs + (j0 + jr) * cs, rs, cs, kc, std::min<Index>(NR, nc - jr), out);
}

#if CUMULUS_GEMM_X86

// Transposes the 8 x 8 block r[0..7] in place.
CUMULUS_GEMM_TARGET_AVX2 inline void transpose8x8(__m256 r[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// The transposing pack shared by A (not transposed) and B (transposed):
// out[k * W + w] = src[w * ld + k] for w < W, k < kc, W the sliver width.
template <int W>
CUMULUS_GEMM_TARGET_AVX2 void pack_transposed_sliver(const float* src, Index ld, Index kc, float* __restrict out) {
    const Index k8 = kc / 8 * 8, k4 = kc / 4 * 4;
    int w = 0;
    for (; w + 8 <= W; w += 8) {
        const float* s = src + w * ld;
        for (Index k = 0; k < k8; k += 8) {
            __m256 r[8];
            for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(s + j * ld + k);
            transpose8x8(r);
            for (int j = 0; j < 8; ++j) _mm256_storeu_ps(out + (k + j) * W + w, r[j]);
        }
        for (Index k = k8; k < kc; ++k)
            for (int j = 0; j < 8; ++j) out[k * W + w + j] = s[j * ld + k];
    }
    for (; w + 4 <= W; w += 4) {
        const float* s = src + w * ld;
        for (Index k = 0; k < k4; k += 4) {
            __m128 r0 = _mm_loadu_ps(s + k), r1 = _mm_loadu_ps(s + ld + k);
            __m128 r2 = _mm_loadu_ps(s + 2 * ld + k), r3 = _mm_loadu_ps(s + 3 * ld + k);
            _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
            _mm_storeu_ps(out + k * W + w, r0);
            _mm_storeu_ps(out + (k + 1) * W + w, r1);
            _mm_storeu_ps(out + (k + 2) * W + w, r2);
            _mm_storeu_ps(out + (k + 3) * W + w, r3);
        }
        for (Index k = k4; k < kc; ++k)
            for (int j = 0; j < 4; ++j) out[k * W + w + j] = s[j * ld + k];
    }
    for (; w < W; ++w)
        for (Index k = 0; k < kc; ++k) out[k * W + w] = src[w * ld + k];
}

// pack_a for float: full slivers of a row-major A through 8 x 8 transposes.
template <int MR>
CUMULUS_GEMM_TARGET_AVX2 void pack_a_avx2(Transpose ta, const float* A, Index lda, Index i0, Index mc, Index p0,
                                          Index kc, float* __restrict out) {
    const Index full = ta == Transpose::No ? mc / MR * MR : 0;
    for (Index ir = 0; ir < full; ir += MR, out += kc * MR)
        pack_transposed_sliver<MR>(A + (i0 + ir) * lda + p0, lda, kc, out);
    if (full < mc) pack_a<float, MR>(ta, A, lda, i0 + full, mc - full, p0, kc, out);
}

// pack_b for float: full slivers of a transposed B through 8 x 8 transposes.
template <int NR>
CUMULUS_GEMM_TARGET_AVX2 void pack_b_avx2(Transpose tb, const float* B, Index ldb, Index p0, Index kc, Index j0,
                                          Index nc, float* __restrict out) {
    const Index full = tb == Transpose::Yes ? nc / NR * NR : 0;
    for (Index jr = 0; jr < full; jr += NR, out += kc * NR)
        pack_transposed_sliver<NR>(B + (j0 + jr) * ldb + p0, ldb, kc, out);
    if (full < nc) pack_b<float, NR>(tb, B, ldb, p0, kc, j0 + full, nc - full, out);
}

#endif  // CUMULUS_GEMM_X86

// ---------------------------------------------------------------- driver

// A micro-kernel with its packers and its cache blocking (KC, MC, NC are the
// largest blocks; MC a multiple of MR, NC of NR, KC of 8).
template <typename T>
struct KernelSpec {
    KernelFn<T> kernel;
    void (*pack_a)(Transpose, const T*, Index, Index, Index, Index, Index, T*);
    void (*pack_b)(Transpose, const T*, Index, Index, Index, Index, Index, T*);
    int mr, nr;
    Index kc, mc, nc;
    const char* name;
};

// A grow-only aligned buffer, one per thread and slot, so that steady-state
// calls allocate nothing.
template <typename T>
class Scratch {
public:
    Scratch() = default;
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    ~Scratch() { host_free(ptr_); }
    T* get(std::size_t n) {
        if (n > size_) {
            host_free(ptr_);
            ptr_ = nullptr;
            size_ = 0;
            ptr_ = static_cast<T*>(host_allocate(n * sizeof(T)));
            size_ = n;
        }
        return ptr_;
    }

private:
    T* ptr_ = nullptr;
    std::size_t size_ = 0;
};

template <typename T>
T* scratch(int slot, Index n) {
    thread_local Scratch<T> buffers[2];
    return buffers[slot].get(static_cast<std::size_t>(n));
}

// C rows [m0, m1) x columns [n0, n1), all of K, on the calling thread.
template <typename T>
void run_block(const KernelSpec<T>& s, const Problem<T>& p, Index m0, Index m1, Index n0, Index n1) {
    const Index K = p.K;
    // Even block sizes: K = 784 in blocks of 264, 264, 256 rather than 384, 384, 16.
    const Index kc_step = std::min(s.kc, round_up(ceil_div(K, ceil_div(K, s.kc)), 8));
    const Index rows = m1 - m0, cols = n1 - n0;
    const Index mc_step = std::min(s.mc, round_up(ceil_div(rows, ceil_div(rows, s.mc)), s.mr));
    const Index nc_step = std::min(s.nc, round_up(ceil_div(cols, ceil_div(cols, s.nc)), s.nr));
    T* bp = scratch<T>(0, kc_step * nc_step);
    T* ap = scratch<T>(1, mc_step * kc_step);
    const bool relu = p.epilogue == Epilogue::BiasRelu;
    const bool has_bias = p.epilogue != Epilogue::None;

    for (Index jc = n0; jc < n1; jc += nc_step) {
        const Index nc = std::min(nc_step, n1 - jc);
        for (Index pc = 0; pc < K; pc += kc_step) {
            const Index kc = std::min(kc_step, K - pc);
            const bool first = pc == 0, last = pc + kc >= K;
            s.pack_b(p.tb, p.B, p.ldb, pc, kc, jc, nc, bp);
            for (Index ic = m0; ic < m1; ic += mc_step) {
                const Index mc = std::min(mc_step, m1 - ic);
                s.pack_a(p.ta, p.A, p.lda, ic, mc, pc, kc, ap);
                for (Index jr = 0; jr < nc; jr += s.nr) {
                    for (Index ir = 0; ir < mc; ir += s.mr) {
                        Tile<T> t;
                        t.c = p.C + (ic + ir) * p.ldc + jc + jr;
                        t.ldc = p.ldc;
                        t.m = static_cast<int>(std::min<Index>(s.mr, mc - ir));
                        t.n = static_cast<int>(std::min<Index>(s.nr, nc - jr));
                        t.alpha = p.alpha;
                        t.beta = first ? p.beta : T(1);
                        t.read_c = !first || p.beta != T(0);
                        t.bias = last && has_bias ? p.bias + jc + jr : nullptr;
                        t.relu = last && relu;
                        s.kernel(kc, ap + ir * kc, bp + jr * kc, t);
                    }
                }
            }
        }
    }
}

// Below this many flops (about 50 us on one core) a product runs on the
// calling thread: waking the pool costs more than the second core gains.
inline constexpr double kParallelMinFlops = 8e6;

// Splits C into a tm x tn grid of rectangles, one per thread (at most
// `threads`), minimizing the micro-tiles of the busiest thread, then the
// rows + columns it packs, then the threads used.
inline void split_grid(Index mb, Index nb, int mr, int nr, int threads, int& tm, int& tn) {
    tm = 1;
    tn = 1;
    Index best_tiles = mb * nb, best_pack = mb * mr + nb * nr;
    for (int a = 1; a <= threads && a <= mb; ++a) {
        for (int b = 1; a * b <= threads && b <= nb; ++b) {
            const Index tiles = ceil_div(mb, a) * ceil_div(nb, b);
            const Index pack = ceil_div(mb, a) * mr + ceil_div(nb, b) * nr;
            if (tiles < best_tiles || (tiles == best_tiles && pack < best_pack)) {
                best_tiles = tiles;
                best_pack = pack;
                tm = a;
                tn = b;
            }
        }
    }
}

template <typename T>
void run_parallel(const KernelSpec<T>& s, const Problem<T>& p) {
    const Index mb = ceil_div(p.M, s.mr), nb = ceil_div(p.N, s.nr);
    const double flops = 2.0 * double(p.M) * double(p.N) * double(p.K);
    const int threads = static_cast<int>(std::min<double>(ThreadPool::global().size(), flops / kParallelMinFlops));
    int tm = 1, tn = 1;
    if (threads > 1) split_grid(mb, nb, s.mr, s.nr, threads, tm, tn);
    if (tm * tn == 1) {
        run_block(s, p, 0, p.M, 0, p.N);
        return;
    }
    parallel_for(
        tm * tn,
        [&](Index begin, Index end, int) {
            for (Index part = begin; part < end; ++part) {
                const Index pi = part / tn, pj = part % tn;
                const Index m0 = std::min(p.M, mb * pi / tm * s.mr), m1 = std::min(p.M, mb * (pi + 1) / tm * s.mr);
                const Index n0 = std::min(p.N, nb * pj / tn * s.nr), n1 = std::min(p.N, nb * (pj + 1) / tn * s.nr);
                if (m0 < m1 && n0 < n1) run_block(s, p, m0, m1, n0, n1);
            }
        },
        tm * tn);
}

// C = epi(beta * C): the whole product when K == 0 or alpha == 0.
template <typename T>
void scale_only(const Problem<T>& p) {
    for (Index i = 0; i < p.M; ++i) {
        T* c = p.C + i * p.ldc;
        for (Index j = 0; j < p.N; ++j) {
            T v = p.beta == T(0) ? T(0) : p.beta * c[j];
            if (p.epilogue != Epilogue::None) v += p.bias[j];
            if (p.epilogue == Epilogue::BiasRelu) v = relu_keep_nan(v);
            c[j] = v;
        }
    }
}

template <typename T, int MR, int NR>
KernelSpec<T> portable_spec(Index kc, Index mc, Index nc, const char* name) {
    return {&kernel_portable<T, MR, NR>, &pack_a<T, MR>, &pack_b<T, NR>, MR, NR, kc, round_up(mc, MR),
            round_up(nc, NR), name};
}

#if CUMULUS_GEMM_X86
template <typename T, int MR, int NR>
KernelSpec<T> portable_avx2_spec(Index kc, Index mc, Index nc, const char* name) {
    return {&kernel_portable_avx2<T, MR, NR>, &pack_a<T, MR>, &pack_b<T, NR>, MR, NR, kc, round_up(mc, MR),
            round_up(nc, NR), name};
}

template <int MR, int NV>
KernelSpec<float> avx2_spec(Index kc, Index mc, Index nc, const char* name) {
    return {&kernel_avx2<MR, NV>, &pack_a_avx2<MR>, &pack_b_avx2<8 * NV>, MR, 8 * NV, kc, round_up(mc, MR),
            round_up(nc, 8 * NV), name};
}

template <int MR, int NV>
KernelSpec<float> avx512_spec(Index kc, Index mc, Index nc, const char* name) {
    return {&kernel_avx512<MR, NV>, &pack_a_avx2<MR>, &pack_b_avx2<16 * NV>, MR, 16 * NV, kc, round_up(mc, MR),
            round_up(nc, 16 * NV), name};
}
#endif

// The kernel and blocking each instruction set uses, per element type. Tuned
// on a 2-core Sapphire Rapids (48 KiB L1d, 2 MiB L2 per core; single-core
// kernel peak about 170 GFLOP/s for AVX-512, 88 for AVX2): 8 x 32 beat
// 12 x 32, 14 x 32 and 6 x 64 by a few percent on the MLP shapes (batches of
// 128 and 96 are whole numbers of 8-row slivers, and an 8-row sliver packs
// with plain 8 x 8 transposes); 16 x 16 wastes less on N = 10 than any
// 32-wide tile. KC = 128 to 400 all did about as well as 256.
template <typename T>
KernelSpec<T> spec_for(GemmIsa isa, Index n) {
#if CUMULUS_GEMM_X86
    if constexpr (std::is_same_v<T, float>) {
        if (isa == GemmIsa::Avx512) {
            if (n <= 16) return avx512_spec<16, 1>(256, 144, 1024, "avx512 16x16");
            return avx512_spec<8, 2>(256, 144, 1024, "avx512 8x32");
        }
        if (isa == GemmIsa::Avx2) return avx2_spec<6, 2>(256, 144, 1024, "avx2 6x16");
    } else {
        if (isa != GemmIsa::Generic) return portable_avx2_spec<T, 4, 8>(256, 128, 1024, "portable-avx2 4x8");
    }
#endif
    (void)n;
    (void)isa;
    return portable_spec<T, 4, 8>(256, 128, 1024, "portable 4x8");
}

template <typename T>
void check_args(const Problem<T>& p) {
    CUMULUS_CHECK(p.M >= 0 && p.N >= 0 && p.K >= 0, "gemm: negative size M=", p.M, " N=", p.N, " K=", p.K);
    const Index a_row = p.ta == Transpose::No ? p.K : p.M;
    const Index b_row = p.tb == Transpose::No ? p.N : p.K;
    CUMULUS_CHECK(p.lda >= a_row, "gemm: lda=", p.lda, " is less than the row length ", a_row, " of A (",
                  p.ta == Transpose::No ? "M x K" : "K x M", ", M=", p.M, " K=", p.K, ")");
    CUMULUS_CHECK(p.ldb >= b_row, "gemm: ldb=", p.ldb, " is less than the row length ", b_row, " of B (",
                  p.tb == Transpose::No ? "K x N" : "N x K", ", K=", p.K, " N=", p.N, ")");
    CUMULUS_CHECK(p.ldc >= p.N, "gemm: ldc=", p.ldc, " is less than N=", p.N);
    if (p.M == 0 || p.N == 0) return;
    CUMULUS_CHECK(p.C != nullptr, "gemm: C is null for a ", p.M, " x ", p.N, " product");
    if (p.K > 0 && p.alpha != T(0))
        CUMULUS_CHECK(p.A != nullptr && p.B != nullptr, "gemm: A or B is null with M=", p.M, " N=", p.N,
                      " K=", p.K);
    if (p.epilogue != Epilogue::None)
        CUMULUS_CHECK(p.bias != nullptr, "gemm: the bias epilogue needs a bias of N=", p.N, " entries, got null");
}

template <typename T>
void run(const KernelSpec<T>& s, const Problem<T>& p) {
    check_args(p);
    if (p.M == 0 || p.N == 0) return;
    if (p.K == 0 || p.alpha == T(0)) {
        scale_only(p);
        return;
    }
    run_parallel(s, p);
}

}  // namespace gemm_detail

// gemm() with a chosen instruction set (which must be supported); for tests
// and benchmarks that compare the kernels.
template <typename T>
void gemm_with_isa(GemmIsa isa, Transpose ta, Transpose tb, std::int64_t M, std::int64_t N, std::int64_t K, T alpha,
                   const T* A, std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc,
                   Epilogue epilogue = Epilogue::None, const T* bias = nullptr) {
    static_assert(std::is_floating_point_v<T>, "gemm: T must be float or double");
    CUMULUS_CHECK(gemm_isa_supported(isa), "gemm: instruction set ", gemm_isa_name(isa),
                  " is not supported by this CPU");
    gemm_detail::run(gemm_detail::spec_for<T>(isa, N),
                     gemm_detail::Problem<T>{ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epilogue, bias});
}

// C(M,N) = epi(alpha * op(A) * op(B) + beta * C), row-major; see the top of
// this file. Requires lda, ldb, ldc at least the stored row lengths; throws
// cumulus::Error otherwise.
template <typename T>
void gemm(Transpose ta, Transpose tb, std::int64_t M, std::int64_t N, std::int64_t K, T alpha, const T* A,
          std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc,
          Epilogue epilogue = Epilogue::None, const T* bias = nullptr) {
    gemm_with_isa(gemm_best_isa(), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epilogue, bias);
}

}  // namespace cumulus::cpu
