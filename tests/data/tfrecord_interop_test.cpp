// TFRecord and tf.train.Example against real TensorFlow, both directions:
// cumulus writes files (three compressions, Examples, SequenceExamples, raw
// records) that TensorFlow reads with tf.data.TFRecordDataset and
// tf.io.parse_single_example; TensorFlow writes files that cumulus reads.
// tests/data/tfrecord_gen.py is the TensorFlow side; its docstring describes
// the manifest both sides write.
//
// Python: $CUMULUS_PYTHON if set, else CUMULUS_SOURCE_DIR/.venv/bin/python
// (tools/setup-venv makes it), else each python3 on PATH, the first that
// imports tensorflow. With none, prints "SKIPPED: ..." and exits 77 (ctest's
// skip code; under CI=true a failure).
#include <doctest/doctest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cumulus/data/example.hpp>
#include <cumulus/data/tfrecord.hpp>
#include <cumulus/io/file.hpp>

#include "../test_util.hpp"

using Bytes = std::vector<std::uint8_t>;
using nlohmann::json;
namespace fs = std::filesystem;
namespace data = cumulus::data;
namespace io = cumulus::io;
using data::Compression;
using data::Example;
using data::Feature;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        path = fs::temp_directory_path() / ("cumulus_tfrecord_interop_" + std::to_string(::getpid()));
        fs::remove_all(path);
        fs::create_directories(path / "cumulus");
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

using test_util::shell_quote;

std::string to_hex(const void* p, std::size_t n) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < n; ++i) {
        const auto x = static_cast<const std::uint8_t*>(p)[i];
        s += d[x >> 4];
        s += d[x & 15];
    }
    return s;
}
std::string to_hex(const std::string& s) { return to_hex(s.data(), s.size()); }
std::string to_hex(const Bytes& b) { return to_hex(b.data(), b.size()); }

std::string from_hex(const std::string& h) {
    std::string s;
    for (std::size_t i = 0; i + 1 < h.size(); i += 2) s += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
    return s;
}

std::uint32_t bits_of(float f) {
    std::uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
}
float float_of(std::uint32_t b) {
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}

// Record i of length n in raw files: bytes (31 * j + i) % 256.
Bytes raw_record(std::size_t i, std::size_t n) {
    Bytes b(n);
    for (std::size_t j = 0; j < n; ++j) b[j] = static_cast<std::uint8_t>((31 * j + i) % 256);
    return b;
}

json feature_json(const Feature& f) {
    json values = json::array();
    switch (f.kind) {
        case Feature::Bytes:
            for (const auto& s : f.bytes) values.push_back(to_hex(s));
            return {{"kind", "bytes"}, {"values", values}};
        case Feature::Float:
            for (float v : f.floats) values.push_back(bits_of(v));
            return {{"kind", "float"}, {"values", values}};
        case Feature::Int64:
            for (auto v : f.ints) values.push_back(v);
            return {{"kind", "int64"}, {"values", values}};
        case Feature::None: return {{"kind", "none"}, {"values", values}};
    }
    return {};
}

Feature feature_from_json(const json& j) {
    const std::string kind = j.at("kind");
    Feature f;
    if (kind == "bytes") {
        f.kind = Feature::Bytes;
        for (const auto& v : j.at("values")) f.bytes.push_back(from_hex(v.get<std::string>()));
    } else if (kind == "float") {
        f.kind = Feature::Float;
        for (const auto& v : j.at("values")) f.floats.push_back(float_of(v.get<std::uint32_t>()));
    } else if (kind == "int64") {
        f.kind = Feature::Int64;
        for (const auto& v : j.at("values")) f.ints.push_back(v.get<std::int64_t>());
    } else {
        REQUIRE(kind == "none");
    }
    return f;
}

json features_json(const data::FeatureMap& m) {
    json j = json::object();
    for (const auto& [k, f] : m) j[k] = feature_json(f);
    return j;
}

// Same keys, and per key the same kind and the same values (floats by bit pattern).
void check_features(const data::FeatureMap& got, const json& want, const std::string& where) {
    CHECK_MESSAGE(got.size() == want.size(), where);
    for (const auto& [key, wf] : want.items()) {
        const Feature* f = data::find_feature(got, key);
        REQUIRE_MESSAGE(f != nullptr, where, ": missing feature ", key);
        CHECK_MESSAGE(feature_json(*f) == wf, where, ": feature ", key, " differs");
    }
}

