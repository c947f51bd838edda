// safetensors (huggingface): the checkpoint format cumulus reads and writes.
//
// Layout: u64 LE N, then N bytes of UTF-8 JSON, then the data buffer. The
// JSON maps each tensor name to {"dtype", "shape", "data_offsets": [b, e]}
// (offsets relative to the buffer) plus an optional "__metadata__" object of
// string -> string. Tensors are little-endian, row-major. The reader trusts
// nothing: N is bounded, every offset and size is checked with overflow
// checks, and the tensors must tile the buffer exactly (no holes, no overlaps,
// no trailing bytes), as the reference (Rust) implementation demands.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <cumulus/core/dtype.hpp>
#include <cumulus/core/error.hpp>
#include <cumulus/core/shape.hpp>
#include <cumulus/core/tensor.hpp>
#include <cumulus/io/file.hpp>

namespace cumulus::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian data; this reader copies bytes as they are");

// The bound on the JSON header, as in the reference implementation.
inline constexpr std::uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;
// The longest shape a header may give; bounds the work a hostile header causes.
inline constexpr std::size_t kSafetensorsMaxRank = 64;

// The safetensors spelling of a dtype ("F32", "BF16", ...).
constexpr std::string_view safetensors_dtype_name(DType t) {
    switch (t) {
        case DType::f16: return "F16";
        case DType::bf16: return "BF16";
        case DType::f32: return "F32";
        case DType::f64: return "F64";
        case DType::i8: return "I8";
        case DType::i32: return "I32";
        case DType::i64: return "I64";
        case DType::u8: return "U8";
        case DType::boolean: return "BOOL";
    }
    return "?";
}

// The DType of a safetensors dtype name; false when cumulus has none.
inline bool safetensors_dtype_from_name(std::string_view s, DType& out) {
    for (DType t : {DType::f16, DType::bf16, DType::f32, DType::f64, DType::i8, DType::i32, DType::i64, DType::u8,
                    DType::boolean}) {
        if (safetensors_dtype_name(t) == s) {
            out = t;
            return true;
        }
    }
    return false;
}

struct SafetensorsEntry {
    DType dtype = DType::f32;
    std::vector<std::int64_t> shape;
    std::vector<std::uint8_t> bytes;  // little-endian, row-major
};

namespace detail {

// numel * elem_size of `shape`, multiplied in order with overflow checks (so
// Shape::numel on the same extents cannot overflow either). False on overflow.
inline bool safetensors_byte_size(const std::vector<std::int64_t>& shape, std::size_t elem_size,
                                  std::uint64_t& out) {
    std::int64_t n = 1;
    for (std::int64_t d : shape) {
        if (d < 0 || __builtin_mul_overflow(n, d, &n)) return false;
    }
    std::uint64_t bytes;
    if (__builtin_mul_overflow(static_cast<std::uint64_t>(n), static_cast<std::uint64_t>(elem_size), &bytes))
        return false;
    out = bytes;
    return true;
}

inline std::string shape_str(const std::vector<std::int64_t>& shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + "]";
}

// A tensor of a validated header: where its bytes lie in the data buffer.
struct SafetensorsSlot {
    std::string name;
    DType dtype;
    std::vector<std::int64_t> shape;
    std::uint64_t begin;
    std::uint64_t end;
};

struct SafetensorsHeader {
    std::vector<SafetensorsSlot> slots;  // sorted by offset: they tile the buffer
    std::map<std::string, std::string> metadata;
};

// Validates the header while nlohmann's SAX parser reads it: no DOM is built,
// duplicate keys are seen (a DOM keeps the last silently), nesting and array
// lengths are bounded by construction, and the work is linear in the header.
class SafetensorsHeaderReader final : public nlohmann::json_sax<nlohmann::json> {
public:
    SafetensorsHeaderReader(std::uint64_t buffer_len, const std::string& source)
        : buffer_len_(buffer_len), where_("safetensors file '" + source + "': ") {}

