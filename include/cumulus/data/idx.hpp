// IDX, the array format of the MNIST files (LeCun et al.), raw or gzipped.
//
//   00 00 <type> <rank>   then rank big-endian u32 dims, then the elements,
//   big-endian, row-major. Types: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32,
//   0x0D f32, 0x0E f64.
//
// The reader never trusts its input: every length is checked, the data must
// exactly fill the file, and every error names the file (and the offset or
// the sizes expected and found).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <cumulus/core/error.hpp>
#include <cumulus/core/shape.hpp>
#include <cumulus/core/tensor.hpp>
#include <cumulus/io/gzip.hpp>

namespace cumulus::data {

enum class IdxType : std::uint8_t { u8 = 0x08, i8 = 0x09, i16 = 0x0B, i32 = 0x0C, f32 = 0x0D, f64 = 0x0E };

// Limits that keep a hostile header from asking for absurd sizes.
inline constexpr int kIdxMaxRank = 8;
inline constexpr std::int64_t kIdxMaxElements = (std::int64_t{1} << 31) - 1;

inline bool idx_type_known(std::uint8_t code) {
    return code == 0x08 || code == 0x09 || code == 0x0B || code == 0x0C || code == 0x0D || code == 0x0E;
}

constexpr std::size_t idx_type_size(IdxType t) {
    switch (t) {
        case IdxType::u8: case IdxType::i8: return 1;
        case IdxType::i16: return 2;
        case IdxType::i32: case IdxType::f32: return 4;
        case IdxType::f64: return 8;
    }
    return 0;
}

constexpr std::string_view idx_type_name(IdxType t) {
    switch (t) {
        case IdxType::u8: return "uint8";
        case IdxType::i8: return "int8";
        case IdxType::i16: return "int16";
        case IdxType::i32: return "int32";
        case IdxType::f32: return "float32";
        case IdxType::f64: return "float64";
    }
    return "?";
}

template <typename T> struct idx_type_of;
template <> struct idx_type_of<std::uint8_t> { static constexpr IdxType value = IdxType::u8; };
template <> struct idx_type_of<std::int8_t> { static constexpr IdxType value = IdxType::i8; };
template <> struct idx_type_of<std::int16_t> { static constexpr IdxType value = IdxType::i16; };
template <> struct idx_type_of<std::int32_t> { static constexpr IdxType value = IdxType::i32; };
template <> struct idx_type_of<float> { static constexpr IdxType value = IdxType::f32; };
template <> struct idx_type_of<double> { static constexpr IdxType value = IdxType::f64; };
template <typename T> inline constexpr IdxType idx_type_v = idx_type_of<T>::value;

// The element types IDX can store.
template <typename T>
concept IdxElement = requires { idx_type_of<T>::value; };

namespace detail {

inline std::string dims_str(const std::vector<std::int64_t>& dims) {
    std::string s = "(";
    for (std::size_t i = 0; i < dims.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(dims[i]);
    }
    if (dims.size() == 1) s += ",";
    return s + ")";
}

inline std::string hex_byte(std::uint8_t b) {
    const char* digits = "0123456789abcdef";
    return std::string("0x") + digits[b >> 4] + digits[b & 15];
}

// Calls f(value) with the element type named by `t`, as a typed null pointer.
template <typename F>
decltype(auto) visit_idx_type(IdxType t, F&& f) {
    switch (t) {
        case IdxType::u8: return f(static_cast<std::uint8_t*>(nullptr));
        case IdxType::i8: return f(static_cast<std::int8_t*>(nullptr));
        case IdxType::i16: return f(static_cast<std::int16_t*>(nullptr));
        case IdxType::i32: return f(static_cast<std::int32_t*>(nullptr));
        case IdxType::f32: return f(static_cast<float*>(nullptr));
        case IdxType::f64: return f(static_cast<double*>(nullptr));
    }
    CUMULUS_FAIL("IDX: invalid type code ", int(t));
}

// Reverses the bytes of each `size`-byte element in place (big- <-> little-endian).
inline void swap_elements(std::uint8_t* p, std::size_t bytes, std::size_t size) {
    if constexpr (std::endian::native == std::endian::big) return;
    if (size == 1) return;
    for (std::size_t i = 0; i + size <= bytes; i += size)
        for (std::size_t a = i, b = i + size - 1; a < b; ++a, --b) std::swap(p[a], p[b]);
}

// Whether `v` is exactly representable in T (integers: in range and integral).
template <typename T, typename S>
bool fits_exactly(S v) {
    if constexpr (std::is_floating_point_v<T>) {
        return true;  // float targets round, as any float conversion does
    } else if constexpr (std::is_floating_point_v<S>) {
        // [-2^digits, 2^digits) for signed T, [0, 2^digits) for unsigned: both bounds exact in S.
        const S bound = std::ldexp(S(1), std::numeric_limits<T>::digits);
        const S low = std::is_signed_v<T> ? -bound : S(0);
        return std::isfinite(v) && v == std::trunc(v) && v >= low && v < bound;
    } else {
        return std::in_range<T>(v);
    }
}

}  // namespace detail

// An IDX array in memory: the type, the dims, and the elements in host byte order.
struct IdxArray {
    IdxType type = IdxType::u8;
    std::vector<std::int64_t> dims;
    std::vector<std::uint8_t> data;  // numel() * idx_type_size(type) bytes, host byte order

