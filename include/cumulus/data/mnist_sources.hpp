// MNIST from any of the files the tutorials use, chosen by content:
//
//   - a directory with the four IDX files (each raw or .gz), or with
//     train.tfrecords and test.tfrecords (+ validation.tfrecords);
//   - a pickle holding both splits: Keras' mnist.pkl.gz
//     ((x_train, y_train), (x_test, y_test)) of uint8, the deeplearning.net
//     mnist.pkl.gz (train, valid, test) of (float32 (N, 784), int64 (N,)), or
//     a dict with keys x_train, y_train, x_test, y_test (mnist.npz's names);
//   - one split in one file: a TFRecord file of the tutorials' Examples
//     (image_raw bytes, label int64, height/width/depth), an IDX images file
//     (its labels file found beside it), or a pickle of (x, y).
//
// Float images are turned back into the pixel bytes exactly, or refused:
// deeplearning.net stores pixel/256 (0 .. 0.99609375), others pixel/255. The
// split's `scale` records which, so Dataset::from_uint8(images, labels,
// split.scale) trains on the very floats of the file.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <cumulus/core/error.hpp>
#include <cumulus/core/tensor.hpp>
#include <cumulus/data/example.hpp>
#include <cumulus/data/idx.hpp>
#include <cumulus/data/mnist.hpp>
#include <cumulus/data/pickle.hpp>
#include <cumulus/data/tfrecord.hpp>
#include <cumulus/io/file.hpp>
#include <cumulus/io/fs.hpp>
#include <cumulus/io/gzip.hpp>

namespace cumulus::data {

enum class FileFormat { idx, pickle, tfrecord, unknown };

inline const char* file_format_name(FileFormat f) {
    switch (f) {
        case FileFormat::idx: return "IDX";
        case FileFormat::pickle: return "pickle";
        case FileFormat::tfrecord: return "TFRecord";
        case FileFormat::unknown: return "unknown";
    }
    return "?";
}

namespace detail::sources {

inline constexpr std::size_t kPeekBytes = std::size_t{64} << 10;

// Opcodes that can begin a protocol 0 or 1 pickle (those that need a MARK or
// a stack item first cannot).
inline bool pickle_start_opcode(std::uint8_t op) {
    return std::string_view("(]})cNILFSVJKMUTXG").find(char(op)) != std::string_view::npos;
}

// The format of uncompressed content starting with p[0..n). `whole`: p holds
// all of it; `last`: the content's last byte (when known).
inline FileFormat classify(const std::uint8_t* p, std::size_t n, bool whole, int last) {
    if (n == 0) return whole ? FileFormat::tfrecord : FileFormat::unknown;  // zero records
    if (n >= kTFRecordHeaderSize && detail::tfr::valid_tfrecord_header(p)) return FileFormat::tfrecord;
    if (n >= 4 && p[0] == 0 && p[1] == 0 && idx_type_known(p[2]) && p[3] >= 1 && p[3] <= kIdxMaxRank)
        return FileFormat::idx;
    if (n >= 2 && p[0] == 0x80 && p[1] <= 5) return FileFormat::pickle;
    if (pickle_start_opcode(p[0]) && (last < 0 || last == '.')) return FileFormat::pickle;
    return FileFormat::unknown;
}

inline std::string hex_prefix(const std::uint8_t* p, std::size_t n) {
    std::string s;
    for (std::size_t i = 0; i < n && i < 8; ++i) {
        if (i) s += ' ';
        s += detail::hex_byte(p[i]).substr(2);
    }
    return s.empty() ? "(empty file)" : s;
}

}  // namespace detail::sources

// The format of `n` leading bytes of a file (all of it when `whole`), by
// content only: a valid TFRecord length header (its masked CRC checks out),
// the IDX magic 00 00 <type> <rank>, a pickle PROTO opcode (or, for protocols
// 0 and 1, an opcode that can start a pickle and a final STOP when the whole
// content is at hand), or a gzip / zlib wrapper around one of these.
inline FileFormat detect_format(const std::uint8_t* p, std::size_t n, bool whole) {
    using detail::sources::classify;
    if (io::is_gzip(p, n)) {
        std::vector<std::uint8_t> head;
        try {
            head = io::gunzip_prefix(p, n, "<peek>", 64);
        } catch (const Error&) {
            return FileFormat::unknown;
        }
        // Less than asked for means the stream ended: the content is all here.
        const bool all = head.size() < 64;
        return classify(head.data(), head.size(), all, all && !head.empty() ? head.back() : -1);
    }
    const FileFormat f = classify(p, n, whole, whole && n > 0 ? p[n - 1] : -1);
    if (f == FileFormat::tfrecord || f == FileFormat::idx) return f;
    if (n >= 2 && p[0] == 0x80) return f;
    if (detect_compression(p, n) == Compression::Zlib) return FileFormat::tfrecord;
    return f;
}

// The format of the file at `path` (see above); throws only when it cannot be read.
inline FileFormat detect_format(const std::string& path) {
    io::InputFile f(path);
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(f.size(), detail::sources::kPeekBytes));
    std::vector<std::uint8_t> head(n);
    f.read_exact(head.data(), n, "the first bytes (to detect the format)");
    if (n == f.size()) return detect_format(head.data(), n, true);
    FileFormat fmt = detect_format(head.data(), n, false);
    if (fmt == FileFormat::pickle && head[0] != 0x80 && !io::is_gzip(head.data(), n)) {
        // A protocol 0/1 pickle ends with STOP; check the last byte.
        io::InputFile g(path);
        std::vector<std::uint8_t> skip(detail::sources::kPeekBytes);
        std::uint64_t left = g.size() - 1;
        while (left > 0) {
            const std::size_t step = static_cast<std::size_t>(std::min<std::uint64_t>(left, skip.size()));
            g.read_exact(skip.data(), step, "the content (to find the last byte)");
            left -= step;
        }
        std::uint8_t last = 0;
        g.read_exact(&last, 1, "the last byte");
        if (last != '.') fmt = FileFormat::unknown;
    }
    return fmt;
}

