// 2-D max and average pooling on the CPU, NHWC, with TensorFlow's window
// arithmetic (the geometry is a ConvShape with oc == c).
//
// Max pooling keeps, per output element, the index of the input element it
// took (within its image: (y * w + x) * c + channel), so backward routes the
// gradient to that one element. Ties go to the first maximum in the window's
// row-major order, as TensorFlow's CPU kernels; padding never wins. Average
// pooling divides by the number of input elements inside the window (padding
// not counted), as TensorFlow's AvgPool with 'same' padding.
//
// The references (*_ref) walk every output element separately, average in
// double, and find the maximum again from x; the fast versions run down the
// contiguous channel vector of each window position, images split over
// ThreadPool::global().
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include <cumulus/core/error.hpp>
#include <cumulus/core/parallel.hpp>
#include <cumulus/cpu/conv.hpp>

namespace cumulus::cpu {

// The pooling geometry: window kh x kw, strides sh x sw, TF padding.
inline ConvShape pool_shape(std::int64_t n, std::int64_t h, std::int64_t w, std::int64_t c, std::int64_t kh,
                            std::int64_t kw, std::int64_t sh, std::int64_t sw, Padding p, const char* what = "pool2d") {
    return conv_shape(n, h, w, c, kh, kw, c, sh, sw, p, what);
}

namespace pool_detail {

using Index = std::int64_t;

inline constexpr Index kPoolBlock = 64;

inline void check_shape(const ConvShape& s, const char* op) {
    CUMULUS_CHECK(s.oc == s.c && s.n >= 0 && s.h > 0 && s.w > 0 && s.c > 0 && s.oh > 0 && s.ow > 0, op,
                  ": bad geometry n=", s.n, " h=", s.h, " w=", s.w, " c=", s.c, " -> ", s.oh, "x", s.ow, "x", s.oc);
    CUMULUS_CHECK(s.h * s.w * s.c <= std::numeric_limits<std::int32_t>::max(), op, ": an image of ", s.h, "x", s.w,
                  "x", s.c, " elements is too large for 32-bit argmax indices");
}

// The clipped window of output (oy, ox): rows [y0, y1), columns [x0, x1).
struct Span {
    Index y0, y1, x0, x1;
    Index count() const { return (y1 - y0) * (x1 - x0); }
};
inline Span span(const ConvShape& s, Index oy, Index ox) {
    const Index ys = oy * s.sh - s.pt, xs = ox * s.sw - s.pl;
    return {std::max<Index>(ys, 0), std::min(ys + s.kh, s.h), std::max<Index>(xs, 0), std::min(xs + s.kw, s.w)};
}

// m = max(m, v) over cw channels, a = the index base + channel where v won
// (strictly greater: the first maximum stays). Compilers turn the scalar
// select into a branch that random data mispredicts half the time, so float
// gets an SSE2 select.
template <typename T>
inline void max_step(const T* v, T* m, std::int32_t* a, std::int32_t base, Index cw) {
    Index ci = 0;
#if CUMULUS_GEMM_X86 && defined(__SSE2__)
    if constexpr (std::is_same_v<T, float>) {
        __m128i idx = _mm_add_epi32(_mm_set1_epi32(base), _mm_setr_epi32(0, 1, 2, 3));
        const __m128i four = _mm_set1_epi32(4);
        for (; ci + 4 <= cw; ci += 4, idx = _mm_add_epi32(idx, four)) {
            const __m128 vv = _mm_loadu_ps(v + ci), mm = _mm_loadu_ps(m + ci);
            const __m128 gt = _mm_cmpgt_ps(vv, mm);
            _mm_storeu_ps(m + ci, _mm_or_ps(_mm_and_ps(gt, vv), _mm_andnot_ps(gt, mm)));
            const __m128i g = _mm_castps_si128(gt);
            const __m128i aa = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + ci));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(a + ci), _mm_or_si128(_mm_and_si128(g, idx), _mm_andnot_si128(g, aa)));
        }
    }
#endif
    for (; ci < cw; ++ci) {
        const bool take = v[ci] > m[ci];
        m[ci] = take ? v[ci] : m[ci];
        a[ci] = take ? std::int32_t(base + ci) : a[ci];
    }
}

// Work split by images: their dx never overlap.
template <typename F>
void for_each_image(const ConvShape& s, F&& f) {
    parallel_for(s.n, [&](Index b, Index e, int) {
        for (Index n = b; n < e; ++n) f(n);
    });
}

}  // namespace pool_detail