std::vector<Example> cumulus_examples() {
    std::vector<Example> out;
    for (int r = 0; r < 4; ++r) {
        Example ex;
        ex.set("label", Feature::of_ints({r}));
        std::vector<std::int64_t> ints = {-1, std::numeric_limits<std::int64_t>::min(),
                                          std::numeric_limits<std::int64_t>::max(), 0, 127, 128, -300};
        for (int i = 0; i < r * 50; ++i) ints.push_back((std::int64_t{i} * 0x9E3779B97F4A7C15LL) >> (i % 60));
        ex.set("ints", Feature::of_ints(ints));
        std::vector<float> floats = {0.0f, -0.0f, 1.5f, -2.25f, std::numeric_limits<float>::infinity(),
                                     -std::numeric_limits<float>::infinity(), float_of(1), float_of(0x7f7fffffu),
                                     float_of(0x7fc00000u)};
        for (int i = 0; i < r * 20; ++i) floats.push_back(static_cast<float>(i) / 7.0f - 3.0f);
        ex.set("floats", Feature::of_floats(floats));
        ex.set("bytes", Feature::of_bytes({"", std::string("\0\xff\0", 3), "hello", std::string(300 * r, 'z')}));
        ex.set("empty_int64", Feature::of_ints({}));
        ex.set("empty_float", Feature::of_floats({}));
        ex.set("empty_bytes", Feature::of_bytes({}));
        ex.set("no_kind", Feature{});
        ex.set("ключ/键/🔑", Feature::of_bytes({"é", "🔑"}));
        std::string image(784, '\0');
        for (std::size_t i = 0; i < image.size(); ++i) image[i] = static_cast<char>((i * 7 + r) % 256);
        ex.set("image_raw", Feature::of_bytes({image}));
        out.push_back(ex);
    }
    return out;
}

data::SequenceExample cumulus_sequence() {
    data::SequenceExample s;
    s.context.push_back({"len", Feature::of_ints({3})});
    s.context.push_back({"name", Feature::of_bytes({"ab"})});
    s.feature_lists.push_back({"tokens", data::FeatureList{{Feature::of_ints({1, -2}), Feature::of_ints({}),
                                                            Feature::of_ints({std::numeric_limits<std::int64_t>::max()})}}});
    s.feature_lists.push_back({"scores", data::FeatureList{{Feature::of_floats({0.5f})}}});
    s.feature_lists.push_back({"empty", data::FeatureList{}});
    return s;
}

const std::vector<std::size_t> kRawLengths = {0, 1, 2, 255, 1 << 20, 7, 0};

struct Comp {
    Compression c;
    const char* tag;
};
const Comp kComps[] = {{Compression::None, "none"}, {Compression::Gzip, "gzip"}, {Compression::Zlib, "zlib"}};

// Writes the cumulus side: files + manifest.json in `dir`.
void write_cumulus_side(const fs::path& dir) {
    json files = json::array();
    const auto examples = cumulus_examples();
    for (const auto& [c, tag] : kComps) {
        const std::string raw_name = std::string("raw_") + tag + ".tfrecord";
        data::TFRecordWriter w((dir / raw_name).string(), c);
        for (std::size_t i = 0; i < kRawLengths.size(); ++i) w.write(raw_record(i, kRawLengths[i]));
        w.close();
        files.push_back({{"name", raw_name}, {"compression", data::compression_name(c)}, {"kind", "raw"},
                         {"lengths", kRawLengths}});

        const std::string ex_name = std::string("examples_") + tag + ".tfrecord";
        data::TFRecordWriter we((dir / ex_name).string(), c);
        json records = json::array();
        for (const auto& ex : examples) {
            we.write(data::serialize_example(ex));
            records.push_back({{"features", features_json(ex.features)}});
        }
        we.close();
        files.push_back({{"name", ex_name}, {"compression", data::compression_name(c)}, {"kind", "example"},
                         {"records", records}});
    }
    const data::SequenceExample s = cumulus_sequence();
    data::TFRecordWriter ws((dir / "sequence_gzip.tfrecord").string(), Compression::Gzip);
    ws.write(data::serialize_sequence_example(s));
    ws.close();
    json lists = json::object();
    for (const auto& [k, l] : s.feature_lists) {
        json steps = json::array();
        for (const auto& f : l.feature) steps.push_back(feature_json(f));
        lists[k] = steps;
    }
    files.push_back({{"name", "sequence_gzip.tfrecord"}, {"compression", "GZIP"}, {"kind", "sequence_example"},
                     {"records", json::array({{{"context", features_json(s.context)}, {"feature_lists", lists}}})}});
    std::ofstream(dir / "manifest.json") << json{{"writer", "cumulus"}, {"files", files}}.dump(1);
}

