// A minimal protocol-buffers wire-format reader and writer (no .proto, no
// reflection): enough to hand-decode tf.train.Example and TensorBoard events.
//
// Wire format: each field is a varint tag (field_number << 3 | wire_type)
// followed by its value: 0 varint, 1 fixed64 (LE), 2 length-delimited
// (varint length + bytes), 3/4 start/end group (proto2, deprecated), 5 fixed32.
//
// The reader never trusts its input: varints are checked for truncation and
// for overflowing 64 bits, every length against the bytes left, groups for a
// matching end tag within a nesting limit. Every error names the context
// (e.g. the file and record), the absolute byte offset and what was expected.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <cumulus/core/error.hpp>

namespace cumulus::io::pb {

enum class WireType : std::uint8_t { Varint = 0, Fixed64 = 1, Len = 2, StartGroup = 3, EndGroup = 4, Fixed32 = 5 };

inline const char* wire_type_name(WireType t) {
    switch (t) {
        case WireType::Varint: return "varint";
        case WireType::Fixed64: return "fixed64";
        case WireType::Len: return "length-delimited";
        case WireType::StartGroup: return "start-group";
        case WireType::EndGroup: return "end-group";
        case WireType::Fixed32: return "fixed32";
    }
    return "invalid";
}

// Largest field number protobuf allows (2^29 - 1).
inline constexpr std::uint32_t kMaxFieldNumber = (1u << 29) - 1;
// Nesting limit for groups and for messages decoded through sub-readers
// (protobuf's default recursion limit).
inline constexpr int kMaxDepth = 100;

constexpr std::uint64_t zigzag_encode(std::int64_t v) {
    return (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63);
}
constexpr std::int64_t zigzag_decode(std::uint64_t v) {
    return static_cast<std::int64_t>(v >> 1) ^ -static_cast<std::int64_t>(v & 1);
}

// Bytes a varint of `v` takes (1..10).
constexpr std::size_t varint_size(std::uint64_t v) {
    std::size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        ++n;
    }
    return n;
}

constexpr std::size_t tag_size(std::uint32_t field) { return varint_size(std::uint64_t{field} << 3); }

// A tag read by Reader::next().
struct Field {
    std::uint32_t number = 0;
    WireType type = WireType::Varint;
    std::size_t offset = 0;  // absolute offset of the tag
};

// Reads one message's fields in order. Offsets in errors are absolute:
// `base_offset` is where `p` sits in the enclosing buffer or record, and
// readers of embedded messages keep counting from the outermost one.
// `context` (e.g. "'train.tfrecords': record 12: tf.train.Example") starts
// every error message.
class Reader {
public:
    Reader(const std::uint8_t* p, std::size_t n, std::string context = "protobuf", std::size_t base_offset = 0)
        : Reader(p, n, std::make_shared<const std::string>(std::move(context)), base_offset, 0) {}

    bool at_end() const { return pos_ == n_; }
    std::size_t offset() const { return base_ + pos_; }
    std::size_t remaining() const { return n_ - pos_; }
    const std::string& context() const { return *context_; }
    int depth() const { return depth_; }

    // Reads the next tag; false at the end of the message.
    bool next(Field& f) {
        if (pos_ == n_) return false;
        f.offset = offset();
        const std::uint64_t tag = read_varint_as("a field tag");
        if (tag > 0xFFFFFFFFu) fail_at(f.offset, "field tag ", tag, " does not fit 32 bits");
        const auto wt = static_cast<std::uint32_t>(tag & 7);
        f.number = static_cast<std::uint32_t>(tag >> 3);
        if (wt > 5) fail_at(f.offset, "invalid wire type ", wt, " in tag 0x", hex(tag), " (field ", f.number, ")");
        if (f.number == 0) fail_at(f.offset, "field number 0 in tag 0x", hex(tag), " (field numbers start at 1)");
        f.type = static_cast<WireType>(wt);
        return true;
    }

    std::uint64_t read_varint() { return read_varint_as("a varint"); }
    std::int64_t read_sint64() { return zigzag_decode(read_varint()); }
    std::int64_t read_int64() { return static_cast<std::int64_t>(read_varint()); }
    bool read_bool() { return read_varint() != 0; }

    std::uint32_t read_fixed32() {
        need(4, "a fixed32 value");
        std::uint32_t v = 0;
        for (int i = 3; i >= 0; --i) v = v << 8 | p_[pos_ + i];
        pos_ += 4;
        return v;
    }
    std::uint64_t read_fixed64() {
        need(8, "a fixed64 value");
        std::uint64_t v = 0;
        for (int i = 7; i >= 0; --i) v = v << 8 | p_[pos_ + i];
        pos_ += 8;
        return v;
    }
    float read_float() {
        const std::uint32_t bits = read_fixed32();
        float f;
        std::memcpy(&f, &bits, 4);
        return f;
    }
    double read_double() {
        const std::uint64_t bits = read_fixed64();
        double d;
        std::memcpy(&d, &bits, 8);
        return d;
    }

