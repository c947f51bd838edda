// safetensors: byte-exact layout, round trips of every dtype, a reader that
// rejects every malformed input with cumulus::Error, and (when python3 with
// numpy is present) interop with an independent numpy reader and writer.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cumulus/core/dtype.hpp>
#include <cumulus/core/error.hpp>
#include <cumulus/core/tensor.hpp>
#include <cumulus/io/file.hpp>
#include <cumulus/io/safetensors.hpp>

#include "../test_util.hpp"

using cumulus::DType;
using cumulus::Tensor;
using cumulus::io::SafetensorsFile;
using Bytes = std::vector<std::uint8_t>;

namespace {

// A file: u64 LE length of `header` (padded with spaces to `pad_to`), header, data.
Bytes make_file(std::string header, const Bytes& data, std::size_t pad_to = 8) {
    header.append((pad_to - header.size() % pad_to) % pad_to, ' ');
    Bytes out;
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(std::uint64_t(header.size()) >> (8 * i)));
    out.insert(out.end(), header.begin(), header.end());
    out.insert(out.end(), data.begin(), data.end());
    return out;
}

Bytes zeros(std::size_t n) { return Bytes(n, 0); }

SafetensorsFile parse(const Bytes& b, const std::string& name = "test.safetensors") {
    return SafetensorsFile::parse(b.data(), b.size(), name);
}

// Parsing `b` must throw cumulus::Error whose message names the file and holds `expected`.
void expect_parse_error(const Bytes& b, const std::string& expected) {
    CAPTURE(expected);
    try {
        parse(b, "bad.safetensors");
        FAIL("no error; expected one containing: " << expected);
    } catch (const cumulus::Error& e) {
        std::string msg = e.what();
        CAPTURE(msg);
        CHECK(msg.find("bad.safetensors") != std::string::npos);
        CHECK(msg.find(expected) != std::string::npos);
    }
}

void expect_header_error(const std::string& header, const Bytes& data, const std::string& expected) {
    expect_parse_error(make_file(header, data), expected);
}

template <typename T>
std::vector<T> random_values(std::size_t n, std::mt19937& rng) {
    std::vector<T> v(n);
    for (auto& x : v) {
        if constexpr (std::is_floating_point_v<T>) {
            x = static_cast<T>(std::ldexp(double(rng()) - 2147483648.0, -20));
        } else if constexpr (std::is_same_v<T, cumulus::half> || std::is_same_v<T, cumulus::bfloat16>) {
            x = T::from_bits(static_cast<std::uint16_t>(rng()));
        } else {
            std::uint64_t r = std::uint64_t(rng()) << 32 | rng();
            std::memcpy(&x, &r, sizeof(T));
        }
    }
    return v;
}

template <typename T>
Tensor<T> random_tensor(cumulus::Shape s, std::mt19937& rng) {
    Tensor<T> t = Tensor<T>::empty(s);
    if constexpr (std::is_same_v<T, bool>) {  // std::vector<bool> has no data()
        for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = rng() & 1;
    } else {
        auto v = random_values<T>(static_cast<std::size_t>(s.numel()), rng);
        if (!v.empty()) std::memcpy(t.data(), v.data(), t.nbytes());
    }
    return t;
}

std::vector<int> bool_values(const Tensor<bool>& t) {
    std::vector<int> v;
    for (std::int64_t i = 0; i < t.numel(); ++i) v.push_back(t[i]);
    return v;
}

template <typename T>
void check_same(const Tensor<T>& got, const Tensor<T>& want) {
    REQUIRE(got.shape() == want.shape());
    CHECK(std::memcmp(got.data(), want.data(), want.nbytes()) == 0);
}

