// Interop with Python's pickle and numpy, both ways, through
// tests/data/pickle_gen.py:
//   - numpy writes pickles of every protocol 0-5, every dtype and byte order,
//     Fortran order, 0-d, empty, scalars, nested containers, numpy-2 module
//     names and Python-2 pickles; cumulus reads each and compares it with the
//     manifest numpy wrote;
//   - cumulus writes protocol 2, 3 and 4; Python loads each with pickle.load
//     and compares it with the manifest cumulus wrote.
// Both sides describe values the same canonical way (pickle_gen.py's
// describe()). Needs a python3 with numpy (test_util::find_python: CUMULUS_PYTHON
// if set, else the first of .venv/bin/python, python3 on PATH and
// /usr/bin/python3 that imports numpy); without one the test prints SKIPPED and exits 77 (ctest's skip code; under CI=true a failure).
#include <doctest/doctest.h>

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cumulus/core/tensor.hpp>
#include <cumulus/data/pickle.hpp>

#include "../test_util.hpp"

namespace fs = std::filesystem;
namespace pk = cumulus::data::pickle;
using cumulus::Tensor;
using nlohmann::json;
using pk::Value;

namespace {

using test_util::shell_quote;

// The python to use, or a SKIPPED line and exit code 77 when none has numpy.
const std::string& python() {
    static const std::string py = [] {
        std::string tried;
        std::string found = test_util::find_python("numpy", &tried);
        if (!found.empty()) return found;
        test_util::skip_interop("no python with numpy (tried " + tried + ")");
        return std::string();
    }();
    return py;
}

std::string script() { return std::string(CUMULUS_SOURCE_DIR) + "/tests/data/pickle_gen.py"; }

// A fresh directory from mkdtemp, removed with everything in it.
struct TempDir {
    std::string path;
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "cumulus_pickle_interop_XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string operator/(const std::string& name) const { return path + "/" + name; }
};

std::string hex(const std::string& s) {
    static const char* digits = "0123456789abcdef";
    std::string h;
    for (unsigned char c : s) h += digits[c >> 4], h += digits[c & 15];
    return h;
}

std::string float_bits(double d) {
    std::uint64_t u;
    std::memcpy(&u, &d, 8);
    char buf[24];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(u));
    return buf;
}

// Calls f(T{}) with the C++ type of `d`.
template <typename F>
void with_type(const pk::ArrayDType& d, F&& f) {
    switch (d.kind) {
        case 'b': return f(bool{});
        case 'i':
            if (d.itemsize == 1) return f(std::int8_t{});
            if (d.itemsize == 2) return f(std::int16_t{});
            if (d.itemsize == 4) return f(std::int32_t{});
            return f(std::int64_t{});
        case 'u':
            if (d.itemsize == 1) return f(std::uint8_t{});
            if (d.itemsize == 2) return f(std::uint16_t{});
            if (d.itemsize == 4) return f(std::uint32_t{});
            return f(std::uint64_t{});
        default:
            if (d.itemsize == 2) return f(cumulus::half{});
            if (d.itemsize == 4) return f(float{});
            return f(double{});
    }
}

