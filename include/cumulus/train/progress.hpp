// The Keras progress display:
//   Epoch 3/20
//   60000/60000 [==============================] - 6s - loss: 0.0775 - acc: 0.9766 - val_loss: 0.0746 - val_acc: 0.9745
// On a terminal the bar moves during the epoch; otherwise one line per epoch.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

namespace cumulus::train {

class ProgressBar {
public:
    ProgressBar(std::ostream& out, std::int64_t target, bool dynamic)
        : out_(out), target_(target), dynamic_(dynamic), start_(Clock::now()), last_(start_) {}

    // True when stdout is a terminal (and `out` is std::cout).
    static bool stdout_is_terminal() { return ::isatty(STDOUT_FILENO) != 0; }

    // Progress within the epoch; redraws at most every 50 ms, on a terminal only.
    void update(std::int64_t current, const std::vector<std::pair<std::string, double>>& values) {
        if (!dynamic_) return;
        auto now = Clock::now();
        if (current < target_ && now - last_ < std::chrono::milliseconds(50)) return;
        last_ = now;
        double elapsed = seconds(now);
        std::string line = bar(current);
        if (current < target_ && current > 0) {
            double eta = elapsed / double(current) * double(target_ - current);
            line += " - ETA: " + format_duration(eta);
        } else {
            line += " - " + std::to_string(static_cast<long long>(elapsed)) + "s";
        }
        line += format_values(values);
        std::string pad = line.size() < width_ ? std::string(width_ - line.size(), ' ') : "";
        width_ = line.size();
        out_ << '\r' << line << pad << std::flush;
    }

    // The final line of the epoch.
    void finish(const std::vector<std::pair<std::string, double>>& values) {
        std::string line = bar(target_) + " - " + std::to_string(static_cast<long long>(seconds(Clock::now()))) + "s" +
                           format_values(values);
        if (dynamic_) {
            std::string pad = line.size() < width_ ? std::string(width_ - line.size(), ' ') : "";
            out_ << '\r' << line << pad << "\n" << std::flush;
        } else {
            out_ << line << "\n" << std::flush;
        }
    }

    static std::string format_value(double v) {
        char buf[64];
        if (v != 0.0 && std::fabs(v) < 1e-3) std::snprintf(buf, sizeof buf, "%.4e", v);
        else std::snprintf(buf, sizeof buf, "%.4f", v);
        return buf;
    }

private:
    using Clock = std::chrono::steady_clock;
    double seconds(Clock::time_point t) const { return std::chrono::duration<double>(t - start_).count(); }

    std::string bar(std::int64_t current) const {
        const int digits = static_cast<int>(std::to_string(target_).size());
        std::string cur = std::to_string(current);
        std::string s = std::string(cur.size() < std::size_t(digits) ? digits - cur.size() : 0, ' ') + cur + "/" +
                        std::to_string(target_) + " [";
        const double prog = target_ > 0 ? double(current) / double(target_) : 1.0;
        const int width = static_cast<int>(30 * prog);
        if (width > 0) {
            s += std::string(static_cast<std::size_t>(width - 1), '=');
            s += current < target_ ? '>' : '=';
        }
        s += std::string(static_cast<std::size_t>(30 - width), '.');
        return s + "]";
    }
    static std::string format_duration(double s) {
        long long t = static_cast<long long>(s);
        if (t >= 3600) return std::to_string(t / 3600) + ":" + two(t % 3600 / 60) + ":" + two(t % 60);
        if (t >= 60) return std::to_string(t / 60) + ":" + two(t % 60);
        return std::to_string(t) + "s";
    }
    static std::string two(long long v) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "%02lld", v);
        return buf;
    }
    static std::string format_values(const std::vector<std::pair<std::string, double>>& values) {
        std::string s;
        for (auto& [k, v] : values) s += " - " + k + ": " + format_value(v);
        return s;
    }

    std::ostream& out_;
    std::int64_t target_;
    bool dynamic_;
    Clock::time_point start_, last_;
    std::size_t width_ = 0;
};

}  // namespace cumulus::train