namespace detail::sources {

inline bool is_file(const std::filesystem::path& p) { return data::detail::is_file(p.string()); }

// Labels 0..9; `name` and `where` go into the message.
inline void check_labels(const Tensor<std::uint8_t>& labels, const std::string& where) {
    const std::uint8_t* l = labels.data();
    for (std::int64_t i = 0; i < labels.numel(); ++i)
        if (l[i] >= 10) CUMULUS_FAIL(where, ": label ", int(l[i]), " of example ", i, " is out of range; expected 0..9");
}

// Pixel bytes from a float value v of an image scaled by 1/255 or 1/256;
// false when v is not exactly such a value.
template <typename F>
bool pixel_of(F v, int denominator, std::uint8_t& out) {
    const double k = std::nearbyint(static_cast<double>(v) * denominator);
    if (!(k >= 0 && k <= 255)) return false;
    bool exact;
    if (denominator == 256) {
        exact = static_cast<double>(v) * 256 == k;
    } else if constexpr (std::is_same_v<F, float>) {
        // numpy may have divided in float32 or in float64 and then rounded.
        exact = v == static_cast<float>(k) / 255.0f || v == static_cast<float>(k / 255.0);
    } else {
        exact = v == k / 255.0;
    }
    out = static_cast<std::uint8_t>(k);
    return exact;
}

// (N, 28, 28) uint8 images from a pickled array of shape (N, 784),
// (N, 28, 28) or (N, 28, 28, 1): integer arrays must hold 0..255, float arrays
// pixel/255 or pixel/256 exactly (`scale` gets which).
inline Tensor<std::uint8_t> images_from_array(const pickle::ValueRef& x, float& scale) {
    const pickle::Array& a = x.as_array();
    const auto& s = a.shape;
    const bool ok_shape = (s.size() == 2 && s[1] == 784) || (s.size() == 3 && s[1] == 28 && s[2] == 28) ||
                          (s.size() == 4 && s[1] == 28 && s[2] == 28 && s[3] == 1);
    const std::string what = "the images at " + x.path();
    if (!ok_shape)
        CUMULUS_FAIL(what, ": expected an array of shape (N, 784), (N, 28, 28) or (N, 28, 28, 1), found ",
                     a.describe());
    const std::int64_t n = s[0];
    Tensor<std::uint8_t> images = Tensor<std::uint8_t>::empty(Shape{n, 28, 28});
    scale = 1.0f / 255.0f;
    if (a.dtype.kind != 'f') {
        if (a.dtype.kind == 'b') CUMULUS_FAIL(what, ": expected pixel values, found a bool array");
        a.convert_into<std::uint8_t>(images.data(), what + " (pixels must be 0..255)");
        return images;
    }
    auto convert = [&](const auto& v) {
        std::uint8_t* out = images.data();
        for (int denominator : {255, 256}) {
            bool all = true;
            for (std::size_t i = 0; i < v.size() && all; ++i) all = pixel_of(v[i], denominator, out[i]);
            if (all) {
                scale = 1.0f / static_cast<float>(denominator);
                return;
            }
        }
        for (std::size_t i = 0; i < v.size(); ++i) {
            std::uint8_t b;
            if (!pixel_of(v[i], 255, b))
                CUMULUS_FAIL(what, ": float pixels must all be exact multiples of 1/255 or all of 1/256 (the pixel "
                             "bytes scaled) so they can be kept as bytes; element ", i, " is ", double(v[i]),
                             " and others disagree");
        }
        CUMULUS_FAIL(what, ": float pixels mix multiples of 1/255 and 1/256");
    };
    if (a.dtype.itemsize == 8) convert(a.to_vector<double>(what));
    else convert(a.to_vector<float>(what));
    return images;
}

inline Tensor<std::uint8_t> labels_from_array(const pickle::ValueRef& y) {
    const pickle::Array& a = y.as_array();
    const std::string what = "the labels at " + y.path();
    const bool ok_shape = a.shape.size() == 1 || (a.shape.size() == 2 && a.shape[1] == 1);
    if (!ok_shape || a.dtype.kind == 'f' || a.dtype.kind == 'b')
        CUMULUS_FAIL(what, ": expected an integer array of shape (N,), found ", a.describe());
    Tensor<std::uint8_t> labels = Tensor<std::uint8_t>::empty(Shape{a.shape[0]});
    a.convert_into<std::uint8_t>(labels.data(), what + " (labels must be 0..9)");
    check_labels(labels, what);
    return labels;
}

inline MnistSplit split_from_pickle(const pickle::ValueRef& x, const pickle::ValueRef& y) {
    MnistSplit s;
    s.images = images_from_array(x, s.scale);
    s.labels = labels_from_array(y);
    if (s.images.dim(0) != s.labels.dim(0))
        CUMULUS_FAIL(x.path(), " holds ", s.images.dim(0), " images but ", y.path(), " holds ", s.labels.dim(0),
                     " labels; they must match");
    return s;
}

inline bool is_seq(const pickle::ValueRef& v, std::size_t n) {
    return (v.type() == pickle::Value::Type::tuple || v.type() == pickle::Value::Type::list) && v.size() == n;
}

// An (x, y) pair of arrays.
inline bool is_xy(const pickle::ValueRef& v) {
    return is_seq(v, 2) && v.at(0).type() == pickle::Value::Type::array &&
           v.at(1).type() == pickle::Value::Type::array;
}

inline pickle::Value load_pickle(const std::string& path) {
    pickle::LoadOptions opt;
    opt.encoding = pickle::Encoding::latin1;  // Python 2 pickles (Keras', deeplearning.net's), as numpy advises
    return pickle::load(path, opt);
}

inline const char* kPickleLayouts =
    "((x_train, y_train), (x_test, y_test)) (Keras), (train, valid, test) of (x, y) (deeplearning.net) or a dict "
    "with x_train, y_train, x_test, y_test";

// The labels file beside an IDX images file: "images" -> "labels" and
// "idx3" -> "idx1" in the name, with or without ".gz".
inline std::string labels_beside(const std::string& images_path) {
    namespace fs = std::filesystem;
    const fs::path p(images_path);
    std::string name = p.filename().string();
    const auto i = name.rfind("images");
    if (i == std::string::npos)
        CUMULUS_FAIL(images_path, ": IDX images, but its labels file cannot be found beside it: the name does not ",
                     "contain 'images' (expected e.g. train-images-idx3-ubyte[.gz] beside train-labels-idx1-ubyte[.gz])");
    name.replace(i, 6, "labels");
    if (auto j = name.rfind("idx3"); j != std::string::npos) name.replace(j, 4, "idx1");
    std::string stem = name;
    if (stem.size() > 3 && stem.ends_with(".gz")) stem.resize(stem.size() - 3);
    for (const std::string& c : {name, stem, stem + ".gz"}) {
        const fs::path q = p.parent_path() / c;
        if (is_file(q)) return q.string();
    }
    CUMULUS_FAIL(images_path, ": IDX images; its labels file was looked for beside it as ",
                 (p.parent_path() / stem).string(), "[.gz] and not found");
}

inline MnistSplit split_from_idx(const std::string& path) {
    MnistSplit s;
    s.images = load_idx_images(path);
    if (s.images.dim(1) != 28 || s.images.dim(2) != 28)
        CUMULUS_FAIL(path, ": expected 28x28 images, found shape ", s.images.shape().str());
    const std::string labels_path = labels_beside(path);
    if (detect_format(labels_path) != FileFormat::idx)
        CUMULUS_FAIL(labels_path, " (the labels beside ", path, "): expected an IDX labels file, found ",
                     file_format_name(detect_format(labels_path)), " content");
    s.labels = load_idx_labels(labels_path);
    if (s.images.dim(0) != s.labels.dim(0))
        CUMULUS_FAIL(path, " holds ", s.images.dim(0), " images but ", labels_path, " holds ", s.labels.dim(0),
                     " labels; they must match");
    check_labels(s.labels, labels_path);
    return s;
}

// The int64 value of a one-value int64 feature, or `fallback` when absent.
inline std::int64_t one_int(const Example& ex, std::string_view key, std::int64_t fallback,
                            const std::string& where) {
    const Feature* f = ex.find(key);
    if (f == nullptr) return fallback;
    if (f->kind != Feature::Int64 || f->ints.size() != 1)
        CUMULUS_FAIL(where, ": feature '", key, "' must be an int64_list of one value, found a ",
                     feature_kind_name(f->kind), " of ", f->size(), " values");
    return f->ints[0];
}

inline MnistSplit split_from_tfrecord(const std::string& path) {
    TFRecordReader reader(path);
    std::vector<std::uint8_t> record, pixels, labels;
    while (reader.next(record)) {
        const std::uint64_t index = reader.record_index() - 1;
        const std::string where = "'" + path + "': record " + std::to_string(index);
        const Example ex = parse_example(record, where);
        const Feature* image = ex.find("image_raw");
        std::string_view image_key = "image_raw";
        if (image == nullptr) image = ex.find("img_raw"), image_key = "img_raw";
        if (image == nullptr) {
            std::string keys;
            for (const auto& kv : ex.features) keys += (keys.empty() ? "" : ", ") + kv.first;
            CUMULUS_FAIL(where, ": expected a tf.train.Example with features image_raw (bytes) and label (int64), ",
                         "found no image_raw (features: ", keys.empty() ? std::string("none") : keys, ")");
        }
        if (image->kind != Feature::Bytes || image->bytes.size() != 1)
            CUMULUS_FAIL(where, ": feature '", image_key, "' must be a bytes_list of one value, found a ",
                         feature_kind_name(image->kind), " of ", image->size(), " values");
        const std::int64_t h = one_int(ex, "height", 28, where), w = one_int(ex, "width", 28, where),
                           d = one_int(ex, "depth", 1, where);
        if (h != 28 || w != 28 || d != 1)
            CUMULUS_FAIL(where, ": expected MNIST images of height 28, width 28, depth 1, found ", h, "x", w, "x", d);
        if (image->bytes[0].size() != 784)
            CUMULUS_FAIL(where, ": feature '", image_key, "' holds ", image->bytes[0].size(),
                         " bytes; a 28x28x1 uint8 image needs 784");
        if (ex.find("label") == nullptr) CUMULUS_FAIL(where, ": expected an int64 feature 'label', found none");
        const std::int64_t label = one_int(ex, "label", 0, where);
        if (label < 0 || label > 9) CUMULUS_FAIL(where, ": label ", label, " is out of range; expected 0..9");
        pixels.insert(pixels.end(), image->bytes[0].begin(), image->bytes[0].end());
        labels.push_back(static_cast<std::uint8_t>(label));
    }
    const auto n = static_cast<std::int64_t>(labels.size());
    MnistSplit s;
    s.images = Tensor<std::uint8_t>::empty(Shape{n, 28, 28});
    s.labels = Tensor<std::uint8_t>::empty(Shape{n});
    if (n > 0) {
        std::memcpy(s.images.data(), pixels.data(), pixels.size());
        std::memcpy(s.labels.data(), labels.data(), labels.size());
    }
    return s;
}

inline void require_file(const std::string& path) {
    if (!io::fs::exists(path)) CUMULUS_FAIL(path, ": no such file or directory");
}

}  // namespace detail::sources

