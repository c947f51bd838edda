// The numpy-pickle reader and writer: hand-assembled opcodes, pickles numpy
// wrote (embedded below, so no Python is needed), every malformed input
// rejected with cumulus::Error, the real files in shared/data/mnist-pkl
// (including the end-to-end MNIST accuracy the book prints), round trips,
// and a deterministic mutation loop.
#include <doctest/doctest.h>

#include "../test_util.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <unistd.h>

#include <cumulus/core/tensor.hpp>
#include <cumulus/data/idx.hpp>
#include <cumulus/data/pickle.hpp>
#include <cumulus/io/file.hpp>
#include <cumulus/io/gzip.hpp>

using namespace std::string_view_literals;
using cumulus::Error;
using cumulus::Tensor;
namespace pk = cumulus::data::pickle;
namespace fs = std::filesystem;
using pk::Value;
using Bytes = std::vector<std::uint8_t>;

namespace {

using test_util::TempDir;
using test_util::contains;
using test_util::error_of;

const std::string kPklDir = std::string(CUMULUS_TEST_DATA_DIR) + "/mnist-pkl/";

Value load_sv(std::string_view b, const pk::LoadOptions& o = {}, pk::LoadInfo* info = nullptr) {
    return pk::loads(reinterpret_cast<const std::uint8_t*>(b.data()), b.size(), "t.pkl", o, info);
}

Bytes bytes_of(std::string_view s) { return Bytes(s.begin(), s.end()); }
std::string_view view_of(const Bytes& b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

// String literals keep their embedded NULs: "\x00" counts.
template <std::size_t N>
Value load_sv(const char (&b)[N], const pk::LoadOptions& o = {}, pk::LoadInfo* info = nullptr) {
    return load_sv(std::string_view(b, N - 1), o, info);
}

std::string operator""_b(const char* p, std::size_t n) { return std::string(p, n); }

// Loading `b` must throw cumulus::Error naming the file, a byte offset and every part.
void expect_error(std::string_view b, std::initializer_list<std::string_view> parts, const pk::LoadOptions& o = {}) {
    std::string msg;
    try {
        Value v = load_sv(b, o);
        FAIL("no error; loaded " << v.repr());
    } catch (const Error& e) {
        msg = e.what();
    }
    CAPTURE(msg);
    CHECK(contains(msg, "t.pkl: "));
    CHECK(contains(msg, "byte offset"));
    for (auto p : parts) CHECK_MESSAGE(contains(msg, p), "missing: " << p);
}

template <std::size_t N>
void expect_error(const char (&b)[N], std::initializer_list<std::string_view> parts, const pk::LoadOptions& o = {}) {
    expect_error(std::string_view(b, N - 1), parts, o);
}

std::string s(const Value& v) { return v.as_str(); }

// The object pickled below by numpy 1.24 at protocols 0, 2, 4 and 5:
//   {'a': np.arange(6, dtype='>i2').reshape(2, 3),
//    'f': np.asfortranarray(np.arange(6, dtype='<f4').reshape(2, 3)),
//    'l': [1, -2, 2.5, None, True, 'x\u00e9', b'\x00\xff', 70000, -2**40],
//    't': (np.float32(1.5), np.array(7, dtype='<u2')),
//    's': {3}}
// pickle.dumps(obj, protocol=0) with numpy 1.24.2: 938 bytes
constexpr std::string_view kNumpyP0 =
    "(dp0\x0aVa\x0ap1\x0a""cnumpy.core.multiarray\x0a_reconstruct\x0ap2\x0a(cnumpy\x0andarray\x0ap3\x0a"
    "(I0\x0atp4\x0a""c_codecs\x0a""encode\x0ap5\x0a(Vb\x0ap6\x0aVlatin1\x0ap7\x0atp8\x0aRp9\x0atp10\x0a"
    "Rp11\x0a(I1\x0a(I2\x0aI3\x0atp12\x0a""cnumpy\x0a""dtype\x0ap13\x0a(Vi2\x0ap14\x0aI00\x0aI01\x0at"
    "p15\x0aRp16\x0a(I3\x0aV>\x0ap17\x0aNNNI-1\x0aI-1\x0aI0\x0atp18\x0a""bI00\x0ag5\x0a(V\x5cu0000\x5c"
    "u0000\x5cu0000\x01\x5cu0000\x02\x5cu0000\x03\x5cu0000\x04\x5cu0000\x05\x0ap19\x0ag7\x0atp20\x0aR"
    "p21\x0atp22\x0a""bsVf\x0ap23\x0ag2\x0a(g3\x0a(I0\x0atp24\x0ag9\x0atp25\x0aRp26\x0a(I1\x0a(I2\x0a"
    "I3\x0atp27\x0ag13\x0a(Vf4\x0ap28\x0aI00\x0aI01\x0atp29\x0aRp30\x0a(I3\x0aV<\x0ap31\x0aNNNI-1\x0a"
    "I-1\x0aI0\x0atp32\x0a""bI01\x0ag5\x0a(V\x5cu0000\x5cu0000\x5cu0000\x5cu0000\x5cu0000\x5cu0000@@\x5c"
    "u0000\x5cu0000\x80\x3f\x5cu0000\x5cu0000\x80@\x5cu0000\x5cu0000\x5cu0000@\x5cu0000\x5cu0000\xa0@"
    "\x0ap33\x0ag7\x0atp34\x0aRp35\x0atp36\x0a""bsVl\x0ap37\x0a(lp38\x0aI1\x0a""aI-2\x0a""aF2.5\x0a""a"
    "NaI01\x0a""aVx\xe9\x0ap39\x0a""ag5\x0a(V\x5cu0000\xff\x0ap40\x0ag7\x0atp41\x0aRp42\x0a""aI70000\x0a"
    "aL-1099511627776L\x0a""asVt\x0ap43\x0a(cnumpy.core.multiarray\x0ascalar\x0ap44\x0a(g30\x0ag5\x0a"
    "(V\x5cu0000\x5cu0000\xc0\x3f\x0ap45\x0ag7\x0atp46\x0aRp47\x0atp48\x0aRp49\x0ag2\x0a(g3\x0a(I0\x0a"
    "tp50\x0ag9\x0atp51\x0aRp52\x0a(I1\x0a(tg13\x0a(Vu2\x0ap53\x0aI00\x0aI01\x0atp54\x0aRp55\x0a(I3\x0a"
    "g31\x0aNNNI-1\x0aI-1\x0aI0\x0atp56\x0a""bI00\x0ag5\x0a(V\x07\x5cu0000\x0ap57\x0ag7\x0atp58\x0aRp"
    "59\x0atp60\x0a""btp61\x0asVs\x0ap62\x0a""c__builtin__\x0aset\x0ap63\x0a((lp64\x0aI3\x0a""atp65\x0a"
    "Rp66\x0as."sv;

// pickle.dumps(obj, protocol=2) with numpy 1.24.2: 640 bytes
constexpr std::string_view kNumpyP2 =
    "\x80\x02}q\x00(X\x01\x00\x00\x00""aq\x01""cnumpy.core.multiarray\x0a_reconstruct\x0aq\x02""cnump"
    "y\x0andarray\x0aq\x03K\x00\x85q\x04""c_codecs\x0a""encode\x0aq\x05X\x01\x00\x00\x00""bq\x06X\x06"
    "\x00\x00\x00latin1q\x07\x86q\x08Rq\x09\x87q\x0aRq\x0b(K\x01K\x02K\x03\x86q\x0c""cnumpy\x0a""dtyp"
    "e\x0aq\x0dX\x02\x00\x00\x00i2q\x0e\x89\x88\x87q\x0fRq\x10(K\x03X\x01\x00\x00\x00>q\x11NNNJ\xff\xff"
    "\xff\xffJ\xff\xff\xff\xffK\x00tq\x12""b\x89h\x05X\x0c\x00\x00\x00\x00\x00\x00\x01\x00\x02\x00\x03"
    "\x00\x04\x00\x05q\x13h\x07\x86q\x14Rq\x15tq\x16""bX\x01\x00\x00\x00""fq\x17h\x02h\x03K\x00\x85q\x18"
    "h\x09\x87q\x19Rq\x1a(K\x01K\x02K\x03\x86q\x1bh\x0dX\x02\x00\x00\x00""f4q\x1c\x89\x88\x87q\x1dRq\x1e"
    "(K\x03X\x01\x00\x00\x00<q\x1fNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq b\x88h\x05X\x1b\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00@@\x00\x00\xc2\x80\x3f\x00\x00\xc2\x80@\x00\x00\x00@\x00\x00\xc2\xa0"
    "@q!h\x07\x86q\x22Rq#tq$bX\x01\x00\x00\x00lq%]q&(K\x01J\xfe\xff\xff\xffG@\x04\x00\x00\x00\x00\x00"
    "\x00N\x88X\x03\x00\x00\x00x\xc3\xa9q'h\x05X\x03\x00\x00\x00\x00\xc3\xbfq(h\x07\x86q)Rq*Jp\x11\x01"
    "\x00\x8a\x06\x00\x00\x00\x00\x00\xff""eX\x01\x00\x00\x00tq+cnumpy.core.multiarray\x0ascalar\x0aq"
    ",h\x1eh\x05X\x05\x00\x00\x00\x00\x00\xc3\x80\x3fq-h\x07\x86q.Rq/\x86q0Rq1h\x02h\x03K\x00\x85q2h\x09"
    "\x87q3Rq4(K\x01)h\x0dX\x02\x00\x00\x00u2q5\x89\x88\x87q6Rq7(K\x03h\x1fNNNJ\xff\xff\xff\xffJ\xff\xff"
    "\xff\xffK\x00tq8b\x89h\x05X\x02\x00\x00\x00\x07\x00q9h\x07\x86q:Rq;tq<b\x86q=X\x01\x00\x00\x00sq"
    ">c__builtin__\x0aset\x0aq\x3f]q@K\x03""a\x85qARqBu."sv;

// pickle.dumps(obj, protocol=4) with numpy 1.24.2: 420 bytes
constexpr std::string_view kNumpyP4 =
    "\x80\x04\x95\x99\x01\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01""a\x94\x8c\x15numpy.core.multiarray\x94"
    "\x8c\x0c_reconstruct\x94\x93\x94\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94K\x00\x85\x94""C\x01"
    "b\x94\x87\x94R\x94(K\x01K\x02K\x03\x86\x94h\x05\x8c\x05""dtype\x94\x93\x94\x8c\x02i2\x94\x89\x88"
    "\x87\x94R\x94(K\x03\x8c\x01>\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94""b\x89""C\x0c\x00"
    "\x00\x00\x01\x00\x02\x00\x03\x00\x04\x00\x05\x94t\x94""b\x8c\x01""f\x94h\x04h\x07K\x00\x85\x94h\x09"
    "\x87\x94R\x94(K\x01K\x02K\x03\x86\x94h\x0e\x8c\x02""f4\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94"
    "NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94""b\x88""C\x18\x00\x00\x00\x00\x00\x00@@\x00\x00\x80"
    "\x3f\x00\x00\x80@\x00\x00\x00@\x00\x00\xa0@\x94t\x94""b\x8c\x01l\x94]\x94(K\x01J\xfe\xff\xff\xff"
    "G@\x04\x00\x00\x00\x00\x00\x00N\x88\x8c\x03x\xc3\xa9\x94""C\x02\x00\xff\x94Jp\x11\x01\x00\x8a\x06"
    "\x00\x00\x00\x00\x00\xff""e\x8c\x01t\x94h\x02\x8c\x06scalar\x94\x93\x94h\x1d""C\x04\x00\x00\xc0\x3f"
    "\x94\x86\x94R\x94h\x04h\x07K\x00\x85\x94h\x09\x87\x94R\x94(K\x01)h\x0e\x8c\x02u2\x94\x89\x88\x87"
    "\x94R\x94(K\x03h\x1eNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94""b\x89""C\x02\x07\x00\x94t\x94"
    "b\x86\x94\x8c\x01s\x94\x8f\x94(K\x03\x90u."sv;

// pickle.dumps(obj, protocol=5) with numpy 1.24.2: 413 bytes
constexpr std::string_view kNumpyP5 =
    "\x80\x05\x95\x92\x01\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01""a\x94\x8c\x12numpy.core.numeric\x94\x8c"
    "\x0b_frombuffer\x94\x93\x94(\x96\x0c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x02\x00\x03"
    "\x00\x04\x00\x05\x94\x8c\x05numpy\x94\x8c\x05""dtype\x94\x93\x94\x8c\x02i2\x94\x89\x88\x87\x94R\x94"
    "(K\x03\x8c\x01>\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94""bK\x02K\x03\x86\x94\x8c\x01""C"
    "\x94t\x94R\x94\x8c\x01""f\x94h\x04(\x96\x18\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00@"
    "@\x00\x00\x80\x3f\x00\x00\x80@\x00\x00\x00@\x00\x00\xa0@\x94h\x08\x8c\x02""f4\x94\x89\x88\x87\x94"
    "R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94""bK\x02K\x03\x86\x94\x8c"
    "\x01""F\x94t\x94R\x94\x8c\x01l\x94]\x94(K\x01J\xfe\xff\xff\xffG@\x04\x00\x00\x00\x00\x00\x00N\x88"
    "\x8c\x03x\xc3\xa9\x94""C\x02\x00\xff\x94Jp\x11\x01\x00\x8a\x06\x00\x00\x00\x00\x00\xff""e\x8c\x01"
    "t\x94\x8c\x15numpy.core.multiarray\x94\x8c\x06scalar\x94\x93\x94h\x16""C\x04\x00\x00\xc0\x3f\x94"
    "\x86\x94R\x94h\x04(\x96\x02\x00\x00\x00\x00\x00\x00\x00\x07\x00\x94h\x08\x8c\x02u2\x94\x89\x88\x87"
    "\x94R\x94(K\x03h\x17NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94""b)h\x0ft\x94R\x94\x86\x94\x8c"
    "\x01s\x94\x8f\x94(K\x03\x90u."sv;

// Checks a load of the object above; 'a' keeps the file's big-endian order.
void check_numpy_object(const Value& v) {
    REQUIRE(v.type() == Value::Type::dict);
    REQUIRE(v.size() == 5);
    const pk::Dict& d = v.as_dict();
    CHECK(s(d[0].first) == "a");
    CHECK(s(d[1].first) == "f");
    CHECK(s(d[2].first) == "l");
    CHECK(s(d[3].first) == "t");
    CHECK(s(d[4].first) == "s");

    const pk::Array& a = v.at("a").as_array();
    CHECK(a.dtype.str() == ">i2");
    CHECK(a.shape == std::vector<std::int64_t>{2, 3});
    CHECK_FALSE(a.fortran_order);
    CHECK(a.data == Bytes{0, 0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5});
    CHECK(v.at("a").to_tensor<std::int16_t>().to_vector() == std::vector<std::int16_t>{0, 1, 2, 3, 4, 5});

    const pk::Array& f = v.at("f").as_array();
    CHECK(f.dtype.str() == "<f4");
    CHECK(f.fortran_order);
    CHECK(f.to_vector<float>() == std::vector<float>{0, 1, 2, 3, 4, 5});
    Tensor<double> fd = v.at("f").to_tensor<double>();
    CHECK(fd.at(1, 0) == 3.0);

    const auto& l = v.at("l").as_list();
    REQUIRE(l.size() == 9);
    CHECK(l[0].as_int() == 1);
    CHECK(l[1].as_int() == -2);
    CHECK(l[2].as_float() == 2.5);
    CHECK(l[3].is_none());
    CHECK(l[4].as_bool());
    CHECK(l[5].as_str() == "x\xc3\xa9");
    CHECK(l[6].as_bytes() == Bytes{0x00, 0xff});
    CHECK(l[7].as_int() == 70000);
    CHECK(l[8].as_int() == -(std::int64_t{1} << 40));

    const auto& t = v.at("t").as_tuple();
    REQUIRE(t.size() == 2);
    CHECK(t[0].as_array().scalar);
    CHECK(t[0].as_array().to_vector<float>() == std::vector<float>{1.5f});
    CHECK_FALSE(t[1].as_array().scalar);
    CHECK(t[1].as_array().shape.empty());
    CHECK(t[1].as_array().dtype.str() == "<u2");
    CHECK(t[1].to_tensor<std::int32_t>().to_vector() == std::vector<std::int32_t>{7});

    CHECK(v.at("s").type() == Value::Type::set);
    REQUIRE(v.at("s").as_set().size() == 1);
    CHECK(v.at("s").as_set()[0].as_int() == 3);
}

// A value using every kind the writer knows.
Value rich_value() {
    std::vector<Value> arrays;
    arrays.push_back(pk::make_array<float>({2, 3}, {1.5f, -2, 0, 3, 4, 1e30f}));
    arrays.push_back(pk::make_array<double>({3}, {NAN, -INFINITY, -0.0}));
    arrays.push_back(pk::make_array<std::int8_t>({4}, {-128, 127, 0, -1}));
    arrays.push_back(pk::make_array<std::int16_t>({2}, {-32768, 32767}));
    arrays.push_back(pk::make_array<std::int32_t>({1, 2}, {INT32_MIN, INT32_MAX}));
    arrays.push_back(pk::make_array<std::int64_t>({2}, {INT64_MIN, INT64_MAX}));
    arrays.push_back(pk::make_array<std::uint8_t>({0, 3}, {}));
    arrays.push_back(pk::make_array<std::uint16_t>({2}, {0, 65535}));
    arrays.push_back(pk::make_array<std::uint32_t>({2}, {0, UINT32_MAX}));
    arrays.push_back(pk::make_array<std::uint64_t>({2}, {0, UINT64_MAX}));
    arrays.push_back(pk::make_array<cumulus::half>({2}, {cumulus::half::from_bits(0x3c00), cumulus::half::from_bits(0xfc00)}));
    Tensor<bool> flags = Tensor<bool>::empty({3});
    flags[0] = true, flags[1] = false, flags[2] = true;
    arrays.push_back(pk::make_array(flags));
    pk::Array big_endian;  // '>f8' in Fortran order
    big_endian.dtype = pk::ArrayDType::make('f', 8, '>');
    big_endian.shape = {2, 2};
    big_endian.fortran_order = true;
    for (double x : {1.0, 2.0, 3.0, 4.0}) {
        std::uint64_t bits;
        std::memcpy(&bits, &x, 8);
        for (int i = 7; i >= 0; --i) big_endian.data.push_back(static_cast<std::uint8_t>(bits >> (8 * i)));
    }
    arrays.push_back(Value::array(big_endian));
    pk::Array scalar;
    scalar.dtype = pk::array_dtype<float>();
    scalar.scalar = true;
    scalar.data = {0, 0, 0xc0, 0x3f};
    arrays.push_back(Value::array(scalar));
    pk::Array zero_d;
    zero_d.dtype = pk::array_dtype<std::int64_t>();
    zero_d.data.assign(8, 0xff);
    arrays.push_back(Value::array(zero_d));
    std::vector<float> many(20000);
    for (std::size_t i = 0; i < many.size(); ++i) many[i] = float(i % 251);
    arrays.push_back(pk::make_array<float>({20000}, many));  // 80 KB: outside the 64 KiB frames

    std::vector<Value> long_list;
    for (int i = 0; i < 2500; ++i) long_list.push_back(Value::integer(std::int64_t{i} * 1000003));
    pk::Dict big_dict;
    for (int i = 0; i < 1100; ++i) big_dict.emplace_back(Value::str(std::to_string(i)), Value::integer(-i));

    pk::Dict d;
    d.emplace_back(Value::str("arrays"), Value::list(std::move(arrays)));
    d.emplace_back(Value::str("scalars"),
                   Value::tuple({Value::none(), Value::boolean(true), Value::boolean(false), Value::integer(0),
                                 Value::integer(255), Value::integer(256), Value::integer(65535), Value::integer(65536),
                                 Value::integer(-1), Value::integer(INT32_MIN), Value::integer(INT64_MIN),
                                 Value::integer(INT64_MAX), Value::integer(std::int64_t{1} << 40),
                                 Value::floating(0.1), Value::floating(-0.0), Value::floating(INFINITY),
                                 Value::floating(NAN)}));
    d.emplace_back(Value::str("strings"), Value::list({Value::str(""), Value::str("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
                                                        Value::str(std::string(300, 'x')), Value::bytes(""),
                                                        Value::bytes("\x00\xff\x80"sv),
                                                        Value::bytes(std::string(70000, '\x81'))}));
    d.emplace_back(Value::integer(7), Value::str("int key"));
    d.emplace_back(Value::tuple({Value::integer(1), Value::str("k")}), Value::tuple({}));
    d.emplace_back(Value::none(), Value::tuple({Value::integer(1)}));
    d.emplace_back(Value::str("sets"), Value::tuple({Value::set({Value::integer(1), Value::str("two")}),
                                                     Value::set({}), Value::set({Value::bytes("x"sv)}, true)}));
    d.emplace_back(Value::str("nested"),
                   Value::list({Value::list({Value::list({Value::dict({{Value::str("deep"), Value::list({})}})})}),
                                Value::tuple({Value::tuple({Value::tuple({Value::tuple({Value::none()})})})})}));
    d.emplace_back(Value::str("long_list"), Value::list(std::move(long_list)));
    d.emplace_back(Value::str("big_dict"), Value::dict(std::move(big_dict)));
    return Value::dict(std::move(d));
}

// Deterministic mutations of `seed`: each load must succeed or throw
// cumulus::Error, and whatever loads must survive dumps + loads unchanged.
void mutate_and_load(const Bytes& seed, int rounds, std::uint32_t rng_seed) {
    std::mt19937 rng(rng_seed);
    pk::LoadOptions o;
    o.max_alloc_bytes = std::size_t{64} << 20;
    int loaded = 0, errors = 0;
    static constexpr std::uint8_t interesting[] = {0x00, 0x01, 0x7f, 0x80, 0xff, '(', '.', 't', 'q', 'h', 0x94, 0x95};
    for (int r = 0; r < rounds; ++r) {
        Bytes b = seed;
        const int edits = 1 + int(rng() % 4);
        for (int e = 0; e < edits && !b.empty(); ++e) {
            const std::size_t at = rng() % b.size();
            switch (rng() % 6) {
                case 0: b[at] ^= static_cast<std::uint8_t>(1u << (rng() % 8)); break;
                case 1: b[at] = interesting[rng() % sizeof interesting]; break;
                case 2: b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), static_cast<std::uint8_t>(rng())); break;
                case 3: b.erase(b.begin() + static_cast<std::ptrdiff_t>(at)); break;
                case 4: b.resize(at); break;
                case 5:  // a length-like field set to something huge
                    for (std::size_t i = at; i < b.size() && i < at + 4; ++i) b[i] = 0xff;
                    break;
            }
        }
        try {
            Value v = pk::loads(b, "mutant.pkl", o);
            ++loaded;
            for (int proto : {2, 4}) {
                Value again = pk::loads(pk::dumps(v, proto), "again.pkl", o);
                if (!(again == v)) FAIL_CHECK("round trip changed a mutant at round " << r << ": " << v.repr());
            }
        } catch (const Error&) {
            ++errors;
        }
    }
    MESSAGE(rounds << " mutants: " << loaded << " loaded, " << errors << " rejected");
    CHECK(loaded + errors == rounds);
}

}  // namespace

