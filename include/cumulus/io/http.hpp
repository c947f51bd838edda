// A small blocking HTTP client over libcurl (link CURL::libcurl, or the CMake
// target cumulus::gcs), plus the encodings the GCS client needs: base64,
// base64url, percent-encoding. One curl handle per thread, reused, so
// connections stay open between requests.
//
// Requests and responses are never logged; errors name the method, the URL
// (without its query, which may hold an upload session id) and the status,
// never a header, since headers carry credentials.
#pragma once

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <curl/curl.h>
#include <strings.h>

#include <cumulus/core/error.hpp>

namespace cumulus::io::http {

// A transport failure (no HTTP status): connect, reset, timeout, DNS.
class NetworkError : public Error {
public:
    using Error::Error;
};

struct Response;

struct Request {
    std::string method = "GET";
    std::string url;
    std::vector<std::string> headers;  // "Name: value"
    const void* body = nullptr;        // sent when has_body (POST/PUT/PATCH)
    std::size_t body_size = 0;
    bool has_body = false;
    long connect_timeout_ms = 10000;
    long timeout_ms = 0;               // whole request; 0 = none
    long stall_seconds = 60;           // abort when under 1 byte/s for this long
    // Receives the body of a 2xx response as it arrives (then Response::body
    // stays empty); return false to abort. Error bodies go to Response::body.
    std::function<bool(const char*, std::size_t)> on_data;
    // Called once with the headers of a 2xx response, before its first byte
    // goes to on_data.
    std::function<void(const Response&)> on_headers;

    void set_body(const void* p, std::size_t n) {
        body = p;
        body_size = n;
        has_body = true;
    }
};

struct Response {
    long status = 0;
    std::map<std::string, std::string> headers;  // names lower-case
    std::string body;

    std::string header(const std::string& lower_name) const {
        auto it = headers.find(lower_name);
        return it == headers.end() ? std::string() : it->second;
    }
};

// The URL without its query string, for messages.
inline std::string redact_url(std::string_view url) { return std::string(url.substr(0, url.find('?'))); }

namespace detail {

inline void global_init() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Handle {
    CURL* h = nullptr;
    Handle() {
        global_init();
        h = curl_easy_init();
    }
    ~Handle() {
        if (h) curl_easy_cleanup(h);
    }
};

inline CURL* thread_handle() {
    thread_local Handle handle;
    if (!handle.h) CUMULUS_FAIL("http: curl_easy_init failed");
    return handle.h;
}

struct Transfer {
    const Request* req;
    Response* resp;
    CURL* h;
    bool aborted_by_sink = false;
    bool headers_reported = false;
    // An exception thrown by on_headers / on_data: it must not unwind through
    // libcurl's C frames, so it is kept here and rethrown by perform().
    std::exception_ptr error;
};

inline std::size_t on_header(char* p, std::size_t size, std::size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    try {
        std::string_view line(p, size * n);
        if (line.substr(0, 5) == "HTTP/") {
            t->resp->headers.clear();  // a new response (after 100 Continue)
            return size * n;
        }
        const auto colon = line.find(':');
        if (colon == std::string_view::npos) return size * n;
        std::string name(line.substr(0, colon));
        for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        auto value = line.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
        while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' '))
            value.remove_suffix(1);
        t->resp->headers[name] = std::string(value);
    } catch (...) {
        t->error = std::current_exception();
        return 0;
    }
    return size * n;
}

inline std::size_t on_body(char* p, std::size_t size, std::size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    const std::size_t bytes = size * n;
    long status = 0;
    curl_easy_getinfo(t->h, CURLINFO_RESPONSE_CODE, &status);
    if (t->req->on_data && status >= 200 && status < 300) {
        try {
            if (!t->headers_reported) {
                t->headers_reported = true;
                if (t->req->on_headers) t->req->on_headers(*t->resp);
            }
            if (!t->req->on_data(p, bytes)) {
                t->aborted_by_sink = true;
                return 0;
            }
        } catch (...) {
            t->error = std::current_exception();
            return 0;  // aborts the transfer
        }
        return bytes;
    }
    try {
        if (t->resp->body.size() < (std::size_t{16} << 20)) t->resp->body.append(p, bytes);
    } catch (...) {
        t->error = std::current_exception();
        return 0;
    }
    return bytes;
}

}  // namespace detail

