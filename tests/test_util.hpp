// Small helpers shared by the tests: the message of an expected error, and a
// temporary directory that removes itself.
#pragma once

#include <filesystem>
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

}  // namespace test_util
