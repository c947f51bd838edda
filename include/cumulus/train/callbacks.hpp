// Callbacks: hooks into the fit loop, so checkpoints, TensorBoard logs, early
// stopping or metric reporting plug in without touching the loop.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include <cumulus/nn/sequential.hpp>
#include <cumulus/optim/optimizer.hpp>

namespace cumulus::train {

struct BatchLogs {
    int epoch = 0;              // 0-based
    std::int64_t batch = 0;     // 0-based, within the epoch
    std::int64_t step = 0;      // global step, counted from 1 after this batch's update
    std::int64_t size = 0;      // examples in the batch
    double loss = 0.0;          // mean over the batch
    double accuracy = 0.0;      // over the batch
};

struct EpochLogs {
    int epoch = 0;  // 0-based
    std::int64_t samples = 0;
    double loss = 0.0, accuracy = 0.0;
    std::optional<double> val_loss, val_accuracy;
    double seconds = 0.0;
};

struct History {
    std::vector<EpochLogs> epochs;
    std::int64_t graph_replays = 0;  // steps run by replaying a captured CUDA graph (fit on a GPU)
};

template <typename T>
class Callback {
public:
    virtual ~Callback() = default;
    virtual void on_train_begin(nn::Sequential<T>& model, optim::Optimizer<T>& optimizer) {}
    virtual void on_epoch_begin(int epoch) {}
    virtual void on_batch_end(const BatchLogs& logs) {}
    virtual void on_epoch_end(const EpochLogs& logs) {}
    virtual void on_train_end(const History& history) {}
    // Set to stop training after the current batch (as Keras' model.stop_training).
    bool stop_training = false;
};

// Calls a function after every epoch; handy in small programs and tests.
template <typename T, typename F>
class LambdaEpochEnd : public Callback<T> {
public:
    explicit LambdaEpochEnd(F f) : f_(std::move(f)) {}
    void on_epoch_end(const EpochLogs& logs) override { f_(logs); }

private:
    F f_;
};

}  // namespace cumulus::train
