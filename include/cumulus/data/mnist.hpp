// MNIST and Fashion-MNIST: finding the four IDX files and loading them.
//
// Both data sets use the same file names and layout, so one loader serves
// both; MnistKind only changes where it looks and what it suggests when the
// files are missing.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <cumulus/core/error.hpp>
#include <cumulus/core/tensor.hpp>
#include <cumulus/data/idx.hpp>
#include <cumulus/io/fs.hpp>

namespace cumulus::data {

enum class MnistKind { mnist, fashion };

struct MnistSplit {
    Tensor<std::uint8_t> images;  // (N, 28, 28), 0 = background
    Tensor<std::uint8_t> labels;  // (N,), each 0..9
    // The factor that turns the pixel bytes into the source's floats: 1/255
    // for byte sources (IDX, TFRecord, Keras pickle), 1/256 for the
    // deeplearning.net pickle, whose floats are pixel/256. Pass it to
    // Dataset::from_uint8 to train on exactly the source's values.
    float scale = 1.0f / 255.0f;
};

struct Mnist {
    MnistSplit train, test;
    std::string dir;  // where the files were found
    // A held-out split when the source has one (deeplearning.net pickle's
    // `valid`, validation.tfrecords); undefined tensors otherwise. Not part of
    // train: as in the tutorials, train on `train` and evaluate on `test`.
    MnistSplit validation;
};

// The four files, without the optional ".gz".
inline const std::vector<std::string>& mnist_file_names() {
    static const std::vector<std::string> names = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                   "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    return names;
}

namespace detail {

// A file (not a directory) at a local path or a gs:// URL.
inline bool is_file(const std::string& p) {
    if (io::is_local_path(p)) {
        std::error_code ec;
        return std::filesystem::is_regular_file(io::local_path_of(p), ec);
    }
    return io::fs::exists(p) && !io::fs::stat(p).is_dir;
}

inline std::string mnist_kind_name(MnistKind kind) { return kind == MnistKind::mnist ? "MNIST" : "Fashion-MNIST"; }

// The names of the files missing from `dir` (each may be plain or .gz).
inline std::vector<std::string> mnist_missing_files(const std::string& dir) {
    std::vector<std::string> missing;
    for (const auto& f : mnist_file_names()) {
        const std::string p = io::fs::join(dir, f);
        if (!is_file(p) && !is_file(p + ".gz")) missing.push_back(f);
    }
    return missing;
}

inline std::string mnist_how_to_get(MnistKind kind) {
    if (kind == MnistKind::mnist)
        return "run tools/download-mnist (downloads and checks the four .gz files into ./data/mnist), or pass "
               "the directory that holds them";
    return "install the Debian package (apt-get install dataset-fashion-mnist; files go to "
           "/usr/share/datasets/fashion-mnist), or pass the directory that holds them";
}

}  // namespace detail

// The candidate directories, in search order (the flag is not included).
//   MNIST:         $CUMULUS_DATA_DIR/mnist, ./data/mnist, ../shared/data/mnist
//   Fashion-MNIST: $CUMULUS_DATA_DIR/fashion-mnist, ./data/fashion-mnist,
//                  /usr/share/datasets/fashion-mnist, ../shared/data/fashion-mnist
inline std::vector<std::string> mnist_search_path(MnistKind kind) {
    const std::string sub = kind == MnistKind::mnist ? "mnist" : "fashion-mnist";
    std::vector<std::string> dirs;
    if (const char* env = std::getenv("CUMULUS_DATA_DIR"); env != nullptr && *env != '\0')
        dirs.push_back((std::filesystem::path(env) / sub).string());
    dirs.push_back("./data/" + sub);
    if (kind == MnistKind::fashion) dirs.push_back("/usr/share/datasets/fashion-mnist");
    dirs.push_back("../shared/data/" + sub);
    return dirs;
}

// The directory holding the four files (each plain or .gz). A non-empty
// `data_dir_flag` is the only place tried, and an error if incomplete.
// Otherwise mnist_search_path(kind) is searched in order; when nothing
// qualifies, the error lists every place looked and how to get the data.
inline std::string find_mnist_dir(MnistKind kind, const std::string& data_dir_flag = "") {
    const std::string what = detail::mnist_kind_name(kind);
    if (!data_dir_flag.empty()) {
        std::vector<std::string> missing = detail::mnist_missing_files(data_dir_flag);
        if (missing.empty()) return data_dir_flag;
        std::string list;
        for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m + "[.gz]";
        CUMULUS_FAIL("the ", what, " directory given, '", data_dir_flag, "', lacks ", list, "; ",
                     detail::mnist_how_to_get(kind));
    }
    std::vector<std::string> dirs = mnist_search_path(kind);
    std::string looked;
    for (const auto& d : dirs) {
        std::vector<std::string> missing = detail::mnist_missing_files(d);
        if (missing.empty()) return d;
        looked += "\n  " + d + (missing.size() == mnist_file_names().size()
                                    ? std::string(" (no files)")
                                    : " (lacks " + missing.front() + "[.gz]" +
                                          (missing.size() > 1 ? " and others)" : ")"));
    }
    CUMULUS_FAIL(what, " not found: no directory holds the four files train-images-idx3-ubyte, "
                 "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each plain or .gz). "
                 "Looked in (relative to the current directory ",
                 std::filesystem::current_path().string(), "):", looked, "\nTo get it: ",
                 detail::mnist_how_to_get(kind));
}

// The path of one of the four files in `dir`: the plain one if present, else .gz.
inline std::string mnist_file(const std::string& dir, const std::string& stem) {
    const std::string p = io::fs::join(dir, stem);
    if (detail::is_file(p)) return p;
    return p + ".gz";
}

namespace detail {

inline MnistSplit load_mnist_split(const std::string& dir, const std::string& prefix) {
    const std::string images_path = mnist_file(dir, prefix + "-images-idx3-ubyte");
    const std::string labels_path = mnist_file(dir, prefix + "-labels-idx1-ubyte");
    MnistSplit s{load_idx_images(images_path), load_idx_labels(labels_path)};
    if (s.images.dim(1) != 28 || s.images.dim(2) != 28)
        CUMULUS_FAIL(images_path, ": expected 28x28 images, found shape ", s.images.shape().str());
    if (s.images.dim(0) != s.labels.dim(0))
        CUMULUS_FAIL(images_path, " holds ", s.images.dim(0), " images but ", labels_path, " holds ",
                     s.labels.dim(0), " labels; they must match");
    const std::uint8_t* l = s.labels.data();
    for (std::int64_t i = 0; i < s.labels.numel(); ++i)
        if (l[i] >= 10)
            CUMULUS_FAIL(labels_path, ": label ", int(l[i]), " at record ", i, " (decompressed byte offset ", 8 + i,
                         ") is out of range; labels must be 0..9");
    return s;
}

}  // namespace detail

// Finds (see find_mnist_dir) and loads both splits, checking that each
// split's image and label counts agree, images are 28x28 and labels are 0..9.
inline Mnist load_mnist(MnistKind kind, const std::string& data_dir_flag = "") {
    Mnist m;
    m.dir = find_mnist_dir(kind, data_dir_flag);
    m.train = detail::load_mnist_split(m.dir, "train");
    m.test = detail::load_mnist_split(m.dir, "t10k");
    return m;
}

}  // namespace cumulus::data
