// 2-D convolution on the CPU: NHWC activations, HWIO kernels, TensorFlow's
// padding arithmetic.
//
// Each op comes twice: a direct reference (*_ref) that accumulates in double,
// for tests, and the fast default, which cuts the output positions into row
// chunks, lays each chunk's input patches out as a small im2col matrix in a
// thread-local buffer that stays in cache, and multiplies it with the blocked
// GEMM (the bias and ReLU fused into its epilogue). Chunks are spread over
// ThreadPool::global(); a 1x1 stride-1 convolution needs no im2col at all.
//
//   forward:          y(M, O)  = col(M, K) w(K, O) [+ bias, ReLU]
//   backward-data:    dcol     = dy(M, O) w^T,  scattered back into dx
//   backward-filter:  dw(K, O) = sum over chunks col^T dy
//
// with M = N*OH*OW output positions and K = KH*KW*C, which is exactly the
// row-major layout of an HWIO kernel.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <cumulus/core/allocator.hpp>
#include <cumulus/core/error.hpp>
#include <cumulus/core/op_types.hpp>
#include <cumulus/core/parallel.hpp>
#include <cumulus/cpu/gemm.hpp>
#include <cumulus/cpu/reduce.hpp>

namespace cumulus::cpu {

enum class Padding { Valid, Same };

inline const char* padding_name(Padding p) { return p == Padding::Same ? "same" : "valid"; }

inline Padding parse_padding(const std::string& s) {
    if (s == "same" || s == "SAME") return Padding::Same;
    if (s == "valid" || s == "VALID") return Padding::Valid;
    CUMULUS_FAIL("unknown padding '", s, "' (expected 'same' or 'valid')");
}

// One spatial dimension of a sliding window, as TensorFlow computes it
// (GetWindowedOutputSize): valid gives ceil((in - k + 1) / s) outputs, same
// gives ceil(in / s) and pads max((out - 1) * s + k - in, 0) in total, the
// smaller half before.
struct Window1D {
    std::int64_t out = 0, pad_before = 0, pad_after = 0;
};

inline Window1D window_1d(std::int64_t in, std::int64_t k, std::int64_t s, Padding p, const char* what = "window") {
    CUMULUS_CHECK(in > 0 && k > 0 && s > 0, what, ": input size ", in, ", window ", k, " and stride ", s,
                  " must all be positive");
    Window1D r;
    if (p == Padding::Valid) {
        CUMULUS_CHECK(in >= k, what, ": window ", k, " is larger than the input size ", in,
                      " with 'valid' padding (the output would be empty)");
        r.out = (in - k + s) / s;
    } else {
        r.out = (in + s - 1) / s;
        const std::int64_t total = std::max<std::int64_t>((r.out - 1) * s + k - in, 0);
        r.pad_before = total / 2;
        r.pad_after = total - r.pad_before;
    }
    return r;
}

// The geometry of a convolution or pooling window over an NHWC batch. For
// pooling, oc == c.
struct ConvShape {
    std::int64_t n = 0, h = 0, w = 0, c = 0;  // input
    std::int64_t kh = 1, kw = 1, oc = 0;      // window / kernel (HWIO: kh, kw, c, oc)
    std::int64_t sh = 1, sw = 1;              // strides
    std::int64_t oh = 0, ow = 0;              // output
    std::int64_t pt = 0, pl = 0;              // padding before (top, left)

