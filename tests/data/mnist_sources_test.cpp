// data/mnist_sources.hpp: format detection by content and the MNIST adapters
// (IDX, Keras and deeplearning.net pickles, the tutorials' TFRecords), on
// generated files and on the real files in ../shared/data.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <cumulus/data/example.hpp>
#include <cumulus/data/idx.hpp>
#include <cumulus/data/mnist_sources.hpp>
#include <cumulus/data/pickle.hpp>
#include <cumulus/data/tfrecord.hpp>
#include <cumulus/io/file.hpp>
#include <cumulus/io/gzip.hpp>

#include "../test_util.hpp"
#include "mnist_test_util.hpp"

using namespace cumulus;
using data::FileFormat;
using test_util::contains;
using test_util::error_of;
using test_util::TempDir;
namespace pk = data::pickle;

namespace {

const std::string kShared = CUMULUS_TEST_DATA_DIR;

data::MnistSplit random_split(std::int64_t n, std::uint32_t seed) { return test_util::random_mnist_split(n, seed); }

bool same(const Tensor<std::uint8_t>& a, const Tensor<std::uint8_t>& b) {
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.numel())) == 0;
}

bool same(const data::MnistSplit& a, const data::MnistSplit& b) {
    return same(a.images, b.images) && same(a.labels, b.labels);
}

void write_bytes(const std::string& path, const std::string& s) {
    io::write_file(path, std::vector<std::uint8_t>(s.begin(), s.end()));
}

// The tutorials' Example for image i of s; `edit` may change it.
std::vector<std::uint8_t> mnist_example(const data::MnistSplit& s, std::int64_t i, std::int64_t height = 28,
                                        std::size_t bytes = 784) {
    data::Example ex;
    ex.set("height", data::Feature::of_ints({height}));
    ex.set("width", data::Feature::of_ints({28}));
    ex.set("depth", data::Feature::of_ints({1}));
    ex.set("label", data::Feature::of_ints({s.labels.data()[i]}));
    ex.set("image_raw", data::Feature::of_bytes({std::string(
                            reinterpret_cast<const char*>(s.images.data() + i * 784), bytes)}));
    return data::serialize_example(ex);
}

void write_records(const std::string& path, const data::MnistSplit& s, data::Compression c = data::Compression::None) {
    data::TFRecordWriter w(path, c);
    for (std::int64_t i = 0; i < s.labels.numel(); ++i) w.write(mnist_example(s, i));
    w.close();
}

pk::Value xy(const data::MnistSplit& s) {
    return pk::Value::tuple({pk::make_array(s.images), pk::make_array(s.labels)});
}

// (N, 784) float32 pixel / denominator, as the deeplearning.net pickle stores images.
pk::Value float_images(const data::MnistSplit& s, float denominator) {
    std::vector<float> v(static_cast<std::size_t>(s.images.numel()));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = float(s.images.data()[i]) / denominator;
    return pk::make_array<float>({s.images.dim(0), 784}, v);
}

pk::Value int64_labels(const data::MnistSplit& s) {
    std::vector<std::int64_t> v(s.labels.data(), s.labels.data() + s.labels.numel());
    return pk::make_array<std::int64_t>({s.labels.numel()}, v);
}

}  // namespace

