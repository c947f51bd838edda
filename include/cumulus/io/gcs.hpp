// Google Cloud Storage over its JSON API (libcurl + OpenSSL: link the CMake
// target cumulus::gcs), and the gs:// backend of the file-system layer:
// including this header registers it (io/fs_registry.hpp), after which every
// loader and writer built on io/file.hpp or io/fs.hpp takes gs://bucket/object.
//
//   Client            objects: metadata, ranged streaming download (CRC32C of
//                     x-goog-hash checked), simple / multipart / resumable
//                     upload (CRC32C + MD5 sent and checked), list with
//                     pageToken, delete, rewrite (copy), compose.
//   ObjectReader      a Reader over ranged GETs of one object generation.
//   ObjectWriter      a Writer: a resumable upload, committed by close().
//   GcsFileSystem     the "gs" backend.
//
// Retries: 408, 429, 5xx and network errors, for idempotent requests only
// (reads, lists, deletes, resumable-session requests, and writes that carry
// an ifGenerationMatch precondition), with exponential backoff (x2 from 1 s,
// at most 64 s) plus up to 1 s of jitter, until the next wait would pass the
// total budget (600 s by default). A resumable upload that fails asks the
// session what it holds (`Content-Range: bytes */N`) and resumes from there.
//
// Environment: STORAGE_EMULATOR_HOST / CLOUD_STORAGE_EMULATOR_ENDPOINT (an
// emulator, anonymous), credentials as in io/gcs_auth.hpp, and for tuning
// CUMULUS_GCS_RETRY_SECONDS, CUMULUS_GCS_INITIAL_BACKOFF,
// CUMULUS_GCS_CHUNK_SIZE, CUMULUS_GCS_RESUMABLE_THRESHOLD, CUMULUS_GCS_TIMEOUT.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include <cumulus/core/error.hpp>
#include <cumulus/io/crc32c.hpp>
#include <cumulus/io/fs_registry.hpp>
#include <cumulus/io/gcs_auth.hpp>
#include <cumulus/io/http.hpp>

namespace cumulus::io::gcs {

inline constexpr std::size_t kUploadQuantum = 256 * 1024;  // resumable chunks are multiples of this
inline constexpr const char* kDefaultEndpoint = "https://storage.googleapis.com";

// ---- checksums in the JSON API's form: base64 of the big-endian digest ----

inline std::string crc32c_base64(std::uint32_t crc) {
    const unsigned char b[4] = {static_cast<unsigned char>(crc >> 24), static_cast<unsigned char>(crc >> 16),
                                static_cast<unsigned char>(crc >> 8), static_cast<unsigned char>(crc)};
    return http::base64_encode(b, 4);
}

class Md5 {
public:
    Md5() : ctx_(EVP_MD_CTX_new()) {
        CUMULUS_CHECK(ctx_ && EVP_DigestInit_ex(ctx_, EVP_md5(), nullptr) == 1, "MD5: OpenSSL init failed");
    }
    Md5(const Md5&) = delete;
    Md5& operator=(const Md5&) = delete;
    ~Md5() { EVP_MD_CTX_free(ctx_); }
    void update(const void* p, std::size_t n) {
        if (n) EVP_DigestUpdate(ctx_, p, n);
    }
    std::string base64() {
        unsigned char d[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        EVP_DigestFinal_ex(ctx_, d, &len);
        return http::base64_encode(d, len);
    }

private:
    EVP_MD_CTX* ctx_;
};

inline std::string md5_base64(const void* p, std::size_t n) {
    Md5 m;
    m.update(p, n);
    return m.base64();
}

// The value of `key` in an x-goog-hash header ("crc32c=...,md5=...").
inline std::string goog_hash_value(const std::string& header, std::string_view key) {
    std::size_t pos = 0;
    while (pos < header.size()) {
        auto end = header.find(',', pos);
        if (end == std::string::npos) end = header.size();
        std::string_view item(header.data() + pos, end - pos);
        while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
        if (item.substr(0, key.size()) == key && item.size() > key.size() && item[key.size()] == '=')
            return std::string(item.substr(key.size() + 1));
        pos = end + 1;
    }
    return {};
}

// ---- gs:// URLs ----

struct GsUrl {
    std::string bucket;
    std::string object;  // may be empty (the bucket) or end in '/' (a prefix)
    std::string str() const { return "gs://" + bucket + "/" + object; }
};

inline GsUrl parse_gs_url(std::string_view url) {
    CUMULUS_CHECK(url.substr(0, 5) == "gs://", "'", url, "' is not a gs://bucket/object URL");
    auto rest = url.substr(5);
    const auto slash = rest.find('/');
    GsUrl u;
    u.bucket = std::string(rest.substr(0, slash));
    if (slash != std::string_view::npos) u.object = std::string(rest.substr(slash + 1));
    CUMULUS_CHECK(!u.bucket.empty(), "'", url, "': no bucket name");
    return u;
}

// ---- wildcards in object names (gsutil's) ----
//
// '*' matches any run of characters but '/', '**' any run including '/',
// '?' one character but '/', "[abc]", "[a-z]", "[!a-z]" (or "[^...]") one
// character of (or not of) the set. A '[' without its ']' is literal.

inline bool has_wildcard(std::string_view object) { return object.find_first_of("*?[") != std::string_view::npos; }

// The literal start of a wildcard object name: what a listing can ask for as its prefix.
inline std::string_view wildcard_prefix(std::string_view object) {
    return object.substr(0, std::min(object.size(), object.find_first_of("*?[")));
}

inline bool wildcard_match(std::string_view pat, std::string_view s) {
    // memo[i * (S + 1) + j]: does pat[i..] match s[j..]? 0 unknown, 1 no, 2 yes.
    const std::size_t P = pat.size(), S = s.size();
    std::vector<std::uint8_t> memo((P + 1) * (S + 1), 0);
    // One character class at pat[i] ('['): its end (past ']'), or npos when unterminated.
    auto class_end = [&](std::size_t i) {
        std::size_t k = i + 1;
        if (k < P && (pat[k] == '!' || pat[k] == '^')) ++k;
        if (k < P && pat[k] == ']') ++k;  // a leading ']' is a member
        while (k < P && pat[k] != ']') ++k;
        return k < P ? k + 1 : std::string_view::npos;
    };
    auto in_class = [&](std::size_t i, std::size_t end, char c) {
        std::size_t k = i + 1;
        const bool negate = pat[k] == '!' || pat[k] == '^';
        if (negate) ++k;
        const std::size_t last = end - 1;  // the closing ']'
        bool hit = false;
        while (k < last) {
            if (k + 2 < last && pat[k + 1] == '-') {
                hit = hit || (pat[k] <= c && c <= pat[k + 2]);
                k += 3;
            } else {
                hit = hit || pat[k] == c;
                ++k;
            }
        }
        return hit != negate;
    };
    std::function<bool(std::size_t, std::size_t)> m = [&](std::size_t i, std::size_t j) -> bool {
        std::uint8_t& slot = memo[i * (S + 1) + j];
        if (slot) return slot == 2;
        bool r;
        if (i == P) {
            r = j == S;
        } else if (pat[i] == '*') {
            const bool deep = i + 1 < P && pat[i + 1] == '*';
            const std::size_t next = deep ? i + 2 : i + 1;
            r = m(next, j);  // the star matches nothing more
            for (std::size_t k = j; !r && k < S && (deep || s[k] != '/'); ++k) r = m(next, k + 1);
        } else if (j == S) {
            r = false;
        } else if (pat[i] == '?') {
            r = s[j] != '/' && m(i + 1, j + 1);
        } else if (pat[i] == '[' && class_end(i) != std::string_view::npos) {
            const std::size_t end = class_end(i);
            r = s[j] != '/' && in_class(i, end, s[j]) && m(end, j + 1);
        } else {
            r = pat[i] == s[j] && m(i + 1, j + 1);
        }
        slot = r ? 2 : 1;
        return r;
    };
    return m(0, 0);
}

// ---- options ----

struct RetryPolicy {
    double initial_backoff_s = 1.0;
    double max_backoff_s = 64.0;
    double max_jitter_s = 1.0;
    double max_total_s = 600.0;  // stop once the next wait would pass this, counted from the first attempt
};

struct ClientOptions {
    std::string endpoint = kDefaultEndpoint;
    std::shared_ptr<Credentials> credentials;  // null: default_credentials() on first use
    RetryPolicy retry;
    long connect_timeout_ms = 10000;
    long stall_seconds = 60;        // a transfer under 1 byte/s for this long fails (and is retried)
    long request_timeout_ms = 0;    // per attempt; 0 = none (large transfers)
    std::size_t chunk_size = 8u << 20;                 // resumable chunk, a multiple of 256 KiB
    std::uint64_t resumable_threshold = 8u << 20;     // larger uploads are resumable
    std::size_t read_block = 8u << 20;                // ObjectReader's ranged GET size

