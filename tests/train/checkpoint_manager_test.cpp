// Checkpoints, resume after a kill (bit-identical final weights), keep-last-K,
// the TensorBoard callback's files and the export layout.
#include <cstring>
#include <fstream>
#include <sstream>

#include <doctest/doctest.h>

#include "../test_util.hpp"
#include "synthetic.hpp"

#include <cumulus/nn/dense.hpp>
#include <cumulus/nn/dropout.hpp>
#include <cumulus/optim/adam.hpp>
#include <cumulus/optim/rmsprop.hpp>
#include <cumulus/train/checkpoint_manager.hpp>
#include <cumulus/train/export.hpp>
#include <cumulus/train/fit.hpp>
#include <cumulus/train/tensorboard.hpp>

using namespace cumulus;
using test_util::contains;
using test_util::error_of;
namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t kSeed = 11;

nn::Sequential<float> mlp() {
    nn::Sequential<float> m(Shape{20}, kSeed);
    m.add(nn::Dense<float>(16, nn::Activation::ReLU));
    m.add(nn::Dropout<float>(0.25f));
    m.add(nn::Dense<float>(4, nn::Activation::Softmax));
    return m;
}

// 300 examples in batches of 32: 10 batches an epoch, the last one short.
const data::Dataset& dataset() {
    static const data::Dataset d = synthetic::separable(300, 4, 5, 3);
    return d;
}

train::FitOptions<float> options(int epochs) {
    train::FitOptions<float> o;
    o.epochs = epochs;
    o.batch_size = 32;
    o.seed = kSeed;
    o.verbose = train::Verbosity::Silent;
    return o;
}

std::vector<float> weights(nn::Sequential<float>& m) {
    std::vector<float> w;
    for (auto* p : m.parameters()) {
        auto v = p->value.to_vector();
        w.insert(w.end(), v.begin(), v.end());
    }
    return w;
}

