// The TensorFlow distributed-MNIST tutorial model, in cumulus:
//   conv 5x5x32 same + ReLU -> max-pool 2x2 -> conv 5x5x64 same + ReLU ->
//   max-pool 2x2 -> flatten -> dense 1024 ReLU -> dropout 0.4 -> dense 10
// (logits), softmax cross-entropy, Adam lr 0.001, batch 100, trained by steps
// (default 10000) with an evaluation on the test set every --eval_every steps
// and at the end. With a job directory (--job-dir or --output_dir, local or
// gs://) it is a trainer task (docs/cloud.md): a checkpoint after each
// evaluation and every --checkpoint-every-* (a restarted job resumes from the
// latest), TensorBoard logs, the hypertune report and the export.
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
    std::string data_dir, output_dir, device = "auto";
    std::int64_t train_steps = 10000, train_batch_size = 100, eval_batch_size = 100, eval_steps = 0;
    std::int64_t eval_every = 1000, log_every = 100;
    float learning_rate = 0.001f;
    std::uint64_t seed = 0;
};

// MNIST from --data_dir (the four IDX files, train.tfrecords + test.tfrecords,
// or a pickle holding both splits; chosen by content), or from the standard places.
data::Mnist load_data(const std::string& data_dir) {
    if (!data_dir.empty()) return examples::load_mnist_from(data_dir);
    return examples::load_mnist(data::MnistKind::mnist);
}

nn::Sequential<float> make_model(std::uint64_t seed) {
    nn::Sequential<float> model(Shape{28, 28, 1}, seed);
    model.add(nn::Conv2D<float>(32, 5, 1, nn::Padding::Same, nn::Activation::ReLU));
    model.add(nn::MaxPool2D<float>(2, 2));
    model.add(nn::Conv2D<float>(64, 5, 1, nn::Padding::Same, nn::Activation::ReLU));
    model.add(nn::MaxPool2D<float>(2, 2));
    model.add(nn::Flatten<float>());
    model.add(nn::Dense<float>(1024, nn::Activation::ReLU));
    model.add(nn::Dropout<float>(0.4f));
    model.add(nn::Dense<float>(10));
    return model;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    CLI::App app{"Train the TensorFlow distributed-MNIST CNN (2 x conv 5x5 + max-pool, dense 1024, dropout 0.4)\n"
                 "on MNIST with Adam, by steps. Data: --data_dir, else ./data/mnist, ../shared/data/mnist.",
                 "mnist_cnn"};
    app.add_option("--data_dir", o.data_dir,
                   "MNIST (local or gs://): a directory with the four IDX files (raw or .gz) or with\n"
                   "train.tfrecords and test.tfrecords (cumulus-records), or a pickle of both splits");
    app.add_option("--output_dir", o.output_dir, "Output directory, as the tutorial's; the same as --job-dir");
    train::TaskConfig task;  // --job-dir, --verbosity, --hypertune-metric-tag, checkpoint flags
    train::add_task_flags(app, task);
    app.add_option("--train_steps", o.train_steps, "Number of training steps (mini-batches)")
        ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 40))->capture_default_str();
    app.add_option("--train_batch_size", o.train_batch_size, "Training mini-batch size")
        ->check(CLI::Range(1, 1 << 20))->capture_default_str();
    app.add_option("--eval_batch_size", o.eval_batch_size, "Evaluation batch size")
        ->check(CLI::Range(1, 1 << 20))->capture_default_str();
    app.add_option("--eval_steps", o.eval_steps, "Batches per evaluation; 0 evaluates the whole test set")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    app.add_option("--eval_every", o.eval_every, "Evaluate (and save) every this many steps; 0: only at the end")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    app.add_option("--log_every", o.log_every, "Print the training loss every this many steps")
        ->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--learning_rate", o.learning_rate, "Adam learning rate")->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--seed", o.seed, "Seed for weights, shuffling and dropout")->capture_default_str();
    app.add_option("--device", o.device, "cpu, cuda or auto (the GPU when there is one)")
        ->check(CLI::IsMember({"cpu", "cuda", "auto"}))->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    try {
        if (!o.output_dir.empty()) {
            if (!task.job_dir.empty() && task.job_dir != o.output_dir)
                CUMULUS_FAIL("--output_dir ", o.output_dir, " and --job-dir ", task.job_dir,
                             " name different directories; give one of them");
            task.job_dir = o.output_dir;
        }
        train::resolve_task(task);
        const Device device = examples::select_device(o.device);
        data::Mnist m = load_data(o.data_dir);
        const Shape image{28, 28, 1};
        auto train = data::Dataset::from_uint8(m.train.images, m.train.labels, m.train.scale).reshape_examples(image);
        auto test = data::Dataset::from_uint8(m.test.images, m.test.labels, m.test.scale).reshape_examples(image);
        std::cout << train.size() << " train samples\n" << test.size() << " test samples\n";
        std::cout << "Data: " << m.dir << "\nDevice: " << device.str() << "\n";

        nn::Sequential<float> model = make_model(o.seed);
        model.to(device);
        std::cout << model.summary() << std::flush;

        optim::Adam<float> optimizer(o.learning_rate);
        examples::StepOptions so;
        so.train_steps = o.train_steps;
        so.batch_size = o.train_batch_size;
        so.eval_batch_size = o.eval_batch_size;
        so.eval_steps = o.eval_steps;
        so.eval_every = o.eval_every;
        so.log_every = o.log_every;
        so.seed = o.seed;
        so.level = train::parse_log_level(task.verbosity);
        examples::run_step_task(task, model, optimizer, train, test, so);
    } catch (const std::exception& e) {
        std::cerr << "mnist_cnn: error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