// pickle_gen.py's describe(), for a cumulus Value.
json describe(const Value& v, bool with_sum) {
    using T = Value::Type;
    switch (v.type()) {
        case T::none: return {{"t", "none"}};
        case T::boolean: return {{"t", "bool"}, {"v", v.as_bool()}};
        case T::integer: return {{"t", "int"}, {"v", v.as_int()}};
        case T::floating: return {{"t", "float"}, {"bits", float_bits(v.as_float())}};
        case T::str: return {{"t", "str"}, {"hex", hex(v.as_str())}};
        case T::bytes: {
            const auto& b = v.as_bytes();
            return {{"t", "bytes"}, {"hex", hex(std::string(b.begin(), b.end()))}};
        }
        case T::tuple: case T::list: case T::set: case T::frozenset: {
            json items = json::array();
            const auto& xs = v.type() == T::tuple ? v.as_tuple() : v.type() == T::list ? v.as_list() : v.as_set();
            for (const auto& x : xs) items.push_back(describe(x, with_sum));
            if (v.type() == T::set || v.type() == T::frozenset)
                std::sort(items.begin(), items.end(), [](const json& a, const json& b) { return a.dump() < b.dump(); });
            return {{"t", std::string(v.type_name())}, {"items", items}};
        }
        case T::dict: {
            json items = json::array();
            for (const auto& [k, x] : v.as_dict()) items.push_back(json::array({describe(k, with_sum), describe(x, with_sum)}));
            return {{"t", "dict"}, {"items", items}};
        }
        case T::array: {
            const pk::Array& a = v.as_array();
            int big_dims = 0;
            for (auto d : a.shape) big_dims += d > 1;
            json d = {{"t", a.scalar ? "scalar" : "array"},
                      {"dtype", pk::ArrayDType::make(a.dtype.kind, a.dtype.itemsize).str()},
                      {"shape", a.shape},
                      {"fortran", a.fortran_order && big_dims >= 2 && a.numel() > 0}};
            with_type(a.dtype, [&](auto tag) {
                using E = decltype(tag);
                Tensor<E> t = a.to_tensor<E>();  // C order, native (little-endian) bytes
                static_assert(std::endian::native == std::endian::little, "the CRC is of little-endian bytes");
                d["crc32"] = crc32(0L, reinterpret_cast<const Bytef*>(t.data()), static_cast<uInt>(t.nbytes()));
                json first = json::array();
                long double sum = 0, comp = 0;
                for (std::int64_t i = 0; i < t.numel(); ++i) {
                    double x;
                    if constexpr (std::is_same_v<E, cumulus::half>) x = cumulus::to_float(t[i]);
                    else x = static_cast<double>(t[i]);
                    if (i < 8) {
                        if constexpr (std::is_same_v<E, bool>) first.push_back(t[i]);
                        else if constexpr (std::is_integral_v<E>) first.push_back(t[i]);
                        else first.push_back(float_bits(x));
                    }
                    const long double y = x - comp, s = sum + y;  // Kahan
                    comp = (s - sum) - y;
                    sum = s;
                }
                d["first"] = first;
                if (with_sum && !a.scalar && a.dtype.kind != 'b')
                    d["sum"] = std::isfinite(static_cast<double>(sum)) ? json(static_cast<double>(sum)) : json(nullptr);
            });
            return d;
        }
    }
    return {};
}

// Equal, except that "sum" may differ by rounding (numpy's is math.fsum).
bool same(const json& got, const json& want, const std::string& where, std::string& why) {
    if (want.is_object()) {
        if (!got.is_object() || got.size() != want.size()) {
            why = where + ": got " + got.dump().substr(0, 300) + ", expected " + want.dump().substr(0, 300);
            return false;
        }
        for (auto it = want.begin(); it != want.end(); ++it) {
            if (!got.contains(it.key())) {
                why = where + ": no key " + it.key();
                return false;
            }
            const json& g = got[it.key()];
            if (it.key() == "sum" && it.value().is_number() && g.is_number()) {
                const double a = g.get<double>(), b = it.value().get<double>();
                if (std::fabs(a - b) > 1e-12 * std::max(1.0, std::fabs(b))) {
                    why = where + ": sum " + std::to_string(a) + ", expected " + std::to_string(b);
                    return false;
                }
                continue;
            }
            if (!same(g, it.value(), where + "." + it.key(), why)) return false;
        }
        return true;
    }
    if (want.is_array()) {
        if (!got.is_array() || got.size() != want.size()) {
            why = where + ": got " + got.dump().substr(0, 300) + ", expected " + want.dump().substr(0, 300);
            return false;
        }
        for (std::size_t i = 0; i < want.size(); ++i)
            if (!same(got[i], want[i], where + "[" + std::to_string(i) + "]", why)) return false;
        return true;
    }
    if (got != want) {
        why = where + ": got " + got.dump() + ", expected " + want.dump();
        return false;
    }
    return true;
}

pk::Array swapped(pk::Array a) {
    for (std::size_t i = 0; i < a.data.size(); i += a.dtype.itemsize)
        std::reverse(a.data.begin() + static_cast<std::ptrdiff_t>(i),
                     a.data.begin() + static_cast<std::ptrdiff_t>(i + a.dtype.itemsize));
    a.dtype = pk::ArrayDType::make(a.dtype.kind, a.dtype.itemsize, a.dtype.byteorder == '<' ? '>' : '<');
    return a;
}

