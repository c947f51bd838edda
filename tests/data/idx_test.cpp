#include <doctest/doctest.h>

#include "../test_util.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include <cumulus/data/idx.hpp>
#include <cumulus/io/gzip.hpp>

using cumulus::Error;
using cumulus::Tensor;
using Bytes = std::vector<std::uint8_t>;
namespace fs = std::filesystem;
namespace data = cumulus::data;
namespace io = cumulus::io;
using data::IdxArray;
using data::IdxType;

namespace {

using test_util::contains;
using test_util::error_of;
using test_util::TempDir;

// Values covering each type's extremes, then random ones.
template <typename T>
std::vector<T> sample_values(std::size_t n, std::uint32_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<T> v(n);
    for (std::size_t i = 0; i < n; ++i) {
        if constexpr (std::is_floating_point_v<T>) {
            const T special[] = {T(0), T(-0.0), T(1), T(-1.5), std::numeric_limits<T>::max(),
                                 std::numeric_limits<T>::lowest(), std::numeric_limits<T>::denorm_min(),
                                 std::numeric_limits<T>::infinity(), std::numeric_limits<T>::quiet_NaN()};
            v[i] = i < std::size(special) ? special[i] : static_cast<T>(std::ldexp(double(rng() % 2000001) - 1e6, -7));
        } else {
            const T special[] = {T(0), T(1), std::numeric_limits<T>::max(), std::numeric_limits<T>::min()};
            v[i] = i < std::size(special) ? special[i] : static_cast<T>(rng());
        }
    }
    return v;
}

Bytes be32(std::uint32_t v) {
    return {std::uint8_t(v >> 24), std::uint8_t(v >> 16), std::uint8_t(v >> 8), std::uint8_t(v)};
}

// A raw IDX image built by hand: header fields as given, then `payload`.
Bytes idx_bytes(std::uint8_t type, const std::vector<std::uint32_t>& dims, const Bytes& payload) {
    Bytes b = {0, 0, type, std::uint8_t(dims.size())};
    for (auto d : dims) {
        Bytes x = be32(d);
        b.insert(b.end(), x.begin(), x.end());
    }
    b.insert(b.end(), payload.begin(), payload.end());
    return b;
}

template <typename T>
void check_round_trip(const std::vector<std::int64_t>& dims, std::uint32_t seed) {
    std::int64_t n = 1;
    for (auto d : dims) n *= d;
    std::vector<T> values = sample_values<T>(static_cast<std::size_t>(n), seed);
    IdxArray a = data::make_idx<T>(dims, values);
    CHECK(a.type == data::idx_type_v<T>);
    TempDir tmp;
    for (bool gz : {false, true}) {
        CAPTURE(gz);
        const std::string path = tmp / (gz ? "a.idx.gz" : "a.idx");
        data::write_idx(path, a, gz);
        Bytes file = io::read_file(path);
        CHECK(io::is_gzip(file.data(), file.size()) == gz);
        IdxArray b = data::read_idx(path);
        CHECK(b.type == a.type);
        CHECK(b.dims == dims);
        CHECK(b.data == a.data);  // bytewise: NaN and -0.0 survive too
        std::vector<T> back = b.to_vector<T>();
        REQUIRE(back.size() == values.size());
        if (!values.empty()) CHECK(std::memcmp(back.data(), values.data(), values.size() * sizeof(T)) == 0);
        // Serialising what was read gives back the raw file exactly.
        Bytes raw = gz ? io::gunzip(file.data(), file.size(), path, 1 << 26) : file;
        CHECK(data::serialize_idx(b) == raw);
    }
}

template <typename T>
void check_round_trips(std::uint32_t seed) {
    const std::vector<std::vector<std::int64_t>> shapes = {{1},    {7},       {0},       {3, 5},
                                                           {2, 0, 3}, {4, 3, 2}, {2, 1, 3, 1, 2, 1, 1, 2},
                                                           {1000}, {33, 31}};
    for (const auto& dims : shapes) {
        CAPTURE(data::detail::dims_str(dims));
        check_round_trip<T>(dims, seed++);
    }
}

}  // namespace