// ---------------------------------------------------------------- reference

template <typename T>
void max_pool_forward_ref(const ConvShape& s, const T* x, T* y) {
    for (std::int64_t n = 0; n < s.n; ++n)
        for (std::int64_t oy = 0; oy < s.oh; ++oy)
            for (std::int64_t ox = 0; ox < s.ow; ++ox) {
                const auto sp = pool_detail::span(s, oy, ox);
                for (std::int64_t ci = 0; ci < s.c; ++ci) {
                    bool first = true;
                    T m{};
                    for (std::int64_t iy = sp.y0; iy < sp.y1; ++iy)
                        for (std::int64_t ix = sp.x0; ix < sp.x1; ++ix) {
                            const T v = x[((n * s.h + iy) * s.w + ix) * s.c + ci];
                            if (first || v > m) m = v, first = false;
                        }
                    y[((n * s.oh + oy) * s.ow + ox) * s.c + ci] = m;
                }
            }
}

// dx from dy, finding each window's first maximum again in x.
template <typename T>
void max_pool_backward_ref(const ConvShape& s, const T* x, const T* dy, T* dx) {
    std::vector<double> acc(static_cast<std::size_t>(s.in_size()), 0.0);
    for (std::int64_t n = 0; n < s.n; ++n)
        for (std::int64_t oy = 0; oy < s.oh; ++oy)
            for (std::int64_t ox = 0; ox < s.ow; ++ox) {
                const auto sp = pool_detail::span(s, oy, ox);
                for (std::int64_t ci = 0; ci < s.c; ++ci) {
                    std::int64_t best = -1;
                    for (std::int64_t iy = sp.y0; iy < sp.y1; ++iy)
                        for (std::int64_t ix = sp.x0; ix < sp.x1; ++ix) {
                            const std::int64_t at = ((n * s.h + iy) * s.w + ix) * s.c + ci;
                            if (best < 0 || x[at] > x[best]) best = at;
                        }
                    acc[static_cast<std::size_t>(best)] += double(dy[((n * s.oh + oy) * s.ow + ox) * s.c + ci]);
                }
            }
    for (std::int64_t i = 0; i < s.in_size(); ++i) dx[i] = T(acc[static_cast<std::size_t>(i)]);
}

template <typename T>
void avg_pool_forward_ref(const ConvShape& s, const T* x, T* y) {
    for (std::int64_t n = 0; n < s.n; ++n)
        for (std::int64_t oy = 0; oy < s.oh; ++oy)
            for (std::int64_t ox = 0; ox < s.ow; ++ox) {
                const auto sp = pool_detail::span(s, oy, ox);
                for (std::int64_t ci = 0; ci < s.c; ++ci) {
                    double sum = 0;
                    for (std::int64_t iy = sp.y0; iy < sp.y1; ++iy)
                        for (std::int64_t ix = sp.x0; ix < sp.x1; ++ix)
                            sum += double(x[((n * s.h + iy) * s.w + ix) * s.c + ci]);
                    y[((n * s.oh + oy) * s.ow + ox) * s.c + ci] = T(sum / double(sp.count()));
                }
            }
}

template <typename T>
void avg_pool_backward_ref(const ConvShape& s, const T* dy, T* dx) {
    std::vector<double> acc(static_cast<std::size_t>(s.in_size()), 0.0);
    for (std::int64_t n = 0; n < s.n; ++n)
        for (std::int64_t oy = 0; oy < s.oh; ++oy)
            for (std::int64_t ox = 0; ox < s.ow; ++ox) {
                const auto sp = pool_detail::span(s, oy, ox);
                for (std::int64_t ci = 0; ci < s.c; ++ci) {
                    const double g = double(dy[((n * s.oh + oy) * s.ow + ox) * s.c + ci]) / double(sp.count());
                    for (std::int64_t iy = sp.y0; iy < sp.y1; ++iy)
                        for (std::int64_t ix = sp.x0; ix < sp.x1; ++ix)
                            acc[static_cast<std::size_t>(((n * s.h + iy) * s.w + ix) * s.c + ci)] += g;
                }
            }
    for (std::int64_t i = 0; i < s.in_size(); ++i) dx[i] = T(acc[static_cast<std::size_t>(i)]);
}

// ---------------------------------------------------------------- fast path

