// tf.train.Example and tf.train.SequenceExample, decoded and encoded by hand
// (tensorflow/core/example/example.proto and feature.proto, proto3):
//
//   Example         { Features features = 1; }
//   SequenceExample { Features context = 1; FeatureLists feature_lists = 2; }
//   Features        { map<string, Feature> feature = 1; }      entry: key = 1, value = 2
//   FeatureLists    { map<string, FeatureList> feature_list = 1; }
//   FeatureList     { repeated Feature feature = 1; }
//   Feature         { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
//   BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1 [packed]; }
//   Int64List { repeated int64 value = 1 [packed]; }
//
// Parsing follows protobuf's rules: packed and unpacked lists are both
// accepted, unknown fields (and known fields with an unexpected wire type)
// are skipped, repeated occurrences of a message merge, a later oneof member
// replaces an earlier one, and a map key seen twice keeps the last value.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <cumulus/core/error.hpp>
#include <cumulus/io/protobuf.hpp>

namespace cumulus::data {

// One feature: a list of bytes, floats or int64s. `None` is a Feature whose
// oneof is unset; TensorFlow treats it as an empty list.
struct Feature {
    enum Kind { Bytes, Float, Int64, None };
    Kind kind = None;
    std::vector<std::string> bytes;
    std::vector<float> floats;
    std::vector<std::int64_t> ints;

    static Feature of_bytes(std::vector<std::string> v) {
        Feature f;
        f.kind = Bytes;
        f.bytes = std::move(v);
        return f;
    }
    static Feature of_floats(std::vector<float> v) {
        Feature f;
        f.kind = Float;
        f.floats = std::move(v);
        return f;
    }
    static Feature of_ints(std::vector<std::int64_t> v) {
        Feature f;
        f.kind = Int64;
        f.ints = std::move(v);
        return f;
    }

    // Number of values of its kind (0 for None).
    std::size_t size() const {
        switch (kind) {
            case Bytes: return bytes.size();
            case Float: return floats.size();
            case Int64: return ints.size();
            case None: return 0;
        }
        return 0;
    }
    void clear() {
        kind = None;
        bytes.clear();
        floats.clear();
        ints.clear();
    }
    bool operator==(const Feature&) const = default;
};

inline const char* feature_kind_name(Feature::Kind k) {
    switch (k) {
        case Feature::Bytes: return "bytes_list";
        case Feature::Float: return "float_list";
        case Feature::Int64: return "int64_list";
        case Feature::None: return "no kind";
    }
    return "?";
}

// Features in the order they first appear in the data (or were added).
using FeatureMap = std::vector<std::pair<std::string, Feature>>;

struct FeatureList {
    std::vector<Feature> feature;
    bool operator==(const FeatureList&) const = default;
};

namespace detail::example {

template <typename V>
const V* find_in(const std::vector<std::pair<std::string, V>>& m, std::string_view key) {
    for (const auto& kv : m)
        if (kv.first == key) return &kv.second;
    return nullptr;
}

template <typename V>
V& set_in(std::vector<std::pair<std::string, V>>& m, std::string key, V value) {
    for (auto& kv : m)
        if (kv.first == key) return kv.second = std::move(value);
    m.emplace_back(std::move(key), std::move(value));
    return m.back().second;
}

}  // namespace detail::example

// The feature `key` of `m`, or nullptr.
inline const Feature* find_feature(const FeatureMap& m, std::string_view key) {
    return detail::example::find_in(m, key);
}

struct Example {
    FeatureMap features;

    const Feature* find(std::string_view key) const { return detail::example::find_in(features, key); }
    Feature* find(std::string_view key) { return const_cast<Feature*>(std::as_const(*this).find(key)); }
    // Replaces the feature `key` (keeping its position) or appends it.
    Feature& set(std::string key, Feature f) { return detail::example::set_in(features, std::move(key), std::move(f)); }
    bool operator==(const Example&) const = default;
};

struct SequenceExample {
    FeatureMap context;
    std::vector<std::pair<std::string, FeatureList>> feature_lists;

