// Python pickles of numpy arrays and plain Python values: a safe reader and a writer.
//
// The reader runs the part of the pickle machine (protocols 0 to 5) that
// builds data: None, bool, int, float, str, bytes, tuple, list, dict, set and
// frozenset, numpy arrays and numpy scalars. Globals come from a fixed
// allow-list (numpy's _reconstruct, ndarray, dtype, scalar and _frombuffer,
// _codecs.encode, and the builtins bytes, bytearray, set, frozenset and
// collections.OrderedDict); any other global, such as os.system, is an error.
// Nothing is ever called. The reader never trusts its input: every length is
// checked against the bytes left before it is used, nesting depth, memo size
// and total allocation are bounded (LoadOptions), and every error names the
// file, the opcode and its byte offset.
//
// The writer emits protocol 2, 3 or 4 the way Python's pickle and numpy do
// (numpy.core.multiarray._reconstruct + BUILD for arrays), so pickle.load in
// Python gives back the same values and numpy arrays.
//
//   pickle::Value v = pickle::load("sample_weight.pkl");
//   Tensor<float> w1 = v.at("W1").to_tensor<float>();  // Fortran and byte order handled
//
// Where the result differs from what Python's pickle.load gives:
//   - the result is a tree: an object referenced twice is copied (within
//     LoadOptions::max_alloc_bytes); an object that contains itself is an error;
//   - ints must fit in int64; bytearray loads as bytes, OrderedDict as dict;
//     sets keep file order; arrays keep the file's byte order (numpy's
//     _reconstruct makes them native; to_tensor() converts either way);
//   - data after STOP, or objects left on the stack at STOP, are errors
//     (Python ignores them): both mean a damaged or concatenated file;
//   - dict keys compare as Python compares them (1 == 1.0 == True), except
//     that a numpy scalar key equals only the same dtype and bytes.
//
// Byte layouts: shared/docs/formats.md section 3, and CPython's pickletools.py.
#pragma once

#include <algorithm>
#include <bit>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <cumulus/core/dtype.hpp>
#include <cumulus/core/error.hpp>
#include <cumulus/core/shape.hpp>
#include <cumulus/core/tensor.hpp>
#include <cumulus/io/file.hpp>
#include <cumulus/io/gzip.hpp>

namespace cumulus::data::pickle {

// ---- numpy dtypes

inline constexpr char kNativeByteOrder = std::endian::native == std::endian::little ? '<' : '>';

// A numpy element type: bool, int8..int64, uint8..uint64, float16/32/64.
struct ArrayDType {
    char kind = 'f';                    // 'b' bool, 'i' signed, 'u' unsigned, 'f' IEEE float
    int itemsize = 4;                   // bytes: 1, 2, 4 or 8
    char byteorder = kNativeByteOrder;  // '<' little, '>' big; '|' for one-byte types

    // A dtype with numpy's byte order rules: '=' (and '|' on a multi-byte
    // type) means native; one-byte types always get '|'.
    static ArrayDType make(char kind, int itemsize, char byteorder = '=') {
        ArrayDType d;
        d.kind = kind;
        d.itemsize = itemsize;
        if (itemsize == 1) d.byteorder = '|';
        else if (byteorder == '<' || byteorder == '>') d.byteorder = byteorder;
        else d.byteorder = kNativeByteOrder;
        return d;
    }

    bool valid() const {
        if (itemsize != 1 && itemsize != 2 && itemsize != 4 && itemsize != 8) return false;
        if (itemsize == 1 ? byteorder != '|' : (byteorder != '<' && byteorder != '>')) return false;
        switch (kind) {
            case 'b': return itemsize == 1;
            case 'i': case 'u': return true;
            case 'f': return itemsize >= 2;
        }
        return false;
    }
    bool needs_swap() const { return itemsize > 1 && byteorder != kNativeByteOrder; }

    // numpy's dtype.str: "<f4", ">i8", "|u1", "|b1".
    std::string str() const { return std::string(1, byteorder) + kind + std::to_string(itemsize); }
    // numpy's dtype.name: "float32", "int64", "uint8", "bool".
    std::string name() const {
        if (kind == 'b') return "bool";
        std::string s = kind == 'i' ? "int" : kind == 'u' ? "uint" : kind == 'f' ? "float" : "?";
        s += std::to_string(8 * itemsize);
        return s;
    }
    friend bool operator==(const ArrayDType&, const ArrayDType&) = default;
};

// The C++ types an array converts to and from, and their numpy kinds.
template <typename T> struct array_kind_of;
template <> struct array_kind_of<bool> { static constexpr char value = 'b'; };
template <> struct array_kind_of<std::int8_t> { static constexpr char value = 'i'; };
template <> struct array_kind_of<std::int16_t> { static constexpr char value = 'i'; };
template <> struct array_kind_of<std::int32_t> { static constexpr char value = 'i'; };
template <> struct array_kind_of<std::int64_t> { static constexpr char value = 'i'; };
template <> struct array_kind_of<std::uint8_t> { static constexpr char value = 'u'; };
template <> struct array_kind_of<std::uint16_t> { static constexpr char value = 'u'; };
template <> struct array_kind_of<std::uint32_t> { static constexpr char value = 'u'; };
template <> struct array_kind_of<std::uint64_t> { static constexpr char value = 'u'; };
template <> struct array_kind_of<half> { static constexpr char value = 'f'; };
template <> struct array_kind_of<float> { static constexpr char value = 'f'; };
template <> struct array_kind_of<double> { static constexpr char value = 'f'; };

template <typename T>
concept ArrayElement = requires { array_kind_of<T>::value; };

// The native-byte-order dtype of T (float -> "<f4" on little-endian hosts).
template <ArrayElement T>
ArrayDType array_dtype() {
    return ArrayDType::make(array_kind_of<T>::value, static_cast<int>(sizeof(T)));
}

namespace detail {

// Parses numpy type strings as pickles spell them: "f4", "<i8", "|b1", "?",
// "b" (int8), "B", "h", "e", "d", "float32", "uint16", "bool". False for
// anything else (object, complex, strings, datetimes, structured types).
inline bool parse_dtype_spec(std::string_view s, ArrayDType& out) {
    char order = '=';
    if (!s.empty() && (s[0] == '<' || s[0] == '>' || s[0] == '=' || s[0] == '|')) {
        order = s[0];
        s.remove_prefix(1);
    }
    char kind = 0;
    int size = 0;
    if (s.size() == 1) {
        switch (s[0]) {
            case '?': kind = 'b', size = 1; break;
            case 'b': kind = 'i', size = 1; break;
            case 'B': kind = 'u', size = 1; break;
            case 'h': kind = 'i', size = 2; break;
            case 'H': kind = 'u', size = 2; break;
            case 'i': kind = 'i', size = 4; break;
            case 'I': kind = 'u', size = 4; break;
            case 'q': kind = 'i', size = 8; break;
            case 'Q': kind = 'u', size = 8; break;
            case 'e': kind = 'f', size = 2; break;
            case 'f': kind = 'f', size = 4; break;
            case 'd': kind = 'f', size = 8; break;
            default: return false;
        }
    } else if (s.size() == 2 && (s[0] == 'b' || s[0] == 'i' || s[0] == 'u' || s[0] == 'f') && s[1] >= '1' &&
               s[1] <= '8') {
        kind = s[0];
        size = s[1] - '0';
    } else {
        static constexpr std::pair<std::string_view, std::pair<char, int>> names[] = {
            {"bool", {'b', 1}},     {"int8", {'i', 1}},    {"int16", {'i', 2}},   {"int32", {'i', 4}},
            {"int64", {'i', 8}},    {"uint8", {'u', 1}},   {"uint16", {'u', 2}},  {"uint32", {'u', 4}},
            {"uint64", {'u', 8}},   {"float16", {'f', 2}}, {"float32", {'f', 4}}, {"float64", {'f', 8}}};
        for (const auto& [n, ks] : names)
            if (s == n) kind = ks.first, size = ks.second;
    }
    ArrayDType d = ArrayDType::make(kind, size, order);
    if (!d.valid()) return false;
    out = d;
    return true;
}

inline std::string shape_str(const std::vector<std::int64_t>& shape) {
    std::string s = "(";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
}

// The element count of `shape`, or -1 when a dim is negative or the count
// (times `itemsize`) exceeds `limit`. No intermediate product overflows.
inline std::int64_t checked_numel(const std::vector<std::int64_t>& shape, std::int64_t itemsize,
                                  std::uint64_t limit = std::uint64_t{1} << 62) {
    std::uint64_t nonzero = 1;
    bool zero = false;
    for (std::int64_t d : shape) {
        if (d < 0) return -1;
        if (d == 0) {
            zero = true;
            continue;
        }
        if (std::uint64_t(d) > limit / nonzero) return -1;
        nonzero *= std::uint64_t(d);
    }
    if (nonzero > limit / std::uint64_t(std::max<std::int64_t>(itemsize, 1))) return -1;
    return zero ? 0 : static_cast<std::int64_t>(nonzero);
}

// IEEE binary16 from a double, rounding to nearest even (as numpy's astype).
inline half double_to_half(double d) {
    std::uint16_t sign = std::signbit(d) ? 0x8000 : 0;
    if (std::isnan(d)) return half::from_bits(sign | 0x7e00);
    double a = std::fabs(d);
    if (a >= 65520.0) return half::from_bits(sign | 0x7c00);  // rounds to infinity
    if (a < std::ldexp(1.0, -14)) {                             // subnormal (or rounds up to the smallest normal)
        auto m = static_cast<std::uint16_t>(std::nearbyint(std::ldexp(a, 24)));
        return half::from_bits(sign | m);
    }
    int e;
    double m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
    auto mant = static_cast<std::uint32_t>(std::nearbyint(std::ldexp(m, 11)));  // 1024..2048
    if (mant == 2048) mant = 1024, ++e;
    const std::uint32_t biased = static_cast<std::uint32_t>(e - 1 + 15);
    return half::from_bits(static_cast<std::uint16_t>(sign | biased << 10 | (mant - 1024)));
}

// A bool element is read as its byte; numpy treats any non-zero byte as True.
struct BoolByte {
    std::uint8_t v;
};

// Calls f(static_cast<S*>(nullptr)) with S the storage type of `d`.
template <typename F>
void visit_dtype(const ArrayDType& d, F&& f) {
    switch (d.kind) {
        case 'b': return f(static_cast<BoolByte*>(nullptr));
        case 'i':
            switch (d.itemsize) {
                case 1: return f(static_cast<std::int8_t*>(nullptr));
                case 2: return f(static_cast<std::int16_t*>(nullptr));
                case 4: return f(static_cast<std::int32_t*>(nullptr));
                case 8: return f(static_cast<std::int64_t*>(nullptr));
            }
            break;
        case 'u':
            switch (d.itemsize) {
                case 1: return f(static_cast<std::uint8_t*>(nullptr));
                case 2: return f(static_cast<std::uint16_t*>(nullptr));
                case 4: return f(static_cast<std::uint32_t*>(nullptr));
                case 8: return f(static_cast<std::uint64_t*>(nullptr));
            }
            break;
        case 'f':
            switch (d.itemsize) {
                case 2: return f(static_cast<half*>(nullptr));
                case 4: return f(static_cast<float*>(nullptr));
                case 8: return f(static_cast<double*>(nullptr));
            }
            break;
    }
    CUMULUS_FAIL("pickle: unsupported numpy dtype ", d.str());
}

template <typename S>
S load_element(const std::uint8_t* p, bool swap) {
    std::uint8_t b[sizeof(S)];
    std::memcpy(b, p, sizeof(S));
    if (swap) std::reverse(b, b + sizeof(S));
    S v;
    std::memcpy(&v, b, sizeof(S));
    return v;
}

// Converts one element; false when an integer or bool target cannot hold it exactly.
template <typename T, typename S>
bool convert_element(S s, T& out) {
    if constexpr (std::is_same_v<S, BoolByte>) {
        return convert_element<T>(static_cast<std::uint8_t>(s.v != 0), out);
    } else if constexpr (std::is_same_v<S, half>) {
        if constexpr (std::is_same_v<T, half>) {
            out = s;
            return true;
        } else {
            return convert_element<T>(to_float(s), out);
        }
    } else if constexpr (std::is_same_v<T, half>) {
        out = double_to_half(static_cast<double>(s));
        return true;
    } else if constexpr (std::is_same_v<T, bool>) {
        if (!(s == S(0) || s == S(1))) return false;
        out = s == S(1);
        return true;
    } else if constexpr (std::is_floating_point_v<T>) {
        out = static_cast<T>(s);
        return true;
    } else if constexpr (std::is_floating_point_v<S>) {
        // [-2^digits, 2^digits) for signed T, [0, 2^digits) for unsigned: both bounds are exact in S.
        const S bound = std::ldexp(S(1), std::numeric_limits<T>::digits);
        const S low = std::is_signed_v<T> ? -bound : S(0);
        if (!(std::isfinite(s) && s == std::trunc(s) && s >= low && s < bound)) return false;
        out = static_cast<T>(s);
        return true;
    } else {
        if (!std::in_range<T>(s)) return false;
        out = static_cast<T>(s);
        return true;
    }
}

template <typename S>
std::string element_str(S s) {
    if constexpr (std::is_same_v<S, BoolByte>) return s.v ? "True" : "False";
    else if constexpr (std::is_same_v<S, half>) return std::to_string(to_float(s));
    else if constexpr (std::is_floating_point_v<S>) return std::to_string(s);
    else return std::to_string(+s);
}

}  // namespace detail

// ---- arrays

// A numpy array (or numpy scalar) as stored in the pickle: its dtype, shape,
// memory order and raw bytes, untouched. to_tensor() converts.
struct Array {
    ArrayDType dtype;
    std::vector<std::int64_t> shape;  // empty for 0-d arrays and scalars
    bool fortran_order = false;       // data is column-major (numpy's is_fortran)
    bool scalar = false;              // a numpy scalar (np.float32(1.5)) rather than an ndarray; 0-d
    std::vector<std::uint8_t> data;   // numel() * itemsize bytes, in dtype.byteorder and the memory order above

    friend bool operator==(const Array&, const Array&) = default;

    std::int64_t numel() const {
        std::int64_t n = 1;
        for (std::int64_t d : shape) n *= d;
        return n;
    }

    // "float32 (784, 50) Fortran order".
    std::string describe() const {
        return dtype.name() + (dtype.needs_swap() ? " (" + dtype.str() + ")" : "") + " " + detail::shape_str(shape) +
               (scalar ? " numpy scalar" : fortran_order ? " Fortran order" : "");
    }