TEST_CASE("detect_format: by content, never by name") {
    TempDir dir;
    const auto s = random_split(3, 1);
    data::write_idx(dir / "a.pkl", s.images);  // misleading names on purpose
    data::write_idx(dir / "b.tfrecords", s.labels, true);
    pk::dump(xy(s), dir / "c.idx", 2);
    pk::dump(xy(s), dir / "d", 4, true);
    write_records(dir / "e.pkl", s);
    write_records(dir / "f", s, data::Compression::Gzip);
    write_records(dir / "g", s, data::Compression::Zlib);
    write_bytes(dir / "p0", "(lp0\nI1\naI2\na.");  // protocol 0: [1, 2]
    write_bytes(dir / "p0_cut", "(lp0\nI1\naI2\na");
    write_bytes(dir / "text", "Lorem ipsum dolor sit amet");
    write_bytes(dir / "empty", "");
    io::write_file(dir / "gz_text", io::gzip_compress(std::vector<std::uint8_t>{'h', 'e', 'l', 'l', 'o'}));
    std::vector<std::uint8_t> bad_crc = data::frame_tfrecord(s.labels.data(), 3);
    bad_crc[8] ^= 1;
    io::write_file(dir / "bad_crc", bad_crc);

    CHECK(data::detect_format(dir / "a.pkl") == FileFormat::idx);
    CHECK(data::detect_format(dir / "b.tfrecords") == FileFormat::idx);
    CHECK(data::detect_format(dir / "c.idx") == FileFormat::pickle);
    CHECK(data::detect_format(dir / "d") == FileFormat::pickle);
    CHECK(data::detect_format(dir / "e.pkl") == FileFormat::tfrecord);
    CHECK(data::detect_format(dir / "f") == FileFormat::tfrecord);
    CHECK(data::detect_format(dir / "g") == FileFormat::tfrecord);
    CHECK(data::detect_format(dir / "p0") == FileFormat::pickle);
    CHECK(data::detect_format(dir / "p0_cut") == FileFormat::unknown);
    CHECK(data::detect_format(dir / "text") == FileFormat::unknown);
    CHECK(data::detect_format(dir / "empty") == FileFormat::tfrecord);  // zero records
    CHECK(data::detect_format(dir / "gz_text") == FileFormat::unknown);
    CHECK(data::detect_format(dir / "bad_crc") == FileFormat::unknown);
    CHECK(contains(error_of([&] { data::detect_format(dir / "absent"); }), "absent"));

    SUBCASE("the real files") {
        for (const char* f : {"mnist/train-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz"})
            CHECK(data::detect_format(kShared + "/" + f) == FileFormat::idx);
        for (const char* f : {"mnist-pkl/sample_weight.pkl", "mnist-pkl/deep_convnet_params.2016.pkl",
                              "mnist-pkl/deep_convnet_params.2022.pkl"})
            CHECK(data::detect_format(kShared + "/" + f) == FileFormat::pickle);
        for (const auto& sub : {"tfrecord", "tfevents"})
            for (const auto& e : std::filesystem::directory_iterator(kShared + "/" + sub))
                CHECK(data::detect_format(e.path().string()) == FileFormat::tfrecord);
        CHECK(data::detect_format(kShared + "/README.md") == FileFormat::unknown);
    }
}