    std::int64_t numel() const {
        std::int64_t n = 1;
        for (auto d : dims) n *= d;
        return n;
    }
    std::size_t elem_size() const { return idx_type_size(type); }

    // The elements converted to T. Integer targets require every value to be
    // representable exactly (else cumulus::Error naming the element); float
    // targets round. `name` goes into error messages.
    template <typename T>
    std::vector<T> to_vector(const std::string& name = "IDX array") const {
        static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>, "IdxArray::to_vector: arithmetic T");
        const std::size_t n = static_cast<std::size_t>(numel());
        CUMULUS_CHECK(data.size() == n * elem_size(), name, ": ", data.size(), " data bytes for ", n,
                      " elements of ", idx_type_name(type));
        std::vector<T> out(n);
        detail::visit_idx_type(type, [&](auto* tag) {
            using S = std::remove_pointer_t<decltype(tag)>;
            for (std::size_t i = 0; i < n; ++i) {
                S v;
                std::memcpy(&v, data.data() + i * sizeof(S), sizeof(S));
                if (!detail::fits_exactly<T>(v))
                    CUMULUS_FAIL(name, ": element ", i, " (", +v, ") of ", idx_type_name(type),
                                 " data cannot be converted exactly to the requested integer type");
                out[i] = static_cast<T>(v);
            }
        });
        return out;
    }

    // A CPU Tensor<T> of shape dims (rank at most Shape::kMaxRank), converted
    // as to_vector does.
    template <typename T>
    Tensor<T> to_tensor(const std::string& name = "IDX array") const {
        CUMULUS_CHECK(dims.size() <= static_cast<std::size_t>(Shape::kMaxRank), name, ": IDX rank ", dims.size(),
                      " exceeds the Tensor maximum rank ", Shape::kMaxRank);
        Shape shape(dims.begin(), dims.end());
        Tensor<T> t = Tensor<T>::empty(shape);
        if constexpr (IdxElement<T>) {
            if (type == idx_type_v<T>) {
                CUMULUS_CHECK(data.size() == t.nbytes(), name, ": ", data.size(), " data bytes for shape ",
                              shape.str());
                if (!data.empty()) std::memcpy(t.data(), data.data(), data.size());
                return t;
            }
        }
        std::vector<T> v = to_vector<T>(name);
        if (!v.empty()) std::memcpy(t.data(), v.data(), v.size() * sizeof(T));
        return t;
    }
};

// An IdxArray of type idx_type_v<T> holding `values` with shape `dims`.
template <IdxElement T>
IdxArray make_idx(std::vector<std::int64_t> dims, const T* values, std::size_t count) {
    IdxArray a;
    a.type = idx_type_v<T>;
    a.dims = std::move(dims);
    CUMULUS_CHECK(a.numel() == static_cast<std::int64_t>(count), "make_idx: dims ", detail::dims_str(a.dims),
                  " need ", a.numel(), " values, got ", count);
    a.data.resize(count * sizeof(T));
    if (count > 0) std::memcpy(a.data.data(), values, count * sizeof(T));
    return a;
}

template <IdxElement T>
IdxArray make_idx(std::vector<std::int64_t> dims, const std::vector<T>& values) {
    return make_idx<T>(std::move(dims), values.data(), values.size());
}

// A CPU tensor as an IdxArray of the same element type (u8, i8, i32, f32 or f64).
template <IdxElement T>
IdxArray make_idx(const Tensor<T>& t) {
    CUMULUS_CHECK(t.device().is_cpu(), "make_idx: tensor on ", t.device().str(), "; copy it to the CPU first");
    return make_idx<T>(std::vector<std::int64_t>(t.shape().begin(), t.shape().end()), t.data(),
                       static_cast<std::size_t>(t.numel()));
}