// ================================================================ scalars and strings

TEST_CASE("pickle: every scalar opcode") {
    pk::LoadInfo info;
    CHECK(load_sv("N."sv, {}, &info).is_none());
    CHECK(info.protocol == 0);
    CHECK(load_sv("\x80\x02\x88."sv, {}, &info).as_bool());
    CHECK(info.protocol == 2);
    CHECK_FALSE(load_sv("\x89."sv, {}, &info).as_bool());
    CHECK(info.protocol == 1);  // a binary opcode without PROTO
    CHECK(load_sv("I01\n."sv).as_bool());  // Python 2's True
    CHECK_FALSE(load_sv("I00\n."sv).as_bool());
    CHECK(load_sv("I-7\n."sv).as_int() == -7);
    CHECK(load_sv("I9223372036854775807\n."sv).as_int() == INT64_MAX);
    CHECK(load_sv("L-123L\n."sv).as_int() == -123);
    CHECK(load_sv("L5\n."sv).as_int() == 5);
    CHECK(load_sv("J\xfe\xff\xff\xff."sv).as_int() == -2);
    CHECK(load_sv("K\xff."sv).as_int() == 255);
    CHECK(load_sv("M\x01\x02."sv).as_int() == 0x0201);
    CHECK(load_sv("\x8a\x00."sv).as_int() == 0);
    CHECK(load_sv("\x8a\x01\xff."sv).as_int() == -1);
    CHECK(load_sv("\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f."sv).as_int() == INT64_MAX);
    CHECK(load_sv("\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80."sv).as_int() == INT64_MIN);
    CHECK(load_sv("\x8a\x09\xfe\xff\xff\xff\xff\xff\xff\xff\xff."sv).as_int() == -2);  // redundant sign byte
    CHECK(load_sv("\x8b\x02\x00\x00\x00\x00\x01."sv).as_int() == 256);
    CHECK(load_sv("F1.5\n."sv).as_float() == 1.5);
    CHECK(load_sv("F-2.5e-3\n."sv).as_float() == -2.5e-3);
    CHECK(std::isinf(load_sv("Finf\n."sv).as_float()));
    CHECK(std::isnan(load_sv("Fnan\n."sv).as_float()));
    CHECK(std::isinf(load_sv("F1e999\n."sv).as_float()));
    CHECK(load_sv("G\x3f\xf8\x00\x00\x00\x00\x00\x00."sv).as_float() == 1.5);  // big-endian
    CHECK(std::signbit(load_sv("G\x80\x00\x00\x00\x00\x00\x00\x00."sv).as_float()));
}

