// Trainer-task conventions of cloud training jobs: the common flags
// (--job-dir, --verbosity, --hypertune-metric-tag, checkpoint cadence), the
// cluster description in TF_CONFIG / CLUSTER_SPEC, the trial number of a
// hyperparameter-tuning job, Vertex AI's AIP_* output directories, and a
// small leveled logger.
//
// Layout under the output directory (--job-dir, plus "/<trial>" in a tuning
// trial): checkpoints/, logs/ (TensorBoard), export/<timestamp>/. Each of the
// three is replaced by AIP_CHECKPOINT_DIR, AIP_TENSORBOARD_LOG_DIR and
// AIP_MODEL_DIR when Vertex sets them (they already hold the trial id).
#pragma once

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <cumulus/core/error.hpp>
#include <cumulus/io/fs.hpp>

namespace cumulus::train {

// ---- paths --------------------------------------------------------------

// True for "scheme://..." (gs://bucket/x), false for local paths and file://.
inline bool is_url(const std::string& path) { return !io::is_local_path(path); }

// a + "/" + b with exactly one slash between them; string-based so that it
// works the same for gs:// URLs and local paths.
inline std::string join_path(const std::string& a, const std::string& b) {
    if (a.empty()) return b;
    if (b.empty()) return a;
    std::string l = a;
    while (l.size() > 1 && l.back() == '/' && !(l.size() >= 3 && l.compare(l.size() - 3, 3, "://") == 0))
        l.pop_back();
    std::size_t s = 0;
    while (s < b.size() && b[s] == '/') ++s;
    if (l.back() == '/') return l + b.substr(s);
    return l + "/" + b.substr(s);
}

namespace detail {

// Directory operations on local paths and gs:// URLs alike (io/fs.hpp).
inline void make_dirs(const std::string& dir) {
    if (!dir.empty()) io::fs::make_dirs(dir);
}

inline bool path_exists(const std::string& path) { return io::fs::exists(path); }

// Names (not paths) of the entries directly under `dir`, sorted; empty when
// it does not exist.
inline std::vector<std::string> list_dir(const std::string& dir) {
    std::vector<std::string> names;
    if (is_url(dir)) {
        std::string prefix = dir;
        if (prefix.back() != '/') prefix += '/';
        io::fs::list(prefix, false, [&](const io::FileInfo& f) {
            names.push_back(io::fs::basename(f.path));
            return true;
        });
    } else {
        if (!io::fs::is_directory(dir)) return names;
        for (const auto& f : io::fs::list(dir)) names.push_back(io::fs::basename(f.path));
    }
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    return names;
}

}  // namespace detail

// ---- logging ------------------------------------------------------------

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3 };

inline const char* log_level_name(LogLevel l) {
    switch (l) {
        case LogLevel::Debug: return "DEBUG";
        case LogLevel::Info: return "INFO";
        case LogLevel::Warn: return "WARN";
        case LogLevel::Error: return "ERROR";
    }
    return "?";
}

// DEBUG, INFO, WARN (or WARNING), ERROR (or FATAL, tf.logging's highest),
// any case.
inline LogLevel parse_log_level(const std::string& s) {
    std::string u;
    for (char c : s) u += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (u == "DEBUG") return LogLevel::Debug;
    if (u == "INFO") return LogLevel::Info;
    if (u == "WARN" || u == "WARNING") return LogLevel::Warn;
    if (u == "ERROR" || u == "FATAL") return LogLevel::Error;
    CUMULUS_FAIL("--verbosity: unknown level '", s, "' (expected DEBUG, INFO, WARN or ERROR)");
}

// Lines "<LEVEL> <UTC time> <message>" on a stream (stderr by default), for
// messages at or above the level. Thread-safe per line.
class Logger {
public:
    explicit Logger(LogLevel level = LogLevel::Info, std::ostream* out = &std::cerr) : level_(level), out_(out) {}
    LogLevel level() const { return level_; }
    void set_level(LogLevel l) { level_ = l; }
    void set_stream(std::ostream* out) { out_ = out; }
    bool enabled(LogLevel l) const { return l >= level_; }

    template <typename... Args>
    void log(LogLevel l, const Args&... args) {
        if (!enabled(l)) return;
        std::ostringstream ss;
        ss << log_level_name(l) << ' ' << utc_now() << ' ';
        (ss << ... << args);
        ss << '\n';
        std::lock_guard<std::mutex> lock(mu_);
        *out_ << ss.str() << std::flush;
    }
    template <typename... Args> void debug(const Args&... a) { log(LogLevel::Debug, a...); }
    template <typename... Args> void info(const Args&... a) { log(LogLevel::Info, a...); }
    template <typename... Args> void warn(const Args&... a) { log(LogLevel::Warn, a...); }
    template <typename... Args> void error(const Args&... a) { log(LogLevel::Error, a...); }