// Parses an uncompressed IDX image of `n` bytes. `name` (a file name) goes
// into every error message.
inline IdxArray parse_idx_raw(const std::uint8_t* p, std::size_t n, const std::string& name) {
    if (n < 4)
        CUMULUS_FAIL(name, ": truncated IDX header: need at least 4 bytes (00 00 <type> <rank>), found ", n);
    if (p[0] != 0 || p[1] != 0) {
        if (io::is_gzip(p, n))
            CUMULUS_FAIL(name, ": bad IDX magic: gzip data where raw IDX was expected (use parse_idx or read_idx)");
        CUMULUS_FAIL(name, ": bad IDX magic: bytes 0 and 1 must be 00 00, found ", detail::hex_byte(p[0]), " ",
                     detail::hex_byte(p[1]), " (not an IDX file?)");
    }
    if (!idx_type_known(p[2]))
        CUMULUS_FAIL(name, ": unknown IDX type code ", detail::hex_byte(p[2]),
                     " at byte offset 2 (known: 0x08 uint8, 0x09 int8, 0x0b int16, 0x0c int32, 0x0d float32, "
                     "0x0e float64)");
    IdxArray a;
    a.type = static_cast<IdxType>(p[2]);
    const int rank = p[3];
    if (rank < 1 || rank > kIdxMaxRank)
        CUMULUS_FAIL(name, ": IDX rank (byte offset 3) is ", rank, "; supported ranks are 1..", kIdxMaxRank);
    const std::size_t header = 4 + 4 * static_cast<std::size_t>(rank);
    if (n < header)
        CUMULUS_FAIL(name, ": truncated IDX header: rank ", rank, " needs a ", header, "-byte header, the data has ",
                     n, " bytes");
    // The product of the non-zero dims is bounded, so no partial product of
    // any ordering overflows, even for arrays with a zero dim.
    std::int64_t nonzero_product = 1;
    for (int i = 0; i < rank; ++i) {
        const std::uint8_t* q = p + 4 + 4 * i;
        const std::int64_t d = std::int64_t(q[0]) << 24 | std::int64_t(q[1]) << 16 | std::int64_t(q[2]) << 8 | q[3];
        a.dims.push_back(d);
        if (d == 0) continue;
        if (d > kIdxMaxElements / nonzero_product)
            CUMULUS_FAIL(name, ": IDX dims too large: dim ", i, " (", d, ", at byte offset ", 4 + 4 * i,
                         ") makes the element count exceed the limit of ", kIdxMaxElements);
        nonzero_product *= d;
    }
    const std::size_t count = static_cast<std::size_t>(a.numel());
    const std::size_t expected = count * a.elem_size();
    const std::size_t found = n - header;
    if (found != expected)
        CUMULUS_FAIL(name, ": IDX data length mismatch: dims ", detail::dims_str(a.dims), " of ",
                     idx_type_name(a.type), ": expected ", expected, " data bytes after the ", header,
                     "-byte header, found ", found, found < expected ? " (truncated file)" : " (extra trailing data)");
    a.data.assign(p + header, p + n);
    detail::swap_elements(a.data.data(), a.data.size(), a.elem_size());
    return a;
}

// The largest IDX header: 4 bytes, then kIdxMaxRank dims.
inline constexpr std::size_t kIdxMaxHeader = 4 + 4 * kIdxMaxRank;

// Parses IDX bytes held in memory, raw or gzipped (told apart by the gzip magic).
// For gzip, the header is read first and decompression is capped a little
// above the size it declares, so a small bomb cannot exhaust memory.
inline IdxArray parse_idx(const std::uint8_t* p, std::size_t n, const std::string& name) {
    if (!io::is_gzip(p, n)) return parse_idx_raw(p, n, name);
    std::vector<std::uint8_t> head = io::gunzip_prefix(p, n, name, kIdxMaxHeader);
    std::size_t cap = kIdxMaxHeader;
    bool declared = false;
    if (head.size() >= 4 && head[0] == 0 && head[1] == 0 && idx_type_known(head[2]) && head[3] >= 1 &&
        head[3] <= kIdxMaxRank && head.size() >= 4 + 4 * std::size_t(head[3])) {
        // Only a header that would parse earns a larger cap; anything else
        // fails in parse_idx_raw with the precise message.
        std::size_t elems = 1;
        bool ok = true;
        for (int i = 0; i < head[3]; ++i) {
            const std::uint8_t* q = head.data() + 4 + 4 * i;
            std::size_t d = std::size_t(q[0]) << 24 | std::size_t(q[1]) << 16 | std::size_t(q[2]) << 8 | q[3];
            if (d != 0 && elems > std::size_t(kIdxMaxElements) / d) ok = false;
            elems = ok ? elems * d : 0;
        }
        if (ok) {
            cap = 4 + 4 * std::size_t(head[3]) + elems * idx_type_size(static_cast<IdxType>(head[2]));
            declared = true;
        }
    }
    // The slack lets small trailing garbage reach parse_idx_raw, which reports exact sizes.
    std::vector<std::uint8_t> raw;
    try {
        raw = io::gunzip(p, n, name, cap + 65536);
    } catch (const Error& e) {
        if (!declared) throw;
        throw Error(std::string(e.what()) + " [reading gzipped IDX; its header declares a " + std::to_string(cap) +
                    "-byte file]");
    }
    return parse_idx_raw(raw.data(), raw.size(), name + " (decompressed)");
}

