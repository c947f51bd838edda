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
#include "step_trainer.hpp"

using namespace cumulus;

namespace {

struct Options {
    std::string train_files, eval_files, device = "auto";
    std::int64_t train_steps = 10000, eval_steps = 0, batch_size = 128, eval_batch_size = 500, eval_every = 1000;
    float learning_rate = 0.001f;
    std::uint64_t seed = 0;
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
    app.add_option("--train-steps", o.train_steps, "Number of training steps (mini-batches)")
        ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 40))->capture_default_str();
    app.add_option("--eval-steps", o.eval_steps, "Batches per evaluation; 0 evaluates the whole eval set")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    app.add_option("--eval-every", o.eval_every, "Evaluate (and save) every this many steps; 0: only at the end")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    app.add_option("--batch-size", o.batch_size, "Training mini-batch size")->check(CLI::Range(1, 1 << 20))
        ->capture_default_str();
    app.add_option("--eval-batch-size", o.eval_batch_size, "Evaluation batch size")->check(CLI::Range(1, 1 << 20))
        ->capture_default_str();
    app.add_option("--learning-rate", o.learning_rate, "Adam learning rate")->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--seed", o.seed, "Seed for weights, shuffling and dropout")->capture_default_str();
    app.add_option("--device", o.device, "cpu, cuda or auto (the GPU when there is one)")
        ->check(CLI::IsMember({"cpu", "cuda", "auto"}))->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    try {
        train::resolve_task(task);
        const examples::LogLevel level = train::parse_log_level(task.verbosity);
        const bool info = level <= examples::LogLevel::Info;
        const Device device = examples::select_device(o.device);
        const data::Mnist m = load_data(o);
        const Shape image{28, 28, 1};
        auto train = data::Dataset::from_uint8(m.train.images, m.train.labels, m.train.scale).reshape_examples(image);
        auto eval = data::Dataset::from_uint8(m.test.images, m.test.labels, m.test.scale).reshape_examples(image);
        nn::Sequential<float> model = make_model(o.seed);
        model.to(device);
        if (info) {
            std::cout << train.size() << " train samples\n" << eval.size() << " eval samples\n";
            std::cout << "Data: " << m.dir << "\nDevice: " << device.str() << "\n" << model.summary() << std::flush;
        }

        optim::Adam<float> optimizer(o.learning_rate);
        examples::StepOptions so;
        so.train_steps = o.train_steps;
        so.batch_size = o.batch_size;
        so.eval_batch_size = o.eval_batch_size;
        so.eval_steps = o.eval_steps;
        so.eval_every = o.eval_every;
        so.seed = o.seed;
        so.level = level;
        examples::run_step_task(task, model, optimizer, train, eval, so);
    } catch (const std::exception& e) {
        std::cerr << "fashion_mnist_cnn: error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
