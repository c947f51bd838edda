#include <doctest/doctest.h>

#include "../test_util.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <cumulus/data/example.hpp>
#include <cumulus/io/protobuf.hpp>

using cumulus::Error;
using Bytes = std::vector<std::uint8_t>;
namespace data = cumulus::data;
namespace pb = cumulus::io::pb;
using data::Example;
using data::Feature;

namespace {

using test_util::contains;
using test_util::error_of;
using test_util::to_hex;

Bytes hex(const std::string& h) {
    Bytes b;
    for (std::size_t i = 0; i + 1 < h.size(); i += 2)
        b.push_back(static_cast<std::uint8_t>(std::stoi(h.substr(i, 2), nullptr, 16)));
    return b;
}

// Hand-encoding helpers: a length-delimited field around `body`.
Bytes len_field(std::uint32_t field, const Bytes& body) {
    Bytes out;
    pb::Writer w(out);
    w.bytes_field(field, body.data(), body.size());
    return out;
}
Bytes cat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
}
Bytes str(const std::string& s) { return Bytes(s.begin(), s.end()); }
Bytes entry(const std::string& key, const Bytes& feature) { return len_field(1, cat({len_field(1, str(key)), len_field(2, feature)})); }
Bytes example_of(const Bytes& entries) { return len_field(1, entries); }

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

}  // namespace

TEST_CASE("example: the formats.md vector, both ways") {
    const Bytes want = hex("0a100a0e0a056c6162656c12051a030a0107");
    Example ex;
    ex.set("label", Feature::of_ints({7}));
    CHECK(to_hex(data::serialize_example(ex)) == to_hex(want));
    Example back = data::parse_example(want);
    REQUIRE(back.features.size() == 1);
    CHECK(back.features[0].first == "label");
    const Feature* f = back.find("label");
    REQUIRE(f != nullptr);
    CHECK(f->kind == Feature::Int64);
    CHECK(f->ints == std::vector<std::int64_t>{7});
    CHECK(back.find("nope") == nullptr);
    CHECK(back == ex);
}

TEST_CASE("example: bytes written by TensorFlow's protobuf (every kind, negatives, empty lists, no kind)") {
    // tf.train.Example(...).SerializeToString() with TF 2.20; python's map order is i, b, n, f, e.
    const Bytes tf_bytes = hex(
        "0a490a150a016912101a0e0a0cffffffffffffffffff01ac020a0d0a016212080a060a0261620a000a050a016e12000a110a016612"
        "0c120a0a080000c03f000000c00a070a016512021a00");
    Example ex = data::parse_example(tf_bytes);
    REQUIRE(ex.features.size() == 5);
    const char* order[] = {"i", "b", "n", "f", "e"};
    for (int k = 0; k < 5; ++k) CHECK(ex.features[k].first == order[k]);
    CHECK(ex.find("i")->kind == Feature::Int64);
    CHECK(ex.find("i")->ints == std::vector<std::int64_t>{-1, 300});
    CHECK(ex.find("b")->bytes == std::vector<std::string>{"ab", ""});
    CHECK(ex.find("n")->kind == Feature::None);
    CHECK(ex.find("n")->size() == 0);
    CHECK(ex.find("f")->floats == std::vector<float>{1.5f, -2.0f});
    CHECK(ex.find("e")->kind == Feature::Int64);
    CHECK(ex.find("e")->ints.empty());
    // Same order in, same bytes out.
    CHECK(to_hex(data::serialize_example(ex)) == to_hex(tf_bytes));
    // An Example without features, and with an empty Features.
    CHECK(data::parse_example(Bytes{}).features.empty());
    CHECK(data::parse_example(hex("0a00")).features.empty());
    CHECK(to_hex(data::serialize_example(Example{})) == "0a00");
}