TEST_CASE("IDX round trip of every type, raw and gzip") {
    SUBCASE("uint8") { check_round_trips<std::uint8_t>(1); }
    SUBCASE("int8") { check_round_trips<std::int8_t>(2); }
    SUBCASE("int16") { check_round_trips<std::int16_t>(3); }
    SUBCASE("int32") { check_round_trips<std::int32_t>(4); }
    SUBCASE("float32") { check_round_trips<float>(5); }
    SUBCASE("float64") { check_round_trips<double>(6); }
}

TEST_CASE("IDX bytes are big-endian, as the format says") {
    IdxArray a = data::make_idx<std::int16_t>({2}, std::vector<std::int16_t>{1, -2});
    CHECK(data::serialize_idx(a) == Bytes{0, 0, 0x0b, 1, 0, 0, 0, 2, 0x00, 0x01, 0xff, 0xfe});
    IdxArray f = data::make_idx<float>({1, 1}, std::vector<float>{1.0f});
    CHECK(data::serialize_idx(f) == Bytes{0, 0, 0x0d, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0x3f, 0x80, 0, 0});
    IdxArray d = data::make_idx<double>({1}, std::vector<double>{-2.0});
    CHECK(data::serialize_idx(d) == Bytes{0, 0, 0x0e, 1, 0, 0, 0, 1, 0xc0, 0, 0, 0, 0, 0, 0, 0});
    Bytes i32 = idx_bytes(0x0c, {2}, {0x12, 0x34, 0x56, 0x78, 0xff, 0xff, 0xff, 0xfe});
    CHECK(data::parse_idx(i32, "i32").to_vector<std::int32_t>() == std::vector<std::int32_t>{0x12345678, -2});
}

TEST_CASE("IdxArray converts to other element types, exactly or not at all") {
    IdxArray s = data::make_idx<std::int16_t>({2, 2}, std::vector<std::int16_t>{-300, 0, 7, 32767});
    Tensor<std::int32_t> t = s.to_tensor<std::int32_t>();
    CHECK(t.shape() == cumulus::Shape{2, 2});
    CHECK(t.to_vector() == std::vector<std::int32_t>{-300, 0, 7, 32767});
    CHECK(s.to_tensor<float>().to_vector() == std::vector<float>{-300, 0, 7, 32767});
    std::string msg = error_of([&] { s.to_tensor<std::uint8_t>("s.idx"); });
    CHECK(contains(msg, "s.idx"));
    CHECK(contains(msg, "element 0 (-300)"));

    IdxArray f = data::make_idx<double>({3}, std::vector<double>{1.0, 2.5, 3.0});
    CHECK(contains(error_of([&] { f.to_vector<std::int32_t>(); }), "element 1 (2.5)"));
    CHECK(f.to_vector<float>() == std::vector<float>{1.0f, 2.5f, 3.0f});
    IdxArray big = data::make_idx<double>({2}, std::vector<double>{2147483647.0, 2147483648.0});
    CHECK(contains(error_of([&] { big.to_vector<std::int32_t>(); }), "element 1"));
    CHECK(big.to_vector<std::int64_t>() == std::vector<std::int64_t>{2147483647, 2147483648});
    IdxArray nan = data::make_idx<float>({1}, std::vector<float>{std::nanf("")});
    CHECK_THROWS_AS(nan.to_vector<std::int64_t>(), Error);

    IdxArray r7 = data::make_idx<std::uint8_t>({1, 1, 1, 1, 1, 1, 1}, std::vector<std::uint8_t>{9});
    CHECK(contains(error_of([&] { r7.to_tensor<std::uint8_t>("r7.idx"); }), "exceeds the Tensor maximum rank"));

    // Tensors go out and come back with their shape.
    TempDir tmp;
    Tensor<float> x = Tensor<float>::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});
    data::write_idx(tmp / "x.idx.gz", x, true);
    Tensor<float> y = data::read_idx(tmp / "x.idx.gz").to_tensor<float>();
    CHECK(y.shape() == x.shape());
    CHECK(y.to_vector() == x.to_vector());
}

