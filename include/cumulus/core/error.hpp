// The library's one exception type and the check macros that throw it.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace cumulus {

// Every failure the library reports: bad input, bad shapes, bad files, device
// errors. The message says what was expected and what was found.
class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {

template <typename... Args>
std::string concat(Args&&... args) {
    std::ostringstream os;
    (os << ... << std::forward<Args>(args));
    return os.str();
}

template <typename... Args>
[[noreturn]] void fail_check(const char* file, int line, const char* expr, Args&&... args) {
    std::string msg;
    if constexpr (sizeof...(Args) > 0) {
        std::ostringstream os;
        (os << ... << std::forward<Args>(args));
        msg = os.str();
    }
    if (msg.empty()) msg = std::string("check failed: ") + expr;
    throw Error(msg + " [" + expr + " at " + file + ":" + std::to_string(line) + "]");
}

}  // namespace detail

// Throws cumulus::Error with the streamed message when `cond` is false.
//   CUMULUS_CHECK(n > 0, "layer ", name, ": expected a positive size, got ", n);
#define CUMULUS_CHECK(cond, ...)                                                      \
    do {                                                                              \
        if (!(cond)) [[unlikely]]                                                     \
            ::cumulus::detail::fail_check(__FILE__, __LINE__, #cond, ##__VA_ARGS__); \
    } while (0)

// Throws cumulus::Error with the streamed message, unconditionally.
#define CUMULUS_FAIL(...) throw ::cumulus::Error(::cumulus::detail::concat(__VA_ARGS__))

}  // namespace cumulus
