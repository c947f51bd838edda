// cumulus-data inspect FILE: what a data file holds, as one JSON document that
// tests compare with numpy and TensorFlow. The format (IDX, pickle, TFRecord,
// each raw or gzip/zlib as they come) is found by content:
//   IDX:      {"format": "idx", "dtype": ">i2", "shape": [...], "sum": S}
//   pickle:   {"format": "pickle", "protocol": N, "root": V}, V one of
//             {"type": "none"}, {"type": "bool"|"int"|"float"|"str", "value": x},
//             {"type": "bytes", "length": n}, {"type": "tuple"|"list"|"set"|"frozenset", "items": [V...]},
//             {"type": "dict", "items": [[K, V]...]} (file order),
//             {"type": "ndarray", "dtype": "<f4", "shape": [...], "fortran_order": b, "sum": S, "crc32c": c}
//   TFRecord: {"format": "tfrecord", "compression": "none"|"gzip"|"zlib", "records": N,
//              "features": {KEY: {"kind": "bytes_list"|"float_list"|"int64_list", "values": n, "sum": S}}}
// Sums are float64 (for bytes lists: the total byte length); a non-finite
// float is written as the string "NaN", "Infinity" or "-Infinity", which JSON
// numbers cannot hold. A numpy scalar shows as a 0-d ndarray. An unreadable
// file gives exit status 1 and one line on stderr.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cumulus/core/error.hpp>
#include <cumulus/data/example.hpp>
#include <cumulus/data/idx.hpp>
#include <cumulus/data/mnist_sources.hpp>
#include <cumulus/data/pickle.hpp>
#include <cumulus/data/tfrecord.hpp>
#include <cumulus/io/crc32c.hpp>
#include <cumulus/io/file.hpp>
#if CUMULUS_WITH_GCS
#include <cumulus/io/gcs.hpp>  // gs:// files
#endif

using namespace cumulus;
using Json = nlohmann::ordered_json;
namespace pk = data::pickle;

