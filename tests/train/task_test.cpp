// Trainer-task conventions: flags, TF_CONFIG / CLUSTER_SPEC, AIP_* dirs, the
// logger, the hypertune file format and the TensorBoard event encoding.
#include <fstream>
#include <sstream>

#include <doctest/doctest.h>

#include "../test_util.hpp"

#include <cumulus/data/tfrecord.hpp>
#include <cumulus/io/tfevents.hpp>
#include <cumulus/train/hypertune.hpp>
#include <cumulus/train/task.hpp>
#include <cumulus/train/task_flags.hpp>

using namespace cumulus;
using test_util::contains;
using test_util::error_of;

namespace {

train::TaskConfig parse(std::vector<std::string> args, const std::map<std::string, std::string>& env = {}) {
    train::TaskConfig c;
    CLI::App app{"t"};
    train::add_task_flags(app, c);
    std::vector<const char*> argv{"prog"};
    for (auto& a : args) argv.push_back(a.c_str());
    app.parse(static_cast<int>(argv.size()), argv.data());
    train::resolve_task(c, train::map_env(env));
    train::Logger::global().set_level(train::LogLevel::Info);
    return c;
}

std::string read_text(const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

TEST_CASE("--job-dir in both forms, and the other common flags") {
    CHECK(parse({"--job-dir", "gs://b/job"}).job_dir == "gs://b/job");
    CHECK(parse({"--job-dir=gs://b/job"}).job_dir == "gs://b/job");
    CHECK(parse({"--job_dir=/tmp/x"}).job_dir == "/tmp/x");
    auto c = parse({"--job-dir=/tmp/j", "--verbosity", "debug", "--hypertune-metric-tag=val_acc",
                    "--checkpoint-every-steps", "50", "--checkpoint-every-secs=0", "--keep-checkpoints", "2"});
    CHECK(c.verbosity == "debug");
    CHECK(c.hypertune_metric_tag == "val_acc");
    CHECK(c.checkpoint_every_steps == 50);
    CHECK(c.checkpoint_every_secs == 0.0);
    CHECK(c.keep_checkpoints == 2);
    CHECK(c.output_dir == "/tmp/j");
    CHECK(c.checkpoint_dir == "/tmp/j/checkpoints");
    CHECK(c.log_dir == "/tmp/j/logs");
    CHECK(c.export_base_dir == "/tmp/j/export");
    CHECK(c.model_dir.empty());

    auto d = parse({});
    CHECK(d.hypertune_metric_tag == "accuracy");
    CHECK(d.verbosity == "INFO");
    CHECK(d.keep_checkpoints == 5);
    CHECK_FALSE(d.writes_checkpoints());
    CHECK_FALSE(d.writes_logs());
    CHECK_FALSE(d.writes_export());

    CHECK_THROWS_AS(parse({"--verbosity", "LOUD"}), CLI::ValidationError);
    CHECK_THROWS_AS(parse({"--keep-checkpoints", "0"}), CLI::ValidationError);
    CHECK_THROWS_AS(parse({"--checkpoint-every-steps", "-1"}), CLI::ValidationError);
}

TEST_CASE("TF_CONFIG of an AI Platform tuning trial: role, index, cluster, trial appended") {
    const std::string tf = R"({"cluster": {"master": ["cmle-training-master-e4-0:2222"],
        "worker": ["cmle-training-worker-e4-0:2222", "cmle-training-worker-e4-1:2222"],
        "ps": ["cmle-training-ps-e4-0:2222"]},
        "task": {"type": "worker", "index": 1, "trial": "3", "cloud": "x"},
        "job": {"scale_tier": "STANDARD_1"}, "environment": "cloud"})";
    auto c = parse({"--job-dir", "gs://b/job/"}, {{"TF_CONFIG", tf}});
    CHECK(c.cluster.source == "TF_CONFIG");
    CHECK(c.cluster.type == "worker");
    CHECK(c.cluster.index == 1);
    CHECK(c.cluster.trial == "3");
    CHECK(c.cluster.environment == "cloud");
    CHECK(c.cluster.cluster.at("worker").size() == 2);
    CHECK(c.cluster.cluster.at("ps").at(0) == "cmle-training-ps-e4-0:2222");
    CHECK(c.cluster.num_tasks() == 4);
    CHECK_FALSE(c.cluster.is_chief());
    CHECK(c.output_dir == "gs://b/job/3");
    CHECK(c.checkpoint_dir == "gs://b/job/3/checkpoints");
    CHECK(c.log_dir == "gs://b/job/3/logs");
    CHECK(c.export_base_dir == "gs://b/job/3/export");
    CHECK(contains(train::describe(c), "worker 1 of 4 (TF_CONFIG), trial 3"));

    // Numbers where strings are usual, and the chief.
    auto m = parse({"--job-dir=/j"}, {{"TF_CONFIG", R"({"cluster":{"chief":["h:1"]},"task":{"type":"chief","index":"0","trial":7}})"}});
    CHECK(m.cluster.is_chief());
    CHECK(m.output_dir == "/j/7");
    // Outside tuning nothing is appended; no TF_CONFIG: a local chief.
    CHECK(parse({"--job-dir=/j"}, {{"TF_CONFIG", R"({"task":{"type":"master","index":0}})"}}).output_dir == "/j");
    auto local = parse({"--job-dir=/j"});
    CHECK_FALSE(local.cluster.present());
    CHECK(local.cluster.is_chief());
}

