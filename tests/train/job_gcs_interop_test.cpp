// The trainer programs as cloud training jobs, end to end against the GCS
// emulator (fake-gcs-server from tools/setup-venv), the way docs/cloud.md
// runs them: the data in a bucket, --job-dir gs://..., and the job killed
// mid-run (a preempted cloud job) and started again with the same arguments.
//
// Checked: the checkpoints (the last K kept), the TensorBoard event files,
// the export and the hypertune report land in the bucket; the restarted job
// resumes from its newest checkpoint and ends with the same weights, bit for
// bit, and the same test accuracy as an uninterrupted run with the same seed.
//
// The trainers talk to the emulator through the fixture's proxy, which delays
// each checkpoint upload a little: that makes a run long enough to be killed
// between two checkpoints on any machine, and is what a slow network does.
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <doctest/doctest.h>

#include "../io/gcs_test_util.hpp"
#include "../test_util.hpp"

#include <cumulus/data/mnist.hpp>
#include <cumulus/data/mnist_sources.hpp>
#include <cumulus/data/pickle.hpp>
#include <cumulus/io/fs.hpp>
#include <cumulus/io/gcs.hpp>
#include <cumulus/io/tfevents.hpp>
#include <cumulus/train/checkpoint_manager.hpp>

namespace io = cumulus::io;
namespace gcs = cumulus::io::gcs;
namespace pk = cumulus::data::pickle;
using cumulus::Shape;
using cumulus::Tensor;
using test_util::contains;

namespace {

gcs_test::Fixture& fixture() {
    static gcs_test::Fixture f;
    return f;
}

// The test's own client goes straight to the emulator.
void use_direct_client() {
    gcs::ClientOptions o;
    o.endpoint = fixture().emulator;
    o.credentials = std::make_shared<gcs::AnonymousCredentials>();
    gcs::use_client(std::make_shared<gcs::Client>(o));
}

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// A trainer process: argv[0] is the program; its stdout and stderr go to `log`.
class Job {
public:
    pid_t pid = -1;
    std::string log;

