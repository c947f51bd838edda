#include <doctest/doctest.h>

#include "../test_util.hpp"

#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <cumulus/io/protobuf.hpp>

using cumulus::Error;
using Bytes = std::vector<std::uint8_t>;
namespace pb = cumulus::io::pb;

namespace {

using test_util::contains;
using test_util::error_of;

Bytes hex(const std::string& h) {
    Bytes b;
    for (std::size_t i = 0; i + 1 < h.size(); i += 2) b.push_back(static_cast<std::uint8_t>(std::stoi(h.substr(i, 2), nullptr, 16)));
    return b;
}

// Reads every field of `b`, skipping each.
void skip_all(const Bytes& b, const std::string& context = "msg") {
    pb::Reader r(b.data(), b.size(), context);
    pb::Field f;
    while (r.next(f)) r.skip(f);
}

}  // namespace

TEST_CASE("protobuf: varints round trip, with their exact encodings") {
    const std::vector<std::pair<std::uint64_t, std::string>> cases = {
        {0, "00"},           {1, "01"},         {127, "7f"},
        {128, "8001"},       {300, "ac02"},     {16383, "ff7f"},
        {16384, "808001"},   {0xFFFFFFFFu, "ffffffff0f"},
        {std::numeric_limits<std::uint64_t>::max(), "ffffffffffffffffff01"},
        {static_cast<std::uint64_t>(std::int64_t{-1}), "ffffffffffffffffff01"},
        {static_cast<std::uint64_t>(std::int64_t{-2}), "feffffffffffffffff01"},
    };
    for (const auto& [v, enc] : cases) {
        Bytes out;
        pb::Writer w(out);
        w.varint(v);
        CHECK(out == hex(enc));
        CHECK(pb::varint_size(v) == out.size());
        pb::Reader r(out.data(), out.size());
        CHECK(r.read_varint() == v);
        CHECK(r.at_end());
    }
    std::mt19937_64 rng(1);
    Bytes buf;
    pb::Writer w(buf);
    std::vector<std::uint64_t> vals;
    for (int i = 0; i < 2000; ++i) {
        std::uint64_t v = rng() >> (rng() % 64);
        vals.push_back(v);
        w.varint(v);
    }
    pb::Reader r(buf.data(), buf.size());
    for (auto v : vals) REQUIRE(r.read_varint() == v);
    CHECK(r.at_end());
}

TEST_CASE("protobuf: zigzag") {
    CHECK(pb::zigzag_encode(0) == 0);
    CHECK(pb::zigzag_encode(-1) == 1);
    CHECK(pb::zigzag_encode(1) == 2);
    CHECK(pb::zigzag_encode(-2) == 3);
    CHECK(pb::zigzag_encode(std::numeric_limits<std::int64_t>::max()) == 0xFFFFFFFFFFFFFFFEull);
    CHECK(pb::zigzag_encode(std::numeric_limits<std::int64_t>::min()) == 0xFFFFFFFFFFFFFFFFull);
    for (std::int64_t v : {std::int64_t{0}, std::int64_t{-1}, std::int64_t{1}, std::int64_t{-123456789},
                           std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max()})
        CHECK(pb::zigzag_decode(pb::zigzag_encode(v)) == v);
    Bytes out;
    pb::Writer w(out);
    w.sint64_field(1, -3);
    CHECK(out == hex("0805"));
    pb::Reader r(out.data(), out.size());
    pb::Field f;
    REQUIRE(r.next(f));
    CHECK(r.read_sint64() == -3);
}