TEST_CASE("CLUSTER_SPEC of Vertex AI and the AIP_* directories") {
    const std::string cs = R"({"cluster":{"workerpool0":["cmle-training-workerpool0-ab-0:2222"],
        "workerpool1":["cmle-training-workerpool1-ab-0:2222","cmle-training-workerpool1-ab-1:2222"]},
        "environment":"cloud","task":{"type":"workerpool0","index":0,"trial":"12"}})";
    auto c = parse({}, {{"CLUSTER_SPEC", cs},
                        {"AIP_MODEL_DIR", "gs://b/out/12/model/"},
                        {"AIP_CHECKPOINT_DIR", "gs://b/out/12/checkpoints/"},
                        {"AIP_TENSORBOARD_LOG_DIR", "gs://b/out/12/logs/"}});
    CHECK(c.cluster.source == "CLUSTER_SPEC");
    CHECK(c.cluster.type == "workerpool0");
    CHECK(c.cluster.is_chief());
    CHECK(c.cluster.trial == "12");
    CHECK(c.cluster.cluster.at("workerpool1").size() == 2);
    CHECK(c.output_dir.empty());  // Vertex passes no --job-dir
    CHECK(c.model_dir == "gs://b/out/12/model/");
    CHECK(c.checkpoint_dir == "gs://b/out/12/checkpoints/");
    CHECK(c.log_dir == "gs://b/out/12/logs/");
    CHECK(c.writes_export());
    // AIP_* win over --job-dir (they already hold the trial).
    auto d = parse({"--job-dir=/j"}, {{"AIP_CHECKPOINT_DIR", "/aip/ck"}});
    CHECK(d.checkpoint_dir == "/aip/ck");
    CHECK(d.log_dir == "/j/logs");
    // TF_CONFIG wins for the role; a trial only in CLUSTER_SPEC is still used.
    auto both = parse({"--job-dir=/j"}, {{"TF_CONFIG", R"({"task":{"type":"chief","index":0}})"}, {"CLUSTER_SPEC", cs}});
    CHECK(both.cluster.type == "chief");
    CHECK(both.output_dir == "/j/12");
}