    SafetensorsHeader take() {
        CUMULUS_CHECK(state_ == State::done, where_, "header ended early");
        return std::move(header_);
    }

    bool null() override { return scalar("null"); }
    bool boolean(bool) override { return scalar("boolean"); }
    bool number_integer(number_integer_t v) override {
        if (v < 0) {  // the lexer reports non-negative literals as unsigned, except "-0"
            if (state_ == State::shape) fail(tensor_where(), "shape has a negative extent ", v);
            if (state_ == State::offsets) bad_offsets();
            return scalar("number");
        }
        return number_unsigned(static_cast<number_unsigned_t>(v));
    }
    bool number_unsigned(number_unsigned_t v) override {
        if (state_ == State::shape) {
            if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
                fail(tensor_where(), "shape has an extent ", v, " beyond 2^63-1");
            if (slot_.shape.size() == kSafetensorsMaxRank)
                fail(tensor_where(), "shape is longer than ", kSafetensorsMaxRank, " elements");
            slot_.shape.push_back(static_cast<std::int64_t>(v));
            return true;
        }
        if (state_ == State::offsets) {
            if (n_offsets_ == 2) bad_offsets();
            offsets_[n_offsets_++] = v;
            return true;
        }
        return scalar("number");
    }
    bool number_float(number_float_t, const string_t&) override { return scalar("number"); }
    bool binary(binary_t&) override { return scalar("binary"); }
    bool string(string_t& s) override {
        if (state_ == State::metadata) {
            header_.metadata.emplace(key_, std::move(s));
            return true;
        }
        if (state_ == State::tensor && key_ == "dtype") {
            if (!safetensors_dtype_from_name(s, slot_.dtype))
                fail(tensor_where(), "unsupported dtype '", s,
                     "' (expected one of F16, BF16, F32, F64, I8, I32, I64, U8, BOOL)");
            dtype_name_ = std::move(s);
            return true;
        }
        return scalar("string");
    }

    bool start_object(std::size_t) override {
        switch (state_) {
            case State::start: state_ = State::top; return true;
            case State::top:
                if (key_ == "__metadata__") {
                    state_ = State::metadata;
                } else {
                    state_ = State::tensor;
                    slot_ = SafetensorsSlot{key_, DType::f32, {}, 0, 0};
                    seen_ = 0;
                }
                return true;
            default: return scalar("object");
        }
    }
    bool key(string_t& k) override {
        if (state_ == State::top) {
            if (!names_.insert(k).second) fail(where_, "duplicate tensor name '", k, "' in the header");
        } else if (state_ == State::metadata) {
            if (header_.metadata.count(k)) fail(where_, "duplicate key '", k, "' in \"__metadata__\"");
        } else {  // tensor
            unsigned bit = k == "dtype" ? 1u : k == "shape" ? 2u : k == "data_offsets" ? 4u : 0u;
            if (bit == 0) fail(tensor_where(), "unexpected key '", k, "' (expected dtype, shape, data_offsets)");
            if (seen_ & bit) fail(tensor_where(), "duplicate key '", k, "'");
            seen_ |= bit;
        }
        key_ = std::move(k);
        return true;
    }
    bool end_object() override {
        switch (state_) {
            case State::top: state_ = State::done; break;
            case State::metadata: state_ = State::top; break;
            default: finish_tensor(); state_ = State::top; break;
        }
        return true;
    }
    bool start_array(std::size_t) override {
        if (state_ == State::tensor && key_ == "shape") {
            state_ = State::shape;
            return true;
        }
        if (state_ == State::tensor && key_ == "data_offsets") {
            state_ = State::offsets;
            n_offsets_ = 0;
            return true;
        }
        return scalar("array");
    }
    bool end_array() override {
        if (state_ == State::offsets && n_offsets_ != 2) bad_offsets();
        state_ = State::tensor;
        return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
        fail(where_, "header is not valid JSON: ", e.what());
    }

private:
    enum class State { start, top, metadata, tensor, shape, offsets, done };

