// Max and average pooling on the CPU: known TensorFlow outputs, the tie rule,
// and the fast path against the reference on random shapes.
#include <doctest/doctest.h>

#include <vector>

#include <cumulus/core/random.hpp>
#include <cumulus/cpu/pool.hpp>
#include <cumulus/ops/pool.hpp>

#include "ops_test_util.hpp"
#include "../test_util.hpp"

using namespace cumulus;
using cpu::ConvShape;
using cpu::Padding;

TEST_CASE("avg pool with 'same' padding divides by the elements inside, as TensorFlow") {
    std::vector<float> x(25);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = float(i + 1);
    // tf.nn.avg_pool2d(arange(1, 26).reshape(1, 5, 5, 1), k, 2, "SAME")
    const std::vector<float> tf3 = {4.0f, 5.5f, 7.0f, 11.5f, 13.0f, 14.5f, 19.0f, 20.5f, 22.0f};
    const std::vector<float> tf2 = {4.0f, 6.0f, 7.5f, 14.0f, 16.0f, 17.5f, 21.5f, 23.5f, 25.0f};
    for (std::int64_t k : {3, 2}) {
        const ConvShape s = cpu::pool_shape(1, 5, 5, 1, k, k, 2, 2, Padding::Same);
        std::vector<float> y(9), yr(9);
        cpu::avg_pool_forward(s, x.data(), y.data());
        cpu::avg_pool_forward_ref(s, x.data(), yr.data());
        CHECK(y == (k == 3 ? tf3 : tf2));
        CHECK(yr == (k == 3 ? tf3 : tf2));
    }
}

TEST_CASE("max pool: ties go to the first maximum, padding never wins") {
    // TensorFlow's gradient of max_pool2d([[1, 3], [3, 2]], 2, 2, VALID) is [[0, 1], [0, 0]].
    {
        const ConvShape s = cpu::pool_shape(1, 2, 2, 1, 2, 2, 2, 2, Padding::Valid);
        const std::vector<float> x = {1, 3, 3, 2}, dy = {1};
        std::vector<float> y(1), dx(4), dxr(4);
        std::vector<std::int32_t> arg(1);
        cpu::max_pool_forward(s, x.data(), y.data(), arg.data());
        CHECK(y[0] == 3.0f);
        CHECK(arg[0] == 1);
        cpu::max_pool_backward(s, dy.data(), arg.data(), dx.data());
        cpu::max_pool_backward_ref(s, x.data(), dy.data(), dxr.data());
        CHECK(dx == std::vector<float>{0, 1, 0, 0});
        CHECK(dxr == dx);
    }
    // All negative with 'same' padding: the zero padding must not be the max.
    {
        const ConvShape s = cpu::pool_shape(1, 3, 3, 2, 2, 2, 2, 2, Padding::Same);
        std::vector<float> x(18);
        for (std::size_t i = 0; i < x.size(); ++i) x[i] = -1.0f - float(i);
        std::vector<float> y(static_cast<std::size_t>(s.out_size()));
        std::vector<std::int32_t> arg(y.size());
        cpu::max_pool_forward(s, x.data(), y.data(), arg.data());
        CHECK(s.oh == 2);
        CHECK(y[y.size() - 1] == x[17]);  // the bottom-right window holds one element per channel
        CHECK(y[0] == -1.0f);
        CHECK(y[1] == -2.0f);
    }
}

