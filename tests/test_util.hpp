// Small helpers shared by the tests: the message of an expected error, and a
// temporary directory that removes itself.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <cstdint>
#include <vector>

#include <unistd.h>

#include <doctest/doctest.h>

#include <cumulus/core/error.hpp>

namespace test_util {

// The message of the cumulus::Error that f throws (fails the test otherwise).
template <typename F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const cumulus::Error& e) {
        return e.what();
    }
    FAIL("expected a cumulus::Error");
    return "";
}

inline bool contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }

// Lower-case hex of the bytes, for comparing with published test vectors.
inline std::string to_hex(const std::vector<std::uint8_t>& b) {
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (auto x : b) {
        s += digits[x >> 4];
        s += digits[x & 15];
    }
    return s;
}

// A fresh directory under the system's temporary directory, removed with its
// contents when the object goes.
struct TempDir {
    std::filesystem::path path;
    explicit TempDir(const std::string& prefix = "cumulus_test") {
        static int counter = 0;
        path = std::filesystem::temp_directory_path() /
               (prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        std::filesystem::remove_all(path);
        std::filesystem::create_directories(path);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// An interop test whose peer (a Python package, the GCS emulator) is
// missing: "SKIPPED: <why>" and ctest's skip code 77, except under CI=true
// (or 1), where a missing peer is a failure ("FAILED: <why>", exit 1): CI
// must never pass an interop test that did not run.
[[noreturn]] inline void skip_interop(const std::string& why) {
    const char* ci = std::getenv("CI");
    const bool in_ci = ci != nullptr && (std::string_view(ci) == "true" || std::string_view(ci) == "1");
    std::cout << (in_ci ? "FAILED: " : "SKIPPED: ") << why
              << (in_ci ? " (CI=true: interop tests must run)" : "") << "; run tools/setup-venv or set CUMULUS_PYTHON"
              << std::endl;
    std::exit(in_ci ? 1 : 77);
}

// `s` quoted for /bin/sh.
inline std::string shell_quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

// The Python interpreters tried, in order: $CUMULUS_PYTHON alone when set;
// else the project's .venv/bin/python (tools/setup-venv), each python3 on
// PATH, then /usr/bin/python3.
inline std::vector<std::string> python_candidates() {
    if (const char* env = std::getenv("CUMULUS_PYTHON"); env != nullptr && *env != '\0') return {env};
    std::vector<std::string> c;
#ifdef CUMULUS_SOURCE_DIR
    const std::filesystem::path venv = std::filesystem::path(CUMULUS_SOURCE_DIR) / ".venv/bin/python";
    if (::access(venv.c_str(), X_OK) == 0) c.push_back(venv.string());
#endif
    if (const char* path = std::getenv("PATH")) {
        std::stringstream ss(path);
        std::string d;
        while (std::getline(ss, d, ':')) {
            const std::filesystem::path p = std::filesystem::path(d.empty() ? "." : d) / "python3";
            if (::access(p.c_str(), X_OK) == 0) c.push_back(p.string());
        }
    }
    c.push_back("/usr/bin/python3");
    return c;
}

// The first of python_candidates() that can `import <module>` (e.g.
// "numpy", "tensorflow"), or "" when none can. `tried`, when given,
// receives the candidates tried, for a skip message.
inline std::string find_python(const std::string& module, std::string* tried = nullptr) {
    std::string list;
    for (const auto& py : python_candidates()) {
        list += (list.empty() ? "" : ", ") + py;
        const std::string cmd = shell_quote(py) + " -c " + shell_quote("import " + module) + " >/dev/null 2>&1";
        if (std::system(cmd.c_str()) == 0) {
            if (tried) *tried = list;
            return py;
        }
    }
    if (tried) *tried = list;
    return "";
}

}  // namespace test_util