    template <typename... A>
    [[noreturn]] void fail(A&&... a) const {
        throw Error(cumulus::detail::concat(std::forward<A>(a)...));
    }
    std::string tensor_where() const { return where_ + "tensor '" + slot_.name + "': "; }
    [[noreturn]] void bad_offsets() const {
        fail(tensor_where(), "data_offsets: expected [begin, end], two non-negative integers");
    }

    // A JSON value of `type` where the state admits none of that type.
    bool scalar(const char* type) {
        switch (state_) {
            case State::start: fail(where_, "header is a JSON ", type, ", expected an object");
            case State::top:
                if (key_ == "__metadata__")
                    fail(where_, "\"__metadata__\" is a JSON ", type, ", expected an object of strings");
                fail(where_, "tensor '", key_, "': entry is a JSON ", type, ", expected an object");
            case State::metadata: fail(where_, "metadata value of '", key_, "' is a JSON ", type, ", expected a string");
            case State::tensor:
                if (key_ == "dtype") fail(tensor_where(), "dtype is a JSON ", type, ", expected a string");
                if (key_ == "shape") fail(tensor_where(), "shape is a JSON ", type, ", expected an array");
                bad_offsets();
            case State::shape:
                fail(tensor_where(), "shape holds a JSON ", type, ", expected non-negative integers");
            case State::offsets: bad_offsets();
            case State::done: break;
        }
        fail(where_, "unexpected JSON ", type, " after the header object");
    }

    void finish_tensor() {
        SafetensorsSlot& s = slot_;
        for (auto [bit, name] : {std::pair{1u, "dtype"}, std::pair{2u, "shape"}, std::pair{4u, "data_offsets"}})
            if (!(seen_ & bit)) fail(tensor_where(), "missing key '", name, "'");
        s.begin = offsets_[0];
        s.end = offsets_[1];
        if (s.begin > s.end) fail(tensor_where(), "data_offsets [", s.begin, ", ", s.end, "] end before they begin");
        if (s.end > buffer_len_)
            fail(tensor_where(), "data_offsets [", s.begin, ", ", s.end, "] reach past the data buffer of ",
                 buffer_len_, " bytes");
        std::uint64_t want;
        if (!safetensors_byte_size(s.shape, dtype_size(s.dtype), want))
            fail(tensor_where(), "shape ", shape_str(s.shape), " of ", dtype_name_, " overflows a 64-bit byte count");
        if (want != s.end - s.begin)
            fail(tensor_where(), "shape ", shape_str(s.shape), " of ", dtype_name_, " needs ", want,
                 " bytes, data_offsets [", s.begin, ", ", s.end, "] hold ", s.end - s.begin);
        header_.slots.push_back(std::move(s));
    }

