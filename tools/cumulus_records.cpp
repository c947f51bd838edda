// cumulus-records: the tutorials' create_records.py. Reads MNIST (IDX
// directory, pickle, or anything data::load_mnist_from takes) and writes
// <directory>/{train,validation,test}.tfrecords of tf.train.Examples with the
// features height 28, width 28, depth 1, label (int64) and image_raw (the 784
// pixel bytes, row-major). As read_data_sets(validation_size=N) does, the
// validation split is the first N training examples and train the rest.
#include <cstdint>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include <cumulus/core/error.hpp>
#include <cumulus/data/example.hpp>
#include <cumulus/data/mnist.hpp>
#include <cumulus/data/mnist_sources.hpp>
#include <cumulus/data/tfrecord.hpp>
#include <cumulus/io/fs.hpp>
#if CUMULUS_WITH_GCS
#include <cumulus/io/gcs.hpp>  // gs:// sources and --directory
#endif

using namespace cumulus;

namespace {

// Writes examples [begin, end) of `split` to `path`.
void write_split(const data::MnistSplit& split, std::int64_t begin, std::int64_t end, const std::string& path,
                 data::Compression compression) {
    std::cout << "Writing " << path << " (" << (end - begin) << " records)" << std::endl;
    data::TFRecordWriter writer(path, compression);
    const std::uint8_t* images = split.images.data();
    const std::uint8_t* labels = split.labels.data();
    data::Example ex;
    ex.set("height", data::Feature::of_ints({28}));
    ex.set("width", data::Feature::of_ints({28}));
    ex.set("depth", data::Feature::of_ints({1}));
    ex.set("label", data::Feature::of_ints({0}));
    ex.set("image_raw", data::Feature::of_bytes({std::string(784, '\0')}));
    data::Feature& label = *ex.find("label");
    std::string& image = ex.find("image_raw")->bytes[0];
    for (std::int64_t i = begin; i < end; ++i) {
        label.ints[0] = labels[i];
        image.assign(reinterpret_cast<const char*>(images + i * 784), 784);
        writer.write(data::serialize_example(ex));
    }
    writer.close();
}

}  // namespace

int main(int argc, char** argv) {
    std::string source, directory = "/tmp/data", compression = "none";
    std::int64_t validation_size = 5000;
    CLI::App app{"Convert MNIST to the tutorials' TFRecords (what create_records.py does): writes\n"
                 "DIRECTORY/train.tfrecords, validation.tfrecords (the first --validation-size training\n"
                 "examples; none when 0) and test.tfrecords, each Example holding height 28, width 28,\n"
                 "depth 1, label (int64) and image_raw (784 pixel bytes).\n"
                 "  cumulus-records ../shared/data/mnist --directory /tmp/data\n"
                 "  cumulus-records mnist.pkl.gz --validation-size 0 --compression gzip",
                 "cumulus-records"};
    app.add_option("source", source,
                   "MNIST to convert: a directory of the four IDX files (raw or .gz), a pickle with both\n"
                   "splits (Keras or deeplearning.net layout), or a TFRecords directory; chosen by content.\n"
                   "Default: the first of $CUMULUS_DATA_DIR/mnist, ./data/mnist, ../shared/data/mnist");
    app.add_option("--directory", directory, "Directory for the .tfrecords files (local, created if missing, or gs://)")
        ->capture_default_str();
    auto* vs = app.add_option("--validation-size", validation_size,
                              "Training examples (from the start) moved to validation.tfrecords; 0 writes "
                              "train and test only")
                   ->check(CLI::NonNegativeNumber)
                   ->capture_default_str();
    app.add_option("--compression", compression, "none, gzip or zlib (as tf.io.TFRecordOptions)")
        ->check(CLI::IsMember({"none", "gzip", "zlib"}))
        ->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    try {
        const data::Compression c = compression == "gzip"   ? data::Compression::Gzip
                                    : compression == "zlib" ? data::Compression::Zlib
                                                            : data::Compression::None;
        const data::Mnist m = source.empty() ? data::load_mnist(data::MnistKind::mnist) : data::load_mnist_from(source);
        io::fs::make_dirs(directory);
        const auto out = [&](const char* name) { return io::fs::join(directory, name); };
        const std::int64_t n = m.train.labels.numel();
        // A reader of the directory would otherwise take an earlier run's split for this one's.
        const auto remove_stale_validation = [&] {
            if (!io::fs::exists(out("validation.tfrecords"))) return;
            io::fs::remove(out("validation.tfrecords"));
            std::cout << "Removed " << out("validation.tfrecords") << " (from an earlier run)" << std::endl;
        };
        if (m.validation.labels.defined()) {
            // The source keeps its own held-out split (deeplearning.net's valid,
            // validation.tfrecords): it is the validation split, unless
            // --validation-size 0 asks for train and test only.
            write_split(m.train, 0, n, out("train.tfrecords"), c);
            if (vs->count() > 0 && validation_size == 0) {
                remove_stale_validation();
            } else {
                if (vs->count() > 0)
                    std::cerr << "cumulus-records: note: " << m.dir << " has its own validation split ("
                              << m.validation.labels.numel() << " examples), written as validation.tfrecords; "
                              << "--validation-size " << validation_size << " is ignored\n";
                write_split(m.validation, 0, m.validation.labels.numel(), out("validation.tfrecords"), c);
            }
        } else {
            if (validation_size > n)
                CUMULUS_FAIL("--validation-size ", validation_size, " exceeds the ", n, " training examples of ",
                             m.dir);
            write_split(m.train, validation_size, n, out("train.tfrecords"), c);
            if (validation_size > 0) write_split(m.train, 0, validation_size, out("validation.tfrecords"), c);
            else remove_stale_validation();
        }
        write_split(m.test, 0, m.test.labels.numel(), out("test.tfrecords"), c);
    } catch (const std::exception& e) {
        std::cerr << "cumulus-records: error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