    // The emulator endpoint when one is set, and the CUMULUS_GCS_* overrides.
    static ClientOptions from_env() {
        ClientOptions o;
        const auto emu = emulator_endpoint();
        if (!emu.empty()) {
            o.endpoint = emu;
            o.credentials = std::make_shared<AnonymousCredentials>();
        }
        auto num = [](const char* name, double fallback) {
            const auto v = env_or(name);
            if (v.empty()) return fallback;
            try {
                return std::stod(v);
            } catch (...) {
                CUMULUS_FAIL("environment variable ", name, "='", v, "' is not a number");
            }
        };
        o.retry.max_total_s = num("CUMULUS_GCS_RETRY_SECONDS", o.retry.max_total_s);
        o.retry.initial_backoff_s = num("CUMULUS_GCS_INITIAL_BACKOFF", o.retry.initial_backoff_s);
        o.chunk_size = static_cast<std::size_t>(num("CUMULUS_GCS_CHUNK_SIZE", static_cast<double>(o.chunk_size)));
        o.resumable_threshold = static_cast<std::uint64_t>(
            num("CUMULUS_GCS_RESUMABLE_THRESHOLD", static_cast<double>(o.resumable_threshold)));
        o.request_timeout_ms = static_cast<long>(num("CUMULUS_GCS_TIMEOUT", 0) * 1000);
        return o;
    }
};

struct ObjectMetadata {
    std::string bucket, name;
    std::uint64_t size = 0;
    std::int64_t generation = 0;
    std::string crc32c, md5, content_type, updated;

    static ObjectMetadata from_json(const nlohmann::json& j) {
        ObjectMetadata m;
        auto str = [&](const char* k) {
            return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string();
        };
        auto num = [&](const char* k) -> std::uint64_t {
            if (!j.contains(k)) return 0;
            if (j[k].is_number_unsigned()) return j[k].get<std::uint64_t>();
            if (j[k].is_string()) return std::stoull(j[k].get<std::string>());
            return 0;
        };
        m.bucket = str("bucket");
        m.name = str("name");
        m.size = num("size");
        m.generation = static_cast<std::int64_t>(num("generation"));
        m.crc32c = str("crc32c");
        m.md5 = str("md5Hash");
        m.content_type = str("contentType");
        m.updated = str("updated");
        return m;
    }
    std::string url() const { return "gs://" + bucket + "/" + name; }
};

struct ListPage {
    std::vector<ObjectMetadata> items;
    std::vector<std::string> prefixes;
    std::string next_page_token;
};

struct UploadOptions {
    std::string content_type = "application/octet-stream";
    // Makes a single-request upload idempotent, so it is retried: 0 = only if
    // the object does not exist yet, else its current generation.
    std::optional<std::int64_t> if_generation_match;
    std::string crc32c;  // known checksums, sent for the server to verify
    std::string md5;
};

// What a resumable session holds.
struct ResumableStatus {
    bool done = false;
    std::uint64_t committed = 0;  // bytes persisted (all of them when done)
    ObjectMetadata object;        // when done
};

// A failed HTTP exchange: the status and the server's message.
class HttpError : public Error {
public:
    HttpError(const std::string& what, long status) : Error(what), status_(status) {}
    long status() const { return status_; }

private:
    long status_;
};

inline bool retryable_status(long s) { return s == 408 || s == 429 || s == 500 || s == 502 || s == 503 || s == 504; }

namespace detail {

inline std::string server_message(const http::Response& r) {
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_object() && j.contains("error")) {
        const auto& e = j["error"];
        if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"].get<std::string>();
        if (e.is_string()) return e.get<std::string>();
    }
    std::string b = r.body.substr(0, 200);
    for (auto& c : b)
        if (c == '\n' || c == '\r') c = ' ';
    return b;
}

// "bytes=0-N" -> N + 1; no header -> 0.
inline std::uint64_t committed_from_range(const std::string& range) {
    if (range.empty()) return 0;
    const auto dash = range.find('-');
    CUMULUS_CHECK(dash != std::string::npos, "resumable upload: malformed Range header '", range, "'");
    return std::stoull(range.substr(dash + 1)) + 1;
}

}  // namespace detail

class Client {
public:
    explicit Client(ClientOptions o = ClientOptions::from_env()) : o_(std::move(o)) {
        while (!o_.endpoint.empty() && o_.endpoint.back() == '/') o_.endpoint.pop_back();
        CUMULUS_CHECK(o_.chunk_size >= kUploadQuantum && o_.chunk_size % kUploadQuantum == 0,
                      "GCS: the resumable chunk size must be a positive multiple of 262144 bytes, got ",
                      o_.chunk_size);
    }
    const ClientOptions& options() const { return o_; }