TEST_CASE("example: unpacked lists, negative 10-byte varints and extreme values") {
    // int64_list with three unpacked values: -1 (10 bytes), INT64_MIN, INT64_MAX; then a packed run appended.
    Bytes ints;
    pb::Writer w(ints);
    w.int64_field(1, -1);
    w.int64_field(1, std::numeric_limits<std::int64_t>::min());
    w.int64_field(1, std::numeric_limits<std::int64_t>::max());
    Bytes packed;
    pb::Writer wp(packed);
    wp.varint(5);
    wp.varint(static_cast<std::uint64_t>(std::int64_t{-300}));
    ints = cat({ints, len_field(1, packed)});
    // float_list: unpacked 0.5, then packed 1, 2.
    Bytes floats;
    pb::Writer wf(floats);
    wf.float_field(1, 0.5f);
    Bytes fp;
    pb::Writer wfp(fp);
    wfp.fixed32(0x3f800000u);
    wfp.fixed32(0x40000000u);
    floats = cat({floats, len_field(1, fp)});
    const Bytes bytes = example_of(cat({entry("ints", len_field(3, ints)), entry("floats", len_field(2, floats))}));
    Example ex = data::parse_example(bytes);
    CHECK(ex.find("ints")->ints == std::vector<std::int64_t>{-1, std::numeric_limits<std::int64_t>::min(),
                                                             std::numeric_limits<std::int64_t>::max(), 5, -300});
    CHECK(ex.find("floats")->floats == std::vector<float>{0.5f, 1.0f, 2.0f});
    // Written back packed: each negative takes 10 bytes.
    Example neg;
    neg.set("x", Feature::of_ints({-1}));
    CHECK(to_hex(data::serialize_example(neg)) == "0a150a130a01781" "20e1a0c0a0affffffffffffffffff01");
    CHECK(data::parse_example(data::serialize_example(ex)) == ex);
}

TEST_CASE("example: float bit patterns survive (NaN payloads, infinities, -0, denormals)") {
    std::vector<float> v;
    for (std::uint32_t bits : {0x7fc00001u, 0xffc00000u, 0x7f800000u, 0xff800000u, 0x80000000u, 0x00000001u,
                               0x7f7fffffu, 0x3f800000u}) {
        float f;
        std::memcpy(&f, &bits, 4);
        v.push_back(f);
    }
    Example ex;
    ex.set("v", Feature::of_floats(v));
    Example back = data::parse_example(data::serialize_example(ex));
    CHECK(same_bits(back.find("v")->floats, v));
}

TEST_CASE("example: unknown fields are skipped at every level, wrong wire types too") {
    const Bytes unknown_varint = hex("f807" "2a");           // field 127 varint
    const Bytes unknown_group = hex("a3060801a406");         // field 100 group {field 1 = 1}
    const Bytes unknown_fixed = hex("e90601020304050607081d00000000");  // field 109 fixed64; field 3 fixed32
    const Bytes list = cat({unknown_varint, hex("0801"), unknown_fixed, hex("0802"), unknown_group});
    const Bytes feature = cat({unknown_group, len_field(3, list), unknown_varint, hex("1805")});  // 18 05: int64_list as varint: skipped
    const Bytes map_entry = len_field(1, cat({unknown_fixed, len_field(1, str("k")), unknown_varint,
                                              len_field(2, feature), unknown_group}));
    const Bytes features = cat({unknown_varint, map_entry, hex("0d00000000"), unknown_group});  // field 1 fixed32: skipped
    const Bytes bytes = cat({unknown_group, len_field(1, features), unknown_fixed, len_field(7, str("zzz"))});
    Example ex = data::parse_example(bytes);
    REQUIRE(ex.features.size() == 1);
    CHECK(ex.features[0].first == "k");
    CHECK(ex.find("k")->kind == Feature::Int64);
    CHECK(ex.find("k")->ints == std::vector<std::int64_t>{1, 2});
}