TEST_CASE("bad TF_CONFIG is reported with the variable's name") {
    auto bad = [](const std::string& v) { return error_of([&] { train::parse_cluster_spec(v, "TF_CONFIG"); }); };
    CHECK(contains(bad("{"), "TF_CONFIG: not valid JSON"));
    CHECK(contains(bad("[1]"), "expected a JSON object"));
    CHECK(contains(bad(R"({"cluster":{"worker":"h:1"}})"), "cluster.worker must be a list"));
    CHECK(contains(bad(R"({"cluster":{"worker":[1]}})"), "\"host:port\" strings"));
    CHECK(contains(bad(R"({"task":{"index":"x"}})"), "bad task.index"));
    CHECK(contains(bad(R"({"task":{"index":-1}})"), "bad task.index"));
    CHECK(contains(bad(R"({"task":{"type":[]}})"), "task.type must be a string"));
    CHECK(contains(bad(R"({"cluster":{"worker":["a:1"]},"task":{"type":"worker","index":1}})"),
                   "worker 1 is not in the cluster"));
    CHECK(contains(bad(R"({"task":{"trial":"../x"}})"), "not a plain name"));
    // Empty or blank variables count as unset.
    CHECK_FALSE(train::cluster_from_env(train::map_env({{"TF_CONFIG", " "}})).present());
}

TEST_CASE("join_path and the logger") {
    CHECK(train::join_path("gs://b", "x") == "gs://b/x");
    CHECK(train::join_path("gs://b/", "/x") == "gs://b/x");
    CHECK(train::join_path("/a//", "b") == "/a/b");
    CHECK(train::join_path("", "b") == "b");
    CHECK(train::join_path("/", "b") == "/b");
    CHECK(train::is_url("gs://b/o"));
    CHECK_FALSE(train::is_url("/tmp/x"));

    std::ostringstream out;
    train::Logger log(train::LogLevel::Warn, &out);
    log.info("hidden");
    log.warn("shown ", 42);
    log.error("also");
    const std::string s = out.str();
    CHECK_FALSE(contains(s, "hidden"));
    CHECK(s.rfind("WARN ", 0) == 0);
    CHECK(contains(s, "Z shown 42\n"));
    CHECK(contains(s, "ERROR "));
    CHECK(train::parse_log_level("warning") == train::LogLevel::Warn);
    CHECK(train::parse_log_level("FATAL") == train::LogLevel::Error);
}

TEST_CASE("python_float_repr matches Python's repr(float)") {
    // Expected strings from CPython 3.11's repr().
    const std::vector<std::pair<double, std::string>> cases = {
        {0.0, "0.0"},         {-0.0, "-0.0"},        {1.0, "1.0"},
        {0.987, "0.987"},     {0.1, "0.1"},          {1.0 / 3.0, "0.3333333333333333"},
        {0.0001, "0.0001"},   {0.00001, "1e-05"},    {0.000123, "0.000123"},
        {1.5e-7, "1.5e-07"},  {123456.0, "123456.0"}, {1e15, "1000000000000000.0"},
        {9999999999999998.0, "9999999999999998.0"}, {1e16, "1e+16"}, {1.5e16, "1.5e+16"},
        {1e100, "1e+100"},    {-2.5, "-2.5"},        {1525851440.123456, "1525851440.123456"},
        {5e-324, "5e-324"},   {1.7976931348623157e308, "1.7976931348623157e+308"},
        {static_cast<double>(0.9352f), "0.9351999759674072"}};
    for (const auto& [v, want] : cases) {
        CAPTURE(want);
        CHECK(train::python_float_repr(v) == want);
    }
    CHECK(train::python_float_repr(std::numeric_limits<double>::infinity()) == "inf");
    CHECK(train::python_float_repr(-std::numeric_limits<double>::infinity()) == "-inf");
    CHECK(train::python_float_repr(std::nan("")) == "nan");
}