    const Feature* find_context(std::string_view key) const { return detail::example::find_in(context, key); }
    const FeatureList* find_feature_list(std::string_view key) const {
        return detail::example::find_in(feature_lists, key);
    }
    bool operator==(const SequenceExample&) const = default;
};

namespace detail::example {

using io::pb::Field;
using io::pb::Reader;
using io::pb::WireType;

// Merges one Feature message into f (protobuf merge semantics for a oneof).
inline void parse_feature(Reader& r, Feature& f) {
    Field g;
    while (r.next(g)) {
        if (g.number < 1 || g.number > 3 || g.type != WireType::Len) {
            r.skip(g);
            continue;
        }
        const auto kind = static_cast<Feature::Kind>(g.number - 1);  // 1 bytes, 2 float, 3 int64
        if (f.kind != kind) {
            f.clear();
            f.kind = kind;
        }
        Reader list = r.read_message();
        Field h;
        while (list.next(h)) {
            if (h.number != 1) {
                list.skip(h);
                continue;
            }
            if (kind == Feature::Bytes && h.type == WireType::Len) {
                f.bytes.emplace_back(list.read_bytes().view());
            } else if (kind == Feature::Float && (h.type == WireType::Fixed32 || h.type == WireType::Len)) {
                list.read_repeated_fixed32(h, [&](std::uint32_t bits) {
                    float v;
                    std::memcpy(&v, &bits, 4);
                    f.floats.push_back(v);
                });
            } else if (kind == Feature::Int64 && (h.type == WireType::Varint || h.type == WireType::Len)) {
                list.read_repeated_varint(h, [&](std::uint64_t v) { f.ints.push_back(static_cast<std::int64_t>(v)); });
            } else {
                list.skip(h);
            }
        }
    }
}

// Parses map<string, V> entries (field 1 of `r`'s message) into `out`,
// merging with what is there; `index` maps keys (views into the input) to
// positions in `out`, so duplicate keys cost no quadratic search.
template <typename V, typename ParseValue>
void parse_map(Reader& r, std::vector<std::pair<std::string, V>>& out,
               std::unordered_map<std::string_view, std::size_t>& index, ParseValue&& parse_value) {
    Field f;
    while (r.next(f)) {
        if (f.number != 1 || f.type != WireType::Len) {
            r.skip(f);
            continue;
        }
        Reader entry = r.read_message();
        std::string_view key;
        V value{};
        Field g;
        while (entry.next(g)) {
            if (g.number == 1 && g.type == WireType::Len) {
                key = entry.read_bytes().view();
            } else if (g.number == 2 && g.type == WireType::Len) {
                Reader v = entry.read_message();
                parse_value(v, value);
            } else {
                entry.skip(g);
            }
        }
        auto [it, inserted] = index.try_emplace(key, out.size());
        if (inserted)
            out.emplace_back(std::string(key), std::move(value));
        else
            out[it->second].second = std::move(value);
    }
}

inline void parse_feature_list(Reader& r, FeatureList& list) {
    Field f;
    while (r.next(f)) {
        if (f.number == 1 && f.type == WireType::Len) {
            Reader v = r.read_message();
            parse_feature(v, list.feature.emplace_back());
        } else {
            r.skip(f);
        }
    }
}

// ---- sizes and writers (proto3 as protobuf writes it: lists packed,
// empty packed lists omitted, map entries with both key and value) ----

inline std::size_t feature_body_size(const Feature& f) {
    using io::pb::len_field_size;
    using io::pb::varint_size;
    std::size_t list = 0;
    switch (f.kind) {
        case Feature::None: return 0;
        case Feature::Bytes:
            for (const auto& s : f.bytes) list += len_field_size(1, s.size());
            return len_field_size(1, list);
        case Feature::Float:
            if (!f.floats.empty()) list = len_field_size(1, 4 * f.floats.size());
            return len_field_size(2, list);
        case Feature::Int64: {
            std::size_t data = 0;
            for (auto v : f.ints) data += varint_size(static_cast<std::uint64_t>(v));
            if (!f.ints.empty()) list = len_field_size(1, data);
            return len_field_size(3, list);
        }
    }
    return 0;
}

inline void write_feature_body(io::pb::Writer& w, const Feature& f) {
    using io::pb::varint_size;
    switch (f.kind) {
        case Feature::None: return;
        case Feature::Bytes: {
            std::size_t list = 0;
            for (const auto& s : f.bytes) list += io::pb::len_field_size(1, s.size());
            w.len(1, list);
            for (const auto& s : f.bytes) w.string_field(1, s);
            return;
        }
        case Feature::Float: {
            const std::size_t data = 4 * f.floats.size();
            w.len(2, f.floats.empty() ? 0 : io::pb::len_field_size(1, data));
            if (f.floats.empty()) return;
            w.len(1, data);
            for (float v : f.floats) {
                std::uint32_t bits;
                std::memcpy(&bits, &v, 4);
                w.fixed32(bits);
            }
            return;
        }
        case Feature::Int64: {
            std::size_t data = 0;
            for (auto v : f.ints) data += varint_size(static_cast<std::uint64_t>(v));
            w.len(3, f.ints.empty() ? 0 : io::pb::len_field_size(1, data));
            if (f.ints.empty()) return;
            w.len(1, data);
            for (auto v : f.ints) w.varint(static_cast<std::uint64_t>(v));
            return;
        }
    }
}

inline std::size_t feature_list_body_size(const FeatureList& l) {
    std::size_t n = 0;
    for (const auto& f : l.feature) n += io::pb::len_field_size(1, feature_body_size(f));
    return n;
}

inline void write_feature_list_body(io::pb::Writer& w, const FeatureList& l) {
    for (const auto& f : l.feature) {
        w.len(1, feature_body_size(f));
        write_feature_body(w, f);
    }
}

inline std::size_t value_size(const Feature& f) { return feature_body_size(f); }
inline std::size_t value_size(const FeatureList& l) { return feature_list_body_size(l); }
inline void write_value(io::pb::Writer& w, const Feature& f) { write_feature_body(w, f); }
inline void write_value(io::pb::Writer& w, const FeatureList& l) { write_feature_list_body(w, l); }

template <typename V>
std::size_t entry_size(const std::pair<std::string, V>& kv) {
    return io::pb::len_field_size(1, kv.first.size()) + io::pb::len_field_size(2, value_size(kv.second));
}

template <typename V>
std::size_t map_body_size(const std::vector<std::pair<std::string, V>>& m) {
    std::size_t n = 0;
    for (const auto& kv : m) n += io::pb::len_field_size(1, entry_size(kv));
    return n;
}

template <typename V>
void write_map_body(io::pb::Writer& w, const std::vector<std::pair<std::string, V>>& m) {
    for (const auto& kv : m) {
        w.len(1, entry_size(kv));
        w.string_field(1, kv.first);
        w.len(2, value_size(kv.second));
        write_value(w, kv.second);
    }
}

}  // namespace detail::example

// Decodes a serialized tf.train.Example. `context` (e.g. the file and record)
// starts every error message; errors give the byte offset within the record.
inline Example parse_example(const std::uint8_t* p, std::size_t n, const std::string& context = "tf.train.Example") {
    using namespace detail::example;
    Example ex;
    std::unordered_map<std::string_view, std::size_t> index;
    Reader r(p, n, context);
    Field f;
    while (r.next(f)) {
        if (f.number == 1 && f.type == WireType::Len) {
            Reader features = r.read_message();
            parse_map<Feature>(features, ex.features, index, [](Reader& v, Feature& out) { parse_feature(v, out); });
        } else {
            r.skip(f);
        }
    }
    return ex;
}

inline Example parse_example(const std::vector<std::uint8_t>& bytes, const std::string& context = "tf.train.Example") {
    return parse_example(bytes.data(), bytes.size(), context);
}

// Encodes an Example as TensorFlow does: packed lists, map entries in
// `features` order, and the `features` field always present.
inline std::vector<std::uint8_t> serialize_example(const Example& ex) {
    using namespace detail::example;
    const std::size_t body = map_body_size(ex.features);
    std::vector<std::uint8_t> out;
    out.reserve(io::pb::len_field_size(1, body));
    io::pb::Writer w(out);
    w.len(1, body);
    write_map_body(w, ex.features);
    return out;
}

// Decodes a serialized tf.train.SequenceExample.
inline SequenceExample parse_sequence_example(const std::uint8_t* p, std::size_t n,
                                              const std::string& context = "tf.train.SequenceExample") {
    using namespace detail::example;
    SequenceExample ex;
    std::unordered_map<std::string_view, std::size_t> context_index, lists_index;
    Reader r(p, n, context);
    Field f;
    while (r.next(f)) {
        if (f.number == 1 && f.type == WireType::Len) {
            Reader features = r.read_message();
            parse_map<Feature>(features, ex.context, context_index,
                               [](Reader& v, Feature& out) { parse_feature(v, out); });
        } else if (f.number == 2 && f.type == WireType::Len) {
            Reader lists = r.read_message();
            parse_map<FeatureList>(lists, ex.feature_lists, lists_index,
                                   [](Reader& v, FeatureList& out) { parse_feature_list(v, out); });
        } else {
            r.skip(f);
        }
    }
    return ex;
}

inline SequenceExample parse_sequence_example(const std::vector<std::uint8_t>& bytes,
                                              const std::string& context = "tf.train.SequenceExample") {
    return parse_sequence_example(bytes.data(), bytes.size(), context);
}

// Encodes a SequenceExample (context, then feature_lists; both always present).
inline std::vector<std::uint8_t> serialize_sequence_example(const SequenceExample& ex) {
    using namespace detail::example;
    const std::size_t context = map_body_size(ex.context);
    const std::size_t lists = map_body_size(ex.feature_lists);
    std::vector<std::uint8_t> out;
    out.reserve(io::pb::len_field_size(1, context) + io::pb::len_field_size(2, lists));
    io::pb::Writer w(out);
    w.len(1, context);
    write_map_body(w, ex.context);
    w.len(2, lists);
    write_map_body(w, ex.feature_lists);
    return out;
}

}  // namespace cumulus::data