// A scratch directory removed at the end of the test.
struct TempDir {
    std::filesystem::path path;
    TempDir() {
        static int counter = 0;
        path = std::filesystem::temp_directory_path() /
               ("cumulus_safetensors_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        std::filesystem::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string file(const std::string& name) const { return (path / name).string(); }
};

Bytes read_all(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_all(const std::string& path, const Bytes& b) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// A valid file with tensors of several dtypes, a scalar, an empty tensor and metadata.
SafetensorsFile sample_file() {
    std::mt19937 rng(7);
    SafetensorsFile f;
    f.add("dense/kernel", random_tensor<float>({3, 5}, rng));
    f.add("dense/bias", random_tensor<double>({5}, rng));
    f.add("step", Tensor<std::int64_t>::from_vector({}, {1234}));
    f.add("ids", random_tensor<std::int32_t>({2, 1, 3}, rng));
    f.add("pixels", random_tensor<std::uint8_t>({7}, rng));
    f.add("mask", random_tensor<bool>({4}, rng));
    f.add("half", random_tensor<cumulus::half>({3}, rng));
    f.add("empty", Tensor<float>::zeros({0, 4}));
    f.add("bf", random_tensor<cumulus::bfloat16>({2, 2}, rng));
    f.metadata()["format"] = "cumulus";
    f.metadata()["step"] = "1234";
    return f;
}

// Both files hold the same names in the same order, with equal entries and metadata.
void check_same_file(const SafetensorsFile& a, const SafetensorsFile& b) {
    REQUIRE(a.names() == b.names());
    CHECK(a.metadata() == b.metadata());
    for (const auto& n : a.names()) {
        CAPTURE(n);
        CHECK(a.get(n).dtype == b.get(n).dtype);
        CHECK(a.get(n).shape == b.get(n).shape);
        CHECK(a.get(n).bytes == b.get(n).bytes);
    }
}

using test_util::shell_quote;

}  // namespace

TEST_CASE("safetensors: a 2-element F32 file is laid out byte for byte as the spec says") {
    const std::string json = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    REQUIRE(json.size() == 54);  // padded with 2 spaces to 56
    Bytes expected = {0x38, 0, 0, 0, 0, 0, 0, 0};
    expected.insert(expected.end(), json.begin(), json.end());
    expected.insert(expected.end(), {' ', ' '});
    expected.insert(expected.end(), {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0});  // 1.0f, -2.0f LE
    REQUIRE(expected.size() == 72);

    SafetensorsFile f;
    f.add("x", Tensor<float>::from_vector({2}, {1.0f, -2.0f}));
    CHECK(f.serialize() == expected);

    SafetensorsFile g = parse(expected);
    REQUIRE(g.names() == std::vector<std::string>{"x"});
    CHECK(g.metadata().empty());
    CHECK(g.get("x").dtype == DType::f32);
    CHECK(g.get("x").shape == std::vector<std::int64_t>{2});
    CHECK(g.tensor<float>("x").to_vector() == std::vector<float>{1.0f, -2.0f});
}

TEST_CASE("safetensors: header is compact, metadata first, offsets in add order, padded to 8") {
    SafetensorsFile f;
    f.add("b", Tensor<std::uint8_t>::from_vector({3}, {1, 2, 3}));
    f.add("a", Tensor<double>::from_vector({}, {0.5}));
    f.metadata()["z"] = "1";
    f.metadata()["a"] = "quote\" backslash\\ newline\n";
    std::string h = f.header_json();
    CHECK(h.size() % 8 == 0);
    std::string body = h.substr(0, h.find_last_not_of(' ') + 1);
    CHECK(body == R"({"__metadata__":{"a":"quote\" backslash\\ newline\n","z":"1"},)"
                  R"("b":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},)"
                  R"("a":{"dtype":"F64","shape":[],"data_offsets":[3,11]}})");
    Bytes b = f.serialize();
    CHECK(b.size() == 8 + h.size() + 11);
    CHECK(cumulus::io::detail::read_u64_le(b.data()) == h.size());
}

TEST_CASE("safetensors: every dtype round-trips through memory and through a file") {
    std::mt19937 rng(42);
    const std::vector<cumulus::Shape> shapes = {{1}, {7}, {3, 5}, {2, 3, 4}, {1, 1, 1, 1, 1, 3}};
    SafetensorsFile f;
    std::vector<std::function<void(const SafetensorsFile&)>> checks;
    int id = 0;
    auto add_all = [&](auto tag) {
        using T = decltype(tag);
        for (const auto& s : shapes) {
            std::string name = std::string(cumulus::dtype_name(cumulus::dtype_v<T>)) + "_" + std::to_string(id++);
            Tensor<T> t = random_tensor<T>(s, rng);
            f.add(name, t);
            checks.push_back([name, t](const SafetensorsFile& g) {
                CAPTURE(name);
                check_same(g.tensor<T>(name), t);
                CHECK(g.get(name).dtype == cumulus::dtype_v<T>);
            });
        }
    };
    add_all(float{});
    add_all(double{});
    add_all(std::int32_t{});
    add_all(std::int64_t{});
    add_all(std::uint8_t{});
    add_all(std::int8_t{});
    add_all(bool{});
    add_all(cumulus::half{});
    add_all(cumulus::bfloat16{});

    SUBCASE("memory") {
        SafetensorsFile g = parse(f.serialize());
        check_same_file(f, g);
        for (auto& c : checks) c(g);
        CHECK(g.serialize() == f.serialize());  // deterministic and stable
    }
    SUBCASE("file") {
        TempDir dir;
        std::string path = dir.file("all.safetensors");
        f.save(path);
        CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
        CHECK(read_all(path) == f.serialize());
        SafetensorsFile g = SafetensorsFile::load(path);
        check_same_file(f, g);
        for (auto& c : checks) c(g);
        CHECK(g.source().find(path) != std::string::npos);
    }
}

