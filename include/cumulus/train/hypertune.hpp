// Hyperparameter-tuning metric reports in the exact format of Google's
// cloudml-hypertune library (GoogleCloudPlatform/cloudml-hypertune,
// hypertune/hypertune.py, 0.1.0.dev6), which the tuning service reads:
//
//  - the file is $CLOUD_ML_HP_METRIC_FILE, default /tmp/hypertune/output.metrics
//    (its directory is created);
//  - the trial is $CLOUD_ML_TRIAL_ID, default 0;
//  - each report appends {"timestamp": time.time(), "trial": str(trial),
//    <tag or "training/hptuning/metric">: str(float(value)),
//    "global_step": str(int(step) if step else 0), "checkpoint_path": path}
//    to a deque of at most 100 entries, then rewrites the whole file with one
//    json.dumps(entry, sort_keys=True) line per entry.
//
// Every value is a string except the timestamp, a JSON number. Floats are
// printed as Python's repr does (shortest round trip; exponent form below
// 1e-4 and from 1e16 on), strings with json.dumps' escapes (ensure_ascii).
#pragma once

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <variant>

#include <cumulus/core/error.hpp>
#include <cumulus/io/file.hpp>
#include <cumulus/train/task.hpp>

namespace cumulus::train {

inline constexpr const char* kHypertuneDefaultTag = "training/hptuning/metric";
inline constexpr const char* kHypertuneDefaultPath = "/tmp/hypertune/output.metrics";
inline constexpr std::size_t kHypertuneMaxEntries = 100;

// Python's repr(float): the shortest digits that round-trip; fixed notation
// when the decimal exponent is in [-4, 16), with ".0" on integral values;
// otherwise d[.ddd]e±XX (at least two exponent digits). inf, -inf, nan.
inline std::string python_float_repr(double v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
    std::string s(buf, res.ptr);  // "-d.ddde+XX" (shortest round trip)
    std::string sign;
    if (s[0] == '-') {
        sign = "-";
        s.erase(0, 1);
    }
    const auto e = s.find('e');
    std::string digits = s.substr(0, e);
    const int exp = std::stoi(s.substr(e + 1));
    digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
    while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
    const int n = static_cast<int>(digits.size());
    const int decpt = exp + 1;  // value = 0.<digits> * 10^decpt
    std::string out;
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            out = "0." + std::string(static_cast<std::size_t>(-decpt), '0') + digits;
        } else if (decpt >= n) {
            out = digits + std::string(static_cast<std::size_t>(decpt - n), '0') + ".0";
        } else {
            out = digits.substr(0, static_cast<std::size_t>(decpt)) + "." + digits.substr(static_cast<std::size_t>(decpt));
        }
    } else {
        out = digits.substr(0, 1);
        if (n > 1) out += "." + digits.substr(1);
        const int x = decpt - 1;
        char eb[16];
        std::snprintf(eb, sizeof eb, "e%c%02d", x < 0 ? '-' : '+', x < 0 ? -x : x);
        out += eb;
    }
    return sign + out;
}