TEST_CASE("example: map entries with value before key, missing key or value, duplicates (last wins)") {
    const Bytes v1 = len_field(3, hex("0a0101"));  // int64 [1]
    const Bytes v2 = len_field(1, len_field(1, str("two")));
    const Bytes value_first = len_field(1, cat({len_field(2, v1), len_field(1, str("a"))}));
    const Bytes no_value = len_field(1, len_field(1, str("b")));
    const Bytes no_key = len_field(1, len_field(2, v2));
    const Bytes dup_a = len_field(1, cat({len_field(1, str("a")), len_field(2, v2)}));
    // Two `features` fields merge (protobuf merges a repeated message field).
    const Bytes bytes =
        cat({len_field(1, cat({value_first, no_value})), len_field(1, cat({no_key, dup_a}))});
    Example ex = data::parse_example(bytes);
    REQUIRE(ex.features.size() == 3);
    CHECK(ex.features[0].first == "a");  // first position kept, last value wins
    CHECK(ex.features[0].second.kind == Feature::Bytes);
    CHECK(ex.features[0].second.bytes == std::vector<std::string>{"two"});
    CHECK(ex.features[1].first == "b");
    CHECK(ex.features[1].second.kind == Feature::None);
    CHECK(ex.features[2].first == "");
    CHECK(ex.features[2].second.bytes == std::vector<std::string>{"two"});
}

TEST_CASE("example: oneof and merge semantics inside a Feature") {
    // int64_list [1], int64_list [2] (merged: [1, 2]); then float_list replaces it; then int64_list [3] starts over.
    const Bytes merged = cat({len_field(3, hex("0a0101")), len_field(3, hex("0a0102"))});
    Example ex = data::parse_example(example_of(entry("m", merged)));
    CHECK(ex.find("m")->ints == std::vector<std::int64_t>{1, 2});
    const Bytes switched = cat({merged, len_field(2, hex("0d0000803f")), len_field(3, hex("0803"))});
    ex = data::parse_example(example_of(entry("m", switched)));
    CHECK(ex.find("m")->kind == Feature::Int64);
    CHECK(ex.find("m")->ints == std::vector<std::int64_t>{3});
    CHECK(ex.find("m")->floats.empty());
    // The entry's value field twice merges too.
    const Bytes two_values = len_field(1, cat({len_field(1, str("k")), len_field(2, len_field(1, len_field(1, str("x")))),
                                               len_field(2, len_field(1, len_field(1, str("y"))))}));
    ex = data::parse_example(example_of(two_values));
    CHECK(ex.find("k")->bytes == std::vector<std::string>{"x", "y"});
}

TEST_CASE("example: empty lists of each kind and unicode keys round trip") {
    Example ex;
    ex.set("empty_bytes", Feature::of_bytes({}));
    ex.set("empty_floats", Feature::of_floats({}));
    ex.set("empty_ints", Feature::of_ints({}));
    ex.set("none", Feature{});
    ex.set("ключ 键 🔑", Feature::of_bytes({std::string("a\0b", 3), ""}));
    const Bytes bytes = data::serialize_example(ex);
    Example back = data::parse_example(bytes);
    CHECK(back == ex);
    CHECK(back.find("empty_floats")->kind == Feature::Float);
    CHECK(back.find("none")->kind == Feature::None);
    CHECK(back.find("ключ 键 🔑")->bytes[0].size() == 3);
    // set() replaces in place.
    ex.set("empty_ints", Feature::of_ints({4}));
    CHECK(ex.features[2].second.ints == std::vector<std::int64_t>{4});
    CHECK(ex.features.size() == 5);
}

TEST_CASE("example: random examples round trip through serialize and parse") {
    std::mt19937_64 rng(11);
    for (int iter = 0; iter < 300; ++iter) {
        Example ex;
        const int nf = static_cast<int>(rng() % 8);
        for (int k = 0; k < nf; ++k) {
            Feature f;
            const int n = static_cast<int>(rng() % 20);
            switch (rng() % 4) {
                case 0:
                    f.kind = Feature::Bytes;
                    for (int i = 0; i < n; ++i) {
                        std::string s(rng() % 300, '\0');
                        for (auto& c : s) c = static_cast<char>(rng());
                        f.bytes.push_back(s);
                    }
                    break;
                case 1:
                    f.kind = Feature::Float;
                    for (int i = 0; i < n; ++i) f.floats.push_back(static_cast<float>(static_cast<std::int64_t>(rng())) / 1e9f);
                    break;
                case 2:
                    f.kind = Feature::Int64;
                    for (int i = 0; i < n; ++i) f.ints.push_back(static_cast<std::int64_t>(rng() >> (rng() % 64)) * (rng() % 2 ? 1 : -1));
                    break;
                default: break;
            }
            ex.set("key" + std::to_string(k), f);
        }
        const Bytes bytes = data::serialize_example(ex);
        REQUIRE(data::parse_example(bytes) == ex);
        REQUIRE(data::serialize_example(data::parse_example(bytes)) == bytes);
    }
}