std::vector<Bytes> read_all(const std::string& path, Compression c) {
    data::TFRecordReader r(path, c);
    std::vector<Bytes> out;
    Bytes rec;
    while (r.next(rec)) out.push_back(rec);
    return out;
}

// Reads and checks the TensorFlow side described by dir/manifest.json.
void check_tf_side(const fs::path& dir) {
    std::ifstream in(dir / "manifest.json");
    REQUIRE(in.good());
    const json manifest = json::parse(in);
    MESSAGE("files written by ", manifest.at("writer").get<std::string>());
    int files = 0;
    for (const auto& entry : manifest.at("files")) {
        const std::string name = entry.at("name");
        const std::string path = (dir / name).string();
        CAPTURE(name);
        const std::string comp = entry.at("compression");
        const Compression c = comp == "GZIP" ? Compression::Gzip : comp == "ZLIB" ? Compression::Zlib : Compression::None;
        CHECK(data::detect_compression(path) == c);
        const auto recs = read_all(path, c);
        CHECK(data::read_tfrecords(path) == recs);  // auto-detected
        const std::string kind = entry.at("kind");
        if (kind == "raw") {
            const auto lengths = entry.at("lengths").get<std::vector<std::size_t>>();
            REQUIRE(recs.size() == lengths.size());
            for (std::size_t i = 0; i < recs.size(); ++i) CHECK(recs[i] == raw_record(i, lengths[i]));
        } else if (kind == "example") {
            const auto& want = entry.at("records");
            REQUIRE(recs.size() == want.size());
            for (std::size_t i = 0; i < recs.size(); ++i) {
                const std::string where = name + " record " + std::to_string(i);
                CHECK(to_hex(recs[i]) == want[i].at("hex").get<std::string>());
                const Example ex = data::parse_example(recs[i], where);
                check_features(ex.features, want[i].at("features"), where);
                // Same map order in and out: TensorFlow's bytes exactly.
                CHECK(data::serialize_example(ex) == recs[i]);
            }
        } else {
            REQUIRE(kind == "sequence_example");
            const auto& want = entry.at("records");
            REQUIRE(recs.size() == want.size());
            for (std::size_t i = 0; i < recs.size(); ++i) {
                const std::string where = name + " record " + std::to_string(i);
                const data::SequenceExample s = data::parse_sequence_example(recs[i], where);
                check_features(s.context, want[i].at("context"), where + " context");
                const auto& wl = want[i].at("feature_lists");
                CHECK(s.feature_lists.size() == wl.size());
                for (const auto& [key, steps] : wl.items()) {
                    const data::FeatureList* l = s.find_feature_list(key);
                    REQUIRE_MESSAGE(l != nullptr, where, ": missing feature list ", key);
                    REQUIRE(l->feature.size() == steps.size());
                    for (std::size_t t = 0; t < steps.size(); ++t) CHECK(l->feature[t] == feature_from_json(steps[t]));
                }
                CHECK(data::serialize_sequence_example(s) == recs[i]);
            }
        }
        ++files;
    }
    CHECK(files == 7);
}

// Exit status of `cmd` (-1 when it did not exit normally).
int run(const std::string& cmd) {
    const int st = std::system(cmd.c_str());
    if (st == -1 || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

std::string read_text(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

TEST_CASE("tfrecord interop: TensorFlow reads what cumulus writes, cumulus reads what TensorFlow writes") {
    const std::string script = std::string(CUMULUS_SOURCE_DIR) + "/tests/data/tfrecord_gen.py";
    REQUIRE(fs::exists(script));
    TempDir dir;
    write_cumulus_side(dir.path / "cumulus");

    // The first python that imports tensorflow (test_util::find_python).
    std::string tried;
    const std::string py = test_util::find_python("tensorflow", &tried);
    if (!py.empty()) {
        const fs::path log = dir.path / "python.log";
        const int rc = run(shell_quote(py) + " " + shell_quote(script) + " both " + shell_quote(dir.path.string()) +
                           " >" + shell_quote(log.string()) + " 2>&1");
        const std::string out = read_text(log);
        if (rc != 0) FAIL("tfrecord_gen.py under ", py, " failed with exit ", rc, ":\n", out);
        MESSAGE(py, ":\n", out.substr(std::min(out.find("OK:"), out.size())));
        check_tf_side(dir.path / "tf");
        return;
    }
    std::error_code ec;
    fs::remove_all(dir.path, ec);  // exit() skips the destructor
    test_util::skip_interop("TensorFlow not available (tried: " + (tried.empty() ? std::string("no python3 found") : tried) + ")");
}
