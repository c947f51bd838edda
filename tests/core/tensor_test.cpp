#include <doctest/doctest.h>

#include <cstdint>
#include <numeric>
#include <vector>

#include <cumulus/core/allocator.hpp>
#include <cumulus/core/error.hpp>
#include <cumulus/core/tensor.hpp>

using cumulus::Device;
using cumulus::Error;
using cumulus::Shape;
using cumulus::Tensor;

namespace {

// 0, 1, 2, ... in a tensor of the given shape.
Tensor<float> iota_tensor(const Shape& shape) {
    std::vector<float> v(static_cast<std::size_t>(shape.numel()));
    std::iota(v.begin(), v.end(), 0.0f);
    return Tensor<float>::from_vector(shape, v);
}

bool aligned64(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 64 == 0; }

}  // namespace

TEST_CASE("Tensor: a default tensor is undefined and empty") {
    Tensor<float> t;
    CHECK_FALSE(t.defined());
    CHECK(t.data() == nullptr);
    CHECK(t.rank() == 0);
    CHECK(t.device() == Device::cpu());
}

TEST_CASE("Tensor: empty, zeros, full") {
    auto e = Tensor<float>::empty({3, 5});
    CHECK(e.defined());
    CHECK(e.shape() == Shape{3, 5});
    CHECK(e.rank() == 2);
    CHECK(e.dim(0) == 3);
    CHECK(e.dim(-1) == 5);
    CHECK(e.numel() == 15);
    CHECK(e.nbytes() == 15 * sizeof(float));
    CHECK(e.device() == Device::cpu());
    CHECK(Tensor<float>::dtype() == cumulus::DType::f32);
    CHECK(Tensor<std::uint8_t>::dtype() == cumulus::DType::u8);
    CHECK(aligned64(e.data()));

    auto z = Tensor<double>::zeros({4, 3, 2});
    for (double x : z.to_vector()) CHECK(x == 0.0);
    CHECK(z.numel() == 24);

    auto f = Tensor<std::int32_t>::full({7}, -3);
    CHECK(f.to_vector() == std::vector<std::int32_t>(7, -3));

    auto zero_rows = Tensor<float>::zeros({0, 4});
    CHECK(zero_rows.numel() == 0);
    CHECK(zero_rows.to_vector().empty());
}

TEST_CASE("Tensor: from_vector keeps row-major order and checks the count") {
    auto t = Tensor<float>::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});
    CHECK(t.at(0, 0) == 1);
    CHECK(t.at(0, 2) == 3);
    CHECK(t.at(1, 0) == 4);
    CHECK(t.at(1, 2) == 6);
    CHECK(t[4] == 5);
    CHECK(t.to_vector() == std::vector<float>{1, 2, 3, 4, 5, 6});

    CHECK_THROWS_AS(Tensor<float>::from_vector({2, 3}, {1, 2, 3}), Error);
    CHECK_THROWS_WITH_AS(Tensor<float>::from_vector({2, 3}, std::vector<float>(7)),
                         doctest::Contains("(2, 3)"), Error);
}

TEST_CASE("Tensor: at() checks every index and the index count") {
    auto t = iota_tensor({4, 3});
    CHECK(t.at(3, 2) == 11);
    CHECK_THROWS_AS(t.at(4, 0), Error);
    CHECK_THROWS_AS(t.at(0, 3), Error);
    CHECK_THROWS_AS(t.at(-1, 0), Error);
    CHECK_THROWS_AS(t.at(0, -1), Error);
    CHECK_THROWS_AS(t.at(1), Error);
    CHECK_THROWS_AS(t.at(1, 1, 0), Error);
    CHECK_THROWS_WITH_AS(t.at(9, 0), doctest::Contains("(4, 3)"), Error);

    auto v = iota_tensor({5});
    CHECK(v.at(4) == 4);
    CHECK_THROWS_AS(v.at(5), Error);

    t.at(2, 1) = -7;  // at() returns a reference into the tensor
    CHECK(t.to_vector()[2 * 3 + 1] == -7);
}

