#include <doctest/doctest.h>

#include "../test_util.hpp"

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include <unistd.h>
#include <zlib.h>

#include <cumulus/data/example.hpp>
#include <cumulus/data/idx.hpp>
#include <cumulus/data/tfrecord.hpp>
#include <cumulus/io/crc32c.hpp>
#include <cumulus/io/file.hpp>
#include <cumulus/io/gzip.hpp>
#include <cumulus/io/zstream.hpp>

using cumulus::Error;
using Bytes = std::vector<std::uint8_t>;
namespace fs = std::filesystem;
namespace data = cumulus::data;
namespace io = cumulus::io;
using data::Compression;
using data::Example;
using data::Feature;

namespace {

using test_util::TempDir;
using test_util::contains;
using test_util::error_of;
using test_util::to_hex;

const std::string kData = std::string(CUMULUS_TEST_DATA_DIR) + "/tfrecord/";
const std::string kEvents = std::string(CUMULUS_TEST_DATA_DIR) + "/tfevents/";

std::vector<Bytes> read_all(const std::string& path, Compression c) {
    data::TFRecordReader r(path, c);
    std::vector<Bytes> out;
    Bytes rec;
    while (r.next(rec)) out.push_back(rec);
    return out;
}

std::vector<Bytes> read_memory(const Bytes& bytes, Compression c, std::uint64_t max_len = 1 << 20) {
    data::TFRecordReader r(std::make_unique<io::MemorySource>(bytes.data(), bytes.size(), "mem"), c, max_len);
    std::vector<Bytes> out;
    Bytes rec;
    while (r.next(rec)) out.push_back(rec);
    return out;
}

Bytes frame_all(const std::vector<Bytes>& records, Compression c = Compression::None) {
    Bytes out;
    data::TFRecordWriter w(std::make_unique<io::VectorSink>(out), c);
    for (const auto& r : records) w.write(r);
    w.close();
    return out;
}

Bytes zlib_compress(const Bytes& in) {
    uLongf n = compressBound(static_cast<uLong>(in.size()));
    Bytes out(n);
    REQUIRE(compress2(out.data(), &n, in.data(), static_cast<uLong>(in.size()), 6) == Z_OK);
    out.resize(n);
    return out;
}

Bytes zlib_uncompress(const Bytes& in, std::size_t size) {
    Bytes out(size + 1);
    uLongf n = static_cast<uLongf>(out.size());
    REQUIRE(uncompress(out.data(), &n, in.data(), static_cast<uLong>(in.size())) == Z_OK);
    out.resize(n);
    return out;
}

std::vector<Bytes> sample_records(std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<Bytes> recs = {Bytes{}, Bytes{0x42}, Bytes(1 << 20)};
    for (auto& b : recs[2]) b = static_cast<std::uint8_t>(rng() % 7);  // compressible
    for (int i = 0; i < 40; ++i) {
        Bytes b(rng() % 3000);
        for (auto& x : b) x = static_cast<std::uint8_t>(rng());
        recs.push_back(b);
    }
    recs.push_back(Bytes{});
    return recs;
}

Example parse_record(const Bytes& r, const std::string& path, std::size_t i) {
    return data::parse_example(r, "'" + path + "': record " + std::to_string(i));
}

}  // namespace

// ---------------------------------------------------------------- vectors

TEST_CASE("tfrecord: TensorFlow's exact bytes for the formats.md vectors") {
    CHECK(to_hex(data::frame_tfrecord(reinterpret_cast<const std::uint8_t*>("hello"), 5)) ==
          "0500000000000000" "eab2043e" "68656c6c6f" "bb1f1c19");
    CHECK(to_hex(data::frame_tfrecord(nullptr, 0)) == "0000000000000000" "29039807" "d8ea82a2");
    TempDir dir;
    const std::string path = dir / "hello.tfrecord";
    data::TFRecordWriter w(path);
    w.write(std::string_view("hello"));
    w.write(Bytes{});
    CHECK(w.records_written() == 2);
    w.close();
    CHECK(to_hex(io::read_file(path)) ==
          "0500000000000000eab2043e68656c6c6fbb1f1c19" "000000000000000029039807d8ea82a2");
    const auto recs = read_all(path, Compression::None);
    REQUIRE(recs.size() == 2);
    CHECK(recs[0] == Bytes{'h', 'e', 'l', 'l', 'o'});
    CHECK(recs[1].empty());
    CHECK(data::detect_compression(path) == Compression::None);
}