TEST_CASE("write_idx rejects arrays it cannot encode") {
    IdxArray a = data::make_idx<std::uint8_t>({2}, std::vector<std::uint8_t>{1, 2});
    a.data.pop_back();
    CHECK(contains(error_of([&] { data::serialize_idx(a, "a.idx"); }), "need 2 data bytes"));
    IdxArray r0;
    CHECK(contains(error_of([&] { data::serialize_idx(r0, "r0.idx"); }), "rank must be 1..8"));
    IdxArray huge;
    huge.dims = {std::int64_t{1} << 32};
    CHECK(contains(error_of([&] { data::serialize_idx(huge); }), "unsigned 32-bit"));
    CHECK_THROWS_AS(data::make_idx<float>({2, 2}, std::vector<float>{1, 2, 3}), Error);
}

TEST_CASE("malformed IDX data gives an Error that names the file") {
    const Bytes good = idx_bytes(0x08, {2, 3}, {1, 2, 3, 4, 5, 6});
    REQUIRE(data::parse_idx(good, "good.idx").dims == std::vector<std::int64_t>{2, 3});

    auto msg_of = [](const Bytes& b) { return error_of([&] { data::parse_idx(b, "bad.idx"); }); };
    auto check_msg = [&](const Bytes& b, const std::string& part) {
        std::string msg = msg_of(b);
        CAPTURE(msg);
        CHECK(contains(msg, "bad.idx"));
        CHECK(contains(msg, part));
    };

    SUBCASE("truncated header") {
        check_msg(Bytes{}, "need at least 4 bytes");
        check_msg(Bytes{0, 0, 8}, "found 3");
        check_msg(Bytes(good.begin(), good.begin() + 10), "rank 2 needs a 12-byte header, the data has 10 bytes");
    }
    SUBCASE("truncated data") {
        check_msg(Bytes(good.begin(), good.end() - 1), "expected 6 data bytes after the 12-byte header, found 5");
        check_msg(Bytes(good.begin(), good.end() - 1), "truncated file");
        Bytes images = idx_bytes(0x08, {60000, 28, 28}, Bytes(47039999, 0));
        check_msg(images, "expected 47040000 data bytes after the 16-byte header, found 47039999");
    }
    SUBCASE("extra trailing data") {
        Bytes b = good;
        b.push_back(0);
        check_msg(b, "found 7 (extra trailing data)");
    }
    SUBCASE("bad magic") {
        Bytes b = good;
        b[0] = 1;
        check_msg(b, "bad IDX magic: bytes 0 and 1 must be 00 00, found 0x01 0x00");
        b = good;
        b[1] = 0x80;
        check_msg(b, "found 0x00 0x80");
    }
    SUBCASE("unknown type code") {
        for (int code : {0x00, 0x07, 0x0a, 0x0f, 0xff}) {
            Bytes b = good;
            b[2] = std::uint8_t(code);
            check_msg(b, "unknown IDX type code");
            check_msg(b, "byte offset 2");
        }
    }
    SUBCASE("rank 0 and huge ranks") {
        check_msg(Bytes{0, 0, 8, 0}, "IDX rank (byte offset 3) is 0");
        check_msg(idx_bytes(0x08, std::vector<std::uint32_t>(9, 1), {1}), "is 9; supported ranks are 1..8");
        Bytes b = good;
        b[3] = 255;
        check_msg(b, "is 255");
    }
    SUBCASE("huge dims") {
        check_msg(idx_bytes(0x08, {0xffffffffu}, {}), "dim 0 (4294967295");
        check_msg(idx_bytes(0x0e, {65536, 65536}, {}), "dim 1 (65536, at byte offset 8)");
        // A zero dim does not excuse an absurd product of the others.
        check_msg(idx_bytes(0x08, {0, 0xffffffffu, 0xffffffffu}, {}), "exceed the limit");
        // The limit is on elements (2^31 - 1), so the largest legal array parses in principle.
        check_msg(idx_bytes(0x08, {0x7fffffffu}, {}), "expected 2147483647 data bytes");
    }
    SUBCASE("length mismatch for wider types") {
        check_msg(idx_bytes(0x0c, {3}, Bytes(11, 0)), "int32: expected 12 data bytes after the 8-byte header, found 11");
        check_msg(idx_bytes(0x0e, {1, 2}, Bytes(17, 0)), "float64: expected 16 data bytes");
    }
    SUBCASE("zero-sized dims are fine") {
        IdxArray z = data::parse_idx(idx_bytes(0x0d, {4, 0, 3}, {}), "z.idx");
        CHECK(z.numel() == 0);
        CHECK(z.dims == std::vector<std::int64_t>{4, 0, 3});
        CHECK(z.to_tensor<float>().shape() == cumulus::Shape{4, 0, 3});
        check_msg(idx_bytes(0x0d, {4, 0, 3}, {1}), "expected 0 data bytes");
    }
    SUBCASE("gzip garbage, truncated gzip, gzip bomb") {
        Bytes junk = {0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x03, 0x12, 0x34, 0x56};
        check_msg(junk, "gzip");
        Bytes z = io::gzip_compress(idx_bytes(0x08, {3000}, Bytes(3000, 7)));
        check_msg(Bytes(z.begin(), z.end() - 3), "truncated gzip data");
        // The header declares 10 bytes; the stream holds 64 MiB.
        Bytes bomb = io::gzip_compress(idx_bytes(0x08, {10}, Bytes(64 << 20, 0)), 9);
        check_msg(bomb, "more than the limit of");
        check_msg(bomb, "header declares a 18-byte file");
        // Small trailing data inside the gzip is reported with exact sizes.
        Bytes tail = io::gzip_compress(idx_bytes(0x08, {10}, Bytes(13, 0)));
        check_msg(tail, "bad.idx (decompressed): IDX data length mismatch");
        check_msg(tail, "found 13 (extra trailing data)");
        // Damage inside the gzipped header is still caught.
        Bytes hdr = io::gzip_compress(idx_bytes(0x2a, {10}, Bytes(10, 0)));
        check_msg(hdr, "unknown IDX type code 0x2a");
    }
}