TEST_CASE("pickle: str and bytes opcodes") {
    CHECK(s(load_sv("X\x05\x00\x00\x00""caf\xc3\xa9."sv)) == "caf\xc3\xa9");
    CHECK(s(load_sv("\x8c\x02hi."sv)) == "hi");
    CHECK(s(load_sv("\x8d\x01\x00\x00\x00\x00\x00\x00\x00z."sv)) == "z");
    CHECK(s(load_sv("X\x03\x00\x00\x00\xed\xa0\x80."sv)) == "\xed\xa0\x80");  // a lone surrogate, as surrogatepass
    CHECK(s(load_sv("Vcaf\xe9 \\u20ac\\\\u0041 \\U0001F600\n."sv)) == "caf\xc3\xa9 \xe2\x82\xac\\\\u0041 \xf0\x9f\x98\x80");
    CHECK(load_sv("B\x02\x00\x00\x00\x00\xff."sv).as_bytes() == Bytes{0x00, 0xff});
    CHECK(load_sv("C\x00."sv).as_bytes().empty());
    CHECK(load_sv("\x8e\x01\x00\x00\x00\x00\x00\x00\x00\x80."sv).as_bytes() == Bytes{0x80});
    CHECK(load_sv("\x96\x01\x00\x00\x00\x00\x00\x00\x00\x07."sv).as_bytes() == Bytes{0x07});  // bytearray
    CHECK(load_sv("\x96\x01\x00\x00\x00\x00\x00\x00\x00\x07\x98."sv).as_bytes() == Bytes{0x07});  // READONLY_BUFFER

    // Python 2 str: STRING, BINSTRING, SHORT_BINSTRING, by LoadOptions::encoding.
    pk::LoadOptions latin1, as_bytes;
    latin1.encoding = pk::Encoding::latin1;
    as_bytes.encoding = pk::Encoding::bytes;
    CHECK(s(load_sv("U\x02hi."sv)) == "hi");  // ASCII loads as str by default
    CHECK(s(load_sv("U\x02\xe9\xff."sv, latin1)) == "\xc3\xa9\xc3\xbf");
    CHECK(load_sv("U\x02\xe9\xff."sv, as_bytes).as_bytes() == Bytes{0xe9, 0xff});
    CHECK(s(load_sv("T\x01\x00\x00\x00\xe9."sv, latin1)) == "\xc3\xa9");
    CHECK(s(load_sv("S'a\\'b\\x41\\101\\n\\q'\n."sv)) == "a'bAA\n\\q");
    CHECK(s(load_sv("S\"dq\"\n."sv)) == "dq");
    CHECK(load_sv("S'\\xe9'\n."sv, as_bytes).as_bytes() == Bytes{0xe9});
    expect_error("U\x02\xe9\xff."sv, {"non-ASCII byte 0xe9", "Encoding::latin1", "SHORT_BINSTRING", "offset 0"});
    expect_error("S'\\xe9'\n."sv, {"non-ASCII", "STRING"});
}