    std::uint64_t buffer_len_;
    std::string where_;
    State state_ = State::start;
    std::string key_;  // the last key read at the current level
    std::unordered_set<std::string> names_;
    SafetensorsSlot slot_;
    std::string dtype_name_;
    unsigned seen_ = 0;  // bits: dtype, shape, data_offsets
    std::uint64_t offsets_[2] = {0, 0};
    int n_offsets_ = 0;
    SafetensorsHeader header_;
};

// Parses and validates the JSON header of `source`. `buffer_len` is the size
// of the data buffer that follows the header.
inline SafetensorsHeader parse_safetensors_header(std::string_view text, std::uint64_t buffer_len,
                                                  const std::string& source) {
    const std::string where = "safetensors file '" + source + "': ";
    // nlohmann reads a NUL byte as the end of input and would ignore what follows.
    if (auto nul = text.find('\0'); nul != std::string_view::npos)
        CUMULUS_FAIL(where, "header is not valid JSON: NUL byte at file offset ", 8 + nul,
                     " (padding must be spaces)");
    SafetensorsHeaderReader reader(buffer_len, source);
    try {
        nlohmann::json::sax_parse(text.begin(), text.end(), &reader);
    } catch (const nlohmann::json::exception& e) {
        CUMULUS_FAIL(where, "header is not valid JSON: ", e.what());
    }
    SafetensorsHeader h = reader.take();

    // Sorted by (begin, end), each tensor must start where the previous ended.
    std::sort(h.slots.begin(), h.slots.end(), [](const SafetensorsSlot& a, const SafetensorsSlot& b) {
        return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
    });
    std::uint64_t pos = 0;
    const SafetensorsSlot* prev = nullptr;
    for (const auto& s : h.slots) {
        if (s.begin < pos)
            CUMULUS_FAIL(where, "tensor '", s.name, "' data_offsets [", s.begin, ", ", s.end, "] overlap tensor '",
                         prev->name, "' [", prev->begin, ", ", prev->end, "]");
        if (s.begin > pos)
            CUMULUS_FAIL(where, "hole in the data buffer: tensor '", s.name, "' begins at byte ", s.begin,
                         ", expected ", pos, prev ? " (where '" + prev->name + "' ends)" : std::string(" (the start)"));
        pos = s.end;
        prev = &s;
    }
    if (pos != buffer_len)
        CUMULUS_FAIL(where, "the tensors cover ", pos, " bytes of the data buffer, expected all ", buffer_len,
                     " (", buffer_len - pos, " bytes after the last tensor belong to none)");
    return h;
}

inline std::uint64_t read_u64_le(const std::uint8_t* p) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
    return v;
}

}  // namespace detail

// An ordered set of named tensors plus string metadata: one safetensors file.
// Names keep the order of add() calls; a parsed file keeps the order of the
// tensors in its data buffer (which for files written here is the add order).
class SafetensorsFile {
public:
    // Adds a copy of `bytes` bytes at `data`: `dtype` elements of `shape`, little-endian, row-major.
    void add(const std::string& name, DType dtype, std::vector<std::int64_t> shape, const void* data,
             std::size_t bytes) {
        CUMULUS_CHECK(name != "__metadata__", "safetensors: '__metadata__' is reserved and cannot name a tensor");
        CUMULUS_CHECK(!contains(name), "safetensors: tensor '", name, "' added twice");
        std::uint64_t want;
        CUMULUS_CHECK(detail::safetensors_byte_size(shape, dtype_size(dtype), want), "safetensors: tensor '", name,
                      "': shape ", detail::shape_str(shape), " has a negative extent or overflows");
        CUMULUS_CHECK(want == bytes, "safetensors: tensor '", name, "': shape ", detail::shape_str(shape), " of ",
                      safetensors_dtype_name(dtype), " needs ", want, " bytes, got ", bytes);
        CUMULUS_CHECK(bytes == 0 || data != nullptr, "safetensors: tensor '", name, "': null data");
        SafetensorsEntry e;
        e.dtype = dtype;
        e.shape = std::move(shape);
        const auto* p = static_cast<const std::uint8_t*>(data);
        if (bytes) e.bytes.assign(p, p + bytes);
        index_.emplace(name, entries_.size());
        entries_.emplace_back(name, std::move(e));
    }

    // Adds a copy of a CPU tensor.
    template <typename T>
    void add(const std::string& name, const Tensor<T>& t) {
        CUMULUS_CHECK(t.defined(), "safetensors: tensor '", name, "' is undefined");
        CUMULUS_CHECK(t.device().is_cpu(), "safetensors: tensor '", name, "' lives on ", t.device().str(),
                      "; copy it to the CPU first");
        add(name, dtype_v<T>, std::vector<std::int64_t>(t.shape().begin(), t.shape().end()), t.data(), t.nbytes());
    }

    bool contains(const std::string& name) const { return index_.count(name) != 0; }

