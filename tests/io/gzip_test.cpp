#include <doctest/doctest.h>

#include "../test_util.hpp"

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cumulus/io/gzip.hpp>

using cumulus::Error;
using Bytes = std::vector<std::uint8_t>;
namespace fs = std::filesystem;
namespace io = cumulus::io;

namespace {

Bytes random_bytes(std::size_t n, std::uint32_t seed, int alphabet = 256) {
    std::mt19937 rng(seed);
    Bytes b(n);
    for (auto& x : b) x = static_cast<std::uint8_t>(rng() % alphabet);
    return b;
}

Bytes concat(Bytes a, const Bytes& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

using test_util::contains;
using test_util::error_of;
using test_util::TempDir;

}  // namespace

TEST_CASE("is_gzip looks only at the two magic bytes") {
    const std::uint8_t good[] = {0x1f, 0x8b, 0x08};
    const std::uint8_t bad[] = {0x1f, 0x8c};
    CHECK(io::is_gzip(good, 3));
    CHECK(io::is_gzip(good, 2));
    CHECK_FALSE(io::is_gzip(good, 1));
    CHECK_FALSE(io::is_gzip(good, 0));
    CHECK_FALSE(io::is_gzip(bad, 2));
}

TEST_CASE("gzip_compress then gunzip gives back the bytes") {
    const std::vector<std::size_t> sizes = {0, 1, 2, 17, 4095, 65536, 65537, 1000003};
    for (std::size_t n : sizes) {
        for (int level : {-1, 0, 1, 6, 9}) {
            CAPTURE(n);
            CAPTURE(level);
            // A small alphabet compresses; a full one does not: both paths grow buffers.
            Bytes in = random_bytes(n, static_cast<std::uint32_t>(n * 10 + level + 1), n % 2 ? 256 : 4);
            Bytes z = io::gzip_compress(in, level);
            REQUIRE(io::is_gzip(z.data(), z.size()));
            CHECK(io::gunzip(z.data(), z.size(), "mem", in.size()) == in);
        }
    }
}

TEST_CASE("gunzip reads the real MNIST label file") {
    const std::string path = std::string(CUMULUS_TEST_DATA_DIR) + "/mnist/t10k-labels-idx1-ubyte.gz";
    Bytes z = io::read_file(path);
    CHECK(z.size() == 4542);
    Bytes raw = io::gunzip(z.data(), z.size(), path, 1 << 20);
    REQUIRE(raw.size() == 10008);
    CHECK(raw[0] == 0);
    CHECK(raw[1] == 0);
    CHECK(raw[2] == 8);
    CHECK(raw[3] == 1);
    CHECK(raw[8] == 7);  // the first t10k label
    CHECK(raw[9] == 2);
    // The stream ends exactly at the file's end: a limit of exactly 10008 is enough.
    CHECK(io::gunzip(z.data(), z.size(), path, 10008).size() == 10008);
    CHECK(contains(error_of([&] { io::gunzip(z.data(), z.size(), path, 10007); }), "limit of 10007"));
}

TEST_CASE("gunzip handles concatenated members and zero padding") {
    Bytes a = random_bytes(1000, 1, 3), b = random_bytes(70000, 2), c;
    Bytes z = concat(concat(io::gzip_compress(a), io::gzip_compress(b)), io::gzip_compress(c));
    CHECK(io::gunzip(z.data(), z.size(), "multi", 1 << 20) == concat(a, b));
    Bytes padded = concat(io::gzip_compress(a), Bytes(512, 0));
    CHECK(io::gunzip(padded.data(), padded.size(), "padded", 1 << 20) == a);
}

TEST_CASE("gunzip errors name the file and the offset") {
    Bytes in = random_bytes(5000, 3, 16);
    Bytes z = io::gzip_compress(in);

    SUBCASE("not gzip") {
        Bytes raw = {0x00, 0x00, 0x08, 0x01};
        std::string msg = error_of([&] { io::gunzip(raw.data(), raw.size(), "raw.bin", 100); });
        CHECK(contains(msg, "raw.bin"));
        CHECK(contains(msg, "1f 8b"));
        CHECK(contains(error_of([&] { io::gunzip(raw.data(), 1, "one.bin", 100); }), "too short"));
    }
    SUBCASE("truncated at every length") {
        for (std::size_t cut = 2; cut < z.size(); cut += (cut < 40 ? 1 : 97)) {
            CAPTURE(cut);
            std::string msg = error_of([&] { io::gunzip(z.data(), cut, "cut.gz", 1 << 20); });
            CHECK(contains(msg, "cut.gz"));
            CHECK((contains(msg, "truncated") || contains(msg, "corrupt")));
        }
        std::string msg = error_of([&] { io::gunzip(z.data(), z.size() - 1, "cut.gz", 1 << 20); });
        CHECK(contains(msg, "truncated gzip data"));
        CHECK(contains(msg, "byte offset " + std::to_string(z.size() - 1)));
    }
    SUBCASE("valid magic, then junk") {
        Bytes junk = concat({0x1f, 0x8b}, random_bytes(100, 4));
        junk[2] = 0x07;  // not deflate
        std::string msg = error_of([&] { io::gunzip(junk.data(), junk.size(), "junk.gz", 1 << 20); });
        CHECK(contains(msg, "junk.gz"));
        CHECK(contains(msg, "corrupt gzip data at or near byte offset"));
    }
    SUBCASE("damaged deflate body or CRC") {
        Bytes bad = z;
        bad[bad.size() - 6] ^= 0x55;  // inside the CRC32 trailer
        std::string msg = error_of([&] { io::gunzip(bad.data(), bad.size(), "crc.gz", 1 << 20); });
        CHECK(contains(msg, "crc.gz"));
        CHECK(contains(msg, "incorrect data check"));
        bad = z;
        bad[bad.size() - 2] ^= 0x01;  // ISIZE
        CHECK(contains(error_of([&] { io::gunzip(bad.data(), bad.size(), "isize.gz", 1 << 20); }), "isize.gz"));
    }
    SUBCASE("trailing garbage") {
        Bytes bad = concat(z, {0x00, 0x42, 0x43});
        std::string msg = error_of([&] { io::gunzip(bad.data(), bad.size(), "tail.gz", 1 << 20); });
        CHECK(contains(msg, "trailing garbage"));
        CHECK(contains(msg, "byte offset " + std::to_string(z.size())));
        bad = concat(z, {0x1f, 0x8b});  // the start of a second member, cut off
        CHECK(contains(error_of([&] { io::gunzip(bad.data(), bad.size(), "tail.gz", 1 << 20); }),
                       "inside gzip member 2"));
    }
}

TEST_CASE("a gzip bomb hits max_output instead of memory") {
    Bytes zeros(64 << 20, 0);  // 64 MiB of zeros compress to about 64 KiB
    Bytes z = io::gzip_compress(zeros, 9);
    zeros = Bytes();
    CHECK(z.size() < (256u << 10));
    std::string msg = error_of([&] { io::gunzip(z.data(), z.size(), "bomb.gz", 1 << 20); });
    CHECK(contains(msg, "bomb.gz"));
    CHECK(contains(msg, "more than the limit of 1048576 bytes"));
    CHECK(io::gunzip(z.data(), z.size(), "bomb.gz", std::size_t{64} << 20).size() == (std::size_t{64} << 20));
    CHECK_THROWS_AS(io::gunzip(z.data(), z.size(), "bomb.gz", (std::size_t{64} << 20) - 1), Error);
    CHECK_THROWS_AS(io::gunzip(z.data(), z.size(), "bomb.gz", 0), Error);
}

// Resident memory of this process, KiB.
long rss_kib() {
    long pages = 0, resident = 0;
    if (FILE* f = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        std::fclose(f);
    }
    return resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

// Regression (commit 900db1a): the trailer's ISIZE sized the first buffer
// up to 1040x the input, so a damaged trailer zero-filled ~1000x the input
// before the damage was found. Now it is trusted up to 8x.
TEST_CASE("a damaged trailer size does not make gunzip allocate ~1000x its input") {
    const Bytes data = random_bytes(256 << 10, 11);  // incompressible: the .gz is ~256 KiB
    Bytes z = io::gzip_compress(data, 6);
    for (std::size_t i = 1; i <= 4; ++i) z[z.size() - i] = 0xff;  // ISIZE claims 4 GiB - 1
    const long base = rss_kib();
    // In a child, whose peak resident size wait4 reports: ~2 MiB now, ~260 MiB before the fix.
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        try {
            io::gunzip(z.data(), z.size(), "damaged.gz", std::numeric_limits<std::size_t>::max());
        } catch (const Error&) {
            ::_exit(0);
        } catch (...) {
            ::_exit(2);  // never back into doctest from the child
        }
        ::_exit(1);
    }
    int status = 0;
    struct rusage ru {};
    REQUIRE(::wait4(pid, &status, 0, &ru) == pid);
    CHECK(WIFEXITED(status));
    CHECK_MESSAGE(WEXITSTATUS(status) == 0, "the damaged trailer was not reported");
    CHECK_MESSAGE(ru.ru_maxrss - base < 64 * 1024, "peak ", ru.ru_maxrss, " KiB against ", base, " KiB at the fork");
}

TEST_CASE("gunzip with max_output 0 accepts only empty data") {
    Bytes empty_z = io::gzip_compress(Bytes{});
    CHECK(io::gunzip(empty_z.data(), empty_z.size(), "e.gz", 0).empty());
    Bytes one_z = io::gzip_compress(Bytes{7});
    CHECK_THROWS_AS(io::gunzip(one_z.data(), one_z.size(), "o.gz", 0), Error);
}

TEST_CASE("gunzip_prefix stops at the cap without error") {
    Bytes in = random_bytes(300000, 5, 8);
    Bytes z = io::gzip_compress(in);
    Bytes head = io::gunzip_prefix(z.data(), z.size(), "p.gz", 36);
    CHECK(head == Bytes(in.begin(), in.begin() + 36));
    CHECK(io::gunzip_prefix(z.data(), z.size(), "p.gz", 1 << 20) == in);
}

TEST_CASE("read_file, write_file and read_maybe_gzip") {
    TempDir tmp;
    Bytes in = random_bytes(200000, 6, 5);

    // Detection is by magic bytes, never by the name.
    io::write_file(tmp / "raw.gz", in);
    CHECK(io::read_file(tmp / "raw.gz") == in);
    CHECK(io::read_maybe_gzip(tmp / "raw.gz") == in);
    io::write_file(tmp / "packed.bin", io::gzip_compress(in));
    CHECK(io::read_maybe_gzip(tmp / "packed.bin") == in);
    CHECK_THROWS_AS(io::read_maybe_gzip(tmp / "packed.bin", 1000), Error);

    io::write_file(tmp / "empty", Bytes{});
    CHECK(io::read_file(tmp / "empty").empty());
    CHECK(io::read_maybe_gzip(tmp / "empty").empty());

    std::string msg = error_of([&] { io::read_file(tmp / "missing.idx"); });
    CHECK(contains(msg, "missing.idx"));
    CHECK(contains(msg, "No such file"));
    CHECK(contains(error_of([&] { io::read_file(tmp.path.string()); }), "is a directory"));
    CHECK(contains(error_of([&] { io::write_file(tmp / "no/such/dir/x", in); }), "no/such/dir/x"));
}

#ifdef __linux__
TEST_CASE("read_file reads files whose size is not known in advance") {
    // /proc files report size 0; the reader must still read to EOF.
    Bytes b = io::read_file("/proc/self/status");
    CHECK(b.size() > 10);
    CHECK(std::string(b.begin(), b.begin() + 5) == "Name:");
}
#endif