// ================================================================ containers and the memo

TEST_CASE("pickle: container opcodes") {
    CHECK(load_sv(")."sv).as_tuple().empty());
    CHECK(load_sv("(K\x01K\x02t."sv).repr() == "(1, 2)");
    CHECK(load_sv("K\x01\x85."sv).repr() == "(1,)");
    CHECK(load_sv("K\x01K\x02\x86."sv).repr() == "(1, 2)");
    CHECK(load_sv("K\x01K\x02K\x03\x87."sv).repr() == "(1, 2, 3)");
    CHECK(load_sv("]K\x01""a(K\x02K\x03""e."sv).repr() == "[1, 2, 3]");
    CHECK(load_sv("(I1\nI2\nl."sv).repr() == "[1, 2]");
    CHECK(load_sv("}K\x01K\x02s(K\x03K\x04K\x05K\x06u."sv).repr() == "{1: 2, 3: 4, 5: 6}");
    CHECK(load_sv("(S'a'\nI1\nd."sv).repr() == "{'a': 1}");
    CHECK(load_sv("\x8f(K\x01K\x02\x90."sv).repr() == "{1, 2}");
    CHECK(load_sv("(K\x01\x91."sv).repr() == "frozenset({1})");
    CHECK(load_sv("\x80\x02""c__builtin__\nset\n]K\x01""a\x85R."sv).repr() == "{1}");
    CHECK(load_sv("\x80\x03""cbuiltins\nfrozenset\n)R."sv).repr() == "frozenset({})");
    CHECK(load_sv("\x80\x02""ccollections\nOrderedDict\n)R(K\x02K\x03u."sv).repr() == "{2: 3}");
    CHECK(load_sv("\x80\x02""c__builtin__\nbytes\n)R."sv).as_bytes().empty());
    CHECK(load_sv("\x80\x02""c__builtin__\nbytearray\nX\x02\x00\x00\x00\xc3\xa9X\x07\x00\x00\x00latin-1\x86R."sv)
              .as_bytes() == Bytes{0xe9});
    CHECK(load_sv("\x80\x02""c_codecs\nencode\nX\x04\x00\x00\x00\xc3\xbf\xc2\x80X\x06\x00\x00\x00latin1\x86R."sv)
              .as_bytes() == Bytes{0xff, 0x80});  // formats.md's example

    // Dict keys compare as in Python: 1 == 1.0 == True; the first key stays, the last value wins.
    Value d = load_sv("}(K\x01X\x01\x00\x00\x00""aG\x3f\xf0\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00""b\x88X\x01\x00\x00\x00""cu."sv);
    CHECK(d.repr() == "{1: 'c'}");
    CHECK(s(d.at(Value::floating(1.0))) == "c");
    CHECK(load_sv("\x8f(K\x01K\x01G\x3f\xf0\x00\x00\x00\x00\x00\x00\x90."sv).repr() == "{1}");
    CHECK(load_sv("}(K\x01K\x01K\x01\x85K\x02K\x01\x85K\x03u."sv).repr() == "{1: 1, (1,): 3}");
}

TEST_CASE("pickle: memo, DUP, POP and marks behave as in Python") {
    // A list memoized empty and filled later: the GET sees the items.
    CHECK(load_sv("\x80\x02](]q\x01(K\x01K\x02""eh\x01""e."sv).repr() == "[[1, 2], [1, 2]]");
    CHECK(load_sv("]p0\nI1\nag0\n0."sv).repr() == "[1]");  // PUT/GET text, POP
    CHECK(load_sv("]r\x00\x00\x01\x00K\x05""aj\x00\x00\x01\x00""0."sv).repr() == "[5]");  // LONG_BINPUT/LONG_BINGET
    CHECK(load_sv("\x80\x04]\x94K\x07""ah\x00\x30."sv).repr() == "[7]");  // MEMOIZE
    CHECK(load_sv("K\x05\x32\x86."sv).repr() == "(5, 5)");  // DUP
    CHECK(load_sv("K\x01(K\x02K\x03\x31."sv).as_int() == 1);  // POP_MARK
    CHECK(load_sv("K\x01(0."sv).as_int() == 1);  // POP of a MARK discards it, as CPython does
    // An ndarray memoized before its BUILD is seen built through the memo.
    Value arr = load_sv(
        "\x80\x02""cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85""C\x01""b\x87Rq\x05"
        "(K\x01K\x02\x85""cnumpy\ndtype\nX\x02\x00\x00\x00u1\x89\x88\x87R(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xff"
        "J\xff\xff\xff\xffK\x00tb\x89""C\x02\x07\x08tb0h\x05."sv);
    CHECK(arr.as_array().data == Bytes{7, 8});
}

TEST_CASE("pickle: FRAME follows Python's rules") {
    CHECK(load_sv("\x80\x04\x95\x03\x00\x00\x00\x00\x00\x00\x00K\x05.").as_int() == 5);
    // A large payload outside the frame that ends just before it.
    CHECK(load_sv("\x80\x04\x95\x01\x00\x00\x00\x00\x00\x00\x00]C\x02""ab\x85\x95\x02\x00\x00\x00\x00\x00\x00\x00""a."sv)
              .repr() == "[(b'ab',)]");
    expect_error("\x80\x04\x95\x02\x00\x00\x00\x00\x00\x00\x00J\x01\x00\x00\x00."sv,
                 {"pickle exhausted before end of frame", "BININT"});
    expect_error("\x80\x04\x95\x0a\x00\x00\x00\x00\x00\x00\x00\x95\x00\x00\x00\x00\x00\x00\x00\x00N."sv,
                 {"new frame begins before the end", "FRAME", "offset 11"});
    expect_error("\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\xffN."sv, {"frame of 18446744073709551615 bytes exceeds"});
}

// ================================================================ numpy arrays

TEST_CASE("pickle: numpy pickles of protocols 0, 2, 4 and 5") {
    const std::pair<std::string_view, int> vectors[] = {{kNumpyP0, 0}, {kNumpyP2, 2}, {kNumpyP4, 4}, {kNumpyP5, 5}};
    CHECK(kNumpyP0.size() == 938);
    for (const auto& vec : vectors) {
        const std::string_view bytes = vec.first;
        const int proto = vec.second;  // not a structured binding: CAPTURE's lambda takes it
        CAPTURE(proto);
        pk::LoadInfo info;
        Value v = load_sv(bytes, {}, &info);
        CHECK(info.protocol == proto);
        CHECK_FALSE(info.gzipped);
        check_numpy_object(v);
        Bytes z = cumulus::io::gzip_compress(bytes_of(bytes));
        Value vz = pk::loads(z, "t.pkl.gz", {}, &info);
        CHECK(info.gzipped);
        CHECK(vz == v);
    }
}