TEST_CASE("load_mnist_from: Keras, deeplearning.net and dict pickles") {
    TempDir dir;
    const auto train = random_split(37, 2), test = random_split(11, 3), valid = random_split(5, 4);

    SUBCASE("Keras ((x_train, y_train), (x_test, y_test)), gzipped, protocol 2") {
        pk::dump(pk::Value::tuple({xy(train), xy(test)}), dir / "mnist.pkl.gz", 2, true);
        const data::Mnist m = data::load_mnist_from(dir / "mnist.pkl.gz");
        CHECK(same(m.train, train));
        CHECK(same(m.test, test));
        CHECK(m.train.scale == 1.0f / 255.0f);
        CHECK_FALSE(m.validation.labels.defined());
    }
    SUBCASE("deeplearning.net (train, valid, test), floats pixel/256 and pixel/255") {
        for (float denominator : {256.0f, 255.0f}) {
            auto part = [&](const data::MnistSplit& s) {
                return pk::Value::tuple({float_images(s, denominator), int64_labels(s)});
            };
            pk::dump(pk::Value::tuple({part(train), part(valid), part(test)}), dir / "dl.pkl.gz", 4, true);
            const data::Mnist m = data::load_mnist_from(dir / "dl.pkl.gz");
            CHECK(same(m.train, train));
            CHECK(same(m.validation, valid));
            CHECK(same(m.test, test));
            CHECK(m.train.scale == 1.0f / denominator);
            CHECK(m.test.scale == 1.0f / denominator);
        }
    }
    SUBCASE("a dict with x_train, y_train, x_test, y_test") {
        pk::Dict d;
        d.emplace_back(pk::Value::str("x_train"), pk::make_array(train.images));
        d.emplace_back(pk::Value::str("y_train"), int64_labels(train));
        d.emplace_back(pk::Value::str("x_test"), pk::make_array(test.images));
        d.emplace_back(pk::Value::str("y_test"), pk::make_array(test.labels));
        pk::dump(pk::Value::dict(d), dir / "d.pkl", 3);
        const data::Mnist m = data::load_mnist_from(dir / "d.pkl");
        CHECK(same(m.train, train));
        CHECK(same(m.test, test));
    }
    SUBCASE("errors name the file, the place and what was expected") {
        auto v = float_images(train, 255.0f);
        const_cast<pk::Array&>(v.as_array()).data[4 * 100] ^= 1;  // one pixel off the grid
        pk::dump(pk::Value::tuple({pk::Value::tuple({v, int64_labels(train)}), xy(test)}), dir / "off.pkl", 4);
        std::string e = error_of([&] { data::load_mnist_from(dir / "off.pkl"); });
        CHECK(contains(e, dir / "off.pkl"));
        CHECK(contains(e, "[0][0]"));
        CHECK(contains(e, "element 100"));

        auto bad = train;
        bad.labels = train.labels.clone();
        bad.labels.data()[7] = 10;
        pk::dump(pk::Value::tuple({xy(bad), xy(test)}), dir / "label.pkl", 2);
        e = error_of([&] { data::load_mnist_from(dir / "label.pkl"); });
        CHECK(contains(e, "[0][1]"));
        CHECK(contains(e, "label 10 of example 7"));

        pk::dump(pk::Value::tuple({xy(train), pk::Value::tuple({pk::make_array(test.images),
                                                                 pk::make_array(train.labels)})}),
                 dir / "count.pkl", 2);
        CHECK(contains(error_of([&] { data::load_mnist_from(dir / "count.pkl"); }), "they must match"));

        pk::dump(pk::Value::list({pk::Value::integer(1)}), dir / "list.pkl", 2);
        e = error_of([&] { data::load_mnist_from(dir / "list.pkl"); });
        CHECK(contains(e, "Keras"));
        CHECK(contains(e, "deeplearning.net"));
        CHECK(contains(e, "list.pkl"));

        pk::dump(pk::Value::tuple({xy(train), pk::Value::tuple({pk::make_array(test.labels),
                                                                 pk::make_array(test.labels)})}),
                 dir / "shape.pkl", 2);
        CHECK(contains(error_of([&] { data::load_mnist_from(dir / "shape.pkl"); }), "(N, 784), (N, 28, 28)"));

        // A one-split pickle is a split, not all of MNIST.
        pk::dump(xy(train), dir / "one.pkl", 2);
        CHECK(same(data::load_mnist_split_from(dir / "one.pkl"), train));
        CHECK(contains(error_of([&] { data::load_mnist_from(dir / "one.pkl"); }), "one split"));
    }
}