bool bit_identical(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Throws after a given step: the process dies there (no on_train_end).
struct KillAt : train::Callback<float> {
    explicit KillAt(std::int64_t s) : step(s) {}
    std::int64_t step;
    void on_batch_end(const train::BatchLogs& l) override {
        if (l.step == step) throw std::runtime_error("killed");
    }
};

// Asks fit to stop after a given step (a graceful stop: on_train_end runs).
struct StopAt : train::Callback<float> {
    explicit StopAt(std::int64_t s) : step(s) {}
    std::int64_t step;
    void on_batch_end(const train::BatchLogs& l) override {
        if (l.step == step) stop_training = true;
    }
};

struct Uninterrupted {
    std::vector<float> w;
    std::int64_t iterations = 0;
};

Uninterrupted uninterrupted(int epochs) {
    auto m = mlp();
    optim::Adam<float> opt(0.01f);
    train::fit(m, opt, dataset(), options(epochs));
    return {weights(m), opt.iterations()};
}

train::CheckpointOptions ck(const std::string& dir, std::int64_t every, int keep) {
    train::CheckpointOptions o;
    o.dir = dir;
    o.every_steps = every;
    o.keep = keep;
    o.seed = kSeed;
    return o;
}

// One process lifetime: restore what is there, train, die at `kill_at` (0: never).
std::vector<float> run_once(const std::string& dir, int epochs, std::int64_t every, int keep, std::int64_t kill_at,
                            std::optional<train::ResumePoint>* resumed = nullptr) {
    auto m = mlp();
    optim::Adam<float> opt(0.01f);
    train::CheckpointManager<float> mgr(ck(dir, every, keep));
    auto rp = mgr.restore_latest(m, opt);
    if (resumed) *resumed = rp;
    auto fo = options(epochs);
    mgr.apply(fo);
    KillAt kill(kill_at);
    fo.callbacks.push_back(&mgr);
    if (kill_at > 0) fo.callbacks.push_back(&kill);
    try {
        train::fit(m, opt, dataset(), fo);
    } catch (const std::runtime_error& e) {
        if (std::string(e.what()) != "killed") throw;
    }
    return weights(m);
}

std::string read_text(const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

TEST_CASE("killed mid-epoch and restarted: the same final weights, bit for bit") {
    const auto ref = uninterrupted(3);  // 30 steps
    REQUIRE(ref.iterations == 30);
    test_util::TempDir dir;
    const std::string ckdir = dir / "checkpoints";

    std::optional<train::ResumePoint> rp;
    run_once(ckdir, 3, 4, 2, 13, &rp);  // dies after step 13, mid epoch 2
    CHECK_FALSE(rp);
    CHECK(train::list_checkpoints(ckdir) == std::vector<std::int64_t>{8, 12});  // keep 2

    run_once(ckdir, 3, 4, 2, 23, &rp);  // resumes at 12, dies again after 23
    REQUIRE(rp);
    CHECK(rp->epoch == 1);
    CHECK(rp->batch == 2);
    CHECK(rp->step == 12);
    CHECK(rp->seed == kSeed);
    CHECK(train::list_checkpoints(ckdir) == std::vector<std::int64_t>{16, 20});

    auto final_w = run_once(ckdir, 3, 4, 2, 0, &rp);
    REQUIRE(rp);
    CHECK(rp->step == 20);
    CHECK(bit_identical(final_w, ref.w));
    // Saved at 24, 28 and at the end (30); the last two kept.
    CHECK(train::list_checkpoints(ckdir) == std::vector<std::int64_t>{28, 30});

    // Started once more after it finished: nothing left to do, same weights.
    auto again = run_once(ckdir, 3, 4, 2, 0, &rp);
    REQUIRE(rp);
    CHECK(rp->step == 30);
    CHECK(bit_identical(again, ref.w));
}

TEST_CASE("a checkpoint on an epoch's last batch resumes at the next epoch") {
    const auto ref = uninterrupted(2);
    test_util::TempDir dir;
    std::optional<train::ResumePoint> rp;
    run_once(dir.path.string(), 2, 10, 3, 14, &rp);  // checkpoint at 10 = end of epoch 0
    CHECK(train::list_checkpoints(dir.path.string()) == std::vector<std::int64_t>{10});
    auto w = run_once(dir.path.string(), 2, 10, 3, 0, &rp);
    REQUIRE(rp);
    CHECK(rp->epoch == 0);
    CHECK(rp->batch == 10);
    CHECK(bit_identical(w, ref.w));

    // Skipping the same batches without the checkpoint's weights and
    // optimizer state ends elsewhere: the check above is not vacuous.
    auto m = mlp();
    optim::Adam<float> opt(0.01f);
    auto fo = options(2);
    fo.initial_epoch = 1;
    fo.initial_batch = 4;
    train::fit(m, opt, dataset(), fo);
    CHECK_FALSE(bit_identical(weights(m), ref.w));
}

TEST_CASE("a graceful stop saves at the end; time-based checkpoints; explicit save") {
    test_util::TempDir dir;
    auto m = mlp();
    optim::Adam<float> opt(0.01f);
    auto o = ck(dir.path.string(), 0, 5);
    o.every_secs = 1e-9;  // every step
    train::CheckpointManager<float> mgr(o);
    StopAt stop(7);
    auto fo = options(3);
    fo.callbacks = {&mgr, &stop};
    train::fit(m, opt, dataset(), fo);
    CHECK(train::list_checkpoints(dir.path.string()) == std::vector<std::int64_t>{3, 4, 5, 6, 7});
    CHECK(mgr.last_path() == mgr.path_of(7));
    CHECK(fs::exists(dir / "ckpt-7.safetensors"));
    CHECK_FALSE(fs::exists(dir / "ckpt-7.safetensors.tmp"));
}

TEST_CASE("restore: damaged newest checkpoint skipped, wrong seed or optimizer refused") {
    std::ostringstream log;
    train::Logger::global().set_stream(&log);
    test_util::TempDir dir;
    run_once(dir.path.string(), 2, 5, 3, 0);
    CHECK(train::list_checkpoints(dir.path.string()) == std::vector<std::int64_t>{10, 15, 20});
    // Truncate the newest: the one before is used.
    {
        auto bytes = io::read_file(dir / "ckpt-20.safetensors");
        bytes.resize(bytes.size() / 2);
        io::write_file(dir / "ckpt-20.safetensors", bytes);
    }
    auto m = mlp();
    optim::Adam<float> opt(0.01f);
    train::CheckpointManager<float> mgr(ck(dir.path.string(), 5, 3));
    auto rp = mgr.restore_latest(m, opt);
    CHECK(contains(log.str(), "WARN"));
    CHECK(contains(log.str(), "skipping unreadable checkpoint"));
    REQUIRE(rp);
    CHECK(rp->step == 15);
    CHECK(opt.iterations() == 15);

    auto o = ck(dir.path.string(), 5, 3);
    o.seed = 99;
    train::CheckpointManager<float> other_seed(o);
    auto m2 = mlp();
    optim::Adam<float> opt2(0.01f);
    CHECK(contains(error_of([&] { other_seed.restore_latest(m2, opt2); }), "was saved with seed 11"));

    // Another optimizer's state is not loaded (every checkpoint is skipped).
    optim::RMSprop<float> rms(0.01f);
    train::CheckpointManager<float> mgr3(ck(dir.path.string(), 5, 3));
    CHECK_FALSE(mgr3.restore_latest(m2, rms));
    CHECK(contains(log.str(), "holds Adam state, but training uses RMSprop"));

    // Names that are not checkpoints are ignored.
    CHECK_FALSE(train::checkpoint_step_of("ckpt-.safetensors"));
    CHECK_FALSE(train::checkpoint_step_of("ckpt-12.safetensors.tmp"));
    CHECK_FALSE(train::checkpoint_step_of("ckpt-1x.safetensors"));
    CHECK(train::checkpoint_step_of("ckpt-0012.safetensors") == 12);
    // An empty directory (or none) has nothing to restore.
    train::CheckpointManager<float> none(ck(dir / "missing", 5, 3));
    CHECK_FALSE(none.restore_latest(m2, opt2));
    train::Logger::global().set_stream(&std::cerr);
}

TEST_CASE("TensorBoard callback: train and validation runs with the fit's values") {
    test_util::TempDir dir;
    auto m = mlp();
    optim::Adam<float> opt(0.01f);
    train::TensorBoardOptions to;
    to.log_dir = dir / "logs";
    to.update_freq = 3;
    train::TensorBoard<float> tb(to);
    std::vector<train::BatchLogs> batches;
    struct Record : train::Callback<float> {
        std::vector<train::BatchLogs>* out;
        void on_batch_end(const train::BatchLogs& l) override { out->push_back(l); }
    } rec;
    rec.out = &batches;
    auto fo = options(2);
    fo.validation = &dataset();
    fo.callbacks = {&tb, &rec};
    auto h = train::fit(m, opt, dataset(), fo);
    tb.add_scalar("validation", "accuracy", 0.75, tb.step());
    tb.close();

    auto files = [&](const std::string& run) {
        std::vector<std::string> v;
        for (auto& e : fs::directory_iterator(dir.path / "logs" / run)) v.push_back(e.path().string());
        return v;
    };
    auto tr = files("train");
    REQUIRE(tr.size() == 1);
    auto ev = io::read_event_file(tr[0]);
    REQUIRE(!ev.empty());
    CHECK(ev[0].file_version == "brain.Event:2");
    std::map<std::string, std::vector<std::pair<std::int64_t, float>>> series;
    for (auto& e : ev)
        for (auto& [tag, v] : e.scalars) series[tag].emplace_back(e.step, v);
    REQUIRE(series["batch_loss"].size() == 6);  // steps 3, 6, ..., 18 of 20
    for (std::size_t i = 0; i < 6; ++i) {
        const auto& b = batches[3 * i + 2];
        CHECK(series["batch_loss"][i].first == b.step);
        CHECK(series["batch_loss"][i].second == static_cast<float>(b.loss));
        CHECK(series["batch_accuracy"][i].second == static_cast<float>(b.accuracy));
        CHECK(series["learning_rate"][i].second == 0.01f);
    }
    CHECK(series["examples_per_second"].size() == 6);
    REQUIRE(series["epoch_loss"].size() == 2);
    CHECK(series["epoch_loss"][0].first == 10);
    CHECK(series["epoch_loss"][1].first == 20);
    CHECK(series["epoch_loss"][1].second == static_cast<float>(h.epochs[1].loss));
    CHECK(series["epoch_accuracy"][0].second == static_cast<float>(h.epochs[0].accuracy));
    CHECK(series["epoch_examples_per_second"].size() == 2);

    auto va = files("validation");
    REQUIRE(va.size() == 1);
    std::map<std::string, std::vector<std::pair<std::int64_t, float>>> vs;
    for (auto& e : io::read_event_file(va[0]))
        for (auto& [tag, v] : e.scalars) vs[tag].emplace_back(e.step, v);
    REQUIRE(vs["epoch_accuracy"].size() == 2);
    CHECK(vs["epoch_accuracy"][1].second == static_cast<float>(*h.epochs[1].val_accuracy));
    CHECK(vs["epoch_loss"][0].second == static_cast<float>(*h.epochs[0].val_loss));
    REQUIRE(vs["accuracy"].size() == 1);
    CHECK(vs["accuracy"][0] == std::pair<std::int64_t, float>(20, 0.75f));

    // A resumed run marks its restart so TensorBoard drops orphaned steps.
    train::TensorBoard<float> tb2(to);
    optim::Adam<float> resumed(0.01f);
    resumed.set_iterations(12);
    tb2.on_train_begin(m, resumed);
    tb2.close();
    std::vector<std::int64_t> starts;
    for (auto& f : files("train"))
        for (auto& e : io::read_event_file(f))
            if (e.session_status == 1) starts.push_back(e.step);
    std::sort(starts.begin(), starts.end());
    CHECK(starts == std::vector<std::int64_t>{1, 13});
}

TEST_CASE("export: <job-dir>/export/<timestamp>/ with weights, architecture and signature") {
    test_util::TempDir dir;
    auto m = mlp();
    optim::Adam<float> opt(0.01f);
    train::fit(m, opt, dataset(), options(1));
    train::TaskConfig c;
    c.job_dir = dir / "job";
    train::resolve_task(c, train::map_env({}));
    const std::string out = train::export_model(m, c);
    REQUIRE(!out.empty());
    CHECK(fs::path(out).parent_path() == dir.path / "job" / "export");
    const std::string stamp = fs::path(out).filename().string();
    CHECK(stamp.size() == 10);
    CHECK(stamp.find_first_not_of("0123456789") == std::string::npos);
    CHECK(fs::exists(fs::path(out) / "model.json"));
    CHECK(fs::exists(fs::path(out) / "model.safetensors"));
    auto sig = nlohmann::json::parse(read_text((fs::path(out) / "signature.json").string()));
    const auto& s = sig.at("signatures").at("serving_default");
    CHECK(s.at("inputs").at("inputs").at("dtype") == "float32");
    CHECK(s.at("inputs").at("inputs").at("shape") == nlohmann::json::parse("[null, 20]"));
    CHECK(s.at("outputs").at("classes").at("dtype") == "int64");
    CHECK(s.at("outputs").at("probabilities").at("shape") == nlohmann::json::parse("[null, 4]"));
    CHECK(sig.at("signatures").at("prediction") == s);
    // The exported model predicts as the trained one.
    auto back = io::load_model<float>(out);
    auto p1 = train::predict(m, dataset()).to_vector();
    auto p2 = train::predict(back, dataset()).to_vector();
    CHECK(bit_identical(p1, p2));
    // A second export in the same second gets the next second.
    const std::string out2 = train::export_model(m, c);
    CHECK(out2 != out);
    // With AIP_MODEL_DIR, straight there.
    train::TaskConfig v;
    train::resolve_task(v, train::map_env({{"AIP_MODEL_DIR", dir / "aip/model"}}));
    CHECK(train::export_model(m, v) == dir / "aip/model");
    CHECK(fs::exists(dir.path / "aip/model/signature.json"));
    // No output directory: nothing exported.
    train::TaskConfig none;
    train::resolve_task(none, train::map_env({}));
    CHECK(train::export_model(m, none).empty());
}