TEST_CASE("pickle: array forms numpy writes: numpy 2 names, _frombuffer, dtype state versions, Python 2") {
    // numpy 2 module names; dtype args as 0/1 ints; a 4-item state without the version.
    Value a = load_sv(
        "\x80\x02""cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01""b\x87R"
        "(K\x02K\x02\x86""cnumpy\ndtype\nU\x02i4K\x00K\x01\x87R(K\x03U\x01>NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        "\x88U\x10\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00\x04tb."sv);
    CHECK(a.as_array().dtype.str() == ">i4");
    CHECK(a.as_array().fortran_order);
    // Column-major [1 2; 3 4] stored as 1, 3, 2, 4: here 1, 2, 3, 4 in F order is [[1, 3], [2, 4]].
    CHECK(a.to_tensor<std::int32_t>().to_vector() == std::vector<std::int32_t>{1, 3, 2, 4});

    // Protocol 5 in-band: _frombuffer(bytearray, dtype, shape, 'F'); dtype state version 4 (metadata).
    Value b = load_sv(
        "\x80\x05\x8c\x13numpy._core.numeric\x8c\x0b_frombuffer\x93(\x96\x06\x00\x00\x00\x00\x00\x00\x00"
        "\x01\x02\x03\x04\x05\x06\x8c\x05numpy\x8c\x05""dtype\x93\x8c\x02u1\x89\x88\x87R"
        "(K\x04\x8c\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00}tbK\x02K\x03\x86\x8c\x01""Ft\x94R."sv);
    CHECK(b.as_array().fortran_order);
    CHECK(b.as_array().shape == std::vector<std::int64_t>{2, 3});
    CHECK(b.to_tensor<std::uint8_t>().to_vector() == std::vector<std::uint8_t>{1, 3, 5, 2, 4, 6});

    // A numpy scalar: numpy.core.multiarray.scalar(dtype, bytes), here float16 1.0.
    Value c = load_sv(
        "\x80\x03""cnumpy.core.multiarray\nscalar\ncnumpy\ndtype\nX\x02\x00\x00\x00""f2\x89\x88\x87R"
        "(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbC\x02\x00\x3c\x86R."sv);
    CHECK(c.as_array().scalar);
    CHECK(c.type_name() == "numpy scalar");
    CHECK(c.to_tensor<float>().to_vector() == std::vector<float>{1.0f});

    // Python 2 (BINSTRING array data, latin-1 as numpy's own encoding='latin1' does).
    const auto py2 =
        "\x80\x02""cnumpy.core.multiarray\n_reconstruct\nq\x01""cnumpy\nndarray\nq\x02K\x00\x85q\x03U\x01""bq\x04\x87q\x05Rq\x06"
        "(K\x01K\x02\x85q\x07""cnumpy\ndtype\nq\x08U\x02""f4q\tK\x00K\x01\x87q\nRq\x0b(K\x03U\x01<q\x0cNNNJ\xff\xff\xff\xff"
        "J\xff\xff\xff\xffK\x00tq\rb\x89T\x08\x00\x00\x00\x00\x00\xc0\x3f\x00\x00\x80\xbfq\x0etq\x0f""b."sv;
    pk::LoadOptions latin1, as_bytes;
    latin1.encoding = pk::Encoding::latin1;
    as_bytes.encoding = pk::Encoding::bytes;
    CHECK(load_sv(py2, latin1).as_array().to_vector<float>() == std::vector<float>{1.5f, -1.0f});
    CHECK(load_sv(py2, as_bytes).as_array().to_vector<float>() == std::vector<float>{1.5f, -1.0f});
    expect_error(py2, {"non-ASCII byte 0xc0", "BINSTRING"});

    // Empty arrays: _reconstruct's empty array with no BUILD, and a built (0, 3) one.
    Value e = load_sv("\x80\x02""cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85""C\x01""b\x87R."sv);
    CHECK(e.as_array().dtype.name() == "int8");
    CHECK(e.as_array().shape == std::vector<std::int64_t>{0});
    CHECK(e.to_tensor<float>().numel() == 0);
}

TEST_CASE("pickle: Array conversion: byte order, Fortran order, dtypes, exactness") {
    pk::Array a;
    a.dtype = pk::ArrayDType::make('f', 8, '>');
    a.shape = {2, 3, 2};
    a.fortran_order = true;
    for (int i = 0; i < 12; ++i) {  // F order: element (i, j, k) holds i + 10 j + 100 k
        const int i0 = i % 2, j = (i / 2) % 3, k = i / 6;
        const double x = i0 + 10 * j + 100 * k;
        std::uint64_t bits;
        std::memcpy(&bits, &x, 8);
        for (int b = 7; b >= 0; --b) a.data.push_back(static_cast<std::uint8_t>(bits >> (8 * b)));
    }
    Tensor<float> t = a.to_tensor<float>();
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j)
            for (int k = 0; k < 2; ++k) CHECK(t.at(i, j, k) == float(i + 10 * j + 100 * k));
    CHECK(a.to_vector<std::int64_t>()[1] == 100);  // C order: (0, 0, 1)
    CHECK(a.to_tensor<std::uint8_t>().at(1, 2, 0) == 21);
    CHECK(a.to_tensor<std::int8_t>().at(1, 2, 1) == 121);
    pk::Array wide = pk::make_array<double>({2}, {1, 200}).as_array();
    CHECK(contains(error_of([&] { wide.to_tensor<std::int8_t>("W"); }),
                   "W: element 1 (200.000000) of float64 data cannot be converted exactly"));
    CHECK(a.describe() == "float64 (>f8) (2, 3, 2) Fortran order");

    pk::Array h;
    h.dtype = pk::ArrayDType::make('f', 4);
    h.shape = {6};
    for (float x : {1.0f, 65504.0f, 65520.0f, 1e-8f, -2.5f, 5.9604645e-8f}) {
        std::uint8_t b[4];
        std::memcpy(b, &x, 4);
        h.data.insert(h.data.end(), b, b + 4);
    }
    std::vector<std::uint16_t> bits;
    for (auto x : h.to_vector<cumulus::half>()) bits.push_back(x.bits);
    CHECK(bits == std::vector<std::uint16_t>{0x3c00, 0x7bff, 0x7c00, 0x0000, 0xc100, 0x0001});

    pk::Array flags;
    flags.dtype = pk::ArrayDType::make('b', 1);
    flags.shape = {3};
    flags.data = {0, 1, 2};  // numpy reads any non-zero byte as True
    CHECK(flags.to_vector<int>().size() == 3);
    CHECK(flags.to_vector<std::int32_t>() == std::vector<std::int32_t>{0, 1, 1});
    Tensor<bool> tb = flags.to_tensor<bool>();
    CHECK((!tb[0] && tb[1] && tb[2]));
    pk::Array ints = pk::make_array<std::int32_t>({3}, {0, 1, 2}).as_array();
    CHECK(contains(error_of([&] { ints.to_tensor<bool>(); }), "element 2 (2) of int32"));
    pk::Array u64 = pk::make_array<std::uint64_t>({1}, {UINT64_MAX}).as_array();
    CHECK(contains(error_of([&] { u64.to_vector<std::int64_t>(); }), "cannot be converted exactly"));
    CHECK(u64.to_vector<double>()[0] == 18446744073709551616.0);

    pk::Array bad = ints;
    bad.data.pop_back();
    CHECK(contains(error_of([&] { bad.validate("x"); }), "x: int32 (3,) needs 12 data bytes, found 11"));
    pk::Array deep;
    deep.dtype = pk::array_dtype<float>();
    deep.shape = {1, 1, 1, 1, 1, 1, 1};
    deep.data.assign(4, 0);
    CHECK(contains(error_of([&] { deep.to_tensor<float>(); }), "rank 7 exceeds the Tensor maximum rank 6"));
}

// ================================================================ accessors

TEST_CASE("pickle: accessors name the path and both types") {
    Value v = load_sv("\x80\x02](]K\x01\x85}X\x01\x00\x00\x00wK\x02se."sv);  // [[], (1,), {'w': 2}]
    CHECK(error_of([&] { v.at(0).as_tuple(); }) == "pickle: expected a tuple at root[0], found list");
    CHECK(v.at(1).at(0).as_int() == 1);
    CHECK(v.at(2).at("w").as_int() == 2);
    CHECK(v.at(2).contains("w"));
    CHECK(v.at(2).find("x") == nullptr);
    CHECK(v.at(2).at(Value::str("w")).as_int() == 2);
    CHECK(contains(error_of([&] { v.at(2).at("x"); }), "key 'x' not found in the dict at root[2] (keys: 'w')"));
    CHECK(contains(error_of([&] { v.at(7); }), "index 7 out of range for the list of 3 elements at root"));
    CHECK(contains(error_of([&] { v.at(2).at("w").as_str(); }), "expected a str at root[2]['w'], found int"));
    CHECK(contains(error_of([&] { v.at(1).to_tensor<float>(); }), "expected a numpy array at root[1], found tuple"));
    CHECK(contains(error_of([&] { v.as_dict(); }), "expected a dict at root, found list"));
    CHECK(v.size() == 3);
    CHECK(v.ref("weights.pkl").at(0).path() == "weights.pkl[0]");
}

