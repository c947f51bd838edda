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
#include "step_flags.hpp"
#include "step_trainer.hpp"

using namespace cumulus;

namespace {

struct Options {
    std::string data_dir, output_dir;
    examples::StepFlags flags;  // --train_steps (10000), batch 100, eval every 1000, Adam 0.001, ...

    Options() {
        flags.steps.train_steps = 10000;
        flags.steps.batch_size = 100;
        flags.steps.eval_batch_size = 100;
    }
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
    examples::add_step_flags(app, o.flags, '_', "--train_batch_size", "test set");
    CLI11_PARSE(app, argc, argv);

    try {
        if (!o.output_dir.empty()) {
            if (!task.job_dir.empty() && task.job_dir != o.output_dir)
                CUMULUS_FAIL("--output_dir ", o.output_dir, " and --job-dir ", task.job_dir,
                             " name different directories; give one of them");
            task.job_dir = o.output_dir;
        }
        train::resolve_task(task);
        const Device device = examples::select_device(o.flags.device);
        data::Mnist m = load_data(o.data_dir);
        const Shape image{28, 28, 1};
        auto train = data::Dataset::from_uint8(m.train.images, m.train.labels, m.train.scale).reshape_examples(image);
        auto test = data::Dataset::from_uint8(m.test.images, m.test.labels, m.test.scale).reshape_examples(image);
        std::cout << train.size() << " train samples\n" << test.size() << " test samples\n";
        std::cout << "Data: " << m.dir << "\nDevice: " << device.str() << "\n";

        nn::Sequential<float> model = make_model(o.flags.steps.seed);
        model.to(device);
        std::cout << model.summary() << std::flush;

        optim::Adam<float> optimizer(o.flags.learning_rate);
        examples::StepOptions so = o.flags.steps;
        so.level = train::parse_log_level(task.verbosity);
        examples::run_step_task(task, model, optimizer, train, test, so);
    } catch (const std::exception& e) {
        std::cerr << "mnist_cnn: error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