TEST_CASE("safetensors: half and bfloat16 keep their exact bits") {
    std::vector<cumulus::half> h = {cumulus::half::from_bits(0x3c00), cumulus::half::from_bits(0x7e01),
                                    cumulus::half::from_bits(0x0001), cumulus::half::from_bits(0xfc00)};
    std::vector<cumulus::bfloat16> b = {cumulus::bfloat16::from_bits(0x3f80), cumulus::bfloat16::from_bits(0xffc1),
                                        cumulus::bfloat16::from_bits(0x8000)};
    SafetensorsFile f;
    f.add("h", Tensor<cumulus::half>::from_vector({4}, h));
    f.add("b", Tensor<cumulus::bfloat16>::from_vector({3}, b));
    SafetensorsFile g = parse(f.serialize());
    auto gh = g.tensor<cumulus::half>("h").to_vector();
    auto gb = g.tensor<cumulus::bfloat16>("b").to_vector();
    for (std::size_t i = 0; i < h.size(); ++i) CHECK(gh[i].bits == h[i].bits);
    for (std::size_t i = 0; i < b.size(); ++i) CHECK(gb[i].bits == b[i].bits);
    CHECK(g.get("h").bytes == Bytes{0x00, 0x3c, 0x01, 0x7e, 0x01, 0x00, 0x00, 0xfc});
    CHECK(to_float(g.tensor<cumulus::half>("h").at(0)) == 1.0f);
    CHECK(to_float(g.tensor<cumulus::bfloat16>("b").at(0)) == 1.0f);
}

TEST_CASE("safetensors: scalars and empty tensors") {
    SafetensorsFile f;
    f.add("e0", Tensor<float>::zeros({0}));
    f.add("scalar", Tensor<double>::from_vector({}, {-3.5}));
    f.add("e1", Tensor<std::int64_t>::zeros({3, 0, 2}));
    f.add("e2", DType::u8, {0}, nullptr, 0);
    f.add("last", Tensor<std::int32_t>::from_vector({1}, {9}));
    std::string h = f.header_json();
    CHECK(h.find(R"("e0":{"dtype":"F32","shape":[0],"data_offsets":[0,0]})") != std::string::npos);
    CHECK(h.find(R"("scalar":{"dtype":"F64","shape":[],"data_offsets":[0,8]})") != std::string::npos);
    CHECK(h.find(R"("e1":{"dtype":"I64","shape":[3,0,2],"data_offsets":[8,8]})") != std::string::npos);

    SafetensorsFile g = parse(f.serialize());
    check_same_file(f, g);
    Tensor<double> s = g.tensor<double>("scalar");
    CHECK(s.rank() == 0);
    CHECK(s.numel() == 1);
    CHECK(s.data()[0] == -3.5);
    Tensor<std::int64_t> e = g.tensor<std::int64_t>("e1");
    CHECK(e.shape() == cumulus::Shape{3, 0, 2});
    CHECK(e.numel() == 0);
    CHECK(g.tensor<std::int32_t>("last").to_vector() == std::vector<std::int32_t>{9});

    SafetensorsFile none;  // no tensors at all: "{}" padded to 8
    Bytes b = none.serialize();
    CHECK(b == make_file("{}", {}));
    CHECK(parse(b).names().empty());
}

TEST_CASE("safetensors: metadata round-trips, including unicode and escapes") {
    SafetensorsFile f;
    f.add("w", Tensor<float>::from_vector({1}, {1.0f}));
    f.metadata()["format"] = "pt";
    f.metadata()["note"] = "tab\there \"quoted\" \\ caf\xc3\xa9 \xe2\x9c\x93";
    f.metadata()[""] = "";
    f.metadata()["ctrl"] = std::string("a\x01" "b", 3);
    SafetensorsFile g = parse(f.serialize());
    CHECK(g.metadata() == f.metadata());

    f.metadata()["bad"] = "\xff\xfe";  // not UTF-8: cannot be written as JSON
    CHECK_THROWS_AS(f.serialize(), cumulus::Error);
}

TEST_CASE("safetensors: many names keep their order and are all found") {
    std::mt19937 rng(3);
    SafetensorsFile f;
    std::vector<std::string> order;
    for (int i = 0; i < 1000; ++i) {
        std::string name = "layer_" + std::to_string(rng() % 100000) + "_" + std::to_string(i) + "/kernel";
        order.push_back(name);
        f.add(name, Tensor<std::int32_t>::from_vector({2}, {i, -i}));
    }
    CHECK(f.names() == order);
    SafetensorsFile g = parse(f.serialize());
    CHECK(g.names() == order);
    CHECK(g.size() == 1000);
    for (int i = 0; i < 1000; i += 37) {
        CHECK(g.contains(order[i]));
        CHECK(g.tensor<std::int32_t>(order[i]).to_vector() == std::vector<std::int32_t>{i, -i});
    }
    CHECK_FALSE(g.contains("layer_x"));
}

