// cumulus-data inspect and cumulus-records against numpy and TensorFlow
// (tests/data/inspect_ref.py):
//   - every file in ../shared/data, and files numpy and TensorFlow write
//     (pickle_gen.py, tfrecord_gen.py, IDX of every type): `cumulus-data
//     inspect` prints what Python computes (sums to 1e-9 relative, everything
//     else exactly; set items in any order); files Python cannot load either
//     give exit status 1 and one stderr line;
//   - TensorFlow (TFRecordDataset + parse_single_example) reads what
//     cumulus-records writes, every compression, with and without validation.
// Needs a python with numpy and tensorflow (test_util::find_python); without
// one the test prints SKIPPED and exits 77 (under CI=true it fails instead).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>

#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include <cumulus/data/idx.hpp>
#include <cumulus/data/mnist.hpp>

#include "../test_util.hpp"
#include "mnist_test_util.hpp"

using namespace cumulus;
using nlohmann::json;
using test_util::shell_quote;
using test_util::TempDir;

namespace {

int run(const std::string& cmd) {
    const int st = std::system(cmd.c_str());
    return (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
}

std::string slurp(const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

const std::string& python() {
    static const std::string py = [] {
        std::string tried;
        std::string found = test_util::find_python("tensorflow", &tried);
        if (found.empty()) {
            test_util::skip_interop("no python with numpy and tensorflow (tried " + tried + ")");
        }
        return found;
    }();
    return py;
}

std::string script() { return std::string(CUMULUS_SOURCE_DIR) + "/tests/data/inspect_ref.py"; }

// Sets sort their items (Python's set order is not the file's).
json canonical(json j) {
    if (j.is_object()) {
        for (auto& [k, v] : j.items()) v = canonical(v);
        if (j.contains("type") && (j["type"] == "set" || j["type"] == "frozenset")) {
            auto& items = j["items"];
            std::sort(items.begin(), items.end(), [](const json& a, const json& b) { return a.dump() < b.dump(); });
        }
    } else if (j.is_array()) {
        for (auto& v : j) v = canonical(v);
    }
    return j;
}

// Where got and want differ ("" when they agree); "sum" numbers to 1e-9 relative.
std::string diff(const json& got, const json& want, const std::string& at, bool is_sum = false) {
    if (got.is_number() && want.is_number()) {
        const double g = got.get<double>(), w = want.get<double>();
        if (is_sum ? std::fabs(g - w) <= 1e-9 * std::max(1.0, std::fabs(w)) : g == w) {
            if (!is_sum && got.is_number_float() != want.is_number_float() && !(got.is_number_float() && g == std::trunc(g)))
                return at + ": number kinds differ: " + got.dump() + " vs " + want.dump();
            return "";
        }
        return at + ": " + got.dump() + " vs " + want.dump();
    }
    if (got.type() != want.type()) return at + ": " + got.dump().substr(0, 200) + " vs " + want.dump().substr(0, 200);
    if (got.is_object()) {
        if (got.size() != want.size()) return at + ": keys differ: " + got.dump().substr(0, 200) + " vs " + want.dump().substr(0, 200);
        for (auto& [k, v] : want.items()) {
            if (!got.contains(k)) return at + ": missing key " + k;
            if (auto d = diff(got[k], v, at + "." + k, k == "sum"); !d.empty()) return d;
        }
        return "";
    }
    if (got.is_array()) {
        if (got.size() != want.size()) return at + ": " + std::to_string(got.size()) + " vs " + std::to_string(want.size()) + " items";
        for (std::size_t i = 0; i < got.size(); ++i)
            if (auto d = diff(got[i], want[i], at + "[" + std::to_string(i) + "]"); !d.empty()) return d;
        return "";
    }
    return got == want ? "" : at + ": " + got.dump() + " vs " + want.dump();
}

}  // namespace

TEST_CASE("cumulus-data inspect agrees with numpy and TensorFlow") {
    const std::string py = python();
    TempDir dir;
    const std::string log = dir / "python.log";
    const int rc = run(shell_quote(py) + " " + shell_quote(script()) + " inspect " + shell_quote(dir.path.string()) +
                       " " + shell_quote(CUMULUS_TEST_DATA_DIR) + " >" + shell_quote(log) + " 2>&1");
    REQUIRE_MESSAGE(rc == 0, slurp(log));
    std::ifstream in(dir / "ref.jsonl");
    std::string line;
    int files = 0, errors = 0, shared = 0;
    while (std::getline(in, line)) {
        const json ref = json::parse(line);
        const std::string path = ref["path"];
        CAPTURE(path);
        ++files;
        shared += path.rfind(CUMULUS_TEST_DATA_DIR, 0) == 0;
        const std::string out = dir / "out.json", err = dir / "err.txt";
        const int st = run(shell_quote(CUMULUS_DATA_BIN) + " inspect --encoding " + ref["encoding"].get<std::string>() +
                           " " + shell_quote(path) + " >" + shell_quote(out) + " 2>" + shell_quote(err));
        const std::string e = slurp(err);
        if (ref["error"].get<bool>()) {
            ++errors;
            CHECK(st == 1);
            CHECK(std::count(e.begin(), e.end(), '\n') == 1);
            continue;
        }
        REQUIRE_MESSAGE(st == 0, e);
        const std::string d = diff(canonical(json::parse(slurp(out))), canonical(ref["ref"]), "json");
        CHECK_MESSAGE(d.empty(), d);
    }
    MESSAGE(files << " files compared (" << shared << " from shared/data, " << errors << " that must fail)");
    CHECK(files > 100);
    CHECK(shared == 15);
}

TEST_CASE("TensorFlow reads what cumulus-records writes") {
    const std::string py = python();
    TempDir dir;
    std::mt19937 rng(9);
    auto split = [&](std::int64_t n) { return test_util::random_mnist_split(n, rng); };
    const auto train = split(90), test = split(21);
    data::write_idx(dir / "train-images-idx3-ubyte", train.images);
    data::write_idx(dir / "train-labels-idx1-ubyte", train.labels);
    data::write_idx(dir / "t10k-images-idx3-ubyte", test.images);
    data::write_idx(dir / "t10k-labels-idx1-ubyte", test.labels);
    for (const std::string c : {"none", "gzip", "zlib"})
        for (const std::string v : {"0", "25"}) {
            const std::string out = dir / ("out_" + c + "_" + v);
            REQUIRE(run(shell_quote(CUMULUS_RECORDS_BIN) + " " + shell_quote(dir.path.string()) + " --directory " +
                        shell_quote(out) + " --compression " + c + " --validation-size " + v + " >/dev/null") == 0);
        }
    const std::string log = dir / "python.log";
    const int rc = run(shell_quote(py) + " " + shell_quote(script()) + " records " + shell_quote(dir.path.string()) +
                       " >" + shell_quote(log) + " 2>&1");
    const std::string out = slurp(log);
    CHECK_MESSAGE(rc == 0, out);
    MESSAGE(out.substr(std::min(out.rfind("OK:"), out.size())));
}
