// A main() for the fuzz targets where libFuzzer is missing (g++, and so CI):
// runs LLVMFuzzerTestOneInput on every file given (folders: every file in
// them, in name order), then, with --mutations N, on N mutants of each:
// bit flips, bytes and 16/32-bit fields set to edge values, ranges deleted,
// duplicated or filled, random insertions, truncations, and splices with
// another input. Mutants come from a fixed-seed generator, so a run is the
// same every time. No coverage guidance: the committed corpus
// (tests/fuzz/corpus, merged by libFuzzer from tools/fuzz runs) carries that,
// and this replays it and its neighbours under the sanitizer build.
// Exit status: 0 when every run returned, 2 for bad arguments or unreadable
// inputs; a failing run ends the process as the target or sanitizer ends it.
//
//   NAME_replay [--mutations N] [--seed S] [--crash-dir D] FILE|DIR...
//
// When the target aborts or a sanitizer reports, the input is written to
// D/crash-NAME-<index> (D defaults to the working folder) and its path
// printed, so that `NAME_replay that-file` (or libFuzzer's NAME) reproduces it.
#include <algorithm>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<sanitizer/common_interface_defs.h>) && (defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__))
#include <sanitizer/common_interface_defs.h>
#define CUMULUS_REPLAY_DEATH_CALLBACK 1
#endif
#endif

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace fs = std::filesystem;

namespace {

// What a crash handler writes: set before every call (no allocation there).
struct Current {
    const std::uint8_t* data = nullptr;
    std::size_t size = 0;
    char path[4096] = {};
} current;

void write_current() {
    static volatile std::sig_atomic_t written = 0;
    if (written || current.data == nullptr) return;
    written = 1;
    const int fd = ::open(current.path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        std::size_t done = 0;
        while (done < current.size) {
            const ssize_t w = ::write(fd, current.data + done, current.size - done);
            if (w <= 0) break;
            done += std::size_t(w);
        }
        ::close(fd);
    }
    static const char msg[] = "\nfuzz replay: the failing input is in ";
    (void)!::write(2, msg, sizeof msg - 1);
    (void)!::write(2, current.path, std::strlen(current.path));
    (void)!::write(2, "\n", 1);
}

extern "C" void on_signal(int sig) {
    write_current();
    std::signal(sig, SIG_DFL);
    std::raise(sig);
}

struct Rng {  // splitmix64: small, fixed, the same everywhere
    std::uint64_t s;
    std::uint64_t next() {
        std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    std::size_t below(std::size_t n) { return n == 0 ? 0 : std::size_t(next() % n); }
};

// One mutation of `in` (another input, `other`, for splices), at most max_len bytes.
std::vector<std::uint8_t> mutate(const std::vector<std::uint8_t>& in, const std::vector<std::uint8_t>& other,
                                 Rng& rng, std::size_t max_len) {
    static const std::uint32_t edges[] = {0,          1,          2,          0x7f,       0x80,      0xff,
                                          0x100,      0x7fff,     0x8000,     0xffff,     0x10000,   0x7fffffff,
                                          0x80000000, 0xfffffffe, 0xffffffff, 16,         64,        1000};
    std::vector<std::uint8_t> v = in;
    const int rounds = 1 + int(rng.below(3));
    for (int r = 0; r < rounds; ++r) {
        const std::size_t n = v.size();
        const std::size_t at = rng.below(n + 1);
        switch (rng.below(9)) {
            case 0:  // flip a bit
                if (n) v[rng.below(n)] ^= std::uint8_t(1u << rng.below(8));
                break;
            case 1:  // a byte to an edge value
                if (n) v[rng.below(n)] = std::uint8_t(edges[rng.below(std::size(edges))]);
                break;
            case 2: {  // a 16- or 32-bit field, either byte order, to an edge value
                const std::size_t w = rng.below(2) ? 4 : 2;
                if (n < w) break;
                const std::size_t p = rng.below(n - w + 1);
                const std::uint32_t e = edges[rng.below(std::size(edges))];
                const bool big = rng.below(2);
                for (std::size_t i = 0; i < w; ++i)
                    v[p + i] = std::uint8_t(e >> (8 * (big ? w - 1 - i : i)));
                break;
            }
            case 3: {  // delete a range
                if (!n) break;
                const std::size_t p = rng.below(n), len = 1 + rng.below(std::min<std::size_t>(n - p, 64));
                v.erase(v.begin() + std::ptrdiff_t(p), v.begin() + std::ptrdiff_t(p + len));
                break;
            }
            case 4: {  // duplicate a range
                if (!n) break;
                const std::size_t p = rng.below(n), len = 1 + rng.below(std::min<std::size_t>(n - p, 64));
                const std::vector<std::uint8_t> piece(v.begin() + std::ptrdiff_t(p),
                                                      v.begin() + std::ptrdiff_t(p + len));
                v.insert(v.begin() + std::ptrdiff_t(at), piece.begin(), piece.end());
                break;
            }
            case 5: {  // insert random bytes
                const std::size_t len = 1 + rng.below(16);
                std::vector<std::uint8_t> piece(len);
                for (auto& b : piece) b = std::uint8_t(rng.next());
                v.insert(v.begin() + std::ptrdiff_t(at), piece.begin(), piece.end());
                break;
            }
            case 6:  // truncate
                v.resize(at);
                break;
            case 7: {  // fill a range with one byte
                if (!n) break;
                const std::size_t p = rng.below(n), len = 1 + rng.below(std::min<std::size_t>(n - p, 32));
                std::fill_n(v.begin() + std::ptrdiff_t(p), len, std::uint8_t(rng.below(2) ? 0 : 0xff));
                break;
            }
            default: {  // splice: a prefix of this input and a suffix of the other
                const std::size_t q = rng.below(other.size() + 1);
                v.resize(at);
                v.insert(v.end(), other.begin() + std::ptrdiff_t(q), other.end());
                break;
            }
        }
    }
    if (v.size() > max_len) v.resize(max_len);
    return v;
}

[[noreturn]] void usage(const char* argv0, int code) {
    std::fprintf(code ? stderr : stdout,
                 "usage: %s [--mutations N] [--seed S] [--max-len BYTES] [--crash-dir DIR] FILE|DIR...\n"
                 "Runs the fuzz target on every input, then on N fixed-seed mutants of each.\n",
                 argv0);
    std::exit(code);
}

}  // namespace

int main(int argc, char** argv) {
    long mutations = 0;
    std::uint64_t seed = 1;
    std::size_t max_len = 16384;
    std::string crash_dir = ".";
    std::vector<fs::path> roots;
    for (int i = 1; i < argc; ++i) try {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage(argv[0], 2);
            return argv[++i];
        };
        if (a == "-h" || a == "--help") usage(argv[0], 0);
        else if (a == "--mutations") mutations = std::stol(value());
        else if (a == "--seed") seed = std::stoull(value());
        else if (a == "--max-len") max_len = std::stoull(value());
        else if (a == "--crash-dir") crash_dir = value();
        else if (!a.empty() && a[0] == '-') usage(argv[0], 2);
        else roots.emplace_back(a);
    } catch (const std::logic_error&) {  // stol / stoull: not a number
        std::fprintf(stderr, "%s: '%s' is not a number\n", argv[0], argv[i]);
        usage(argv[0], 2);
    }
    if (roots.empty()) usage(argv[0], 2);