TEST_CASE("safetensors: headers written by others (spaces, any key order) are read; order follows the data") {
    // As Python's json.dumps writes: spaces, metadata last, keys not in offset order.
    std::string h = R"({"b": {"shape": [2], "data_offsets": [8, 16], "dtype": "I32"},)"
                    "\n"
                    R"( "a": {"dtype": "F32", "data_offsets": [0, 8], "shape": [1, 2]}, "__metadata__": {"k": "v"}})";
    Bytes data = {0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff};
    for (std::size_t pad : {1, 8, 64}) {
        SafetensorsFile f = parse(make_file(h, data, pad));
        CHECK(f.names() == std::vector<std::string>{"a", "b"});
        CHECK(f.metadata() == std::map<std::string, std::string>{{"k", "v"}});
        CHECK(f.tensor<float>("a").to_vector() == std::vector<float>{1.0f, 2.0f});
        CHECK(f.tensor<float>("a").shape() == cumulus::Shape{1, 2});
        CHECK(f.tensor<std::int32_t>("b").to_vector() == std::vector<std::int32_t>{1, -2});
    }
    // "-0" is an integer zero to JSON; a zero-size tensor may sit between others.
    SafetensorsFile g = parse(make_file(
        R"({"z":{"dtype":"U8","shape":[-0],"data_offsets":[1,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
        R"("c":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
        {5, 6}));
    CHECK(g.names() == std::vector<std::string>{"a", "z", "c"});
}

TEST_CASE("safetensors: API misuse gives clear errors") {
    SafetensorsFile f = sample_file();
    SUBCASE("missing name lists the available ones") {
        try {
            f.get("dense/kernle");
            FAIL("no error");
        } catch (const cumulus::Error& e) {
            std::string msg = e.what();
            CHECK(msg.find("dense/kernle") != std::string::npos);
            CHECK(msg.find("'dense/kernel'") != std::string::npos);
            CHECK(msg.find("'mask'") != std::string::npos);
        }
    }
    SUBCASE("wrong dtype") {
        CHECK_THROWS_WITH_AS(f.tensor<double>("dense/kernel"), doctest::Contains("holds F32, expected F64"),
                             cumulus::Error);
        CHECK_THROWS_AS(f.tensor<std::uint8_t>("mask"), cumulus::Error);
    }
    SUBCASE("bad add") {
        float x[2] = {1, 2};
        CHECK_THROWS_WITH_AS(f.add("step", DType::f32, {2}, x, 8), doctest::Contains("added twice"), cumulus::Error);
        CHECK_THROWS_AS(f.add("__metadata__", DType::f32, {2}, x, 8), cumulus::Error);
        CHECK_THROWS_WITH_AS(f.add("n", DType::f32, {3}, x, 8), doctest::Contains("needs 12 bytes, got 8"),
                             cumulus::Error);
        CHECK_THROWS_AS(f.add("n", DType::f32, {-1, -2}, x, 8), cumulus::Error);
        CHECK_THROWS_AS(f.add("n", DType::f32, {1LL << 62, 1LL << 62}, x, 8), cumulus::Error);
        CHECK_THROWS_AS(f.add("n", DType::f32, {2}, nullptr, 8), cumulus::Error);
        CHECK_THROWS_AS(f.add("n", Tensor<float>()), cumulus::Error);
        CHECK_FALSE(f.contains("n"));
    }
    SUBCASE("rank above what a cumulus Tensor holds") {
        SafetensorsFile g;
        std::uint8_t one = 1;
        g.add("deep", DType::u8, std::vector<std::int64_t>(7, 1), &one, 1);
        SafetensorsFile h = parse(g.serialize());
        CHECK(h.get("deep").shape.size() == 7);
        CHECK_THROWS_WITH_AS(h.tensor<std::uint8_t>("deep"), doctest::Contains("rank 7"), cumulus::Error);
    }
    SUBCASE("BOOL bytes other than 0 and 1") {
        SafetensorsFile g = parse(make_file(R"({"m":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})", {1, 0, 2}));
        CHECK(g.get("m").bytes == Bytes{1, 0, 2});
        CHECK_THROWS_WITH_AS(g.tensor<bool>("m"), doctest::Contains("element 2 is 2"), cumulus::Error);
    }
}