// json.dumps(s) with ensure_ascii=True: ", \, \n, \r, \t, \b, \f escaped by
// name, other characters below 0x20 and everything above 0x7e as \uXXXX
// (lower-case hex; UTF-16 surrogate pairs above U+FFFF). `s` must be UTF-8.
inline std::string python_json_string(const std::string& s) {
    std::string out = "\"";
    auto u = [&](unsigned v) {
        char b[8];
        std::snprintf(b, sizeof b, "\\u%04x", v);
        out += b;
    };
    for (std::size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            switch (c) {
                case '"': out += "\\\""; break;
                case '\\': out += "\\\\"; break;
                case '\n': out += "\\n"; break;
                case '\r': out += "\\r"; break;
                case '\t': out += "\\t"; break;
                case '\b': out += "\\b"; break;
                case '\f': out += "\\f"; break;
                default:
                    if (c < 0x20 || c == 0x7f)
                        u(c);
                    else
                        out += static_cast<char>(c);
            }
            ++i;
            continue;
        }
        int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
        CUMULUS_CHECK(len > 0 && c < 0xF5 && i + static_cast<std::size_t>(len) <= s.size(),
                      "hypertune: string is not valid UTF-8 at byte ", i);
        std::uint32_t cp = c & (0xFF >> (len + 1));
        for (int k = 1; k < len; ++k) {
            const auto d = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
            CUMULUS_CHECK((d & 0xC0) == 0x80, "hypertune: string is not valid UTF-8 at byte ", i + k);
            cp = cp << 6 | (d & 0x3F);
        }
        const std::uint32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
        CUMULUS_CHECK(cp >= min && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF),
                      "hypertune: string is not valid UTF-8 at byte ", i);
        if (cp >= 0x10000) {
            cp -= 0x10000;
            u(0xD800 + (cp >> 10));
            u(0xDC00 + (cp & 0x3FF));
        } else {
            u(cp);
        }
        i += static_cast<std::size_t>(len);
    }
    return out + "\"";
}

// One report, as the library's metric_body dict. Values are strings except
// the timestamp.
struct HypertuneEntry {
    std::map<std::string, std::variant<std::string, double>> fields;  // sorted by key, as sort_keys

    // json.dumps(entry, sort_keys=True): ", " and ": " separators.
    std::string json_line() const {
        std::string s = "{";
        bool first = true;
        for (const auto& [k, v] : fields) {
            if (!first) s += ", ";
            first = false;
            s += python_json_string(k) + ": ";
            if (const auto* str = std::get_if<std::string>(&v))
                s += python_json_string(*str);
            else
                s += python_float_repr(std::get<double>(v));  // json.dumps writes floats with float.__repr__
        }
        return s + "}";
    }
};

// The library's HyperTune object. Like it, a new reporter starts with an
// empty queue and its first report replaces the file.
class HypertuneReporter {
public:
    explicit HypertuneReporter(const EnvLookup& env = process_env()) {
        const auto p = env("CLOUD_ML_HP_METRIC_FILE");
        path_ = p ? *p : kHypertuneDefaultPath;
        const auto t = env("CLOUD_ML_TRIAL_ID");
        trial_ = t ? *t : "0";
        const auto slash = path_.rfind('/');
        if (slash != std::string::npos && slash > 0) detail::make_dirs(path_.substr(0, slash));
    }

    const std::string& path() const { return path_; }
    const std::string& trial() const { return trial_; }
    const std::deque<HypertuneEntry>& entries() const { return queue_; }

    // report_hyperparameter_tuning_metric(tag, value, global_step, checkpoint_path).
    // An empty tag means the default "training/hptuning/metric"; a missing or
    // zero step is written as "0". `timestamp` (seconds since the epoch)
    // defaults to now.
    void report(const std::string& tag, double value, std::optional<std::int64_t> global_step = std::nullopt,
                const std::string& checkpoint_path = "", std::optional<double> timestamp = std::nullopt) {
        const double ts = timestamp ? *timestamp
                                    : std::chrono::duration<double>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count();
        HypertuneEntry e;
        // Inserted in the library's dict order, later keys overwriting
        // earlier ones should a tag collide with a fixed key.
        e.fields["timestamp"] = ts;
        e.fields["trial"] = trial_;
        e.fields[tag.empty() ? std::string(kHypertuneDefaultTag) : tag] = python_float_repr(value);
        e.fields["global_step"] = std::to_string(global_step ? *global_step : 0);
        e.fields["checkpoint_path"] = checkpoint_path;
        (void)e.json_line();  // validates the strings before anything is written
        queue_.push_back(std::move(e));
        while (queue_.size() > kHypertuneMaxEntries) queue_.pop_front();
        std::string text;
        for (const auto& q : queue_) text += q.json_line() + "\n";
        io::write_file_atomic(path_, text.data(), text.size());
    }

private:
    std::string path_;
    std::string trial_;
    std::deque<HypertuneEntry> queue_;
};

}  // namespace cumulus::train