// ================================================================ malformed input

TEST_CASE("pickle: malformed pickles are errors naming the opcode and offset") {
    expect_error(""sv, {"without a STOP opcode"});
    expect_error("\x80\x02"sv, {"ends at byte offset 2 without a STOP"});
    expect_error("\xff."sv, {"unknown opcode 0xff", "offset 0"});
    expect_error("\x80\x06N."sv, {"unsupported pickle protocol 6", "PROTO"});
    expect_error("N.."sv, {"1 bytes of trailing data after STOP"});
    expect_error("NN."sv, {"STOP leaves 1 object(s)"});
    expect_error("(N."sv, {"STOP leaves 0 object(s) and 1 MARK(s)"});
    // Stack underflow and MARK misuse.
    expect_error("."sv, {"stack underflow", "STOP"});
    expect_error("0."sv, {"stack underflow", "POP"});
    expect_error("2."sv, {"stack underflow", "DUP"});
    expect_error("K\x01\x86."sv, {"stack underflow", "TUPLE2", "offset 2"});
    expect_error("K\x01(\x85."sv, {"no object above the last MARK", "TUPLE1"});
    expect_error("K\x01t."sv, {"no MARK to pop", "TUPLE"});
    expect_error("]K\x01""e."sv, {"no MARK to pop", "APPENDS"});
    expect_error("(K\x01""e."sv, {"stack underflow", "APPENDS"});
    expect_error("K\x01""a."sv, {"stack underflow", "APPEND"});
    expect_error("K\x01K\x02""a."sv, {"APPEND to a int", "expected a list"});
    expect_error("}K\x01s."sv, {"stack underflow", "SETITEM"});
    expect_error("}(K\x01u."sv, {"odd number (1)", "SETITEMS"});
    expect_error("(K\x01""d."sv, {"odd number", "DICT"});
    expect_error("]K\x01K\x02s."sv, {"SETITEM on a list"});
    expect_error("]\x90."sv, {"no MARK to pop", "ADDITEMS"});
    expect_error("1."sv, {"no MARK to pop", "POP_MARK"});
    // The memo.
    expect_error("h\x00."sv, {"memo key 0 not found", "BINGET"});
    expect_error("j\x01\x00\x00\x00."sv, {"memo key 1 not found", "LONG_BINGET"});
    expect_error("g12\n."sv, {"memo key 12 not found", "GET"});
    expect_error("q\x00."sv, {"stack underflow", "BINPUT"});
    expect_error("Np-1\n."sv, {"bad memo index '-1'", "PUT"});
    // Values.
    expect_error("Ix\n."sv, {"bad integer literal 'x'", "INT"});
    expect_error("I99999999999999999999\n."sv, {"does not fit in int64", "INT"});
    expect_error("\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00."sv, {"integer of 9 bytes does not fit in int64", "LONG1"});
    expect_error("\x8b\xff\xff\xff\xff."sv, {"negative byte count", "LONG4"});
    expect_error("F1.5x\n."sv, {"bad float literal", "FLOAT"});
    expect_error("Sabc\n."sv, {"must be quoted", "STRING"});
    expect_error("S'\\x4'\n."sv, {"invalid \\x escape"});
    expect_error("V\\u12\n."sv, {"truncated \\u escape", "UNICODE"});
    expect_error("X\x02\x00\x00\x00\xc3\x28."sv, {"invalid UTF-8 in a str at byte 0", "BINUNICODE"});
    expect_error("\x8c\x02\xc0\x80."sv, {"invalid UTF-8", "SHORT_BINUNICODE"});  // overlong
    expect_error("T\xff\xff\xff\xff."sv, {"negative byte count", "BINSTRING"});
    // Opcodes that would run code or need outside help.
    expect_error("\x97."sv, {"out-of-band buffer", "NEXT_BUFFER"});
    expect_error("P1\n."sv, {"persistent IDs", "PERSID"});
    expect_error("(i__main__\nC\n."sv, {"INST/OBJ", "INST"});
    expect_error("\x82\x01."sv, {"extension registry", "EXT1"});
    expect_error("N)}\x92."sv, {"NEWOBJ_EX"});
    expect_error("K\x01)R."sv, {"REDUCE's callable must be a global, found int", "REDUCE"});
    expect_error("]K\x01""b."sv, {"BUILD on a list is not supported", "BUILD"});
    expect_error("\x80\x02""c__builtin__\nset\nK\x01R."sv, {"REDUCE's arguments must be a tuple, found int"});
    expect_error("\x80\x02""c__builtin__\nset\n]]a\x85R."sv, {"unhashable list used as a set element"});
    expect_error("}]K\x01s."sv, {"unhashable list used as a dict key", "SETITEM"});
    expect_error("}]\x85K\x01s."sv, {"unhashable tuple used as a dict key"});
}

TEST_CASE("pickle: only allow-listed globals, named with their offset") {
    expect_error("cos\nsystem\n(S'echo hi'\ntR."sv, {"global 'os.system' is not allowed", "GLOBAL at byte offset 0"});
    expect_error("\x80\x04\x8c\x08""builtins\x8c\x04""eval\x93."sv,
                 {"global 'builtins.eval' is not allowed", "STACK_GLOBAL at byte offset 18"});
    expect_error("\x80\x02""c__builtin__\ngetattr\n."sv, {"'__builtin__.getattr' is not allowed"});
    expect_error("\x80\x02""cposix\nsystem\n."sv, {"'posix.system'"});
    expect_error("\x80\x02""cnumpy\nload\n."sv, {"'numpy.load' is not allowed"});
    expect_error("\x80\x02""ccopy_reg\n_reconstructor\n."sv, {"'copy_reg._reconstructor' is not allowed"});
    expect_error("\x80\x02""cnumpy.core.multiarray\n_reconstruct\nc__builtin__\nlist\n."sv, {"'__builtin__.list'"});
    expect_error("\x80\x04K\x01K\x02\x93."sv, {"STACK_GLOBAL needs two str"});
    expect_error("c\xff\x00\nx\n."sv, {"global '\\xff\\x00.x'"});
    // Allowed globals that are not values.
    std::string m = error_of([] { load_sv("\x80\x02""cnumpy\nndarray\n."sv); });
    CHECK(contains(m, "the global numpy.ndarray cannot be represented as a value (at root"));
    expect_error("\x80\x02""cnumpy.core.multiarray\n_reconstruct\nc__builtin__\nset\nK\x00\x85""C\x01""b\x87R."sv,
                 {"_reconstruct's first argument must be numpy.ndarray"});
    expect_error("\x80\x02""cnumpy\nndarray\n)\x81."sv, {"NEWOBJ of numpy.ndarray is not supported"});
}

TEST_CASE("pickle: bad numpy arrays and dtypes") {
    const std::string head = "\x80\x02""cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85""C\x01""b\x87R(K\x01K\x02\x85"_b;
    auto dtype = [](std::string_view spec, std::string_view order, std::string_view extra = "") {
        return std::string("cnumpy\ndtype\nX") + char(spec.size()) + std::string(3, '\0') + std::string(spec) +
               "\x89\x88\x87R(K\x03X\x01" + std::string(3, '\0') + std::string(order) +
               "NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00"_b + std::string(extra) + "tb";
    };
    std::string ok = head + dtype("u2", "<") + "\x89""C\x04\x01\x00\x02\x00tb."_b;
    CHECK(load_sv(ok).as_array().to_vector<int>() == std::vector<int>{1, 2});
    expect_error(head + dtype("u2", "<") + "\x89""C\x03\x01\x00\x02tb."_b, {"uint16 (2,) needs 4 data bytes, found 3", "BUILD"});
    expect_error(head + dtype("O8", "|") + "\x89]tb.", {"unsupported numpy dtype 'O8'", "REDUCE"});
    expect_error(head + dtype("c16", "<") + "tb.", {"unsupported numpy dtype 'c16'"});
    expect_error(head + dtype("u2", "!") + ".", {"bad byte order '!'", "BUILD"});
    expect_error(head + dtype("u2", "<", "K\x00"_b) + ".", {"must have version 4, found 3"});
    expect_error(head + dtype("u2", "<") + "\x89]tb.", {"is a list: object arrays"});
    expect_error(head + dtype("u2", "<") + "\x89K\x05tb.", {"data must be bytes, found int"});
    expect_error(head + dtype("u2", "<") + "tb.", {"ndarray's state must have 5 items", "found 3"});
    // A structured dtype: names is not None.
    std::string structured = dtype("u2", "<");
    structured.replace(structured.find("NNN"), 3, "N)N");
    expect_error(head + structured + ".", {"structured or subarray dtypes are not supported"});
    // A negative dim, and a shape whose byte count cannot exist.
    expect_error("\x80\x02""cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\xff\xff\xff\xff\x85""C\x01""b\x87R."sv,
                 {"_reconstruct's shape (-1,) has a negative dimension"});
    std::string huge = "\x80\x02""cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85""C\x01""b\x87R(K\x01"
                       "\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x3f\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x3f\x86"_b +
                       dtype("f8", "<") + "\x89""C\x00tb."_b;
    expect_error(huge, {"has too many elements"});
    expect_error("\x80\x02""cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x03\x85""C\x01""b\x87R."sv,
                 {"never got its data (no BUILD)"});
    // A dtype object on its own, and _frombuffer with a bad order.
    expect_error("\x80\x02" + dtype("f4", "<") + ".", {"a numpy dtype on its own cannot be represented"});
    expect_error("\x80\x05\x8c\x12numpy.core.numeric\x8c\x0b_frombuffer\x93(C\x00"_b + dtype("f4", "<") +
                     ")\x8c\x01Xt\x94R.",
                 {"_frombuffer's order must be 'C' or 'F', found 'X'"});
    expect_error("\x80\x05\x8c\x12numpy.core.numeric\x8c\x0b_frombuffer\x93(C\x03""abc"_b + dtype("f4", "<") +
                     ")\x8c\x01""Ct\x94R.",
                 {"_frombuffer: float32 () needs 4 data bytes, found 3"});
}