inline IdxArray parse_idx(const std::vector<std::uint8_t>& bytes, const std::string& name) {
    return parse_idx(bytes.data(), bytes.size(), name);
}

// Reads an IDX file, raw or gzipped (told apart by the magic, not the name).
inline IdxArray read_idx(const std::string& path) {
    std::vector<std::uint8_t> bytes = io::read_file(path);
    return parse_idx(bytes.data(), bytes.size(), path);
}

// The IDX encoding of `a` (header and big-endian data).
inline std::vector<std::uint8_t> serialize_idx(const IdxArray& a, const std::string& name = "IDX array") {
    CUMULUS_CHECK(idx_type_known(static_cast<std::uint8_t>(a.type)), name, ": invalid IDX type code ",
                  int(a.type));
    CUMULUS_CHECK(!a.dims.empty() && a.dims.size() <= std::size_t(kIdxMaxRank), name, ": IDX rank must be 1..",
                  kIdxMaxRank, ", got ", a.dims.size());
    std::int64_t nonzero_product = 1;
    for (std::size_t i = 0; i < a.dims.size(); ++i) {
        const std::int64_t d = a.dims[i];
        CUMULUS_CHECK(d >= 0 && d <= std::int64_t{0xffffffff}, name, ": IDX dim ", i, " is ", d,
                      "; it must fit in an unsigned 32-bit integer");
        if (d == 0) continue;
        CUMULUS_CHECK(d <= kIdxMaxElements / nonzero_product, name, ": IDX dims ", detail::dims_str(a.dims),
                      " exceed the limit of ", kIdxMaxElements, " elements");
        nonzero_product *= d;
    }
    const std::size_t expected = static_cast<std::size_t>(a.numel()) * a.elem_size();
    CUMULUS_CHECK(a.data.size() == expected, name, ": IDX dims ", detail::dims_str(a.dims), " of ",
                  idx_type_name(a.type), " need ", expected, " data bytes, the array holds ", a.data.size());
    const std::size_t header = 4 + 4 * a.dims.size();
    std::vector<std::uint8_t> out(header + a.data.size());
    out[2] = static_cast<std::uint8_t>(a.type);
    out[3] = static_cast<std::uint8_t>(a.dims.size());
    for (std::size_t i = 0; i < a.dims.size(); ++i) {
        const auto d = static_cast<std::uint32_t>(a.dims[i]);
        std::uint8_t* q = out.data() + 4 + 4 * i;
        q[0] = std::uint8_t(d >> 24), q[1] = std::uint8_t(d >> 16), q[2] = std::uint8_t(d >> 8), q[3] = std::uint8_t(d);
    }
    if (!a.data.empty()) std::memcpy(out.data() + header, a.data.data(), a.data.size());
    detail::swap_elements(out.data() + header, a.data.size(), a.elem_size());
    return out;
}

// Writes `a` to `path` as IDX, gzipped (one member, level 6) when `gzip`.
inline void write_idx(const std::string& path, const IdxArray& a, bool gzip = false) {
    std::vector<std::uint8_t> bytes = serialize_idx(a, path);
    if (gzip) bytes = io::gzip_compress(bytes);
    io::write_file(path, bytes);
}

template <IdxElement T>
void write_idx(const std::string& path, const Tensor<T>& t, bool gzip = false) {
    write_idx(path, make_idx(t), gzip);
}

// An MNIST-style image file: uint8, rank 3, as a (N, H, W) tensor.
inline Tensor<std::uint8_t> load_idx_images(const std::string& path) {
    IdxArray a = read_idx(path);
    if (a.type != IdxType::u8 || a.dims.size() != 3)
        CUMULUS_FAIL(path, ": expected IDX images of uint8 with rank 3 (N, H, W), found ", idx_type_name(a.type),
                     " with dims ", detail::dims_str(a.dims));
    return a.to_tensor<std::uint8_t>(path);
}

// An MNIST-style label file: uint8, rank 1, as a (N,) tensor.
inline Tensor<std::uint8_t> load_idx_labels(const std::string& path) {
    IdxArray a = read_idx(path);
    if (a.type != IdxType::u8 || a.dims.size() != 1)
        CUMULUS_FAIL(path, ": expected IDX labels of uint8 with rank 1 (N,), found ", idx_type_name(a.type),
                     " with dims ", detail::dims_str(a.dims));
    return a.to_tensor<std::uint8_t>(path);
}

}  // namespace cumulus::data
