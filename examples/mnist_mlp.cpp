// The Keras mnist_mlp example, in cumulus: 784 -> Dense 512 ReLU -> Dropout
// -> Dense 512 ReLU -> Dropout -> Dense 10 softmax, RMSprop, batch 128,
// 20 epochs, categorical cross-entropy on pixels / 255.
#include <cstdio>
#include <exception>
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
#include <cumulus/train/task.hpp>
#include <cumulus/train/task_flags.hpp>
#include <cumulus/train/task_outputs.hpp>
#include "data_sources.hpp"
#include "device_select.hpp"

using namespace cumulus;

namespace {

struct Options {
    std::string data_dir, train_file, eval_file, dataset = "mnist", device = "auto";
    int epochs = 20;
    std::int64_t batch_size = 128;
    float learning_rate = 0.001f, dropout_one = 0.2f, dropout_two = 0.2f;
    std::uint64_t seed = 0;
    int verbose = 1;
};

// The data, by content (see data/mnist_sources.hpp): --train-file alone is a
// pickle with both splits, or a one-split file whose test split lies beside
// it; with --eval-file, each names one split. --data-dir is an IDX or a
// TFRecords directory; without either flag the usual places are searched.
data::Mnist load_data(const Options& o, data::MnistKind kind) {
    if (!o.train_file.empty() && !o.eval_file.empty()) {
        data::Mnist m;
        m.train = examples::load_mnist_split_from(o.train_file);
        m.test = examples::load_mnist_split_from(o.eval_file);
        m.dir = o.train_file + " + " + o.eval_file;
        return m;
    }
    if (!o.eval_file.empty()) CUMULUS_FAIL("--eval-file needs --train-file");
    if (!o.train_file.empty()) return examples::load_mnist_from(o.train_file);
    if (!o.data_dir.empty() && examples::lacks_idx_files(o.data_dir))
        return examples::load_mnist_from(o.data_dir);  // not IDX: TFRecords, or a message naming both layouts
    return examples::load_mnist(kind, o.data_dir);
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    CLI::App app{"Train the Keras mnist_mlp model (784-512-512-10, dropout, RMSprop) on MNIST or Fashion-MNIST.\n"
                 "Data: --train-file [--eval-file] (pickle, TFRecord or IDX, chosen by content), else --data-dir\n"
                 "(IDX or TFRecords), else ./data/mnist (./data/fashion-mnist), ../shared/data/mnist,\n"
                 "/usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist).",
                 "mnist_mlp"};
    app.add_option("--data-dir", o.data_dir,
                   "Directory holding the four IDX files (raw or .gz), or train.tfrecords and test.tfrecords");
    app.add_option("--train-file", o.train_file,
                   "Training data, format chosen by content: a pickle with both splits (Keras\n"
                   "((x_train, y_train), (x_test, y_test)) or deeplearning.net (train, valid, test),\n"
                   "plain or gzipped), a TFRecord file of Examples (image_raw, label), or an IDX\n"
                   "images file (labels beside it). A one-split file needs --eval-file unless its\n"
                   "test split lies beside it (train -> test / train- -> t10k- in the name)");
    app.add_option("--eval-file", o.eval_file, "Test split (TFRecord, IDX images or (x, y) pickle) for --train-file");
    app.add_option("--dataset", o.dataset, "mnist or fashion")->check(CLI::IsMember({"mnist", "fashion"}))
        ->capture_default_str();
    train::TaskConfig task;  // --job-dir, --verbosity, --hypertune-metric-tag, checkpoint flags
    train::add_task_flags(app, task);
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
        data::Mnist m = load_data(o, kind);
        const Shape flat{784};
        auto train = data::Dataset::from_uint8(m.train.images, m.train.labels, m.train.scale).reshape_examples(flat);
        auto test = data::Dataset::from_uint8(m.test.images, m.test.labels, m.test.scale).reshape_examples(flat);
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
        // Trainer-task outputs (docs/cloud.md): checkpoints and resume, TensorBoard
        // logs, the hypertune report and the export. Only the chief writes them.
        train::resolve_task(task);
        train::TaskOutputs<float> outputs(task, model, optimizer, o.seed);
        outputs.apply(fo);
        train::fit(model, optimizer, train, fo);

        auto score = train::evaluate(model, test, o.batch_size);
        std::printf("Test loss: %.4f\nTest accuracy: %.4f\n", score.loss, score.accuracy);
        const std::string exported = outputs.finish(model, score.accuracy, optimizer.iterations());
        if (!exported.empty()) std::cout << "Model exported to " << exported << "\n";
    } catch (const std::exception& e) {
        std::cerr << "mnist_mlp: error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