// ---------------------------------------------------------------- real files

TEST_CASE("tfrecord: every real file: record counts, CRCs, every record a tf.train.Example that re-encodes exactly") {
    const std::map<std::string, std::size_t> counts = {
        {"nnstudy_mnist01_validate.tfrecords", 280}, {"nnstudy_mnist01_train.tfrecords", 1835},
        {"Telugu_MNIST_Test.tfrecords", 1591},       {"titanic_train.tfrecord", 891},
        {"dialog_validation_3rec.tfrecords", 3},     {"tiny_one_record.tfrecords", 1},
    };
    for (const auto& [name, want] : counts) {
        CAPTURE(name);
        const std::string path = kData + name;
        CHECK(data::detect_compression(path) == Compression::None);
        data::TFRecordReader r(path);  // detects; checks both CRCs of every record
        Bytes rec;
        std::size_t n = 0;
        std::uint64_t bytes = 0;
        while (r.next(rec)) {
            Example ex = parse_record(rec, path, n);
            REQUIRE(!ex.features.empty());
            // TF writes packed lists and whole map entries: re-encoding in file order gives the same bytes.
            REQUIRE(data::serialize_example(ex) == rec);
            bytes += 16 + rec.size();
            ++n;
        }
        CHECK(n == want);
        CHECK(r.record_index() == want);
        CHECK(bytes == fs::file_size(path));  // the file ends exactly after the last record
        CHECK(r.offset() == bytes);
        CHECK_FALSE(r.next(rec));  // stays at the end
    }
}

TEST_CASE("tfrecord: tiny_one_record, byte for byte") {
    const std::string path = kData + "tiny_one_record.tfrecords";
    const Bytes file = io::read_file(path);
    CHECK(to_hex(file) ==
          "5700000000000000e6ba948c0a550a110a08666561747572653112051a030a010a0a400a08666561747572653212340a320a30"
          "000000000000f03f00000000000000400000000000000c40000000000000104000000000000014400000000000001840"
          "3eb4952c");
    const auto recs = read_all(path, Compression::None);
    REQUIRE(recs.size() == 1);
    CHECK(recs[0].size() == 87);
    Example ex = data::parse_example(recs[0]);
    REQUIRE(ex.features.size() == 2);
    CHECK(ex.features[0].first == "feature1");
    CHECK(ex.find("feature1")->ints == std::vector<std::int64_t>{10});
    const Feature* f2 = ex.find("feature2");
    REQUIRE(f2 != nullptr);
    REQUIRE(f2->kind == Feature::Bytes);
    REQUIRE(f2->bytes.size() == 1);
    REQUIRE(f2->bytes[0].size() == 48);
    double d[6];
    std::memcpy(d, f2->bytes[0].data(), 48);
    CHECK(std::vector<double>(d, d + 6) == std::vector<double>{1.0, 2.0, 3.5, 4.0, 5.0, 6.0});
    // Writing the record again gives the same file.
    CHECK(data::frame_tfrecord(recs[0].data(), recs[0].size()) == file);
}