    // The process-wide logger the trainer-task pieces write to.
    static Logger& global() {
        static Logger l;
        return l;
    }

private:
    static std::string utc_now() {
        const std::time_t t = std::time(nullptr);
        std::tm tm{};
        gmtime_r(&t, &tm);
        char buf[32];
        std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
        return buf;
    }
    LogLevel level_;
    std::ostream* out_;
    std::mutex mu_;
};

// ---- environment --------------------------------------------------------

// Looks up an environment variable; std::nullopt when unset. Tests pass a map.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

inline EnvLookup process_env() {
    return [](const std::string& name) -> std::optional<std::string> {
        const char* v = std::getenv(name.c_str());
        if (v == nullptr) return std::nullopt;
        return std::string(v);
    };
}

inline EnvLookup map_env(std::map<std::string, std::string> vars) {
    return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
        auto it = vars.find(name);
        if (it == vars.end()) return std::nullopt;
        return it->second;
    };
}

// ---- cluster description ------------------------------------------------

// TF_CONFIG (AI Platform / TensorFlow) or CLUSTER_SPEC (Vertex AI):
// {"cluster": {"chief": ["host:port"], "worker": [...], ...},
//  "task": {"type": "worker", "index": 1, "trial": "3"}, "environment": "cloud"}
struct ClusterSpec {
    std::string source;  // "TF_CONFIG", "CLUSTER_SPEC", or "" when neither is set
    std::string type;    // task type: chief, master, worker, ps, evaluator, workerpool0, ...
    int index = 0;
    std::string trial;  // tuning trial number ("1", "2", ...); empty outside tuning
    std::string environment;
    std::map<std::string, std::vector<std::string>> cluster;

    bool present() const { return !source.empty(); }
    // The task that writes checkpoints, logs and the export: the chief (or
    // master, or Vertex's primary pool), or the only task when there is no
    // cluster at all.
    bool is_chief() const {
        if (!present() || type.empty()) return true;
        return (type == "chief" || type == "master" || type == "workerpool0") && index == 0;
    }
    // Number of tasks of every type in the cluster.
    std::size_t num_tasks() const {
        std::size_t n = 0;
        for (const auto& [k, v] : cluster) n += v.size();
        return n;
    }
};

// Parses the JSON of TF_CONFIG or CLUSTER_SPEC; `source` names it in errors.
// task.index and task.trial may be numbers or strings.
inline ClusterSpec parse_cluster_spec(const std::string& text, const std::string& source) {
    ClusterSpec s;
    s.source = source;
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        CUMULUS_FAIL(source, ": not valid JSON: ", e.what());
    }
    CUMULUS_CHECK(j.is_object(), source, ": expected a JSON object, found ", j.type_name());
    auto as_string = [&](const nlohmann::json& v, const char* what) -> std::string {
        if (v.is_string()) return v.get<std::string>();
        if (v.is_number_integer()) return std::to_string(v.get<std::int64_t>());
        CUMULUS_FAIL(source, ": ", what, " must be a string or an integer, found ", v.type_name());
    };
    if (j.contains("cluster") && !j["cluster"].is_null()) {
        const auto& c = j["cluster"];
        CUMULUS_CHECK(c.is_object(), source, ": \"cluster\" must be an object, found ", c.type_name());
        for (const auto& [name, addrs] : c.items()) {
            CUMULUS_CHECK(addrs.is_array(), source, ": cluster.", name, " must be a list of addresses, found ",
                          addrs.type_name());
            auto& v = s.cluster[name];
            for (const auto& a : addrs) {
                CUMULUS_CHECK(a.is_string(), source, ": cluster.", name, " holds a ", a.type_name(),
                              ", expected \"host:port\" strings");
                v.push_back(a.get<std::string>());
            }
        }
    }
    if (j.contains("task") && !j["task"].is_null()) {
        const auto& t = j["task"];
        CUMULUS_CHECK(t.is_object(), source, ": \"task\" must be an object, found ", t.type_name());
        if (t.contains("type")) s.type = as_string(t["type"], "task.type");
        if (t.contains("index")) {
            const std::string idx = as_string(t["index"], "task.index");
            try {
                std::size_t used = 0;
                const long v = std::stol(idx, &used);
                CUMULUS_CHECK(used == idx.size() && v >= 0 && v <= 1000000, source, ": bad task.index '", idx, "'");
                s.index = static_cast<int>(v);
            } catch (const std::logic_error&) {
                CUMULUS_FAIL(source, ": bad task.index '", idx, "'");
            }
        }
        if (t.contains("trial") && !t["trial"].is_null()) s.trial = as_string(t["trial"], "task.trial");
    }
    if (j.contains("environment") && j["environment"].is_string()) s.environment = j["environment"];
    if (!s.type.empty() && !s.cluster.empty() && s.cluster.count(s.type)) {
        const auto n = s.cluster.at(s.type).size();
        CUMULUS_CHECK(static_cast<std::size_t>(s.index) < n, source, ": task ", s.type, " ", s.index,
                      " is not in the cluster (", s.type, " has ", n, " addresses)");
    }
    // The trial is appended to paths: it must be one plain path component.
    CUMULUS_CHECK(s.trial.find('/') == std::string::npos && s.trial != "." && s.trial != "..", source,
                  ": task.trial '", s.trial, "' is not a plain name");
    return s;
}