    // ---- metadata, listing, delete, copy, compose ----

    std::optional<ObjectMetadata> try_get_metadata(const std::string& bucket, const std::string& name) {
        auto resp = send("get metadata of " + url_of(bucket, name), true, [&] {
            http::Request r;
            r.url = object_url(bucket, name);
            return r;
        });
        if (resp.status == 404) return std::nullopt;
        check(resp, "get metadata of " + url_of(bucket, name));
        return ObjectMetadata::from_json(parse(resp, url_of(bucket, name)));
    }
    ObjectMetadata get_metadata(const std::string& bucket, const std::string& name) {
        auto m = try_get_metadata(bucket, name);
        if (!m) CUMULUS_FAIL("No such object: ", url_of(bucket, name));
        return *m;
    }

    ListPage list_page(const std::string& bucket, const std::string& prefix, const std::string& delimiter,
                       const std::string& page_token = {}, int max_results = 1000) {
        std::string q = "?prefix=" + http::url_encode(prefix) + "&maxResults=" + std::to_string(max_results);
        if (!delimiter.empty()) q += "&delimiter=" + http::url_encode(delimiter);
        if (!page_token.empty()) q += "&pageToken=" + http::url_encode(page_token);
        const std::string what = "list gs://" + bucket + "/" + prefix;
        auto resp = send(what, true, [&] {
            http::Request r;
            r.url = o_.endpoint + "/storage/v1/b/" + http::url_encode(bucket) + "/o" + q;
            return r;
        });
        check(resp, what);
        auto j = parse(resp, what);
        ListPage page;
        if (j.contains("items") && j["items"].is_array())
            for (const auto& it : j["items"]) page.items.push_back(ObjectMetadata::from_json(it));
        if (j.contains("prefixes") && j["prefixes"].is_array())
            for (const auto& p : j["prefixes"])
                if (p.is_string()) page.prefixes.push_back(p.get<std::string>());
        if (j.contains("nextPageToken") && j["nextPageToken"].is_string())
            page.next_page_token = j["nextPageToken"].get<std::string>();
        return page;
    }

    // Every page; visit(page) returns false to stop.
    void list(const std::string& bucket, const std::string& prefix, const std::string& delimiter,
              const std::function<bool(const ListPage&)>& visit, int page_size = 1000) {
        std::string token;
        do {
            auto page = list_page(bucket, prefix, delimiter, token, page_size);
            if (!visit(page)) return;
            token = page.next_page_token;
        } while (!token.empty());
    }

    // Deletes the object (a retry that finds it gone counts as done).
    void delete_object(const std::string& bucket, const std::string& name) {
        int attempts = 0;
        auto resp = send("delete " + url_of(bucket, name), true, [&] {
            ++attempts;
            http::Request r;
            r.method = "DELETE";
            r.url = object_url(bucket, name);
            return r;
        });
        if (resp.status == 404 && attempts > 1) return;
        if (resp.status == 404) CUMULUS_FAIL("No such object: ", url_of(bucket, name));
        check(resp, "delete " + url_of(bucket, name));
    }

    void create_bucket(const std::string& bucket, const std::string& project = "cumulus") {
        const std::string body = nlohmann::json{{"name", bucket}}.dump();
        auto resp = send("create bucket gs://" + bucket, false, [&] {
            http::Request r;
            r.method = "POST";
            r.url = o_.endpoint + "/storage/v1/b?project=" + http::url_encode(project);
            r.headers = {"Content-Type: application/json"};
            r.set_body(body.data(), body.size());
            return r;
        });
        check(resp, "create bucket gs://" + bucket);
    }

    // Server-side copy (rewrite, repeated until done).
    ObjectMetadata copy(const std::string& src_bucket, const std::string& src, const std::string& dst_bucket,
                        const std::string& dst, std::optional<std::int64_t> if_generation_match = std::nullopt) {
        const std::string what = "copy " + url_of(src_bucket, src) + " to " + url_of(dst_bucket, dst);
        std::string token;
        for (;;) {
            std::string q;
            if (!token.empty()) q += "&rewriteToken=" + http::url_encode(token);
            if (if_generation_match) q += "&ifGenerationMatch=" + std::to_string(*if_generation_match);
            if (!q.empty()) q[0] = '?';
            auto resp = send(what, if_generation_match.has_value() || !token.empty(), [&] {
                http::Request r;
                r.method = "POST";
                r.url = object_url(src_bucket, src) + "/rewriteTo/b/" + http::url_encode(dst_bucket) + "/o/" +
                        http::url_encode(dst) + q;
                r.headers = {"Content-Type: application/json"};
                r.set_body("{}", 2);
                return r;
            });
            if (resp.status == 404) CUMULUS_FAIL(what, ": No such object: ", url_of(src_bucket, src));
            check(resp, what);
            auto j = parse(resp, what);
            if (j.value("done", false) && j.contains("resource")) return ObjectMetadata::from_json(j["resource"]);
            CUMULUS_CHECK(j.contains("rewriteToken") && j["rewriteToken"].is_string() &&
                              !j["rewriteToken"].get<std::string>().empty(),
                          what, ": the rewrite is not done and has no rewriteToken");
            token = j["rewriteToken"].get<std::string>();
        }
    }