// Elements `n` of type E with extremes first, as raw native bytes.
template <typename E>
std::vector<std::uint8_t> raw_values(std::size_t n, std::uint32_t seed) {
    std::vector<std::uint8_t> out(n * sizeof(E));
    std::uint64_t x = seed;
    for (std::size_t i = 0; i < n; ++i) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        E e;
        if constexpr (std::is_same_v<E, bool>) {
            e = (x >> 33) & 1;
        } else if constexpr (std::is_same_v<E, cumulus::half>) {
            const std::uint16_t special[] = {0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x7bff, 0x0001, 0x3c00};
            e = cumulus::half::from_bits(i < 8 ? special[i] : static_cast<std::uint16_t>(x >> 40));
            if ((e.bits & 0x7c00) == 0x7c00 && i >= 8) e.bits &= 0xbfff;  // no extra NaN payloads
        } else if constexpr (std::is_floating_point_v<E>) {
            const E special[] = {E(0), -E(0), std::numeric_limits<E>::infinity(), -std::numeric_limits<E>::infinity(),
                                 std::numeric_limits<E>::quiet_NaN(), std::numeric_limits<E>::max(),
                                 std::numeric_limits<E>::denorm_min(), E(1) / E(3)};
            e = i < 8 ? special[i] : static_cast<E>(static_cast<double>(static_cast<std::int64_t>(x >> 20)) / 4096.0);
        } else {
            const E special[] = {std::numeric_limits<E>::min(), std::numeric_limits<E>::max(), E(0), E(1)};
            std::memcpy(&e, &x, sizeof(E));
            if (i < 4) e = special[i];
        }
        std::memcpy(out.data() + i * sizeof(E), &e, sizeof(E));
    }
    return out;
}

pk::Array array_of(const pk::ArrayDType& d, std::vector<std::int64_t> shape, bool fortran, std::uint32_t seed) {
    pk::Array a;
    a.dtype = pk::ArrayDType::make(d.kind, d.itemsize);
    a.shape = std::move(shape);
    a.fortran_order = fortran;
    with_type(a.dtype, [&](auto tag) { a.data = raw_values<decltype(tag)>(static_cast<std::size_t>(a.numel()), seed); });
    return a;
}

// What cumulus writes for Python to check: every dtype, both byte orders,
// Fortran order, 0-d, scalars, empty arrays, nested containers.
std::vector<std::pair<std::string, Value>> cumulus_values() {
    std::vector<std::pair<std::string, Value>> out;
    const char* specs[] = {"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"};
    pk::Dict dtypes, fortran, small;
    std::uint32_t seed = 1;
    for (const char* spec : specs) {
        const pk::ArrayDType d = pk::ArrayDType::make(spec[0], spec[1] - '0');
        pk::Array c = array_of(d, {3, 5}, false, seed++);
        dtypes.emplace_back(Value::str(std::string(spec) + "_native"), Value::array(c));
        if (d.itemsize > 1) dtypes.emplace_back(Value::str(std::string(spec) + "_swapped"), Value::array(swapped(c)));
        fortran.emplace_back(Value::str(std::string(spec) + "_F2"), Value::array(array_of(d, {4, 7}, true, seed++)));
        pk::Array f3 = array_of(d, {2, 3, 4}, true, seed++);
        fortran.emplace_back(Value::str(std::string(spec) + "_F3"), Value::array(d.itemsize > 1 ? swapped(f3) : f3));
        pk::Array zero_d = array_of(d, {}, false, seed++);
        pk::Array scalar = zero_d;
        scalar.scalar = true;
        small.emplace_back(Value::str(std::string(spec) + "_0d"), Value::array(zero_d));
        small.emplace_back(Value::str(std::string(spec) + "_scalar"), Value::array(d.itemsize > 1 ? swapped(scalar) : scalar));
        small.emplace_back(Value::str(std::string(spec) + "_empty"), Value::array(array_of(d, {0, 3}, false, seed++)));
    }
    out.emplace_back("dtypes", Value::dict(std::move(dtypes)));
    out.emplace_back("fortran", Value::dict(std::move(fortran)));
    out.emplace_back("small", Value::dict(std::move(small)));

    std::vector<Value> long_list;
    for (int i = 0; i < 2100; ++i) long_list.push_back(Value::integer(std::int64_t{i} * i * i * 977));
    pk::Dict big_dict;
    for (int i = 0; i < 1500; ++i) big_dict.emplace_back(Value::integer(i), Value::str(std::string(i % 7, 'x')));
    pk::Dict nested;
    nested.emplace_back(Value::str("scalars"),
                        Value::tuple({Value::none(), Value::boolean(true), Value::boolean(false), Value::integer(0),
                                      Value::integer(255), Value::integer(256), Value::integer(65535),
                                      Value::integer(65536), Value::integer(-1), Value::integer(INT32_MIN),
                                      Value::integer(std::int64_t{INT32_MAX} + 1), Value::integer(INT64_MIN),
                                      Value::integer(INT64_MAX), Value::floating(0.1), Value::floating(-0.0),
                                      Value::floating(INFINITY), Value::floating(NAN), Value::floating(5e-324)}));
    nested.emplace_back(Value::str("strs"), Value::list({Value::str(""), Value::str("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
                                                         Value::str("\xed\xa0\x80 lone surrogate"),
                                                         Value::str(std::string(70000, 'y'))}));
    nested.emplace_back(Value::str("bytes"), Value::list({Value::bytes(""), Value::bytes(std::string_view("\x00\xff\x80", 3)),
                                                          Value::bytes(std::string(300, '\xfe')),
                                                          Value::bytes(std::string(70000, '\x01'))}));
    nested.emplace_back(Value::tuple({Value::integer(1), Value::str("k")}), Value::str("tuple key"));
    nested.emplace_back(Value::set({Value::integer(1), Value::integer(2)}, true), Value::str("frozenset key"));
    nested.emplace_back(Value::none(), Value::str("none key"));
    nested.emplace_back(Value::floating(2.5), Value::bytes("float key"));
    nested.emplace_back(Value::str("sets"), Value::tuple({Value::set({Value::integer(1), Value::str("two"),
                                                                      Value::tuple({Value::integer(3)})}),
                                                          Value::set({}), Value::set({Value::bytes("x")}, true)}));
    nested.emplace_back(Value::str("deep"),
                        Value::list({Value::list({Value::tuple({Value::dict({{Value::str("a"), Value::list({})}})})}),
                                     Value::tuple({}), Value::dict({})}));
    nested.emplace_back(Value::str("long_list"), Value::list(std::move(long_list)));
    nested.emplace_back(Value::str("big_dict"), Value::dict(std::move(big_dict)));
    std::vector<float> many(30000);
    for (std::size_t i = 0; i < many.size(); ++i) many[i] = float(i % 1009) - 500.0f;
    nested.emplace_back(Value::str("big_array"), pk::make_array<float>({300, 100}, many));
    out.emplace_back("nested", Value::dict(std::move(nested)));
    pk::Array root = array_of(pk::array_dtype<double>(), {5, 3}, true, 99);
    out.emplace_back("array_root", Value::array(root));
    return out;
}

}  // namespace

