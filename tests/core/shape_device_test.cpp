#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <cumulus/core/device.hpp>
#include <cumulus/core/error.hpp>
#include <cumulus/core/shape.hpp>

using cumulus::Device;
using cumulus::Error;
using cumulus::Shape;

TEST_CASE("Shape: rank, numel and numpy-style str") {
    Shape m{128, 784};
    CHECK(m.rank() == 2);
    CHECK(m.numel() == 128 * 784);
    CHECK(m[0] == 128);
    CHECK(m[1] == 784);
    CHECK(m.str() == "(128, 784)");

    Shape v{5};
    CHECK(v.rank() == 1);
    CHECK(v.numel() == 5);
    CHECK(v.str() == "(5,)");

    Shape s;
    CHECK(s.rank() == 0);
    CHECK(s.numel() == 1);  // a scalar holds one element
    CHECK(s.str() == "()");

    Shape z{3, 0, 2};
    CHECK(z.numel() == 0);
    CHECK(z.str() == "(3, 0, 2)");

    Shape img{2, 28, 28, 1};
    CHECK(img.numel() == 2 * 28 * 28);
    CHECK(img.str() == "(2, 28, 28, 1)");
}

TEST_CASE("Shape: dim() takes negative indices and checks range") {
    Shape m{4, 7, 9};
    CHECK(m.dim(0) == 4);
    CHECK(m.dim(2) == 9);
    CHECK(m.dim(-1) == 9);
    CHECK(m.dim(-3) == 4);
    CHECK_THROWS_AS(m.dim(3), Error);
    CHECK_THROWS_AS(m.dim(-4), Error);
    CHECK_THROWS_WITH_AS(m.dim(5), doctest::Contains("(4, 7, 9)"), Error);
    CHECK_THROWS_AS(Shape{}.dim(0), Error);
}

TEST_CASE("Shape: bad dims are rejected") {
    CHECK_THROWS_AS(Shape({-1}), Error);
    CHECK_THROWS_AS(Shape({3, -2}), Error);
    CHECK_THROWS_WITH_AS(Shape({2, -5}), doctest::Contains("-5"), Error);
    CHECK_THROWS_AS(Shape({1, 1, 1, 1, 1, 1, 1}), Error);
    CHECK_NOTHROW(Shape({1, 1, 1, 1, 1, 1}));

    Shape full{1, 2, 3, 4, 5, 6};
    CHECK(full.rank() == Shape::kMaxRank);
    CHECK_THROWS_AS(full.push_back(7), Error);
    CHECK(full.rank() == Shape::kMaxRank);
}

TEST_CASE("Shape: from an iterator range, equality, with_dim0") {
    std::vector<int> dims{3, 5};
    Shape a(dims.begin(), dims.end());
    CHECK(a == Shape{3, 5});
    CHECK_FALSE(a == Shape{5, 3});
    CHECK_FALSE(a == Shape{3, 5, 1});
    CHECK(Shape{} == Shape{});

    std::vector<long> bad{2, -1};
    CHECK_THROWS_AS(Shape(bad.begin(), bad.end()), Error);

    Shape b = a.with_dim0(9);
    CHECK(b == Shape{9, 5});
    CHECK(a == Shape{3, 5});  // unchanged

    std::int64_t prod = 1;
    for (auto d : Shape{2, 3, 4}) prod *= d;
    CHECK(prod == 24);
}

TEST_CASE("Device: parsing and printing") {
    CHECK(cumulus::parse_device("cpu") == Device::cpu());
    CHECK(cumulus::parse_device("cuda") == Device::cuda(0));
    CHECK(cumulus::parse_device("cuda:0") == Device::cuda(0));
    CHECK(cumulus::parse_device("cuda:1") == Device::cuda(1));
    CHECK(cumulus::parse_device("cuda:12") == Device::cuda(12));
    CHECK(cumulus::parse_device("cuda:3").index == 3);
    CHECK(cumulus::parse_device("cuda:3").is_cuda());
    CHECK(cumulus::parse_device("cpu").is_cpu());

    CHECK(Device::cpu().str() == "cpu");
    CHECK(Device::cuda(2).str() == "cuda:2");
    for (const char* s : {"cpu", "cuda:0", "cuda:7"}) CHECK(cumulus::parse_device(s).str() == s);

    CHECK_FALSE(Device::cuda(0) == Device::cuda(1));
    CHECK_FALSE(Device::cpu() == Device::cuda(0));
}

TEST_CASE("Device: bad names are rejected with the name in the message") {
    for (const char* s : {"", "gpu", "CPU", "cuda:", "cuda:x", "cuda:1a", "cuda:-1", "cuda0", " cpu", "cpu:0"}) {
        CAPTURE(std::string(s));
        CHECK_THROWS_AS(cumulus::parse_device(s), Error);
    }
    CHECK_THROWS_WITH_AS(cumulus::parse_device("tpu"), doctest::Contains("'tpu'"), Error);
    CHECK_THROWS_WITH_AS(cumulus::parse_device("cuda:z"), doctest::Contains("cuda:N"), Error);
}