    // A length-delimited value: its bytes, and where they start.
    struct Bytes {
        const std::uint8_t* data;
        std::size_t size;
        std::size_t offset;  // absolute offset of data[0]
        std::string_view view() const { return {reinterpret_cast<const char*>(data), size}; }
    };
    Bytes read_bytes() {
        const std::size_t at = offset();
        const std::uint64_t len = read_varint_as("a length");
        if (len > remaining())
            fail_at(at, "length-delimited field of ", len, " bytes (length varint at byte offset ", at,
                    ") runs past the end: only ", remaining(), " bytes left");
        Bytes b{p_ + pos_, static_cast<std::size_t>(len), offset()};
        pos_ += static_cast<std::size_t>(len);
        return b;
    }
    std::string read_string() {
        Bytes b = read_bytes();
        return std::string(b.view());
    }
    // A reader over an embedded message (wire type 2), one level deeper.
    Reader read_message() {
        Bytes b = read_bytes();
        return Reader(b.data, b.size, context_, b.offset, depth_ + 1);
    }

    // Skips the value of a field whose tag next() just returned.
    void skip(const Field& f) {
        switch (f.type) {
            case WireType::Varint: (void)read_varint(); return;
            case WireType::Fixed64: need(8, "a fixed64 value"); pos_ += 8; return;
            case WireType::Fixed32: need(4, "a fixed32 value"); pos_ += 4; return;
            case WireType::Len: (void)read_bytes(); return;
            case WireType::StartGroup: skip_group(f, 1); return;
            case WireType::EndGroup:
                fail_at(f.offset, "end-group tag for field ", f.number, " without a matching start-group tag");
        }
    }

    // Calls fn(value) for each element of a repeated varint field, which may
    // come packed (one length-delimited run) or unpacked (one tag each).
    template <typename Fn>
    void read_repeated_varint(const Field& f, Fn&& fn) {
        if (f.type == WireType::Varint) {
            fn(read_varint());
            return;
        }
        expect_type(f, WireType::Len, "a packed varint list");
        Bytes b = read_bytes();
        Reader r(b.data, b.size, context_, b.offset, depth_);
        while (!r.at_end()) fn(r.read_varint_as("a packed varint"));
    }
    // Same for a repeated fixed32 field (floats), packed or not.
    template <typename Fn>
    void read_repeated_fixed32(const Field& f, Fn&& fn) {
        if (f.type == WireType::Fixed32) {
            fn(read_fixed32());
            return;
        }
        expect_type(f, WireType::Len, "a packed fixed32 list");
        Bytes b = read_bytes();
        if (b.size % 4 != 0)
            fail_at(b.offset, "packed fixed32 list of field ", f.number, " holds ", b.size,
                    " bytes, not a multiple of 4");
        for (std::size_t i = 0; i < b.size; i += 4) {
            std::uint32_t v = 0;
            for (int k = 3; k >= 0; --k) v = v << 8 | b.data[i + k];
            fn(v);
        }
    }

    void expect_type(const Field& f, WireType want, const char* what) {
        if (f.type != want)
            fail_at(f.offset, "field ", f.number, ": expected ", what, " (wire type ", int(want), ", ",
                    wire_type_name(want), "), found wire type ", int(f.type), " (", wire_type_name(f.type), ")");
    }

    template <typename... Args>
    [[noreturn]] void fail_at(std::size_t abs_offset, Args&&... args) const {
        CUMULUS_FAIL(*context_, ": at byte offset ", abs_offset, ": ", std::forward<Args>(args)...);
    }

private:
    Reader(const std::uint8_t* p, std::size_t n, std::shared_ptr<const std::string> context, std::size_t base_offset,
           int depth)
        : p_(p), n_(n), base_(base_offset), depth_(depth), context_(std::move(context)) {
        if (depth_ > kMaxDepth) fail(0, "messages nested deeper than ", kMaxDepth, " levels");
    }

    template <typename... Args>
    [[noreturn]] void fail(std::size_t rel, Args&&... args) const {
        fail_at(base_ + rel, std::forward<Args>(args)...);
    }