TEST_CASE("pickle interop: cumulus reads what numpy writes") {
    const std::string& py = python();  // before the temporary directory: it may exit with the skip code
    TempDir dir;
    const std::string cmd = shell_quote(py) + " " + shell_quote(script()) + " write " + shell_quote(dir.path);
    REQUIRE(std::system(cmd.c_str()) == 0);
    std::ifstream f(dir / "manifest.json");
    const json manifest = json::parse(f);
    MESSAGE("numpy " << manifest["numpy"].get<std::string>() << ", python " << manifest["python"].get<std::string>());
    const auto& cases = manifest["cases"];
    CHECK(cases.size() >= 70);
    int checked = 0;
    for (const auto& c : cases) {
        const std::string file = c["file"];
        const std::string encoding = c["encoding"];
        CAPTURE(file);
        CAPTURE(encoding);
        pk::LoadOptions opt;
        opt.encoding = encoding == "latin1" ? pk::Encoding::latin1
                       : encoding == "bytes" ? pk::Encoding::bytes
                                             : pk::Encoding::ascii;
        if (c.contains("error")) {
            std::string msg;
            try {
                pk::load(dir / file, opt);
            } catch (const cumulus::Error& e) {
                msg = e.what();
            }
            CHECK(msg.find(c["error"].get<std::string>()) != std::string::npos);
            ++checked;
            continue;
        }
        pk::LoadInfo info;
        const Value v = pk::load(dir / file, opt, &info);
        CHECK(info.protocol == c["protocol"].get<int>());
        CHECK(info.gzipped == (file.size() > 3 && file.substr(file.size() - 3) == ".gz"));
        std::string why;
        CHECK_MESSAGE(same(describe(v, true), c["expect"], "root", why), why);
        // What cumulus writes back reads the same.
        CHECK(pk::loads(pk::dumps(v, 4), "again", opt) == v);
        ++checked;
    }
    CHECK(checked == static_cast<int>(cases.size()));
}

TEST_CASE("pickle interop: numpy reads what cumulus writes") {
    const std::string& py = python();
    TempDir dir;
    json cases = json::array();
    for (const auto& [name, v] : cumulus_values()) {
        for (int proto : {2, 3, 4}) {
            for (bool gz : {false, true}) {
                if (gz && proto != 4) continue;
                const std::string file = name + "_p" + std::to_string(proto) + (gz ? ".pkl.gz" : ".pkl");
                pk::dump(v, dir / file, proto, gz);
                CHECK(pk::load(dir / file) == v);
                cases.push_back({{"file", file}, {"protocol", proto}, {"expect", describe(v, false)}});
            }
        }
    }
    {
        std::ofstream m(dir / "manifest.json");
        m << json{{"cases", cases}}.dump();
    }
    const std::string cmd = shell_quote(py) + " " + shell_quote(script()) + " check " +
                            shell_quote(dir / "manifest.json");
    CHECK(std::system(cmd.c_str()) == 0);
}
