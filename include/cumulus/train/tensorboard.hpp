// The TensorBoard callback: scalars for `tensorboard --logdir <log_dir>`, in
// Keras' layout, two runs side by side so the curves overlay:
//   <log_dir>/train/       batch_loss, batch_accuracy, learning_rate,
//                          examples_per_second (every update_freq steps);
//                          epoch_loss, epoch_accuracy, epoch_learning_rate,
//                          epoch_examples_per_second (every epoch)
//   <log_dir>/validation/  epoch_loss, epoch_accuracy (with validation data),
//                          and whatever add_scalar() adds (the final metric)
// The x axis (step) is the global step everywhere, so that batch and epoch
// curves, checkpoints and the hypertune report line up. Each fit() writes a
// SessionLog START at its first step; on the second and later ones (a resumed
// run) TensorBoard drops the killed run's events from that step on.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <cumulus/io/tfevents.hpp>
#include <cumulus/train/callbacks.hpp>
#include <cumulus/train/task.hpp>

namespace cumulus::train {

struct TensorBoardOptions {
    std::string log_dir;
    std::int64_t update_freq = 1;  // steps between batch summaries; 0: epoch summaries only
    io::EventWriterOptions writer{};
};

template <typename T>
class TensorBoard : public Callback<T> {
public:
    explicit TensorBoard(TensorBoardOptions opt) : opt_(std::move(opt)) {
        CUMULUS_CHECK(!opt_.log_dir.empty(), "TensorBoard callback: empty log directory");
        CUMULUS_CHECK(opt_.update_freq >= 0, "TensorBoard callback: negative update_freq");
    }

    io::EventWriter& train_writer() { return writer(train_, "train"); }
    io::EventWriter& validation_writer() { return writer(validation_, "validation"); }

    // A scalar in one of the runs ("train" or "validation"), flushed at once.
    void add_scalar(const std::string& run, const std::string& tag, double value, std::int64_t step) {
        CUMULUS_CHECK(run == "train" || run == "validation", "TensorBoard callback: unknown run '", run, "'");
        auto& w = run == "train" ? train_writer() : validation_writer();
        w.add_scalar(tag, value, step);
        w.flush();
    }
    std::int64_t step() const { return step_; }

    void on_train_begin(nn::Sequential<T>&, optim::Optimizer<T>& optimizer) override {
        optimizer_ = &optimizer;
        step_ = optimizer.iterations();
        // TensorBoard takes every SessionLog START after a run's first as a
        // restart, as TF's Supervisor wrote them: one at every start.
        train_writer().add_session_start(step_ + 1);
        validation_writer().add_session_start(step_ + 1);
        mark_ = std::chrono::steady_clock::now();
        mark_examples_ = 0;
    }
    void on_epoch_begin(int) override {
        epoch_start_ = std::chrono::steady_clock::now();
        epoch_examples_ = 0;
    }
    void on_batch_end(const BatchLogs& logs) override {
        step_ = logs.step;
        mark_examples_ += logs.size;
        epoch_examples_ += logs.size;
        if (opt_.update_freq == 0 || logs.step % opt_.update_freq != 0) return;
        const auto now = std::chrono::steady_clock::now();
        const double secs = std::chrono::duration<double>(now - mark_).count();
        std::vector<std::pair<std::string, double>> s{{"batch_loss", logs.loss}, {"batch_accuracy", logs.accuracy}};
        if (optimizer_) s.emplace_back("learning_rate", optimizer_->learning_rate());
        if (secs > 0.0) s.emplace_back("examples_per_second", double(mark_examples_) / secs);
        train_writer().add_scalars(logs.step, s);
        mark_ = now;
        mark_examples_ = 0;
    }
    void on_epoch_end(const EpochLogs& logs) override {
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start_).count();
        std::vector<std::pair<std::string, double>> s{{"epoch_loss", logs.loss}, {"epoch_accuracy", logs.accuracy}};
        if (optimizer_) s.emplace_back("epoch_learning_rate", optimizer_->learning_rate());
        if (secs > 0.0 && epoch_examples_ > 0) s.emplace_back("epoch_examples_per_second", double(epoch_examples_) / secs);
        train_writer().add_scalars(step_, s);
        train_writer().flush();
        if (logs.val_loss || logs.val_accuracy) {
            std::vector<std::pair<std::string, double>> v;
            if (logs.val_loss) v.emplace_back("epoch_loss", *logs.val_loss);
            if (logs.val_accuracy) v.emplace_back("epoch_accuracy", *logs.val_accuracy);
            validation_writer().add_scalars(step_, v);
            validation_writer().flush();
        }
    }
    void on_train_end(const History&) override { flush(); }

    void flush() {
        if (train_) train_->flush();
        if (validation_) validation_->flush();
    }
    void close() {
        if (train_) train_->close();
        if (validation_) validation_->close();
    }

private:
    io::EventWriter& writer(std::unique_ptr<io::EventWriter>& w, const char* run) {
        if (!w) w = std::make_unique<io::EventWriter>(join_path(opt_.log_dir, run), opt_.writer);
        return *w;
    }

    TensorBoardOptions opt_;
    std::unique_ptr<io::EventWriter> train_, validation_;
    optim::Optimizer<T>* optimizer_ = nullptr;
    std::int64_t step_ = 0;
    std::chrono::steady_clock::time_point mark_{}, epoch_start_{};
    std::int64_t mark_examples_ = 0, epoch_examples_ = 0;
};

}  // namespace cumulus::train