    std::int64_t rows() const { return n * oh * ow; }  // M: output positions
    std::int64_t patch() const { return kh * kw * c; }  // K: one position's receptive field
    std::int64_t in_size() const { return n * h * w * c; }
    std::int64_t out_size() const { return n * oh * ow * oc; }
    std::int64_t kernel_size() const { return kh * kw * c * oc; }
};

inline ConvShape conv_shape(std::int64_t n, std::int64_t h, std::int64_t w, std::int64_t c, std::int64_t kh,
                            std::int64_t kw, std::int64_t oc, std::int64_t sh, std::int64_t sw, Padding p,
                            const char* what = "conv2d") {
    CUMULUS_CHECK(n >= 0 && c > 0 && oc > 0, what, ": batch ", n, ", channels ", c, " and filters ", oc,
                  " must be non-negative / positive");
    ConvShape s;
    s.n = n, s.h = h, s.w = w, s.c = c, s.kh = kh, s.kw = kw, s.oc = oc, s.sh = sh, s.sw = sw;
    const Window1D y = window_1d(h, kh, sh, p, what), x = window_1d(w, kw, sw, p, what);
    s.oh = y.out, s.ow = x.out, s.pt = y.pad_before, s.pl = x.pad_before;
    return s;
}

// ---------------------------------------------------------------- reference

// Calls tap(x_index, w_index, y_index) for every product x * w that adds to
// an output of the convolution (padding taps skipped): the one loop nest the
// three references share.
template <typename F>
void for_each_tap(const ConvShape& s, F&& tap) {
    for (std::int64_t n = 0; n < s.n; ++n)
        for (std::int64_t oy = 0; oy < s.oh; ++oy)
            for (std::int64_t ox = 0; ox < s.ow; ++ox)
                for (std::int64_t o = 0; o < s.oc; ++o) {
                    const std::int64_t yi = ((n * s.oh + oy) * s.ow + ox) * s.oc + o;
                    for (std::int64_t i = 0; i < s.kh; ++i) {
                        const std::int64_t iy = oy * s.sh - s.pt + i;
                        if (iy < 0 || iy >= s.h) continue;
                        for (std::int64_t j = 0; j < s.kw; ++j) {
                            const std::int64_t ix = ox * s.sw - s.pl + j;
                            if (ix < 0 || ix >= s.w) continue;
                            for (std::int64_t ci = 0; ci < s.c; ++ci)
                                tap(((n * s.h + iy) * s.w + ix) * s.c + ci, ((i * s.kw + j) * s.c + ci) * s.oc + o,
                                    yi);
                        }
                    }
                }
}

// y = act(conv(x, w) + bias); bias may be null. Accumulates in double.
template <typename T>
void conv2d_forward_ref(const ConvShape& s, const T* x, const T* w, const T* bias, T* y, bool relu = false) {
    std::vector<double> acc(static_cast<std::size_t>(s.out_size()), 0.0);
    for_each_tap(s, [&](std::int64_t xi, std::int64_t wi, std::int64_t yi) {
        acc[static_cast<std::size_t>(yi)] += double(x[xi]) * double(w[wi]);
    });
    for (std::int64_t i = 0; i < s.out_size(); ++i) {
        double v = acc[static_cast<std::size_t>(i)] + (bias ? double(bias[i % s.oc]) : 0.0);
        if (relu && v < 0) v = 0;
        y[i] = T(v);
    }
}

// dx = dL/dx for dy = dL/dy of a convolution with kernel w.
template <typename T>
void conv2d_backward_data_ref(const ConvShape& s, const T* dy, const T* w, T* dx) {
    std::vector<double> acc(static_cast<std::size_t>(s.in_size()), 0.0);
    for_each_tap(s, [&](std::int64_t xi, std::int64_t wi, std::int64_t yi) {
        acc[static_cast<std::size_t>(xi)] += double(dy[yi]) * double(w[wi]);
    });
    for (std::int64_t i = 0; i < s.in_size(); ++i) dx[i] = T(acc[static_cast<std::size_t>(i)]);
}

// dw = dL/dw (HWIO) for input x and dy = dL/dy.
template <typename T>
void conv2d_backward_filter_ref(const ConvShape& s, const T* x, const T* dy, T* dw) {
    std::vector<double> acc(static_cast<std::size_t>(s.kernel_size()), 0.0);
    for_each_tap(s, [&](std::int64_t xi, std::int64_t wi, std::int64_t yi) {
        acc[static_cast<std::size_t>(wi)] += double(x[xi]) * double(dy[yi]);
    });
    for (std::int64_t i = 0; i < s.kernel_size(); ++i) dw[i] = T(acc[static_cast<std::size_t>(i)]);
}

// db[o] = sum of dy over every output position.
template <typename T>
void conv2d_bias_grad_ref(const ConvShape& s, const T* dy, T* db) {
    for (std::int64_t o = 0; o < s.oc; ++o) {
        double acc = 0;
        for (std::int64_t r = 0; r < s.rows(); ++r) acc += double(dy[r * s.oc + o]);
        db[o] = T(acc);
    }
}

// ---------------------------------------------------------------- fast path

namespace conv_detail {

using Index = std::int64_t;

// A grow-only, 64-byte aligned scratch buffer per thread and slot: no
// allocation once warm.
template <typename T, int Slot>
T* scratch(Index n) {
    thread_local std::vector<T, AlignedAllocator<T>> buf;
    if (static_cast<Index>(buf.size()) < n) {
        buf.clear();
        buf.shrink_to_fit();
        buf.resize(static_cast<std::size_t>(n));
    }
    return buf.data();
}

// True when the convolution is a plain product: x is already the im2col matrix.
inline bool is_pointwise(const ConvShape& s) {
    return s.kh == 1 && s.kw == 1 && s.sh == 1 && s.sw == 1 && s.pt == 0 && s.pl == 0;
}

// Rows per chunk: about `bytes` of im2col, a whole number of GEMM row slivers,
// and at least one chunk per thread when there are enough rows.
template <typename T>
Index chunk_rows(const ConvShape& s, Index bytes) {
    const Index k = std::max<Index>(1, s.patch());
    Index rows = std::max<Index>(16, bytes / (k * Index(sizeof(T))));
    const Index threads = ThreadPool::global().size();
    rows = std::min(rows, std::max<Index>(16, (s.rows() + threads - 1) / threads));
    return std::max<Index>(16, rows / 16 * 16);
}

// col(r1 - r0, K) = the input patches of output positions [r0, r1), zero
// where the window hangs over the padding.
template <typename T>
void im2col(const ConvShape& s, const T* x, Index r0, Index r1, T* col) {
    const Index K = s.patch(), C = s.c, plane = s.oh * s.ow;
    for (Index r = r0; r < r1; ++r) {
        const Index n = r / plane, rem = r % plane, oy = rem / s.ow, ox = rem % s.ow;
        T* dst = col + (r - r0) * K;
        const Index ix0 = ox * s.sw - s.pl;
        const Index j_lo = std::max<Index>(0, -ix0), j_hi = std::min<Index>(s.kw, s.w - ix0);
        for (Index i = 0; i < s.kh; ++i, dst += s.kw * C) {
            const Index iy = oy * s.sh - s.pt + i;
            if (iy < 0 || iy >= s.h || j_lo >= j_hi) {
                std::memset(dst, 0, sizeof(T) * std::size_t(s.kw * C));
                continue;
            }
            if (j_lo > 0) std::memset(dst, 0, sizeof(T) * std::size_t(j_lo * C));
            std::memcpy(dst + j_lo * C, x + ((n * s.h + iy) * s.w + ix0 + j_lo) * C,
                        sizeof(T) * std::size_t((j_hi - j_lo) * C));
            if (j_hi < s.kw) std::memset(dst + j_hi * C, 0, sizeof(T) * std::size_t((s.kw - j_hi) * C));
        }
    }
}

// dx += the patches in dcol(r1 - r0, K) of output positions [r0, r1).
template <typename T>
void col2im_add(const ConvShape& s, const T* dcol, Index r0, Index r1, T* dx) {
    const Index K = s.patch(), C = s.c, plane = s.oh * s.ow;
    for (Index r = r0; r < r1; ++r) {
        const Index n = r / plane, rem = r % plane, oy = rem / s.ow, ox = rem % s.ow;
        const T* src = dcol + (r - r0) * K;
        const Index ix0 = ox * s.sw - s.pl;
        const Index j_lo = std::max<Index>(0, -ix0), j_hi = std::min<Index>(s.kw, s.w - ix0);
        for (Index i = 0; i < s.kh; ++i, src += s.kw * C) {
            const Index iy = oy * s.sh - s.pt + i;
            if (iy < 0 || iy >= s.h || j_lo >= j_hi) continue;
            T* d = dx + ((n * s.h + iy) * s.w + ix0 + j_lo) * C;
            const T* g = src + j_lo * C;
            const Index len = (j_hi - j_lo) * C;
            for (Index e = 0; e < len; ++e) d[e] += g[e];
        }
    }
}

inline void check_shape(const ConvShape& s) {
    CUMULUS_CHECK(s.n >= 0 && s.h > 0 && s.w > 0 && s.c > 0 && s.kh > 0 && s.kw > 0 && s.oc > 0 && s.sh > 0 &&
                      s.sw > 0 && s.oh > 0 && s.ow > 0,
                  "conv2d: bad geometry n=", s.n, " h=", s.h, " w=", s.w, " c=", s.c, " kernel ", s.kh, "x", s.kw,
                  " -> ", s.oc, " strides ", s.sh, "x", s.sw, " out ", s.oh, "x", s.ow);
}

}  // namespace conv_detail

// y = epilogue(conv(x, w) [+ bias]): epilogue None, Bias or BiasRelu (bias
// needed for the last two), as in gemm.
template <typename T>
void conv2d_forward(const ConvShape& s, const T* x, const T* w, T* y, Epilogue epilogue = Epilogue::None,
                    const T* bias = nullptr) {
    using namespace conv_detail;
    check_shape(s);
    if (s.rows() == 0) return;
    const Index K = s.patch(), O = s.oc;
    if (is_pointwise(s)) {
        gemm(Transpose::No, Transpose::No, s.rows(), O, K, T(1), x, K, w, O, T(0), y, O, epilogue, bias);
        return;
    }
    const Index rows = chunk_rows<T>(s, Index(512) << 10);
    const Index chunks = (s.rows() + rows - 1) / rows;
    parallel_for(chunks, [&](Index b, Index e, int) {
        T* col = scratch<T, 0>(rows * K);
        for (Index ch = b; ch < e; ++ch) {
            const Index r0 = ch * rows, r1 = std::min(s.rows(), r0 + rows);
            im2col(s, x, r0, r1, col);
            gemm(Transpose::No, Transpose::No, r1 - r0, O, K, T(1), col, K, w, O, T(0), y + r0 * O, O, epilogue,
                 bias);
        }
    });
}

// dx = dL/dx from dy = dL/dy (before any activation) and the kernel w.
template <typename T>
void conv2d_backward_data(const ConvShape& s, const T* dy, const T* w, T* dx) {
    using namespace conv_detail;
    check_shape(s);
    if (s.rows() == 0) return;
    const Index K = s.patch(), O = s.oc;
    if (is_pointwise(s)) {
        gemm(Transpose::No, Transpose::Yes, s.rows(), K, O, T(1), dy, O, w, O, T(0), dx, K);
        return;
    }
    std::fill(dx, dx + s.in_size(), T(0));
    // Patches of one image overlap in dx, those of different images never:
    // threads take whole images, each walking its images in row chunks.
    const Index plane = s.oh * s.ow;
    const Index rows = std::min(plane, chunk_rows<T>(s, Index(512) << 10));
    auto run_images = [&](Index b, Index e, int) {
        T* dcol = scratch<T, 1>(rows * K);
        for (Index n = b; n < e; ++n)
            for (Index r0 = n * plane; r0 < (n + 1) * plane; r0 += rows) {
                const Index r1 = std::min((n + 1) * plane, r0 + rows);
                gemm(Transpose::No, Transpose::Yes, r1 - r0, K, O, T(1), dy + r0 * O, O, w, O, T(0), dcol, K);
                col2im_add(s, dcol, r0, r1, dx);
            }
    };
    parallel_for(s.n, run_images);
}

// dw = dL/dw (HWIO) from the input x and dy = dL/dy (before any activation).
template <typename T>
void conv2d_backward_filter(const ConvShape& s, const T* x, const T* dy, T* dw) {
    using namespace conv_detail;
    check_shape(s);
    const Index K = s.patch(), O = s.oc, M = s.rows();
    if (M == 0) {
        std::fill(dw, dw + K * O, T(0));
        return;
    }
    if (is_pointwise(s)) {
        gemm(Transpose::Yes, Transpose::No, K, O, M, T(1), x, K, dy, O, T(0), dw, O);
        return;
    }
    const Index rows = chunk_rows<T>(s, Index(1024) << 10);
    const Index chunks = (M + rows - 1) / rows;
    const int parts = static_cast<int>(std::min<Index>(ThreadPool::global().size(), chunks));
    // Part 0 sums straight into dw, the others into slices of the calling
    // thread's scratch, added up at the end.
    T* partials = parts > 1 ? scratch<T, 2>((parts - 1) * K * O) : nullptr;
    parallel_for(
        chunks,
        [&](Index b, Index e, int part) {
            T* col = scratch<T, 0>(rows * K);
            T* acc = part == 0 ? dw : partials + (part - 1) * K * O;
            for (Index ch = b; ch < e; ++ch) {
                const Index r0 = ch * rows, r1 = std::min(M, r0 + rows);
                im2col(s, x, r0, r1, col);
                gemm(Transpose::Yes, Transpose::No, K, O, r1 - r0, T(1), col, K, dy + r0 * O, O,
                     ch == b ? T(0) : T(1), acc, O);
            }
        },
        parts);
    for (int p = 1; p < parts; ++p) {
        const T* src = partials + (p - 1) * K * O;
        for (Index i = 0; i < K * O; ++i) dw[i] += src[i];
    }
}

// db[o] = sum of dy over every output position.
template <typename T>
void conv2d_bias_grad(const ConvShape& s, const T* dy, T* db) {
    bias_grad(dy, db, s.rows(), s.oc);
}

}  // namespace cumulus::cpu