    Job(const std::vector<std::string>& args, const std::vector<std::string>& extra_env, std::string log_path)
        : log(std::move(log_path)) {
        // The inherited environment, less what would point the job elsewhere
        // (another emulator, metric file, cluster or Vertex directory).
        std::vector<std::string> env_s;
        for (char** e = environ; *e != nullptr; ++e) {
            const std::string_view v(*e);
            bool drop = false;
            for (std::string_view key : {"STORAGE_EMULATOR_HOST=", "CLOUD_STORAGE_EMULATOR_ENDPOINT=",
                                         "CLOUD_ML_HP_METRIC_FILE=", "CLOUD_ML_TRIAL_ID=", "TF_CONFIG=",
                                         "CLUSTER_SPEC=", "AIP_"})
                drop |= v.substr(0, key.size()) == key;
            if (!drop) env_s.emplace_back(v);
        }
        for (const auto& e : extra_env) env_s.push_back(e);
        std::vector<char*> envp, argv;
        for (auto& e : env_s) envp.push_back(e.data());
        envp.push_back(nullptr);
        std::vector<std::string> a = args;
        for (auto& s : a) argv.push_back(s.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
        const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), envp.data());
        posix_spawn_file_actions_destroy(&fa);
        REQUIRE_MESSAGE(rc == 0, "cannot start ", args[0]);
    }
    // Exit status, or 128 + signal.
    int wait() {
        if (pid > 0) {
            ::waitpid(pid, &status, 0);
            pid = -1;
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    // Reaps the process when it has ended (wait() then reports its status).
    bool running() {
        if (pid <= 0) return false;
        if (::waitpid(pid, &status, WNOHANG) == 0) return true;
        pid = -1;
        return false;
    }
    void kill() {
        if (pid > 0) ::kill(pid, SIGKILL);
    }
    ~Job() {
        kill();
        wait();
    }

private:
    int status = 0;
};

// Steps of the checkpoint objects under `dir`.
std::vector<std::int64_t> checkpoint_steps(const std::string& dir) { return cumulus::train::list_checkpoints(dir); }

// The one export directory under <job>/export/.
std::string export_dir(const std::string& job) {
    std::vector<std::string> dirs;
    for (const auto& f : io::fs::list(job + "/export/"))
        if (f.is_dir) dirs.push_back(f.path);
    REQUIRE_MESSAGE(dirs.size() == 1, job, "/export/ holds ", dirs.size(), " directories, expected 1");
    return dirs[0];
}

std::string last_line_with(const std::string& text, const std::string& what) {
    std::istringstream in(text);
    std::string line, found;
    while (std::getline(in, line))
        if (contains(line, what)) found = line;
    return found;
}

// The run of `program` with `args` as job `job`, uninterrupted (kill_after <
// 0) or killed once a checkpoint of at least step kill_after exists, then
// started again with the same arguments. Returns the logs of the runs.
std::vector<std::string> run_job(const std::string& program, std::vector<std::string> args, const std::string& job,
                                 const std::string& local_dir, std::int64_t kill_after) {
    args.insert(args.begin(), program);
    args.push_back("--job-dir");
    args.push_back(job);
    const std::vector<std::string> env = {"STORAGE_EMULATOR_HOST=" + fixture().proxy,
                                          "CLOUD_ML_HP_METRIC_FILE=" + job + "/hypertune/output.metrics"};
    const std::string name = io::fs::basename(job);
    std::vector<std::string> logs;
    if (kill_after >= 0) {
        const std::string log = local_dir + "/" + name + ".killed.log";
        Job j(args, env, log);
        bool killed = false;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(600);
        while (j.running() && std::chrono::steady_clock::now() < deadline) {
            const auto steps = checkpoint_steps(job + "/checkpoints");
            if (!steps.empty() && steps.back() >= kill_after) {
                killed = true;
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        j.kill();  // also past the deadline: never wait for a hung job
        const int rc = j.wait();
        logs.push_back(read_text(log));
        REQUIRE_MESSAGE(killed, "the job ended (exit ", rc, ") before a checkpoint of step ", kill_after,
                        " appeared:\n", logs.back());
        CHECK(rc == 128 + SIGKILL);
        CHECK_FALSE(contains(logs.back(), "Test accuracy"));
    }
    const std::string log = local_dir + "/" + name + ".log";
    Job j(args, env, log);
    const int rc = j.wait();
    logs.push_back(read_text(log));
    REQUIRE_MESSAGE(rc == 0, program, " failed (exit ", rc, "):\n", logs.back());
    return logs;
}

// What both runs of a job must have left in the bucket.
void check_job_outputs(const std::string& job, std::int64_t final_step, bool resumed) {
    CAPTURE(job);
    const auto steps = checkpoint_steps(job + "/checkpoints");
    REQUIRE(!steps.empty());
    CHECK(steps.back() == final_step);
    CHECK(steps.size() <= 3);  // --keep-checkpoints 3

    const std::string exp = export_dir(job);
    for (const char* f : {"model.json", "model.safetensors", "signature.json"}) {
        CAPTURE(f);
        CHECK(io::fs::exists(io::fs::join(exp, f)));
    }
    const auto sig = nlohmann::json::parse(io::fs::read_all(io::fs::join(exp, "signature.json")));
    CHECK(sig["signatures"]["serving_default"]["outputs"].contains("classes"));
    CHECK(sig["signatures"]["serving_default"]["outputs"].contains("probabilities"));
    CHECK(sig["signatures"]["serving_default"]["inputs"]["inputs"]["dtype"] == "float32");

    // TensorBoard: one event file per run (two when resumed), file_version first.
    std::vector<std::string> train_files;
    for (const auto& f : io::fs::list(job + "/logs/train/"))
        if (contains(f.path, "events.out.tfevents.")) train_files.push_back(f.path);
    CHECK(train_files.size() == (resumed ? 2u : 1u));
    std::int64_t last_step = 0;
    bool saw_loss = false;
    for (const auto& f : train_files) {
        const auto events = io::read_event_file(f);
        REQUIRE(!events.empty());
        CHECK(events.front().file_version.rfind("brain.Event:", 0) == 0);
        for (const auto& e : events)
            for (const auto& [tag, v] : e.scalars)
                if (tag == "batch_loss") saw_loss = true, last_step = std::max(last_step, e.step);
    }
    CHECK(saw_loss);
    CHECK(last_step == final_step);
    bool saw_metric = false;
    for (const auto& f : io::fs::list(job + "/logs/validation/"))
        for (const auto& e : io::read_event_file(f.path))
            for (const auto& [tag, v] : e.scalars) saw_metric |= tag == "accuracy" && e.step == final_step;
    CHECK(saw_metric);

    // The hypertune report, in the bucket: one line naming the final step.
    const auto metrics = io::fs::read_all(job + "/hypertune/output.metrics");
    const std::string text(metrics.begin(), metrics.end());
    CHECK(contains(text, "\"accuracy\": \""));
    CHECK(contains(text, "\"global_step\": \"" + std::to_string(final_step) + "\""));
}

// A Keras-layout MNIST pickle ((x_train, y_train), (x_test, y_test)) of the
// first n_train / n_test examples of the real files, gzipped, in the bucket.
void upload_mnist_subset(const std::string& url, std::int64_t n_train, std::int64_t n_test) {
    const auto m = cumulus::data::load_mnist_from(std::string(CUMULUS_TEST_DATA_DIR) + "/mnist");
    auto xy = [](const cumulus::data::MnistSplit& s, std::int64_t n) {
        return pk::Value::tuple(std::vector<pk::Value>{pk::make_array(s.images.slice(0, n)),
                                                       pk::make_array(s.labels.slice(0, n))});
    };
    pk::dump(pk::Value::tuple(std::vector<pk::Value>{xy(m.train, n_train), xy(m.test, n_test)}), url, 2, true);
}

}  // namespace

TEST_CASE("trainer jobs on gs://: outputs in the bucket, and a killed job resumes to the same result") {
    fixture();
    use_direct_client();
    test_util::TempDir local("cumulus_job_gcs");
    const std::string data = "gs://cumulus-test/data/mnist.pkl.gz";
    upload_mnist_subset(data, 2000, 500);
    // Checkpoint uploads take 0.2 s longer through the proxy.
    fixture().faults(nlohmann::json::array(
        {{{"method", "POST"}, {"contains", "ckpt-"}, {"action", "delay"}, {"seconds", 0.2}, {"count", -1}}}));

    SUBCASE("mnist_mlp --train-file gs://... --job-dir gs://...") {
        // 2000 examples / batch 100 = 20 steps an epoch; 4 epochs.
        const std::vector<std::string> args = {"--train-file", data, "--epochs", "4", "--batch-size", "100",
                                               "--checkpoint-every-steps", "5", "--checkpoint-every-secs", "0",
                                               "--keep-checkpoints", "3", "--seed", "3", "--verbose", "2"};
        const auto a = run_job(CUMULUS_MNIST_MLP, args, "gs://cumulus-test/mlp-a", local.path.string(), -1);
        const auto b = run_job(CUMULUS_MNIST_MLP, args, "gs://cumulus-test/mlp-b", local.path.string(), 30);
        check_job_outputs("gs://cumulus-test/mlp-a", 80, false);
        check_job_outputs("gs://cumulus-test/mlp-b", 80, true);
        CHECK(contains(b.back(), "restored checkpoint gs://cumulus-test/mlp-b/checkpoints/ckpt-"));
        const std::string acc = last_line_with(a.back(), "Test accuracy");
        REQUIRE(!acc.empty());
        CHECK(last_line_with(b.back(), "Test accuracy") == acc);
        CHECK(io::fs::read_all(io::fs::join(export_dir("gs://cumulus-test/mlp-a"), "model.safetensors")) ==
              io::fs::read_all(io::fs::join(export_dir("gs://cumulus-test/mlp-b"), "model.safetensors")));
    }
    SUBCASE("cumulus-records into the bucket, then mnist_cnn --data_dir gs://... --job-dir gs://...") {
        // The tutorials' TFRecords, written by cumulus-records straight into the bucket.
        const std::string records = "gs://cumulus-test/data/records";
        const std::string cmd = "STORAGE_EMULATOR_HOST=" + fixture().emulator + " " + CUMULUS_RECORDS + " " + data +
                                " --directory " + records + " --validation-size 0 --compression gzip >" +
                                (local.path / "records.log").string() + " 2>&1";
        REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, read_text((local.path / "records.log").string()));
        const auto m = cumulus::data::load_mnist_from(records);
        CHECK(m.train.labels.numel() == 2000);
        CHECK(m.test.labels.numel() == 500);
        CHECK_FALSE(io::fs::exists(records + "/validation.tfrecords"));
        // Few, small steps: the CNN is slow on a CPU (and slower still under the sanitizers).
        const std::vector<std::string> args = {"--data_dir", records, "--train_steps", "12",
                                               "--train_batch_size", "20", "--eval_batch_size", "250",
                                               "--eval_every", "6", "--log_every", "3",
                                               "--checkpoint-every-steps", "3", "--checkpoint-every-secs", "0",
                                               "--keep-checkpoints", "3", "--seed", "5"};
        const auto a = run_job(CUMULUS_MNIST_CNN, args, "gs://cumulus-test/cnn-a", local.path.string(), -1);
        const auto b = run_job(CUMULUS_MNIST_CNN, args, "gs://cumulus-test/cnn-b", local.path.string(), 6);
        CHECK(contains(b.back(), "Resuming at step"));
        const std::string acc = last_line_with(a.back(), "Test accuracy");
        REQUIRE(!acc.empty());
        CHECK(last_line_with(b.back(), "Test accuracy") == acc);
        CHECK(io::fs::read_all(io::fs::join(export_dir("gs://cumulus-test/cnn-a"), "model.safetensors")) ==
              io::fs::read_all(io::fs::join(export_dir("gs://cumulus-test/cnn-b"), "model.safetensors")));
        for (const char* job : {"gs://cumulus-test/cnn-a", "gs://cumulus-test/cnn-b"}) {
            const auto steps = checkpoint_steps(std::string(job) + "/checkpoints");
            REQUIRE(!steps.empty());
            CHECK(steps.back() == 12);
            CHECK(io::fs::exists(io::fs::join(export_dir(job), "model.safetensors")));
        }
    }
}