TEST_CASE("protobuf: fields of every wire type, written and read back") {
    Bytes out;
    pb::Writer w(out);
    w.int64_field(1, -5);
    w.fixed64_field(2, 0x0102030405060708ull);
    w.string_field(3, "hey");
    w.fixed32_field(4, 0xA1B2C3D4u);
    w.float_field(5, 1.5f);
    w.double_field(6, -2.25);
    w.varint_field(pb::kMaxFieldNumber, 9);
    pb::Reader r(out.data(), out.size(), "msg");
    pb::Field f;
    REQUIRE(r.next(f));
    CHECK((f.number == 1 && f.type == pb::WireType::Varint && f.offset == 0));
    CHECK(r.read_int64() == -5);
    REQUIRE(r.next(f));
    CHECK((f.number == 2 && f.type == pb::WireType::Fixed64));
    CHECK(r.read_fixed64() == 0x0102030405060708ull);
    REQUIRE(r.next(f));
    CHECK((f.number == 3 && f.type == pb::WireType::Len));
    auto b = r.read_bytes();
    CHECK(b.view() == "hey");
    CHECK(b.offset == f.offset + 2);
    REQUIRE(r.next(f));
    CHECK(r.read_fixed32() == 0xA1B2C3D4u);
    REQUIRE(r.next(f));
    CHECK(r.read_float() == 1.5f);
    REQUIRE(r.next(f));
    CHECK(r.read_double() == -2.25);
    REQUIRE(r.next(f));
    CHECK(f.number == pb::kMaxFieldNumber);
    CHECK(r.read_varint() == 9);
    CHECK_FALSE(r.next(f));
    CHECK(error_of([&] { w.varint_field(0, 1); }).find("field number 0") != std::string::npos);
    CHECK(error_of([&] { w.varint_field(pb::kMaxFieldNumber + 1, 1); }).find("out of range") != std::string::npos);
}

TEST_CASE("protobuf: packed and unpacked repeated fields read the same") {
    Bytes packed = hex("0a03010203");            // field 1, packed varints 1 2 3
    Bytes unpacked = hex("080108020803");        // field 1 three times
    for (const Bytes* b : {&packed, &unpacked}) {
        pb::Reader r(b->data(), b->size());
        std::vector<std::uint64_t> got;
        pb::Field f;
        while (r.next(f)) r.read_repeated_varint(f, [&](std::uint64_t v) { got.push_back(v); });
        CHECK(got == std::vector<std::uint64_t>{1, 2, 3});
    }
    Bytes fpacked = hex("0a080000803f00000040");   // 1.0f 2.0f
    Bytes funpacked = hex("0d0000803f0d00000040");
    for (const Bytes* b : {&fpacked, &funpacked}) {
        pb::Reader r(b->data(), b->size());
        std::vector<std::uint32_t> got;
        pb::Field f;
        while (r.next(f)) r.read_repeated_fixed32(f, [&](std::uint32_t v) { got.push_back(v); });
        CHECK(got == std::vector<std::uint32_t>{0x3f800000u, 0x40000000u});
    }
    Bytes bad = hex("0a03000000");
    pb::Reader r(bad.data(), bad.size(), "floats");
    pb::Field f;
    REQUIRE(r.next(f));
    auto msg = error_of([&] { r.read_repeated_fixed32(f, [](std::uint32_t) {}); });
    CHECK(contains(msg, "floats: at byte offset 2: packed fixed32 list of field 1 holds 3 bytes, not a multiple of 4"));
    Bytes trunc_packed = hex("0a02ff80");  // the packed run ends inside a varint
    pb::Reader r2(trunc_packed.data(), trunc_packed.size(), "ints");
    REQUIRE(r2.next(f));
    msg = error_of([&] { r2.read_repeated_varint(f, [](std::uint64_t) {}); });
    CHECK(contains(msg, "ints: at byte offset 2: truncated varint"));
    Bytes wrong = hex("0d00000000");
    pb::Reader r3(wrong.data(), wrong.size(), "ints");
    REQUIRE(r3.next(f));
    msg = error_of([&] { r3.read_repeated_varint(f, [](std::uint64_t) {}); });
    CHECK(contains(msg, "expected a packed varint list (wire type 2"));
    CHECK(contains(msg, "found wire type 5 (fixed32)"));
}

TEST_CASE("protobuf: unknown fields of every wire type are skipped, groups included") {
    // varint, fixed64, len, group{varint, nested group{fixed32}}, fixed32
    const Bytes b = hex("0896011101020304050607081a026869" "23" "0801" "2b" "2d01020304" "2c" "24" "3501020304");
    pb::Reader r(b.data(), b.size());
    pb::Field f;
    std::vector<std::uint32_t> numbers;
    while (r.next(f)) {
        numbers.push_back(f.number);
        r.skip(f);
    }
    CHECK(numbers == std::vector<std::uint32_t>{1, 2, 3, 4, 6});
}

