// The common trainer flags on a CLI11 app (kept apart from task.hpp so that
// only programs that parse a command line pay for CLI11):
//   --job-dir, --verbosity, --hypertune-metric-tag, --checkpoint-every-steps,
//   --checkpoint-every-secs, --keep-checkpoints
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include <cumulus/core/error.hpp>
#include <cumulus/train/task.hpp>

namespace cumulus::train {

// Adds the common trainer flags to a CLI11 app. CLI11 takes both
// "--job-dir X" and "--job-dir=X"; "--job_dir" is accepted as well.
inline void add_task_flags(CLI::App& app, TaskConfig& c) {
    app.add_option("--job-dir,--job_dir", c.job_dir,
                   "Output directory (local or gs://): checkpoints/, logs/ (TensorBoard), export/<timestamp>/");
    app.add_option("--verbosity", c.verbosity, "Log level: DEBUG, INFO, WARN or ERROR")
        ->check([](const std::string& s) -> std::string {
            try {
                parse_log_level(s);
                return {};
            } catch (const Error& e) {
                return e.what();
            }
        })
        ->capture_default_str();
    app.add_option("--hypertune-metric-tag", c.hypertune_metric_tag,
                   "Tag of the final metric reported for hyperparameter tuning (and written to TensorBoard)")
        ->capture_default_str();
    app.add_option("--checkpoint-every-steps", c.checkpoint_every_steps, "Checkpoint every N steps (0: off)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--checkpoint-every-secs", c.checkpoint_every_secs, "Checkpoint every S seconds (0: off)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--keep-checkpoints", c.keep_checkpoints, "Number of most recent checkpoints kept")
        ->check(CLI::Range(1, 1000000))
        ->capture_default_str();
}

}  // namespace cumulus::train