    const SafetensorsEntry& get(const std::string& name) const {
        auto it = index_.find(name);
        if (it == index_.end()) {
            std::string avail;
            std::size_t shown = 0;
            for (const auto& [n, e] : entries_) {
                if (shown == 20) {
                    avail += ", ... (" + std::to_string(entries_.size() - shown) + " more)";
                    break;
                }
                avail += (shown++ ? ", '" : "'") + n + "'";
            }
            CUMULUS_FAIL("safetensors ", source_, ": no tensor '", name, "'; available: ",
                         avail.empty() ? std::string("none") : avail);
        }
        return entries_[it->second].second;
    }

    // A CPU tensor holding a copy of entry `name`, whose dtype must be T's.
    template <typename T>
    Tensor<T> tensor(const std::string& name) const {
        const SafetensorsEntry& e = get(name);
        CUMULUS_CHECK(e.dtype == dtype_v<T>, "safetensors ", source_, ": tensor '", name, "' holds ",
                      safetensors_dtype_name(e.dtype), ", expected ", safetensors_dtype_name(dtype_v<T>));
        CUMULUS_CHECK(e.shape.size() <= static_cast<std::size_t>(Shape::kMaxRank), "safetensors ", source_,
                      ": tensor '", name, "' has rank ", e.shape.size(), ", cumulus tensors allow at most ",
                      Shape::kMaxRank);
        if constexpr (std::is_same_v<T, bool>) {
            // Any byte but 0 or 1 is not a valid bool object.
            for (std::size_t i = 0; i < e.bytes.size(); ++i)
                CUMULUS_CHECK(e.bytes[i] <= 1, "safetensors ", source_, ": BOOL tensor '", name, "' element ", i,
                              " is ", int(e.bytes[i]), ", expected 0 or 1");
        }
        Tensor<T> t = Tensor<T>::empty(Shape(e.shape.begin(), e.shape.end()));
        if (!e.bytes.empty()) std::memcpy(t.data(), e.bytes.data(), e.bytes.size());
        return t;
    }

    std::vector<std::string> names() const {
        std::vector<std::string> v;
        v.reserve(entries_.size());
        for (const auto& [n, e] : entries_) v.push_back(n);
        return v;
    }
    std::size_t size() const { return entries_.size(); }

    std::map<std::string, std::string>& metadata() { return metadata_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }

    // Where a parsed file came from (for messages); "(in memory)" otherwise.
    const std::string& source() const { return source_; }

    // The header: "__metadata__" first (sorted keys; left out when empty), then
    // the tensors in order with contiguous data_offsets in that order, compact
    // JSON, padded with spaces so the data buffer starts 8-byte aligned.
    std::string header_json() const {
        using nlohmann::json;
        std::string h = "{";
        try {
            if (!metadata_.empty()) h += "\"__metadata__\":" + json(metadata_).dump();
            std::uint64_t off = 0;
            for (const auto& [name, e] : entries_) {
                if (h.size() > 1) h += ',';
                h += json(name).dump();
                h += ":{\"dtype\":\"";
                h += safetensors_dtype_name(e.dtype);
                h += "\",\"shape\":[";
                for (std::size_t i = 0; i < e.shape.size(); ++i) {
                    if (i) h += ',';
                    h += std::to_string(e.shape[i]);
                }
                h += "],\"data_offsets\":[" + std::to_string(off) + ",";
                off += e.bytes.size();
                h += std::to_string(off) + "]}";
            }
        } catch (const json::exception& ex) {
            CUMULUS_FAIL("safetensors: a tensor name or metadata string is not valid UTF-8: ", ex.what());
        }
        h += '}';
        h.append((8 - h.size() % 8) % 8, ' ');
        return h;
    }

    std::vector<std::uint8_t> serialize() const {
        std::string h = header_json();
        std::size_t total = 8 + h.size();
        for (const auto& [n, e] : entries_) total += e.bytes.size();
        std::vector<std::uint8_t> out;
        out.reserve(total);
        append_u64_le(out, h.size());
        out.insert(out.end(), h.begin(), h.end());
        for (const auto& [n, e] : entries_) out.insert(out.end(), e.bytes.begin(), e.bytes.end());
        return out;
    }