TEST_CASE("tfrecord: titanic: first fare 7.25, pass_id 1..891, 342 survivors, the fare sum") {
    const std::string path = kData + "titanic_train.tfrecord";
    data::TFRecordReader r(path);
    Bytes rec;
    std::size_t i = 0, survivors = 0;
    double fare_sum = 0;
    while (r.next(rec)) {
        Example ex = parse_record(rec, path, i);
        for (const char* key : {"pass_id", "pclass", "gender", "sibsp", "parch", "ticket", "cabin_id", "cabin_type",
                                "embarked", "label"}) {
            const Feature* f = ex.find(key);
            REQUIRE_MESSAGE(f != nullptr, key);
            REQUIRE(f->kind == Feature::Int64);
            REQUIRE(f->ints.size() == 1);
        }
        const Feature* fare = ex.find("fare");
        REQUIRE(fare != nullptr);
        REQUIRE(fare->kind == Feature::Float);
        REQUIRE(fare->floats.size() == 1);
        if (i == 0) {
            CHECK(fare->floats[0] == 7.25f);
            CHECK(ex.find("ticket")->ints[0] == 21171);
            CHECK(ex.find("pclass")->ints[0] == 3);
        }
        CHECK(ex.find("pass_id")->ints[0] == static_cast<std::int64_t>(i + 1));
        const std::int64_t label = ex.find("label")->ints[0];
        CHECK((label == 0 || label == 1));
        survivors += label == 1;
        fare_sum += fare->floats[0];
        ++i;
    }
    CHECK(i == 891);
    CHECK(survivors == 342);
    // Sum of the float32 fares in double, in file order (computed with TensorFlow 2.20 + numpy).
    CHECK(fare_sum == doctest::Approx(28693.94936466217).epsilon(1e-12));
}

TEST_CASE("tfrecord: dialog: 160-value packed lists, a value 46456, the per-record sums") {
    const std::string path = kData + "dialog_validation_3rec.tfrecords";
    const auto recs = read_all(path, Compression::None);
    REQUIRE(recs.size() == 3);
    const std::int64_t sums[3] = {282816, 254391, 220922};  // all int64 values of each record (TensorFlow)
    const std::int64_t context_len[3] = {15, 24, 32};
    for (std::size_t i = 0; i < 3; ++i) {
        Example ex = parse_record(recs[i], path, i);
        CHECK(ex.features.size() == 22);
        std::int64_t sum = 0;
        for (const auto& [key, f] : ex.features) {
            REQUIRE(f.kind == Feature::Int64);
            const bool is_len = key.size() > 4 && key.compare(key.size() - 4, 4, "_len") == 0;
            CHECK_MESSAGE(f.ints.size() == (is_len ? 1u : 160u), key);
            for (auto v : f.ints) sum += v;
        }
        CHECK(sum == sums[i]);
        CHECK(ex.find("context_len")->ints[0] == context_len[i]);
    }
    Example first = data::parse_example(recs[0]);
    const auto& ctx = first.find("context")->ints;
    CHECK(std::vector<std::int64_t>(ctx.begin(), ctx.begin() + 6) == std::vector<std::int64_t>{68, 171, 20, 38, 973, 67});
    const auto& d2 = first.find("distractor_2")->ints;
    CHECK(std::find(d2.begin(), d2.end(), 46456) != d2.end());
    CHECK(first.find("utterance")->ints[3] == 2579);
}

TEST_CASE("tfrecord: Telugu MNIST: 1591 records of 50x50 images, label counts, pixel sum") {
    const std::string path = kData + "Telugu_MNIST_Test.tfrecords";
    data::TFRecordReader r(path);
    Bytes rec;
    std::size_t n = 0;
    std::uint64_t pixel_sum = 0;
    std::map<int, int> labels;
    while (r.next(rec)) {
        Example ex = parse_record(rec, path, n);
        CHECK(ex.find("height")->ints == std::vector<std::int64_t>{50});
        CHECK(ex.find("width")->ints == std::vector<std::int64_t>{50});
        const auto& img = ex.find("image_raw")->bytes;
        REQUIRE(img.size() == 1);
        REQUIRE(img[0].size() == 2500);
        for (unsigned char c : img[0]) pixel_sum += c;
        const auto& lab = ex.find("label_raw")->bytes;
        REQUIRE(lab.size() == 1);
        REQUIRE(lab[0].size() == 1);
        labels[static_cast<unsigned char>(lab[0][0])]++;
        ++n;
    }
    CHECK(n == 1591);
    CHECK(pixel_sum == 970680805u);  // TensorFlow 2.20 gives the same
    const std::map<int, int> want = {{0, 101}, {1, 100}, {2, 99},  {3, 95},  {4, 100}, {5, 100}, {6, 100}, {7, 100},
                                     {8, 100}, {9, 100}, {10, 100}, {11, 99}, {12, 97}, {13, 100}, {14, 100}, {15, 100}};
    CHECK(labels == want);
}