    // Concatenates up to 32 objects of `bucket` into `dst`.
    ObjectMetadata compose(const std::string& bucket, const std::vector<std::string>& sources, const std::string& dst,
                           const std::string& content_type = "application/octet-stream",
                           std::optional<std::int64_t> if_generation_match = std::nullopt) {
        const std::string what = "compose " + url_of(bucket, dst);
        CUMULUS_CHECK(!sources.empty() && sources.size() <= 32, what, ": 1 to 32 sources, got ", sources.size());
        nlohmann::json body = {{"destination", {{"contentType", content_type}}}, {"sourceObjects", nlohmann::json::array()}};
        for (const auto& s : sources) body["sourceObjects"].push_back({{"name", s}});
        const std::string text = body.dump();
        std::string q;
        if (if_generation_match) q = "?ifGenerationMatch=" + std::to_string(*if_generation_match);
        auto resp = send(what, if_generation_match.has_value(), [&] {
            http::Request r;
            r.method = "POST";
            r.url = object_url(bucket, dst) + "/compose" + q;
            r.headers = {"Content-Type: application/json"};
            r.set_body(text.data(), text.size());
            return r;
        });
        check(resp, what);
        return ObjectMetadata::from_json(parse(resp, what));
    }

    // ---- download ----

    // Streams bytes [offset, offset + length) of the object to `sink`;
    // generation 0 = the live one. Network failures resume where the stream
    // stopped (pinned to the generation first seen). When the whole object is
    // read, its CRC32C is checked against x-goog-hash. Returns the bytes sent.
    std::uint64_t download(const std::string& bucket, const std::string& name,
                           const std::function<void(const char*, std::size_t)>& sink, ReadRange range = {},
                           std::int64_t generation = 0) {
        const std::string what = "download " + url_of(bucket, name);
        std::uint64_t delivered = 0;
        std::uint32_t crc = 0;
        const bool whole = range.offset == 0 && range.length == std::numeric_limits<std::uint64_t>::max();
        if (range.length == 0) return 0;
        std::int64_t pinned = generation;  // after the first response: the generation it came from
        std::string hash;                  // the first response's x-goog-hash (of the whole object)
        const auto complete = [&] {
            return range.length != std::numeric_limits<std::uint64_t>::max() && delivered >= range.length;
        };
        auto resp = send(what, true, [&] {
            http::Request r;
            r.url = object_url(bucket, name) + "?alt=media";
            if (pinned) r.url += "&generation=" + std::to_string(pinned);
            r.on_headers = [&](const http::Response& h) {
                if (hash.empty()) hash = h.header("x-goog-hash");
                if (pinned) return;
                const std::string g = h.header("x-goog-generation");
                if (!g.empty() && g.size() <= 18 && g.find_first_not_of("0123456789") == std::string::npos)
                    pinned = std::stoll(g);
            };
            const std::uint64_t start = range.offset + delivered;
            if (start > 0 || !whole) {
                std::string h = "Range: bytes=" + std::to_string(start) + "-";
                if (range.length != std::numeric_limits<std::uint64_t>::max())
                    h += std::to_string(range.offset + range.length - 1);
                r.headers.push_back(h);
            }
            r.on_data = [&](const char* p, std::size_t n) {
                if (whole) crc = crc32c(p, n, crc);
                delivered += n;
                sink(p, n);
                return true;
            };
            return r;
        }, complete);
        if (resp.status == 404) CUMULUS_FAIL("No such object: ", url_of(bucket, name));
        // 416: the range starts at or past the end (also a retry of a whole
        // read whose every byte had arrived when the connection dropped).
        if (resp.status != 416) check(resp, what);
        if (whole && (delivered > 0 || resp.status != 416)) {
            if (hash.empty()) hash = resp.header("x-goog-hash");
            const auto expected = goog_hash_value(hash, "crc32c");
            if (!expected.empty() && expected != crc32c_base64(crc))
                CUMULUS_FAIL(what, ": CRC32C mismatch: the server says ", expected, ", the ", delivered,
                             " bytes received give ", crc32c_base64(crc), " (corrupted in transfer)");
        }
        return delivered;
    }

    std::vector<std::uint8_t> download_bytes(const std::string& bucket, const std::string& name, ReadRange range = {}) {
        std::vector<std::uint8_t> out;
        download(bucket, name, [&](const char* p, std::size_t n) { out.insert(out.end(), p, p + n); }, range);
        return out;
    }

    // ---- single-request uploads ----

    ObjectMetadata upload_simple(const std::string& bucket, const std::string& name, const void* data, std::size_t n,
                                 const UploadOptions& opt = {}) {
        const std::string what = "upload " + url_of(bucket, name);
        std::string url = upload_base(bucket) + "?uploadType=media&name=" + http::url_encode(name);
        if (opt.if_generation_match) url += "&ifGenerationMatch=" + std::to_string(*opt.if_generation_match);
        auto resp = send(what, opt.if_generation_match.has_value(), [&] {
            http::Request r;
            r.method = "POST";
            r.url = url;
            r.headers = {"Content-Type: " + opt.content_type};
            r.set_body(data, n);
            return r;
        });
        check(resp, what);
        return verified(ObjectMetadata::from_json(parse(resp, what)), crc32c(data, n), what);
    }

    ObjectMetadata upload_multipart(const std::string& bucket, const std::string& name, const void* data,
                                    std::size_t n, const UploadOptions& opt = {}) {
        const std::string what = "upload " + url_of(bucket, name);
        const std::uint32_t crc = crc32c(data, n);
        nlohmann::json meta = {{"name", name}, {"contentType", opt.content_type}, {"crc32c", crc32c_base64(crc)},
                               {"md5Hash", opt.md5.empty() ? md5_base64(data, n) : opt.md5}};
        const std::string boundary = "cumulus_" + random_token();
        std::string head = "--" + boundary + "\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n" +
                           meta.dump() + "\r\n--" + boundary + "\r\ncontent-type: " + opt.content_type + "\r\n\r\n";
        const std::string tail = "\r\n--" + boundary + "--";
        std::string body;
        body.reserve(head.size() + n + tail.size());
        body += head;
        body.append(static_cast<const char*>(data), n);
        body += tail;
        std::string url = upload_base(bucket) + "?uploadType=multipart";
        if (opt.if_generation_match) url += "&ifGenerationMatch=" + std::to_string(*opt.if_generation_match);
        auto resp = send(what, opt.if_generation_match.has_value(), [&] {
            http::Request r;
            r.method = "POST";
            r.url = url;
            r.headers = {"Content-Type: multipart/related; boundary=\"" + boundary + "\""};
            r.set_body(body.data(), body.size());
            return r;
        });
        check(resp, what);
        return verified(ObjectMetadata::from_json(parse(resp, what)), crc, meta["md5Hash"].get<std::string>(), what);
    }

