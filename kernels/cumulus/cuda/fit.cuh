// fit / evaluate on a CUDA device: the loops of cumulus/train/fit.hpp with
// everything of a step on the device. The training set is copied once as
// uint8; each epoch's order goes to the device once; a batch is gathered
// and normalised by one kernel; loss and hits accumulate in device memory;
// the optimizer updates every parameter in one fused launch. The host
// synchronizes only to report progress (the epoch's end, the progress bar,
// per-batch callbacks when there are any).
//
// With FitOptions::cuda_graph (the default) the step of a full batch is
// captured into a CUDA graph once and replayed; the counters that change
// from step to step (batch offset, dropout step, Adam's update number) live
// on the device and the step itself advances them. The graph is captured
// again whenever memory it uses was freed (a layer reallocated its buffers,
// e.g. after the smaller last batch) or the learning rate changed. Without
// the graph the same launches run one by one: the results are the same.
//
// Included at the end of fit.hpp, only by nvcc with CUMULUS_WITH_CUDA.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <vector>

#include <cumulus/cuda.hpp>
#include <cumulus/optim/adam.hpp>
#include <cumulus/optim/rmsprop.hpp>
#include <cumulus/optim/sgd.hpp>
#include <cumulus/train/fit.hpp>

namespace cumulus::train::detail {

// One launch for the whole optimizer step (RMSprop, SGD, Adam); other
// optimizers fall back to Optimizer::step.
template <typename T>
class FusedUpdate {
public:
    // False when the optimizer is not one of the three.
    bool build(optim::Optimizer<T>& opt, const std::vector<nn::Parameter<T>*>& params) {
        rms_ = dynamic_cast<optim::RMSprop<T>*>(&opt);
        sgd_ = dynamic_cast<optim::SGD<T>*>(&opt);
        adam_ = dynamic_cast<optim::Adam<T>*>(&opt);
        if (!rms_ && !sgd_ && !adam_) return false;
        if (params.empty()) return false;
        if (opt.state().empty()) opt.create_slots(params);
        auto st = opt.state();
        const std::size_t per = st.size() / params.size();
        CUMULUS_CHECK(per * params.size() == st.size() && per >= 1, opt.name(), ": state of ", st.size(),
                      " tensors for ", params.size(), " parameters");
        std::vector<cuda::ParamSlots<T>> v;
        for (std::size_t i = 0; i < params.size(); ++i) {
            nn::Parameter<T>& p = *params[i];
            if (!p.trainable || p.value.numel() == 0) continue;
            Tensor<T>* s0 = st[i * per].second;
            Tensor<T>* s1 = per > 1 ? st[i * per + 1].second : nullptr;
            CUMULUS_CHECK(p.value.device().is_cuda() && p.grad.device() == p.value.device() &&
                              s0->device() == p.value.device() && (!s1 || s1->device() == p.value.device()),
                          opt.name(), ": parameter '", p.name, "', its gradient and its state must be on one CUDA device");
            CUMULUS_CHECK(p.grad.numel() == p.value.numel() && s0->numel() == p.value.numel() &&
                              (!s1 || s1->numel() == p.value.numel()),
                          opt.name(), ": parameter '", p.name, "' and its gradient or state differ in size");
            v.push_back({p.value.data(), p.grad.data(), s0->data(), s1 ? s1->data() : nullptr, p.value.numel(), 0});
        }
        if (adam_) {
            for (const auto& s : v)
                CUMULUS_CHECK(s.s1 != nullptr, "Adam: missing second moment");
        }
        list_ = cuda::MultiTensorList<T>(std::move(v));
        return true;
    }