TEST_CASE("pickle: huge length fields are checked before anything is allocated") {
    expect_error("X\xff\xff\xff\xff."sv, {"a length of 4294967295 bytes at byte offset 1, only 1 left", "BINUNICODE"});
    expect_error("\x8d\xff\xff\xff\xff\xff\xff\xff\x7f."sv, {"a length of 9223372036854775807", "BINUNICODE8"});
    expect_error("\x8e\x00\x00\x00\x00\x00\x00\x00\x80."sv, {"a length of 9223372036854775808", "BINBYTES8"});
    expect_error("\x96\xff\xff\xff\xff\xff\xff\xff\xff."sv, {"a length of 18446744073709551615", "BYTEARRAY8"});
    expect_error("B\x00\x00\x00\x10."sv, {"a length of 268435456", "BINBYTES"});
    expect_error("\x8b\x00\x00\x00\x7f."sv, {"a length of 2130706432", "LONG4"});
    expect_error("r\xff\xff\xff\xff"sv, {"stack underflow", "LONG_BINPUT"});
    // A gzip bomb stops at the allocation limit.
    Bytes zeros(std::size_t{8} << 20, 0);
    Bytes bomb = cumulus::io::gzip_compress(zeros);
    pk::LoadOptions small;
    small.max_alloc_bytes = std::size_t{1} << 20;
    CHECK(contains(error_of([&] { pk::loads(bomb, "bomb.pkl.gz", small); }), "bomb.pkl.gz"));
}

TEST_CASE("pickle: limits on depth, memo and memory hold") {
    // Lists nested 2000 deep: EMPTY_LIST x 2000, then APPEND x 1999.
    std::string deep(2000, ']');
    deep += std::string(1999, 'a') + ".";
    expect_error(deep, {"nesting deeper than LoadOptions::max_depth = 1000", "at root[0][0][0]"});
    pk::LoadOptions more;
    more.max_depth = 2500;
    CHECK(load_sv(deep, more).at(0).at(0).type() == Value::Type::list);
    // Tuples nested 5000 deep as a dict key: hashing is bounded too.
    const std::string tup = "}N" + std::string(5000, '\x85') + "Ns.";
    expect_error(tup, {"a tuple nested deeper than LoadOptions::max_depth", "SETITEM"});
    // A structure containing itself.
    expect_error("]q\x00h\x00""a."sv, {"a recursive structure: this list contains itself", "at root[0]"});
    expect_error("]q\x00h\x00\x85""a."sv, {"recursive structure", "at root[0][0]"});
    // The memo.
    pk::LoadOptions memo;
    memo.max_memo = 3;
    expect_error("Nq\x00q\x01q\x02q\x01q\x03."sv, {"exceed LoadOptions::max_memo = 3", "BINPUT at byte offset 9"}, memo);
    // Shared references expand into copies, within max_alloc_bytes (a billion laughs).
    std::string laughs = "\x80\x02]K\x01""a";
    for (int i = 0; i < 40; ++i) laughs += "2\x86";  // (x, x) with x shared, 40 times: 2^40 leaves
    laughs += ".";
    pk::LoadOptions small;
    small.max_alloc_bytes = std::size_t{16} << 20;
    std::string m = error_of([&] { load_sv(laughs, small); });
    CHECK(contains(m, "the result needs more than LoadOptions::max_alloc_bytes = 16777216 bytes"));
    CHECK(contains(m, "shared references are copied"));
    expect_error(std::string(100000, ']') + ".", {"needs more than LoadOptions::max_alloc_bytes = 65536"},
                 [] { pk::LoadOptions o; o.max_alloc_bytes = 65536; return o; }());
}

TEST_CASE("pickle: every prefix of a valid pickle is an error, never a crash") {
    std::vector<std::string_view> valid = {kNumpyP0, kNumpyP2, kNumpyP4, kNumpyP5,
                                           "\x80\x02}(K\x01]\x94K\x02h\x00\x85u."sv};
    Bytes written = pk::dumps(rich_value(), 4);
    written.resize(4096);  // the start of a framed protocol-4 pickle, cut inside a frame
    std::size_t checked = 0;
    for (auto v : valid) {
        for (std::size_t n = 0; n < v.size(); ++n) {
            try {
                load_sv(v.substr(0, n));
                FAIL("prefix of " << n << " bytes loaded");
            } catch (const Error& e) {
                ++checked;
            }
        }
    }
    for (std::size_t n = 0; n <= written.size(); n += 7) {
        CHECK_THROWS_AS(load_sv(view_of(written).substr(0, n)), Error);
        ++checked;
    }
    MESSAGE(checked << " prefixes rejected");
}

// ================================================================ writing

TEST_CASE("pickle: the writer's bytes match Python's for plain values") {
    // Python 3: pickle.dumps(x, protocol) (memo opcodes aside, which these values do not need).
    CHECK(view_of(pk::dumps(Value::integer(5), 2)) == "\x80\x02K\x05."sv);
    CHECK(view_of(pk::dumps(Value::integer(-1), 2)) == "\x80\x02J\xff\xff\xff\xff."sv);
    CHECK(view_of(pk::dumps(Value::integer(std::int64_t{1} << 31), 2)) == "\x80\x02\x8a\x05\x00\x00\x00\x80\x00."sv);
    CHECK(view_of(pk::dumps(Value::integer(INT64_MIN), 2)) == "\x80\x02\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80."sv);
    CHECK(view_of(pk::dumps(Value::integer(-(std::int64_t{1} << 31) - 1), 2)) == "\x80\x02\x8a\x05\xff\xff\xff\x7f\xff."sv);
    CHECK(view_of(pk::dumps(Value::floating(1.5), 4)) ==
          "\x80\x04\x95\x0a\x00\x00\x00\x00\x00\x00\x00G\x3f\xf8\x00\x00\x00\x00\x00\x00."sv);
    CHECK(view_of(pk::dumps(Value::tuple({Value::none(), Value::boolean(true)}), 2)) == "\x80\x02N\x88\x86."sv);
    CHECK(view_of(pk::dumps(Value::bytes("\xff"sv), 3)) == "\x80\x03""C\x01\xff."sv);
    CHECK(view_of(pk::dumps(Value::bytes("\xff"sv), 2)) ==
          "\x80\x02""c_codecs\nencode\nq\x00X\x02\x00\x00\x00\xc3\xbfX\x06\x00\x00\x00latin1\x86R."sv);
    CHECK(view_of(pk::dumps(Value::list({}), 4)) == "\x80\x04]."sv);  // frames under 4 bytes have no FRAME
    CHECK(contains(error_of([] { pk::dumps(Value::str("\xff"), 2); }), "the str at root is not valid UTF-8"));
    CHECK(contains(error_of([] { pk::dumps(Value::none(), 5); }), "protocol must be 2, 3 or 4"));
    pk::Array bad;
    bad.shape = {2};
    CHECK(contains(error_of([&] { pk::dumps(Value::list({Value::array(bad)}), 2); }), "the array at root[0]"));
}

TEST_CASE("pickle: round trips through the writer at protocols 2, 3 and 4, plain and gzipped") {
    const Value v = rich_value();
    TempDir dir;
    for (int proto : {2, 3, 4}) {
        CAPTURE(proto);
        pk::LoadInfo info;
        Bytes b = pk::dumps(v, proto);
        CHECK(pk::loads(b, "rt.pkl", {}, &info) == v);
        CHECK(info.protocol == proto);
        // Arrays as numpy writes them: _reconstruct, ndarray, dtype.
        CHECK(contains(std::string(view_of(b)), "_reconstruct"));
        for (bool gz : {false, true}) {
            const std::string path = dir / ("rt" + std::to_string(proto) + (gz ? ".pkl.gz" : ".pkl"));
            pk::dump(v, path, proto, gz);
            CHECK(cumulus::io::is_gzip(cumulus::io::read_file(path).data(), 4) == gz);
            CHECK(pk::load(path, {}, &info) == v);
            CHECK(info.gzipped == gz);
        }
    }
    // Protocol 4 frames: the 80 KB array goes outside them, as Python does.
    Bytes b4 = pk::dumps(v, 4);
    CHECK(b4[2] == 0x95);
    CHECK(pk::dumps(v, 4) == b4);  // deterministic
    CHECK(contains(error_of([] { pk::load("/nonexistent/x.pkl"); }), "/nonexistent/x.pkl"));
}