TEST_CASE("Tensor: slice is a view that shares memory") {
    auto t = iota_tensor({4, 3});
    auto s = t.slice(1, 3);
    CHECK(s.shape() == Shape{2, 3});
    CHECK(s.data() == t.data() + 3);  // no copy: it points into the parent
    CHECK(s.shares_storage_with(t));
    CHECK(s.to_vector() == std::vector<float>{3, 4, 5, 6, 7, 8});

    s.at(0, 0) = 100;  // write through the slice ...
    CHECK(t.at(1, 0) == 100);  // ... and the parent sees it
    t.at(2, 2) = 200;  // and the other way round
    CHECK(s.at(1, 2) == 200);

    auto whole = t.slice(0, 4);
    CHECK(whole.data() == t.data());
    CHECK(whole.shape() == t.shape());

    auto none = t.slice(4, 4);
    CHECK(none.shape() == Shape{0, 3});
    CHECK(none.numel() == 0);

    auto inner = s.slice(1, 2);  // a slice of a slice
    CHECK(inner.data() == t.data() + 6);
    CHECK(inner.at(0, 2) == 200);

    auto v = iota_tensor({10});
    auto vs = v.slice(7, 10);
    CHECK(vs.to_vector() == std::vector<float>{7, 8, 9});

    auto img = iota_tensor({3, 2, 2, 1});
    auto is = img.slice(2, 3);
    CHECK(is.shape() == Shape{1, 2, 2, 1});
    CHECK(is.at(0, 1, 1, 0) == 11);
}

TEST_CASE("Tensor: slice keeps its memory alive after the parent is gone") {
    Tensor<float> s;
    {
        auto t = iota_tensor({6, 2});
        s = t.slice(4, 6);
    }
    CHECK(s.to_vector() == std::vector<float>{8, 9, 10, 11});
}

TEST_CASE("Tensor: slice bounds are checked") {
    auto t = iota_tensor({4, 3});
    CHECK_THROWS_AS(t.slice(-1, 2), Error);
    CHECK_THROWS_AS(t.slice(3, 2), Error);
    CHECK_THROWS_AS(t.slice(0, 5), Error);
    CHECK_THROWS_AS(t.slice(5, 5), Error);
    CHECK_THROWS_WITH_AS(t.slice(2, 9), doctest::Contains("(4, 3)"), Error);
    auto scalar = Tensor<float>::zeros(Shape{});
    CHECK_THROWS_AS(scalar.slice(0, 1), Error);
}

TEST_CASE("Tensor: reshape is a view, with -1 inferred") {
    auto t = iota_tensor({4, 3});
    auto r = t.reshape({3, 4});
    CHECK(r.shape() == Shape{3, 4});
    CHECK(r.data() == t.data());
    CHECK(r.shares_storage_with(t));
    CHECK(r.at(1, 0) == 4);
    r.at(2, 3) = -1;
    CHECK(t.at(3, 2) == -1);

    CHECK(t.reshape({-1}).shape() == Shape{12});
    CHECK(t.reshape({2, -1}).shape() == Shape{2, 6});
    CHECK(t.reshape({-1, 6}).shape() == Shape{2, 6});
    CHECK(t.reshape({2, -1, 3}).shape() == Shape{2, 2, 3});
    CHECK(t.reshape(Shape{12, 1}).shape() == Shape{12, 1});

    CHECK_THROWS_AS(t.reshape({5, 3}), Error);
    CHECK_THROWS_AS(t.reshape({-1, -1}), Error);
    CHECK_THROWS_AS(t.reshape({5, -1}), Error);  // 12 is not a multiple of 5
    CHECK_THROWS_AS(t.reshape({0, -1}), Error);
    CHECK_THROWS_WITH_AS(t.reshape({7}), doctest::Contains("(4, 3)"), Error);

    // A batch of images flattened, as a Flatten layer does.
    auto img = iota_tensor({2, 28, 28, 1});
    auto flat = img.reshape({2, -1});
    CHECK(flat.shape() == Shape{2, 784});
    CHECK(flat.at(1, 783) == 2 * 784 - 1);

    // Reshaping a slice views the slice's rows only.
    auto rs = t.slice(2, 4).reshape({-1});
    CHECK(rs.shape() == Shape{6});
    CHECK(rs.data() == t.data() + 6);
}

