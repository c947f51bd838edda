// tools/cumulus_records.cpp and tools/cumulus_data.cpp, run as programs:
// IDX -> records -> load_mnist_from gives the same images and labels, for
// every compression and validation size; `cumulus-data inspect` output and
// its errors.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include <cumulus/data/idx.hpp>
#include <cumulus/data/mnist_sources.hpp>
#include <cumulus/data/pickle.hpp>
#include <cumulus/data/tfrecord.hpp>
#include <cumulus/io/file.hpp>

#include "../test_util.hpp"
#include "mnist_test_util.hpp"

using namespace cumulus;
using nlohmann::json;
using test_util::contains;
using test_util::shell_quote;
using test_util::TempDir;
namespace fs = std::filesystem;

namespace {

struct Run {
    int status = -1;
    std::string out, err;
};

std::string slurp(const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

Run run(const std::string& bin, const std::string& args, const TempDir& dir) {
    const std::string out = dir / "stdout.txt", err = dir / "stderr.txt";
    const int st = std::system((shell_quote(bin) + " " + args + " >" + shell_quote(out) + " 2>" + shell_quote(err)).c_str());
    Run r;
    r.status = (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
}

data::MnistSplit random_split(std::int64_t n, std::uint32_t seed) { return test_util::random_mnist_split(n, seed); }

// Rows [b, e) of `s` equal `t`.
bool same_rows(const data::MnistSplit& s, std::int64_t b, std::int64_t e, const data::MnistSplit& t) {
    if (t.labels.numel() != e - b) return false;
    if (e == b) return true;  // memcmp may not be given the null data of an empty tensor
    return std::memcmp(s.images.data() + b * 784, t.images.data(), (e - b) * 784) == 0 &&
           std::memcmp(s.labels.data() + b, t.labels.data(), e - b) == 0;
}

}  // namespace

TEST_CASE("cumulus-records: IDX -> train/validation/test.tfrecords -> load_mnist_from") {
    TempDir dir;
    const auto train = random_split(130, 1), test = random_split(17, 2);
    data::write_idx(dir / "train-images-idx3-ubyte.gz", train.images, true);
    data::write_idx(dir / "train-labels-idx1-ubyte", train.labels);
    data::write_idx(dir / "t10k-images-idx3-ubyte", test.images);
    data::write_idx(dir / "t10k-labels-idx1-ubyte.gz", test.labels, true);

    for (const std::string c : {"none", "gzip", "zlib"}) {
        for (const std::int64_t v : {0, 1, 40, 130}) {
            CAPTURE(c);
            CAPTURE(v);
            const std::string out = dir / ("out_" + c + "_" + std::to_string(v));
            const Run r = run(CUMULUS_RECORDS_BIN,
                              shell_quote(dir.path.string()) + " --directory " + shell_quote(out) +
                                  " --compression " + c + " --validation-size " + std::to_string(v),
                              dir);
            REQUIRE_MESSAGE(r.status == 0, r.err);
            CHECK(fs::exists(out + "/validation.tfrecords") == (v > 0));
            const auto want = c == "gzip" ? data::Compression::Gzip
                              : c == "zlib" ? data::Compression::Zlib
                                            : data::Compression::None;
            CHECK(data::detect_compression(out + "/train.tfrecords") == want);
            const data::Mnist m = data::load_mnist_from(out);
            CHECK(same_rows(train, v, 130, m.train));
            CHECK(same_rows(test, 0, 17, m.test));
            if (v > 0) CHECK(same_rows(train, 0, v, m.validation));
            else CHECK_FALSE(m.validation.labels.defined());
        }
    }
    // The tutorial's features, in one record.
    const auto recs = data::read_tfrecords(dir / "out_none_0/test.tfrecords");
    REQUIRE(recs.size() == 17);
    const data::Example ex = data::parse_example(recs[3]);
    CHECK(ex.find("height")->ints == std::vector<std::int64_t>{28});
    CHECK(ex.find("width")->ints == std::vector<std::int64_t>{28});
    CHECK(ex.find("depth")->ints == std::vector<std::int64_t>{1});
    CHECK(ex.find("label")->ints == std::vector<std::int64_t>{test.labels.data()[3]});
    CHECK(ex.find("image_raw")->bytes.at(0) == std::string(reinterpret_cast<const char*>(test.images.data()) + 3 * 784, 784));

    // A Keras pickle converts the same way; validation 0 removes an earlier run's split.
    namespace pk = data::pickle;
    auto xy = [](const data::MnistSplit& s) {
        return pk::Value::tuple({pk::make_array(s.images), pk::make_array(s.labels)});
    };
    pk::dump(pk::Value::tuple({xy(train), xy(test)}), dir / "mnist.pkl.gz", 2, true);
    const std::string out = dir / "out_none_40";
    Run r = run(CUMULUS_RECORDS_BIN, shell_quote(dir / "mnist.pkl.gz") + " --validation-size 0 --directory " + shell_quote(out), dir);
    REQUIRE_MESSAGE(r.status == 0, r.err);
    CHECK_FALSE(fs::exists(out + "/validation.tfrecords"));
    CHECK(same_rows(train, 0, 130, data::load_mnist_from(out).train));

    r = run(CUMULUS_RECORDS_BIN, shell_quote(dir.path.string()) + " --validation-size 131 --directory " + shell_quote(out), dir);
    CHECK(r.status == 1);
    CHECK(contains(r.err, "exceeds the 130 training examples"));
    r = run(CUMULUS_RECORDS_BIN, shell_quote(dir / "absent") + " --directory " + shell_quote(out), dir);
    CHECK(r.status == 1);
    CHECK(contains(r.err, "absent"));
    r = run(CUMULUS_RECORDS_BIN, "--help", dir);
    CHECK(r.status == 0);
    CHECK(contains(r.out, "--validation-size"));
}

TEST_CASE("cumulus-records on the real MNIST: 55000 / 5000 / 10000, identical to the IDX files") {
    TempDir dir;
    const Run r = run(CUMULUS_RECORDS_BIN, shell_quote(std::string(CUMULUS_TEST_DATA_DIR) + "/mnist") + " --directory " + shell_quote(dir / "rec"), dir);
    REQUIRE_MESSAGE(r.status == 0, r.err);
    const data::Mnist idx = data::load_mnist_from(std::string(CUMULUS_TEST_DATA_DIR) + "/mnist");
    const data::Mnist rec = data::load_mnist_from(dir / "rec");
    CHECK(rec.train.labels.numel() == 55000);
    CHECK(rec.validation.labels.numel() == 5000);
    CHECK(same_rows(idx.train, 5000, 60000, rec.train));
    CHECK(same_rows(idx.train, 0, 5000, rec.validation));
    CHECK(same_rows(idx.test, 0, 10000, rec.test));
}

TEST_CASE("cumulus-data inspect: JSON for each format, one stderr line for a bad file") {
    TempDir dir;
    const auto s = random_split(3, 4);
    data::write_idx(dir / "img", s.images, true);
    Run r = run(CUMULUS_DATA_BIN, "inspect " + shell_quote(dir / "img"), dir);
    REQUIRE_MESSAGE(r.status == 0, r.err);
    json j = json::parse(r.out);
    double sum = 0;
    for (std::int64_t i = 0; i < s.images.numel(); ++i) sum += s.images.data()[i];
    CHECK(j == json{{"format", "idx"}, {"dtype", "|u1"}, {"shape", {3, 28, 28}}, {"sum", sum}});

    namespace pk = data::pickle;
    pk::Dict d;
    d.emplace_back(pk::Value::str("f"), pk::Value::floating(0.1));
    d.emplace_back(pk::Value::integer(-7), pk::Value::tuple({pk::Value::none(), pk::Value::boolean(true),
                                                            pk::Value::bytes("abc"),
                                                            pk::make_array<float>({2}, {1.5f, -0.25f})}));
    pk::dump(pk::Value::dict(d), dir / "p", 4);
    r = run(CUMULUS_DATA_BIN, "inspect " + shell_quote(dir / "p"), dir);
    REQUIRE_MESSAGE(r.status == 0, r.err);
    j = json::parse(r.out);
    const float a[2] = {1.5f, -0.25f};
    const json want = {
        {"format", "pickle"},
        {"protocol", 4},
        {"root",
         {{"type", "dict"},
          {"items",
           {{{{"type", "str"}, {"value", "f"}}, {{"type", "float"}, {"value", 0.1}}},
            {{{"type", "int"}, {"value", -7}},
             {{"type", "tuple"},
              {"items",
               {{{"type", "none"}},
                {{"type", "bool"}, {"value", true}},
                {{"type", "bytes"}, {"length", 3}},
                {{"type", "ndarray"}, {"dtype", "<f4"}, {"shape", {2}}, {"fortran_order", false}, {"sum", 1.25},
                 {"crc32c", io::crc32c(a, 8)}}}}}}}}}}};
    CHECK(j == want);
    CHECK(contains(r.out, "0.1"));  // full precision round trip, not 0.100000001

    data::Example ex;
    ex.set("v", data::Feature::of_floats({0.5f, 2.0f}));
    ex.set("b", data::Feature::of_bytes({"xy", "z"}));
    data::write_tfrecords(dir / "t", {data::serialize_example(ex), {0x08, 0x01}, data::serialize_example(ex)},
                          data::Compression::Zlib);
    r = run(CUMULUS_DATA_BIN, "inspect " + shell_quote(dir / "t"), dir);
    REQUIRE_MESSAGE(r.status == 0, r.err);
    j = json::parse(r.out);
    CHECK(j == json{{"format", "tfrecord"},
                    {"compression", "zlib"},
                    {"records", 3},
                    {"features",
                     {{"v", {{"kind", "float_list"}, {"values", 4}, {"sum", 5.0}}},
                      {"b", {{"kind", "bytes_list"}, {"values", 4}, {"sum", 6}}}}}});

    // Bad files: status 1, one line naming the file.
    std::vector<std::uint8_t> rec = io::read_file(dir / "img");
    rec.resize(rec.size() - 9);
    io::write_file(dir / "cut", rec);
    std::vector<std::uint8_t> tf = data::frame_tfrecord(rec.data(), 100);
    tf[20] ^= 0xff;
    io::write_file(dir / "crc", tf);
    io::write_file(dir / "garbage", std::vector<std::uint8_t>{'h', 'i', '\n'});
    for (const std::string f : {"cut", "crc", "garbage", "absent"}) {
        CAPTURE(f);
        r = run(CUMULUS_DATA_BIN, "inspect " + shell_quote(dir / f), dir);
        CHECK(r.status == 1);
        CHECK(r.out.empty());
        CHECK(contains(r.err, dir / f));
        CHECK(r.err.find('\n') == r.err.size() - 1);
    }
    CHECK(contains(run(CUMULUS_DATA_BIN, "inspect " + shell_quote(dir / "crc"), dir).err, "record 0"));
    r = run(CUMULUS_DATA_BIN, "inspect --help", dir);
    CHECK(r.status == 0);
}
