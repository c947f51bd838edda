// Trainer outputs against the real Python tools (tests/train/trainer_interop.py):
// TensorBoard (pip) reads cumulus' event files and sees the same scalars, in
// both scalar forms, with a restarted run's orphaned steps dropped; the
// cloudml-hypertune library's metrics file equals ours except the timestamps.
//
// Python: $CUMULUS_PYTHON if set, else CUMULUS_SOURCE_DIR/.venv/bin/python
// (tools/setup-venv installs tensorflow, tensorboard and cloudml-hypertune).
// Without it the test prints "SKIPPED: ..." and exits 77, except in CI
// (CI=true), where a missing venv is a failure.
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <regex>
#include <sstream>

#include <sys/wait.h>

#include <doctest/doctest.h>

#include "../test_util.hpp"
#include "synthetic.hpp"

#include <cumulus/nn/dense.hpp>
#include <cumulus/optim/adam.hpp>
#include <cumulus/train/fit.hpp>
#include <cumulus/train/hypertune.hpp>
#include <cumulus/train/tensorboard.hpp>

using namespace cumulus;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

using Series = std::vector<std::pair<std::int64_t, float>>;
using Runs = std::map<std::string, std::map<std::string, Series>>;

using test_util::shell_quote;

std::string read_text(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

[[noreturn]] void skip(const std::string& why) { test_util::skip_interop(why); }

const std::vector<float> kValues = {2.5f, 1.0f / 3.0f, -0.0f, 1e-30f, 3.4e38f, -7.25f};
const std::vector<std::int64_t> kSteps = {0, 1, 2, 1000, std::int64_t{1} << 40, (std::int64_t{1} << 40) + 1};

void write_runs(const fs::path& logs, Runs& expected) {
    for (auto form : {io::ScalarForm::SimpleValue, io::ScalarForm::Tensor}) {
        const std::string run = form == io::ScalarForm::SimpleValue ? "simple" : "tensor";
        io::EventWriterOptions o;
        o.scalar_form = form;
        io::EventWriter w((logs / run).string(), o);
        for (std::size_t i = 0; i < kValues.size(); ++i) {
            w.add_scalars(kSteps[i], {{"loss", kValues[i]}, {"scope/acc", 1.0 - i / 8.0}});
            expected[run]["loss"].emplace_back(kSteps[i], kValues[i]);
            expected[run]["scope/acc"].emplace_back(kSteps[i], static_cast<float>(1.0 - i / 8.0));
        }
    }
    // A job killed after step 5, restarted from its checkpoint at step 3.
    {
        io::EventWriter a((logs / "restart").string());
        a.add_session_start(1);
        for (int s = 1; s <= 5; ++s) a.add_scalar("x", s, s);
        a.close();
        io::EventWriter b((logs / "restart").string());
        b.add_session_start(4);
        for (int s = 4; s <= 6; ++s) b.add_scalar("x", 10 * s, s);
        expected["restart"]["x"] = {{1, 1.f}, {2, 2.f}, {3, 3.f}, {4, 40.f}, {5, 50.f}, {6, 60.f}};
    }
    // A training run with the callback; expected: what our own reader sees.
    {
        auto data = synthetic::separable(200, 3, 4, 9);
        nn::Sequential<float> m(Shape{12}, 5);
        m.add(nn::Dense<float>(8, nn::Activation::ReLU));
        m.add(nn::Dense<float>(3, nn::Activation::Softmax));
        optim::Adam<float> opt(0.01f);
        train::TensorBoardOptions to;
        to.log_dir = (logs / "fit").string();
        train::TensorBoard<float> tb(to);
        train::FitOptions<float> fo;
        fo.epochs = 2;
        fo.batch_size = 50;
        fo.verbose = train::Verbosity::Silent;
        fo.validation = &data;
        fo.callbacks = {&tb};
        train::fit(m, opt, data, fo);
        tb.add_scalar("validation", "accuracy", 0.875, tb.step());
        tb.close();
        for (const char* run : {"train", "validation"}) {
            for (auto& f : fs::directory_iterator(logs / "fit" / run))
                for (auto& e : io::read_event_file(f.path().string()))
                    for (auto& [tag, v] : e.scalars) expected[std::string("fit/") + run][tag].emplace_back(e.step, v);
        }
        REQUIRE(expected["fit/train"]["batch_loss"].size() == 8);
        REQUIRE(expected["fit/validation"]["accuracy"].size() == 1);
    }
}

Runs runs_of(const json& j) {
    Runs r;
    for (auto& [run, tags] : j.items())
        for (auto& [tag, series] : tags.items())
            for (auto& p : series)
                r[run][tag].emplace_back(p.at(0).get<std::int64_t>(), static_cast<float>(p.at(1).get<double>()));
    return r;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

void check_runs(const std::string& reader, const Runs& got, const Runs& want) {
    CAPTURE(reader);
    std::vector<std::string> got_runs, want_runs;
    for (auto& [k, v] : got) got_runs.push_back(k);
    for (auto& [k, v] : want) want_runs.push_back(k);
    CHECK(got_runs == want_runs);
    for (auto& [run, tags] : want) {
        CAPTURE(run);
        REQUIRE(got.count(run));
        for (auto& [tag, series] : tags) {
            CAPTURE(tag);
            REQUIRE(got.at(run).count(tag));
            const auto& g = got.at(run).at(tag);
            REQUIRE(g.size() == series.size());
            for (std::size_t i = 0; i < g.size(); ++i) {
                CHECK(g[i].first == series[i].first);
                CHECK(same_bits(g[i].second, series[i].second));
            }
        }
        CHECK(got.at(run).size() == tags.size());
    }
}

std::string strip_timestamps(const std::string& s) {
    static const std::regex ts("\"timestamp\": [-+0-9.e]+");
    return std::regex_replace(s, ts, "\"timestamp\": T");
}

}  // namespace

TEST_CASE("TensorBoard and cloudml-hypertune read and write what cumulus does") {
    std::string py;
    if (const char* env = std::getenv("CUMULUS_PYTHON"); env != nullptr && *env != '\0')
        py = env;
    else if (fs::exists(fs::path(CUMULUS_SOURCE_DIR) / ".venv/bin/python"))
        py = (fs::path(CUMULUS_SOURCE_DIR) / ".venv/bin/python").string();
    else
        skip("no Python venv at " + std::string(CUMULUS_SOURCE_DIR) + "/.venv");
    const std::string script = std::string(CUMULUS_SOURCE_DIR) + "/tests/train/trainer_interop.py";
    REQUIRE(fs::exists(script));

    test_util::TempDir dir("cumulus_trainer_interop");
    Runs expected;
    write_runs(dir.path / "logs", expected);

    // Hypertune reports, through cumulus and through the library.
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    struct Report {
        std::string tag;
        double value;
        std::optional<std::int64_t> step;
        std::string path;
    };
    // 100 plain reports first, so the last 100 the file keeps end with the odd ones.
    std::vector<Report> reports;
    for (int i = 0; i < 100; ++i) reports.push_back({"val_accuracy", i / 7.0, i * 100, ""});
    const std::vector<Report> odd = {{"accuracy", 0.9352, 1000, ""},
                                   {"", 0.1, std::nullopt, ""},
                                   {"accuracy", 1.0 / 3.0, 0, "gs://b/ck \"q\"\\"},
                                   {"m\xc3\xa9trique \xf0\x9f\x98\x80", 1e-5, 5, "\xc3\xa9\t"},
                                   {"accuracy", 1e16, 7, ""},
                                   {"accuracy", static_cast<double>(0.9352f), 8, ""},
                                   {"loss", nan, 9, ""},
                                   {"loss", inf, 10, ""},
                                   {"loss", -inf, 11, ""},
                                   {"global_step", 0.5, 12, ""}};
    reports.insert(reports.end(), odd.begin(), odd.end());
    json spec = {{"trial", "7"}, {"reports", json::array()}};
    {
        train::HypertuneReporter r(train::map_env(
            {{"CLOUD_ML_HP_METRIC_FILE", (dir.path / "cc/output.metrics").string()}, {"CLOUD_ML_TRIAL_ID", "7"}}));
        for (const auto& rep : reports) {
            r.report(rep.tag, rep.value, rep.step, rep.path);
            json v = std::isnan(rep.value)   ? json("nan")
                     : std::isinf(rep.value) ? json(rep.value > 0 ? "inf" : "-inf")
                                             : json(rep.value);
            spec["reports"].push_back({rep.tag, v, rep.step ? json(*rep.step) : json(nullptr), rep.path});
        }
    }
    {
        std::ofstream f(dir.path / "reports.json");
        f << spec.dump();
    }

    const fs::path log = dir.path / "python.log";
    const int st = std::system((shell_quote(py) + " " + shell_quote(script) + " " + shell_quote(dir.path.string()) +
                                " >" + shell_quote(log.string()) + " 2>&1")
                                   .c_str());
    const int rc = (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
    const std::string out = read_text(log);
    if (rc == 77 || rc == 126 || rc == 127) skip(py + " cannot run the interop script (exit " + std::to_string(rc) +
                                                 "): " + out.substr(0, 300));
    REQUIRE_MESSAGE(rc == 0, "trainer_interop.py failed with exit ", rc, ":\n", out);
    MESSAGE(out);

    const json tb = json::parse(read_text(dir.path / "tb.json"));
    // The accumulators drop the killed run's steps 4 and 5; the raw iterator keeps them.
    // The TF1-era accumulator reads simple_value scalars only (tensor-form
    // scalars are its Tensors); the plugin accumulator, which the TensorBoard
    // server uses, reads both.
    Runs legacy = expected;
    legacy.erase("tensor");
    check_runs("accumulator", runs_of(tb.at("accumulator")), legacy);
    check_runs("plugin", runs_of(tb.at("plugin")), expected);
    Runs raw = expected;
    raw["restart"]["x"] = {{1, 1.f}, {2, 2.f}, {3, 3.f}, {4, 4.f}, {5, 5.f}, {4, 40.f}, {5, 50.f}, {6, 60.f}};
    check_runs("iterator", runs_of(tb.at("iterator")), raw);

    const std::string ours = read_text(dir.path / "cc/output.metrics");
    const std::string theirs = read_text(dir.path / "py/output.metrics");
    CHECK(std::count(ours.begin(), ours.end(), '\n') == 100);
    CHECK(ours != strip_timestamps(ours));
    CHECK(test_util::contains(ours, "\"m\\u00e9trique \\ud83d\\ude00\": \"1e-05\""));
    CHECK(strip_timestamps(ours) == strip_timestamps(theirs));
    if (strip_timestamps(ours) != strip_timestamps(theirs)) {
        std::istringstream a(ours), b(theirs);
        std::string la, lb;
        while (std::getline(a, la) && std::getline(b, lb))
            if (strip_timestamps(la) != strip_timestamps(lb)) {
                MESSAGE("first difference:\n  cumulus: ", la, "\n  library: ", lb);
                break;
            }
    }
}