TEST_CASE("python_json_string escapes as json.dumps (ensure_ascii)") {
    CHECK(train::python_json_string("acc") == "\"acc\"");
    CHECK(train::python_json_string("a\"b\\c\n\t\x01\x7f") == "\"a\\\"b\\\\c\\n\\t\\u0001\\u007f\"");
    CHECK(train::python_json_string("\xc3\xa9") == "\"\\u00e9\"");
    CHECK(train::python_json_string("\xe2\x82\xac") == "\"\\u20ac\"");
    CHECK(train::python_json_string("\xf0\x9f\x98\x80") == "\"\\ud83d\\ude00\"");
    CHECK(contains(error_of([] { train::python_json_string("\xff"); }), "not valid UTF-8 at byte 0"));
    CHECK(contains(error_of([] { train::python_json_string("a\xc3"); }), "not valid UTF-8"));
    CHECK(contains(error_of([] { train::python_json_string("\xc0\x80"); }), "not valid UTF-8"));
    CHECK(contains(error_of([] { train::python_json_string("\xed\xa0\x80"); }), "not valid UTF-8"));
}

TEST_CASE("hypertune: the library's file, lines and 100-entry cap") {
    test_util::TempDir dir;
    const std::string path = dir / "sub/dir/output.metrics";
    train::HypertuneReporter r(train::map_env({{"CLOUD_ML_HP_METRIC_FILE", path}, {"CLOUD_ML_TRIAL_ID", "4"}}));
    CHECK(r.path() == path);
    CHECK(r.trial() == "4");
    r.report("accuracy", 0.987, 1000, "", 1525851440.123456);
    CHECK(read_text(path) ==
          "{\"accuracy\": \"0.987\", \"checkpoint_path\": \"\", \"global_step\": \"1000\", "
          "\"timestamp\": 1525851440.123456, \"trial\": \"4\"}\n");
    r.report("", 1.0, std::nullopt, "gs://b/ck", 2.5);
    const std::string two = read_text(path);
    CHECK(contains(two, "\n{\"checkpoint_path\": \"gs://b/ck\", \"global_step\": \"0\", "
                        "\"timestamp\": 2.5, \"training/hptuning/metric\": \"1.0\", \"trial\": \"4\"}\n"));
    for (int i = 0; i < 150; ++i) r.report("loss", i, i, "", 10.0 + i);
    const std::string all = read_text(path);
    CHECK(std::count(all.begin(), all.end(), '\n') == 100);
    CHECK(all.rfind("{\"checkpoint_path\": \"\", \"global_step\": \"50\", \"loss\": \"50.0\"", 0) == 0);
    // A fresh reporter (a restarted process) starts a new file, as the library does.
    train::HypertuneReporter again(train::map_env({{"CLOUD_ML_HP_METRIC_FILE", path}}));
    again.report("accuracy", 0.5, 3, "", 1.0);
    CHECK(read_text(path) == "{\"accuracy\": \"0.5\", \"checkpoint_path\": \"\", \"global_step\": \"3\", "
                             "\"timestamp\": 1.0, \"trial\": \"0\"}\n");
    // A tag equal to a fixed key is overwritten in the library's dict order.
    again.report("global_step", 0.25, 9, "", 1.0);
    CHECK(contains(read_text(path), "{\"checkpoint_path\": \"\", \"global_step\": \"9\", \"timestamp\": 1.0, "
                                    "\"trial\": \"0\"}\n"));
    train::HypertuneReporter defaults(train::map_env({}));
    CHECK(defaults.path() == "/tmp/hypertune/output.metrics");
    CHECK(defaults.trial() == "0");
}

TEST_CASE("TensorBoard events: formats.md test vectors") {
    CHECK(test_util::to_hex(io::encode_file_version_event(1.5)) == "09000000000000f83f1a0d627261696e2e4576656e743a32");
    CHECK(test_util::to_hex(io::encode_scalars_event(1.5, 3, {{"loss", 0.5}})) ==
          "09000000000000f83f10032a0d0a0b0a046c6f7373150000003f");
    CHECK(test_util::to_hex(io::encode_scalar_value("loss", 0.5f, io::ScalarForm::Tensor)) ==
          "0a046c6f73734a0d0a090a077363616c6172732001420a0801120022040000003f");
}