    // Throws unless dtype, shape and data agree. `what` goes into the message.
    void validate(const std::string& what = "array") const {
        CUMULUS_CHECK(dtype.valid(), what, ": unsupported dtype ", dtype.str(),
                      " (supported: bool, int8..int64, uint8..uint64, float16/32/64 with byte order <, > or |)");
        const std::int64_t n = detail::checked_numel(shape, dtype.itemsize);
        CUMULUS_CHECK(n >= 0, what, ": invalid shape ", detail::shape_str(shape),
                      " (negative or too many elements)");
        CUMULUS_CHECK(!scalar || shape.empty(), what, ": a numpy scalar must be 0-d, shape is ",
                      detail::shape_str(shape));
        CUMULUS_CHECK(data.size() == static_cast<std::uint64_t>(n) * std::uint64_t(dtype.itemsize), what, ": ",
                      describe(), " needs ", static_cast<std::uint64_t>(n) * std::uint64_t(dtype.itemsize),
                      " data bytes, found ", data.size());
    }

    // The elements in C (row-major) order, converted to T, into out[0..numel).
    // Integer and bool targets require every value to be exactly
    // representable (else cumulus::Error naming the element); float targets
    // round. `what` goes into error messages.
    template <ArrayElement T>
    void convert_into(T* out, const std::string& what = "array") const {
        validate(what);
        const std::size_t n = static_cast<std::size_t>(numel());
        const bool swap = dtype.needs_swap();
        const bool c_order = !fortran_order || shape.size() <= 1;
        if (c_order && !swap && dtype == array_dtype<T>() && !std::is_same_v<T, bool>) {
            if (n) std::memcpy(out, data.data(), n * sizeof(T));
            return;
        }
        detail::visit_dtype(dtype, [&](auto* tag) {
            using S = std::remove_pointer_t<decltype(tag)>;
            auto one = [&](std::size_t dst, std::size_t src) {
                const S s = detail::load_element<S>(data.data() + src * sizeof(S), swap);
                if (!detail::convert_element<T>(s, out[dst]))
                    CUMULUS_FAIL(what, ": element ", src, " (", detail::element_str(s), ") of ", dtype.name(),
                                 " data cannot be converted exactly to the requested type");
            };
            if (c_order) {
                for (std::size_t i = 0; i < n; ++i) one(i, i);
                return;
            }
            // Fortran order: walk the output in C order, keeping the column-major source offset.
            const std::size_t r = shape.size();
            std::vector<std::size_t> idx(r, 0), stride(r, 1);
            for (std::size_t k = 1; k < r; ++k) stride[k] = stride[k - 1] * static_cast<std::size_t>(shape[k - 1]);
            std::size_t src = 0;
            for (std::size_t i = 0; i < n; ++i) {
                one(i, src);
                for (std::size_t k = r; k-- > 0;) {
                    src += stride[k];
                    if (++idx[k] < static_cast<std::size_t>(shape[k])) break;
                    src -= stride[k] * idx[k];
                    idx[k] = 0;
                }
            }
        });
    }

    // The elements in C order, converted as convert_into does.
    template <ArrayElement T>
    std::vector<T> to_vector(const std::string& what = "array") const {
        static_assert(!std::is_same_v<T, bool>, "Array::to_vector<bool> would be a bit vector; use to_tensor<bool>");
        validate(what);
        std::vector<T> v(static_cast<std::size_t>(numel()));
        convert_into<T>(v.data(), what);
        return v;
    }

    // A CPU Tensor<T> in C order (rank at most Shape::kMaxRank), converted as
    // convert_into does: byte order, Fortran order and dtype are all handled.
    template <ArrayElement T>
    Tensor<T> to_tensor(const std::string& what = "array") const {
        validate(what);
        CUMULUS_CHECK(shape.size() <= static_cast<std::size_t>(Shape::kMaxRank), what, ": rank ", shape.size(),
                      " exceeds the Tensor maximum rank ", Shape::kMaxRank);
        Tensor<T> t = Tensor<T>::empty(Shape(shape.begin(), shape.end()));
        convert_into<T>(t.data(), what);
        return t;
    }
};

// ---- values

class Value;
class ValueRef;
// A dict: (key, value) pairs in file order, keys unique as Python compares them.
using Dict = std::vector<std::pair<Value, Value>>;

// One Python value. Containers own their elements: the loader turns shared
// references in the pickle into copies (bounded by LoadOptions::max_alloc_bytes).
class Value {
public:
    enum class Type : std::uint8_t {
        none, boolean, integer, floating, str, bytes, tuple, list, dict, set, frozenset, array
    };

    Value() = default;  // None
    static Value none() { return Value(); }
    static Value boolean(bool b) { return Value(Type::boolean, b); }
    static Value integer(std::int64_t i) { return Value(Type::integer, i); }
    static Value floating(double d) { return Value(Type::floating, d); }
    static Value str(std::string utf8) { return Value(Type::str, std::move(utf8)); }
    static Value bytes(std::vector<std::uint8_t> b) { return Value(Type::bytes, std::move(b)); }
    static Value bytes(std::string_view b) { return bytes(std::vector<std::uint8_t>(b.begin(), b.end())); }
    static Value tuple(std::vector<Value> items) { return Value(Type::tuple, std::move(items)); }
    static Value list(std::vector<Value> items) { return Value(Type::list, std::move(items)); }
    static Value dict(Dict items) { return Value(Type::dict, std::move(items)); }
    static Value set(std::vector<Value> items, bool frozen = false) {
        return Value(frozen ? Type::frozenset : Type::set, std::move(items));
    }
    static Value array(Array a) { return Value(Type::array, std::move(a)); }

    Type type() const { return type_; }
    // Python's name of the type: "NoneType", "int", "list", "numpy.ndarray", ...
    std::string_view type_name() const {
        switch (type_) {
            case Type::none: return "NoneType";
            case Type::boolean: return "bool";
            case Type::integer: return "int";
            case Type::floating: return "float";
            case Type::str: return "str";
            case Type::bytes: return "bytes";
            case Type::tuple: return "tuple";
            case Type::list: return "list";
            case Type::dict: return "dict";
            case Type::set: return "set";
            case Type::frozenset: return "frozenset";
            case Type::array: return std::get<Array>(data_).scalar ? "numpy scalar" : "numpy.ndarray";
        }
        return "?";
    }
    bool is_none() const { return type_ == Type::none; }

    // This value with a path for error messages; the accessors below use "root".
    ValueRef ref(std::string path = "root") const;

    // Typed access. Each throws cumulus::Error naming the path and both types
    // ("expected a tuple at root[0], found list"). See ValueRef.
    bool as_bool() const;
    std::int64_t as_int() const;
    double as_float() const;
    const std::string& as_str() const;
    const std::vector<std::uint8_t>& as_bytes() const;
    const std::vector<Value>& as_tuple() const;
    const std::vector<Value>& as_list() const;
    const std::vector<Value>& as_set() const;  // set or frozenset
    const Dict& as_dict() const;
    const Array& as_array() const;
    std::size_t size() const;
    ValueRef at(std::size_t i) const;
    ValueRef at(std::string_view key) const;
    ValueRef at(const Value& key) const;
    const Value* find(std::string_view key) const;
    bool contains(std::string_view key) const { return find(key) != nullptr; }
    template <ArrayElement T>
    Tensor<T> to_tensor() const;

    // Mutable access to containers, for building values to write.
    std::vector<Value>& items() {
        CUMULUS_CHECK(std::holds_alternative<std::vector<Value>>(data_), "pickle: items() on a ", type_name());
        return std::get<std::vector<Value>>(data_);
    }
    Dict& dict_items() {
        CUMULUS_CHECK(type_ == Type::dict, "pickle: dict_items() on a ", type_name());
        return std::get<Dict>(data_);
    }

    // Same type and contents; floats compare bit for bit (so NaN equals itself).
    friend bool operator==(const Value& a, const Value& b);

    // A Python-like repr, cut at about max_chars: {'W1': array(<f4, (784, 50), F)}.
    std::string repr(std::size_t max_chars = 200) const;

private:
    using Storage = std::variant<std::monostate, bool, std::int64_t, double, std::string, std::vector<std::uint8_t>,
                                 std::vector<Value>, Dict, Array>;
    template <typename X>
    Value(Type t, X&& x) : type_(t), data_(std::forward<X>(x)) {}

    Type type_ = Type::none;
    Storage data_;
    friend class ValueRef;
};

// A Value in a tree plus its path ("root[0]['W1']") for error messages.
// It points into the tree: keep the tree alive while using it.
class ValueRef {
public:
    ValueRef(const Value& v, std::string path) : v_(&v), path_(std::move(path)) {}

    const Value& value() const { return *v_; }
    operator const Value&() const { return *v_; }
    const std::string& path() const { return path_; }
    Value::Type type() const { return v_->type_; }
    bool is_none() const { return v_->is_none(); }

    bool as_bool() const { return get<bool>(Value::Type::boolean, "a bool"); }
    std::int64_t as_int() const { return get<std::int64_t>(Value::Type::integer, "an int"); }
    double as_float() const { return get<double>(Value::Type::floating, "a float"); }
    const std::string& as_str() const { return get<std::string>(Value::Type::str, "a str"); }
    const std::vector<std::uint8_t>& as_bytes() const {
        return get<std::vector<std::uint8_t>>(Value::Type::bytes, "bytes");
    }
    const std::vector<Value>& as_tuple() const { return get<std::vector<Value>>(Value::Type::tuple, "a tuple"); }
    const std::vector<Value>& as_list() const { return get<std::vector<Value>>(Value::Type::list, "a list"); }
    const std::vector<Value>& as_set() const {
        if (type() == Value::Type::frozenset) return std::get<std::vector<Value>>(v_->data_);
        return get<std::vector<Value>>(Value::Type::set, "a set");
    }
    const Dict& as_dict() const { return get<Dict>(Value::Type::dict, "a dict"); }
    const Array& as_array() const { return get<Array>(Value::Type::array, "a numpy array"); }

    // Elements of a tuple, list, set or dict; bytes of a str or bytes.
    std::size_t size() const {
        switch (type()) {
            case Value::Type::str: return as_str().size();
            case Value::Type::bytes: return as_bytes().size();
            case Value::Type::tuple: case Value::Type::list: case Value::Type::set: case Value::Type::frozenset:
                return std::get<std::vector<Value>>(v_->data_).size();
            case Value::Type::dict: return as_dict().size();
            default: type_error("a container, str or bytes");
        }
    }

    // Element i of a tuple or list.
    ValueRef at(std::size_t i) const {
        if (type() != Value::Type::tuple && type() != Value::Type::list) type_error("a tuple or list");
        const auto& items = std::get<std::vector<Value>>(v_->data_);
        if (i >= items.size())
            CUMULUS_FAIL("pickle: index ", i, " out of range for the ", v_->type_name(), " of ", items.size(),
                         " elements at ", path_);
        return ValueRef(items[i], path_ + "[" + std::to_string(i) + "]");
    }
    // The value of str key `key` in a dict.
    ValueRef at(std::string_view key) const {
        const Value* v = find(key);
        if (v == nullptr) {
            std::string keys;
            const Dict& d = as_dict();
            for (std::size_t i = 0; i < d.size() && i < 12; ++i) keys += (i ? ", " : "") + d[i].first.repr(40);
            if (d.size() > 12) keys += ", ...";
            CUMULUS_FAIL("pickle: key '", key, "' not found in the dict at ", path_, " (keys: ", keys, ")");
        }
        return ValueRef(*v, path_ + "['" + std::string(key) + "']");
    }
    // The value of any key (compared as Python does: 1 == 1.0 == True).
    ValueRef at(const Value& key) const;
    // The value of str key `key` in a dict, or nullptr.
    const Value* find(std::string_view key) const {
        for (const auto& [k, v] : as_dict())
            if (k.type_ == Value::Type::str && std::get<std::string>(k.data_) == key) return &v;
        return nullptr;
    }
    bool contains(std::string_view key) const { return find(key) != nullptr; }

    template <ArrayElement T>
    Tensor<T> to_tensor() const {
        return as_array().to_tensor<T>("pickle: the array at " + path_);
    }

    [[noreturn]] void type_error(std::string_view expected) const {
        CUMULUS_FAIL("pickle: expected ", expected, " at ", path_, ", found ", v_->type_name());
    }

private:
    template <typename X>
    const X& get(Value::Type t, std::string_view expected) const {
        if (v_->type_ != t) type_error(expected);
        return std::get<X>(v_->data_);
    }