// One split from one file, by content: a TFRecord file of tf.train.Examples
// (image_raw: 784 bytes, label: int64 0..9; height/width/depth, when present,
// must be 28/28/1; img_raw is taken for image_raw), an IDX images file (its
// labels file beside it: train-images-idx3-ubyte[.gz] ->
// train-labels-idx1-ubyte[.gz]) or a pickle of (x, y).
inline MnistSplit load_mnist_split_from(const std::string& path) {
    namespace src = detail::sources;
    src::require_file(path);
    switch (detect_format(path)) {
        case FileFormat::tfrecord: return src::split_from_tfrecord(path);
        case FileFormat::idx: return src::split_from_idx(path);
        case FileFormat::pickle: {
            const pickle::Value v = src::load_pickle(path);
            const pickle::ValueRef root = v.ref(path);
            if (!src::is_xy(root))
                CUMULUS_FAIL(path, ": expected a pickle of one split (x, y) of numpy arrays, found ", v.repr(120),
                             (src::is_seq(root, 2) || src::is_seq(root, 3)
                                  ? " (a pickle of all splits is read by load_mnist_from / --train-file alone)"
                                  : ""));
            return src::split_from_pickle(root.at(0), root.at(1));
        }
        case FileFormat::unknown: break;
    }
    std::vector<std::uint8_t> head(8);
    io::InputFile f(path);
    head.resize(static_cast<std::size_t>(std::min<std::uint64_t>(f.size(), 8)));
    f.read_exact(head.data(), head.size(), "the first bytes");
    CUMULUS_FAIL(path, ": expected an MNIST split as a TFRecord file of tf.train.Examples, an IDX images file or "
                 "a pickle of (x, y); the content is none of these (first bytes: ",
                 src::hex_prefix(head.data(), head.size()), ")");
}