    // ---- resumable uploads ----

    // Opens a session; its URL is a capability: keep it private.
    std::string start_resumable(const std::string& bucket, const std::string& name, const UploadOptions& opt = {},
                                std::optional<std::uint64_t> total = std::nullopt) {
        const std::string what = "start a resumable upload of " + url_of(bucket, name);
        nlohmann::json meta = {{"name", name}, {"contentType", opt.content_type}};
        if (!opt.crc32c.empty()) meta["crc32c"] = opt.crc32c;
        if (!opt.md5.empty()) meta["md5Hash"] = opt.md5;
        const std::string text = meta.dump();
        std::string url = upload_base(bucket) + "?uploadType=resumable&name=" + http::url_encode(name);
        if (opt.if_generation_match) url += "&ifGenerationMatch=" + std::to_string(*opt.if_generation_match);
        // Opening a session creates nothing until it is finalized: safe to retry.
        auto resp = send(what, true, [&] {
            http::Request r;
            r.method = "POST";
            r.url = url;
            r.headers = {"Content-Type: application/json; charset=UTF-8", "X-Upload-Content-Type: " + opt.content_type};
            if (total) r.headers.push_back("X-Upload-Content-Length: " + std::to_string(*total));
            r.set_body(text.data(), text.size());
            return r;
        });
        check(resp, what);
        const auto loc = resp.header("location");
        CUMULUS_CHECK(!loc.empty(), what, ": the server returned no Location header");
        return loc;
    }

    // Asks the session how much it holds (an empty PUT with bytes */N).
    ResumableStatus query_resumable(const std::string& session, std::optional<std::uint64_t> total,
                                    const std::string& what = "resumable upload") {
        auto resp = send(what + ": status query", true, [&] { return chunk_request(session, 0, nullptr, 0, total, true); });
        return chunk_result(resp, what);
    }

    // One PUT of [offset, offset + n); `total` set = this is the last chunk.
    // Throws http::NetworkError or HttpError; a caller recovers with
    // query_resumable(). Not retried here.
    ResumableStatus put_chunk(const std::string& session, std::uint64_t offset, const void* data, std::size_t n,
                              std::optional<std::uint64_t> total, const std::string& what = "resumable upload") {
        auto resp = http::perform(with_auth(chunk_request(session, offset, data, n, total, false)));
        return chunk_result(resp, what);
    }

    // Makes the session hold [0, offset + n) (or finishes it, when total is
    // set and offset + n == total), sending from `data` (the bytes from
    // offset on) in chunks; on a failure waits, asks the session what it holds
    // and resumes, within the retry budget. The session must hold at least
    // `offset` bytes already.
    ResumableStatus send_resumable(const std::string& session, std::uint64_t offset, const std::uint8_t* data,
                                   std::size_t n, std::optional<std::uint64_t> total, const std::string& what,
                                   const std::function<void(std::uint64_t)>& progress = {}) {
        const std::uint64_t end = offset + n;
        std::uint64_t cur = offset;
        Backoff backoff(o_.retry);
        std::string last;
        bool need_query = false;
        for (;;) {
            try {
                ResumableStatus st;
                if (need_query) {
                    st = chunk_result(http::perform(with_auth(chunk_request(session, 0, nullptr, 0, total, true))), what);
                    need_query = false;
                } else {
                    const std::uint64_t left = end - cur;
                    const bool last_chunk = total && left <= o_.chunk_size;
                    const std::size_t k = last_chunk ? static_cast<std::size_t>(left)
                                                     : static_cast<std::size_t>(std::min<std::uint64_t>(
                                                           left / kUploadQuantum * kUploadQuantum, o_.chunk_size));
                    if (k == 0 && !last_chunk) return ResumableStatus{false, cur, {}};
                    st = chunk_result(http::perform(with_auth(chunk_request(session, cur, data + (cur - offset), k,
                                                                             last_chunk ? total : std::nullopt, false))),
                                      what);
                }
                if (st.done) {
                    if (progress) progress(end);
                    return st;
                }
                CUMULUS_CHECK(st.committed >= offset, what, ": the session holds only ", st.committed,
                              " bytes, less than the ", offset, " already acknowledged; start the upload again");
                CUMULUS_CHECK(st.committed <= end, what, ": the session holds ", st.committed,
                              " bytes, more than the ", end, " sent");
                if (st.committed > cur) backoff.progress();
                cur = st.committed;
                if (progress) progress(cur);
                if (cur == end && !total) return st;
                continue;
            } catch (const http::NetworkError& e) {
                last = e.what();
            } catch (const HttpError& e) {
                if (!retryable_status(e.status())) throw;
                last = e.what();
            }
            backoff.wait_or_fail(what, last);
            need_query = true;
        }
    }

    // Uploads a buffer: multipart when at most resumable_threshold bytes,
    // resumable otherwise.
    ObjectMetadata upload_bytes(const std::string& bucket, const std::string& name, const void* data, std::size_t n,
                                UploadOptions opt = {}) {
        if (n <= o_.resumable_threshold) return upload_multipart(bucket, name, data, n, opt);
        const std::string what = "upload " + url_of(bucket, name);
        const std::uint32_t crc = crc32c(data, n);
        opt.crc32c = crc32c_base64(crc);
        if (opt.md5.empty()) opt.md5 = md5_base64(data, n);  // the server checks both before it finalizes
        const auto session = start_resumable(bucket, name, opt, n);
        auto st = send_resumable(session, 0, static_cast<const std::uint8_t*>(data), n, n, what);
        CUMULUS_CHECK(st.done, what, ": the session did not finish");
        return verified(st.object, crc, opt.md5, what);
    }