TEST_CASE("example: malformed bytes give errors naming the context and offset") {
    const Bytes good = hex("0a100a0e0a056c6162656c12051a030a0107");
    for (std::size_t cut = 1; cut < good.size(); ++cut) {
        CAPTURE(cut);
        const Bytes trunc(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(cut));
        const std::string msg = error_of([&] { data::parse_example(trunc, "'f.tfrecord': record 3"); });
        CHECK(contains(msg, "'f.tfrecord': record 3: at byte offset "));
    }
    const std::string msg = error_of([&] { data::parse_example(example_of(entry("f", len_field(2, hex("0a03000000"))))); });
    CHECK(contains(msg, "tf.train.Example: at byte offset 13: packed fixed32 list of field 1 holds 3 bytes"));
    CHECK(contains(error_of([&] { data::parse_example(example_of(entry("i", len_field(3, hex("0a02ff80"))))); }),
                   "truncated varint"));
    CHECK(contains(error_of([&] { data::parse_example(hex("0a0b")); }), "at byte offset 1: length-delimited field"));
}

TEST_CASE("sequence example: TensorFlow's bytes, both ways") {
    // tf.train.SequenceExample(context={'len': [2]}, feature_lists={'tok': [int64 [1,2], float [0.5]]}).
    const Bytes tf_bytes = hex("0a0e0a0c0a036c656e12051a030a0102121b0a190a03746f6b12120a061a040a0201020a0812060a040000003f");
    data::SequenceExample s = data::parse_sequence_example(tf_bytes);
    REQUIRE(s.context.size() == 1);
    CHECK(s.find_context("len")->ints == std::vector<std::int64_t>{2});
    REQUIRE(s.feature_lists.size() == 1);
    const data::FeatureList* tok = s.find_feature_list("tok");
    REQUIRE(tok != nullptr);
    REQUIRE(tok->feature.size() == 2);
    CHECK(tok->feature[0].ints == std::vector<std::int64_t>{1, 2});
    CHECK(tok->feature[1].floats == std::vector<float>{0.5f});
    CHECK(s.find_feature_list("nope") == nullptr);
    CHECK(to_hex(data::serialize_sequence_example(s)) == to_hex(tf_bytes));
    // Empty lists, a step with no kind, and a duplicate key.
    data::SequenceExample t;
    t.feature_lists.push_back({"a", data::FeatureList{{Feature{}, Feature::of_bytes({"x"})}}});
    t.feature_lists.push_back({"b", data::FeatureList{}});
    CHECK(data::parse_sequence_example(data::serialize_sequence_example(t)) == t);
    Bytes dup = data::serialize_sequence_example(t);
    data::SequenceExample u;
    u.feature_lists.push_back({"a", data::FeatureList{{Feature::of_ints({9})}}});
    const Bytes more = data::serialize_sequence_example(u);
    dup.insert(dup.end(), more.begin(), more.end());
    data::SequenceExample merged = data::parse_sequence_example(dup);
    REQUIRE(merged.feature_lists.size() == 2);
    CHECK(merged.feature_lists[0].first == "a");
    CHECK(merged.feature_lists[0].second == u.feature_lists[0].second);
    CHECK(contains(error_of([&] { data::parse_sequence_example(hex("12020a05")); }),
                   "tf.train.SequenceExample: at byte offset 3: length-delimited field of 5 bytes"));
}