TEST_CASE("safetensors: malformed files are rejected with errors naming the file and the problem") {
    const Bytes d8 = zeros(8);
    SUBCASE("truncated length field") {
        for (std::size_t n = 0; n < 8; ++n) expect_parse_error(Bytes(n, 0), "expected at least 8");
    }
    SUBCASE("header length larger than the file") {
        Bytes b = make_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", d8);
        Bytes c = b;
        c[0] = static_cast<std::uint8_t>(b.size() - 8 + 1);
        expect_parse_error(c, "exceeds the 64 bytes after the length field");
        c = b;
        for (int i = 0; i < 8; ++i) c[i] = 0xff;
        expect_parse_error(c, "exceeds the limit of 100000000");
        c = b;
        c.resize(40);  // the header itself cut short
        expect_parse_error(c, "exceeds the 32 bytes");
    }
    SUBCASE("header not JSON") {
        expect_header_error("{not json}", {}, "not valid JSON");
        expect_header_error(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", d8, "not valid JSON");
        expect_header_error("", {}, "not valid JSON");
        expect_parse_error(Bytes(8, 0), "not valid JSON");  // N = 0
        expect_header_error("{\"\xff\":1}", {}, "not valid JSON");  // not UTF-8
        expect_header_error(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}} junk)", {1}, "not valid JSON");
        expect_header_error(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})" + std::string(2, '\0'), {1},
                            "not valid JSON");  // padding must be spaces
    }
    SUBCASE("JSON that is not an object") {
        expect_header_error("[]", {}, "header is a JSON array, expected an object");
        expect_header_error("42", {}, "header is a JSON number, expected an object");
        expect_header_error("\"x\"", {}, "header is a JSON string, expected an object");
        expect_header_error("null", {}, "header is a JSON null, expected an object");
        expect_header_error(R"({"x":[1,2]})", {}, "tensor 'x': entry is a JSON array, expected an object");
    }
    SUBCASE("unknown or unsupported dtype") {
        expect_header_error(R"({"x":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", d8,
                            "unsupported dtype 'F33'");
        expect_header_error(R"({"x":{"dtype":"I16","shape":[4],"data_offsets":[0,8]}})", d8,
                            "unsupported dtype 'I16'");
        expect_header_error(R"({"x":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", d8,
                            "unsupported dtype 'f32'");
        expect_header_error(R"({"x":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", d8,
                            "dtype is a JSON number, expected a string");
    }
    SUBCASE("missing and unexpected keys") {
        expect_header_error(R"({"x":{"dtype":"F32","shape":[2]}})", d8, "missing key 'data_offsets'");
        expect_header_error(R"({"x":{"shape":[2],"data_offsets":[0,8]}})", d8, "missing key 'dtype'");
        expect_header_error(R"({"x":{"dtype":"F32","data_offsets":[0,8]}})", d8, "missing key 'shape'");
        expect_header_error(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}})", d8,
                            "unexpected key 'extra'");
    }
    SUBCASE("shape and offsets disagree") {
        expect_header_error(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8,
                            "needs 12 bytes, data_offsets [0, 8] hold 8");
        expect_header_error(R"({"x":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}})", d8, "needs 16 bytes");
        expect_header_error(R"({"x":{"dtype":"F32","shape":[],"data_offsets":[0,8]}})", d8, "needs 4 bytes");
        expect_header_error(R"({"x":{"dtype":"F32","shape":[2,0],"data_offsets":[0,8]}})", d8, "needs 0 bytes");
    }
    SUBCASE("bad shapes") {
        expect_header_error(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d8,
                            "negative extent -2");
        expect_header_error(R"({"x":{"dtype":"F32","shape":[-1,-2],"data_offsets":[0,8]}})", d8, "negative extent");
        expect_header_error(R"({"x":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", d8,
                            "expected non-negative integers");
        expect_header_error(R"({"x":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", d8,
                            "expected non-negative integers");
        expect_header_error(R"({"x":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", d8, "expected an array");
        expect_header_error(R"({"x":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,8]}})", d8,
                            "beyond 2^63-1");
        expect_header_error(R"({"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", d8,
                            "overflows");
        expect_header_error(R"({"x":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]}})", d8,
                            "overflows");  // 2^61 elements * 8 bytes = 2^64
        expect_header_error(R"({"x":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]}})", d8,
                            "expected non-negative integers");  // beyond u64: JSON reads it as a float
        std::string ones = "1";
        for (int i = 1; i < 65; ++i) ones += ",1";
        expect_header_error(R"({"x":{"dtype":"U8","shape":[)" + ones + R"(],"data_offsets":[0,1]}})", {1},
                            "longer than 64 elements");
    }
    SUBCASE("bad data_offsets") {
        expect_header_error(R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", d8,
                            "reach past the data buffer of 8 bytes");
        expect_header_error(R"({"x":{"dtype":"F32","shape":[0],"data_offsets":[9,9]}})", d8, "reach past");
        expect_header_error(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", d8, "end before they begin");
        expect_header_error(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}})", d8,
                            "expected [begin, end]");
        expect_header_error(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[-1,8]}})", d8,
                            "expected [begin, end]");
        expect_header_error(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0.0,8]}})", d8,
                            "expected [begin, end]");
        expect_header_error(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":"0-8"}})", d8,
                            "expected [begin, end]");
        expect_header_error(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551615,8]}})", d8,
                            "end before they begin");
    }
    SUBCASE("overlapping offsets") {
        expect_header_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                            zeros(12), "tensor 'b' data_offsets [4, 12] overlap tensor 'a' [0, 8]");
        expect_header_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                            d8, "overlap");
        expect_header_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
                            d8, "overlap");
    }
    SUBCASE("holes and uncovered bytes") {
        expect_header_error(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                            R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                            zeros(12), "hole in the data buffer: tensor 'b' begins at byte 8, expected 4");
        expect_header_error(R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8,
                            "begins at byte 4, expected 0");
        expect_header_error(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", d8,
                            "cover 4 bytes of the data buffer, expected all 8");
        expect_header_error("{}", {1}, "cover 0 bytes");
    }
    SUBCASE("duplicate keys") {
        expect_header_error(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                            R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                            {1, 2}, "duplicate tensor name 'a'");
        expect_header_error(R"({"a":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}})", {1},
                            "duplicate key 'dtype'");
        expect_header_error(R"({"__metadata__":{"k":"1","k":"2"}})", {}, "duplicate key 'k'");
    }
    SUBCASE("bad metadata") {
        expect_header_error(R"({"__metadata__":[]})", {}, "\"__metadata__\" is a JSON array");
        expect_header_error(R"({"__metadata__":{"k":1}})", {}, "metadata value of 'k' is a JSON number");
        expect_header_error(R"({"__metadata__":{"k":{"a":"b"}}})", {}, "metadata value of 'k' is a JSON object");
    }
    SUBCASE("deep nesting") {
        expect_header_error(std::string(100000, '['), {}, "header is a JSON array, expected an object");
        expect_header_error(R"({"x":{"dtype":"U8","shape":[[1]],"data_offsets":[0,1]}})", {1},
                            "shape holds a JSON array");
        expect_header_error(R"({"__metadata__":{"k":)" + std::string(100000, '['), {},
                            "metadata value of 'k' is a JSON array");
        expect_header_error(R"({"x":{"dtype":"U8","shape":[1],"data_offsets":[0,[1]]}})", {1},
                            "expected [begin, end]");
    }
}

