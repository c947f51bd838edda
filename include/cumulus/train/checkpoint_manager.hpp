// Training checkpoints: a Callback that saves every N steps and/or every S
// seconds (and at the end of training) into a directory, keeps the last K,
// and restores the latest so that a restarted job (a preempted cloud job is
// started again with the same arguments) resumes where it was and ends with
// the same weights, bit for bit, as an uninterrupted run with the same seed.
//
// A checkpoint is one file, <dir>/ckpt-<step>.safetensors, written
// atomically (a temporary renamed into place; one object upload on gs://),
// so a kill mid-write leaves the previous checkpoints intact. It holds what
// io/checkpoint.hpp's model.safetensors holds (weights "<layer>/<param>",
// optimizer slots "optimizer/<i>/<slot>", metadata optimizer /
// optimizer.iterations) plus the position in training: epoch, the next batch
// of that epoch, the global step and the seed. fit's randomness is keyed by
// (seed, epoch) for the shuffle and (seed, layer, step) for dropout, so that
// position is the whole random-number-generator state.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <cumulus/core/error.hpp>
#include <cumulus/io/file.hpp>
#include <cumulus/io/fs.hpp>
#include <cumulus/io/safetensors.hpp>
#include <cumulus/nn/sequential.hpp>
#include <cumulus/optim/optimizer.hpp>
#include <cumulus/train/callbacks.hpp>
#include <cumulus/train/fit.hpp>
#include <cumulus/train/task.hpp>

namespace cumulus::train {

// Where training stands after a checkpointed step.
struct ResumePoint {
    int epoch = 0;            // the epoch to continue (0-based)
    std::int64_t batch = 0;   // its next batch to run (may equal its batch count: the next epoch)
    std::int64_t step = 0;    // optimizer iterations done
    std::uint64_t seed = 0;
    std::string path;         // the checkpoint it came from
};

struct CheckpointOptions {
    std::string dir;                    // local or gs://; created
    std::int64_t every_steps = 0;       // 0: not by steps
    double every_secs = 0.0;            // 0: not by time
    int keep = 5;                       // most recent checkpoints kept
    bool save_at_end = true;            // also after the last step
    std::optional<std::uint64_t> seed;  // recorded, and checked on restore
};

inline constexpr const char* kCheckpointFormat = "cumulus.checkpoint";

// "ckpt-<step>.safetensors" -> step; nullopt for other names.
inline std::optional<std::int64_t> checkpoint_step_of(const std::string& name) {
    const std::string pre = "ckpt-", post = ".safetensors";
    if (name.size() <= pre.size() + post.size() || name.compare(0, pre.size(), pre) != 0 ||
        name.compare(name.size() - post.size(), post.size(), post) != 0)
        return std::nullopt;
    const std::string digits = name.substr(pre.size(), name.size() - pre.size() - post.size());
    if (digits.empty() || digits.size() > 18 || digits.find_first_not_of("0123456789") != std::string::npos)
        return std::nullopt;
    return std::stoll(digits);
}

inline std::string checkpoint_name(std::int64_t step) { return "ckpt-" + std::to_string(step) + ".safetensors"; }

// Steps of the checkpoints in `dir`, ascending.
inline std::vector<std::int64_t> list_checkpoints(const std::string& dir) {
    std::vector<std::int64_t> steps;
    for (const auto& n : detail::list_dir(dir))
        if (auto s = checkpoint_step_of(n)) steps.push_back(*s);
    std::sort(steps.begin(), steps.end());
    return steps;
}

template <typename T>
class CheckpointManager : public Callback<T> {
public:
    explicit CheckpointManager(CheckpointOptions opt) : opt_(std::move(opt)) {
        CUMULUS_CHECK(!opt_.dir.empty(), "CheckpointManager: empty directory");
        CUMULUS_CHECK(opt_.keep >= 1, "CheckpointManager: keep must be at least 1, got ", opt_.keep);
        CUMULUS_CHECK(opt_.every_steps >= 0 && opt_.every_secs >= 0.0, "CheckpointManager: negative interval");
    }

    const CheckpointOptions& options() const { return opt_; }
    std::string path_of(std::int64_t step) const { return join_path(opt_.dir, checkpoint_name(step)); }
    std::vector<std::int64_t> steps() const { return list_checkpoints(opt_.dir); }
    // The path of the last checkpoint this manager wrote or restored ("" if none).
    const std::string& last_path() const { return last_path_; }

