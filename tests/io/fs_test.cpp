// The file-system layer on local paths, and gs:// in a program that has no
// GCS backend (this test does not include <cumulus/io/gcs.hpp> nor link curl).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <cumulus/data/idx.hpp>
#include <cumulus/io/file.hpp>
#include <cumulus/io/fs.hpp>

#include "../test_util.hpp"

namespace io = cumulus::io;
using test_util::contains;
using test_util::error_of;

TEST_CASE("fs: url schemes") {
    CHECK(io::url_scheme("gs://b/o") == "gs");
    CHECK(io::url_scheme("/tmp/x") == "");
    CHECK(io::url_scheme("file:///tmp/x") == "");
    CHECK(io::url_scheme("rel/a://b") == "");
    CHECK(io::url_scheme("://x") == "");
    CHECK(io::local_path_of("file:///tmp/x") == "/tmp/x");
    CHECK(io::fs::join("a", "b") == "a/b");
    CHECK(io::fs::join("a/", "b") == "a/b");
    CHECK(io::fs::join("a", "/abs") == "/abs");
    CHECK(io::fs::join("gs://b", "/x") == "gs://b/x");
    CHECK(io::fs::join("", "x") == "x");
    CHECK(io::fs::basename("gs://b/x/y.bin") == "y.bin");
    CHECK(io::fs::basename("gs://b/x/") == "x");
    CHECK(io::fs::basename("plain") == "plain");
}

TEST_CASE("fs: local files through the interface") {
    test_util::TempDir dir("fs_local");
    const std::string root = dir.path.string();
    std::vector<std::uint8_t> data(100000);
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i * 7 + 3);

    io::fs::make_dirs(io::fs::join(root, "a/b"));
    CHECK(io::fs::is_directory(io::fs::join(root, "a/b")));
    {
        auto w = io::fs::open_write(root + "/a/b/x.bin");
        w->write(data.data(), 1000);
        CHECK_FALSE(io::fs::exists(root + "/a/b/x.bin"));  // nothing visible before close
        w->write(data.data() + 1000, data.size() - 1000);
        CHECK(w->written() == data.size());
        w->close();
    }
    {
        auto w = io::fs::open_write(root + "/a/abandoned");
        w->write("x", 1);
    }
    CHECK_FALSE(io::fs::exists(root + "/a/abandoned"));
    CHECK(io::fs::exists(root + "/a/b/x.bin"));
    CHECK(io::fs::file_size(root + "/a/b/x.bin") == data.size());
    CHECK(io::fs::read_all("file://" + root + "/a/b/x.bin") == data);
    auto r = io::fs::open_read(root + "/a/b/x.bin", io::ReadRange{99990, 100});
    CHECK(r->size() == 10);
    std::vector<std::uint8_t> tail(100);
    CHECK(r->read(tail.data(), 100) == 10);
    CHECK(std::equal(tail.begin(), tail.begin() + 10, data.end() - 10));
    CHECK(r->read(tail.data(), 100) == 0);

    io::fs::copy(root + "/a/b/x.bin", root + "/a/y.bin");
    CHECK(io::fs::read_all(root + "/a/y.bin") == data);
    auto top = io::fs::list(root + "/a");
    REQUIRE(top.size() == 2);
    CHECK(top[0].is_dir);
    CHECK(top[1].path == root + "/a/y.bin");
    CHECK(top[1].size == data.size());
    auto all = io::fs::list(root, true);
    CHECK(all.size() == 2);
    io::fs::remove(root + "/a/y.bin");
    CHECK_FALSE(io::fs::exists(root + "/a/y.bin"));
    CHECK(contains(error_of([&] { io::fs::remove(root + "/a/y.bin"); }), "cannot remove"));
    CHECK(contains(error_of([&] { io::fs::stat(root + "/nope"); }), "no such file"));
    CHECK(io::fs::remove_all(root + "/a") == 3);  // a/, a/b/, a/b/x.bin
    CHECK_FALSE(io::fs::exists(root + "/a"));
}

TEST_CASE("fs: gs:// without the GCS backend says what to include and link") {
    for (auto* fn : {+[] { io::read_file("gs://bucket/x.idx"); }, +[] { io::InputFile f("gs://bucket/x"); },
                     +[] { io::write_file_atomic("gs://bucket/x", "a", 1); },
                     +[] { cumulus::data::read_idx("gs://bucket/train.idx"); },
                     +[] { io::fs::exists("gs://bucket/x"); }}) {
        const auto err = error_of(fn);
        CHECK(contains(err, "gs://bucket/"));
        CHECK(contains(err, "#include <cumulus/io/gcs.hpp>"));
        CHECK(contains(err, "cumulus::gcs"));
    }
    CHECK(contains(error_of([] { io::read_file("s3://b/x"); }), "no file-system backend registered for 's3://'"));
}