    static SafetensorsFile parse(const std::uint8_t* p, std::size_t n, const std::string& name_for_errors) {
        const std::string where = "safetensors file '" + name_for_errors + "': ";
        if (n < 8) CUMULUS_FAIL(where, "too short: ", n, " bytes, expected at least 8 for the header length");
        std::uint64_t hlen = detail::read_u64_le(p);
        check_header_len(hlen, n - 8, where);
        auto h = detail::parse_safetensors_header(std::string_view(reinterpret_cast<const char*>(p + 8), hlen),
                                                  n - 8 - hlen, name_for_errors);
        SafetensorsFile f;
        f.source_ = "'" + name_for_errors + "'";
        f.metadata_ = std::move(h.metadata);
        const std::uint8_t* buf = p + 8 + hlen;
        for (auto& s : h.slots) {
            SafetensorsEntry e;
            e.dtype = s.dtype;
            e.shape = std::move(s.shape);
            e.bytes.assign(buf + s.begin, buf + s.end);
            f.index_.emplace(s.name, f.entries_.size());
            f.entries_.emplace_back(std::move(s.name), std::move(e));
        }
        return f;
    }

    // Writes path.tmp, then renames it over path.
    void save(const std::string& path) const {
        std::string h = header_json();
        std::vector<std::uint8_t> len;
        append_u64_le(len, h.size());
        AtomicFileWriter w(path);
        w.write(len.data(), len.size());
        w.write(h.data(), h.size());
        for (const auto& [n, e] : entries_) w.write(e.bytes.data(), e.bytes.size());
        w.commit();
    }

    // Reads the tensors straight into their entries (no second copy of the file).
    static SafetensorsFile load(const std::string& path) {
        InputFile in(path);
        const std::string where = "safetensors file '" + path + "': ";
        const std::uint64_t size = in.size();
        if (size < 8) CUMULUS_FAIL(where, "too short: ", size, " bytes, expected at least 8 for the header length");
        std::uint8_t len[8];
        in.read_exact(len, 8, "the header length");
        std::uint64_t hlen = detail::read_u64_le(len);
        check_header_len(hlen, size - 8, where);
        std::string text(hlen, '\0');
        in.read_exact(text.data(), hlen, "the JSON header");
        auto h = detail::parse_safetensors_header(text, size - 8 - hlen, path);
        SafetensorsFile f;
        f.source_ = "'" + path + "'";
        f.metadata_ = std::move(h.metadata);
        // The slots tile the buffer in order, so one sequential pass reads them all.
        for (auto& s : h.slots) {
            SafetensorsEntry e;
            e.dtype = s.dtype;
            e.shape = std::move(s.shape);
            e.bytes.resize(s.end - s.begin);
            std::string what = "tensor '" + s.name + "'";
            in.read_exact(e.bytes.data(), e.bytes.size(), what.c_str());
            f.index_.emplace(s.name, f.entries_.size());
            f.entries_.emplace_back(std::move(s.name), std::move(e));
        }
        return f;
    }

private:
    static void append_u64_le(std::vector<std::uint8_t>& out, std::uint64_t v) {
        for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    }

    static void check_header_len(std::uint64_t hlen, std::uint64_t rest, const std::string& where) {
        if (hlen > kSafetensorsMaxHeaderBytes)
            CUMULUS_FAIL(where, "header length ", hlen, " exceeds the limit of ", kSafetensorsMaxHeaderBytes,
                         " bytes");
        if (hlen > rest)
            CUMULUS_FAIL(where, "header length ", hlen, " exceeds the ", rest, " bytes after the length field");
    }

    std::vector<std::pair<std::string, SafetensorsEntry>> entries_;
    std::unordered_map<std::string, std::size_t> index_;
    std::map<std::string, std::string> metadata_;
    std::string source_ = "(in memory)";
};

}  // namespace cumulus::io