TEST_CASE("TensorBoard events: an event file written and read back") {
    test_util::TempDir dir;
    const std::string logdir = dir / "logs/train";
    std::string path;
    {
        io::EventWriter w(logdir);
        path = w.path();
        const std::string name = std::filesystem::path(path).filename().string();
        CHECK(name.rfind("events.out.tfevents.", 0) == 0);
        CHECK(name.size() > 31);
        CHECK(name.substr(30, 1) == ".");  // 10-digit seconds
        CHECK(contains(name, io::local_hostname()));
        // The first record is on disk before anything else is written.
        auto first = io::read_event_file(path);
        REQUIRE(first.size() == 1);
        CHECK(first[0].file_version == "brain.Event:2");
        CHECK(first[0].wall_time > 1.6e9);
        w.add_scalars(0, {{"loss", 2.25}, {"accuracy", 0.125}});
        w.add_scalar("loss", 1.5, 7);
        w.add_session_start(8);
        w.flush();
        // A second writer in the same second gets another name.
        io::EventWriter w2(logdir);
        CHECK(w2.path() != path);
    }
    auto ev = io::read_event_file(path);
    REQUIRE(ev.size() == 4);
    CHECK(ev[1].step == 0);
    REQUIRE(ev[1].scalars.size() == 2);
    CHECK(ev[1].scalars[0] == std::pair<std::string, float>("loss", 2.25f));
    CHECK(ev[1].scalars[1] == std::pair<std::string, float>("accuracy", 0.125f));
    CHECK(ev[2].step == 7);
    CHECK(ev[3].session_status == 1);
    CHECK(ev[3].step == 8);
    // The tensor form decodes to the same values.
    auto t = io::encode_scalars_event(1.0, 5, {{"x", -3.5}}, io::ScalarForm::Tensor);
    auto d = io::decode_event(t.data(), t.size());
    REQUIRE(d.scalars.size() == 1);
    CHECK(d.scalars[0].second == -3.5f);
}

TEST_CASE("TensorBoard events: real TensorFlow event files decode") {
    const std::string dir = std::string(CUMULUS_TEST_DATA_DIR) + "/tfevents/";
    auto a = io::read_event_file(dir + "events.out.tfevents.1459367088.Toms-MacBook-Pro.local");
    REQUIRE(a.size() == 202);
    CHECK(a[0].file_version == "brain.Event:1");
    REQUIRE(a[2].scalars.size() == 3);
    CHECK(a[2].step == 0);
    CHECK(a[2].scalars[2].first == "loss");
    CHECK(a[2].scalars[2].second == 101323.203125f);
    CHECK(a[201].step == 199);
    auto b = io::read_event_file(dir + "events.out.tfevents.1530785182.heguangzhongdeMacBook-Pro-2.local");
    REQUIRE(b.size() == 3);
    CHECK(b[0].file_version == "brain.Event:2");
    CHECK(b[1].step == 99);
    REQUIRE(b[1].scalars.size() == 1);  // the histograms are skipped
    CHECK(b[1].scalars[0].first == "Slope_Estimate/Slope_Estimate");
    CHECK(b[1].scalars[0].second == doctest::Approx(1.9301694));
    // A damaged record is an error naming the file.
    test_util::TempDir tmp;
    auto bytes = io::read_file(dir + "events.out.tfevents.1459367088.Toms-MacBook-Pro.local");
    bytes[100] ^= 0x40;
    const std::string bad = tmp / "events.out.tfevents.1.bad";
    io::write_file(bad, bytes);
    CHECK(contains(error_of([&] { io::read_event_file(bad); }), "events.out.tfevents.1.bad"));
}