TEST_CASE("load_mnist_split_from / load_mnist_from: TFRecords and IDX") {
    TempDir dir;
    const auto train = random_split(23, 5), test = random_split(9, 6), valid = random_split(4, 7);

    SUBCASE("one TFRecord file of each compression") {
        for (auto c : {data::Compression::None, data::Compression::Gzip, data::Compression::Zlib}) {
            write_records(dir / "x.tfrecords", train, c);
            CHECK(same(data::load_mnist_split_from(dir / "x.tfrecords"), train));
        }
        write_records(dir / "empty.tfrecords", random_split(0, 1));
        CHECK(data::load_mnist_split_from(dir / "empty.tfrecords").images.shape() == Shape{0, 28, 28});
    }
    SUBCASE("a TFRecords directory, and a train file with its test file beside it") {
        write_records(dir / "train.tfrecords", train, data::Compression::Gzip);
        write_records(dir / "test.tfrecords", test);
        data::Mnist m = data::load_mnist_from(dir.path.string());
        CHECK(same(m.train, train));
        CHECK(same(m.test, test));
        CHECK_FALSE(m.validation.labels.defined());
        write_records(dir / "validation.tfrecords", valid, data::Compression::Zlib);
        m = data::load_mnist_from(dir.path.string());
        CHECK(same(m.validation, valid));
        m = data::load_mnist_from(dir / "train.tfrecords");
        CHECK(same(m.train, train));
        CHECK(same(m.test, test));
    }
    SUBCASE("bad records are named by index") {
        data::TFRecordWriter w(dir / "bad.tfrecords");
        w.write(mnist_example(train, 0));
        w.write(mnist_example(train, 1));
        w.write(mnist_example(train, 2, 27));
        w.close();
        std::string e = error_of([&] { data::load_mnist_split_from(dir / "bad.tfrecords"); });
        CHECK(contains(e, "record 2"));
        CHECK(contains(e, "27x28x1"));

        data::TFRecordWriter w2(dir / "short.tfrecords");
        w2.write(mnist_example(train, 0));
        w2.write(mnist_example(train, 1, 28, 783));
        w2.close();
        e = error_of([&] { data::load_mnist_split_from(dir / "short.tfrecords"); });
        CHECK(contains(e, "record 1"));
        CHECK(contains(e, "783 bytes"));

        data::Example ex;
        ex.set("image_raw", data::Feature::of_bytes({std::string(784, 'x')}));
        ex.set("label", data::Feature::of_ints({12}));
        data::write_tfrecords(dir / "label.tfrecords", {data::serialize_example(ex)});
        CHECK(contains(error_of([&] { data::load_mnist_split_from(dir / "label.tfrecords"); }), "label 12"));

        write_records(dir / "lonely.tfrecords", train);
        CHECK(contains(error_of([&] { data::load_mnist_from(dir / "lonely.tfrecords"); }), "one split"));
        CHECK(contains(error_of([&] { data::load_mnist_from(dir / "nothing"); }), "no such file"));
        std::filesystem::create_directories(dir / "emptydir");
        CHECK(contains(error_of([&] { data::load_mnist_from(dir / "emptydir"); }), "train.tfrecords"));
    }
    SUBCASE("an IDX images file finds its labels beside it") {
        data::write_idx(dir / "train-images-idx3-ubyte.gz", train.images, true);
        data::write_idx(dir / "train-labels-idx1-ubyte", train.labels);
        CHECK(same(data::load_mnist_split_from(dir / "train-images-idx3-ubyte.gz"), train));
        CHECK(contains(error_of([&] { data::load_mnist_from(dir / "train-images-idx3-ubyte.gz"); }), "t10k"));
        data::write_idx(dir / "t10k-images-idx3-ubyte", test.images);
        data::write_idx(dir / "t10k-labels-idx1-ubyte.gz", test.labels, true);
        const data::Mnist m = data::load_mnist_from(dir / "train-images-idx3-ubyte.gz");
        CHECK(same(m.train, train));
        CHECK(same(m.test, test));
        const data::Mnist d = data::load_mnist_from(dir.path.string());
        CHECK(same(d.train, train));
        data::write_idx(dir / "x-images", test.images);
        CHECK(contains(error_of([&] { data::load_mnist_split_from(dir / "x-images"); }), "x-labels"));
    }
}

TEST_CASE("the real files: IDX directory and the NNStudy TFRecords match t10k") {
    const data::Mnist m = data::load_mnist_from(kShared + "/mnist");
    CHECK(m.train.images.shape() == Shape{60000, 28, 28});
    CHECK(m.test.labels.shape() == Shape{10000});
    const auto tr = data::load_mnist_split_from(kShared + "/tfrecord/nnstudy_mnist01_train.tfrecords");
    const auto va = data::load_mnist_split_from(kShared + "/tfrecord/nnstudy_mnist01_validate.tfrecords");
    REQUIRE(tr.labels.numel() == 1835);
    REQUIRE(va.labels.numel() == 280);
    // The README: train's first record is t10k image 3, validate's is t10k image 8845.
    CHECK(std::memcmp(tr.images.data(), m.test.images.data() + 3 * 784, 784) == 0);
    CHECK(tr.labels.data()[0] == m.test.labels.data()[3]);
    CHECK(std::memcmp(va.images.data(), m.test.images.data() + 8845 * 784, 784) == 0);
    CHECK(va.labels.data()[0] == m.test.labels.data()[8845]);
    std::int64_t ones = 0;
    for (std::int64_t i = 0; i < tr.labels.numel(); ++i) ones += tr.labels.data()[i];
    CHECK(ones == 975);
    const std::string e = error_of([&] { data::load_mnist_split_from(kShared + "/tfrecord/Telugu_MNIST_Test.tfrecords"); });
    CHECK(contains(e, "record 0"));
    CHECK(contains(e, "50x50x1"));
    CHECK(contains(error_of([&] { data::load_mnist_from(kShared + "/mnist-pkl/sample_weight.pkl"); }), "Keras"));
}
