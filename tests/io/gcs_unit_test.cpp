// The GCS client's encodings, checksums and header parsing; no server needed.
#include <doctest/doctest.h>

#include <cstdlib>
#include <random>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <cumulus/io/gcs.hpp>

#include "../test_util.hpp"

namespace gcs = cumulus::io::gcs;
namespace http = cumulus::io::http;
using test_util::contains;
using test_util::error_of;

TEST_CASE("gcs: base64 and percent-encoding") {
    CHECK(http::base64_encode(std::string_view("")) == "");
    CHECK(http::base64_encode(std::string_view("f")) == "Zg==");
    CHECK(http::base64_encode(std::string_view("fo")) == "Zm8=");
    CHECK(http::base64_encode(std::string_view("foo")) == "Zm9v");
    CHECK(http::base64_encode(std::string_view("\xfb\xff"), true) == "-_8");
    for (std::size_t n = 0; n < 40; ++n) {
        std::string s;
        for (std::size_t i = 0; i < n; ++i) s += static_cast<char>(i * 37 + n);
        for (bool url : {false, true}) {
            const auto b = http::base64_decode(http::base64_encode(s, url));
            CHECK(std::string(b.begin(), b.end()) == s);
        }
    }
    CHECK(contains(error_of([] { http::base64_decode("ab$c"); }), "invalid character"));
    CHECK(http::url_encode("a/b c~.txt") == "a%2Fb%20c~.txt");
    CHECK(http::form_encode({{"a", "1 2"}, {"b", "x&y"}}) == "a=1%202&b=x%26y");
    CHECK(http::redact_url("http://h/upload?upload_id=secret") == "http://h/upload");
}

TEST_CASE("gcs: checksums in the JSON API's form") {
    CHECK(gcs::crc32c_base64(cumulus::io::crc32c("hello world", 11)) == "yZRlqg==");
    CHECK(gcs::crc32c_base64(0) == "AAAAAA==");
    CHECK(gcs::md5_base64("hello world", 11) == "XrY7u+Ae7tCTyyK7j1rNww==");
    CHECK(gcs::md5_base64("", 0) == "1B2M2Y8AsgTpgAmY7PhCfg==");
    CHECK(gcs::goog_hash_value("crc32c=yZRlqg==,md5=XrY7u+Ae7tCTyyK7j1rNww==", "crc32c") == "yZRlqg==");
    CHECK(gcs::goog_hash_value("crc32c=yZRlqg==, md5=XrY7u+Ae7tCTyyK7j1rNww==", "md5") == "XrY7u+Ae7tCTyyK7j1rNww==");
    CHECK(gcs::goog_hash_value("md5=abc", "crc32c") == "");
    CHECK(gcs::detail::committed_from_range("bytes=0-262143") == 262144);
    CHECK(gcs::detail::committed_from_range("") == 0);
}

TEST_CASE("gcs: URLs, options and credentials from the environment") {
    auto u = gcs::parse_gs_url("gs://bucket/a/b.txt");
    CHECK(u.bucket == "bucket");
    CHECK(u.object == "a/b.txt");
    CHECK(gcs::parse_gs_url("gs://bucket").object == "");
    CHECK(contains(error_of([] { gcs::parse_gs_url("gs:///x"); }), "no bucket"));
    gcs::ClientOptions o;
    o.chunk_size = 1000;
    CHECK(contains(error_of([&] { gcs::Client c(o); }), "multiple of 262144"));

    ::setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:9/", 1);
    CHECK(gcs::emulator_endpoint() == "http://127.0.0.1:9");
    CHECK(gcs::default_credentials()->description() == "anonymous");
    CHECK(gcs::ClientOptions::from_env().endpoint == "http://127.0.0.1:9");
    ::unsetenv("STORAGE_EMULATOR_HOST");
    ::setenv("CLOUD_STORAGE_EMULATOR_ENDPOINT", "http://localhost:1", 1);
    CHECK(gcs::emulator_endpoint() == "http://localhost:1");
    ::unsetenv("CLOUD_STORAGE_EMULATOR_ENDPOINT");
    ::setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json", 1);
    CHECK(contains(error_of([] { gcs::default_credentials(); }), "/nonexistent/key.json"));
    ::unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
    CHECK(contains(error_of([] { gcs::ServiceAccountCredentials(nlohmann::json{{"client_email", "x"}}); }),
                   "'private_key' is missing"));
    CHECK(contains(error_of([] {
                       gcs::make_service_account_jwt("not a key", "sa@x", "", "aud", "scope", 0);
                   }),
                   "not a PEM private key"));
}

TEST_CASE("gcs: a refused connection is retried within the budget, then reported") {
    gcs::ClientOptions o;
    o.endpoint = "http://127.0.0.1:1";  // nothing listens on port 1
    o.credentials = std::make_shared<gcs::AnonymousCredentials>();
    o.retry.initial_backoff_s = 0.01;
    o.retry.max_jitter_s = 0.01;
    o.retry.max_total_s = 0.2;
    gcs::Client c(o);
    const auto err = error_of([&] { c.get_metadata("b", "o"); });
    CHECK(contains(err, "gs://b/o"));
    CHECK(contains(err, "giving up after"));
}