    // Checks the server's CRC32C of a new object against ours; on a
    // mismatch deletes that generation of the object (as gsutil does) and throws.
    ObjectMetadata verified(ObjectMetadata m, std::uint32_t crc, const std::string& what) {
        if (m.crc32c.empty() || m.crc32c == crc32c_base64(crc)) return m;
        const std::string fate = discard(m);
        CUMULUS_FAIL(what, ": CRC32C mismatch after upload: the server stored ", m.crc32c, ", the data sent has ",
                     crc32c_base64(crc), " (", fate, ")");
    }

    // verified(), and the MD5 (base64) too when the server reports one
    // (composite objects have none).
    ObjectMetadata verified(ObjectMetadata m, std::uint32_t crc, const std::string& md5, const std::string& what) {
        m = verified(std::move(m), crc, what);
        if (m.md5.empty() || md5.empty() || m.md5 == md5) return m;
        const std::string fate = discard(m);
        CUMULUS_FAIL(what, ": MD5 mismatch after upload: the server stored ", m.md5, ", the data sent has ", md5, " (",
                     fate, ")");
    }

    // Deletes that generation of a bad new object, as gsutil does; says how it went.
    std::string discard(const ObjectMetadata& m) {
        try {
            auto resp = send("delete " + m.url(), true, [&] {
                http::Request r;
                r.method = "DELETE";
                r.url = object_url(m.bucket, m.name) + "?generation=" + std::to_string(m.generation);
                return r;
            });
            if (resp.status >= 300 && resp.status != 404)
                return "deleting the object failed: HTTP " + std::to_string(resp.status);
        } catch (const std::exception& e) {
            return std::string("deleting the object failed: ") + e.what();
        }
        return "the object was deleted";
    }

    std::string url_of(const std::string& bucket, const std::string& name) const { return "gs://" + bucket + "/" + name; }

    // Exponential backoff with jitter within a total time budget.
    class Backoff {
    public:
        explicit Backoff(const RetryPolicy& p) : p_(p), start_(std::chrono::steady_clock::now()), next_(p.initial_backoff_s) {}
        void progress() {
            start_ = std::chrono::steady_clock::now();
            next_ = p_.initial_backoff_s;
            attempts_ = 0;
        }
        void wait_or_fail(const std::string& what, const std::string& last) {
            ++attempts_;
            thread_local std::mt19937_64 rng{std::random_device{}()};
            const double jitter = std::uniform_real_distribution<double>(0, p_.max_jitter_s)(rng);
            const double wait = std::min(next_, p_.max_backoff_s) + jitter;
            const double elapsed =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
            if (elapsed + wait > p_.max_total_s)
                CUMULUS_FAIL(what, ": giving up after ", attempts_, " attempts in ", static_cast<int>(elapsed * 10) / 10.0,
                             " s (retry budget ", p_.max_total_s, " s); last error: ", last);
            std::this_thread::sleep_for(std::chrono::duration<double>(wait));
            next_ = std::min(next_ * 2, p_.max_backoff_s);
        }

    private:
        RetryPolicy p_;
        std::chrono::steady_clock::time_point start_;
        double next_;
        int attempts_ = 0;
    };

private:
    std::string object_url(const std::string& bucket, const std::string& name) const {
        return o_.endpoint + "/storage/v1/b/" + http::url_encode(bucket) + "/o/" + http::url_encode(name);
    }
    std::string upload_base(const std::string& bucket) const {
        return o_.endpoint + "/upload/storage/v1/b/" + http::url_encode(bucket) + "/o";
    }

    Credentials& credentials() {
        std::lock_guard lock(cred_mu_);
        if (!o_.credentials) o_.credentials = default_credentials();
        return *o_.credentials;
    }

    http::Request with_auth(http::Request r) {
        const auto auth = credentials().authorization_header();
        if (!auth.empty()) r.headers.push_back(auth);
        r.connect_timeout_ms = o_.connect_timeout_ms;
        r.stall_seconds = o_.stall_seconds;
        if (o_.request_timeout_ms > 0) r.timeout_ms = o_.request_timeout_ms;
        return r;
    }

    // Runs make() -> request, retrying (when idempotent) on network errors and
    // retryable statuses. Returns the final response, whatever its status.
    // `complete`, when given, says after a network error that nothing is left
    // to fetch (a ranged read that had all its bytes when the connection
    // dropped): then an empty 200 response is returned instead of a retry.
    template <class Make>
    http::Response send(const std::string& what, bool idempotent, Make&& make,
                        const std::function<bool()>& complete = {}) {
        Backoff backoff(o_.retry);
        for (;;) {
            std::string last;
            try {
                auto resp = http::perform(with_auth(make()));
                if (!retryable_status(resp.status)) return resp;
                if (!idempotent) return resp;
                last = "HTTP " + std::to_string(resp.status) + ": " + detail::server_message(resp);
            } catch (const http::NetworkError& e) {
                if (!idempotent) CUMULUS_FAIL(what, ": ", e.what(), " (not retried: the request is not idempotent)");
                if (complete && complete()) {
                    http::Response done;
                    done.status = 200;
                    return done;
                }
                last = e.what();
            }
            backoff.wait_or_fail(what, last);
        }
    }

    static void check(const http::Response& r, const std::string& what) {
        if (r.status >= 200 && r.status < 300) return;
        std::string hint;
        if (r.status == 401 || r.status == 403) hint = " (check the credentials and their access to the bucket)";
        if (r.status == 412) hint = " (precondition failed: the object changed meanwhile)";
        throw HttpError(what + ": HTTP " + std::to_string(r.status) + ": " + detail::server_message(r) + hint,
                        r.status);
    }

    static nlohmann::json parse(const http::Response& r, const std::string& what) {
        auto j = nlohmann::json::parse(r.body, nullptr, false);
        CUMULUS_CHECK(j.is_object(), what, ": the server's reply is not a JSON object");
        return j;
    }