namespace {

struct Case {
    std::int64_t n, h, w, c, kh, kw, sh, sw;
    Padding p;
};

template <typename T>
void check_pool(const Case& k, std::uint64_t seed, bool ties) {
    const ConvShape s = cpu::pool_shape(k.n, k.h, k.w, k.c, k.kh, k.kw, k.sh, k.sw, k.p);
    auto x = test::uniform_vector<T>(s.in_size(), seed);
    if (ties)  // few distinct values, so windows hold equal maxima
        for (auto& v : x) v = T(int(v * 2));
    const auto dy = test::uniform_vector<T>(s.out_size(), seed + 1);
    std::vector<T> y(static_cast<std::size_t>(s.out_size()), T(7)), yr(y.size());
    std::vector<std::int32_t> arg(y.size(), -5);
    cpu::max_pool_forward(s, x.data(), y.data(), arg.data());
    cpu::max_pool_forward_ref(s, x.data(), yr.data());
    CHECK(y == yr);
    std::vector<T> dx(static_cast<std::size_t>(s.in_size()), T(7)), dxr(dx.size());
    cpu::max_pool_backward(s, dy.data(), arg.data(), dx.data());
    cpu::max_pool_backward_ref(s, x.data(), dy.data(), dxr.data());
    CUMULUS_CHECK_CLOSE(dx, dxr, test::tol<T>() * 4, test::tol<T>());

    cpu::avg_pool_forward(s, x.data(), y.data());
    cpu::avg_pool_forward_ref(s, x.data(), yr.data());
    CUMULUS_CHECK_CLOSE(y, yr, test::tol<T>() * 8, test::tol<T>() * 8);
    cpu::avg_pool_backward(s, dy.data(), dx.data());
    cpu::avg_pool_backward_ref(s, dy.data(), dxr.data());
    CUMULUS_CHECK_CLOSE(dx, dxr, test::tol<T>() * 8, test::tol<T>() * 8);
}

}  // namespace

TEST_CASE("pool fast path matches the reference") {
    const Case fixed[] = {
        {1, 4, 4, 1, 2, 2, 2, 2, Padding::Valid},  {2, 5, 7, 3, 2, 2, 2, 2, Padding::Same},
        {3, 7, 6, 5, 3, 3, 2, 2, Padding::Same},   {2, 9, 9, 6, 3, 2, 3, 1, Padding::Valid},
        {1, 6, 5, 7, 3, 3, 1, 1, Padding::Same},   {4, 28, 28, 3, 2, 2, 2, 2, Padding::Valid},
        {1, 3, 3, 2, 5, 5, 1, 1, Padding::Same},
    };
    std::uint64_t seed = 300;
    for (const auto& k : fixed) {
        CAPTURE(k.h);
        CAPTURE(k.w);
        CAPTURE(k.c);
        CAPTURE(k.kh);
        CAPTURE(k.sh);
        CAPTURE(cpu::padding_name(k.p));
        for (bool ties : {false, true}) {
            check_pool<float>(k, seed += 3, ties);
            check_pool<double>(k, seed += 3, ties);
        }
    }
    Philox rng(77, 1);
    for (int t = 0; t < 30; ++t) {
        Case k;
        k.n = 1 + rng.below(3);
        k.kh = 1 + rng.below(4);
        k.kw = 1 + rng.below(4);
        k.sh = 1 + rng.below(3);
        k.sw = 1 + rng.below(3);
        k.p = rng.below(2) ? Padding::Same : Padding::Valid;
        k.h = (k.p == Padding::Valid ? k.kh : 1) + rng.below(8);
        k.w = (k.p == Padding::Valid ? k.kw : 1) + rng.below(8);
        k.c = 1 + rng.below(7);
        CAPTURE(t);
        check_pool<float>(k, 900 + std::uint64_t(t), t % 2 == 1);
    }
}

TEST_CASE("pool ops check their tensors and argmax") {
    const ConvShape s = ops::pool2d_shape(Shape{2, 6, 6, 3}, 2, 2, 2, 2, Padding::Valid);
    auto x = Tensor<float>::zeros(Shape{2, 6, 6, 3});
    auto y = Tensor<float>::zeros(Shape{2, 3, 3, 3});
    auto bad = Tensor<float>::zeros(Shape{2, 3, 3, 4});
    auto arg = Tensor<std::int32_t>::zeros(Shape{2, 3, 3, 3});
    CHECK(test_util::contains(test_util::error_of([&] { ops::max_pool2d_forward(s, x, bad, arg); }), "(2, 3, 3, 3)"));
    CHECK(test_util::contains(test_util::error_of([&] { ops::avg_pool2d_forward(s, x, bad); }), "y should have"));
    arg.fill(1000);  // out of the 108-element image
    auto dx = Tensor<float>::zeros(Shape{2, 6, 6, 3});
    CHECK(test_util::contains(test_util::error_of([&] { ops::max_pool2d_backward(s, y, arg, dx); }), "outside"));
}