// TF_CONFIG when set (and not empty), else CLUSTER_SPEC, else an empty spec.
// A trial present only in CLUSTER_SPEC is taken from there.
inline ClusterSpec cluster_from_env(const EnvLookup& env = process_env()) {
    auto get = [&](const char* n) -> std::optional<std::string> {
        auto v = env(n);
        if (v && v->find_first_not_of(" \t\r\n") == std::string::npos) return std::nullopt;
        return v;
    };
    const auto tf = get("TF_CONFIG");
    const auto cs = get("CLUSTER_SPEC");
    ClusterSpec s;
    if (tf) s = parse_cluster_spec(*tf, "TF_CONFIG");
    if (cs) {
        ClusterSpec c = parse_cluster_spec(*cs, "CLUSTER_SPEC");
        if (!tf) return c;
        if (s.trial.empty()) s.trial = c.trial;
    }
    return s;
}

// ---- the task configuration ---------------------------------------------

struct TaskConfig {
    // Flags (add_task_flags, in train/task_flags.hpp).
    std::string job_dir;  // local or gs://; empty: nothing is written (unless AIP_* say where)
    std::string verbosity = "INFO";
    std::string hypertune_metric_tag = "accuracy";
    std::int64_t checkpoint_every_steps = 0;  // 0: not by steps
    double checkpoint_every_secs = 180.0;     // 0: not by time (the tutorial's RunConfig uses 180)
    int keep_checkpoints = 5;                 // tf.train.Saver's max_to_keep

    // Resolved by resolve_task().
    ClusterSpec cluster;
    std::string output_dir;       // job_dir, plus "/<trial>" in a tuning trial
    std::string checkpoint_dir;   // AIP_CHECKPOINT_DIR or <output_dir>/checkpoints
    std::string log_dir;          // AIP_TENSORBOARD_LOG_DIR or <output_dir>/logs
    std::string model_dir;        // AIP_MODEL_DIR (export goes straight there) or empty
    std::string export_base_dir;  // <output_dir>/export (export goes to <export_base_dir>/<timestamp>)

    bool writes_checkpoints() const { return !checkpoint_dir.empty(); }
    bool writes_logs() const { return !log_dir.empty(); }
    bool writes_export() const { return !model_dir.empty() || !export_base_dir.empty(); }
};

// Fills the resolved fields of `c` from its flags and the environment, and
// sets the global logger's level from --verbosity.
inline void resolve_task(TaskConfig& c, const EnvLookup& env = process_env()) {
    Logger::global().set_level(parse_log_level(c.verbosity));
    c.cluster = cluster_from_env(env);
    c.output_dir = c.job_dir;
    if (!c.output_dir.empty() && !c.cluster.trial.empty()) c.output_dir = join_path(c.output_dir, c.cluster.trial);
    auto aip = [&](const char* name) {
        auto v = env(name);
        return v ? *v : std::string();
    };
    const std::string base = c.output_dir;
    c.checkpoint_dir = aip("AIP_CHECKPOINT_DIR");
    if (c.checkpoint_dir.empty() && !base.empty()) c.checkpoint_dir = join_path(base, "checkpoints");
    c.log_dir = aip("AIP_TENSORBOARD_LOG_DIR");
    if (c.log_dir.empty() && !base.empty()) c.log_dir = join_path(base, "logs");
    c.model_dir = aip("AIP_MODEL_DIR");
    c.export_base_dir = base.empty() ? std::string() : join_path(base, "export");
}

// A one-line description for the log.
inline std::string describe(const TaskConfig& c) {
    std::ostringstream ss;
    ss << "task: " << (c.cluster.present() ? c.cluster.type + " " + std::to_string(c.cluster.index) : "local");
    if (c.cluster.present()) ss << " of " << c.cluster.num_tasks() << " (" << c.cluster.source << ")";
    if (!c.cluster.trial.empty()) ss << ", trial " << c.cluster.trial;
    ss << "; output " << (c.output_dir.empty() ? "(none)" : c.output_dir);
    if (!c.checkpoint_dir.empty()) ss << "; checkpoints " << c.checkpoint_dir;
    if (!c.log_dir.empty()) ss << "; logs " << c.log_dir;
    if (!c.model_dir.empty()) ss << "; model " << c.model_dir;
    return ss.str();
}

}  // namespace cumulus::train