TEST_CASE("tfrecord: NNStudy MNIST 0/1: every img_raw is the t10k IDX image with the same label") {
    const std::string mnist = std::string(CUMULUS_TEST_DATA_DIR) + "/mnist/";
    const auto images = data::load_idx_images(mnist + "t10k-images-idx3-ubyte.gz");
    const auto labels = data::load_idx_labels(mnist + "t10k-labels-idx1-ubyte.gz");
    REQUIRE(images.dim(0) == 10000);
    std::unordered_map<std::string, std::vector<int>> by_bytes;
    std::size_t zeros_and_ones = 0;
    for (int i = 0; i < 10000; ++i) {
        by_bytes[std::string(reinterpret_cast<const char*>(images.data()) + 784 * i, 784)].push_back(i);
        zeros_and_ones += labels.data()[i] <= 1;
    }
    CHECK(zeros_and_ones == 2115);
    std::vector<bool> seen(10000, false);
    struct Split {
        const char* file;
        int first_index;
        std::size_t zeros, ones;
    };
    for (const Split& s : {Split{"nnstudy_mnist01_train.tfrecords", 3, 860, 975},
                           Split{"nnstudy_mnist01_validate.tfrecords", 8845, 120, 160}}) {
        const std::string file = s.file;
        CAPTURE(file);
        const std::string path = kData + s.file;
        data::TFRecordReader r(path);
        Bytes rec;
        std::size_t n = 0, count[2] = {0, 0};
        std::int64_t prev_label = 0;
        while (r.next(rec)) {
            REQUIRE(rec.size() == 824);
            Example ex = parse_record(rec, path, n);
            const auto& img = ex.find("img_raw")->bytes;
            const auto& lab = ex.find("label")->ints;
            REQUIRE(img.size() == 1);
            REQUIRE(lab.size() == 1);
            REQUIRE((lab[0] == 0 || lab[0] == 1));
            CHECK(lab[0] >= prev_label);  // zeros first, then ones
            prev_label = lab[0];
            ++count[lab[0]];
            auto it = by_bytes.find(img[0]);
            REQUIRE_MESSAGE(it != by_bytes.end(), "record ", n, " is no t10k image");
            // Duplicate images in t10k: take the first unused index with this label.
            int match = -1;
            for (int idx : it->second)
                if (!seen[idx] && labels.data()[idx] == lab[0]) {
                    match = idx;
                    break;
                }
            REQUIRE_MESSAGE(match >= 0, "record ", n, ": no unused t10k image with label ", lab[0]);
            seen[match] = true;
            if (n == 0) {
                CHECK(match == s.first_index);
                CHECK(std::memcmp(img[0].data(), images.data() + 784 * s.first_index, 784) == 0);
            }
            ++n;
        }
        CHECK(count[0] == s.zeros);
        CHECK(count[1] == s.ones);
    }
    // Together: exactly the t10k images labelled 0 or 1.
    std::size_t used = 0;
    for (int i = 0; i < 10000; ++i) {
        CHECK_MESSAGE(seen[i] == (labels.data()[i] <= 1), "t10k index ", i);
        used += seen[i];
    }
    CHECK(used == 2115);
}