// Both splits (and the held-out one, where there is one) from:
//   - a directory holding the four MNIST IDX files (each raw or .gz), or
//     train.tfrecords and test.tfrecords (+ validation.tfrecords into
//     `validation`), each of any compression;
//   - a pickle holding all splits: Keras ((x_train, y_train), (x_test,
//     y_test)), deeplearning.net (train, valid, test) (valid goes into
//     `validation`), or a dict with x_train, y_train, x_test, y_test;
//   - a training-split file (TFRecord or IDX images) whose test split lies
//     beside it: "train" -> "test" in a TFRecord name, "train-" -> "t10k-" in
//     an IDX name.
inline Mnist load_mnist_from(const std::string& path) {
    namespace fs = std::filesystem;
    namespace src = detail::sources;
    src::require_file(path);
    Mnist m;
    m.dir = path;
    if (io::fs::is_directory(path)) {
        if (detail::mnist_missing_files(path).empty()) {
            m.train = detail::load_mnist_split(path, "train");
            m.test = detail::load_mnist_split(path, "t10k");
            return m;
        }
        const fs::path dir(path);
        if (src::is_file(dir / "train.tfrecords") && src::is_file(dir / "test.tfrecords")) {
            m.train = load_mnist_split_from((dir / "train.tfrecords").string());
            m.test = load_mnist_split_from((dir / "test.tfrecords").string());
            if (src::is_file(dir / "validation.tfrecords"))
                m.validation = load_mnist_split_from((dir / "validation.tfrecords").string());
            return m;
        }
        std::string missing;
        for (const auto& f : detail::mnist_missing_files(path)) missing += (missing.empty() ? "" : ", ") + f + "[.gz]";
        CUMULUS_FAIL(path, ": expected a directory holding the four MNIST IDX files (train-images-idx3-ubyte, ",
                     "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each raw or .gz) ",
                     "or train.tfrecords and test.tfrecords; it lacks ", missing, " and ",
                     src::is_file(dir / "train.tfrecords") ? "test.tfrecords" : "train.tfrecords");
    }
    const FileFormat fmt = detect_format(path);
    if (fmt == FileFormat::pickle) {
        const pickle::Value v = src::load_pickle(path);
        const pickle::ValueRef root = v.ref(path);
        if (src::is_seq(root, 2) && src::is_xy(root.at(0)) && src::is_xy(root.at(1))) {
            m.train = src::split_from_pickle(root.at(0).at(0), root.at(0).at(1));
            m.test = src::split_from_pickle(root.at(1).at(0), root.at(1).at(1));
            return m;
        }
        if (src::is_seq(root, 3) && src::is_xy(root.at(0)) && src::is_xy(root.at(1)) && src::is_xy(root.at(2))) {
            m.train = src::split_from_pickle(root.at(0).at(0), root.at(0).at(1));
            m.validation = src::split_from_pickle(root.at(1).at(0), root.at(1).at(1));
            m.test = src::split_from_pickle(root.at(2).at(0), root.at(2).at(1));
            return m;
        }
        if (root.type() == pickle::Value::Type::dict && root.contains("x_train") && root.contains("y_train") &&
            root.contains("x_test") && root.contains("y_test")) {
            m.train = src::split_from_pickle(root.at("x_train"), root.at("y_train"));
            m.test = src::split_from_pickle(root.at("x_test"), root.at("y_test"));
            return m;
        }
        CUMULUS_FAIL(path, ": expected a pickle of MNIST laid out as ", src::kPickleLayouts, ", found ", v.repr(160),
                     src::is_xy(root) ? " (one split: pass it with a separate test file)" : "");
    }
    if (fmt == FileFormat::tfrecord || fmt == FileFormat::idx) {
        const fs::path p(path);
        std::string name = p.filename().string();
        const std::string from = fmt == FileFormat::idx ? "train-" : "train";
        const std::string to = fmt == FileFormat::idx ? "t10k-" : "test";
        const auto i = name.rfind(from);
        std::string test_path;
        if (i != std::string::npos) {
            test_path = (p.parent_path() / name.replace(i, from.size(), to)).string();
            // The test split may be gzipped when the training split is not, or the other way round.
            const std::string other = test_path.ends_with(".gz") ? test_path.substr(0, test_path.size() - 3)
                                                                 : test_path + ".gz";
            if (!src::is_file(test_path) && src::is_file(other)) test_path = other;
        }
        if (test_path.empty() || !src::is_file(test_path))
            CUMULUS_FAIL(path, ": ", fmt == FileFormat::idx ? "an" : "a", " ", file_format_name(fmt), " file holds one split, and no test split was found ",
                         "beside it", test_path.empty() ? std::string() : " (looked for " + test_path + ")",
                         "; pass the test split separately (load_mnist_split_from, --eval-file)");
        m.train = load_mnist_split_from(path);
        m.test = load_mnist_split_from(test_path);
        return m;
    }
    load_mnist_split_from(path);  // throws: says what the content is not
    CUMULUS_FAIL(path, ": not an MNIST source");
}

}  // namespace cumulus::data
