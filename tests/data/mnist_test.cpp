#include <doctest/doctest.h>

#include "../test_util.hpp"

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <cumulus/data/idx.hpp>
#include <cumulus/data/mnist.hpp>
#include <cumulus/io/gzip.hpp>

using cumulus::Error;
using cumulus::Tensor;
using Bytes = std::vector<std::uint8_t>;
namespace fs = std::filesystem;
namespace data = cumulus::data;
namespace io = cumulus::io;
using data::MnistKind;

namespace {

using test_util::contains;
using test_util::error_of;
using test_util::TempDir;

// Sets (or unsets, for nullptr) an environment variable for one scope.
struct EnvGuard {
    std::string name;
    std::string old;
    bool had;
    EnvGuard(const char* n, const char* value) : name(n) {
        const char* o = std::getenv(n);
        had = o != nullptr;
        if (had) old = o;
        if (value != nullptr) ::setenv(n, value, 1);
        else ::unsetenv(n);
    }
    ~EnvGuard() {
        if (had) ::setenv(name.c_str(), old.c_str(), 1);
        else ::unsetenv(name.c_str());
    }
};

struct CwdGuard {
    fs::path old = fs::current_path();
    explicit CwdGuard(const fs::path& to) { fs::current_path(to); }
    ~CwdGuard() { fs::current_path(old); }
};

std::vector<std::uint8_t> head(const Tensor<std::uint8_t>& t, std::size_t n) {
    std::vector<std::uint8_t> v = t.to_vector();
    return {v.begin(), v.begin() + std::min(n, v.size())};
}

std::vector<std::int64_t> class_counts(const Tensor<std::uint8_t>& labels) {
    std::vector<std::int64_t> c(10, 0);
    for (std::int64_t i = 0; i < labels.numel(); ++i) c.at(labels[i])++;
    return c;
}

std::int64_t pixel_sum(const Tensor<std::uint8_t>& images) {
    std::int64_t s = 0;
    for (std::int64_t i = 0; i < images.numel(); ++i) s += images[i];
    return s;
}

// A small fake data set: n images (side x side) and n labels, optionally gzipped.
void write_fake(const std::string& dir, std::int64_t n_train, std::int64_t n_test, bool gz, int side = 28,
                std::uint8_t bad_label_at = 255) {
    fs::create_directories(dir);
    for (auto [prefix, n] : {std::pair<std::string, std::int64_t>{"train", n_train}, {"t10k", n_test}}) {
        std::vector<std::uint8_t> px(static_cast<std::size_t>(n * side * side));
        for (std::size_t i = 0; i < px.size(); ++i) px[i] = std::uint8_t(i * 7);
        std::vector<std::uint8_t> lb(static_cast<std::size_t>(n));
        for (std::size_t i = 0; i < lb.size(); ++i) lb[i] = std::uint8_t(i % 10);
        if (prefix == "train" && bad_label_at < lb.size()) lb[bad_label_at] = 12;
        const std::string ext = gz ? ".gz" : "";
        data::write_idx(dir + "/" + prefix + "-images-idx3-ubyte" + ext, data::make_idx<std::uint8_t>({n, side, side}, px),
                        gz);
        data::write_idx(dir + "/" + prefix + "-labels-idx1-ubyte" + ext, data::make_idx<std::uint8_t>({n}, lb), gz);
    }
}

// Runs a shell command; returns its exit status, and its output in `out`.
int run(const std::string& cmd, const std::string& log, std::string& out) {
    int status = std::system((cmd + " >'" + log + "' 2>&1").c_str());
    std::ifstream f(log);
    std::stringstream ss;
    ss << f.rdbuf();
    out = ss.str();
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("load_mnist reads the real MNIST files") {
    const std::string dir = std::string(CUMULUS_TEST_DATA_DIR) + "/mnist";
    data::Mnist m = data::load_mnist(MnistKind::mnist, dir);
    CHECK(m.dir == dir);
    REQUIRE(m.train.images.shape() == cumulus::Shape{60000, 28, 28});
    REQUIRE(m.train.labels.shape() == cumulus::Shape{60000});
    REQUIRE(m.test.images.shape() == cumulus::Shape{10000, 28, 28});
    REQUIRE(m.test.labels.shape() == cumulus::Shape{10000});

    CHECK(head(m.train.labels, 10) == std::vector<std::uint8_t>{5, 0, 4, 1, 9, 2, 1, 3, 1, 4});
    CHECK(head(m.test.labels, 10) == std::vector<std::uint8_t>{7, 2, 1, 0, 4, 1, 4, 9, 5, 9});
    CHECK(class_counts(m.train.labels) ==
          std::vector<std::int64_t>{5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949});
    CHECK(class_counts(m.test.labels) ==
          std::vector<std::int64_t>{980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009});
    CHECK(pixel_sum(m.train.images) == 1567298545);
    CHECK(pixel_sum(m.test.images) == 264923200);
    CHECK(pixel_sum(m.train.images.slice(0, 1)) == 27525);
    CHECK(pixel_sum(m.train.images.slice(59999, 60000)) == 20920);
    CHECK(m.train.images.at(0, 14, 14) == 240);
    CHECK(m.train.images.at(0, 14, 13) == 81);
    CHECK(m.train.images.at(0, 14, 19) == 0);
}

TEST_CASE("load_mnist reads Fashion-MNIST when it is installed") {
    const std::string dir = "/usr/share/datasets/fashion-mnist";
    if (!data::detail::mnist_missing_files(dir).empty()) {
        MESSAGE("skipped: Fashion-MNIST not installed in " << dir << " (apt-get install dataset-fashion-mnist)");
        return;
    }
    data::Mnist m = data::load_mnist(MnistKind::fashion, dir);
    REQUIRE(m.train.images.shape() == cumulus::Shape{60000, 28, 28});
    REQUIRE(m.test.images.shape() == cumulus::Shape{10000, 28, 28});
    CHECK(head(m.train.labels, 10) == std::vector<std::uint8_t>{9, 0, 0, 3, 0, 2, 7, 2, 5, 5});
    CHECK(head(m.test.labels, 10) == std::vector<std::uint8_t>{9, 2, 1, 1, 6, 1, 4, 6, 5, 7});
    CHECK(class_counts(m.train.labels) == std::vector<std::int64_t>(10, 6000));
    CHECK(class_counts(m.test.labels) == std::vector<std::int64_t>(10, 1000));
    CHECK(pixel_sum(m.train.images) == 3431114169);
    CHECK(pixel_sum(m.test.images) == 573469082);
    CHECK(pixel_sum(m.train.images.slice(0, 1)) == 76247);
}

TEST_CASE("find_mnist_dir: the flag, then the search path in order") {
    TempDir tmp;
    fs::create_directories(tmp.path / "work");
    CwdGuard cwd(tmp.path / "work");  // ./data/... and ../shared/data/... now point into tmp
    EnvGuard env("CUMULUS_DATA_DIR", nullptr);

    SUBCASE("nothing found: every place is listed, with how to get the data") {
        std::string msg = error_of([] { data::find_mnist_dir(MnistKind::mnist); });
        CAPTURE(msg);
        CHECK(contains(msg, "MNIST not found"));
        CHECK(contains(msg, "./data/mnist (no files)"));
        CHECK(contains(msg, "../shared/data/mnist (no files)"));
        CHECK(contains(msg, "tools/download-mnist"));
        CHECK(contains(msg, (tmp.path / "work").string()));

        EnvGuard env2("CUMULUS_DATA_DIR", (tmp.path / "elsewhere").c_str());
        msg = error_of([] { data::load_mnist(MnistKind::mnist); });
        CHECK(contains(msg, (tmp.path / "elsewhere" / "mnist").string()));
        CHECK(data::mnist_search_path(MnistKind::fashion) ==
              std::vector<std::string>{(tmp.path / "elsewhere" / "fashion-mnist").string(), "./data/fashion-mnist",
                                       "/usr/share/datasets/fashion-mnist", "../shared/data/fashion-mnist"});
    }
    SUBCASE("an incomplete directory is named with what it lacks") {
        write_fake(tmp / "work/data/mnist", 3, 2, true);
        fs::remove(tmp.path / "work/data/mnist/t10k-labels-idx1-ubyte.gz");
        std::string msg = error_of([] { data::find_mnist_dir(MnistKind::mnist); });
        CHECK(contains(msg, "./data/mnist (lacks t10k-labels-idx1-ubyte[.gz])"));
        msg = error_of([] { data::find_mnist_dir(MnistKind::mnist, "data/mnist"); });
        CHECK(contains(msg, "'data/mnist', lacks t10k-labels-idx1-ubyte[.gz]"));
        CHECK(contains(msg, "tools/download-mnist"));
        msg = error_of([] { data::find_mnist_dir(MnistKind::fashion, "data/mnist"); });
        CHECK(contains(msg, "apt-get install dataset-fashion-mnist"));
    }
    SUBCASE("search order: env, ./data, ../shared/data") {
        write_fake(tmp / "shared/data/mnist", 3, 2, false);
        CHECK(data::find_mnist_dir(MnistKind::mnist) == "../shared/data/mnist");
        write_fake(tmp / "work/data/mnist", 4, 2, true);
        CHECK(data::find_mnist_dir(MnistKind::mnist) == "./data/mnist");
        write_fake(tmp / "env/mnist", 5, 2, true);
        EnvGuard env2("CUMULUS_DATA_DIR", (tmp.path / "env").c_str());
        CHECK(data::find_mnist_dir(MnistKind::mnist) == (tmp.path / "env" / "mnist").string());
        CHECK(data::load_mnist(MnistKind::mnist).train.images.dim(0) == 5);
        // A flag wins over everything, even when the search path would find data.
        CHECK(data::load_mnist(MnistKind::mnist, "../shared/data/mnist").train.images.dim(0) == 3);
    }
    SUBCASE("fashion looks in its own directories") {
        write_fake(tmp / "work/data/fashion-mnist", 3, 2, false);
        CHECK(data::find_mnist_dir(MnistKind::fashion) == "./data/fashion-mnist");
        CHECK_THROWS_AS(data::find_mnist_dir(MnistKind::mnist), Error);
    }
}

TEST_CASE("load_mnist checks what it loads") {
    TempDir tmp;
    SUBCASE("plain files are preferred over .gz, either works") {
        write_fake(tmp / "d", 4, 3, true);
        write_fake(tmp / "d", 6, 3, false);
        data::Mnist m = data::load_mnist(MnistKind::mnist, tmp / "d");
        CHECK(m.train.images.dim(0) == 6);
        CHECK(data::mnist_file(tmp / "d", "train-images-idx3-ubyte") == tmp / "d/train-images-idx3-ubyte");
        fs::remove(tmp.path / "d/train-images-idx3-ubyte");
        CHECK(data::mnist_file(tmp / "d", "train-images-idx3-ubyte") == tmp / "d/train-images-idx3-ubyte.gz");
    }
    SUBCASE("a label out of range names the file and the record") {
        write_fake(tmp / "d", 20, 3, true, 28, 13);
        std::string msg = error_of([&] { data::load_mnist(MnistKind::mnist, tmp / "d"); });
        CHECK(contains(msg, "train-labels-idx1-ubyte.gz"));
        CHECK(contains(msg, "label 12 at record 13"));
    }
    SUBCASE("image and label counts must agree") {
        write_fake(tmp / "d", 5, 3, false);
        data::write_idx(tmp / "d/t10k-labels-idx1-ubyte", data::make_idx<std::uint8_t>({4}, Bytes(4, 1)));
        std::string msg = error_of([&] { data::load_mnist(MnistKind::mnist, tmp / "d"); });
        CHECK(contains(msg, "t10k-images-idx3-ubyte holds 3 images but"));
        CHECK(contains(msg, "t10k-labels-idx1-ubyte holds 4 labels"));
    }
    SUBCASE("images must be 28x28") {
        write_fake(tmp / "d", 5, 3, true, 32);
        CHECK(contains(error_of([&] { data::load_mnist(MnistKind::mnist, tmp / "d"); }),
                       "expected 28x28 images, found shape (5, 32, 32)"));
    }
    SUBCASE("a damaged file is reported by name") {
        write_fake(tmp / "d", 5, 3, true);
        Bytes z = io::read_file(tmp / "d/train-images-idx3-ubyte.gz");
        z.resize(z.size() / 2);
        io::write_file(tmp / "d/train-images-idx3-ubyte.gz", z);
        std::string msg = error_of([&] { data::load_mnist(MnistKind::mnist, tmp / "d"); });
        CHECK(contains(msg, "train-images-idx3-ubyte.gz"));
        CHECK(contains(msg, "truncated gzip data"));
    }
}

TEST_CASE("tools/download-mnist fetches from a mirror and checks sha256") {
    const std::string script = std::string(CUMULUS_SOURCE_DIR) + "/tools/download-mnist";
    const std::string shared = std::string(CUMULUS_TEST_DATA_DIR) + "/mnist";
    REQUIRE(fs::exists(script));
    TempDir tmp;
    const std::string target = tmp / "m", log = tmp / "log";
    std::string out;

    CHECK(run("'" + script + "' --help", log, out) == 0);
    CHECK(contains(out, "MNIST_MIRROR"));
    CHECK(run("'" + script + "' --bogus", log, out) == 2);

    // A fresh download from a local mirror; the files match the originals.
    REQUIRE(run("MNIST_MIRROR='file://" + shared + "/' '" + script + "' '" + target + "'", log, out) == 0);
    CAPTURE(out);
    for (const auto& f : data::mnist_file_names())
        CHECK(io::read_file(target + "/" + f + ".gz") == io::read_file(shared + "/" + f + ".gz"));
    CHECK(data::find_mnist_dir(MnistKind::mnist, target) == target);

    // Files already present and correct are not fetched again (the mirror is unreachable).
    CHECK(run("MNIST_MIRROR='file://" + tmp / "nowhere" + "' '" + script + "' '" + target + "'", log, out) == 0);
    CHECK(contains(out, "already present"));

    // A corrupted mirror: the bad download is deleted and the script fails.
    fs::create_directories(tmp.path / "bad");
    Bytes labels = io::read_file(shared + "/t10k-labels-idx1-ubyte.gz");
    labels[100] ^= 1;
    io::write_file(tmp / "bad/t10k-labels-idx1-ubyte.gz", labels);
    fs::remove(target + "/t10k-labels-idx1-ubyte.gz");
    CHECK(run("MNIST_MIRROR='file://" + tmp / "bad" + "' '" + script + "' '" + target + "'", log, out) == 1);
    CHECK(contains(out, "sha256 mismatch"));
    CHECK(contains(out, "t10k-labels-idx1-ubyte.gz: FAILED"));
    CHECK_FALSE(fs::exists(target + "/t10k-labels-idx1-ubyte.gz"));
    CHECK_FALSE(fs::exists(target + "/t10k-labels-idx1-ubyte.gz.part"));

    // A wrong file already present is replaced; a bad mirror first in the list is skipped.
    io::write_file(target + "/t10k-labels-idx1-ubyte.gz", labels);
    CHECK(run("MNIST_MIRROR='file://" + tmp / "bad" + " file://" + shared + "' '" + script + "' '" + target + "'", log,
              out) == 0);
    CHECK(io::read_file(target + "/t10k-labels-idx1-ubyte.gz") == io::read_file(shared + "/t10k-labels-idx1-ubyte.gz"));
}
