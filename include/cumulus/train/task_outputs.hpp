// What a trainer task writes to its job directory, set up in one place so
// that every trainer behaves the same (docs/cloud.md):
//
//   train::TaskConfig task;  train::add_task_flags(app, task);  ... parse ...
//   train::resolve_task(task);
//   train::TaskOutputs<float> out(task, model, optimizer, seed);  // restores the latest checkpoint
//   out.apply(fo);                  // fit's callbacks (checkpoints, TensorBoard) and resume point
//   train::fit(model, optimizer, train, fo);
//   out.finish(model, accuracy, optimizer.iterations());           // hypertune, TensorBoard, export
//
// Only the chief task writes (TF_CONFIG / CLUSTER_SPEC); the others train
// and write nothing. Without a job directory (and no AIP_* variables) nothing
// is written, except the hypertune report when the tuning service asked for
// it (CLOUD_ML_HP_METRIC_FILE or a trial in TF_CONFIG).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <cumulus/nn/sequential.hpp>
#include <cumulus/optim/optimizer.hpp>
#include <cumulus/train/callbacks.hpp>
#include <cumulus/train/checkpoint_manager.hpp>
#include <cumulus/train/export.hpp>
#include <cumulus/train/fit.hpp>
#include <cumulus/train/hypertune.hpp>
#include <cumulus/train/task.hpp>
#include <cumulus/train/tensorboard.hpp>

namespace cumulus::train {

template <typename T>
class TaskOutputs {
public:
    // `task` must have been resolved (resolve_task). Restores the newest
    // checkpoint of the job, if there is one, into model and optimizer.
    TaskOutputs(const TaskConfig& task, nn::Sequential<T>& model, optim::Optimizer<T>& optimizer,
                std::uint64_t seed, const EnvLookup& env = process_env())
        : task_(task), env_(env), chief_(task.cluster.is_chief()) {
        Logger::global().info(describe(task));
        if (chief_ && task.writes_checkpoints()) {
            ckpt_.emplace(checkpoint_options(task, seed));
            ckpt_->restore_latest(model, optimizer);
        }
        if (chief_ && task.writes_logs()) {
            TensorBoardOptions to;
            to.log_dir = task.log_dir;
            tensorboard_.emplace(to);
        }
    }

    bool chief() const { return chief_; }
    // Where training resumes (nullopt: from the start).
    std::optional<ResumePoint> resumed() const { return ckpt_ ? ckpt_->resumed() : std::nullopt; }
    CheckpointManager<T>* checkpoints() { return ckpt_ ? &*ckpt_ : nullptr; }
    TensorBoard<T>* tensorboard() { return tensorboard_ ? &*tensorboard_ : nullptr; }

    // The callbacks to pass to fit (or to call from a loop of one's own).
    std::vector<Callback<T>*> callbacks() {
        std::vector<Callback<T>*> c;
        if (ckpt_) c.push_back(&*ckpt_);
        if (tensorboard_) c.push_back(&*tensorboard_);
        return c;
    }

    // Appends the callbacks to fit's and sets its starting point to the restored checkpoint.
    void apply(FitOptions<T>& fo) {
        for (auto* c : callbacks()) fo.callbacks.push_back(c);
        if (ckpt_) ckpt_->apply(fo);
    }

    // An evaluation during training, as TensorBoard scalars of the validation run.
    void add_eval(const EvalResult& r, std::int64_t step) {
        if (!tensorboard_) return;
        tensorboard_->validation_writer().add_scalars(step, {{"loss", r.loss}, {"accuracy", r.accuracy}});
        tensorboard_->validation_writer().flush();
    }

    // The end of training: the final metric reported for hyperparameter
    // tuning (and as a TensorBoard scalar with the same tag), the event files
    // flushed, and the model exported. Returns the export directory ("" when
    // there is none).
    std::string finish(nn::Sequential<T>& model, double metric, std::int64_t step) {
        if (!chief_) return "";
        if (tensorboard_) {
            tensorboard_->add_scalar("validation", task_.hypertune_metric_tag, metric, step);
            tensorboard_->close();
        }
        const bool tuning = !task_.cluster.trial.empty() || env_("CLOUD_ML_HP_METRIC_FILE").has_value();
        if (task_.writes_export() || tuning) {
            HypertuneReporter hypertune(env_);
            hypertune.report(task_.hypertune_metric_tag, metric, step, ckpt_ ? ckpt_->last_path() : std::string());
            Logger::global().info("hypertune: ", task_.hypertune_metric_tag, " = ", metric, " -> ", hypertune.path());
        }
        return export_model(model, task_);
    }

private:
    TaskConfig task_;
    EnvLookup env_;
    bool chief_;
    std::optional<CheckpointManager<T>> ckpt_;
    std::optional<TensorBoard<T>> tensorboard_;
};

}  // namespace cumulus::train