TEST_CASE("tfrecord: the TensorBoard event files are framed records with good CRCs") {
    struct Case {
        const char* file;
        std::size_t count;
        std::size_t first_sizes[3];
        const char* version;
    };
    for (const Case& c : {Case{"events.out.tfevents.1459367088.Toms-MacBook-Pro.local", 202, {24, 9261, 51}, "brain.Event:1"},
                          Case{"events.out.tfevents.1530785182.heguangzhongdeMacBook-Pro-2.local", 3, {24, 1232, 39036},
                               "brain.Event:2"}}) {
        const std::string file = c.file;
        CAPTURE(file);
        const std::string path = kEvents + c.file;
        const auto recs = read_all(path, Compression::None);
        REQUIRE(recs.size() == c.count);
        for (int i = 0; i < 3; ++i) CHECK(recs[i].size() == c.first_sizes[i]);
        // Event{wall_time (field 1, fixed64), file_version (field 3)}.
        const Bytes& first = recs[0];
        REQUIRE(first.size() == 24);
        CHECK(first[0] == 0x09);
        CHECK(first[9] == 0x1a);
        CHECK(std::string(first.begin() + 11, first.end()) == c.version);
        std::uint64_t total = 0;
        for (const auto& r : recs) total += 16 + r.size();
        CHECK(total == fs::file_size(path));
    }
}

// ---------------------------------------------------------------- writer

TEST_CASE("tfrecord: writer round trips in all three compressions (records of 0, 1 and 1 MiB bytes)") {
    TempDir dir;
    const auto recs = sample_records(1);
    const Bytes plain_bytes = frame_all(recs);
    for (Compression c : {Compression::None, Compression::Gzip, Compression::Zlib}) {
        CAPTURE(data::compression_name(c));
        const std::string path = dir / (std::string("out_") + data::compression_name(c) + ".tfrecord");
        data::TFRecordWriter w(path, c);
        for (const auto& r : recs) w.write(r);
        CHECK_FALSE(fs::exists(path));  // appears only at close()
        w.close();
        CHECK(fs::exists(path));
        CHECK_FALSE(fs::exists(path + ".tmp"));
        CHECK(w.records_written() == recs.size());
        const Bytes file = io::read_file(path);
        CHECK(data::detect_compression(path) == c);
        CHECK(read_all(path, c) == recs);
        // Auto-detection and the in-memory reader agree.
        CHECK(data::read_tfrecords(path) == recs);
        CHECK(read_memory(file, c, 2 << 20) == recs);
        // The stream under the compression is exactly the uncompressed file, by independent decoders.
        if (c == Compression::None) {
            CHECK(file == plain_bytes);
        } else if (c == Compression::Gzip) {
            CHECK(io::is_gzip(file.data(), file.size()));
            CHECK(io::gunzip(file.data(), file.size(), path, 1u << 30) == plain_bytes);
        } else {
            CHECK(file[0] == 0x78);
            CHECK(zlib_uncompress(file, plain_bytes.size()) == plain_bytes);
            CHECK(file.size() < plain_bytes.size() / 2);
        }
    }
    // Files compressed by other encoders: gzip(1)-style multi-member and zlib's compress2.
    const std::size_t cut = plain_bytes.size() / 3;
    Bytes two_members = io::gzip_compress(plain_bytes.data(), cut, 9);
    const Bytes second = io::gzip_compress(plain_bytes.data() + cut, plain_bytes.size() - cut, 1);
    two_members.insert(two_members.end(), second.begin(), second.end());
    two_members.insert(two_members.end(), 512, 0);  // tape padding is ignored
    io::write_file(dir / "multi.gz", two_members);
    CHECK(data::detect_compression(dir / "multi.gz") == Compression::Gzip);
    CHECK(data::read_tfrecords(dir / "multi.gz") == recs);
    io::write_file(dir / "compress2.z", zlib_compress(plain_bytes));
    CHECK(data::read_tfrecords(dir / "compress2.z") == recs);
    // Empty files: no records, in each compression.
    for (Compression c : {Compression::None, Compression::Gzip, Compression::Zlib}) {
        const std::string path = dir / (std::string("empty_") + data::compression_name(c));
        data::write_tfrecords(path, {}, c);
        CHECK(data::detect_compression(path) == c);
        CHECK(read_all(path, c).empty());
        CHECK(data::read_tfrecords(path).empty());
    }
    io::write_file(dir / "zero_bytes", Bytes{});
    CHECK(read_all(dir / "zero_bytes", Compression::Gzip).empty());  // as TensorFlow reads it
    CHECK(read_all(dir / "zero_bytes", Compression::Zlib).empty());
}