// y = max over each window; argmax (one int32 per output element) says which
// input element of the image it came from.
template <typename T>
void max_pool_forward(const ConvShape& s, const T* x, T* y, std::int32_t* argmax) {
    using namespace pool_detail;
    check_shape(s, "max_pool_forward");
    const Index C = s.c;
    for_each_image(s, [&](Index n) {
        const T* xn = x + n * s.h * s.w * C;
        for (Index oy = 0; oy < s.oh; ++oy)
            for (Index ox = 0; ox < s.ow; ++ox) {
                const Index o = ((n * s.oh + oy) * s.ow + ox) * C;
                const Span sp = span(s, oy, ox);
                // Channel blocks in local arrays: no aliasing with x, and a
                // select instead of a branch the data would make unpredictable.
                for (Index c0 = 0; c0 < C; c0 += kPoolBlock) {
                    const Index cw = std::min<Index>(kPoolBlock, C - c0);
                    T m[kPoolBlock];
                    std::int32_t a[kPoolBlock];
                    const Index first = (sp.y0 * s.w + sp.x0) * C + c0;
                    for (Index ci = 0; ci < cw; ++ci) m[ci] = xn[first + ci], a[ci] = std::int32_t(first + ci);
                    for (Index iy = sp.y0; iy < sp.y1; ++iy)
                        for (Index ix = sp.x0; ix < sp.x1; ++ix) {
                            const Index base = (iy * s.w + ix) * C + c0;
                            max_step(xn + base, m, a, std::int32_t(base), cw);
                        }
                    for (Index ci = 0; ci < cw; ++ci) y[o + c0 + ci] = m[ci], argmax[o + c0 + ci] = a[ci];
                }
            }
    });
}

// dx = dy routed to the element each output took (argmax from the forward).
template <typename T>
void max_pool_backward(const ConvShape& s, const T* dy, const std::int32_t* argmax, T* dx) {
    using namespace pool_detail;
    check_shape(s, "max_pool_backward");
    const Index in_image = s.h * s.w * s.c, out_image = s.oh * s.ow * s.c;
    for_each_image(s, [&](Index n) {
        T* d = dx + n * in_image;
        std::fill(d, d + in_image, T(0));
        const T* g = dy + n * out_image;
        const std::int32_t* a = argmax + n * out_image;
        for (Index i = 0; i < out_image; ++i) {
            CUMULUS_CHECK(a[i] >= 0 && a[i] < in_image, "max_pool_backward: argmax ", a[i], " at output ",
                          n * out_image + i, " is outside the image of ", in_image, " elements");
            d[a[i]] += g[i];
        }
    });
}

template <typename T>
void avg_pool_forward(const ConvShape& s, const T* x, T* y) {
    using namespace pool_detail;
    check_shape(s, "avg_pool_forward");
    const Index C = s.c;
    for_each_image(s, [&](Index n) {
        const T* xn = x + n * s.h * s.w * C;
        for (Index oy = 0; oy < s.oh; ++oy)
            for (Index ox = 0; ox < s.ow; ++ox) {
                T* out = y + ((n * s.oh + oy) * s.ow + ox) * C;
                const Span sp = span(s, oy, ox);
                std::fill(out, out + C, T(0));
                for (Index iy = sp.y0; iy < sp.y1; ++iy)
                    for (Index ix = sp.x0; ix < sp.x1; ++ix) {
                        const T* v = xn + (iy * s.w + ix) * C;
                        for (Index ci = 0; ci < C; ++ci) out[ci] += v[ci];
                    }
                const T inv = T(1) / T(sp.count());
                for (Index ci = 0; ci < C; ++ci) out[ci] *= inv;
            }
    });
}

template <typename T>
void avg_pool_backward(const ConvShape& s, const T* dy, T* dx) {
    using namespace pool_detail;
    check_shape(s, "avg_pool_backward");
    const Index C = s.c;
    for_each_image(s, [&](Index n) {
        T* dn = dx + n * s.h * s.w * C;
        std::fill(dn, dn + s.h * s.w * C, T(0));
        for (Index oy = 0; oy < s.oh; ++oy)
            for (Index ox = 0; ox < s.ow; ++ox) {
                const T* g = dy + ((n * s.oh + oy) * s.ow + ox) * C;
                const Span sp = span(s, oy, ox);
                const T inv = T(1) / T(sp.count());
                for (Index iy = sp.y0; iy < sp.y1; ++iy)
                    for (Index ix = sp.x0; ix < sp.x1; ++ix) {
                        T* d = dn + (iy * s.w + ix) * C;
                        for (Index ci = 0; ci < C; ++ci) d[ci] += g[ci] * inv;
                    }
            }
    });
}

}  // namespace cumulus::cpu