    // Loads the newest readable checkpoint into `model` and `optimizer` (a
    // damaged one is skipped with a warning) and returns where to resume;
    // nullopt when there is none.
    std::optional<ResumePoint> restore_latest(nn::Sequential<T>& model, optim::Optimizer<T>& optimizer) {
        const auto all = steps();
        for (auto it = all.rbegin(); it != all.rend(); ++it) {
            const std::string path = path_of(*it);
            // Reading is outside the try: a storage or network failure stops
            // the job rather than quietly resuming from an older checkpoint.
            // Only a file that reads but does not parse is skipped.
            const std::vector<std::uint8_t> bytes = io::read_file(path);
            try {
                ResumePoint rp = load(io::SafetensorsFile::parse(bytes.data(), bytes.size(), path), path, model,
                                      optimizer);
                last_path_ = path;
                last_saved_step_ = rp.step;
                resumed_ = rp;
                Logger::global().info("restored checkpoint ", path, " (epoch ", rp.epoch + 1, ", batch ", rp.batch,
                                      ", step ", rp.step, ")");
                return rp;
            } catch (const Error& e) {
                if (mismatch_) throw;  // a different run's checkpoints: resuming from an older one is no better
                Logger::global().warn("skipping unreadable checkpoint ", path, ": ", e.what());
            }
        }
        return std::nullopt;
    }

    // Sets fit's starting point to the restored checkpoint (no-op if none).
    void apply(FitOptions<T>& fo) const {
        if (!resumed_) return;
        fo.initial_epoch = resumed_->epoch;
        fo.initial_batch = resumed_->batch;
    }
    const std::optional<ResumePoint>& resumed() const { return resumed_; }

    // Writes the checkpoint of the current state; returns its path.
    std::string save(nn::Sequential<T>& model, optim::Optimizer<T>& optimizer, int epoch, std::int64_t next_batch) {
        const std::int64_t step = optimizer.iterations();
        io::SafetensorsFile st;
        for (std::size_t i = 0; i < model.size(); ++i) {
            auto& l = model.layer(i);
            for (auto* p : l.parameters()) st.add(l.name() + "/" + p->name, p->value.to(Device::cpu()));
        }
        for (auto& [name, t] : optimizer.state()) st.add("optimizer/" + name, t->to(Device::cpu()));
        auto& md = st.metadata();
        md["format"] = kCheckpointFormat;
        md["optimizer"] = optimizer.name();
        md["optimizer.iterations"] = std::to_string(step);
        md["epoch"] = std::to_string(epoch);
        md["batch"] = std::to_string(next_batch);
        md["step"] = std::to_string(step);
        if (opt_.seed) md["seed"] = std::to_string(*opt_.seed);
        detail::make_dirs(opt_.dir);
        const std::string path = path_of(step);
        st.save(path);
        last_path_ = path;
        last_saved_step_ = step;
        last_save_time_ = std::chrono::steady_clock::now();
        Logger::global().debug("saved checkpoint ", path);
        prune();
        return path;
    }

    // Removes all but the newest `keep` checkpoints.
    void prune() {
        const auto all = steps();
        if (all.size() <= static_cast<std::size_t>(opt_.keep)) return;
        for (std::size_t i = 0; i + static_cast<std::size_t>(opt_.keep) < all.size(); ++i) {
            try {
                io::fs::remove(path_of(all[i]));
                Logger::global().debug("removed old checkpoint ", path_of(all[i]));
            } catch (const std::exception& e) {
                // Training goes on: the new checkpoint is written, an old one stays a while longer.
                Logger::global().warn("could not remove old checkpoint ", path_of(all[i]), ": ", e.what());
            }
        }
    }