TEST_CASE("Tensor: copies share, clone is deep") {
    auto t = iota_tensor({3, 2});
    Tensor<float> alias = t;
    CHECK(alias.data() == t.data());
    alias.at(0, 0) = 42;
    CHECK(t.at(0, 0) == 42);

    auto c = t.clone();
    CHECK(c.shape() == t.shape());
    CHECK(c.data() != t.data());
    CHECK_FALSE(c.shares_storage_with(t));
    CHECK(c.to_vector() == t.to_vector());
    c.at(1, 1) = -5;
    CHECK(t.at(1, 1) == 3);
    t.at(2, 0) = 77;
    CHECK(c.at(2, 0) == 4);

    auto cs = t.slice(1, 2).clone();  // cloning a view copies only the view
    CHECK(cs.shape() == Shape{1, 2});
    CHECK(cs.to_vector() == std::vector<float>{2, 3});
    CHECK(aligned64(cs.data()));

    auto same = t.to(Device::cpu());
    CHECK(same.data() == t.data());
}

TEST_CASE("Tensor: fill, copy_from, to_vector") {
    auto t = Tensor<float>::zeros({2, 2});
    t.fill(1.5f);
    CHECK(t.to_vector() == std::vector<float>(4, 1.5f));

    auto src = iota_tensor({4});
    t.copy_from(src);  // same element count, other shape
    CHECK(t.to_vector() == std::vector<float>{0, 1, 2, 3});
    CHECK_THROWS_AS(t.copy_from(iota_tensor({5})), Error);

    auto big = iota_tensor({4, 2});
    big.slice(1, 3).fill(-1);
    CHECK(big.to_vector() == std::vector<float>{0, 1, -1, -1, -1, -1, 6, 7});
}

TEST_CASE("Tensor: CUDA memory without the CUDA backend is a clear error") {
    if (cumulus::cuda_memory_ops().allocate != nullptr) return;  // a backend is registered: nothing to check
    CHECK_THROWS_WITH_AS(Tensor<float>::empty({2}, Device::cuda(0)), doctest::Contains("cuda:0"), Error);
    CHECK_THROWS_WITH_AS(iota_tensor({2}).to(Device::cuda(1)), doctest::Contains("without the CUDA backend"),
                         Error);
    CHECK_THROWS_AS(Tensor<float>::zeros({3}, Device::cuda(0)), Error);
}

TEST_CASE("Tensor: check_same_device") {
    auto a = iota_tensor({2});
    auto b = Tensor<std::int32_t>::zeros({2});
    CHECK_NOTHROW(cumulus::check_same_device("add", a, b));
}

TEST_CASE("aligned allocation: 64-byte alignment for every size") {
    CHECK(cumulus::kHostAlignment == 64);
    CHECK(cumulus::host_allocate(0) == nullptr);
    for (std::size_t bytes : {1u, 3u, 63u, 64u, 65u, 100u, 4096u, 1000003u}) {
        CAPTURE(bytes);
        void* p = cumulus::host_allocate(bytes);
        REQUIRE(p != nullptr);
        CHECK(aligned64(p));
        // Every requested byte is usable (ASan checks this in the sanitized build).
        auto* c = static_cast<unsigned char*>(p);
        for (std::size_t i = 0; i < bytes; ++i) c[i] = static_cast<unsigned char>(i);
        CHECK(c[bytes - 1] == static_cast<unsigned char>(bytes - 1));
        cumulus::host_free(p);
    }
    cumulus::host_free(nullptr);

    for (std::size_t n : {1u, 5u, 17u, 1000u}) {
        std::vector<float, cumulus::AlignedAllocator<float>> v(n, 2.0f);
        CHECK(aligned64(v.data()));
        v.push_back(3.0f);
        CHECK(aligned64(v.data()));
        CHECK(v.back() == 3.0f);
        CHECK(v.front() == 2.0f);
    }
    CHECK(cumulus::AlignedAllocator<float>{} == cumulus::AlignedAllocator<double>{});

    // Tensors of every element size start on a 64-byte boundary.
    CHECK(aligned64(Tensor<std::uint8_t>::empty({3}).data()));
    CHECK(aligned64(Tensor<double>::empty({7, 3}).data()));
    CHECK(aligned64(Tensor<cumulus::half>::empty({5}).data()));
}
