// fit / evaluate / predict: the training and inference loops, as Keras'
// model.fit, model.evaluate and model.predict.
#pragma once

#include <chrono>
#include <iostream>
#include <optional>
#include <vector>

#include <cumulus/core/random.hpp>
#include <cumulus/data/dataset.hpp>
#include <cumulus/nn/loss.hpp>
#include <cumulus/nn/sequential.hpp>
#include <cumulus/optim/optimizer.hpp>
#include <cumulus/ops/reduce.hpp>
#include <cumulus/train/callbacks.hpp>
#include <cumulus/train/progress.hpp>

namespace cumulus::train {

enum class Verbosity { Silent = 0, ProgressBar = 1, OneLinePerEpoch = 2 };

template <typename T>
struct FitOptions {
    int epochs = 1;
    std::int64_t batch_size = 32;
    bool shuffle = true;
    std::uint64_t seed = 0;  // shuffles and dropout masks
    // ProgressBar moves the bar on a terminal and prints one line per epoch otherwise.
    Verbosity verbose = Verbosity::ProgressBar;
    const data::Dataset* validation = nullptr;
    std::int64_t validation_batch_size = 0;  // 0: batch_size
    int initial_epoch = 0;                   // to resume: the first epoch to run (0-based)
    // To resume mid-epoch: the first batch of initial_epoch to run (0-based);
    // the batch count of an epoch means the start of the next one.
    std::int64_t initial_batch = 0;
    std::vector<Callback<T>*> callbacks;
    std::ostream* out = &std::cout;
    nn::SoftmaxCrossEntropy loss{};
    // On a CUDA device: capture the step of a full batch into a CUDA graph
    // once and replay it (the results are the same either way).
    bool cuda_graph = true;
};

struct EvalResult {
    double loss = 0.0;
    double accuracy = 0.0;
    std::int64_t samples = 0;
};

namespace detail {

// The shuffle of epoch `epoch`: a stream of its own, so a resumed run
// shuffles as an uninterrupted one.
inline std::vector<std::int64_t> epoch_order(std::int64_t n, bool shuffle, std::uint64_t seed, int epoch) {
    if (!shuffle) {
        std::vector<std::int64_t> v(static_cast<std::size_t>(n));
        for (std::int64_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
        return v;
    }
    Philox rng(seed, (std::uint64_t{2} << 32) | std::uint64_t(epoch));
    return random_permutation(n, rng);
}

inline void check_fits(const Shape& model_input, const data::Dataset& d, const char* what) {
    CUMULUS_CHECK(d.example_shape() == model_input, what, ": examples of shape ", d.example_shape().str(),
                  " do not match the model's input shape ", model_input.str(),
                  " (reshape the dataset with reshape_examples, as x.reshape in Keras)");
}

// Batch buffers reused across steps.
template <typename T>
struct Batch {
    Tensor<T> x;
    Tensor<std::int32_t> y;
    Tensor<T> dlogits;

    void prepare(const Shape& example, std::int64_t n, Device d) {
        Shape xs;
        xs.push_back(n);
        for (auto v : example) xs.push_back(v);
        if (!x.defined() || !(x.shape() == xs) || !(x.device() == d)) {
            x = Tensor<T>::empty(xs, d);
            y = Tensor<std::int32_t>::empty(Shape{n}, d);
        }
    }
};

#if CUMULUS_WITH_CUDA && defined(__CUDACC__)
// The device loops (cumulus/cuda/fit.cuh, included at the end of this file).
template <typename T>
EvalResult evaluate_cuda(nn::Sequential<T>& model, const data::Dataset& dataset, std::int64_t batch_size,
                         const nn::SoftmaxCrossEntropy& loss);
template <typename T>
History fit_cuda(nn::Sequential<T>& model, optim::Optimizer<T>& optimizer, const data::Dataset& train,
                 const FitOptions<T>& opt);
#endif

}  // namespace detail

// Loss and accuracy of the model on `data`, in batches, without dropout.
template <typename T>
EvalResult evaluate(nn::Sequential<T>& model, const data::Dataset& dataset, std::int64_t batch_size = 32,
                    nn::SoftmaxCrossEntropy loss = {}) {
    CUMULUS_CHECK(batch_size > 0, "evaluate: batch_size must be positive, got ", batch_size);
    loss.check(model);
    detail::check_fits(model.input_shape(), dataset, "evaluate");
#if CUMULUS_WITH_CUDA && defined(__CUDACC__)
    if (model.device().is_cuda()) return detail::evaluate_cuda(model, dataset, batch_size, loss);
#endif
    const data::Dataset d = dataset.to(model.device());
    const std::int64_t n = d.size();
    const auto order = detail::epoch_order(n, false, 0, 0);
    nn::Context ctx;
    ctx.defer_softmax = model.ends_with_softmax();
    detail::Batch<T> b;
    double loss_sum = 0.0;
    std::int64_t correct = 0;
    for (std::int64_t start = 0; start < n; start += batch_size) {
        const std::int64_t count = std::min(batch_size, n - start);
        b.prepare(d.example_shape(), count, d.device());
        d.gather(order.data() + start, count, b.x, b.y);
        Tensor<T> logits = model.forward(b.x, ctx);
        auto r = loss(logits, b.y, nullptr, count);
        loss_sum += r.loss_sum;
        correct += r.correct;
    }
    EvalResult e;
    e.samples = n;
    if (n > 0) {
        e.loss = loss_sum / double(n);
        e.accuracy = double(correct) / double(n);
    }
    return e;
}

// The model's outputs (probabilities when it ends in a softmax), on the CPU.
template <typename T>
Tensor<T> predict(nn::Sequential<T>& model, const data::Dataset& dataset, std::int64_t batch_size = 32) {
    CUMULUS_CHECK(batch_size > 0, "predict: batch_size must be positive, got ", batch_size);
    detail::check_fits(model.input_shape(), dataset, "predict");
#if CUMULUS_WITH_CUDA && defined(__CUDACC__)
    // The kernels run on the current device's stream: make that the model's.
    std::optional<cuda::DeviceGuard> on_device;
    if (model.device().is_cuda()) on_device.emplace(model.device());
#endif
    const data::Dataset d = dataset.to(model.device());
    const std::int64_t n = d.size();
    const auto order = detail::epoch_order(n, false, 0, 0);
    Shape out_shape;
    out_shape.push_back(n);
    for (auto v : model.output_shape()) out_shape.push_back(v);
    Tensor<T> out = Tensor<T>::empty(out_shape);
    nn::Context ctx;
    detail::Batch<T> b;
    for (std::int64_t start = 0; start < n; start += batch_size) {
        const std::int64_t count = std::min(batch_size, n - start);
        b.prepare(d.example_shape(), count, d.device());
        d.gather(order.data() + start, count, b.x, b.y);
        Tensor<T> y = model.forward(b.x, ctx);
        out.slice(start, start + count).copy_from(y);
    }
    return out;
}

// The index of the most likely class of every example.
template <typename T>
Tensor<std::int32_t> predict_classes(nn::Sequential<T>& model, const data::Dataset& dataset,
                                     std::int64_t batch_size = 32) {
    Tensor<T> p = predict(model, dataset, batch_size);
    Tensor<T> p2 = p.reshape(Shape{p.dim(0), p.numel() / std::max<std::int64_t>(1, p.dim(0))});
    Tensor<std::int32_t> classes = Tensor<std::int32_t>::empty(Shape{p.dim(0)});
    if (p.dim(0) > 0) ops::argmax_rows(p2, classes);
    return classes;
}

namespace detail {

// The end of one epoch of fit, on either device: its logs (with the
// validation set evaluated), the progress bar's last line, the history and
// on_epoch_end. True when a callback asked to stop.
template <typename T>
bool end_epoch(nn::Sequential<T>& model, const data::Dataset& val, const FitOptions<T>& opt, int epoch,
               std::int64_t seen, double loss_sum, std::int64_t correct, std::chrono::steady_clock::time_point t0,
               ProgressBar& bar, History& history) {
    EpochLogs el;
    el.epoch = epoch;
    el.samples = seen;
    el.loss = seen ? loss_sum / double(seen) : 0.0;
    el.accuracy = seen ? double(correct) / double(seen) : 0.0;
    std::vector<std::pair<std::string, double>> values{{"loss", el.loss}, {"acc", el.accuracy}};
    if (opt.validation) {
        auto v = evaluate(model, val, opt.validation_batch_size ? opt.validation_batch_size : opt.batch_size,
                          opt.loss);
        el.val_loss = v.loss;
        el.val_accuracy = v.accuracy;
        values.push_back({"val_loss", v.loss});
        values.push_back({"val_acc", v.accuracy});
    }
    el.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (opt.verbose != Verbosity::Silent) bar.finish(values);
    history.epochs.push_back(el);
    bool stop = false;
    for (auto* cb : opt.callbacks) {
        cb->on_epoch_end(el);
        stop = stop || cb->stop_training;
    }
    return stop;
}

}  // namespace detail

// Trains the model on `train` for options.epochs epochs with mini-batches,
// reporting as Keras does. Returns the per-epoch logs.
template <typename T>
History fit(nn::Sequential<T>& model, optim::Optimizer<T>& optimizer, const data::Dataset& train,
            const FitOptions<T>& opt) {
    CUMULUS_CHECK(opt.batch_size > 0, "fit: batch_size must be positive, got ", opt.batch_size);
    CUMULUS_CHECK(opt.epochs >= 0 && opt.initial_epoch >= 0, "fit: bad epochs ", opt.epochs, " / initial_epoch ",
                  opt.initial_epoch);
    opt.loss.check(model);
    detail::check_fits(model.input_shape(), train, "fit");
    if (opt.validation) detail::check_fits(model.input_shape(), *opt.validation, "fit (validation data)");
#if CUMULUS_WITH_CUDA && defined(__CUDACC__)
    if (model.device().is_cuda()) return detail::fit_cuda(model, optimizer, train, opt);
#endif
    const data::Dataset d = train.to(model.device());
    const data::Dataset val = opt.validation ? opt.validation->to(model.device()) : data::Dataset();
    const std::int64_t n = d.size();
    CUMULUS_CHECK(n > 0, "fit: the training set is empty");
    std::ostream& out = *opt.out;
    const bool dynamic = opt.verbose == Verbosity::ProgressBar && opt.out == &std::cout && ProgressBar::stdout_is_terminal();
    auto params = model.parameters();

    nn::Context ctx;
    ctx.training = true;
    ctx.seed = opt.seed;
    ctx.defer_softmax = model.ends_with_softmax();

    History history;
    for (auto* cb : opt.callbacks) cb->on_train_begin(model, optimizer);
    detail::Batch<T> b;
    bool stop = false;
    int first_epoch = opt.initial_epoch;
    std::int64_t first_batch = opt.initial_batch;
    const std::int64_t batches_per_epoch = (n + opt.batch_size - 1) / opt.batch_size;
    CUMULUS_CHECK(first_batch >= 0 && first_batch <= batches_per_epoch, "fit: initial_batch ", first_batch,
                  " is outside an epoch of ", batches_per_epoch, " batches");
    if (first_batch == batches_per_epoch) {
        ++first_epoch;
        first_batch = 0;
    }
    for (int epoch = first_epoch; epoch < opt.epochs && !stop; ++epoch) {
        for (auto* cb : opt.callbacks) cb->on_epoch_begin(epoch);
        if (opt.verbose != Verbosity::Silent) out << "Epoch " << epoch + 1 << "/" << opt.epochs << "\n" << std::flush;
        ProgressBar bar(out, n, dynamic);
        const auto t0 = std::chrono::steady_clock::now();
        const auto order = detail::epoch_order(n, opt.shuffle, opt.seed, epoch);
        double loss_sum = 0.0;
        std::int64_t correct = 0, seen = 0, batch_index = epoch == first_epoch ? first_batch : 0;
        for (std::int64_t start = batch_index * opt.batch_size; start < n && !stop;
             start += opt.batch_size, ++batch_index) {
            const std::int64_t count = std::min(opt.batch_size, n - start);
            b.prepare(d.example_shape(), count, d.device());
            d.gather(order.data() + start, count, b.x, b.y);
            ctx.step = static_cast<std::uint64_t>(optimizer.iterations());
            Tensor<T> logits = model.forward(b.x, ctx);
            if (!b.dlogits.defined() || !(b.dlogits.shape() == logits.shape()))
                b.dlogits = Tensor<T>::empty(logits.shape(), logits.device());
            auto r = opt.loss(logits, b.y, &b.dlogits, count);
            model.backward(b.dlogits, ctx);
            optimizer.step(params);
            loss_sum += r.loss_sum;
            correct += r.correct;
            seen += count;
            BatchLogs bl{epoch, batch_index, optimizer.iterations(), count, r.loss_sum / double(count),
                         double(r.correct) / double(count)};
            for (auto* cb : opt.callbacks) {
                cb->on_batch_end(bl);
                stop = stop || cb->stop_training;
            }
            if (dynamic) bar.update(seen, {{"loss", loss_sum / double(seen)}, {"acc", double(correct) / double(seen)}});
        }
        if (detail::end_epoch(model, val, opt, epoch, seen, loss_sum, correct, t0, bar, history)) stop = true;
    }
    for (auto* cb : opt.callbacks) cb->on_train_end(history);
    return history;
}

}  // namespace cumulus::train

#if CUMULUS_WITH_CUDA && defined(__CUDACC__)
#include <cumulus/cuda/fit.cuh>
#endif