    static http::Request chunk_request(const std::string& session, std::uint64_t offset, const void* data,
                                       std::size_t n, std::optional<std::uint64_t> total, bool status_query) {
        http::Request r;
        r.method = "PUT";
        r.url = session;
        const std::string tot = total ? std::to_string(*total) : "*";
        if (status_query || n == 0)
            r.headers.push_back("Content-Range: bytes */" + tot);
        else
            r.headers.push_back("Content-Range: bytes " + std::to_string(offset) + "-" + std::to_string(offset + n - 1) +
                                "/" + tot);
        r.set_body(data, n);
        return r;
    }

    static ResumableStatus chunk_result(const http::Response& resp, const std::string& what) {
        ResumableStatus st;
        if (resp.status == 308) {
            st.committed = detail::committed_from_range(resp.header("range"));
            return st;
        }
        if (resp.status == 200 || resp.status == 201) {
            st.done = true;
            st.object = ObjectMetadata::from_json(parse(resp, what));
            st.committed = st.object.size;
            return st;
        }
        if (resp.status == 404 || resp.status == 410)
            throw HttpError(what + ": the resumable session is gone (HTTP " + std::to_string(resp.status) +
                                "); the upload must start again",
                            resp.status);
        check(resp, what);
        CUMULUS_FAIL(what, ": unexpected HTTP ", resp.status, " to a chunk");
    }

    static std::string random_token() {
        thread_local std::mt19937_64 rng{std::random_device{}()};
        static const char* hex = "0123456789abcdef";
        std::string s;
        for (int i = 0; i < 24; ++i) s += hex[rng() & 15];
        return s;
    }

    ClientOptions o_;
    std::mutex cred_mu_;
};

// ---- the file-system backend ----

// Reads [offset, offset + length) of one object generation, a block per
// ranged GET; the whole object's CRC32C is checked at its end.
class ObjectReader final : public Reader {
public:
    ObjectReader(std::shared_ptr<Client> client, const std::string& url, ReadRange range = {})
        : client_(std::move(client)), path_(url) {
        const auto u = parse_gs_url(url);
        bucket_ = u.bucket;
        name_ = u.object;
        CUMULUS_CHECK(!name_.empty() && name_.back() != '/', "'", url, "' names no object");
        meta_ = client_->get_metadata(bucket_, name_);
        pos_ = std::min(range.offset, meta_.size);
        end_ = pos_ + std::min(range.length, meta_.size - pos_);
        size_ = end_ - pos_;
        check_ = pos_ == 0 && end_ == meta_.size && !meta_.crc32c.empty();
    }
    std::size_t read(void* dst, std::size_t n) override {
        auto* out = static_cast<std::uint8_t*>(dst);
        std::size_t done = 0;
        while (done < n) {
            if (begin_ == buf_.size()) {
                if (pos_ == end_) break;
                fill();
            }
            const std::size_t k = std::min(n - done, buf_.size() - begin_);
            std::memcpy(out + done, buf_.data() + begin_, k);
            begin_ += k;
            done += k;
        }
        return done;
    }
    std::uint64_t size() const override { return size_; }
    const std::string& path() const override { return path_; }
    const ObjectMetadata& metadata() const { return meta_; }

private:
    void fill() {
        const std::uint64_t k = std::min<std::uint64_t>(client_->options().read_block, end_ - pos_);
        buf_.clear();
        buf_.reserve(static_cast<std::size_t>(k));
        client_->download(bucket_, name_, [&](const char* p, std::size_t m) { buf_.insert(buf_.end(), p, p + m); },
                          ReadRange{pos_, k}, meta_.generation);
        CUMULUS_CHECK(buf_.size() == k, "'", path_, "': expected ", k, " bytes at offset ", pos_, ", received ",
                      buf_.size());
        if (check_) crc_ = crc32c(buf_.data(), buf_.size(), crc_);
        begin_ = 0;
        pos_ += k;
        if (check_ && pos_ == end_ && crc32c_base64(crc_) != meta_.crc32c)
            CUMULUS_FAIL("'", path_, "': CRC32C mismatch: the object's is ", meta_.crc32c, ", the bytes read give ",
                         crc32c_base64(crc_), " (corrupted in transfer)");
    }

    std::shared_ptr<Client> client_;
    std::string path_, bucket_, name_;
    ObjectMetadata meta_;
    std::uint64_t pos_ = 0, end_ = 0, size_ = 0;
    bool check_ = false;
    std::uint32_t crc_ = 0;
    std::vector<std::uint8_t> buf_;
    std::size_t begin_ = 0;
};

// Buffers writes and sends them as a resumable upload, chunk by chunk once
// more than a chunk is buffered; close() sends the rest, finishes the
// session and checks the object's CRC32C. Abandoned (destroyed unclosed),
// it cancels the session: no object appears.
class ObjectWriter final : public Writer {
public:
    ObjectWriter(std::shared_ptr<Client> client, const std::string& url, UploadOptions opt = {})
        : client_(std::move(client)), path_(url), opt_(std::move(opt)) {
        const auto u = parse_gs_url(url);
        bucket_ = u.bucket;
        name_ = u.object;
        CUMULUS_CHECK(!name_.empty() && name_.back() != '/', "'", url, "': cannot write an object with this name");
        what_ = "upload " + url;
    }
    ObjectWriter(const ObjectWriter&) = delete;
    ObjectWriter& operator=(const ObjectWriter&) = delete;
    ~ObjectWriter() override {
        if (!closed_ && !session_.empty()) {
            try {
                http::Request r;
                r.method = "DELETE";
                r.url = session_;
                r.timeout_ms = 5000;
                http::perform(r);
            } catch (...) {
            }
        }
    }

    void write(const void* data, std::size_t n) override {
        CUMULUS_CHECK(!closed_, "'", path_, "': write after close");
        const auto* p = static_cast<const std::uint8_t*>(data);
        crc_ = crc32c(p, n, crc_);
        md5_.update(p, n);
        buf_.insert(buf_.end(), p, p + n);
        written_ += n;
        const std::size_t chunk = client_->options().chunk_size;
        // Keep at least one byte back, so close() always has a last chunk to send.
        if (buf_.size() > chunk) {
            if (session_.empty()) session_ = client_->start_resumable(bucket_, name_, opt_);
            const std::size_t k = (buf_.size() - 1) / chunk * chunk;
            auto st = client_->send_resumable(session_, sent_, buf_.data(), k, std::nullopt, what_);
            const std::size_t acked = static_cast<std::size_t>(st.committed - sent_);
            buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(acked));
            sent_ = st.committed;
        }
    }