TEST_CASE("tfrecord: the writer is atomic: no file without close(), an old file kept until close()") {
    TempDir dir;
    const std::string path = dir / "a.tfrecord";
    {
        data::TFRecordWriter w(path, Compression::Gzip);
        w.write(Bytes{1, 2, 3});
    }
    CHECK_FALSE(fs::exists(path));
    CHECK_FALSE(fs::exists(path + ".tmp"));
    data::write_tfrecords(path, {Bytes{7}});
    {
        data::TFRecordWriter w(path);
        w.write(Bytes{8});
        CHECK(read_all(path, Compression::None) == std::vector<Bytes>{Bytes{7}});
        w.close();
        CHECK(contains(error_of([&] { w.write(Bytes{9}); }), "write after close"));
        CHECK(contains(error_of([&] { w.close(); }), "close twice"));
    }
    CHECK(read_all(path, Compression::None) == std::vector<Bytes>{Bytes{8}});
}

TEST_CASE("tfrecord: detection by content, not by name") {
    // A plain record whose length starts with 1f 8b is not gzip.
    Bytes rec(0x8b1f, 0x55);
    const Bytes plain = frame_all({rec});
    REQUIRE(io::is_gzip(plain.data(), plain.size()));
    CHECK(data::detect_compression(plain.data(), plain.size()) == Compression::None);
    CHECK(read_memory(plain, Compression::None) == std::vector<Bytes>{rec});
    // Zlib-wrapped bytes that are not a record stream are not Zlib.
    const Bytes z = zlib_compress(Bytes(100, 'x'));
    CHECK(data::detect_compression(z.data(), z.size()) == Compression::None);
    CHECK(data::detect_compression(nullptr, 0) == Compression::None);
    const Bytes short_gz = {0x1f, 0x8b};
    CHECK(data::detect_compression(short_gz.data(), short_gz.size()) == Compression::Gzip);
    // A plain record of length 0x9c78 (starts 78 9c, a zlib header) stays plain.
    Bytes rec2(0x9c78, 1);
    const Bytes plain2 = frame_all({rec2});
    CHECK(data::detect_compression(plain2.data(), plain2.size()) == Compression::None);
}

// ---------------------------------------------------------------- corruption