    // Queues the update; `update_number` is a device counter holding the
    // number of this update (from 1), read by Adam.
    void launch(const optim::Optimizer<T>& opt, const std::int64_t* update_number) const {
        const float lr = opt.learning_rate();
        if (rms_) {
            cuda::rmsprop_update_multi(list_, cuda::RmspropArgs{lr, rms_->rho(), rms_->epsilon()});
        } else if (sgd_) {
            cuda::sgd_update_multi(list_, cuda::SgdArgs{lr, sgd_->momentum(), sgd_->nesterov()});
        } else {
            cuda::adam_update_multi(list_, cuda::AdamArgs{lr, adam_->beta1(), adam_->beta2(), adam_->epsilon(), 0,
                                                          reinterpret_cast<const long long*>(update_number)});
        }
    }

private:
    optim::RMSprop<T>* rms_ = nullptr;
    optim::SGD<T>* sgd_ = nullptr;
    optim::Adam<T>* adam_ = nullptr;
    cuda::MultiTensorList<T> list_;
};

inline cuda::XentTotals read_totals(const Tensor<std::uint8_t>& buf) {
    cuda::XentTotals t{};
    copy_bytes(&t, Device::cpu(), buf.data(), buf.device(), sizeof(t));
    return t;
}

inline void check_no_bad_labels(const cuda::XentTotals& t, const char* what) {
    CUMULUS_CHECK(t.bad_labels == 0, what, ": ", t.bad_labels,
                  " example(s) had a label outside the model's classes (or an index outside the dataset)");
}

template <typename T>
EvalResult evaluate_cuda(nn::Sequential<T>& model, const data::Dataset& dataset, std::int64_t batch_size,
                         const nn::SoftmaxCrossEntropy& loss) {
    const Device dev = model.device();
    cuda::DeviceGuard guard(dev);
    CUMULUS_CHECK(dataset.is_uint8(), "evaluate on ", dev.str(), ": the dataset must hold uint8 examples");
    const data::Dataset d = dataset.to(dev);
    const std::int64_t n = d.size(), features = d.example_size();
    EvalResult e;
    e.samples = n;
    if (n == 0) return e;
    std::vector<std::int64_t> order(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
    Tensor<std::int64_t> idx = Tensor<std::int64_t>::empty(Shape{n}, dev);
    copy_bytes(idx.data(), dev, order.data(), Device::cpu(), idx.nbytes());
    Tensor<std::uint8_t> totals = Tensor<std::uint8_t>::empty(Shape{std::int64_t(sizeof(cuda::XentTotals))}, dev);
    CUMULUS_CUDA_CHECK(cudaMemsetAsync(totals.data(), 0, totals.nbytes(), cuda::current_stream()));
    cuda::XentWorkspace ws;
    nn::Context ctx;
    ctx.defer_softmax = model.ends_with_softmax();
    Batch<T> b;
    for (std::int64_t start = 0; start < n; start += batch_size) {
        const std::int64_t count = std::min(batch_size, n - start);
        b.prepare(d.example_shape(), count, dev);
        cuda::gather_batch<T, std::int32_t>(d.x_uint8().data(), d.labels().data(), n, features, idx.data() + start,
                                            nullptr, count, static_cast<T>(d.scale()), b.x.data(), b.y.data());
        Tensor<T> logits = model.forward(b.x, ctx);
        CUMULUS_CHECK(logits.rank() == 2 && logits.dim(0) == count, "evaluate: model output ", logits.shape().str(),
                      " is not (batch, classes)");
        (void)loss;  // the fused softmax cross-entropy is the only loss
        cuda::softmax_xent_async(logits.data(), b.y.data(), static_cast<T*>(nullptr), count, logits.dim(1), count,
                                 reinterpret_cast<cuda::XentTotals*>(totals.data()), true, &ws);
    }
    const cuda::XentTotals t = read_totals(totals);
    check_no_bad_labels(t, "evaluate");
    e.loss = t.loss_sum / double(n);
    e.accuracy = double(t.correct) / double(n);
    return e;
}

template <typename T>
History fit_cuda(nn::Sequential<T>& model, optim::Optimizer<T>& optimizer, const data::Dataset& train,
                 const FitOptions<T>& opt) {
    const Device dev = model.device();
    cuda::DeviceGuard guard(dev);
    CUMULUS_CHECK(train.is_uint8(), "fit on ", dev.str(), ": the training set must hold uint8 examples "
                  "(Dataset::from_uint8); they are normalised on the device");
    const data::Dataset d = train.to(dev);
    const data::Dataset val = opt.validation ? opt.validation->to(dev) : data::Dataset();
    const std::int64_t n = d.size(), features = d.example_size();
    CUMULUS_CHECK(n > 0, "fit: the training set is empty");
    std::ostream& out = *opt.out;
    const bool dynamic =
        opt.verbose == Verbosity::ProgressBar && opt.out == &std::cout && ProgressBar::stdout_is_terminal();
    auto params = model.parameters();
    cudaStream_t stream = cuda::current_stream();

    // Device counters: [0] batch offset, [1] dropout step, [2] next update number.
    Tensor<std::int64_t> state = Tensor<std::int64_t>::empty(Shape{3}, dev);
    Tensor<std::int64_t> perm = Tensor<std::int64_t>::empty(Shape{n}, dev);
    Tensor<std::uint8_t> totals_buf =
        Tensor<std::uint8_t>::empty(Shape{std::int64_t(sizeof(cuda::XentTotals))}, dev);
    auto* totals = reinterpret_cast<cuda::XentTotals*>(totals_buf.data());
    cuda::XentWorkspace ws;

    nn::Context ctx;
    ctx.training = true;
    ctx.seed = opt.seed;
    ctx.defer_softmax = model.ends_with_softmax();
    ctx.device_step = reinterpret_cast<const std::uint64_t*>(state.data() + 1);

    FusedUpdate<T> fused;
    const bool fused_ok = fused.build(optimizer, params);
    bool use_graph = opt.cuda_graph && fused_ok;
    cuda::Graph graph;
    float graph_lr = 0.0f;
    Batch<T> b;

    // One training step of `count` rows, all on the device.
    auto step = [&](std::int64_t count) {
        cuda::gather_batch<T, std::int32_t>(d.x_uint8().data(), d.labels().data(), n, features, perm.data(),
                                            state.data(), count, static_cast<T>(d.scale()), b.x.data(), b.y.data());
        Tensor<T> logits = model.forward(b.x, ctx);
        CUMULUS_CHECK(logits.rank() == 2 && logits.dim(0) == count, "fit: model output ", logits.shape().str(),
                      " is not (batch, classes)");
        CUMULUS_CHECK(b.dlogits.shape() == logits.shape(), "fit: gradient buffer ", b.dlogits.shape().str(),
                      " for logits ", logits.shape().str());
        cuda::softmax_xent_async(logits.data(), b.y.data(), b.dlogits.data(), count, logits.dim(1), count, totals,
                                 true, &ws);
        model.backward(b.dlogits, ctx);
        if (fused_ok) fused.launch(optimizer, state.data() + 2);
        else optimizer.step(params);  // per-tensor launches; counts its own iterations
        cuda::advance_step(state.data(), count);
    };

    History history;
    for (auto* cb : opt.callbacks) cb->on_train_begin(model, optimizer);
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
    const Shape out_shape = model.output_shape();
    for (int epoch = first_epoch; epoch < opt.epochs && !stop; ++epoch) {
        for (auto* cb : opt.callbacks) cb->on_epoch_begin(epoch);
        if (opt.verbose != Verbosity::Silent) out << "Epoch " << epoch + 1 << "/" << opt.epochs << "\n" << std::flush;
        ProgressBar bar(out, n, dynamic);
        const auto t0 = std::chrono::steady_clock::now();
        const auto order = epoch_order(n, opt.shuffle, opt.seed, epoch);
        copy_bytes(perm.data(), dev, order.data(), Device::cpu(), perm.nbytes());
        std::int64_t batch_index = epoch == first_epoch ? first_batch : 0;
        const std::int64_t it0 = optimizer.iterations();
        const std::int64_t host_state[3] = {batch_index * opt.batch_size, it0, it0 + 1};
        copy_bytes(state.data(), dev, host_state, Device::cpu(), sizeof(host_state));
        CUMULUS_CUDA_CHECK(cudaMemsetAsync(totals_buf.data(), 0, totals_buf.nbytes(), stream));
        cuda::XentTotals last{};
        std::int64_t seen = 0;
        for (std::int64_t start = batch_index * opt.batch_size; start < n && !stop;
             start += opt.batch_size, ++batch_index) {
            const std::int64_t count = std::min(opt.batch_size, n - start);
            b.prepare(d.example_shape(), count, dev);
            Shape ls;
            ls.push_back(count);
            for (auto v : out_shape) ls.push_back(v);
            if (!b.dlogits.defined() || !(b.dlogits.shape() == ls)) b.dlogits = Tensor<T>::empty(ls, dev);
            ctx.step = static_cast<std::uint64_t>(optimizer.iterations());
            if (use_graph && count == opt.batch_size) {
                if (graph.valid() && graph_lr == optimizer.learning_rate()) {
                    graph.replay();
                    ++history.graph_replays;
                } else {
                    step(count);  // this step, and every buffer the capture needs
                    try {
                        graph.capture(stream, [&] { step(count); });
                        graph.watch_live_blocks();
                        graph_lr = optimizer.learning_rate();
                    } catch (const Error& e) {
                        graph.reset();
                        // A fault of an earlier kernel (sticky on a GPU) may
                        // surface at the capture: that is an error to report,
                        // not a reason to go on without a graph.
                        CUMULUS_CUDA_CHECK(cudaStreamSynchronize(stream));
                        use_graph = false;
                        if (opt.verbose != Verbosity::Silent)
                            out << "fit: CUDA graph disabled (" << e.what() << ")\n";
                    }
                }
            } else {
                step(count);
            }
            if (fused_ok) optimizer.set_iterations(optimizer.iterations() + 1);
            seen += count;
            const bool report = !opt.callbacks.empty() || (dynamic && (batch_index % 50 == 0 || start + count >= n));
            if (report) {
                const cuda::XentTotals t = read_totals(totals_buf);
                check_no_bad_labels(t, "fit");
                BatchLogs bl{epoch, batch_index, optimizer.iterations(), count,
                             (t.loss_sum - last.loss_sum) / double(count),
                             double(t.correct - last.correct) / double(count)};
                last = t;
                for (auto* cb : opt.callbacks) {
                    cb->on_batch_end(bl);
                    stop = stop || cb->stop_training;
                }
                if (dynamic)
                    bar.update(seen, {{"loss", t.loss_sum / double(seen)}, {"acc", double(t.correct) / double(seen)}});
            }
        }
        const cuda::XentTotals t = read_totals(totals_buf);  // waits for the epoch's work
        check_no_bad_labels(t, "fit");
        if (end_epoch(model, val, opt, epoch, seen, t.loss_sum, t.correct, t0, bar, history)) stop = true;
    }
    // The graph holds pointers into this function's buffers: drop it first.
    graph.reset();
    cuda::synchronize();
    for (auto* cb : opt.callbacks) cb->on_train_end(history);
    return history;
}

}  // namespace cumulus::train::detail