TEST_CASE("read_idx and the typed loaders check files") {
    TempDir tmp;
    std::string msg = error_of([&] { data::read_idx(tmp / "nope-idx3-ubyte"); });
    CHECK(contains(msg, "nope-idx3-ubyte"));
    CHECK(contains(msg, "cannot open"));

    data::write_idx(tmp / "i32.idx", data::make_idx<std::int32_t>({2, 2, 2}, std::vector<std::int32_t>(8, 1)));
    msg = error_of([&] { data::load_idx_images(tmp / "i32.idx"); });
    CHECK(contains(msg, "i32.idx"));
    CHECK(contains(msg, "expected IDX images of uint8 with rank 3 (N, H, W), found int32 with dims (2, 2, 2)"));
    data::write_idx(tmp / "r2.idx", data::make_idx<std::uint8_t>({2, 2}, std::vector<std::uint8_t>(4, 1)));
    CHECK(contains(error_of([&] { data::load_idx_images(tmp / "r2.idx"); }), "found uint8 with dims (2, 2)"));
    CHECK(contains(error_of([&] { data::load_idx_labels(tmp / "r2.idx"); }), "rank 1 (N,)"));

    data::write_idx(tmp / "l.idx.gz", data::make_idx<std::uint8_t>({3}, std::vector<std::uint8_t>{4, 5, 6}), true);
    Tensor<std::uint8_t> l = data::load_idx_labels(tmp / "l.idx.gz");
    CHECK(l.to_vector() == std::vector<std::uint8_t>{4, 5, 6});
}

