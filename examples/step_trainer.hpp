// Training by steps, as the TensorFlow Estimator tutorials do: a fixed number
// of mini-batch steps (the data reshuffled at every pass, the incomplete tail
// batch dropped), a log line every `log_every` steps, an evaluation every
// `eval_every` steps and at the end. The log lines follow the Estimator's:
// "loss = ..., step = ... (... sec)" and "Saving dict for global step ...:
// accuracy = ..., global_step = ..., loss = ...".
//
// The position in training is a function of the optimizer's step count alone
// (pass = step / batches_per_pass, shuffled by (seed, pass); dropout keyed by
// step), so a model and optimizer restored from a checkpoint continue exactly
// where the interrupted run was. The callbacks (checkpoints, TensorBoard) get
// on_train_begin, on_batch_end after every step and on_train_end.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include <cumulus/core/random.hpp>
#include <cumulus/data/dataset.hpp>
#include <cumulus/nn/loss.hpp>
#include <cumulus/nn/sequential.hpp>
#include <cumulus/optim/optimizer.hpp>
#include <cumulus/train/callbacks.hpp>
#include <cumulus/train/fit.hpp>
#include <cumulus/train/task.hpp>
#include <cumulus/train/task_outputs.hpp>

namespace examples {

using cumulus::train::LogLevel;

struct StepOptions {
    std::int64_t train_steps = 1000;
    std::int64_t batch_size = 100;
    std::int64_t eval_batch_size = 100;
    std::int64_t eval_steps = 0;    // batches per evaluation; 0: the whole eval set
    std::int64_t eval_every = 1000;  // steps; 0: only at the end
    std::int64_t log_every = 100;    // steps (10 at DEBUG)
    std::uint64_t seed = 0;
    LogLevel level = LogLevel::Info;
    bool from_logits = true;
    // Called after each evaluation (e.g. to save a checkpoint), with the step and the result.
    std::function<void(std::int64_t, const cumulus::train::EvalResult&)> after_eval;
};

struct StepResult {
    cumulus::train::EvalResult eval;  // the last evaluation
    double train_seconds = 0;         // training steps only, evaluations excluded
    std::int64_t steps = 0;
};

// The first eval_steps * eval_batch_size examples (all when eval_steps is 0).
inline cumulus::data::Dataset eval_subset(const cumulus::data::Dataset& d, const StepOptions& o) {
    if (o.eval_steps <= 0) return d;
    return d.slice(0, std::min(d.size(), o.eval_steps * o.eval_batch_size));
}

// The position after `step` steps, as a checkpoint records it: the pass and
// the next batch of that pass.
inline std::pair<int, std::int64_t> position_after(std::int64_t step, std::int64_t examples, std::int64_t batch_size) {
    const std::int64_t per_pass = std::max<std::int64_t>(1, examples / batch_size);
    return {static_cast<int>(step / per_pass), step % per_pass};
}

// The evaluation hook of a trainer task: each evaluation goes to TensorBoard,
// and a checkpoint of that step is written (the Estimator saves one before
// it evaluates), so every evaluated model can be resumed from.
template <typename T>
std::function<void(std::int64_t, const cumulus::train::EvalResult&)> task_eval_hook(
    cumulus::train::TaskOutputs<T>& outputs, cumulus::nn::Sequential<T>& model,
    cumulus::optim::Optimizer<T>& optimizer, std::int64_t examples, std::int64_t batch_size) {
    return [&outputs, &model, &optimizer, examples, batch_size](std::int64_t step,
                                                                const cumulus::train::EvalResult& r) {
        outputs.add_eval(r, step);
        if (auto* ckpt = outputs.checkpoints()) {
            const auto [pass, batch] = position_after(step, examples, batch_size);
            ckpt->save(model, optimizer, pass, batch);
        }
    };
}

template <typename T>
StepResult train_by_steps(cumulus::nn::Sequential<T>& model, cumulus::optim::Optimizer<T>& optimizer,
                          const cumulus::data::Dataset& train_set, const cumulus::data::Dataset& eval_set,
                          const StepOptions& o, const std::vector<cumulus::train::Callback<T>*>& callbacks = {}) {
    using namespace cumulus;
    CUMULUS_CHECK(o.batch_size > 0 && o.eval_batch_size > 0, "batch sizes must be positive");
    CUMULUS_CHECK(o.train_steps >= 0, "train steps must be non-negative");
    const nn::SoftmaxCrossEntropy loss{o.from_logits};
    loss.check(model);
    const data::Dataset d = train_set.to(model.device());
    const data::Dataset ev = eval_subset(eval_set, o).to(model.device());
    const std::int64_t n = d.size();
    CUMULUS_CHECK(n > 0, "the training set is empty");
    const std::int64_t log_every = o.level == LogLevel::Debug ? std::min<std::int64_t>(o.log_every, 10) : o.log_every;
    auto params = model.parameters();

    nn::Context ctx;
    ctx.training = true;
    ctx.seed = o.seed;
    ctx.defer_softmax = model.ends_with_softmax();

    Shape xs;
    xs.push_back(o.batch_size);
    for (auto v : d.example_shape()) xs.push_back(v);
    Tensor<T> x = Tensor<T>::empty(xs, d.device());
    Tensor<std::int32_t> y = Tensor<std::int32_t>::empty(Shape{o.batch_size}, d.device());
    Tensor<T> dlogits;

    StepResult result;
    std::vector<std::int64_t> order;
    // Where a restored optimizer's step count puts us: a pass is n / batch
    // full batches (one partial batch when the set is smaller than a batch).
    const std::int64_t first_step = optimizer.iterations() + 1;
    const auto [pass, next_batch] = position_after(first_step - 1, n, o.batch_size);
    std::int64_t epoch = pass;
    std::int64_t pos = next_batch * o.batch_size;
    if (pos > 0) order = train::detail::epoch_order(n, true, o.seed, static_cast<int>(epoch));
    else pos = n, --epoch;  // the loop starts a new pass
    double loss_sum = 0, seconds = 0;
    std::int64_t correct = 0, seen = 0;
    auto t_log = std::chrono::steady_clock::now();

    auto evaluate = [&](std::int64_t step) {
        const auto t0 = std::chrono::steady_clock::now();
        result.eval = train::evaluate(model, ev, o.eval_batch_size, loss);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (o.level <= LogLevel::Info) {
            std::printf("Saving dict for global step %lld: accuracy = %.4f, global_step = %lld, loss = %.5f "
                        "(%lld examples, %.1f sec)\n",
                        static_cast<long long>(step), result.eval.accuracy, static_cast<long long>(step),
                        result.eval.loss, static_cast<long long>(result.eval.samples), s);
            std::fflush(stdout);
        }
        if (o.after_eval) o.after_eval(step, result.eval);
    };

    for (auto* cb : callbacks) cb->on_train_begin(model, optimizer);
    if (first_step > 1 && o.level <= LogLevel::Info)
        std::printf("Resuming at step %lld of %lld\n", static_cast<long long>(first_step),
                    static_cast<long long>(o.train_steps));
    for (std::int64_t step = first_step; step <= o.train_steps; ++step) {
        const auto t0 = std::chrono::steady_clock::now();
        if (pos + o.batch_size > n) {  // a new pass: reshuffle, dropping the incomplete tail batch
            ++epoch;
            order = train::detail::epoch_order(n, true, o.seed, static_cast<int>(epoch));
            pos = 0;
        }
        const std::int64_t count = std::min(o.batch_size, n - pos);
        const std::int64_t batch_index = pos / o.batch_size;
        Tensor<T> bx = count == o.batch_size ? x : x.slice(0, count);
        Tensor<std::int32_t> by = count == o.batch_size ? y : y.slice(0, count);
        d.gather(order.data() + pos, count, bx, by);
        pos += count;
        ctx.step = static_cast<std::uint64_t>(optimizer.iterations());
        Tensor<T> logits = model.forward(bx, ctx);
        if (!dlogits.defined() || !(dlogits.shape() == logits.shape()))
            dlogits = Tensor<T>::empty(logits.shape(), logits.device());
        auto r = loss(logits, by, &dlogits, count);
        model.backward(dlogits, ctx);
        optimizer.step(params);
        seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        loss_sum += r.loss_sum;
        correct += r.correct;
        seen += count;
        if (!callbacks.empty()) {
            train::BatchLogs logs;
            logs.epoch = static_cast<int>(epoch);
            logs.batch = batch_index;
            logs.step = step;
            logs.size = count;
            logs.loss = r.loss_sum / double(count);
            logs.accuracy = double(r.correct) / double(count);
            for (auto* cb : callbacks) cb->on_batch_end(logs);
        }
        if (o.level <= LogLevel::Info && log_every > 0 && (step % log_every == 0 || step == 1)) {
            const auto now = std::chrono::steady_clock::now();
            std::printf("loss = %.5f, accuracy = %.4f, step = %lld (%.3f sec)\n", loss_sum / double(seen),
                        double(correct) / double(seen), static_cast<long long>(step),
                        std::chrono::duration<double>(now - t_log).count());
            std::fflush(stdout);
            t_log = now;
            loss_sum = 0;
            correct = seen = 0;
        }
        if (o.eval_every > 0 && step % o.eval_every == 0 && step != o.train_steps) {
            evaluate(step);
            t_log = std::chrono::steady_clock::now();
        }
    }
    evaluate(optimizer.iterations());  // train_steps, or more for a job restarted past its end
    for (auto* cb : callbacks) cb->on_train_end(train::History{});
    result.train_seconds = seconds;
    result.steps = std::max<std::int64_t>(0, o.train_steps - first_step + 1);
    return result;
}

// The rest of a step-trained trainer task, as both CNN trainers run it: the
// job directory's outputs (checkpoints, TensorBoard, hypertune, export; see
// TaskOutputs), training with a checkpoint at every evaluation, the closing
// lines (at WARN and below) and the export.
template <typename T>
StepResult run_step_task(const cumulus::train::TaskConfig& task, cumulus::nn::Sequential<T>& model,
                         cumulus::optim::Optimizer<T>& optimizer, const cumulus::data::Dataset& train_set,
                         const cumulus::data::Dataset& eval_set, StepOptions o) {
    cumulus::train::TaskOutputs<T> outputs(task, model, optimizer, o.seed);
    o.after_eval = task_eval_hook(outputs, model, optimizer, train_set.size(), o.batch_size);
    StepResult r = train_by_steps(model, optimizer, train_set, eval_set, o, outputs.callbacks());
    const bool warn = o.level <= LogLevel::Warn;
    if (warn) {
        if (r.steps > 0)
            std::printf("Trained %lld steps in %.1f s (%.2f steps/s, %.0f examples/s)\n",
                        static_cast<long long>(r.steps), r.train_seconds, double(r.steps) / r.train_seconds,
                        double(r.steps * o.batch_size) / r.train_seconds);
        std::printf("Test loss: %.4f\nTest accuracy: %.4f\n", r.eval.loss, r.eval.accuracy);
        std::fflush(stdout);
    }
    const std::string exported = outputs.finish(model, r.eval.accuracy, optimizer.iterations());
    if (!exported.empty() && warn) std::cout << "Model exported to " << exported << "\n";
    return r;
}

}  // namespace examples