// Sends one request, returns the response whatever its status. Throws
// NetworkError when no complete response came back.
inline Response perform(const Request& req) {
    CURL* h = detail::thread_handle();
    curl_easy_reset(h);
    Response resp;
    detail::Transfer t{&req, &resp, h, false, false, nullptr};
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(h, CURLOPT_URL, req.url.c_str());
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, req.connect_timeout_ms);
    if (req.timeout_ms > 0) curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, req.timeout_ms);
    if (req.stall_seconds > 0) {
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, req.stall_seconds);
    }
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &detail::on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &detail::on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "identity");  // hashes are of the stored bytes
    if (req.method == "HEAD") {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (req.method != "GET") {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    }
    if (req.has_body) {
        // POSTFIELDS with a custom method sends the body as is, without copying it.
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body_size));
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req.body_size ? req.body : "");
    }
    curl_slist* headers = nullptr;
    for (const auto& hd : req.headers) headers = curl_slist_append(headers, hd.c_str());
    headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
    if (req.has_body) {
        bool has_type = false;
        for (const auto& hd : req.headers)
            if (hd.size() >= 13 && strncasecmp(hd.c_str(), "content-type:", 13) == 0) has_type = true;
        if (!has_type) headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    const CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(headers);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, nullptr);
    if (t.error) std::rethrow_exception(t.error);
    if (rc != CURLE_OK) {
        if (t.aborted_by_sink) CUMULUS_FAIL(req.method, " ", redact_url(req.url), ": the receiver stopped the transfer");
        throw NetworkError(std::string(req.method) + " " + redact_url(req.url) + ": " + curl_easy_strerror(rc) +
                           (errbuf[0] ? std::string(" (") + errbuf + ")" : std::string()));
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp.status);
    return resp;
}

// ---- encodings ----

inline std::string base64_encode(const void* data, std::size_t n, bool url = false) {
    static const char* std_chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char* url_chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char* tbl = url ? url_chars : std_chars;
    const auto* p = static_cast<const unsigned char*>(data);
    std::string out;
    out.reserve((n + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        const std::uint32_t v = std::uint32_t{p[i]} << 16 | std::uint32_t{p[i + 1]} << 8 | p[i + 2];
        out += tbl[v >> 18];
        out += tbl[(v >> 12) & 63];
        out += tbl[(v >> 6) & 63];
        out += tbl[v & 63];
    }
    if (i < n) {
        std::uint32_t v = std::uint32_t{p[i]} << 16;
        if (i + 1 < n) v |= std::uint32_t{p[i + 1]} << 8;
        out += tbl[v >> 18];
        out += tbl[(v >> 12) & 63];
        if (i + 1 < n) out += tbl[(v >> 6) & 63];
        if (!url) out.append(i + 1 < n ? 1 : 2, '=');
    }
    return out;
}
inline std::string base64_encode(std::string_view s, bool url = false) { return base64_encode(s.data(), s.size(), url); }

// Standard or URL alphabet, padding optional. Throws on any other character.
inline std::vector<std::uint8_t> base64_decode(std::string_view s) {
    auto val = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+' || c == '-') return 62;
        if (c == '/' || c == '_') return 63;
        return -1;
    };
    while (!s.empty() && s.back() == '=') s.remove_suffix(1);
    std::vector<std::uint8_t> out;
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : s) {
        const int v = val(c);
        CUMULUS_CHECK(v >= 0, "base64: invalid character in '", s, "'");
        acc = acc << 6 | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<std::uint8_t>(acc >> bits));
        }
    }
    return out;
}

// RFC 3986 percent-encoding of everything but unreserved characters (so '/'
// in object names becomes %2F, as the JSON API wants).
inline std::string url_encode(std::string_view s) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

inline std::string form_encode(const std::vector<std::pair<std::string, std::string>>& fields) {
    std::string out;
    for (const auto& [k, v] : fields) {
        if (!out.empty()) out += '&';
        out += url_encode(k) + "=" + url_encode(v);
    }
    return out;
}

}  // namespace cumulus::io::http