TEST_CASE("gcs: wildcards in object names, as gsutil reads them") {
    using gcs::wildcard_match;
    CHECK(gcs::has_wildcard("data/*.tfrecords"));
    CHECK(gcs::has_wildcard("a?c"));
    CHECK(gcs::has_wildcard("part-[0-9]"));
    CHECK_FALSE(gcs::has_wildcard("data/train.tfrecords"));
    CHECK(gcs::wildcard_prefix("data/train-*.gz") == "data/train-");
    CHECK(gcs::wildcard_prefix("**") == "");
    CHECK(gcs::wildcard_prefix("plain") == "plain");

    CHECK(wildcard_match("data/*.gz", "data/train.gz"));
    CHECK(wildcard_match("data/*.gz", "data/.gz"));
    CHECK_FALSE(wildcard_match("data/*.gz", "data/sub/train.gz"));  // '*' stays in its folder
    CHECK(wildcard_match("data/**.gz", "data/sub/train.gz"));
    CHECK(wildcard_match("data/**", "data/a/b/c"));
    CHECK(wildcard_match("**/x", "a/b/x"));
    CHECK_FALSE(wildcard_match("**/x", "x"));
    CHECK(wildcard_match("*", ""));
    CHECK_FALSE(wildcard_match("?", ""));
    CHECK(wildcard_match("a?c", "abc"));
    CHECK_FALSE(wildcard_match("a?c", "a/c"));
    CHECK(wildcard_match("part-[0-9]", "part-7"));
    CHECK_FALSE(wildcard_match("part-[0-9]", "part-x"));
    CHECK(wildcard_match("part-[!0-9]", "part-x"));
    CHECK(wildcard_match("part-[^0-9]", "part-x"));
    CHECK_FALSE(wildcard_match("part-[!0-9]", "part-/"));
    CHECK(wildcard_match("[]a]", "]"));
    CHECK(wildcard_match("[a-]", "-"));
    CHECK(wildcard_match("a[b", "a[b"));  // unterminated: literal
    CHECK_FALSE(wildcard_match("a[b", "ab"));
    CHECK(wildcard_match("x*y*z", "xAyByCz"));
    CHECK_FALSE(wildcard_match("x*y*z", "xAyB/yCz"));
    CHECK_FALSE(wildcard_match("abc", "abcd"));

    // Against a regular-expression translation, on random patterns and names
    // (classes whole; the unterminated '[' is checked above).
    auto to_regex = [](const std::string& p) {
        std::string r;
        for (std::size_t i = 0; i < p.size(); ++i) {
            const char c = p[i];
            if (c == '*' && i + 1 < p.size() && p[i + 1] == '*') r += ".*", ++i;
            else if (c == '*') r += "[^/]*";
            else if (c == '?') r += "[^/]";
            else if (c == '[') {  // the random patterns' classes are whole pieces: "[ab]", "[!a]", "[a-c]"
                const std::size_t close = p.find(']', i + 1);
                std::string body = p.substr(i + 1, close - i - 1);
                if (body[0] == '!') body[0] = '^';
                r += "(?!/)[" + body + "]";
                i = close;
            } else if (std::string_view("\\^$.|+()[]{}").find(c) != std::string_view::npos) {
                r += '\\', r += c;
            } else {
                r += c;
            }
        }
        return std::regex(r);
    };
    std::mt19937 rng(7);
    const std::vector<std::string> pieces{"a", "b", "/", "-", "*", "**", "?", "[ab]", "[!a]", "[a-c]"};
    const std::string alphabet = "abc/-[";
    int matched = 0;
    for (int t = 0; t < 3000; ++t) {
        std::string pat, name;
        for (int k = int(rng() % 5); k >= 0; --k) pat += pieces[rng() % pieces.size()];
        for (int k = int(rng() % 7); k > 0; --k) name += alphabet[rng() % alphabet.size()];
        const bool want = std::regex_match(name, to_regex(pat));
        matched += want;
        CHECK_MESSAGE(wildcard_match(pat, name) == want, "pattern '", pat, "' name '", name, "'");
    }
    CHECK(matched > 100);  // the random cases are not all misses
}

namespace {

// Tokens numbered tok-1, tok-2, ..., on a clock the test moves.
class SteppedCredentials final : public gcs::TokenCredentials {
public:
    std::int64_t now = 1'000'000, life = 3600;
    std::string description() const override { return "stepped"; }

protected:
    std::pair<std::string, std::int64_t> fetch_token() override {
        return {"tok-" + std::to_string(fetch_count() + 1), life};
    }
    std::int64_t clock_now() const override { return now; }
};

}  // namespace

TEST_CASE("gcs: an access token is cached and fetched again before it expires") {
    SteppedCredentials c;
    CHECK(c.authorization_header() == "Authorization: Bearer tok-1");
    c.now += 3299;  // an hour's token is kept until five minutes before its end
    CHECK(c.authorization_header() == "Authorization: Bearer tok-1");
    c.now += 1;
    CHECK(c.authorization_header() == "Authorization: Bearer tok-2");
    CHECK(c.fetch_count() == 2);
    // One that lives under ten minutes is renewed half-way.
    c.life = 200;
    c.now += 3300;
    CHECK(c.authorization_header() == "Authorization: Bearer tok-3");
    c.now += 99;
    CHECK(c.authorization_header() == "Authorization: Bearer tok-3");
    c.now += 1;
    CHECK(c.authorization_header() == "Authorization: Bearer tok-4");
    // A reply claiming under a minute counts as a minute (renewed after 30 s), never as "already expired".
    c.life = 0;
    c.now += 100;
    CHECK(c.authorization_header() == "Authorization: Bearer tok-5");
    c.now += 29;
    CHECK(c.authorization_header() == "Authorization: Bearer tok-5");
    c.now += 1;
    CHECK(c.authorization_header() == "Authorization: Bearer tok-6");
    CHECK(c.fetch_count() == 6);
}