namespace {

// Neumaier's compensated sum: close to numpy's pairwise sum for any order.
struct Sum {
    double s = 0, c = 0;
    void add(double x) {
        const double t = s + x;
        if (std::isfinite(t)) c += std::fabs(s) >= std::fabs(x) ? (s - t) + x : (x - t) + s;
        s = t;
    }
    double value() const { return std::isfinite(s) ? s + c : s; }
};

Json number(double d) {
    if (std::isnan(d)) return "NaN";
    if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
    return d;
}

Json inspect_idx(const std::string& path) {
    const data::IdxArray a = data::read_idx(path);
    static const std::map<data::IdxType, const char*> dtypes = {
        {data::IdxType::u8, "|u1"},  {data::IdxType::i8, "|i1"},  {data::IdxType::i16, ">i2"},
        {data::IdxType::i32, ">i4"}, {data::IdxType::f32, ">f4"}, {data::IdxType::f64, ">f8"}};
    Sum sum;
    data::detail::visit_idx_type(a.type, [&](auto* tag) {
        using S = std::remove_pointer_t<decltype(tag)>;
        const std::size_t n = a.data.size() / sizeof(S);
        for (std::size_t i = 0; i < n; ++i) {
            S v;
            std::memcpy(&v, a.data.data() + i * sizeof(S), sizeof(S));
            sum.add(static_cast<double>(v));
        }
    });
    Json j;
    j["format"] = "idx";
    j["dtype"] = dtypes.at(a.type);
    j["shape"] = a.dims;
    j["sum"] = number(sum.value());
    return j;
}

// The array's bytes in C order, each element in the file's byte order.
std::vector<std::uint8_t> c_order_bytes(const pk::Array& a) {
    if (!a.fortran_order || a.shape.size() <= 1) return a.data;
    const std::size_t size = static_cast<std::size_t>(a.dtype.itemsize), r = a.shape.size();
    const std::size_t n = static_cast<std::size_t>(a.numel());
    std::vector<std::uint8_t> out(a.data.size());
    std::vector<std::size_t> idx(r, 0), stride(r, 1);
    for (std::size_t k = 1; k < r; ++k) stride[k] = stride[k - 1] * static_cast<std::size_t>(a.shape[k - 1]);
    std::size_t src = 0;
    for (std::size_t i = 0; i < n; ++i) {
        std::memcpy(out.data() + i * size, a.data.data() + src * size, size);
        for (std::size_t k = r; k-- > 0;) {
            src += stride[k];
            if (++idx[k] < static_cast<std::size_t>(a.shape[k])) break;
            src -= stride[k] * idx[k];
            idx[k] = 0;
        }
    }
    return out;
}

Json describe(const pk::Value& v) {
    using T = pk::Value::Type;
    Json j;
    auto items = [&](const std::vector<pk::Value>& xs) {
        Json list = Json::array();
        for (const auto& x : xs) list.push_back(describe(x));
        return list;
    };
    switch (v.type()) {
        case T::none: j["type"] = "none"; break;
        case T::boolean: j["type"] = "bool", j["value"] = v.as_bool(); break;
        case T::integer: j["type"] = "int", j["value"] = v.as_int(); break;
        case T::floating: j["type"] = "float", j["value"] = number(v.as_float()); break;
        case T::str: j["type"] = "str", j["value"] = v.as_str(); break;
        case T::bytes: j["type"] = "bytes", j["length"] = v.as_bytes().size(); break;
        case T::tuple: j["type"] = "tuple", j["items"] = items(v.as_tuple()); break;
        case T::list: j["type"] = "list", j["items"] = items(v.as_list()); break;
        case T::set: j["type"] = "set", j["items"] = items(v.as_set()); break;
        case T::frozenset: j["type"] = "frozenset", j["items"] = items(v.as_set()); break;
        case T::dict: {
            j["type"] = "dict";
            Json list = Json::array();
            for (const auto& [k, x] : v.as_dict()) list.push_back(Json::array({describe(k), describe(x)}));
            j["items"] = std::move(list);
            break;
        }
        case T::array: {
            const pk::Array& a = v.as_array();
            Sum sum;
            for (double x : a.to_vector<double>("array")) sum.add(x);
            const std::vector<std::uint8_t> bytes = c_order_bytes(a);
            j["type"] = "ndarray";
            j["dtype"] = a.dtype.str();
            j["shape"] = a.shape;
            j["fortran_order"] = a.fortran_order;
            j["sum"] = number(sum.value());
            j["crc32c"] = io::crc32c(bytes.data(), bytes.size());
            break;
        }
    }
    return j;
}

Json inspect_pickle(const std::string& path, pk::Encoding encoding) {
    pk::LoadOptions opt;
    opt.encoding = encoding;
    pk::LoadInfo info;
    const pk::Value root = pk::load(path, opt, &info);
    Json j;
    j["format"] = "pickle";
    j["protocol"] = info.protocol;
    j["root"] = describe(root);
    return j;
}

struct FeatureStats {
    data::Feature::Kind kind = data::Feature::None;
    bool mixed = false;
    std::uint64_t values = 0;
    Sum sum;
};

Json inspect_tfrecord(const std::string& path) {
    data::TFRecordReader reader(path);
    std::vector<std::pair<std::string, FeatureStats>> stats;  // first-appearance order
    std::vector<std::uint8_t> record;
    std::uint64_t records = 0;
    while (reader.next(record)) {
        ++records;
        data::Example ex;
        try {
            ex = data::parse_example(record);
        } catch (const Error&) {
            continue;  // not an Example: counted, not described
        }
        for (const auto& [key, f] : ex.features) {
            auto it = std::find_if(stats.begin(), stats.end(), [&](const auto& kv) { return kv.first == key; });
            if (it == stats.end()) it = stats.insert(stats.end(), {key, FeatureStats{}});
            FeatureStats& s = it->second;
            if (f.kind == data::Feature::None) continue;
            if (s.kind == data::Feature::None) s.kind = f.kind;
            else if (s.kind != f.kind) s.mixed = true;
            s.values += f.size();
            for (const auto& b : f.bytes) s.sum.add(static_cast<double>(b.size()));
            for (float x : f.floats) s.sum.add(x);
            for (std::int64_t x : f.ints) s.sum.add(static_cast<double>(x));
        }
    }
    Json features = Json::object();
    for (const auto& [key, s] : stats) {
        Json f;
        f["kind"] = s.mixed ? "mixed" : s.kind == data::Feature::None ? "none" : data::feature_kind_name(s.kind);
        f["values"] = s.values;
        f["sum"] = number(s.sum.value());
        features[key] = std::move(f);
    }
    Json j;
    j["format"] = "tfrecord";
    j["compression"] = reader.compression() == data::Compression::Gzip   ? "gzip"
                       : reader.compression() == data::Compression::Zlib ? "zlib"
                                                                         : "none";
    j["records"] = records;
    j["features"] = std::move(features);
    return j;
}

Json inspect(const std::string& path, pk::Encoding encoding) {
    switch (data::detect_format(path)) {
        case data::FileFormat::idx: return inspect_idx(path);
        case data::FileFormat::pickle: return inspect_pickle(path, encoding);
        case data::FileFormat::tfrecord: return inspect_tfrecord(path);
        case data::FileFormat::unknown: break;
    }
    io::InputFile f(path);
    std::vector<std::uint8_t> head(static_cast<std::size_t>(std::min<std::uint64_t>(f.size(), 8)));
    f.read_exact(head.data(), head.size(), "the first bytes");
    CUMULUS_FAIL(path, ": not an IDX, pickle or TFRecord file (raw, gzip or zlib); first bytes: ",
                 data::detail::sources::hex_prefix(head.data(), head.size()));
}

std::string one_line(std::string s) {
    for (char& c : s)
        if (c == '\n' || c == '\r') c = ' ';
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Inspect data files. The format (IDX, pickle, TFRecord; raw, gzip or zlib) is found by content.",
                 "cumulus-data"};
    app.require_subcommand(1);
    std::string file, encoding = "latin1";
    auto* inspect_cmd = app.add_subcommand(
        "inspect",
        "Print one JSON document describing FILE:\n"
        "  IDX:      {\"format\": \"idx\", \"dtype\": \">i2\", \"shape\": [...], \"sum\": S}\n"
        "  pickle:   {\"format\": \"pickle\", \"protocol\": N, \"root\": V}, V a typed tree; arrays give\n"
        "            dtype, shape, fortran_order, float64 sum and the CRC32C of the C-order bytes\n"
        "  TFRecord: {\"format\": \"tfrecord\", \"compression\": ..., \"records\": N, \"features\":\n"
        "            {KEY: {\"kind\": ..., \"values\": n, \"sum\": S}}} over the tf.train.Example records\n"
        "A file that cannot be read: exit status 1 and one line on stderr.");
    inspect_cmd->add_option("FILE", file, "The data file")->required();
    inspect_cmd->add_option("--encoding", encoding,
                            "How Python 2 str objects in a pickle load (as pickle.load's encoding)")
        ->check(CLI::IsMember({"ascii", "latin1", "bytes"}))
        ->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    try {
        const pk::Encoding enc = encoding == "ascii"   ? pk::Encoding::ascii
                                 : encoding == "bytes" ? pk::Encoding::bytes
                                                       : pk::Encoding::latin1;
        const Json j = inspect(file, enc);
        std::cout << j.dump(-1, ' ', false, Json::error_handler_t::replace) << std::endl;
    } catch (const std::bad_alloc&) {
        std::cerr << "cumulus-data: error: " << file << ": out of memory\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "cumulus-data: error: " << one_line(e.what()) << "\n";
        return 1;
    }
    return 0;
}
