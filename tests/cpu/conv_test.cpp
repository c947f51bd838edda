// Conv2D on the CPU: TensorFlow's padding arithmetic, known TensorFlow
// outputs, and the fast path (im2col chunks + GEMM) against the direct
// double-precision reference on random shapes.
#include <doctest/doctest.h>

#include <vector>

#include <cumulus/core/random.hpp>
#include <cumulus/cpu/conv.hpp>
#include <cumulus/ops/conv.hpp>

#include "ops_test_util.hpp"
#include "../test_util.hpp"

using namespace cumulus;
using cpu::ConvShape;
using cpu::Padding;

namespace {

struct ShapeCase {
    std::int64_t h, w, kh, kw, sh, sw;
    Padding p;
    std::int64_t oh, ow;
};

// Output sizes printed by TensorFlow 2.20 (tf.nn.conv2d and tf.nn.max_pool2d
// agree on every one).
const ShapeCase kTfShapes[] = {
    {28, 28, 5, 5, 1, 1, Padding::Valid, 24, 24}, {28, 28, 5, 5, 1, 1, Padding::Same, 28, 28},
    {28, 28, 5, 5, 2, 2, Padding::Valid, 12, 12}, {28, 28, 5, 5, 2, 2, Padding::Same, 14, 14},
    {28, 28, 3, 3, 3, 3, Padding::Valid, 9, 9},   {28, 28, 3, 3, 3, 3, Padding::Same, 10, 10},
    {7, 7, 3, 3, 2, 2, Padding::Valid, 3, 3},     {7, 7, 3, 3, 2, 2, Padding::Same, 4, 4},
    {8, 8, 3, 3, 2, 2, Padding::Valid, 3, 3},     {8, 8, 3, 3, 2, 2, Padding::Same, 4, 4},
    {9, 5, 4, 2, 3, 1, Padding::Valid, 2, 4},     {9, 5, 4, 2, 3, 1, Padding::Same, 3, 5},
    {6, 6, 2, 2, 2, 2, Padding::Valid, 3, 3},     {6, 6, 2, 2, 2, 2, Padding::Same, 3, 3},
    {5, 5, 2, 2, 2, 2, Padding::Valid, 2, 2},     {5, 5, 2, 2, 2, 2, Padding::Same, 3, 3},
    {13, 11, 5, 3, 2, 3, Padding::Valid, 5, 3},   {13, 11, 5, 3, 2, 3, Padding::Same, 7, 4},
    {10, 10, 1, 1, 3, 3, Padding::Valid, 4, 4},   {10, 10, 1, 1, 3, 3, Padding::Same, 4, 4},
    {14, 14, 5, 5, 1, 1, Padding::Valid, 10, 10}, {14, 14, 5, 5, 1, 1, Padding::Same, 14, 14},
    {17, 17, 4, 4, 3, 3, Padding::Valid, 5, 5},   {17, 17, 4, 4, 3, 3, Padding::Same, 6, 6},
    {3, 3, 3, 3, 2, 2, Padding::Valid, 1, 1},     {3, 3, 3, 3, 2, 2, Padding::Same, 2, 2},
};

std::vector<float> iota(std::int64_t n) {
    std::vector<float> v(static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = float(i + 1);
    return v;
}

}  // namespace

TEST_CASE("conv output sizes and padding match TensorFlow") {
    for (const auto& c : kTfShapes) {
        CAPTURE(c.h);
        CAPTURE(c.kh);
        CAPTURE(c.sh);
        CAPTURE(cpu::padding_name(c.p));
        const ConvShape s = cpu::conv_shape(2, c.h, c.w, 3, c.kh, c.kw, 4, c.sh, c.sw, c.p);
        CHECK(s.oh == c.oh);
        CHECK(s.ow == c.ow);
        // The padding before is the smaller half of what the last window needs.
        const std::int64_t total_h = std::max<std::int64_t>((c.oh - 1) * c.sh + c.kh - c.h, 0);
        CHECK(s.pt == (c.p == Padding::Same ? total_h / 2 : 0));
    }
    CHECK(test_util::error_of([] { cpu::conv_shape(1, 3, 3, 1, 4, 4, 1, 1, 1, Padding::Valid); }).find("larger") !=
          std::string::npos);
    CHECK(test_util::error_of([] { cpu::conv_shape(1, 3, 3, 1, 2, 2, 1, 0, 1, Padding::Same); }).find("positive") !=
          std::string::npos);
    CHECK(cpu::parse_padding("same") == Padding::Same);
    CHECK(cpu::parse_padding("VALID") == Padding::Valid);
    CHECK(test_util::error_of([] { cpu::parse_padding("full"); }).find("full") != std::string::npos);
}

TEST_CASE("conv values match TensorFlow where 'same' pads only after") {
    // tf.nn.conv2d(arange(1, 26).reshape(1, 5, 5, 1), ones((2, 2, 1, 1)), 2, "SAME")
    {
        const ConvShape s = cpu::conv_shape(1, 5, 5, 1, 2, 2, 1, 2, 2, Padding::Same);
        const std::vector<float> x = iota(25), w(4, 1.0f);
        std::vector<float> y(9), yr(9);
        cpu::conv2d_forward(s, x.data(), w.data(), y.data());
        cpu::conv2d_forward_ref(s, x.data(), w.data(), static_cast<const float*>(nullptr), yr.data());
        const std::vector<float> tf = {16, 24, 15, 56, 64, 35, 43, 47, 25};
        CHECK(y == tf);
        CHECK(yr == tf);
    }
    // tf.nn.conv2d(arange(1, 17).reshape(1, 4, 4, 1), arange(1, 10).reshape(3, 3, 1, 1), s, "SAME")
    const std::vector<float> x = iota(16), w = iota(9);
    for (std::int64_t stride : {1, 2}) {
        const ConvShape s = cpu::conv_shape(1, 4, 4, 1, 3, 3, 1, stride, stride, Padding::Same);
        std::vector<float> y(static_cast<std::size_t>(s.out_size()));
        cpu::conv2d_forward(s, x.data(), w.data(), y.data());
        const std::vector<float> tf =
            stride == 1 ? std::vector<float>{111, 178, 217, 145, 231, 348, 393, 252, 363, 528, 573, 360, 197, 274, 295,
                                             175}
                        : std::vector<float>{348, 252, 274, 175};
        CHECK(y == tf);
    }
}

namespace {

struct Case {
    std::int64_t n, h, w, c, kh, kw, oc, sh, sw;
    Padding p;
};

template <typename T>
void check_against_reference(const Case& k, std::uint64_t seed) {
    const ConvShape s = cpu::conv_shape(k.n, k.h, k.w, k.c, k.kh, k.kw, k.oc, k.sh, k.sw, k.p);
    const auto x = test::uniform_vector<T>(s.in_size(), seed);
    const auto w = test::uniform_vector<T>(s.kernel_size(), seed + 1);
    const auto b = test::uniform_vector<T>(s.oc, seed + 2);
    const auto dy = test::uniform_vector<T>(s.out_size(), seed + 3);
    // Sums of K products of numbers in [-1, 1]: absolute error against the
    // double reference grows like sqrt(K) ulps of the terms.
    const double atol = sizeof(T) == 4 ? 2e-6 * double(std::max(s.patch(), s.rows() * s.oc / s.c)) : 1e-12;
    for (auto epi : {Epilogue::None, Epilogue::Bias, Epilogue::BiasRelu}) {
        std::vector<T> y(static_cast<std::size_t>(s.out_size()), T(7)), yr(y.size());
        cpu::conv2d_forward(s, x.data(), w.data(), y.data(), epi, epi == Epilogue::None ? nullptr : b.data());
        cpu::conv2d_forward_ref(s, x.data(), w.data(), epi == Epilogue::None ? nullptr : b.data(), yr.data(),
                                epi == Epilogue::BiasRelu);
        CUMULUS_CHECK_CLOSE(y, yr, 1e-5, atol);
    }
    std::vector<T> dx(static_cast<std::size_t>(s.in_size()), T(7)), dxr(dx.size());
    cpu::conv2d_backward_data(s, dy.data(), w.data(), dx.data());
    cpu::conv2d_backward_data_ref(s, dy.data(), w.data(), dxr.data());
    CUMULUS_CHECK_CLOSE(dx, dxr, 1e-5, atol);
    std::vector<T> dw(static_cast<std::size_t>(s.kernel_size()), T(7)), dwr(dw.size());
    cpu::conv2d_backward_filter(s, x.data(), dy.data(), dw.data());
    cpu::conv2d_backward_filter_ref(s, x.data(), dy.data(), dwr.data());
    CUMULUS_CHECK_CLOSE(dw, dwr, 1e-5, 2e-6 * double(s.rows()) + atol);
    std::vector<T> db(static_cast<std::size_t>(s.oc)), dbr(db.size());
    cpu::conv2d_bias_grad(s, dy.data(), db.data());
    cpu::conv2d_bias_grad_ref(s, dy.data(), dbr.data());
    CUMULUS_CHECK_CLOSE(db, dbr, 1e-5, 1e-6 * double(s.rows()));
}

}  // namespace

TEST_CASE("conv fast path matches the reference: fixed shapes") {
    const Case cases[] = {
        {1, 5, 5, 1, 3, 3, 1, 1, 1, Padding::Valid},    // batch 1, one channel
        {2, 7, 9, 3, 3, 3, 5, 1, 1, Padding::Same},     // odd sizes
        {3, 9, 7, 5, 5, 3, 6, 2, 2, Padding::Same},     // stride 2, uneven padding
        {2, 11, 10, 7, 3, 4, 3, 3, 2, Padding::Valid},  // stride 3, channels not multiples of 4
        {1, 8, 8, 6, 1, 1, 9, 1, 1, Padding::Same},     // pointwise: no im2col
        {2, 6, 6, 3, 1, 1, 4, 2, 2, Padding::Valid},    // 1x1 with stride
        {1, 4, 4, 2, 5, 5, 3, 1, 1, Padding::Same},     // kernel larger than the input
        {2, 3, 3, 2, 3, 3, 2, 1, 1, Padding::Valid},    // a single output position
        {5, 12, 12, 4, 5, 5, 8, 1, 1, Padding::Same},   // several chunks, both threads
    };
    std::uint64_t seed = 100;
    for (const auto& k : cases) {
        CAPTURE(k.n);
        CAPTURE(k.h);
        CAPTURE(k.w);
        CAPTURE(k.c);
        CAPTURE(k.kh);
        CAPTURE(k.kw);
        CAPTURE(k.oc);
        CAPTURE(k.sh);
        CAPTURE(cpu::padding_name(k.p));
        check_against_reference<float>(k, seed += 10);
        check_against_reference<double>(k, seed += 10);
    }
}

TEST_CASE("conv fast path matches the reference: random shapes") {
    Philox rng(2024, 5);
    for (int t = 0; t < 24; ++t) {
        Case k;
        k.n = 1 + rng.below(3);
        k.kh = 1 + rng.below(5);
        k.kw = 1 + rng.below(5);
        k.sh = 1 + rng.below(3);
        k.sw = 1 + rng.below(3);
        k.p = rng.below(2) ? Padding::Same : Padding::Valid;
        k.h = (k.p == Padding::Valid ? k.kh : 1) + rng.below(9);
        k.w = (k.p == Padding::Valid ? k.kw : 1) + rng.below(9);
        k.c = 1 + rng.below(7);
        k.oc = 1 + rng.below(9);
        CAPTURE(t);
        CAPTURE(k.n);
        CAPTURE(k.h);
        CAPTURE(k.w);
        CAPTURE(k.c);
        CAPTURE(k.kh);
        CAPTURE(k.kw);
        CAPTURE(k.oc);
        CAPTURE(k.sh);
        CAPTURE(k.sw);
        CAPTURE(cpu::padding_name(k.p));
        check_against_reference<float>(k, 1000 + std::uint64_t(t));
    }
}

TEST_CASE("conv ops check their tensors") {
    const ConvShape s = ops::conv2d_shape(Shape{2, 6, 6, 3}, Shape{3, 3, 3, 4}, 1, 1, Padding::Same);
    CHECK(s.oh == 6);
    auto x = Tensor<float>::zeros(Shape{2, 6, 6, 3});
    auto w = Tensor<float>::zeros(Shape{3, 3, 3, 4});
    auto y = Tensor<float>::zeros(Shape{2, 6, 6, 5});
    CHECK(test_util::error_of([&] { ops::conv2d_forward(s, x, w, y); }).find("(2, 6, 6, 4)") != std::string::npos);
    y = Tensor<float>::zeros(Shape{2, 6, 6, 4});
    CHECK(test_util::error_of([&] { ops::conv2d_forward(s, x, w, y, Epilogue::Bias); }).find("bias") !=
          std::string::npos);
    CHECK(test_util::error_of([&] { ops::conv2d_shape(Shape{2, 6, 6, 2}, Shape{3, 3, 3, 4}, 1, 1, Padding::Same); })
              .find("channels") != std::string::npos);
    x.fill(1.0f);
    w.fill(1.0f);
    ops::conv2d_forward(s, x, w, y);
    CHECK(y.at(0, 0, 0, 0) == 12.0f);  // a corner sees 2 x 2 positions of 3 channels
    CHECK(y.at(1, 3, 3, 2) == 27.0f);
}