TEST_CASE("safetensors: mutated files give an Error or a consistent file, never a crash") {
    const Bytes base = sample_file().serialize();
    const std::uint64_t hlen = cumulus::io::detail::read_u64_le(base.data());
    const char interesting[] = "\"{}[],:-0123456789 eE.\\\xff\x80";
    std::mt19937 rng(2024);
    auto pick = [&](std::size_t n) { return n ? rng() % n : 0; };
    auto pos_in_header = [&](const Bytes& b) { return 8 + pick(std::min<std::size_t>(hlen, b.size() - 8)); };
    auto set_len = [](Bytes& b, std::uint64_t v) {
        for (int i = 0; i < 8; ++i) b[i] = static_cast<std::uint8_t>(v >> (8 * i));
    };

    int ok = 0, rejected = 0;
    for (int iter = 0; iter < 8000; ++iter) {
        Bytes b = base;
        int rounds = 1 + static_cast<int>(rng() % 3);
        for (int r = 0; r < rounds && b.size() > 8; ++r) {
            switch (rng() % 8) {
                case 0: b[pick(b.size())] ^= static_cast<std::uint8_t>(1u << (rng() % 8)); break;
                case 1: b[pos_in_header(b)] = interesting[pick(sizeof(interesting) - 1)]; break;
                case 2: b.resize(pick(b.size())); break;
                case 3: set_len(b, hlen + pick(17) - 8); break;
                case 4: {  // change one digit: shapes and offsets
                    std::size_t p = pos_in_header(b);
                    for (std::size_t q = p; q < 8 + hlen && q < b.size(); ++q)
                        if (b[q] >= '0' && b[q] <= '9') {
                            b[q] = static_cast<std::uint8_t>('0' + rng() % 10);
                            break;
                        }
                    break;
                }
                case 5: {  // delete a header byte and fix the length field
                    b.erase(b.begin() + static_cast<std::ptrdiff_t>(pos_in_header(b)));
                    set_len(b, cumulus::io::detail::read_u64_le(b.data()) - 1);
                    break;
                }
                case 6: {  // insert a header byte and fix the length field
                    b.insert(b.begin() + static_cast<std::ptrdiff_t>(pos_in_header(b)),
                             static_cast<std::uint8_t>(interesting[pick(sizeof(interesting) - 1)]));
                    set_len(b, cumulus::io::detail::read_u64_le(b.data()) + 1);
                    break;
                }
                case 7: b.push_back(static_cast<std::uint8_t>(rng())); break;
            }
        }
        try {
            SafetensorsFile f = parse(b, "mutant");
            ++ok;
            // What was accepted is self-consistent and round-trips.
            std::uint64_t total = 0;
            for (const auto& n : f.names()) {
                const auto& e = f.get(n);
                std::uint64_t want = 0;
                REQUIRE(cumulus::io::detail::safetensors_byte_size(e.shape, cumulus::dtype_size(e.dtype), want));
                REQUIRE(want == e.bytes.size());
                total += want;
                try {
                    switch (e.dtype) {
                        case DType::f32: f.tensor<float>(n); break;
                        case DType::f64: f.tensor<double>(n); break;
                        case DType::i64: f.tensor<std::int64_t>(n); break;
                        case DType::boolean: f.tensor<bool>(n); break;
                        default: f.tensor<std::uint8_t>(n); break;  // an Error unless the dtype is U8
                    }
                } catch (const cumulus::Error&) {
                }
            }
            REQUIRE(total + 8 + cumulus::io::detail::read_u64_le(b.data()) == b.size());
            SafetensorsFile g = parse(f.serialize());
            check_same_file(f, g);
        } catch (const cumulus::Error& e) {
            ++rejected;
            REQUIRE(std::string(e.what()).find("mutant") != std::string::npos);
        }
    }
    MESSAGE("mutants accepted: " << ok << ", rejected: " << rejected);
    CHECK(ok > 0);
    CHECK(rejected > 0);
}