// ================================================================ the real files

TEST_CASE("pickle: sample_weight.pkl gives 0.9352 on MNIST t10k, and only with Fortran order honoured") {
    pk::LoadInfo info;
    const Value v = pk::load(kPklDir + "sample_weight.pkl", {}, &info);
    CHECK(info.protocol == 3);
    std::vector<std::string> keys;
    for (const auto& [k, x] : v.as_dict()) keys.push_back(k.as_str());
    CHECK(keys == std::vector<std::string>{"b2", "W1", "b1", "W2", "W3", "b3"});
    const std::pair<const char*, std::vector<std::int64_t>> shapes[] = {
        {"W1", {784, 50}}, {"W2", {50, 100}}, {"W3", {100, 10}}, {"b1", {50}}, {"b2", {100}}, {"b3", {10}}};
    for (const auto& [k, shape] : shapes) {
        const pk::Array& a = v.at(k).as_array();
        CHECK(a.dtype.str() == "<f4");
        CHECK(a.shape == shape);
        CHECK(a.fortran_order == (k[0] == 'W'));
    }
    Tensor<float> W1 = v.at("W1").to_tensor<float>(), W2 = v.at("W2").to_tensor<float>(),
                  W3 = v.at("W3").to_tensor<float>(), b1 = v.at("b1").to_tensor<float>(),
                  b2 = v.at("b2").to_tensor<float>(), b3 = v.at("b3").to_tensor<float>();
    CHECK(W1.at(0, 0) == float(-0x1.e5c8eep-8));
    CHECK(W1.at(783, 49) == float(-0x1.496994p-5));
    CHECK(W3.at(0, 0) == float(-0x1.afdb8p-2));

    const std::string mnist = std::string(CUMULUS_TEST_DATA_DIR) + "/mnist/";
    Tensor<std::uint8_t> images = cumulus::data::load_idx_images(mnist + "t10k-images-idx3-ubyte.gz");
    Tensor<std::uint8_t> labels = cumulus::data::load_idx_labels(mnist + "t10k-labels-idx1-ubyte.gz");
    REQUIRE(images.dim(0) == 10000);

    // sigmoid(x W1 + b1) -> sigmoid(. W2 + b2) -> . W3 + b3, argmax; float32 as numpy does.
    auto correct = [&](const Tensor<float>& w1, std::int64_t count) {
        auto layer = [](const std::vector<float>& x, const Tensor<float>& w, const Tensor<float>& b, bool sigmoid) {
            const std::int64_t in = w.dim(0), out = w.dim(1);
            std::vector<float> y(static_cast<std::size_t>(out), 0.0f);
            for (std::int64_t k = 0; k < in; ++k) {
                const float xk = x[static_cast<std::size_t>(k)];
                if (xk == 0.0f) continue;  // exact: MNIST is mostly zeros
                const float* row = w.data() + k * out;
                for (std::int64_t j = 0; j < out; ++j) y[static_cast<std::size_t>(j)] += xk * row[j];
            }
            for (std::int64_t j = 0; j < out; ++j) {
                float& t = y[static_cast<std::size_t>(j)];
                t += b[j];
                if (sigmoid) t = 1.0f / (1.0f + std::exp(-t));
            }
            return y;
        };
        std::int64_t hits = 0;
        std::vector<float> x(784);
        for (std::int64_t i = 0; i < count; ++i) {
            for (int p = 0; p < 784; ++p) x[static_cast<std::size_t>(p)] = images[i * 784 + p] / 255.0f;
            std::vector<float> y = layer(layer(layer(x, w1, b1, true), W2, b2, true), W3, b3, false);
            hits += std::max_element(y.begin(), y.end()) - y.begin() == labels[i];
        }
        return hits;
    };
    CHECK(correct(W1, 10000) == 9352);
    // The same bytes read as C order (ignoring is_fortran) give garbage weights.
    pk::Array c_order = v.at("W1").as_array();
    c_order.fortran_order = false;
    CHECK(correct(c_order.to_tensor<float>(), 2000) < 400);
}

TEST_CASE("pickle: deep_convnet_params 2016 (protocol 3) and 2022 (protocol 4)") {
    const std::vector<std::string> order_2016 = {"b2", "b6", "W2", "b4", "b7", "b5", "W5", "b1",
                                                 "W7", "W6", "W3", "W8", "b3", "W4", "W1", "b8"};
    const std::vector<std::string> order_2022 = {"W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4",
                                                 "W5", "b5", "W6", "b6", "W7", "b7", "W8", "b8"};
    const std::pair<std::string, std::vector<std::int64_t>> shapes[] = {
        {"W1", {16, 1, 3, 3}}, {"W2", {16, 16, 3, 3}}, {"W3", {32, 16, 3, 3}}, {"W4", {32, 32, 3, 3}},
        {"W5", {64, 32, 3, 3}}, {"W6", {64, 64, 3, 3}}, {"W7", {1024, 50}}, {"W8", {50, 10}},
        {"b1", {16}}, {"b2", {16}}, {"b3", {32}}, {"b4", {32}}, {"b5", {64}}, {"b6", {64}}, {"b7", {50}}, {"b8", {10}}};
    for (const auto& f : {std::tuple{"deep_convnet_params.2016.pkl", 3, order_2016},
                          std::tuple{"deep_convnet_params.2022.pkl", 4, order_2022}}) {
        const std::string file = std::get<0>(f);
        const int proto = std::get<1>(f);
        const std::vector<std::string>& order = std::get<2>(f);
        CAPTURE(file);
        pk::LoadInfo info;
        const Value v = pk::load(kPklDir + file, {}, &info);
        CHECK(info.protocol == proto);
        std::vector<std::string> keys;
        for (const auto& [k, x] : v.as_dict()) keys.push_back(k.as_str());
        CHECK(keys == order);
        for (const auto& [k, shape] : shapes) {
            const pk::Array& a = v.at(k).as_array();
            CHECK(a.dtype.str() == "<f8");
            CHECK(a.shape == shape);
            CHECK_FALSE(a.fortran_order);
        }
        // Re-written by cumulus and read back: the same value.
        CHECK(pk::loads(pk::dumps(v, 2)) == v);
    }
    const Value v16 = pk::load(kPklDir + "deep_convnet_params.2016.pkl");
    const Value v22 = pk::load(kPklDir + "deep_convnet_params.2022.pkl");
    CHECK(v16.at("W1").to_tensor<double>().at(0, 0, 0, 0) == -0x1.4f75b86653e19p-5);
    CHECK(v16.at("b8").to_tensor<double>().at(9) == 0x1.1756609e82b89p-1);
    CHECK(v22.at("W1").to_tensor<double>().at(0, 0, 0, 0) == -0x1.a7cdb3124f162p-1);
    CHECK(v22.at("W7").to_tensor<double>().at(1023, 49) == -0x1.4d5c5ef87bf96p-15);
}

TEST_CASE("pickle: prefixes of the real files are errors") {
    for (const char* file : {"sample_weight.pkl", "deep_convnet_params.2022.pkl"}) {
        const Bytes b = cumulus::io::read_file(kPklDir + file);
        // The first and last 512 prefixes, and every 4999th in between.
        std::vector<std::size_t> cuts;
        for (std::size_t n = 0; n < b.size(); ++n)
            if (n < 512 || n + 512 >= b.size() || n % 4999 == 0) cuts.push_back(n);
        for (std::size_t n : cuts) CHECK_THROWS_AS(pk::loads(b.data(), n, file), Error);
        CHECK(cuts.size() > 1000);
        Bytes z = cumulus::io::gzip_compress(b);
        // Few: io::gunzip sizes its buffer from the (here garbage) ISIZE trailer.
        for (std::size_t n : {std::size_t{0}, std::size_t{9}, z.size() / 2, z.size() - 1})
            CHECK_THROWS_AS(pk::loads(z.data(), n, file), Error);
    }
}

// ================================================================ mutation

TEST_CASE("pickle: deterministic mutants of valid pickles load or throw cumulus::Error") {
    std::uint32_t seed = 1;
    for (auto v : {kNumpyP0, kNumpyP2, kNumpyP4, kNumpyP5}) mutate_and_load(bytes_of(v), 1500, seed++);
    Value small = load_sv(kNumpyP2);
    mutate_and_load(pk::dumps(small, 2), 1000, seed++);
    mutate_and_load(pk::dumps(small, 4), 1000, seed++);
    mutate_and_load(cumulus::io::read_file(kPklDir + "sample_weight.pkl"), 200, seed++);
}
