// A Fashion-MNIST CNN in the style of the cloud training templates, in cumulus:
//
//   conv 3x3x64 same + ReLU -> max-pool 2x2 -> dropout 0.3
//   conv 3x3x32 same + ReLU -> max-pool 2x2 -> dropout 0.3
//   flatten -> dense 256 ReLU -> dropout 0.5 -> dense 10 (logits)
//
// 423,338 parameters; softmax cross-entropy, Adam (lr 0.001), batch 128,
// trained by steps with an evaluation every --eval-every steps and at the
// end. With --job-dir (local or gs://) it is a trainer task (docs/cloud.md):
// a checkpoint after each evaluation and every --checkpoint-every-* (a
// restarted job resumes from the latest), TensorBoard logs, the hypertune
// report and the export.
#include <exception>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include <cumulus/data/dataset.hpp>
#include <cumulus/data/mnist.hpp>
#include <cumulus/nn/conv2d.hpp>
#include <cumulus/nn/dense.hpp>
#include <cumulus/nn/dropout.hpp>
#include <cumulus/nn/flatten.hpp>
#include <cumulus/nn/pool.hpp>
#include <cumulus/nn/sequential.hpp>
#include <cumulus/optim/adam.hpp>
#include <cumulus/train/task.hpp>
#include <cumulus/train/task_flags.hpp>
#include "data_sources.hpp"
#include "device_select.hpp"
#include "step_flags.hpp"
#include "step_trainer.hpp"

using namespace cumulus;

namespace {

struct Options {
    std::string train_files, eval_files;
    examples::StepFlags flags;  // --train-steps (10000), batch 128, eval every 1000, Adam 0.001, ...

    Options() {
        flags.steps.train_steps = 10000;
        flags.steps.batch_size = 128;
        flags.steps.eval_batch_size = 500;
    }
};

// Both splits: --train-files and --eval-files each one split (IDX images,
// TFRecord, or an (x, y) pickle; by content); --train-files alone a source of
// both (a pickle of both splits, or a training file with its test split
// beside it); neither: Fashion-MNIST from the usual places.
data::Mnist load_data(const Options& o) {
    if (!o.train_files.empty() && !o.eval_files.empty()) {
        data::Mnist m;
        m.train = examples::load_mnist_split_from(o.train_files);
        m.test = examples::load_mnist_split_from(o.eval_files);
        m.dir = o.train_files + " + " + o.eval_files;
        return m;
    }
    if (!o.eval_files.empty()) CUMULUS_FAIL("--eval-files needs --train-files");
    if (!o.train_files.empty()) return examples::load_mnist_from(o.train_files);
    return examples::load_mnist(data::MnistKind::fashion);
}

nn::Sequential<float> make_model(std::uint64_t seed) {
    nn::Sequential<float> model(Shape{28, 28, 1}, seed);
    model.add(nn::Conv2D<float>(64, 3, 1, nn::Padding::Same, nn::Activation::ReLU));
    model.add(nn::MaxPool2D<float>(2));
    model.add(nn::Dropout<float>(0.3f));
    model.add(nn::Conv2D<float>(32, 3, 1, nn::Padding::Same, nn::Activation::ReLU));
    model.add(nn::MaxPool2D<float>(2));
    model.add(nn::Dropout<float>(0.3f));
    model.add(nn::Flatten<float>());
    model.add(nn::Dense<float>(256, nn::Activation::ReLU));
    model.add(nn::Dropout<float>(0.5f));
    model.add(nn::Dense<float>(10));
    return model;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    CLI::App app{"Train a Fashion-MNIST CNN (conv 3x3x64 / pool / conv 3x3x32 / pool, dense 256, dropout) with Adam,\n"
                 "by steps. Data: --train-files / --eval-files, else Fashion-MNIST from ./data/fashion-mnist,\n"
                 "/usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist), ../shared/data.",
                 "fashion_mnist_cnn"};
    app.add_option("--train-files", o.train_files,
                   "Training data (local or gs://; format by content): an IDX images file, a TFRecord file of\n"
                   "Examples (image_raw, label) or an (x, y) pickle; alone, also a pickle of both splits or\n"
                   "a training file whose test split lies beside it");
    app.add_option("--eval-files", o.eval_files, "Evaluation data, in any of the --train-files forms (one split)");
    train::TaskConfig task;  // --job-dir, --verbosity, --hypertune-metric-tag, checkpoint flags
    train::add_task_flags(app, task);
    examples::add_step_flags(app, o.flags, '-', "--batch-size", "eval set");
    CLI11_PARSE(app, argc, argv);

    try {
        train::resolve_task(task);
        const examples::LogLevel level = train::parse_log_level(task.verbosity);
        const bool info = level <= examples::LogLevel::Info;
        const Device device = examples::select_device(o.flags.device);
        const data::Mnist m = load_data(o);
        const Shape image{28, 28, 1};
        auto train = data::Dataset::from_uint8(m.train.images, m.train.labels, m.train.scale).reshape_examples(image);
        auto eval = data::Dataset::from_uint8(m.test.images, m.test.labels, m.test.scale).reshape_examples(image);
        nn::Sequential<float> model = make_model(o.flags.steps.seed);
        model.to(device);
        if (info) {
            std::cout << train.size() << " train samples\n" << eval.size() << " eval samples\n";
            std::cout << "Data: " << m.dir << "\nDevice: " << device.str() << "\n" << model.summary() << std::flush;
        }

        optim::Adam<float> optimizer(o.flags.learning_rate);
        examples::StepOptions so = o.flags.steps;
        so.level = level;
        examples::run_step_task(task, model, optimizer, train, eval, so);
    } catch (const std::exception& e) {
        std::cerr << "fashion_mnist_cnn: error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
