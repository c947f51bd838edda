// The flags the step trainers (mnist_cnn, fashion_mnist_cnn) share, each
// spelled as its tutorial does: with '_' as TensorFlow's distributed-MNIST
// (--train_steps, --eval_batch_size) or with '-' as the cloud training
// templates (--train-steps, --eval-batch-size). Defaults are what the
// StepFlags hold when add_step_flags is called.
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

#include "step_trainer.hpp"

namespace examples {

struct StepFlags {
    StepOptions steps;  // train/eval steps, batch sizes, eval and log intervals, seed
    float learning_rate = 0.001f;
    std::string device = "auto";
};

// Adds --train{sep}steps, the training batch size as `batch_flag`,
// --eval{sep}batch{sep}size, --eval{sep}steps, --eval{sep}every,
// --log{sep}every, --learning{sep}rate, --seed and --device. `eval_set` names
// the evaluation data in the help ("test set", "eval set").
inline void add_step_flags(CLI::App& app, StepFlags& f, char sep, const std::string& batch_flag,
                           const std::string& eval_set) {
    const auto name = [sep](std::string s) {
        for (char& c : s)
            if (c == '_') c = sep;
        return "--" + s;
    };
    StepOptions& s = f.steps;
    app.add_option(name("train_steps"), s.train_steps, "Number of training steps (mini-batches)")
        ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 40))->capture_default_str();
    app.add_option(batch_flag, s.batch_size, "Training mini-batch size")
        ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 20))->capture_default_str();
    app.add_option(name("eval_batch_size"), s.eval_batch_size, "Evaluation batch size")
        ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 20))->capture_default_str();
    app.add_option(name("eval_steps"), s.eval_steps, "Batches per evaluation; 0 evaluates the whole " + eval_set)
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    app.add_option(name("eval_every"), s.eval_every, "Evaluate (and save) every this many steps; 0: only at the end")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    app.add_option(name("log_every"), s.log_every, "Print the training loss every this many steps")
        ->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option(name("learning_rate"), f.learning_rate, "Adam learning rate")->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--seed", s.seed, "Seed for weights, shuffling and dropout")->capture_default_str();
    app.add_option("--device", f.device, "cpu, cuda or auto (the GPU when there is one)")
        ->check(CLI::IsMember({"cpu", "cuda", "auto"}))->capture_default_str();
}

}  // namespace examples