TEST_CASE("protobuf: malformed input gives errors naming the offset and what was expected") {
    struct Case {
        const char* hex;
        const char* want;
    };
    const Case cases[] = {
        {"08", "msg: at byte offset 1: truncated varint (a varint): the data ends after 0 bytes"},
        {"0880", "msg: at byte offset 1: truncated varint (a varint): the data ends after 1 byte "},
        {"80", "msg: at byte offset 0: truncated varint (a field tag)"},
        {"08ffffffffffffffffff02", "at byte offset 1: varint (a varint) overflows 64 bits: 10th byte is 0x2"},
        {"08ffffffffffffffffff8001", "overflows 64 bits"},
        {"0e", "at byte offset 0: invalid wire type 6"},
        {"0f", "at byte offset 0: invalid wire type 7"},
        {"00", "at byte offset 0: field number 0"},
        {"8080808010", "field tag 4294967296 does not fit 32 bits"},
        {"0a05616263", "at byte offset 1: length-delimited field of 5 bytes (length varint at byte offset 1) runs past "
                       "the end: only 3 bytes left"},
        {"0affffffffffffffffff01", "length-delimited field of 18446744073709551615 bytes"},
        {"090102", "at byte offset 1: truncated: expected a fixed64 value (8 bytes), only 2 bytes left"},
        {"0d01", "truncated: expected a fixed32 value (4 bytes), only 1 bytes left"},
        {"0c", "at byte offset 0: end-group tag for field 1 without a matching start-group tag"},
        {"0b0801", "at byte offset 0: group of field 1 has no end-group tag"},
        {"0b14", "at byte offset 1: end-group tag for field 2 inside the group of field 1 (started at byte offset 0)"},
        {"1a03080a", "runs past the end"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.hex);
        const std::string msg = error_of([&] { skip_all(hex(c.hex)); });
        CHECK_MESSAGE(contains(msg, c.want), msg);
    }
    // Offsets are absolute inside embedded messages.
    const Bytes nested = hex("0a04" "1a020801" "12020a05");  // field 2's message holds a field running past its end
    pb::Reader r(nested.data(), nested.size(), "outer");
    pb::Field f;
    REQUIRE(r.next(f));
    r.skip(f);
    REQUIRE(r.next(f));
    pb::Reader inner = r.read_message();
    CHECK(inner.offset() == 8);
    const std::string msg = error_of([&] {
        pb::Field g;
        while (inner.next(g)) inner.skip(g);
    });
    CHECK_MESSAGE(contains(msg, "outer: at byte offset 9: length-delimited field of 5 bytes"), msg);
}

TEST_CASE("protobuf: deeply nested groups hit the nesting limit, not the stack") {
    Bytes b;
    for (int i = 0; i < 200000; ++i) b.push_back(0x0b);  // start-group of field 1, never ended
    const std::string msg = error_of([&] { skip_all(b); });
    CHECK(contains(msg, "groups nested deeper than 100 levels"));
    Bytes ok;
    for (int i = 0; i < 99; ++i) ok.push_back(0x0b);
    for (int i = 0; i < 99; ++i) ok.push_back(0x0c);
    skip_all(ok);
}

TEST_CASE("protobuf: random bytes never read out of bounds") {
    std::mt19937 rng(5);
    for (int iter = 0; iter < 20000; ++iter) {
        Bytes b(rng() % 40);
        for (auto& x : b) x = static_cast<std::uint8_t>(rng() % 4 == 0 ? rng() % 0x30 : rng());
        try {
            pb::Reader r(b.data(), b.size());
            pb::Field f;
            while (r.next(f)) {
                if (f.type == pb::WireType::Len && rng() % 2) {
                    pb::Reader sub = r.read_message();
                    pb::Field g;
                    while (sub.next(g)) sub.skip(g);
                } else {
                    r.skip(f);
                }
            }
        } catch (const Error&) {
        }
    }
}
