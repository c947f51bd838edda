// The Keras mnist_mlp example, in cumulus: 784 -> Dense 512 ReLU -> Dropout
// -> Dense 512 ReLU -> Dropout -> Dense 10 softmax, RMSprop, batch 128,
// 20 epochs, categorical cross-entropy on pixels / 255.
#include <cstdio>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include <cumulus/data/dataset.hpp>
#include <cumulus/data/idx.hpp>
#include <cumulus/data/mnist.hpp>
#include <cumulus/io/checkpoint.hpp>
#include <cumulus/nn/dense.hpp>
#include <cumulus/nn/dropout.hpp>
#include <cumulus/nn/sequential.hpp>
#include <cumulus/optim/rmsprop.hpp>
#include <cumulus/train/fit.hpp>
#include "device_select.hpp"

using namespace cumulus;

namespace {

struct Options {
    std::string data_dir, train_file, dataset = "mnist", job_dir, device = "auto";
    int epochs = 20;
    std::int64_t batch_size = 128;
    float learning_rate = 0.001f, dropout_one = 0.2f, dropout_two = 0.2f;
    std::uint64_t seed = 0;
    int verbose = 1;
};

// --train-file names the training images (IDX); the labels and the test set
// are found beside it under the standard MNIST names.
data::Mnist load_from_train_file(const std::string& path) {
    auto swap = [](std::string s, const std::string& from, const std::string& to) {
        auto pos = s.rfind(from);
        CUMULUS_CHECK(pos != std::string::npos, "--train-file ", s, ": expected a name containing '", from,
                      "' (e.g. train-images-idx3-ubyte.gz) so the labels and test files can be found beside it");
        return s.replace(pos, from.size(), to);
    };
    data::Mnist m;
    const std::string labels = swap(path, "images-idx3", "labels-idx1");
    const std::string test_images = swap(path, "train-", "t10k-");
    const std::string test_labels = swap(labels, "train-", "t10k-");
    m.train.images = data::load_idx_images(path);
    m.train.labels = data::load_idx_labels(labels);
    m.test.images = data::load_idx_images(test_images);
    m.test.labels = data::load_idx_labels(test_labels);
    m.dir = path;
    return m;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    CLI::App app{"Train the Keras mnist_mlp model (784-512-512-10, dropout, RMSprop) on MNIST or Fashion-MNIST.\n"
                 "Data is looked for in --data-dir, then ./data/mnist (./data/fashion-mnist), ../shared/data/mnist,\n"
                 "/usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist).",
                 "mnist_mlp"};
    app.add_option("--data-dir", o.data_dir, "Directory holding the four IDX files (raw or .gz)");
    app.add_option("--train-file", o.train_file,
                   "Training images IDX file; labels and t10k files are taken from beside it");
    app.add_option("--dataset", o.dataset, "mnist or fashion")->check(CLI::IsMember({"mnist", "fashion"}))
        ->capture_default_str();
    app.add_option("--job-dir", o.job_dir, "Directory where the trained model is saved (weights + architecture)");
    app.add_option("--epochs", o.epochs, "Number of epochs")->check(CLI::Range(1, 100000))->capture_default_str();
    app.add_option("--batch-size", o.batch_size, "Mini-batch size")->check(CLI::Range(1, 1 << 20))
        ->capture_default_str();
    app.add_option("--learning-rate", o.learning_rate, "RMSprop learning rate")
        ->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--dropout-one", o.dropout_one, "Dropout rate after the first hidden layer")
        ->check(CLI::Range(0.0, 0.99))->capture_default_str();
    app.add_option("--dropout-two", o.dropout_two, "Dropout rate after the second hidden layer")
        ->check(CLI::Range(0.0, 0.99))->capture_default_str();
    app.add_option("--seed", o.seed, "Seed for weights, shuffling and dropout")->capture_default_str();
    app.add_option("--device", o.device, "cpu, cuda or auto (the GPU when there is one)")
        ->check(CLI::IsMember({"cpu", "cuda", "auto"}))->capture_default_str();
    app.add_option("--verbose", o.verbose, "0 silent, 1 progress bar, 2 one line per epoch")
        ->check(CLI::Range(0, 2))->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    try {
        const Device device = examples::select_device(o.device);
        const auto kind = o.dataset == "fashion" ? data::MnistKind::fashion : data::MnistKind::mnist;
        data::Mnist m = o.train_file.empty() ? data::load_mnist(kind, o.data_dir) : load_from_train_file(o.train_file);
        const Shape flat{784};
        auto train = data::Dataset::from_uint8(m.train.images, m.train.labels).reshape_examples(flat);
        auto test = data::Dataset::from_uint8(m.test.images, m.test.labels).reshape_examples(flat);
        std::cout << train.size() << " train samples\n" << test.size() << " test samples\n";
        std::cout << "Data: " << m.dir << "\nDevice: " << device.str() << "\n";

        nn::Sequential<float> model(flat, o.seed);
        model.add(nn::Dense<float>(512, nn::Activation::ReLU));
        model.add(nn::Dropout<float>(o.dropout_one));
        model.add(nn::Dense<float>(512, nn::Activation::ReLU));
        model.add(nn::Dropout<float>(o.dropout_two));
        model.add(nn::Dense<float>(10, nn::Activation::Softmax));
        model.to(device);
        std::cout << model.summary();

        optim::RMSprop<float> optimizer(o.learning_rate);
        train::FitOptions<float> fo;
        fo.epochs = o.epochs;
        fo.batch_size = o.batch_size;
        fo.seed = o.seed;
        fo.validation = &test;
        fo.verbose = static_cast<train::Verbosity>(o.verbose);
        train::fit(model, optimizer, train, fo);

        auto score = train::evaluate(model, test, o.batch_size);
        std::printf("Test loss: %.4f\nTest accuracy: %.4f\n", score.loss, score.accuracy);
        if (!o.job_dir.empty()) {
            io::save_model(model, o.job_dir);
            std::cout << "Model saved to " << o.job_dir << "\n";
        }
    } catch (const Error& e) {
        std::cerr << "mnist_mlp: error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