    static std::string hex(std::uint64_t v) {
        char buf[24];
        std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(v));
        return buf;
    }

    void need(std::size_t k, const char* what) const {
        if (remaining() < k)
            fail(pos_, "truncated: expected ", what, " (", k, " bytes), only ", remaining(), " bytes left");
    }

    std::uint64_t read_varint_as(const char* what) {
        const std::size_t start = pos_;
        std::uint64_t v = 0;
        for (int i = 0; i < 10; ++i) {
            if (pos_ == n_)
                fail(start, "truncated varint (", what, "): the data ends after ", i, " byte",
                     i == 1 ? "" : "s", " with the continuation bit set");
            const std::uint8_t b = p_[pos_++];
            // The 10th byte holds bit 63 only.
            if (i == 9 && b > 1) fail(start, "varint (", what, ") overflows 64 bits: 10th byte is 0x", hex(b));
            v |= std::uint64_t{b & 0x7Fu} << (7 * i);
            if (b < 0x80) return v;
        }
        fail(start, "varint (", what, ") longer than 10 bytes");
    }

    void skip_group(const Field& start, int level) {
        if (depth_ + level > kMaxDepth)
            fail_at(start.offset, "groups nested deeper than ", kMaxDepth, " levels");
        Field f;
        while (next(f)) {
            if (f.type == WireType::EndGroup) {
                if (f.number != start.number)
                    fail_at(f.offset, "end-group tag for field ", f.number, " inside the group of field ",
                            start.number, " (started at byte offset ", start.offset, ")");
                return;
            }
            if (f.type == WireType::StartGroup)
                skip_group(f, level + 1);
            else
                skip(f);
        }
        fail_at(start.offset, "group of field ", start.number, " has no end-group tag before the end of the message");
    }

    const std::uint8_t* p_;
    std::size_t n_;
    std::size_t pos_ = 0;
    std::size_t base_;
    int depth_;
    std::shared_ptr<const std::string> context_;
};

// Appends fields to a byte vector. Embedded messages are written by the
// caller with len() and a size computed beforehand (no copies).
class Writer {
public:
    explicit Writer(std::vector<std::uint8_t>& out) : out_(out) {}

    void varint(std::uint64_t v) {
        while (v >= 0x80) {
            out_.push_back(static_cast<std::uint8_t>(v | 0x80));
            v >>= 7;
        }
        out_.push_back(static_cast<std::uint8_t>(v));
    }
    void tag(std::uint32_t field, WireType t) {
        CUMULUS_CHECK(field >= 1 && field <= kMaxFieldNumber, "protobuf writer: field number ", field,
                      " out of range 1..", kMaxFieldNumber);
        varint(std::uint64_t{field} << 3 | static_cast<std::uint32_t>(t));
    }
    void fixed32(std::uint32_t v) {
        for (int i = 0; i < 4; ++i) out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    }
    void fixed64(std::uint64_t v) {
        for (int i = 0; i < 8; ++i) out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    }
    void raw(const void* p, std::size_t n) {
        const auto* b = static_cast<const std::uint8_t*>(p);
        out_.insert(out_.end(), b, b + n);
    }

    void varint_field(std::uint32_t field, std::uint64_t v) {
        tag(field, WireType::Varint);
        varint(v);
    }
    void int64_field(std::uint32_t field, std::int64_t v) { varint_field(field, static_cast<std::uint64_t>(v)); }
    void sint64_field(std::uint32_t field, std::int64_t v) { varint_field(field, zigzag_encode(v)); }
    void fixed32_field(std::uint32_t field, std::uint32_t v) {
        tag(field, WireType::Fixed32);
        fixed32(v);
    }
    void fixed64_field(std::uint32_t field, std::uint64_t v) {
        tag(field, WireType::Fixed64);
        fixed64(v);
    }
    void float_field(std::uint32_t field, float f) {
        std::uint32_t bits;
        std::memcpy(&bits, &f, 4);
        fixed32_field(field, bits);
    }
    void double_field(std::uint32_t field, double d) {
        std::uint64_t bits;
        std::memcpy(&bits, &d, 8);
        fixed64_field(field, bits);
    }
    // Tag and length of a length-delimited field whose `size` bytes follow.
    void len(std::uint32_t field, std::size_t size) {
        tag(field, WireType::Len);
        varint(size);
    }
    void bytes_field(std::uint32_t field, const void* p, std::size_t n) {
        len(field, n);
        raw(p, n);
    }
    void string_field(std::uint32_t field, std::string_view s) { bytes_field(field, s.data(), s.size()); }

    std::vector<std::uint8_t>& buffer() { return out_; }

private:
    std::vector<std::uint8_t>& out_;
};

// Bytes a length-delimited field of `size` bytes takes with its tag.
constexpr std::size_t len_field_size(std::uint32_t field, std::size_t size) {
    return tag_size(field) + varint_size(size) + size;
}

}  // namespace cumulus::io::pb