TEST_CASE("tfrecord: corrupt and truncated records name the file, the record index and the byte offset") {
    TempDir dir;
    const std::vector<Bytes> recs = {Bytes(10, 1), Bytes(20, 2), Bytes(30, 3)};
    const Bytes good = frame_all(recs);  // records at offsets 0, 26, 62; 108 bytes
    REQUIRE(good.size() == 108);
    auto err = [&](Bytes bytes, Compression c = Compression::None) {
        const std::string path = dir / "bad.tfrecord";
        io::write_file(path, bytes);
        return error_of([&] { read_all(path, c); });
    };
    std::string msg;

    Bytes b = good;
    b[26 + 8] ^= 1;  // length CRC of record 1
    msg = err(b);
    CHECK(contains(msg, "bad.tfrecord': record 1 (starting at byte offset 26 of the file): corrupt record length"));
    CHECK(contains(msg, "stored at byte offset 34"));

    b = good;
    b[26 + 2] = 1;  // the length itself: its CRC no longer matches
    CHECK(contains(err(b), "record 1 (starting at byte offset 26 of the file): corrupt record length"));

    b = good;
    b[62 + 12 + 5] ^= 0x80;  // data of record 2
    msg = err(b);
    CHECK(contains(msg, "record 2 (starting at byte offset 62 of the file): corrupt record data"));
    CHECK(contains(msg, "stored at byte offset 104"));

    b = good;
    b[107] ^= 1;  // the data CRC itself
    CHECK(contains(err(b), "record 2 (starting at byte offset 62 of the file): corrupt record data"));

    b.assign(good.begin(), good.begin() + 26 + 5);  // truncated header
    msg = err(b);
    CHECK(contains(msg, "record 1 (starting at byte offset 26 of the file): truncated record header: expected 12 bytes"));
    CHECK(contains(msg, "ends after 5"));

    b.assign(good.begin(), good.begin() + 26 + 12 + 7);  // truncated data
    CHECK(contains(err(b), "record 1 (starting at byte offset 26 of the file): truncated record: its length is 20 + 4"));

    b.assign(good.begin(), good.begin() + 107);  // truncated footer
    CHECK(contains(err(b), "record 2 (starting at byte offset 62 of the file): truncated record: its length is 30 + 4 CRC bytes, but only 33"));

    // A huge length with a valid CRC fails on the cap, before allocating.
    b = good;
    Bytes big = data::frame_tfrecord(nullptr, 0);
    const std::uint64_t huge = std::uint64_t{1} << 40;
    for (int i = 0; i < 8; ++i) big[i] = static_cast<std::uint8_t>(huge >> (8 * i));
    const std::uint32_t crc = io::masked_crc32c(big.data(), 8);
    for (int i = 0; i < 4; ++i) big[8 + i] = static_cast<std::uint8_t>(crc >> (8 * i));
    b.insert(b.end(), big.begin(), big.begin() + 12);
    msg = err(b);
    CHECK(contains(msg, "record 3 (starting at byte offset 108 of the file): record length 1099511627776 exceeds the limit of 1073741824"));

    // The same in memory with a valid-CRC length of 1 GiB - 1 that the stream cannot hold.
    const std::uint64_t almost = (std::uint64_t{1} << 30) - 1;
    for (int i = 0; i < 8; ++i) big[i] = static_cast<std::uint8_t>(almost >> (8 * i));
    const std::uint32_t crc2 = io::masked_crc32c(big.data(), 8);
    for (int i = 0; i < 4; ++i) big[8 + i] = static_cast<std::uint8_t>(crc2 >> (8 * i));
    Bytes mem = good;
    mem.insert(mem.end(), big.begin(), big.begin() + 12);
    mem.insert(mem.end(), 1000, 0);
    msg = error_of([&] { read_memory(mem, Compression::None, std::uint64_t{1} << 30); });
    CHECK(contains(msg, "'mem': record 3 (starting at byte offset 108 of the file): truncated record data: expected 1073741823 bytes"));

    // Compressed: offsets are in the decompressed record stream.
    Bytes gz = io::gzip_compress(good);
    Bytes gz_trunc(gz.begin(), gz.end() - 10);  // loses the trailer and some data
    msg = err(gz_trunc, Compression::Gzip);
    CHECK(contains(msg, "bad.tfrecord' (GZIP): record "));
    CHECK(contains(msg, "of the decompressed record stream)"));
    CHECK(contains(msg, "truncated GZIP data: the input ends at byte offset"));
    Bytes gz_data_bad = io::gzip_compress(good);
    gz_data_bad[gz_data_bad.size() / 2] ^= 0xFF;
    msg = err(gz_data_bad, Compression::Gzip);
    CHECK(contains(msg, "(GZIP): record "));
    CHECK(contains(msg, "byte offset"));
    // A valid gzip stream of a truncated record stream.
    Bytes cut(good.begin(), good.begin() + 80);
    msg = err(io::gzip_compress(cut), Compression::Gzip);
    CHECK(contains(msg, "(GZIP): record 2 (starting at byte offset 62 of the decompressed record stream): truncated record data: expected 30 bytes at byte offset 74, the stream ends after 6"));
    // Trailing garbage after the gzip stream.
    Bytes trailing = io::gzip_compress(good);
    trailing.push_back('x');
    msg = err(trailing, Compression::Gzip);
    CHECK(contains(msg, "(GZIP): record 3 (starting at byte offset 108 of the decompressed record stream)"));
    CHECK(contains(msg, "trailing data after the end of the GZIP stream"));
    // Zlib: truncated stream, corrupt CRC in the decompressed bytes.
    Bytes z = zlib_compress(good);
    msg = err(Bytes(z.begin(), z.end() - 3), Compression::Zlib);
    CHECK(contains(msg, "(ZLIB): record "));
    CHECK(contains(msg, "truncated ZLIB data"));
    Bytes bad_crc = good;
    bad_crc[50] ^= 4;
    msg = err(zlib_compress(bad_crc), Compression::Zlib);
    CHECK(contains(msg, "(ZLIB): record 1 (starting at byte offset 26 of the decompressed record stream): corrupt record data"));
    // Plain bytes read as gzip.
    msg = err(good, Compression::Gzip);
    CHECK(contains(msg, "(GZIP): record 0 (starting at byte offset 0 of the decompressed record stream)"));
    CHECK(contains(msg, "corrupt GZIP data"));
}