TEST_CASE("the real MNIST IDX files") {
    const std::string dir = std::string(CUMULUS_TEST_DATA_DIR) + "/mnist/";
    Tensor<std::uint8_t> labels = data::load_idx_labels(dir + "t10k-labels-idx1-ubyte.gz");
    REQUIRE(labels.shape() == cumulus::Shape{10000});
    std::vector<std::uint8_t> l = labels.to_vector();
    CHECK(std::vector<std::uint8_t>(l.begin(), l.begin() + 10) == std::vector<std::uint8_t>{7, 2, 1, 0, 4, 1, 4, 9, 5, 9});
    std::int64_t sum = 0;
    for (auto v : l) sum += v;
    CHECK(sum == 44434);

    Tensor<std::uint8_t> images = data::load_idx_images(dir + "t10k-images-idx3-ubyte.gz");
    REQUIRE(images.shape() == cumulus::Shape{10000, 28, 28});
    std::int64_t pixels = 0;
    for (std::int64_t i = 0; i < images.numel(); ++i) pixels += images[i];
    CHECK(pixels == 264923200);
    CHECK(images.at(0, 14, 18) == 254);
    CHECK(images.at(0, 14, 16) == 59);
    CHECK(images.at(0, 0, 0) == 0);
}

TEST_CASE("mutated IDX bytes give an Error or a valid array, never a crash") {
    std::mt19937 rng(12345);
    const Bytes seeds[] = {
        idx_bytes(0x0b, {3, 4, 5}, Bytes(120, 0x5a)),
        idx_bytes(0x08, {2, 3}, {1, 2, 3, 4, 5, 6}),
        idx_bytes(0x0e, {2}, Bytes(16, 0x40)),
    };
    int ok = 0, errors = 0;
    auto try_parse = [&](const Bytes& b) {
        try {
            IdxArray a = data::parse_idx(b, "mutant");
            // Whatever parses is self-consistent and re-encodes to the same bytes.
            REQUIRE(a.data.size() == static_cast<std::size_t>(a.numel()) * a.elem_size());
            if (!io::is_gzip(b.data(), b.size())) REQUIRE(data::serialize_idx(a) == b);
            ++ok;
        } catch (const Error&) {
            ++errors;
        }
    };
    for (int iter = 0; iter < 4000; ++iter) {
        Bytes b = seeds[iter % 3];
        const int edits = 1 + rng() % 4;
        for (int e = 0; e < edits; ++e) {
            switch (rng() % 5) {
                case 0: if (!b.empty()) b[rng() % b.size()] ^= std::uint8_t(1u << (rng() % 8)); break;
                case 1: if (!b.empty()) b[rng() % b.size()] = std::uint8_t(rng()); break;
                case 2: b.resize(rng() % (b.size() + 1)); break;
                case 3: b.insert(b.begin() + rng() % (b.size() + 1), std::uint8_t(rng())); break;
                case 4: if (b.size() > 3) b[3] = std::uint8_t(rng() % 10); break;  // ranks near the limit
            }
        }
        try_parse(b);
    }
    // Gzipped mutants exercise the gzip layer behind parse_idx.
    const Bytes zseed = io::gzip_compress(seeds[0]);
    for (int iter = 0; iter < 1500; ++iter) {
        Bytes b = zseed;
        const int edits = 1 + rng() % 3;
        for (int e = 0; e < edits; ++e) {
            if (rng() % 3 == 0) b.resize(rng() % (b.size() + 1));
            else if (!b.empty()) b[rng() % b.size()] ^= std::uint8_t(1u << (rng() % 8));
        }
        try_parse(b);
    }
    MESSAGE("mutants: " << ok << " parsed, " << errors << " rejected");
    CHECK(ok > 0);
    CHECK(errors > 0);
}