    std::vector<fs::path> files;
    for (const auto& r : roots) {
        std::error_code ec;
        if (fs::is_directory(r, ec)) {
            for (const auto& e : fs::directory_iterator(r))
                if (e.is_regular_file() && e.path().filename() != "README.md") files.push_back(e.path());
        } else if (fs::is_regular_file(r, ec)) {
            files.push_back(r);
        } else {
            std::fprintf(stderr, "%s: %s is neither a file nor a folder\n", argv[0], r.c_str());
            return 2;
        }
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) {
        std::fprintf(stderr, "%s: no inputs in the folders given\n", argv[0]);
        return 2;
    }
    std::vector<std::vector<std::uint8_t>> inputs;
    for (const auto& f : files) {
        std::ifstream in(f, std::ios::binary);
        if (!in) {
            std::fprintf(stderr, "%s: cannot read %s\n", argv[0], f.c_str());
            return 2;
        }
        inputs.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }

    const std::string name = fs::path(argv[0]).filename().string();
    for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) std::signal(sig, on_signal);
#ifdef CUMULUS_REPLAY_DEATH_CALLBACK
    __sanitizer_set_death_callback(write_current);
#endif

    std::uint64_t runs = 0;
    auto run = [&](const std::vector<std::uint8_t>& v) {
        std::snprintf(current.path, sizeof current.path, "%s/crash-%s-%llu", crash_dir.c_str(), name.c_str(),
                      static_cast<unsigned long long>(runs));
        current.data = v.data();
        current.size = v.size();
        LLVMFuzzerTestOneInput(v.data(), v.size());
        current.data = nullptr;
        ++runs;
    };
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        // Real files may be longer than the fuzzers' cap; they run whole, mutants are capped.
        run(inputs[i]);
        Rng rng{seed * 0x100000001B3ull + i};
        for (long m = 0; m < mutations; ++m)
            run(mutate(inputs[i], inputs[rng.below(inputs.size())], rng, max_len));
    }
    std::printf("%s: %llu runs (%zu inputs, %ld mutants each, seed %llu), no failure\n", name.c_str(),
                static_cast<unsigned long long>(runs), inputs.size(), mutations,
                static_cast<unsigned long long>(seed));
    return 0;
}