TEST_CASE("safetensors: load() agrees with parse() on mutated files") {
    const Bytes base = sample_file().serialize();
    const std::uint64_t hlen = cumulus::io::detail::read_u64_le(base.data());
    std::mt19937 rng(99);
    TempDir dir;
    std::string path = dir.file("mutant.safetensors");
    for (int iter = 0; iter < 300; ++iter) {
        Bytes b = base;
        if (iter % 2) b.resize(rng() % b.size());
        else b[8 + rng() % hlen] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
        write_all(path, b);
        bool parsed_ok = true, loaded_ok = true;
        SafetensorsFile p, l;
        try { p = parse(b); } catch (const cumulus::Error&) { parsed_ok = false; }
        try { l = SafetensorsFile::load(path); } catch (const cumulus::Error&) { loaded_ok = false; }
        REQUIRE(parsed_ok == loaded_ok);
        if (parsed_ok) check_same_file(p, l);
    }
}

TEST_CASE("safetensors: files on disk: atomic replace and errors naming the path") {
    TempDir dir;
    std::string path = dir.file("ckpt.safetensors");
    SafetensorsFile a = sample_file();
    a.save(path);
    SafetensorsFile b;
    b.add("only", Tensor<float>::from_vector({1}, {2.0f}));
    b.save(path);  // replaces
    CHECK(SafetensorsFile::load(path).names() == std::vector<std::string>{"only"});
    CHECK_FALSE(std::filesystem::exists(path + ".tmp"));

    std::string missing = dir.file("no/such/dir/x.safetensors");
    CHECK_THROWS_WITH_AS(b.save(missing), doctest::Contains((missing + ".tmp").c_str()), cumulus::Error);
    CHECK_THROWS_WITH_AS(b.save(missing), doctest::Contains("No such file or directory"), cumulus::Error);
    CHECK_THROWS_WITH_AS(SafetensorsFile::load(dir.file("absent.safetensors")),
                         doctest::Contains("absent.safetensors"), cumulus::Error);
    CHECK_THROWS_WITH_AS(SafetensorsFile::load(dir.path.string()), doctest::Contains("not a regular file"),
                         cumulus::Error);
    CHECK_THROWS_WITH_AS(cumulus::io::write_file_atomic(missing, "x", 1), doctest::Contains(missing.c_str()),
                         cumulus::Error);

    // A file cut short on disk: its data buffer no longer holds the tensors.
    Bytes full = a.serialize();
    full.resize(full.size() - 3);
    write_all(path, full);
    CHECK_THROWS_WITH_AS(SafetensorsFile::load(path), doctest::Contains(path.c_str()), cumulus::Error);

    cumulus::io::write_file_atomic(path, "abc", 3);
    CHECK(read_all(path) == Bytes{'a', 'b', 'c'});
    CHECK_THROWS_WITH_AS(SafetensorsFile::load(path), doctest::Contains("expected at least 8"), cumulus::Error);
}