TEST_CASE("tfrecord: after an error the reader stays failed; a custom cap applies") {
    Bytes good = frame_all({Bytes(10, 1), Bytes(20, 2)});
    good[26 + 12] ^= 1;
    data::TFRecordReader r(std::make_unique<io::MemorySource>(good.data(), good.size(), "m"), Compression::None);
    Bytes rec;
    CHECK(r.next(rec));
    const std::string first = error_of([&] { r.next(rec); });
    CHECK(contains(first, "record 1"));
    CHECK(error_of([&] { r.next(rec); }) == first);
    const Bytes ok = frame_all({Bytes(100, 1)});
    data::TFRecordReader capped(std::make_unique<io::MemorySource>(ok.data(), ok.size(), "m"), Compression::None, 99);
    CHECK(contains(error_of([&] { capped.next(rec); }), "record length 100 exceeds the limit of 99"));
    data::TFRecordReader exact(std::make_unique<io::MemorySource>(ok.data(), ok.size(), "m"), Compression::None, 100);
    CHECK(exact.next(rec));
    CHECK(contains(error_of([] { data::TFRecordReader r2("/nonexistent/x.tfrecord"); }), "/nonexistent/x.tfrecord"));
}

TEST_CASE("tfrecord: deterministic mutation loop: damaged files throw cumulus::Error, never crash") {
    std::mt19937 rng(2024);
    std::vector<Bytes> recs;
    for (int i = 0; i < 6; ++i) {
        Example ex;
        ex.set("i", Feature::of_ints({i, -i, 1 << 20}));
        ex.set("f", Feature::of_floats({0.5f * static_cast<float>(i)}));
        ex.set("b", Feature::of_bytes({std::string(static_cast<std::size_t>(i * 7), 'q')}));
        recs.push_back(data::serialize_example(ex));
    }
    std::size_t errors = 0, clean = 0;
    for (Compression c : {Compression::None, Compression::Gzip, Compression::Zlib}) {
        const Bytes base = frame_all(recs, c);
        for (int iter = 0; iter < 1500; ++iter) {
            Bytes b = base;
            switch (rng() % 4) {
                case 0: b[rng() % b.size()] ^= static_cast<std::uint8_t>(1u << (rng() % 8)); break;
                case 1: b.resize(rng() % b.size()); break;
                case 2: b.insert(b.begin() + static_cast<std::ptrdiff_t>(rng() % b.size()), static_cast<std::uint8_t>(rng())); break;
                default:
                    for (int k = 0; k < 4; ++k) b[rng() % b.size()] = static_cast<std::uint8_t>(rng());
            }
            try {
                data::TFRecordReader r(std::make_unique<io::MemorySource>(b.data(), b.size(), "mut"),
                                       iter % 2 ? c : data::detect_compression(b.data(), b.size()), 1 << 16);
                Bytes rec;
                while (r.next(rec)) (void)data::parse_example(rec);
                ++clean;
            } catch (const Error&) {
                ++errors;
            }
        }
    }
    MESSAGE("mutations: ", errors, " errors, ", clean, " read without error");
    CHECK(errors > 3000);
}