    void on_train_begin(nn::Sequential<T>& model, optim::Optimizer<T>& optimizer) override {
        model_ = &model;
        optimizer_ = &optimizer;
        last_save_time_ = std::chrono::steady_clock::now();
    }
    void on_batch_end(const BatchLogs& logs) override {
        epoch_ = logs.epoch;
        next_batch_ = logs.batch + 1;
        const bool by_steps = opt_.every_steps > 0 && logs.step % opt_.every_steps == 0;
        const bool by_time =
            opt_.every_secs > 0.0 &&
            std::chrono::duration<double>(std::chrono::steady_clock::now() - last_save_time_).count() >= opt_.every_secs;
        if ((by_steps || by_time) && logs.step != last_saved_step_) save(*model_, *optimizer_, epoch_, next_batch_);
    }
    void on_train_end(const History&) override {
        if (opt_.save_at_end && optimizer_ && optimizer_->iterations() != last_saved_step_ && next_batch_ > 0)
            save(*model_, *optimizer_, epoch_, next_batch_);
    }

private:
    ResumePoint load(io::SafetensorsFile st, const std::string& path, nn::Sequential<T>& model,
                     optim::Optimizer<T>& optimizer) {
        const auto& md = st.metadata();
        auto meta = [&](const char* key) -> const std::string& {
            auto it = md.find(key);
            CUMULUS_CHECK(it != md.end(), path, ": not a training checkpoint (no '", key, "' in its metadata)");
            return it->second;
        };
        auto integer = [&](const char* key) -> std::int64_t {
            const std::string& v = meta(key);
            CUMULUS_CHECK(!v.empty() && v.size() <= 19 && v.find_first_not_of("0123456789") == std::string::npos, path,
                          ": metadata '", key, "' is not a non-negative integer: '", v, "'");
            return std::stoll(v);
        };
        CUMULUS_CHECK(meta("format") == kCheckpointFormat, path, ": format is '", meta("format"), "', expected ",
                      kCheckpointFormat);
        CUMULUS_CHECK(meta("optimizer") == optimizer.name(), path, ": holds ", meta("optimizer"),
                      " state, but training uses ", optimizer.name());
        ResumePoint rp;
        rp.path = path;
        rp.epoch = static_cast<int>(std::min<std::int64_t>(integer("epoch"), 1 << 30));
        rp.batch = integer("batch");
        rp.step = integer("step");
        CUMULUS_CHECK(integer("optimizer.iterations") == rp.step, path, ": step and optimizer.iterations differ");
        if (md.count("seed")) rp.seed = static_cast<std::uint64_t>(std::stoull(md.at("seed")));
        mismatch_ = opt_.seed && md.count("seed") && rp.seed != *opt_.seed;
        if (mismatch_)
            CUMULUS_FAIL(path, ": was saved with seed ", rp.seed, ", but this run uses seed ", *opt_.seed,
                         " (a resumed run must use the same arguments)");
        // Read everything before touching the model: a bad file leaves it as it was.
        std::vector<Tensor<T>> weights;
        for (std::size_t i = 0; i < model.size(); ++i) {
            auto& l = model.layer(i);
            for (auto* p : l.parameters()) {
                const std::string key = l.name() + "/" + p->name;
                Tensor<T> t = st.template tensor<T>(key);
                CUMULUS_CHECK(t.shape() == p->value.shape(), path, ": tensor '", key, "' has shape ", t.shape().str(),
                              " but ", l.where(), " expects ", p->value.shape().str());
                weights.push_back(std::move(t));
            }
        }
        auto params = model.parameters();
        optim::Optimizer<T>* o = &optimizer;
        o->create_slots(params);
        std::vector<Tensor<T>> slots;
        for (auto& [name, t] : o->state()) {
            if (rp.step == 0) break;  // saved before the first update: no slots yet, zeros are right
            Tensor<T> s = st.template tensor<T>("optimizer/" + name);
            CUMULUS_CHECK(s.shape() == t->shape(), path, ": optimizer state '", name, "' has shape ", s.shape().str(),
                          ", expected ", t->shape().str());
            slots.push_back(std::move(s));
        }
        std::size_t k = 0;
        for (std::size_t i = 0; i < model.size(); ++i)
            for (auto* p : model.layer(i).parameters()) p->value.copy_from(weights[k++]);
        k = 0;
        for (auto& [name, t] : o->state())
            if (k < slots.size()) t->copy_from(slots[k++]);
        o->set_iterations(rp.step);
        return rp;
    }

    CheckpointOptions opt_;
    nn::Sequential<T>* model_ = nullptr;
    optim::Optimizer<T>* optimizer_ = nullptr;
    int epoch_ = 0;
    std::int64_t next_batch_ = 0;
    std::int64_t last_saved_step_ = -1;
    std::chrono::steady_clock::time_point last_save_time_ = std::chrono::steady_clock::now();
    std::string last_path_;
    std::optional<ResumePoint> resumed_;
    bool mismatch_ = false;
};

// Checkpoint options from the common trainer flags (task.hpp).
inline CheckpointOptions checkpoint_options(const TaskConfig& c, std::optional<std::uint64_t> seed = std::nullopt) {
    CheckpointOptions o;
    o.dir = c.checkpoint_dir;
    o.every_steps = c.checkpoint_every_steps;
    o.every_secs = c.checkpoint_every_secs;
    o.keep = c.keep_checkpoints;
    o.seed = seed;
    return o;
}

}  // namespace cumulus::train