    const Value* v_;
    std::string path_;
};

inline ValueRef Value::ref(std::string path) const { return ValueRef(*this, std::move(path)); }
inline bool Value::as_bool() const { return ref().as_bool(); }
inline std::int64_t Value::as_int() const { return ref().as_int(); }
inline double Value::as_float() const { return ref().as_float(); }
inline const std::string& Value::as_str() const { return ref().as_str(); }
inline const std::vector<std::uint8_t>& Value::as_bytes() const { return ref().as_bytes(); }
inline const std::vector<Value>& Value::as_tuple() const { return ref().as_tuple(); }
inline const std::vector<Value>& Value::as_list() const { return ref().as_list(); }
inline const std::vector<Value>& Value::as_set() const { return ref().as_set(); }
inline const Dict& Value::as_dict() const { return ref().as_dict(); }
inline const Array& Value::as_array() const { return ref().as_array(); }
inline std::size_t Value::size() const { return ref().size(); }
inline ValueRef Value::at(std::size_t i) const { return ref().at(i); }
inline ValueRef Value::at(std::string_view key) const { return ref().at(key); }
inline ValueRef Value::at(const Value& key) const { return ref().at(key); }
inline const Value* Value::find(std::string_view key) const { return ref().find(key); }
template <ArrayElement T>
Tensor<T> Value::to_tensor() const {
    return ref().to_tensor<T>();
}

// An array Value holding a copy of a CPU tensor (C order, native byte order).
template <ArrayElement T>
Value make_array(const Tensor<T>& t) {
    CUMULUS_CHECK(t.device().is_cpu(), "pickle::make_array: tensor on ", t.device().str(),
                  "; copy it to the CPU first");
    Array a;
    a.dtype = array_dtype<T>();
    a.shape.assign(t.shape().begin(), t.shape().end());
    a.data.resize(t.nbytes());
    if (t.nbytes()) std::memcpy(a.data.data(), t.data(), t.nbytes());
    return Value::array(std::move(a));
}

// An array Value of `shape` holding `values` (C order, native byte order).
template <ArrayElement T>
Value make_array(std::vector<std::int64_t> shape, const std::vector<T>& values) {
    static_assert(!std::is_same_v<T, bool>, "make_array: pass bools as a Tensor<bool>");
    Array a;
    a.dtype = array_dtype<T>();
    a.shape = std::move(shape);
    CUMULUS_CHECK(detail::checked_numel(a.shape, sizeof(T)) == static_cast<std::int64_t>(values.size()),
                  "pickle::make_array: shape ", detail::shape_str(a.shape), " does not hold ", values.size(),
                  " values");
    a.data.resize(values.size() * sizeof(T));
    if (!values.empty()) std::memcpy(a.data.data(), values.data(), a.data.size());
    return Value::array(std::move(a));
}

namespace detail {

// ---- Python's equality and hashing for hashable values (dict keys, set items)

inline bool float_as_int(double f, std::int64_t& i) {
    if (!std::isfinite(f) || f != std::trunc(f) || f < -9223372036854775808.0 || f >= 9223372036854775808.0)
        return false;
    i = static_cast<std::int64_t>(f);
    return true;
}

inline bool is_number(const Value& v) {
    return v.type() == Value::Type::boolean || v.type() == Value::Type::integer || v.type() == Value::Type::floating;
}

inline std::int64_t int_of(const Value& v) {
    return v.type() == Value::Type::boolean ? std::int64_t(v.as_bool()) : v.as_int();
}

inline std::size_t mix(std::size_t h, std::size_t x) {
    return h ^ (x + 0x9e3779b97f4a7c15ull + (h << 12) + (h >> 4));
}

inline std::size_t py_hash(const Value& v);

// Frozenset elements paired with their hashes, sorted by hash.
inline std::vector<std::pair<std::size_t, const Value*>> hashed_sorted(const std::vector<Value>& items) {
    std::vector<std::pair<std::size_t, const Value*>> h;
    h.reserve(items.size());
    for (const auto& x : items) h.emplace_back(py_hash(x), &x);
    std::sort(h.begin(), h.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    return h;
}

// Python's == on hashable values. numpy scalars equal only the same dtype
// and bytes (Python would also compare them with plain numbers).
inline bool py_equal(const Value& a, const Value& b) {
    using T = Value::Type;
    if (is_number(a) && is_number(b)) {
        if (a.type() != T::floating && b.type() != T::floating) return int_of(a) == int_of(b);
        if (a.type() == T::floating && b.type() == T::floating) return a.as_float() == b.as_float();
        const double f = a.type() == T::floating ? a.as_float() : b.as_float();
        std::int64_t i;
        return float_as_int(f, i) && i == int_of(a.type() == T::floating ? b : a);
    }
    const bool a_set = a.type() == T::frozenset || a.type() == T::set;
    const bool b_set = b.type() == T::frozenset || b.type() == T::set;
    if (a_set && b_set) {
        const auto& x = a.as_set();
        const auto& y = b.as_set();
        if (x.size() != y.size()) return false;
        auto hx = hashed_sorted(x), hy = hashed_sorted(y);
        // Distinct elements with equal hashes are rare: match within each equal-hash group.
        for (std::size_t i = 0; i < hx.size();) {
            std::size_t j = i;
            while (j < hx.size() && hx[j].first == hx[i].first) ++j;
            for (std::size_t k = i; k < j; ++k) {
                if (hy[k].first != hx[i].first) return false;
                bool found = false;
                for (std::size_t m = i; m < j && !found; ++m) found = py_equal(*hx[k].second, *hy[m].second);
                if (!found) return false;
            }
            i = j;
        }
        return true;
    }
    if (a.type() != b.type()) return false;
    switch (a.type()) {
        case T::none: return true;
        case T::str: return a.as_str() == b.as_str();
        case T::bytes: return a.as_bytes() == b.as_bytes();
        case T::tuple: {
            const auto& x = a.as_tuple();
            const auto& y = b.as_tuple();
            if (x.size() != y.size()) return false;
            for (std::size_t i = 0; i < x.size(); ++i)
                if (!py_equal(x[i], y[i])) return false;
            return true;
        }
        case T::array: {
            const Array& x = a.as_array();
            const Array& y = b.as_array();
            return x.dtype == y.dtype && x.shape == y.shape && x.data == y.data;
        }
        default: return a == b;
    }
}

inline std::size_t py_hash(const Value& v) {
    using T = Value::Type;
    switch (v.type()) {
        case T::none: return 0x5bd1e995;
        case T::boolean: case T::integer: return std::hash<std::int64_t>()(int_of(v));
        case T::floating: {
            std::int64_t i;
            if (float_as_int(v.as_float(), i)) return std::hash<std::int64_t>()(i);
            return std::hash<std::uint64_t>()(std::bit_cast<std::uint64_t>(v.as_float()));
        }
        case T::str: return mix(1, std::hash<std::string_view>()(v.as_str()));
        case T::bytes: {
            const auto& b = v.as_bytes();
            return mix(2, std::hash<std::string_view>()(
                              std::string_view(reinterpret_cast<const char*>(b.data()), b.size())));
        }
        case T::tuple: {
            std::size_t h = 3;
            for (const auto& x : v.as_tuple()) h = mix(h, py_hash(x));
            return h;
        }
        case T::set: case T::frozenset: {
            std::size_t h = 4;  // order-independent
            for (const auto& x : v.as_set()) h += py_hash(x) * 0x9e3779b97f4a7c15ull;
            return h;
        }
        case T::array: {
            const auto& d = v.as_array().data;
            return mix(5, std::hash<std::string_view>()(
                              std::string_view(reinterpret_cast<const char*>(d.data()), d.size())));
        }
        default: return 6;
    }
}

// Keeps the first of each group of equal elements, in order. For dicts, the
// kept key takes the last value given for it (what Python's dict does).
template <typename Item, typename Key, typename Merge>
void dedup(std::vector<Item>& items, Key key_of, Merge merge) {
    if (items.size() < 2) return;
    std::unordered_map<std::size_t, std::vector<std::size_t>> seen;
    std::vector<Item> out;
    out.reserve(items.size());
    for (auto& item : items) {
        auto& bucket = seen[py_hash(key_of(item))];
        bool merged = false;
        for (std::size_t j : bucket)
            if (py_equal(key_of(out[j]), key_of(item))) {
                merge(out[j], item);
                merged = true;
                break;
            }
        if (!merged) {
            bucket.push_back(out.size());
            out.push_back(std::move(item));
        }
    }
    items = std::move(out);
}

inline void dedup_dict(Dict& d) {
    dedup(d, [](const std::pair<Value, Value>& p) -> const Value& { return p.first; },
          [](std::pair<Value, Value>& kept, std::pair<Value, Value>& later) { kept.second = std::move(later.second); });
}

inline void dedup_set(std::vector<Value>& items) {
    dedup(items, [](const Value& v) -> const Value& { return v; }, [](Value&, Value&) {});
}

// ---- repr

inline void repr_str(std::string& out, std::string_view s, char prefix) {
    if (prefix) out += prefix;
    out += '\'';
    for (unsigned char c : s) {
        if (c == '\\' || c == '\'') out += '\\', out += char(c);
        else if (c == '\n') out += "\\n";
        else if (c < 0x20 || c == 0x7f || (prefix && c >= 0x80)) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        } else out += char(c);
    }
    out += '\'';
}

inline void repr_float(std::string& out, double d) {
    if (std::isnan(d)) { out += "nan"; return; }
    if (std::isinf(d)) { out += d < 0 ? "-inf" : "inf"; return; }
    char buf[40];
    auto r = std::to_chars(buf, buf + sizeof buf, d);
    std::string s(buf, r.ptr);
    if (s.find_first_of(".en") == std::string::npos) s += ".0";
    out += s;
}

inline void repr_into(std::string& out, const Value& v, std::size_t limit) {
    using T = Value::Type;
    if (out.size() > limit) return;
    auto seq = [&](const std::vector<Value>& items, const char* open, const char* close, bool one_comma) {
        out += open;
        for (std::size_t i = 0; i < items.size() && out.size() <= limit; ++i) {
            if (i) out += ", ";
            repr_into(out, items[i], limit);
        }
        if (one_comma && items.size() == 1) out += ",";
        out += close;
    };
    switch (v.type()) {
        case T::none: out += "None"; break;
        case T::boolean: out += v.as_bool() ? "True" : "False"; break;
        case T::integer: out += std::to_string(v.as_int()); break;
        case T::floating: repr_float(out, v.as_float()); break;
        case T::str: repr_str(out, v.as_str(), 0); break;
        case T::bytes: {
            const auto& b = v.as_bytes();
            repr_str(out, std::string_view(reinterpret_cast<const char*>(b.data()), b.size()), 'b');
            break;
        }
        case T::tuple: seq(v.as_tuple(), "(", ")", true); break;
        case T::list: seq(v.as_list(), "[", "]", false); break;
        case T::set:
            if (v.as_set().empty()) out += "set()";
            else seq(v.as_set(), "{", "}", false);
            break;
        case T::frozenset: seq(v.as_set(), "frozenset({", "})", false); break;
        case T::dict: {
            out += "{";
            const Dict& d = v.as_dict();
            for (std::size_t i = 0; i < d.size() && out.size() <= limit; ++i) {
                if (i) out += ", ";
                repr_into(out, d[i].first, limit);
                out += ": ";
                repr_into(out, d[i].second, limit);
            }
            out += "}";
            break;
        }
        case T::array: {
            const Array& a = v.as_array();
            out += std::string(a.scalar ? "scalar(" : "array(") + a.dtype.str();
            if (!a.scalar) out += ", " + shape_str(a.shape) + (a.fortran_order ? ", F" : "");
            out += ")";
            break;
        }
    }
}

}  // namespace detail

inline ValueRef ValueRef::at(const Value& key) const {
    for (const auto& [k, v] : as_dict())
        if (detail::py_equal(k, key)) return ValueRef(v, path_ + "[" + key.repr(60) + "]");
    CUMULUS_FAIL("pickle: key ", key.repr(60), " not found in the dict at ", path_);
}

inline bool operator==(const Value& a, const Value& b) {
    if (a.type_ != b.type_) return false;
    if (a.type_ == Value::Type::floating)
        return std::bit_cast<std::uint64_t>(a.as_float()) == std::bit_cast<std::uint64_t>(b.as_float());
    return a.data_ == b.data_;
}

inline std::string Value::repr(std::size_t max_chars) const {
    std::string out;
    detail::repr_into(out, *this, max_chars);
    if (out.size() > max_chars) out = out.substr(0, max_chars) + "...";
    return out;
}

// ---- loading

// How Python 2 `str` objects (STRING, BINSTRING, SHORT_BINSTRING) load; as
// the `encoding` argument of Python 3's pickle.load.
enum class Encoding {
    ascii,   // str; non-ASCII bytes are an error (Python's default)
    latin1,  // str, each byte one code point (lossless; numpy re-encodes array data, as numpy does)
    bytes,   // bytes
};

struct LoadOptions {
    Encoding encoding = Encoding::ascii;
    // Everything the loader allocates (objects, strings, array data, the
    // decompressed input, the returned tree) stays under this many bytes.
    std::size_t max_alloc_bytes = std::size_t{1} << 32;
    // Of that, what copies of shared references may take (the result is a
    // tree, so an object the pickle references k times is built k times; a
    // few hundred bytes of pickle could otherwise ask for gigabytes).
    std::size_t max_copy_bytes = std::size_t{1} << 28;
    int max_depth = 1000;                    // nesting of containers in the result
    std::size_t max_memo = std::size_t{1} << 24;  // memo entries
};

struct LoadInfo {
    // The PROTO opcode's value; without one, 1 when any opcode beyond
    // protocol 0 appears, else 0 (protocols 0 and 1 cannot be told apart exactly).
    int protocol = 0;
    bool gzipped = false;
    std::size_t pickle_bytes = 0;  // the (decompressed) pickle's length
};

namespace detail {

inline const char* opcode_name(std::uint8_t op) {
    switch (op) {
        case '(': return "MARK";
        case '.': return "STOP";
        case '0': return "POP";
        case '1': return "POP_MARK";
        case '2': return "DUP";
        case 'F': return "FLOAT";
        case 'I': return "INT";
        case 'J': return "BININT";
        case 'K': return "BININT1";
        case 'L': return "LONG";
        case 'M': return "BININT2";
        case 'N': return "NONE";
        case 'P': return "PERSID";
        case 'Q': return "BINPERSID";
        case 'R': return "REDUCE";
        case 'S': return "STRING";
        case 'T': return "BINSTRING";
        case 'U': return "SHORT_BINSTRING";
        case 'V': return "UNICODE";
        case 'X': return "BINUNICODE";
        case 'a': return "APPEND";
        case 'b': return "BUILD";
        case 'c': return "GLOBAL";
        case 'd': return "DICT";
        case '}': return "EMPTY_DICT";
        case 'e': return "APPENDS";
        case 'g': return "GET";
        case 'h': return "BINGET";
        case 'i': return "INST";
        case 'j': return "LONG_BINGET";
        case 'l': return "LIST";
        case ']': return "EMPTY_LIST";
        case 'o': return "OBJ";
        case 'p': return "PUT";
        case 'q': return "BINPUT";
        case 'r': return "LONG_BINPUT";
        case 's': return "SETITEM";
        case 't': return "TUPLE";
        case ')': return "EMPTY_TUPLE";
        case 'u': return "SETITEMS";
        case 'G': return "BINFLOAT";
        case 0x80: return "PROTO";
        case 0x81: return "NEWOBJ";
        case 0x82: return "EXT1";
        case 0x83: return "EXT2";
        case 0x84: return "EXT4";
        case 0x85: return "TUPLE1";
        case 0x86: return "TUPLE2";
        case 0x87: return "TUPLE3";
        case 0x88: return "NEWTRUE";
        case 0x89: return "NEWFALSE";
        case 0x8a: return "LONG1";
        case 0x8b: return "LONG4";
        case 'B': return "BINBYTES";
        case 'C': return "SHORT_BINBYTES";
        case 0x8c: return "SHORT_BINUNICODE";
        case 0x8d: return "BINUNICODE8";
        case 0x8e: return "BINBYTES8";
        case 0x8f: return "EMPTY_SET";
        case 0x90: return "ADDITEMS";
        case 0x91: return "FROZENSET";
        case 0x92: return "NEWOBJ_EX";
        case 0x93: return "STACK_GLOBAL";
        case 0x94: return "MEMOIZE";
        case 0x95: return "FRAME";
        case 0x96: return "BYTEARRAY8";
        case 0x97: return "NEXT_BUFFER";
        case 0x98: return "READONLY_BUFFER";
    }
    return nullptr;
}

// Opcodes of protocol 0 (the text protocol); any other known one means binary.
inline bool protocol0_opcode(std::uint8_t op) {
    return std::string_view("(.012FILNPSVRabcdgilpst").find(char(op)) != std::string_view::npos;
}

// Printable text for messages: escapes control and non-ASCII bytes, cuts long text.
inline std::string printable(std::string_view s, std::size_t max = 120) {
    std::string out;
    for (std::size_t i = 0; i < s.size() && i < max; ++i) {
        const unsigned char c = s[i];
        if (c >= 0x20 && c < 0x7f) {
            out += char(c);
        } else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        }
    }
    if (s.size() > max) out += "...";
    return out;
}

// Decodes one UTF-8 code point at p[i] (advancing i). Surrogate code points
// are accepted, as Python's pickle decodes with 'surrogatepass'.
inline bool utf8_next(const std::uint8_t* p, std::size_t n, std::size_t& i, std::uint32_t& cp) {
    const std::uint8_t c = p[i];
    if (c < 0x80) {
        cp = c;
        ++i;
        return true;
    }
    std::size_t len;
    std::uint32_t min;
    if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07, min = 0x10000;
    else return false;
    if (n - i < len) return false;
    for (std::size_t k = 1; k < len; ++k) {
        if ((p[i + k] & 0xc0) != 0x80) return false;
        cp = cp << 6 | (p[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff) return false;
    i += len;
    return true;
}

// The byte offset of the first invalid UTF-8 sequence, or n when valid.
inline std::size_t utf8_invalid_at(const std::uint8_t* p, std::size_t n) {
    std::size_t i = 0;
    std::uint32_t cp;
    while (i < n) {
        if (p[i] < 0x80) {
            ++i;
            continue;
        }
        const std::size_t at = i;
        if (!utf8_next(p, n, i, cp)) return at;
    }
    return n;
}

inline void utf8_append(std::string& s, std::uint32_t cp) {
    if (cp < 0x80) {
        s += char(cp);
    } else if (cp < 0x800) {
        s += char(0xc0 | cp >> 6), s += char(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        s += char(0xe0 | cp >> 12), s += char(0x80 | (cp >> 6 & 0x3f)), s += char(0x80 | (cp & 0x3f));
    } else {
        s += char(0xf0 | cp >> 18), s += char(0x80 | (cp >> 12 & 0x3f)), s += char(0x80 | (cp >> 6 & 0x3f)),
            s += char(0x80 | (cp & 0x3f));
    }
}

inline int hex_digit(char h) {
    if (h >= '0' && h <= '9') return h - '0';
    if (h >= 'a' && h <= 'f') return h - 'a' + 10;
    if (h >= 'A' && h <= 'F') return h - 'A' + 10;
    return -1;
}

inline bool all_ascii(std::string_view s) {
    for (unsigned char c : s)
        if (c >= 0x80) return false;
    return true;
}

// The globals a pickle may name. Nothing is ever imported or called: each
// one is a fixed recipe for building data.
enum class GlobalId : std::uint8_t {
    reconstruct,   // numpy.core.multiarray._reconstruct(ndarray, shape, dtype) then BUILD
    ndarray,       // numpy.ndarray (only as _reconstruct's first argument)
    dtype,         // numpy.dtype(spec, align, copy) then BUILD
    scalar,        // numpy.core.multiarray.scalar(dtype, bytes)
    frombuffer,    // numpy.core.numeric._frombuffer(buffer, dtype, shape, order)
    codecs_encode, // _codecs.encode(str, 'latin1')
    bytes,         // bytes() / bytes(b) / bytes(str, encoding)
    bytearray,
    set,
    frozenset,
    ordered_dict,  // collections.OrderedDict() -> a dict
};

struct AllowedGlobal {
    std::string_view module, name;
    GlobalId id;
};

inline constexpr AllowedGlobal kAllowedGlobals[] = {
    {"numpy.core.multiarray", "_reconstruct", GlobalId::reconstruct},
    {"numpy._core.multiarray", "_reconstruct", GlobalId::reconstruct},
    {"numpy", "ndarray", GlobalId::ndarray},
    {"numpy", "dtype", GlobalId::dtype},
    {"numpy.core.multiarray", "scalar", GlobalId::scalar},
    {"numpy._core.multiarray", "scalar", GlobalId::scalar},
    {"numpy.core.numeric", "_frombuffer", GlobalId::frombuffer},
    {"numpy._core.numeric", "_frombuffer", GlobalId::frombuffer},
    {"_codecs", "encode", GlobalId::codecs_encode},
    {"builtins", "bytes", GlobalId::bytes},
    {"__builtin__", "bytes", GlobalId::bytes},
    {"builtins", "bytearray", GlobalId::bytearray},
    {"__builtin__", "bytearray", GlobalId::bytearray},
    {"builtins", "set", GlobalId::set},
    {"__builtin__", "set", GlobalId::set},
    {"builtins", "frozenset", GlobalId::frozenset},
    {"__builtin__", "frozenset", GlobalId::frozenset},
    {"collections", "OrderedDict", GlobalId::ordered_dict},
};

inline std::string global_name(GlobalId id) {
    for (const auto& g : kAllowedGlobals)
        if (g.id == id) return std::string(g.module) + "." + std::string(g.name);
    return "?";
}

// ---- the machine's objects: a graph, so that memo references and later
// mutation (APPEND to a memoized list, BUILD on a memoized array) behave as
// in Python. It becomes a Value tree at STOP.

enum class Kind : std::uint8_t {
    none, boolean, integer, floating, str, bytes, tuple, list, dict, set, frozenset, array, dtype, global
};

inline const char* kind_name(Kind k) {
    switch (k) {
        case Kind::none: return "None";
        case Kind::boolean: return "bool";
        case Kind::integer: return "int";
        case Kind::floating: return "float";
        case Kind::str: return "str";
        case Kind::bytes: return "bytes";
        case Kind::tuple: return "tuple";
        case Kind::list: return "list";
        case Kind::dict: return "dict";
        case Kind::set: return "set";
        case Kind::frozenset: return "frozenset";
        case Kind::array: return "numpy array";
        case Kind::dtype: return "numpy dtype";
        case Kind::global: return "global";
    }
    return "?";
}

inline constexpr std::uint8_t kMutableBytes = 1;  // a bytearray: unhashable
inline constexpr std::uint8_t kHashKnown = 2;
inline constexpr std::uint8_t kHashable = 4;

struct Node {
    Kind kind = Kind::none;
    std::uint8_t flags = 0;
    std::uint32_t aux = 0;  // index into blobs_, seqs_, arrays_ or dtypes_; GlobalId; bool value
    union {
        std::int64_t i;
        double f;
    } num{0};
    std::uint64_t offset = 0;  // byte offset of the opcode that made it
};

// str or bytes contents: a view of the input when possible, else owned.
struct Blob {
    const std::uint8_t* view = nullptr;
    std::size_t view_len = 0;
    std::string owned;
    bool latin1 = false;  // as a str: each byte is one code point (Python 2 str, encoding latin1)
    std::string_view bytes() const {
        return view ? std::string_view(reinterpret_cast<const char*>(view), view_len) : std::string_view(owned);
    }
};

struct ArrayNode {
    ArrayDType dtype;
    std::vector<std::int64_t> shape;
    bool fortran = false;
    bool scalar = false;
    bool built = false;                  // has data (from BUILD, scalar or _frombuffer)
    std::uint32_t data = UINT32_MAX;     // blob
};

class Unpickler {
public:
    Unpickler(const std::uint8_t* p, std::size_t n, const std::string& name, const LoadOptions& opt,
              std::size_t already_allocated)
        : p_(p), n_(n), name_(name), opt_(opt), allocated_(already_allocated) {}

    Value run(LoadInfo* info) {
        const std::uint32_t root = execute();
        if (info) {
            info->protocol = protocol_ >= 0 ? protocol_ : binary_seen_ ? 1 : 0;
            info->pickle_bytes = n_;
        }
        on_path_.assign(nodes_.size(), 0);
        charge(nodes_.size());
        return convert(root, 0);
    }

private:
    // ---- errors

    template <typename... Args>
    [[noreturn]] void fail(Args&&... args) const {
        std::string where;
        if (!have_op_) where = "at byte offset ";
        else if (const char* nm = opcode_name(op_)) where = std::string("opcode ") + nm + " at byte offset ";
        else where = "opcode byte " + hex(op_) + " at byte offset ";
        CUMULUS_FAIL(name_, ": ", concat(std::forward<Args>(args)...), " (", where, op_offset_, ")");
    }

    template <typename... Args>
    static std::string concat(Args&&... args) {
        return ::cumulus::detail::concat(std::forward<Args>(args)...);
    }

    static std::string hex(std::uint8_t b) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "0x%02x", b);
        return buf;
    }

    void charge(std::size_t bytes) {
        allocated_ = bytes > SIZE_MAX - allocated_ ? SIZE_MAX : allocated_ + bytes;
        if (allocated_ > opt_.max_alloc_bytes)
            fail("loading needs more than LoadOptions::max_alloc_bytes = ", opt_.max_alloc_bytes,
                 " bytes of memory");
    }

    // ---- input

    // k bytes at the read position. Python's framing rule: a read that starts
    // inside a frame must end inside it.
    const std::uint8_t* take(std::size_t k) {
        if (k > n_ - pos_)
            fail("truncated: needs ", k, " more byte", k == 1 ? "" : "s", " at byte offset ", pos_, ", only ",
                 n_ - pos_, " left");
        if (in_frame_) {
            const std::size_t left = frame_end_ - pos_;
            if (left == 0) in_frame_ = false;
            else if (k > left)
                fail("pickle exhausted before end of frame: needs ", k, " bytes at byte offset ", pos_,
                     ", the frame ends ", left, " bytes later");
        }
        const std::uint8_t* q = p_ + pos_;
        pos_ += k;
        return q;
    }
    std::uint64_t le(int bytes) {
        const std::uint8_t* q = take(bytes);
        std::uint64_t v = 0;
        for (int i = bytes; i-- > 0;) v = v << 8 | q[i];
        return v;
    }
    // A length field followed by that many bytes: checked against the input before use.
    std::string_view counted(int len_bytes, bool signed32 = false) {
        std::uint64_t len = le(len_bytes);
        if (signed32 && (len & 0x80000000u)) fail("negative byte count ", std::int32_t(std::uint32_t(len)));
        if (len > n_ - pos_)
            fail("truncated: a length of ", len, " bytes at byte offset ", pos_ - len_bytes, ", only ", n_ - pos_,
                 " left");
        return std::string_view(reinterpret_cast<const char*>(take(static_cast<std::size_t>(len))),
                                static_cast<std::size_t>(len));
    }
    // One text line (protocol 0 arguments), without its '\n'.
    std::string_view line() {
        std::size_t end = n_;
        if (in_frame_ && frame_end_ == pos_) in_frame_ = false;
        if (in_frame_) end = frame_end_;
        const void* nl = std::memchr(p_ + pos_, '\n', end - pos_);
        if (nl == nullptr) {
            if (in_frame_) fail("pickle exhausted before end of frame: no newline before the frame ends");
            fail("truncated: no newline ending the argument that starts at byte offset ", pos_);
        }
        const std::size_t len = static_cast<const std::uint8_t*>(nl) - (p_ + pos_);
        std::string_view s(reinterpret_cast<const char*>(p_ + pos_), len);
        pos_ += len + 1;
        return s;
    }

    // ---- objects

    std::uint32_t make(Kind k, std::uint32_t aux = 0) {
        charge(sizeof(Node));
        if (nodes_.size() >= UINT32_MAX - 1) fail("too many objects");
        Node nd;
        nd.kind = k;
        nd.aux = aux;
        nd.offset = op_offset_;
        nodes_.push_back(nd);
        return static_cast<std::uint32_t>(nodes_.size() - 1);
    }
    std::uint32_t make_int(std::int64_t i) {
        std::uint32_t id = make(Kind::integer);
        nodes_[id].num.i = i;
        return id;
    }
    std::uint32_t make_float(double f) {
        std::uint32_t id = make(Kind::floating);
        nodes_[id].num.f = f;
        return id;
    }
    std::uint32_t make_bool(bool b) { return make(Kind::boolean, b ? 1 : 0); }
    std::uint32_t add_blob(Blob b) {
        charge(sizeof(Blob) + b.owned.size());
        blobs_.push_back(std::move(b));
        return static_cast<std::uint32_t>(blobs_.size() - 1);
    }
    std::uint32_t make_blob_node(Kind k, std::uint32_t blob, std::uint8_t flags = 0) {
        std::uint32_t id = make(k, blob);
        nodes_[id].flags = flags;
        return id;
    }
    // A str or bytes that is a view of the input.
    std::uint32_t make_view(Kind k, std::string_view s, bool latin1 = false) {
        Blob b;
        b.view = reinterpret_cast<const std::uint8_t*>(s.data());
        b.view_len = s.size();
        b.latin1 = latin1;
        if (b.view == nullptr) b.view = p_;  // empty: any non-null pointer marks it as a view
        return make_blob_node(k, add_blob(std::move(b)));
    }
    std::uint32_t make_owned(Kind k, std::string s, bool latin1 = false) {
        Blob b;
        b.owned = std::move(s);
        b.latin1 = latin1;
        return make_blob_node(k, add_blob(std::move(b)));
    }
    std::uint32_t make_seq(Kind k, std::vector<std::uint32_t> items) {
        charge(sizeof(std::vector<std::uint32_t>) + items.size() * sizeof(std::uint32_t));
        seqs_.push_back(std::move(items));
        return make(k, static_cast<std::uint32_t>(seqs_.size() - 1));
    }
    std::vector<std::uint32_t>& seq(std::uint32_t id) { return seqs_[nodes_[id].aux]; }
    void seq_append(std::uint32_t id, std::uint32_t item) {
        charge(sizeof(std::uint32_t));
        seq(id).push_back(item);
    }
    const Blob& blob(std::uint32_t id) const { return blobs_[nodes_[id].aux]; }
    Kind kind(std::uint32_t id) const { return nodes_[id].kind; }

    // The text of a str node (UTF-8); for short strings (names, dtype specs).
    std::string text(std::uint32_t id) const {
        const Blob& b = blob(id);
        std::string_view s = b.bytes();
        if (!b.latin1 || all_ascii(s)) return std::string(s);
        std::string out;
        for (unsigned char c : s) utf8_append(out, c);
        return out;
    }
    // A str or bytes node's text, for arguments that may be either (Python 2 pickles).
    std::string text_or_bytes(std::uint32_t id, const char* what) const {
        if (kind(id) != Kind::str && kind(id) != Kind::bytes)
            fail(what, " must be a str or bytes, found ", kind_name(kind(id)));
        return kind(id) == Kind::str ? text(id) : std::string(blob(id).bytes());
    }

    // The bytes of a str encoded as latin-1 (what numpy and _codecs.encode do
    // with array data given as a str): a blob index.
    std::uint32_t latin1_encode(std::uint32_t str_id, const char* what) {
        const Blob& b = blob(str_id);
        std::string_view s = b.bytes();
        if (b.latin1 || all_ascii(s)) return nodes_[str_id].aux;  // the same bytes
        std::string out;
        charge(s.size());
        out.reserve(s.size());
        const auto* q = reinterpret_cast<const std::uint8_t*>(s.data());
        std::size_t i = 0;
        std::uint32_t cp;
        while (i < s.size()) {
            if (!utf8_next(q, s.size(), i, cp)) fail(what, ": invalid UTF-8");
            if (cp > 0xff)
                fail(what, ": character U+", std::uint32_t(cp), " (decimal) cannot be encoded as latin-1");
            out += char(cp);
        }
        Blob nb;
        nb.owned = std::move(out);
        return add_blob(std::move(nb));
    }

    // A str node from UTF-8 text in the input (BINUNICODE and friends).
    std::uint32_t make_utf8_view(std::string_view s) {
        const std::size_t bad = utf8_invalid_at(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
        if (bad != s.size())
            fail("invalid UTF-8 in a str at byte ", bad, " of its ", s.size(), " (byte offset ",
                 pos_ - s.size() + bad, ")");
        return make_view(Kind::str, s);
    }

    // A Python 2 str (STRING, BINSTRING, SHORT_BINSTRING), per LoadOptions::encoding.
    std::uint32_t make_py2_str(std::string_view s, bool is_view) {
        if (opt_.encoding == Encoding::bytes)
            return is_view ? make_view(Kind::bytes, s) : make_owned(Kind::bytes, std::string(s));
        if (opt_.encoding == Encoding::ascii && !all_ascii(s)) {
            std::size_t at = 0;
            while (static_cast<unsigned char>(s[at]) < 0x80) ++at;
            fail("a Python 2 str holds the non-ASCII byte ", hex(static_cast<std::uint8_t>(s[at])), " at index ", at,
                 "; load with LoadOptions::encoding = Encoding::latin1 (numpy data) or Encoding::bytes");
        }
        return is_view ? make_view(Kind::str, s, true) : make_owned(Kind::str, std::string(s), true);
    }

    bool hashable(std::uint32_t id, int depth) {
        Node& nd = nodes_[id];
        switch (nd.kind) {
            case Kind::list: case Kind::dict: case Kind::set: return false;
            case Kind::bytes: return !(nd.flags & kMutableBytes);
            case Kind::array: return arrays_[nd.aux].scalar;
            case Kind::tuple: {
                if (nd.flags & kHashKnown) return nd.flags & kHashable;
                if (depth > opt_.max_depth)
                    fail("a tuple nested deeper than LoadOptions::max_depth = ", opt_.max_depth);
                bool h = true;
                for (std::size_t i = 0; h && i < seqs_[nd.aux].size(); ++i) h = hashable(seqs_[nd.aux][i], depth + 1);
                nodes_[id].flags |= kHashKnown | (h ? kHashable : 0);
                return h;
            }
            default: return true;
        }
    }
    void require_hashable(std::uint32_t id, const char* as) {
        if (!hashable(id, 0)) fail("unhashable ", kind_name(kind(id)), " used as ", as);
    }

    // ---- stack

    void push(std::uint32_t id) {
        stack_.push_back(id);
        if (stack_.size() > stack_peak_) {
            charge(sizeof(std::uint32_t));
            stack_peak_ = stack_.size();
        }
    }
    std::size_t fence() const { return marks_.empty() ? 0 : marks_.back(); }
    std::uint32_t pop() {
        if (stack_.size() <= fence())
            fail(marks_.empty() ? "stack underflow: the stack is empty"
                                : "stack underflow: no object above the last MARK");
        const std::uint32_t id = stack_.back();
        stack_.pop_back();
        return id;
    }
    std::uint32_t top() {
        if (stack_.size() <= fence())
            fail(marks_.empty() ? "stack underflow: the stack is empty"
                                : "stack underflow: no object above the last MARK");
        return stack_.back();
    }
    // Pops everything above the last MARK and the MARK itself.
    std::vector<std::uint32_t> pop_mark() {
        if (marks_.empty()) fail("no MARK to pop (a mark-delimited opcode without a preceding MARK)");
        const std::size_t m = marks_.back();
        marks_.pop_back();
        std::vector<std::uint32_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
        stack_.resize(m);
        return items;
    }

    // ---- memo

    void memo_put(std::uint64_t index) {
        const std::uint32_t id = top();
        auto it = memo_.find(index);
        if (it != memo_.end()) {
            it->second = id;
            return;
        }
        if (memo_.size() >= opt_.max_memo)
            fail("the memo would exceed LoadOptions::max_memo = ", opt_.max_memo, " entries");
        charge(48);  // an unordered_map node, roughly
        memo_.emplace(index, id);
    }
    void memo_get(std::uint64_t index) {
        auto it = memo_.find(index);
        if (it == memo_.end()) fail("memo key ", index, " not found (no PUT for it before this GET)");
        push(it->second);
    }
    static bool parse_decimal(std::string_view s, std::int64_t& v) {
        while (!s.empty() && (s.back() == ' ' || s.back() == '\r' || s.back() == '\t')) s.remove_suffix(1);
        while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
        if (!s.empty() && s.front() == '+') s.remove_prefix(1);
        if (s.empty()) return false;
        auto r = std::from_chars(s.data(), s.data() + s.size(), v);
        return r.ec == std::errc() && r.ptr == s.data() + s.size();
    }
    std::uint64_t memo_index_text() {
        std::string_view s = line();
        std::int64_t v;
        if (!parse_decimal(s, v) || v < 0) fail("bad memo index '", printable(s), "'");
        return static_cast<std::uint64_t>(v);
    }

    // ---- numbers

    // Little-endian two's complement of any length, as int64.
    std::int64_t long_from_bytes(std::string_view b) {
        const auto* q = reinterpret_cast<const std::uint8_t*>(b.data());
        const std::size_t n = b.size();
        if (n == 0) return 0;
        const bool negative = q[n - 1] & 0x80;
        std::uint64_t v = negative ? ~std::uint64_t{0} : 0;
        for (std::size_t i = std::min<std::size_t>(n, 8); i-- > 0;) v = v << 8 | q[i];
        if (n < 8 && negative) v |= ~std::uint64_t{0} << (8 * n);
        bool fits = ((v >> 63) != 0) == negative;
        for (std::size_t i = 8; fits && i < n; ++i) fits = q[i] == (negative ? 0xff : 0x00);
        if (!fits)
            fail("integer of ", n, " bytes does not fit in int64 (Python ints beyond 64 bits are not supported)");
        return static_cast<std::int64_t>(v);
    }
    std::int64_t int_from_text(std::string_view s) {
        std::string_view t = s;
        if (!t.empty() && t.back() == 'L') t.remove_suffix(1);  // Python 2 longs: "123L"
        std::int64_t v;
        if (!parse_decimal(t, v)) {
            std::string_view digits = t;
            while (!digits.empty() && (digits.front() == ' ' || digits.front() == '-' || digits.front() == '+'))
                digits.remove_prefix(1);
            const bool numeric = !digits.empty() && std::all_of(digits.begin(), digits.end(), [](char c) {
                return (c >= '0' && c <= '9') || c == ' ' || c == '\r' || c == '\t';
            });
            if (numeric) fail("integer '", printable(s), "' does not fit in int64");
            fail("bad integer literal '", printable(s), "'");
        }
        return v;
    }
    double float_from_text(std::string_view s) {
        std::string_view t = s;
        while (!t.empty() && (t.back() == ' ' || t.back() == '\r' || t.back() == '\t')) t.remove_suffix(1);
        while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
        bool neg = false;
        if (!t.empty() && (t.front() == '+' || t.front() == '-')) {
            neg = t.front() == '-';
            t.remove_prefix(1);
        }
        double v = 0;
        auto r = std::from_chars(t.data(), t.data() + t.size(), v);
        if (t.empty() || t.front() == '+' || t.front() == '-' || r.ec == std::errc::invalid_argument ||
            r.ptr != t.data() + t.size())
            fail("bad float literal '", printable(s), "'");
        if (r.ec == std::errc::result_out_of_range) {
            // Python's float() gives inf on overflow and 0 on underflow.
            const std::size_t e = t.find_first_of("eE");
            const bool underflow = e != std::string_view::npos && e + 1 < t.size() && t[e + 1] == '-';
            v = underflow ? 0.0 : std::numeric_limits<double>::infinity();
        }
        return neg ? -v : v;
    }

    // ---- protocol 0 strings

    // codecs.escape_decode of a quoted STRING argument.
    std::string escape_decode(std::string_view s) {
        std::string out;
        for (std::size_t i = 0; i < s.size(); ++i) {
            char c = s[i];
            if (c != '\\') {
                out += c;
                continue;
            }
            if (++i == s.size()) fail("trailing \\ in a STRING argument");
            c = s[i];
            switch (c) {
                case '\n': break;
                case '\\': out += '\\'; break;
                case '\'': out += '\''; break;
                case '"': out += '"'; break;
                case 'a': out += '\a'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'v': out += '\v'; break;
                case 'x': {
                    if (s.size() - i < 3) fail("invalid \\x escape in a STRING argument");
                    const int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
                    if (hi < 0 || lo < 0) fail("invalid \\x escape in a STRING argument");
                    out += char(hi * 16 + lo);
                    i += 2;
                    break;
                }
                default:
                    if (c >= '0' && c <= '7') {
                        int v = c - '0';
                        for (int k = 0; k < 2 && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7'; ++k)
                            v = v * 8 + (s[++i] - '0');
                        out += char(v & 0xff);
                    } else {
                        out += '\\';
                        out += c;
                    }
            }
        }
        return out;
    }

    // raw-unicode-escape decoding of a UNICODE argument, to UTF-8.
    std::string raw_unicode_escape_decode(std::string_view s) {
        std::string out;
        for (std::size_t i = 0; i < s.size();) {
            const unsigned char c = s[i];
            if (c != '\\') {
                utf8_append(out, c);
                ++i;
                continue;
            }
            // \u and \U escape only after an odd number of backslashes.
            std::size_t run = 0;
            while (i < s.size() && s[i] == '\\') out += '\\', ++i, ++run;
            if (run % 2 == 0 || i == s.size() || (s[i] != 'u' && s[i] != 'U')) continue;
            out.pop_back();
            const std::size_t digits = s[i] == 'u' ? 4 : 8;
            ++i;
            if (s.size() - i < digits) fail("truncated \\", s[i - 1], " escape in a UNICODE argument");
            std::uint32_t cp = 0;
            for (std::size_t k = 0; k < digits; ++k, ++i) {
                const int d = hex_digit(s[i]);
                if (d < 0) fail("bad \\u escape in a UNICODE argument");
                cp = cp << 4 | std::uint32_t(d);
            }
            if (cp > 0x10ffff) fail("\\U escape beyond U+10FFFF in a UNICODE argument");
            utf8_append(out, cp);
        }
        return out;
    }

    // ---- globals and calls

    std::uint32_t resolve_global(std::string_view module, std::string_view name) {
        for (const auto& g : kAllowedGlobals)
            if (g.module == module && g.name == name) return make(Kind::global, static_cast<std::uint32_t>(g.id));
        fail("global '", printable(module), ".", printable(name),
             "' is not allowed: this reader only builds numpy arrays, numpy scalars and plain Python values "
             "(None, bool, int, float, str, bytes, tuple, list, dict, set)");
    }

    GlobalId global_of(std::uint32_t id, const char* what) {
        if (kind(id) != Kind::global) fail(what, " must be a global, found ", kind_name(kind(id)));
        return static_cast<GlobalId>(nodes_[id].aux);
    }

    const std::vector<std::uint32_t>& tuple_items(std::uint32_t id, const char* what) {
        if (kind(id) != Kind::tuple) fail(what, " must be a tuple, found ", kind_name(kind(id)));
        return seq(id);
    }

    std::int64_t int_arg(std::uint32_t id, const char* what) {
        if (kind(id) == Kind::integer) return nodes_[id].num.i;
        if (kind(id) == Kind::boolean) return nodes_[id].aux;
        fail(what, " must be an int, found ", kind_name(kind(id)));
    }

    std::vector<std::int64_t> shape_arg(std::uint32_t id, const char* what) {
        std::vector<std::int64_t> shape;
        if (kind(id) == Kind::integer) {
            shape.push_back(nodes_[id].num.i);
        } else {
            const auto& items = tuple_items(id, what);
            if (items.size() > 64) fail(what, " has ", items.size(), " dimensions (numpy allows at most 64)");
            for (std::uint32_t d : items) {
                if (kind(d) != Kind::integer) fail(what, " must hold ints, found ", kind_name(kind(d)));
                shape.push_back(nodes_[d].num.i);
            }
        }
        for (std::int64_t d : shape)
            if (d < 0) fail(what, " ", shape_str(shape), " has a negative dimension");
        return shape;
    }

    ArrayDType dtype_of_spec(std::uint32_t id, const char* what) {
        if (kind(id) == Kind::dtype) return dtypes_[nodes_[id].aux];
        const std::string spec = text_or_bytes(id, what);
        ArrayDType d;
        if (!parse_dtype_spec(spec, d))
            fail("unsupported numpy dtype '", printable(spec),
                 "' (supported: bool, int8..int64, uint8..uint64, float16/32/64; not object, complex, string, "
                 "datetime or structured dtypes)");
        return d;
    }

    ArrayDType dtype_arg(std::uint32_t id, const char* what) {
        if (kind(id) != Kind::dtype) fail(what, " must be a numpy dtype, found ", kind_name(kind(id)));
        return dtypes_[nodes_[id].aux];
    }

    // Data bytes (a blob index) from bytes, bytearray or a str to encode as latin-1.
    std::uint32_t data_arg(std::uint32_t id, const char* what) {
        if (kind(id) == Kind::bytes) return nodes_[id].aux;
        if (kind(id) == Kind::str) return latin1_encode(id, what);
        if (kind(id) == Kind::list) fail(what, " is a list: object arrays (dtype=object) are not supported");
        fail(what, " must be bytes, found ", kind_name(kind(id)));
    }

    std::uint32_t make_array_node(ArrayNode a) {
        charge(sizeof(ArrayNode) + a.shape.size() * sizeof(std::int64_t));
        arrays_.push_back(std::move(a));
        return make(Kind::array, static_cast<std::uint32_t>(arrays_.size() - 1));
    }

    void check_data_size(const ArrayNode& a, std::uint32_t data_blob, const char* what) {
        const std::int64_t n = checked_numel(a.shape, a.dtype.itemsize);
        if (n < 0) fail(what, ": shape ", shape_str(a.shape), " has too many elements");
        const std::uint64_t need = std::uint64_t(n) * std::uint64_t(a.dtype.itemsize);
        const std::size_t have = blobs_[data_blob].bytes().size();
        if (need != have)
            fail(what, ": ", a.dtype.name(), " ", shape_str(a.shape), " needs ", need, " data bytes, found ", have);
    }

    // Items for set(), frozenset(): a list, tuple, set or frozenset.
    std::vector<std::uint32_t> iterable_items(std::uint32_t id, const char* what) {
        const Kind k = kind(id);
        if (k != Kind::list && k != Kind::tuple && k != Kind::set && k != Kind::frozenset)
            fail(what, " must be a list, tuple or set, found ", kind_name(k));
        return seq(id);
    }

    // cls(*args) for an allowed global (REDUCE, and NEWOBJ for classes).
    std::uint32_t call(std::uint32_t callable, std::uint32_t args_id, bool newobj) {
        const GlobalId g = global_of(callable, newobj ? "NEWOBJ's class" : "REDUCE's callable");
        const std::string gname = global_name(g);
        // A copy: building the result may grow seqs_.
        const std::vector<std::uint32_t> args =
            tuple_items(args_id, newobj ? "NEWOBJ's arguments" : "REDUCE's arguments");
        auto nargs = [&](std::size_t lo, std::size_t hi) {
            if (args.size() < lo || args.size() > hi)
                fail(gname, " takes ", lo == hi ? concat(lo) : concat(lo, " to ", hi), " arguments, got ",
                     args.size());
        };
        if (newobj && (g == GlobalId::reconstruct || g == GlobalId::ndarray || g == GlobalId::scalar ||
                       g == GlobalId::frombuffer || g == GlobalId::codecs_encode))
            fail("NEWOBJ of ", gname, " is not supported");
        switch (g) {
            case GlobalId::reconstruct: {
                nargs(3, 3);
                if (kind(args[0]) != Kind::global || static_cast<GlobalId>(nodes_[args[0]].aux) != GlobalId::ndarray)
                    fail("_reconstruct's first argument must be numpy.ndarray (subclasses are not supported)");
                ArrayNode a;
                a.shape = shape_arg(args[1], "_reconstruct's shape");
                a.dtype = dtype_of_spec(args[2], "_reconstruct's dtype");
                return make_array_node(std::move(a));
            }
            case GlobalId::ndarray: fail("calling numpy.ndarray directly is not supported");
            case GlobalId::dtype: {
                nargs(1, 3);
                ArrayDType d = dtype_of_spec(args[0], "numpy.dtype's argument");
                for (std::size_t i = 1; i < args.size(); ++i) int_arg(args[i], "numpy.dtype's align/copy flag");
                charge(sizeof(ArrayDType));
                dtypes_.push_back(d);
                return make(Kind::dtype, static_cast<std::uint32_t>(dtypes_.size() - 1));
            }
            case GlobalId::scalar: {
                nargs(2, 2);
                ArrayNode a;
                a.dtype = dtype_arg(args[0], "scalar's dtype");
                a.scalar = a.built = true;
                a.data = data_arg(args[1], "scalar's data");
                check_data_size(a, a.data, "numpy scalar");
                return make_array_node(std::move(a));
            }
            case GlobalId::frombuffer: {
                nargs(4, 4);
                if (kind(args[0]) != Kind::bytes)
                    fail("_frombuffer's buffer must be bytes or bytearray, found ", kind_name(kind(args[0])));
                ArrayNode a;
                a.data = nodes_[args[0]].aux;
                a.dtype = dtype_arg(args[1], "_frombuffer's dtype");
                a.shape = shape_arg(args[2], "_frombuffer's shape");
                const std::string order = text_or_bytes(args[3], "_frombuffer's order");
                if (order != "C" && order != "F")
                    fail("_frombuffer's order must be 'C' or 'F', found '", printable(order), "'");
                a.fortran = order == "F";
                a.built = true;
                check_data_size(a, a.data, "_frombuffer");
                return make_array_node(std::move(a));
            }
            case GlobalId::codecs_encode: {
                nargs(1, 3);
                if (kind(args[0]) != Kind::str)
                    fail("_codecs.encode's argument must be a str, found ", kind_name(kind(args[0])));
                std::string enc = args.size() > 1 ? text_or_bytes(args[1], "_codecs.encode's encoding") : "utf-8";
                return encode_str(args[0], enc);
            }
            case GlobalId::bytes: case GlobalId::bytearray: {
                nargs(0, 2);
                const std::uint8_t flags = g == GlobalId::bytearray ? kMutableBytes : 0;
                if (args.empty()) return make_blob_node(Kind::bytes, add_blob(Blob{p_, 0, {}, false}), flags);
                std::uint32_t b;
                if (kind(args[0]) == Kind::bytes) {
                    if (args.size() != 1) fail(gname, "(bytes) takes one argument");
                    b = nodes_[args[0]].aux;
                } else if (kind(args[0]) == Kind::str) {
                    if (args.size() != 2) fail(gname, "(str) needs an encoding");
                    b = nodes_[encode_str(args[0], text_or_bytes(args[1], "the encoding"))].aux;
                } else {
                    fail(gname, "'s argument must be bytes or a str, found ", kind_name(kind(args[0])));
                }
                return make_blob_node(Kind::bytes, b, flags);
            }
            case GlobalId::set: case GlobalId::frozenset: {
                nargs(0, 1);
                std::vector<std::uint32_t> items;
                if (!args.empty()) items = iterable_items(args[0], concat(gname, "'s argument").c_str());
                for (std::uint32_t x : items) require_hashable(x, "a set element");
                return make_seq(g == GlobalId::set ? Kind::set : Kind::frozenset, std::move(items));
            }
            case GlobalId::ordered_dict: {
                nargs(0, 1);
                std::vector<std::uint32_t> kv;
                if (!args.empty()) {
                    for (std::uint32_t pair : iterable_items(args[0], "OrderedDict's argument")) {
                        const auto& p = tuple_items(pair, "an OrderedDict item");
                        if (p.size() != 2) fail("an OrderedDict item must be a (key, value) pair");
                        require_hashable(p[0], "a dict key");
                        kv.push_back(p[0]);
                        kv.push_back(p[1]);
                    }
                }
                return make_seq(Kind::dict, std::move(kv));
            }
        }
        fail("unknown global");
    }

    std::uint32_t encode_str(std::uint32_t str_id, std::string enc) {
        for (char& c : enc) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        std::replace(enc.begin(), enc.end(), '_', '-');
        if (enc == "latin1" || enc == "latin-1" || enc == "iso-8859-1" || enc == "iso8859-1" || enc == "l1")
            return make_blob_node(Kind::bytes, latin1_encode(str_id, "_codecs.encode"));
        if (enc == "utf-8" || enc == "utf8") {
            if (blob(str_id).latin1 && !all_ascii(blob(str_id).bytes())) return make_owned(Kind::bytes, text(str_id));
            return make_blob_node(Kind::bytes, nodes_[str_id].aux);
        }
        fail("unsupported encoding '", printable(enc), "' (latin1 and utf-8 are supported)");
    }

    void build(std::uint32_t obj, std::uint32_t state) {
        if (kind(obj) == Kind::array) {
            const std::vector<std::uint32_t> st = tuple_items(state, "an ndarray's state");
            if (st.size() != 5 && st.size() != 4)
                fail("an ndarray's state must have 5 items (version, shape, dtype, is_fortran, data), found ",
                     st.size());
            const std::size_t o = st.size() == 5 ? 1 : 0;
            if (o) {
                const std::int64_t version = int_arg(st[0], "the ndarray state's version");
                if (version != 0 && version != 1) fail("unsupported ndarray state version ", version);
            }
            ArrayNode a = arrays_[nodes_[obj].aux];
            a.shape = shape_arg(st[o], "the ndarray state's shape");
            a.dtype = dtype_arg(st[o + 1], "the ndarray state's dtype");
            a.fortran = int_arg(st[o + 2], "the ndarray state's is_fortran") != 0;
            a.data = data_arg(st[o + 3], "the ndarray state's data");
            a.built = true;
            check_data_size(a, a.data, "ndarray state");
            charge(a.shape.size() * sizeof(std::int64_t));
            arrays_[nodes_[obj].aux] = std::move(a);
            return;
        }
        if (kind(obj) == Kind::dtype) {
            const std::vector<std::uint32_t> st = tuple_items(state, "a dtype's state");
            if (st.size() != 8 && st.size() != 9)
                fail("a dtype's state must have 8 items (version 3) or 9 (version 4), found ", st.size());
            const std::int64_t version = int_arg(st[0], "the dtype state's version");
            if (version != (st.size() == 8 ? 3 : 4))
                fail("a dtype state of ", st.size(), " items must have version ", st.size() == 8 ? 3 : 4,
                     ", found ", version);
            const std::string order = text_or_bytes(st[1], "the dtype state's byte order");
            if (order != "<" && order != ">" && order != "|" && order != "=")
                fail("bad byte order '", printable(order), "' in a dtype state (expected <, >, | or =)");
            for (int i = 2; i <= 4; ++i)
                if (kind(st[i]) != Kind::none)
                    fail("structured or subarray dtypes are not supported (dtype state item ", i, " is a ",
                         kind_name(kind(st[i])), ")");
            ArrayDType& d = dtypes_[nodes_[obj].aux];
            const std::int64_t elsize = int_arg(st[5], "the dtype state's elsize");
            if (elsize != -1 && elsize != d.itemsize)
                fail("dtype state elsize ", elsize, " does not match ", d.name());
            int_arg(st[6], "the dtype state's alignment");
            int_arg(st[7], "the dtype state's flags");
            if (st.size() == 9 && kind(st[8]) != Kind::none && kind(st[8]) != Kind::dict)
                fail("a dtype's metadata must be None or a dict, found ", kind_name(kind(st[8])));
            d = ArrayDType::make(d.kind, d.itemsize, order[0]);
            return;
        }
        fail("BUILD on a ", kind_name(kind(obj)), " is not supported (only numpy arrays and dtypes)");
    }

    // ---- the machine

    std::uint32_t execute() {
        for (;;) {
            op_offset_ = pos_;
            have_op_ = false;
            if (pos_ == n_) fail("truncated: the pickle ends at byte offset ", n_, " without a STOP opcode");
            op_ = *take(1);
            have_op_ = true;
            if (!protocol0_opcode(op_)) binary_seen_ = true;
            switch (op_) {
                case 0x80: {  // PROTO
                    const int proto = *take(1);
                    if (proto > 5) fail("unsupported pickle protocol ", proto, " (this reader handles 0 to 5)");
                    if (protocol_ < 0) protocol_ = proto;
                    break;
                }
                case 0x95: {  // FRAME
                    const std::uint64_t len = le(8);
                    if (in_frame_ && pos_ < frame_end_) fail("a new frame begins before the end of the current one");
                    if (len > n_ - pos_) fail("frame of ", len, " bytes exceeds the ", n_ - pos_, " bytes left");
                    in_frame_ = true;
                    frame_end_ = pos_ + static_cast<std::size_t>(len);
                    break;
                }
                case '.': {  // STOP
                    const std::uint32_t root = pop();
                    if (!stack_.empty() || !marks_.empty())
                        fail("STOP leaves ", stack_.size(), " object(s) and ", marks_.size(), " MARK(s) on the stack");
                    if (pos_ != n_) fail(n_ - pos_, " bytes of trailing data after STOP");
                    return root;
                }
                case '(':  // MARK
                    charge(sizeof(std::size_t));
                    marks_.push_back(stack_.size());
                    break;
                case '0':  // POP: a MARK on top is discarded, as CPython does
                    if (!marks_.empty() && marks_.back() == stack_.size()) marks_.pop_back();
                    else pop();
                    break;
                case '1': pop_mark(); break;  // POP_MARK
                case '2': push(top()); break;  // DUP
                case 'N': push(make(Kind::none)); break;
                case 0x88: push(make_bool(true)); break;
                case 0x89: push(make_bool(false)); break;
                case 'I': {  // INT; "01"/"00" are Python 2's True/False
                    std::string_view s = line();
                    if (s == "01" || s == "00") push(make_bool(s == "01"));
                    else push(make_int(int_from_text(s)));
                    break;
                }
                case 'J': push(make_int(static_cast<std::int32_t>(static_cast<std::uint32_t>(le(4))))); break;
                case 'K': push(make_int(static_cast<std::int64_t>(le(1)))); break;
                case 'M': push(make_int(static_cast<std::int64_t>(le(2)))); break;
                case 'L': push(make_int(int_from_text(line()))); break;
                case 0x8a: push(make_int(long_from_bytes(counted(1)))); break;
                case 0x8b: push(make_int(long_from_bytes(counted(4, true)))); break;
                case 'F': push(make_float(float_from_text(line()))); break;
                case 'G': {
                    const std::uint8_t* q = take(8);
                    std::uint64_t bits = 0;
                    for (int i = 0; i < 8; ++i) bits = bits << 8 | q[i];
                    push(make_float(std::bit_cast<double>(bits)));
                    break;
                }
                case 'S': {  // STRING: a quoted, escaped Python 2 str
                    std::string_view s = line();
                    if (s.size() < 2 || s.front() != s.back() || (s.front() != '\'' && s.front() != '"'))
                        fail("the STRING argument must be quoted");
                    std::string v = escape_decode(s.substr(1, s.size() - 2));
                    charge(v.size());
                    push(make_py2_str(v, false));
                    break;
                }
                case 'T': push(make_py2_str(counted(4, true), true)); break;
                case 'U': push(make_py2_str(counted(1), true)); break;
                case 'V': {
                    std::string v = raw_unicode_escape_decode(line());
                    charge(v.size());
                    push(make_owned(Kind::str, std::move(v)));
                    break;
                }
                case 'X': push(make_utf8_view(counted(4))); break;
                case 0x8c: push(make_utf8_view(counted(1))); break;
                case 0x8d: push(make_utf8_view(counted(8))); break;
                case 'B': push(make_view(Kind::bytes, counted(4))); break;
                case 'C': push(make_view(Kind::bytes, counted(1))); break;
                case 0x8e: push(make_view(Kind::bytes, counted(8))); break;
                case 0x96: {
                    std::uint32_t id = make_view(Kind::bytes, counted(8));
                    nodes_[id].flags |= kMutableBytes;
                    push(id);
                    break;
                }
                case 0x97:
                    fail("out-of-band buffer (NEXT_BUFFER): the pickle was written with a buffer_callback and "
                         "needs its buffers passed separately, which is not supported");
                case 0x98:  // READONLY_BUFFER: in-band it only marks the buffer read-only
                    if (kind(top()) != Kind::bytes) fail("READONLY_BUFFER on a ", kind_name(kind(top())));
                    break;
                case ')': push(make_seq(Kind::tuple, {})); break;
                case 't': push(make_seq(Kind::tuple, pop_mark())); break;
                case 0x85: case 0x86: case 0x87: {
                    const std::size_t k = op_ - 0x84;
                    std::vector<std::uint32_t> items(k);
                    for (std::size_t i = k; i-- > 0;) items[i] = pop();
                    push(make_seq(Kind::tuple, std::move(items)));
                    break;
                }
                case ']': push(make_seq(Kind::list, {})); break;
                case 'l': push(make_seq(Kind::list, pop_mark())); break;
                case 'a': {
                    const std::uint32_t v = pop();
                    const std::uint32_t list = top();
                    if (kind(list) != Kind::list) fail("APPEND to a ", kind_name(kind(list)), " (expected a list)");
                    seq_append(list, v);
                    break;
                }
                case 'e': {
                    std::vector<std::uint32_t> items = pop_mark();
                    const std::uint32_t list = top();
                    if (kind(list) != Kind::list) fail("APPENDS to a ", kind_name(kind(list)), " (expected a list)");
                    for (std::uint32_t v : items) seq_append(list, v);
                    break;
                }
                case '}': push(make_seq(Kind::dict, {})); break;
                case 'd': {
                    std::vector<std::uint32_t> items = pop_mark();
                    if (items.size() % 2) fail("DICT with an odd number (", items.size(), ") of keys and values");
                    for (std::size_t i = 0; i < items.size(); i += 2) require_hashable(items[i], "a dict key");
                    push(make_seq(Kind::dict, std::move(items)));
                    break;
                }
                case 's': {
                    const std::uint32_t v = pop();
                    const std::uint32_t k = pop();
                    const std::uint32_t d = top();
                    if (kind(d) != Kind::dict) fail("SETITEM on a ", kind_name(kind(d)), " (expected a dict)");
                    require_hashable(k, "a dict key");
                    seq_append(d, k);
                    seq_append(d, v);
                    break;
                }
                case 'u': {
                    std::vector<std::uint32_t> items = pop_mark();
                    const std::uint32_t d = top();
                    if (kind(d) != Kind::dict) fail("SETITEMS on a ", kind_name(kind(d)), " (expected a dict)");
                    if (items.size() % 2) fail("SETITEMS with an odd number (", items.size(), ") of keys and values");
                    for (std::size_t i = 0; i < items.size(); i += 2) require_hashable(items[i], "a dict key");
                    for (std::uint32_t x : items) seq_append(d, x);
                    break;
                }
                case 0x8f: push(make_seq(Kind::set, {})); break;
                case 0x90: {
                    std::vector<std::uint32_t> items = pop_mark();
                    const std::uint32_t s = top();
                    if (kind(s) != Kind::set) fail("ADDITEMS to a ", kind_name(kind(s)), " (expected a set)");
                    for (std::uint32_t x : items) require_hashable(x, "a set element");
                    for (std::uint32_t x : items) seq_append(s, x);
                    break;
                }
                case 0x91: {
                    std::vector<std::uint32_t> items = pop_mark();
                    for (std::uint32_t x : items) require_hashable(x, "a frozenset element");
                    push(make_seq(Kind::frozenset, std::move(items)));
                    break;
                }
                case 'p': memo_put(memo_index_text()); break;
                case 'q': memo_put(le(1)); break;
                case 'r': memo_put(le(4)); break;
                case 0x94: memo_put(memo_.size()); break;
                case 'g': memo_get(memo_index_text()); break;
                case 'h': memo_get(le(1)); break;
                case 'j': memo_get(le(4)); break;
                case 'c': {
                    std::string_view module = line();
                    std::string_view name = line();
                    push(resolve_global(module, name));
                    break;
                }
                case 0x93: {
                    const std::uint32_t name = pop();
                    const std::uint32_t module = pop();
                    if (kind(name) != Kind::str || kind(module) != Kind::str)
                        fail("STACK_GLOBAL needs two str (module, name), found ", kind_name(kind(module)), " and ",
                             kind_name(kind(name)));
                    push(resolve_global(text(module), text(name)));
                    break;
                }
                case 'R': {
                    const std::uint32_t args = pop();
                    const std::uint32_t callable = pop();
                    push(call(callable, args, false));
                    break;
                }
                case 0x81: {
                    const std::uint32_t args = pop();
                    const std::uint32_t cls = pop();
                    push(call(cls, args, true));
                    break;
                }
                case 'b': {
                    const std::uint32_t state = pop();
                    build(top(), state);
                    break;
                }
                case 'P': case 'Q': fail("persistent IDs are not supported");
                case 'i': case 'o': fail("class instances (INST/OBJ) are not supported");
                case 0x82: case 0x83: case 0x84: fail("the extension registry (EXT1/2/4) is not supported");
                case 0x92: fail("NEWOBJ_EX is not supported");
                default: fail("unknown opcode ", hex(op_));
            }
        }
    }

    // ---- to Value

    struct Step {
        std::uint32_t container;
        std::size_t pos;
    };

    std::string path_str() const {
        std::string p = "root";
        for (const Step& s : path_) {
            const Node& c = nodes_[s.container];
            // Appended piece by piece: GCC 12 warns (-Wrestrict) on chained string +.
            p += '[';
            if (c.kind != Kind::dict) {
                p += std::to_string(s.pos);
            } else {
                const std::uint32_t key = seqs_[c.aux][s.pos & ~std::size_t{1}];
                const Node& k = nodes_[key];
                if (s.pos % 2 == 1 && k.kind == Kind::str) {
                    p += '\'';
                    p += printable(text(key), 60);
                    p += '\'';
                } else if (s.pos % 2 == 1 && k.kind == Kind::integer) {
                    p += std::to_string(k.num.i);
                } else {
                    p += "<key ";
                    p += std::to_string(s.pos / 2);
                    p += '>';
                }
            }
            p += ']';
        }
        return p;
    }

    template <typename... Args>
    [[noreturn]] void fail_at(std::uint32_t id, Args&&... args) const {
        CUMULUS_FAIL(name_, ": ", concat(std::forward<Args>(args)...), " (at ", path_str(),
                     "; object made at byte offset ", nodes_[id].offset, ")");
    }

    // on_path_ bits: the node is on the current path (a cycle if met again),
    // it was converted before (converting it again builds a copy).
    static constexpr std::uint8_t kOnPath = 1, kConverted = 2;

    void charge_conv(std::uint32_t id, std::size_t bytes) {
        allocated_ = bytes > SIZE_MAX - allocated_ ? SIZE_MAX : allocated_ + bytes;
        if (allocated_ > opt_.max_alloc_bytes)
            fail_at(id, "the result needs more than LoadOptions::max_alloc_bytes = ", opt_.max_alloc_bytes,
                    " bytes of memory (shared references are copied)");
        if (on_path_[id] & kConverted) {
            copied_ = bytes > SIZE_MAX - copied_ ? SIZE_MAX : copied_ + bytes;
            if (copied_ > opt_.max_copy_bytes)
                fail_at(id, "copies of shared references need more than LoadOptions::max_copy_bytes = ",
                        opt_.max_copy_bytes, " bytes of memory");
        }
    }

    std::vector<Value> convert_items(std::uint32_t id, int depth) {
        const std::vector<std::uint32_t>& items = seqs_[nodes_[id].aux];
        std::vector<Value> out;
        out.reserve(items.size());
        for (std::size_t i = 0; i < items.size(); ++i) {
            path_.push_back({id, i});
            out.push_back(convert(items[i], depth + 1));
            path_.pop_back();
        }
        return out;
    }

    Value convert(std::uint32_t id, int depth) {
        if (depth > opt_.max_depth) fail_at(id, "nesting deeper than LoadOptions::max_depth = ", opt_.max_depth);
        charge_conv(id, sizeof(Value));
        struct MarkConverted {  // after this node's own charges: a later visit is a copy
            std::uint8_t& bits;
            ~MarkConverted() { bits |= kConverted; }
        } mark{on_path_[id]};
        const Node& nd = nodes_[id];
        switch (nd.kind) {
            case Kind::none: return Value::none();
            case Kind::boolean: return Value::boolean(nd.aux != 0);
            case Kind::integer: return Value::integer(nd.num.i);
            case Kind::floating: return Value::floating(nd.num.f);
            case Kind::str: {
                charge_conv(id, blob(id).bytes().size() * (blob(id).latin1 ? 2 : 1));
                return Value::str(text(id));
            }
            case Kind::bytes: {
                charge_conv(id, blob(id).bytes().size());
                return Value::bytes(blob(id).bytes());
            }
            case Kind::tuple: case Kind::list: case Kind::dict: case Kind::set: case Kind::frozenset: {
                if (on_path_[id] & kOnPath)
                    fail_at(id, "a recursive structure: this ", kind_name(nd.kind), " contains itself");
                const std::size_t count = seqs_[nd.aux].size();
                charge_conv(id, count * sizeof(Value));
                on_path_[id] |= kOnPath;
                std::vector<Value> items = convert_items(id, depth);
                on_path_[id] &= static_cast<std::uint8_t>(~kOnPath);
                switch (nd.kind) {
                    case Kind::tuple: return Value::tuple(std::move(items));
                    case Kind::list: return Value::list(std::move(items));
                    case Kind::dict: {
                        Dict d;
                        d.reserve(items.size() / 2);
                        for (std::size_t i = 0; i + 1 < items.size(); i += 2)
                            d.emplace_back(std::move(items[i]), std::move(items[i + 1]));
                        dedup_dict(d);
                        return Value::dict(std::move(d));
                    }
                    default:
                        dedup_set(items);
                        return Value::set(std::move(items), nd.kind == Kind::frozenset);
                }
            }
            case Kind::array: {
                const ArrayNode& a = arrays_[nd.aux];
                Array out;
                out.dtype = a.dtype;
                out.shape = a.shape;
                out.fortran_order = a.fortran;
                out.scalar = a.scalar;
                if (a.built) {
                    std::string_view d = blobs_[a.data].bytes();
                    charge_conv(id, d.size());
                    out.data.assign(d.begin(), d.end());
                } else if (checked_numel(a.shape, a.dtype.itemsize) != 0) {
                    fail_at(id, "a numpy array from _reconstruct never got its data (no BUILD)");
                }
                return Value::array(std::move(out));
            }
            case Kind::dtype: fail_at(id, "a numpy dtype on its own cannot be represented (only as part of an array)");
            case Kind::global:
                fail_at(id, "the global ", global_name(static_cast<GlobalId>(nd.aux)),
                        " cannot be represented as a value");
        }
        fail_at(id, "unknown object");
    }

    const std::uint8_t* p_;
    std::size_t n_;
    std::size_t pos_ = 0;
    bool in_frame_ = false;
    std::size_t frame_end_ = 0;
    const std::string& name_;
    const LoadOptions& opt_;
    std::size_t allocated_;
    std::size_t copied_ = 0;

    std::size_t op_offset_ = 0;
    std::uint8_t op_ = 0;
    bool have_op_ = false;
    int protocol_ = -1;
    bool binary_seen_ = false;

    std::vector<Node> nodes_;
    std::vector<Blob> blobs_;
    std::vector<std::vector<std::uint32_t>> seqs_;
    std::vector<ArrayNode> arrays_;
    std::vector<ArrayDType> dtypes_;
    std::vector<std::uint32_t> stack_;
    std::size_t stack_peak_ = 0;
    std::vector<std::size_t> marks_;
    std::unordered_map<std::uint64_t, std::uint32_t> memo_;

    std::vector<std::uint8_t> on_path_;
    std::vector<Step> path_;
};

}  // namespace detail

// Parses the pickle in p[0..n), gzipped or not (told apart by the magic).
// `name` (a file name) goes into every error message; `info`, when given,
// receives the protocol. Throws cumulus::Error on anything malformed,
// disallowed or beyond the limits in `opt`.
inline Value loads(const std::uint8_t* p, std::size_t n, const std::string& name = "<pickle>",
                   const LoadOptions& opt = {}, LoadInfo* info = nullptr) {
    CUMULUS_CHECK(opt.max_depth >= 0, "pickle::LoadOptions: max_depth must be non-negative");
    if (io::is_gzip(p, n)) {
        std::vector<std::uint8_t> raw = io::gunzip(p, n, name, opt.max_alloc_bytes);
        if (info) info->gzipped = true;
        const std::string inner = name + " (decompressed)";
        return detail::Unpickler(raw.data(), raw.size(), inner, opt, raw.size()).run(info);
    }
    if (info) info->gzipped = false;
    return detail::Unpickler(p, n, name, opt, 0).run(info);
}

inline Value loads(const std::vector<std::uint8_t>& bytes, const std::string& name = "<pickle>",
                   const LoadOptions& opt = {}, LoadInfo* info = nullptr) {
    return loads(bytes.data(), bytes.size(), name, opt, info);
}

// Reads and parses a pickle file, plain or gzipped.
inline Value load(const std::string& path, const LoadOptions& opt = {}, LoadInfo* info = nullptr) {
    std::vector<std::uint8_t> bytes = io::read_file(path);
    return loads(bytes.data(), bytes.size(), path, opt, info);
}

// ---- writing

namespace detail {

class Pickler {
public:
    explicit Pickler(int protocol) : proto_(protocol) {}

    std::vector<std::uint8_t> run(const Value& v) {
        out_.push_back(0x80);
        out_.push_back(static_cast<std::uint8_t>(proto_));
        framing_ = proto_ >= 4;
        save(v, 0, "root");
        w(std::uint8_t('.'));
        commit_frame(true);
        return std::move(out_);
    }

private:
    static constexpr std::size_t kFrameTarget = 64 * 1024;  // Python's _FRAME_SIZE_TARGET
    static constexpr int kMaxDepth = 1000;
    static constexpr std::size_t kBatch = 1000;             // Python's _BATCHSIZE

    std::vector<std::uint8_t>& sink() { return framing_ ? frame_ : out_; }
    void w(std::uint8_t b) { sink().push_back(b); }
    void w(const void* p, std::size_t n) {
        const auto* q = static_cast<const std::uint8_t*>(p);
        sink().insert(sink().end(), q, q + n);
    }
    void w_le(std::uint64_t v, int bytes) {
        for (int i = 0; i < bytes; ++i) w(static_cast<std::uint8_t>(v >> (8 * i)));
    }

    // Python's framer: a frame is closed at an object boundary once it holds
    // 64 KiB; frames under 4 bytes get no FRAME opcode.
    void commit_frame(bool force = false) {
        if (!framing_ || frame_.empty() || (frame_.size() < kFrameTarget && !force)) return;
        if (frame_.size() >= 4) {
            out_.push_back(0x95);
            for (int i = 0; i < 8; ++i)
                out_.push_back(static_cast<std::uint8_t>(std::uint64_t(frame_.size()) >> (8 * i)));
        }
        out_.insert(out_.end(), frame_.begin(), frame_.end());
        frame_.clear();
    }
    // A large payload goes outside any frame, straight after its header.
    void w_payload(const std::vector<std::uint8_t>& header, std::string_view payload) {
        if (framing_ && payload.size() >= kFrameTarget) {
            commit_frame(true);
            out_.insert(out_.end(), header.begin(), header.end());
            out_.insert(out_.end(), payload.begin(), payload.end());
            return;
        }
        w(header.data(), header.size());
        w(payload.data(), payload.size());
    }

    void memoize() {
        if (proto_ >= 4) {
            w(std::uint8_t(0x94));
        } else if (memo_count_ < 256) {
            w(std::uint8_t('q'));
            w(static_cast<std::uint8_t>(memo_count_));
        } else {
            w(std::uint8_t('r'));
            w_le(memo_count_, 4);
        }
        ++memo_count_;
    }
    void memo_get(std::uint32_t i) {
        if (i < 256) {
            w(std::uint8_t('h'));
            w(static_cast<std::uint8_t>(i));
        } else {
            w(std::uint8_t('j'));
            w_le(i, 4);
        }
    }

    void save_global(std::string_view module, std::string_view name) {
        const std::string key = std::string(module) + "\n" + std::string(name);
        if (auto it = memo_.find(key); it != memo_.end()) return memo_get(it->second);
        if (proto_ >= 4) {
            save_str(module);
            save_str(name);
            w(std::uint8_t(0x93));
        } else {
            w(std::uint8_t('c'));
            w(module.data(), module.size());
            w(std::uint8_t('\n'));
            w(name.data(), name.size());
            w(std::uint8_t('\n'));
        }
        memo_[key] = memo_count_;
        memoize();
    }
    std::string_view builtins() const { return proto_ >= 3 ? "builtins" : "__builtin__"; }

    void save_int(std::int64_t v) {
        if (v >= 0 && v <= 0xff) {
            w(std::uint8_t('K'));
            w_le(static_cast<std::uint64_t>(v), 1);
        } else if (v >= 0 && v <= 0xffff) {
            w(std::uint8_t('M'));
            w_le(static_cast<std::uint64_t>(v), 2);
        } else if (v >= -0x80000000LL && v <= 0x7fffffffLL) {
            w(std::uint8_t('J'));
            w_le(static_cast<std::uint64_t>(v), 4);
        } else {
            // LONG1: the shortest little-endian two's complement.
            std::uint8_t b[8];
            for (int i = 0; i < 8; ++i) b[i] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(v) >> (8 * i));
            int n = 8;
            while (n > 1 && ((b[n - 1] == 0x00 && !(b[n - 2] & 0x80)) || (b[n - 1] == 0xff && (b[n - 2] & 0x80)))) --n;
            w(std::uint8_t(0x8a));
            w(static_cast<std::uint8_t>(n));
            w(b, static_cast<std::size_t>(n));
        }
    }
    void save_float(double d) {
        const auto bits = std::bit_cast<std::uint64_t>(d);
        w(std::uint8_t('G'));
        for (int i = 7; i >= 0; --i) w(static_cast<std::uint8_t>(bits >> (8 * i)));
    }
    void save_str(std::string_view s, const std::string& path = "") {
        const std::size_t bad = utf8_invalid_at(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
        CUMULUS_CHECK(bad == s.size(), "pickle::dumps: the str at ", path, " is not valid UTF-8 (byte ", bad, ")");
        std::vector<std::uint8_t> h;
        if (proto_ >= 4 && s.size() < 256) {
            h = {0x8c, static_cast<std::uint8_t>(s.size())};
        } else if (s.size() <= 0xffffffffu) {
            h = {'X'};
            for (int i = 0; i < 4; ++i) h.push_back(static_cast<std::uint8_t>(std::uint64_t(s.size()) >> (8 * i)));
        } else {
            CUMULUS_CHECK(proto_ >= 4, "pickle::dumps: a str over 4 GiB at ", path, " needs protocol 4");
            h = {0x8d};
            for (int i = 0; i < 8; ++i) h.push_back(static_cast<std::uint8_t>(std::uint64_t(s.size()) >> (8 * i)));
        }
        w_payload(h, s);
    }
    void save_bytes(std::string_view b, const std::string& path) {
        if (proto_ < 3) {
            // Python 3 under protocol 2: bytes() for b'', else _codecs.encode(latin-1 text, 'latin1').
            if (b.empty()) {
                save_global(builtins(), "bytes");
                w(std::uint8_t(')'));
                w(std::uint8_t('R'));
                return;
            }
            save_global("_codecs", "encode");
            std::string text;
            text.reserve(b.size());
            for (unsigned char c : b) utf8_append(text, c);
            CUMULUS_CHECK(text.size() <= 0xffffffffu, "pickle::dumps: bytes at ", path,
                          " are too long for protocol 2; use protocol 4");
            save_str(text, path);
            save_str("latin1");
            w(std::uint8_t(0x86));
            w(std::uint8_t('R'));
            return;
        }
        std::vector<std::uint8_t> h;
        if (b.size() < 256) {
            h = {'C', static_cast<std::uint8_t>(b.size())};
        } else if (b.size() <= 0xffffffffu) {
            h = {'B'};
            for (int i = 0; i < 4; ++i) h.push_back(static_cast<std::uint8_t>(std::uint64_t(b.size()) >> (8 * i)));
        } else {
            CUMULUS_CHECK(proto_ >= 4, "pickle::dumps: bytes over 4 GiB at ", path, " need protocol 4");
            h = {0x8e};
            for (int i = 0; i < 8; ++i) h.push_back(static_cast<std::uint8_t>(std::uint64_t(b.size()) >> (8 * i)));
        }
        w_payload(h, b);
    }

    void save_items_batched(const std::vector<Value>& items, int depth, const std::string& path, std::uint8_t one,
                            std::uint8_t many) {
        for (std::size_t i = 0; i < items.size(); i += kBatch) {
            const std::size_t end = std::min(items.size(), i + kBatch);
            if (end - i > 1 || one == 0) w(std::uint8_t('('));
            for (std::size_t j = i; j < end; ++j) save(items[j], depth + 1, path + "[" + std::to_string(j) + "]");
            w(end - i > 1 || one == 0 ? many : one);
        }
    }

    // numpy's dtype reduction: dtype('f4', False, True) + BUILD (3, '<', None, None, None, -1, -1, 0).
    void save_dtype(const ArrayDType& d) {
        const std::string key = d.str();
        if (auto it = dtype_memo_.find(key); it != dtype_memo_.end()) return memo_get(it->second);
        save_global("numpy", "dtype");
        save_str(std::string(1, d.kind) + std::to_string(d.itemsize));
        w(std::uint8_t(0x89));
        w(std::uint8_t(0x88));
        w(std::uint8_t(0x87));
        w(std::uint8_t('R'));
        dtype_memo_[key] = memo_count_;
        memoize();
        w(std::uint8_t('('));
        save_int(3);
        save_str(std::string(1, d.byteorder));
        w(std::uint8_t('N'));
        w(std::uint8_t('N'));
        w(std::uint8_t('N'));
        save_int(-1);
        save_int(-1);
        save_int(0);
        w(std::uint8_t('t'));
        w(std::uint8_t('b'));
    }

    void save_array(const Array& a, const std::string& path) {
        a.validate("pickle::dumps: the array at " + path);
        const std::string_view data(reinterpret_cast<const char*>(a.data.data()), a.data.size());
        if (a.scalar) {
            save_global("numpy.core.multiarray", "scalar");
            save_dtype(a.dtype);
            save_bytes(data, path);
            w(std::uint8_t(0x86));
            w(std::uint8_t('R'));
            return;
        }
        // _reconstruct(ndarray, (0,), b'b') then BUILD (1, shape, dtype, is_fortran, data).
        save_global("numpy.core.multiarray", "_reconstruct");
        save_global("numpy", "ndarray");
        save_int(0);
        w(std::uint8_t(0x85));
        save_bytes("b", path);
        w(std::uint8_t(0x87));
        w(std::uint8_t('R'));
        memoize();
        w(std::uint8_t('('));
        save_int(1);
        if (a.shape.empty()) {
            w(std::uint8_t(')'));
        } else {
            if (a.shape.size() > 3) w(std::uint8_t('('));
            for (std::int64_t d : a.shape) save_int(d);
            w(a.shape.size() > 3 ? std::uint8_t('t') : static_cast<std::uint8_t>(0x84 + a.shape.size()));
        }
        save_dtype(a.dtype);
        w(std::uint8_t(a.fortran_order ? 0x88 : 0x89));
        save_bytes(data, path);
        w(std::uint8_t('t'));
        w(std::uint8_t('b'));
    }

    void save(const Value& v, int depth, const std::string& path) {
        CUMULUS_CHECK(depth <= kMaxDepth, "pickle::dumps: nesting deeper than ", kMaxDepth, " at ", path);
        commit_frame();
        using T = Value::Type;
        switch (v.type()) {
            case T::none: w(std::uint8_t('N')); break;
            case T::boolean: w(std::uint8_t(v.as_bool() ? 0x88 : 0x89)); break;
            case T::integer: save_int(v.as_int()); break;
            case T::floating: save_float(v.as_float()); break;
            case T::str: save_str(v.as_str(), path); break;
            case T::bytes: {
                const auto& b = v.as_bytes();
                save_bytes(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()), path);
                break;
            }
            case T::tuple: {
                const auto& items = v.as_tuple();
                if (items.empty()) {
                    w(std::uint8_t(')'));
                    break;
                }
                if (items.size() > 3) w(std::uint8_t('('));
                for (std::size_t i = 0; i < items.size(); ++i)
                    save(items[i], depth + 1, path + "[" + std::to_string(i) + "]");
                w(items.size() > 3 ? std::uint8_t('t') : static_cast<std::uint8_t>(0x84 + items.size()));
                break;
            }
            case T::list:
                w(std::uint8_t(']'));
                save_items_batched(v.as_list(), depth, path, 'a', 'e');
                break;
            case T::dict: {
                w(std::uint8_t('}'));
                const Dict& d = v.as_dict();
                for (std::size_t i = 0; i < d.size(); i += kBatch) {
                    const std::size_t end = std::min(d.size(), i + kBatch);
                    if (end - i > 1) w(std::uint8_t('('));
                    for (std::size_t j = i; j < end; ++j) {
                        const std::string sub = path + "[" + d[j].first.repr(40) + "]";
                        save(d[j].first, depth + 1, sub);
                        save(d[j].second, depth + 1, sub);
                    }
                    w(std::uint8_t(end - i > 1 ? 'u' : 's'));
                }
                break;
            }
            case T::set: case T::frozenset: {
                const bool frozen = v.type() == T::frozenset;
                const auto& items = v.as_set();
                if (proto_ < 4) {  // set([items]), as Python writes it before protocol 4
                    save_global(builtins(), frozen ? "frozenset" : "set");
                    w(std::uint8_t(']'));
                    save_items_batched(items, depth, path, 'a', 'e');
                    w(std::uint8_t(0x85));
                    w(std::uint8_t('R'));
                } else if (frozen) {
                    w(std::uint8_t('('));
                    for (std::size_t i = 0; i < items.size(); ++i)
                        save(items[i], depth + 1, path + "[" + std::to_string(i) + "]");
                    w(std::uint8_t(0x91));
                } else {
                    w(std::uint8_t(0x8f));
                    save_items_batched(items, depth, path, 0, 0x90);
                }
                break;
            }
            case T::array: save_array(v.as_array(), path); break;
        }
    }

    int proto_;
    bool framing_ = false;
    std::vector<std::uint8_t> out_, frame_;
    std::uint32_t memo_count_ = 0;
    std::unordered_map<std::string, std::uint32_t> memo_;        // globals
    std::unordered_map<std::string, std::uint32_t> dtype_memo_;  // dtype.str -> its memo slot
};

}  // namespace detail

// The pickle of `v` with `protocol` 2, 3 or 4, as Python and numpy write it
// (arrays with numpy.core.multiarray._reconstruct, which numpy 1 and 2 load).
// Throws cumulus::Error on an invalid array or str (not UTF-8).
inline std::vector<std::uint8_t> dumps(const Value& v, int protocol = 4) {
    CUMULUS_CHECK(protocol >= 2 && protocol <= 4, "pickle::dumps: protocol must be 2, 3 or 4, got ", protocol);
    return detail::Pickler(protocol).run(v);
}

// Writes the pickle of `v` to `path` (atomically), gzipped when `gzip`.
inline void dump(const Value& v, const std::string& path, int protocol = 4, bool gzip = false) {
    std::vector<std::uint8_t> bytes = dumps(v, protocol);
    if (gzip) bytes = io::gzip_compress(bytes);
    io::write_file(path, bytes);
}

}  // namespace cumulus::data::pickle