    void close() override {
        CUMULUS_CHECK(!closed_, "'", path_, "': closed twice");
        UploadOptions opt = opt_;
        if (session_.empty()) {
            opt.crc32c = crc32c_base64(crc_);
            session_ = client_->start_resumable(bucket_, name_, opt, written_);
        }
        auto st = client_->send_resumable(session_, sent_, buf_.data(), buf_.size(), written_, what_);
        CUMULUS_CHECK(st.done, what_, ": the session did not finish");
        closed_ = true;
        buf_.clear();
        buf_.shrink_to_fit();
        // The CRC32C first: a mismatch (a truncated or damaged object) deletes the object.
        object_ = client_->verified(st.object, crc_, md5_.base64(), what_);
        CUMULUS_CHECK(st.object.size == written_, what_, ": the object has ", st.object.size, " bytes, ", written_,
                      " were written");
    }
    std::uint64_t written() const override { return written_; }
    const std::string& path() const override { return path_; }
    const ObjectMetadata& object() const { return object_; }

private:
    std::shared_ptr<Client> client_;
    std::string path_, bucket_, name_, what_, session_;
    UploadOptions opt_;
    std::vector<std::uint8_t> buf_;  // bytes from sent_ on
    std::uint64_t sent_ = 0, written_ = 0;
    std::uint32_t crc_ = 0;
    Md5 md5_;
    bool closed_ = false;
    ObjectMetadata object_;
};

class GcsFileSystem final : public FileSystem {
public:
    // Without a client, one is made from the environment on first use.
    explicit GcsFileSystem(std::shared_ptr<Client> client = nullptr) : client_(std::move(client)) {}

    std::shared_ptr<Client> client() {
        std::lock_guard lock(mu_);
        if (!client_) client_ = std::make_shared<Client>(ClientOptions::from_env());
        return client_;
    }

    std::unique_ptr<Reader> open_read(const std::string& path, ReadRange range) override {
        return std::make_unique<ObjectReader>(client(), path, range);
    }
    std::unique_ptr<Writer> open_write(const std::string& path) override {
        return std::make_unique<ObjectWriter>(client(), path);
    }
    bool exists(const std::string& path) override {
        const auto u = parse_gs_url(path);
        if (!u.object.empty() && u.object.back() != '/' && client()->try_get_metadata(u.bucket, u.object)) return true;
        return has_children(u);
    }
    FileInfo stat(const std::string& path) override {
        const auto u = parse_gs_url(path);
        if (!u.object.empty() && u.object.back() != '/')
            if (auto m = client()->try_get_metadata(u.bucket, u.object)) return info_of(*m);
        if (has_children(u)) {
            FileInfo fi;
            fi.path = path;
            fi.is_dir = true;
            return fi;
        }
        CUMULUS_FAIL("No such object: ", path);
    }
    void list(const std::string& dir, bool recursive, const std::function<bool(const FileInfo&)>& visit) override {
        const auto u = parse_gs_url(dir);
        std::string prefix = u.object;
        if (!prefix.empty() && prefix.back() != '/') {
            if (auto m = client()->try_get_metadata(u.bucket, prefix)) {
                visit(info_of(*m));
                return;
            }
            prefix += '/';
        }
        client()->list(u.bucket, prefix, recursive ? "" : "/", [&](const ListPage& page) {
            // Objects and prefixes merged in name order, as gsutil shows them.
            std::vector<FileInfo> entries;
            for (const auto& p : page.prefixes) {
                FileInfo fi;
                fi.path = "gs://" + u.bucket + "/" + p;
                fi.is_dir = true;
                entries.push_back(std::move(fi));
            }
            for (const auto& m : page.items)
                if (m.name != prefix) entries.push_back(info_of(m));  // skip a "directory" placeholder object
            std::sort(entries.begin(), entries.end(),
                      [](const FileInfo& a, const FileInfo& b) { return a.path < b.path; });
            for (const auto& e : entries)
                if (!visit(e)) return false;
            return true;
        });
    }
    void remove(const std::string& path) override {
        const auto u = parse_gs_url(path);
        client()->delete_object(u.bucket, u.object);
    }
    void copy(const std::string& src, const std::string& dst) override {
        const auto s = parse_gs_url(src), d = parse_gs_url(dst);
        client()->copy(s.bucket, s.object, d.bucket, d.object);
    }
    void make_dirs(const std::string&) override {}

    // Seconds since the epoch of an RFC 3339 UTC time ("2026-12-01T20:08:00.123Z"); 0 when unparsable.
    static std::int64_t epoch_seconds(const std::string& t) {
        std::tm tm{};
        int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
        if (std::sscanf(t.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &sec) != 6) return 0;
        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        tm.tm_mday = d;
        tm.tm_hour = h;
        tm.tm_min = mi;
        tm.tm_sec = sec;
        return static_cast<std::int64_t>(::timegm(&tm));
    }

    static FileInfo info_of(const ObjectMetadata& m) {
        FileInfo fi;
        fi.path = m.url();
        fi.size = m.size;
        fi.mtime = epoch_seconds(m.updated);
        fi.crc32c = m.crc32c;
        fi.md5 = m.md5;
        return fi;
    }

private:
    bool has_children(const GsUrl& u) {
        std::string prefix = u.object;
        if (!prefix.empty() && prefix.back() != '/') prefix += '/';
        auto page = client()->list_page(u.bucket, prefix, "/", {}, 1);
        return !page.items.empty() || !page.prefixes.empty();
    }

    std::mutex mu_;
    std::shared_ptr<Client> client_;
};

// Replaces the gs:// backend (e.g. to use a client with other options).
inline void use_client(std::shared_ptr<Client> client) {
    register_filesystem("gs", std::make_shared<GcsFileSystem>(std::move(client)));
}

namespace detail {
inline const bool gcs_backend_registered = [] {
    if (!find_filesystem("gs")) register_filesystem("gs", std::make_shared<GcsFileSystem>());
    return true;
}();
}  // namespace detail

}  // namespace cumulus::io::gcs