// An independent reader and writer: numpy + json by hand (tests/io/safetensors_interop.py).
TEST_CASE("safetensors: interop with a numpy reader and writer") {
    // The first python with numpy (test_util::find_python: CUMULUS_PYTHON, .venv, python3 on PATH, /usr/bin).
    std::string tried;
    const std::string py = test_util::find_python("numpy", &tried);
    if (py.empty()) {
        MESSAGE("skipped: no python3 with numpy (tried " << tried << "; set CUMULUS_PYTHON to choose one)");
        return;
    }
    const std::string script = std::string(CUMULUS_SOURCE_DIR) + "/tests/io/safetensors_interop.py";
    TempDir dir;

    SUBCASE("numpy reads what cumulus writes") {
        std::mt19937 rng(11);
        SafetensorsFile f;
        f.add("f32", random_tensor<float>({3, 5}, rng));
        f.add("f64", random_tensor<double>({2, 2, 3}, rng));
        f.add("i32", random_tensor<std::int32_t>({7}, rng));
        f.add("i64", random_tensor<std::int64_t>({2, 3}, rng));
        f.add("u8", random_tensor<std::uint8_t>({4, 4}, rng));
        f.add("i8", random_tensor<std::int8_t>({5}, rng));
        f.add("bool", random_tensor<bool>({6}, rng));
        f.add("f16", Tensor<cumulus::half>::from_vector(
                         {4}, {cumulus::half::from_bits(0x3c00), cumulus::half::from_bits(0xc000),
                               cumulus::half::from_bits(0x0001), cumulus::half::from_bits(0x7bff)}));
        f.add("bf16", Tensor<cumulus::bfloat16>::from_vector({3}, {cumulus::to_bfloat16(1.5f),
                                                                   cumulus::to_bfloat16(-3.0e10f),
                                                                   cumulus::to_bfloat16(1e-30f)}));
        f.add("scalar", Tensor<float>::from_vector({}, {0.25f}));
        f.add("empty", Tensor<double>::zeros({0, 3}));
        f.add("caf\xc3\xa9/w", Tensor<float>::from_vector({1}, {7.0f}));
        f.metadata()["format"] = "cumulus";
        f.metadata()["quote\"d"] = "line\nbreak";
        std::string in = dir.file("from_cumulus.safetensors"), out = dir.file("seen_by_numpy.json");
        f.save(in);
        std::string cmd = shell_quote(py) + " " + shell_quote(script) + " read " + shell_quote(in) + " " +
                          shell_quote(out);
        REQUIRE(std::system(cmd.c_str()) == 0);

        std::ifstream js(out);
        nlohmann::json j = nlohmann::json::parse(js);
        CHECK(j["metadata"] == nlohmann::json(f.metadata()));
        CHECK(j["order"].get<std::vector<std::string>>() == f.names());
        for (const auto& n : f.names()) {
            CAPTURE(n);
            const auto& e = f.get(n);
            const auto& t = j["tensors"][n];
            CHECK(t["dtype"] == std::string(cumulus::io::safetensors_dtype_name(e.dtype)));
            CHECK(t["shape"].get<std::vector<std::int64_t>>() == e.shape);
            const auto& v = t["values"];
            auto expect_values = [&](auto tag, auto to_json) {
                using T = decltype(tag);
                Tensor<T> t = f.tensor<T>(n);
                REQUIRE(v.size() == static_cast<std::size_t>(t.numel()));
                for (std::int64_t i = 0; i < t.numel(); ++i) CHECK(v[i] == to_json(t[i]));
            };
            auto same = [](auto x) { return nlohmann::json(x); };
            auto wide = [](auto x) { return nlohmann::json(static_cast<double>(to_float(x))); };
            switch (e.dtype) {
                case DType::f32: expect_values(float{}, [](float x) { return nlohmann::json(double(x)); }); break;
                case DType::f64: expect_values(double{}, same); break;
                case DType::i32: expect_values(std::int32_t{}, same); break;
                case DType::i64: expect_values(std::int64_t{}, same); break;
                case DType::u8: expect_values(std::uint8_t{}, same); break;
                case DType::i8: expect_values(std::int8_t{}, same); break;
                case DType::boolean: expect_values(bool{}, same); break;
                case DType::f16: expect_values(cumulus::half{}, wide); break;
                case DType::bf16: expect_values(cumulus::bfloat16{}, wide); break;
            }
        }
    }

    SUBCASE("cumulus reads what numpy writes (laid out as the reference implementation does)") {
        std::string path = dir.file("from_numpy.safetensors");
        std::string cmd = shell_quote(py) + " " + shell_quote(script) + " write " + shell_quote(path);
        REQUIRE(std::system(cmd.c_str()) == 0);
        SafetensorsFile f = SafetensorsFile::load(path);
        CHECK(f.metadata() == std::map<std::string, std::string>{{"format", "np"}, {"writer", "numpy"}});
        CHECK(f.size() == 11);

        auto w = f.tensor<float>("w_f32");
        REQUIRE(w.shape() == cumulus::Shape{2, 3, 4});
        for (int i = 0; i < 24; ++i) CHECK(w[i] == float(i) / 8 - 1);
        auto b = f.tensor<double>("b_f64");
        REQUIRE(b.shape() == cumulus::Shape{5});
        for (int i = 0; i < 5; ++i) CHECK(b[i] == (i - 2) * 0.1);
        CHECK(f.tensor<std::int64_t>("i_i64").to_vector() ==
              std::vector<std::int64_t>{-(1LL << 62), -1, 0, 1, 1LL << 62});
        auto i32 = f.tensor<std::int32_t>("i_i32");
        CHECK(i32.shape() == cumulus::Shape{7, 1});
        CHECK(i32.to_vector() == std::vector<std::int32_t>{-3, -2, -1, 0, 1, 2, 3});
        auto u8 = f.tensor<std::uint8_t>("u8");
        REQUIRE(u8.shape() == cumulus::Shape{16, 16});
        for (int i = 0; i < 256; ++i) CHECK(u8[i] == i);
        auto i8 = f.tensor<std::int8_t>("i8");
        REQUIRE(i8.numel() == 256);
        for (int i = 0; i < 256; ++i) CHECK(i8[i] == i - 128);
        auto h = f.tensor<cumulus::half>("h_f16").to_vector();
        std::vector<float> hf = {1.0f, -2.0f, 0.5f, 65504.0f, std::ldexp(1.0f, -24)};
        REQUIRE(h.size() == hf.size());
        for (std::size_t i = 0; i < h.size(); ++i) CHECK(to_float(h[i]) == hf[i]);
        auto bf = f.tensor<cumulus::bfloat16>("bf16").to_vector();
        std::vector<float> bff = {1.0f, -3.5f, std::ldexp(1.0f, -100)};
        REQUIRE(bf.size() == bff.size());
        for (std::size_t i = 0; i < bf.size(); ++i) CHECK(to_float(bf[i]) == bff[i]);
        CHECK(bool_values(f.tensor<bool>("mask")) == std::vector<int>{1, 0, 1});
        auto s = f.tensor<float>("scalar");
        CHECK(s.rank() == 0);
        CHECK(s[0] == 3.25f);
        CHECK(f.tensor<float>("empty").shape() == cumulus::Shape{0, 3});
    }
}
