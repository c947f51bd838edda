// Google OAuth2 credentials for the GCS client, found in the order Google's
// libraries use:
//   1. STORAGE_EMULATOR_HOST / CLOUD_STORAGE_EMULATOR_ENDPOINT set: anonymous.
//   2. GOOGLE_APPLICATION_CREDENTIALS: a service_account or authorized_user JSON file.
//   3. gcloud's application default credentials
//      ($CLOUDSDK_CONFIG or ~/.config/gcloud)/application_default_credentials.json.
//   4. The GCE metadata server (GCE_METADATA_HOST, else metadata.google.internal),
//      probed with a short timeout.
// Service accounts sign an RS256 JWT with OpenSSL and trade it at token_uri;
// tokens are cached and refreshed five minutes before they expire. No
// credential (key, assertion, refresh or access token) is ever printed: error
// messages carry the endpoint, the status and the server's error code only.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cumulus/core/error.hpp>
#include <cumulus/io/http.hpp>

namespace cumulus::io::gcs {

inline constexpr const char* kDefaultScope = "https://www.googleapis.com/auth/devstorage.read_write";
inline constexpr const char* kDefaultTokenUri = "https://oauth2.googleapis.com/token";

inline std::string env_or(const char* name, const std::string& fallback = {}) {
    const char* v = std::getenv(name);
    return v && *v ? std::string(v) : fallback;
}

// The emulator's base URL from STORAGE_EMULATOR_HOST or
// CLOUD_STORAGE_EMULATOR_ENDPOINT ("http://" added when the scheme is missing);
// empty when neither is set.
inline std::string emulator_endpoint() {
    std::string e = env_or("STORAGE_EMULATOR_HOST");
    if (e.empty()) e = env_or("CLOUD_STORAGE_EMULATOR_ENDPOINT");
    if (e.empty()) return e;
    if (e.find("://") == std::string::npos) e = "http://" + e;
    while (!e.empty() && e.back() == '/') e.pop_back();
    return e;
}

class Credentials {
public:
    virtual ~Credentials() = default;
    // "Authorization: Bearer ..." or empty (anonymous).
    virtual std::string authorization_header() = 0;
    // What kind, for messages: never the secret.
    virtual std::string description() const = 0;
};

class AnonymousCredentials final : public Credentials {
public:
    std::string authorization_header() override { return {}; }
    std::string description() const override { return "anonymous"; }
};

namespace detail {

inline std::int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// The server's error code from a token endpoint's JSON body, if any.
inline std::string oauth_error_of(const std::string& body) {
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_object()) {
        std::string s;
        if (j.contains("error") && j["error"].is_string()) s = j["error"].get<std::string>();
        if (j.contains("error_description") && j["error_description"].is_string())
            s += ": " + j["error_description"].get<std::string>();
        if (!s.empty()) return s;
    }
    return "(no error code in the response)";
}

}  // namespace detail

// Caches an access token and fetches a new one five minutes before expiry
// (half-way through its life for tokens that live less than ten minutes).
class TokenCredentials : public Credentials {
public:
    std::string authorization_header() override {
        std::lock_guard lock(mu_);
        const auto now = clock_now();
        if (token_.empty() || now >= refresh_at_) {
            auto [tok, expires_in] = fetch_token();
            CUMULUS_CHECK(!tok.empty(), description(), ": the token endpoint returned no access_token");
            token_ = std::move(tok);
            const std::int64_t life = std::max<std::int64_t>(expires_in, 60);
            expiry_ = now + life;
            refresh_at_ = expiry_ - std::min<std::int64_t>(300, life / 2);
            ++fetches_;
        }
        return "Authorization: Bearer " + token_;
    }
    int fetch_count() const { return fetches_; }

protected:
    // {access_token, expires_in seconds}
    virtual std::pair<std::string, std::int64_t> fetch_token() = 0;
    // Unix seconds; a test overrides it to step through a token's life.
    virtual std::int64_t clock_now() const { return detail::unix_now(); }

    // POSTs a form to a token endpoint and parses the usual reply.
    std::pair<std::string, std::int64_t> post_token_form(const std::string& uri, const std::string& form) {
        http::Request req;
        req.method = "POST";
        req.url = uri;
        req.headers = {"Content-Type: application/x-www-form-urlencoded"};
        req.set_body(form.data(), form.size());
        req.timeout_ms = 30000;
        http::Response resp;
        // Asking for a token is idempotent: network errors, 408, 429 and 5xx
        // are retried a few times (0.5, 1, 2 s apart) before giving up.
        for (int attempt = 0;; ++attempt) {
            std::string failure;
            resp = http::Response{};
            try {
                resp = http::perform(req);
                const bool transient = resp.status == 408 || resp.status == 429 || resp.status >= 500;
                if (!transient) break;
                failure = "HTTP " + std::to_string(resp.status);
            } catch (const http::NetworkError& e) {
                failure = e.what();
            }
            if (attempt == 3) {
                if (resp.status == 0)
                    CUMULUS_FAIL(description(), ": cannot reach the token endpoint: ", failure);
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(500 << attempt));
        }
        if (resp.status != 200)
            CUMULUS_FAIL(description(), ": token endpoint ", http::redact_url(uri), " answered HTTP ", resp.status, ": ",
                         detail::oauth_error_of(resp.body));
        return parse_token_reply(resp.body, uri);
    }
    std::pair<std::string, std::int64_t> parse_token_reply(const std::string& body, const std::string& uri) {
        auto j = nlohmann::json::parse(body, nullptr, false);
        CUMULUS_CHECK(j.is_object() && j.contains("access_token") && j["access_token"].is_string(), description(),
                      ": the reply of ", http::redact_url(uri), " has no access_token");
        std::int64_t expires_in = 3600;
        if (j.contains("expires_in") && j["expires_in"].is_number()) expires_in = j["expires_in"].get<std::int64_t>();
        return {j["access_token"].get<std::string>(), expires_in};
    }

private:
    std::mutex mu_;
    std::string token_;
    std::int64_t expiry_ = 0, refresh_at_ = 0;
    int fetches_ = 0;
};

// An RS256-signed JWT (header.claims.signature, base64url) for the service
// account's key, as google-auth builds it.
inline std::string make_service_account_jwt(const std::string& private_key_pem, const std::string& client_email,
                                            const std::string& private_key_id, const std::string& audience,
                                            const std::string& scope, std::int64_t iat) {
    nlohmann::json header = {{"alg", "RS256"}, {"typ", "JWT"}};
    if (!private_key_id.empty()) header["kid"] = private_key_id;
    nlohmann::json claims = {{"iss", client_email}, {"scope", scope}, {"aud", audience},
                             {"iat", iat},          {"exp", iat + 3600}};
    const std::string signing_input =
        http::base64_encode(header.dump(), true) + "." + http::base64_encode(claims.dump(), true);

    BIO* bio = BIO_new_mem_buf(private_key_pem.data(), static_cast<int>(private_key_pem.size()));
    CUMULUS_CHECK(bio != nullptr, "service account ", client_email, ": out of memory reading the key");
    EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    CUMULUS_CHECK(key != nullptr, "service account ", client_email, ": private_key is not a PEM private key");
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    std::size_t sig_len = 0;
    bool ok = ctx && EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
              EVP_DigestSignUpdate(ctx, signing_input.data(), signing_input.size()) == 1 &&
              EVP_DigestSignFinal(ctx, nullptr, &sig_len) == 1;
    std::vector<unsigned char> sig(sig_len);
    ok = ok && EVP_DigestSignFinal(ctx, sig.data(), &sig_len) == 1;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(key);
    CUMULUS_CHECK(ok, "service account ", client_email, ": signing the JWT with the private key failed");
    return signing_input + "." + http::base64_encode(sig.data(), sig_len, true);
}

class ServiceAccountCredentials final : public TokenCredentials {
public:
    explicit ServiceAccountCredentials(const nlohmann::json& key, std::string scope = kDefaultScope)
        : scope_(std::move(scope)) {
        auto field = [&](const char* name, bool required) -> std::string {
            if (key.contains(name) && key[name].is_string()) return key[name].get<std::string>();
            CUMULUS_CHECK(!required, "service account credentials: the field '", name, "' is missing");
            return {};
        };
        client_email_ = field("client_email", true);
        private_key_ = field("private_key", true);
        private_key_id_ = field("private_key_id", false);
        token_uri_ = field("token_uri", false);
        if (token_uri_.empty()) token_uri_ = kDefaultTokenUri;
    }
    std::string description() const override { return "service account " + client_email_; }
    const std::string& token_uri() const { return token_uri_; }

protected:
    std::pair<std::string, std::int64_t> fetch_token() override {
        // The audience is always Google's token endpoint name, as google-auth sends it.
        const std::string jwt = make_service_account_jwt(private_key_, client_email_, private_key_id_,
                                                         kDefaultTokenUri, scope_, detail::unix_now());
        return post_token_form(token_uri_, http::form_encode({{"grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"},
                                                              {"assertion", jwt}}));
    }

private:
    std::string scope_, client_email_, private_key_, private_key_id_, token_uri_;
};

class AuthorizedUserCredentials final : public TokenCredentials {
public:
    explicit AuthorizedUserCredentials(const nlohmann::json& j) {
        for (const char* f : {"client_id", "client_secret", "refresh_token"})
            CUMULUS_CHECK(j.contains(f) && j[f].is_string(), "authorized_user credentials: the field '", f,
                          "' is missing");
        client_id_ = j["client_id"].get<std::string>();
        client_secret_ = j["client_secret"].get<std::string>();
        refresh_token_ = j["refresh_token"].get<std::string>();
        token_uri_ = j.contains("token_uri") && j["token_uri"].is_string() ? j["token_uri"].get<std::string>()
                                                                           : std::string(kDefaultTokenUri);
    }
    std::string description() const override { return "authorized user credentials"; }

protected:
    std::pair<std::string, std::int64_t> fetch_token() override {
        return post_token_form(token_uri_, http::form_encode({{"grant_type", "refresh_token"},
                                                              {"client_id", client_id_},
                                                              {"client_secret", client_secret_},
                                                              {"refresh_token", refresh_token_}}));
    }

private:
    std::string client_id_, client_secret_, refresh_token_, token_uri_;
};

inline std::string metadata_host() {
    std::string h = env_or("GCE_METADATA_HOST");
    if (h.empty()) h = env_or("GCE_METADATA_ROOT", "metadata.google.internal");
    return h;
}

class ComputeMetadataCredentials final : public TokenCredentials {
public:
    explicit ComputeMetadataCredentials(std::string host = metadata_host()) : host_(std::move(host)) {}
    std::string description() const override { return "GCE metadata server credentials"; }

protected:
    std::pair<std::string, std::int64_t> fetch_token() override {
        http::Request req;
        req.url = "http://" + host_ + "/computeMetadata/v1/instance/service-accounts/default/token";
        req.headers = {"Metadata-Flavor: Google"};
        req.timeout_ms = 10000;
        http::Response resp;
        try {
            resp = http::perform(req);
        } catch (const http::NetworkError& e) {
            CUMULUS_FAIL(description(), ": ", e.what());
        }
        CUMULUS_CHECK(resp.status == 200, description(), ": HTTP ", resp.status, " from ", http::redact_url(req.url));
        return parse_token_reply(resp.body, req.url);
    }

private:
    std::string host_;
};

// Reads a credentials JSON file (service_account or authorized_user).
inline std::shared_ptr<Credentials> credentials_from_file(const std::string& path) {
    std::ifstream in(path);
    CUMULUS_CHECK(in, "cannot open the credentials file '", path, "'");
    std::stringstream ss;
    ss << in.rdbuf();
    auto j = nlohmann::json::parse(ss.str(), nullptr, false);
    CUMULUS_CHECK(j.is_object() && j.contains("type") && j["type"].is_string(), "credentials file '", path,
                  "' is not a JSON object with a \"type\"");
    const auto type = j["type"].get<std::string>();
    if (type == "service_account") return std::make_shared<ServiceAccountCredentials>(j);
    if (type == "authorized_user") return std::make_shared<AuthorizedUserCredentials>(j);
    CUMULUS_FAIL("credentials file '", path, "': unsupported type '", type,
                 "' (service_account and authorized_user are supported)");
}

// True when a GCE metadata server answers within about a second.
inline bool metadata_server_available() {
    http::Request req;
    req.url = "http://" + env_or("GCE_METADATA_IP", metadata_host()) + "/";
    req.headers = {"Metadata-Flavor: Google"};
    req.connect_timeout_ms = 1000;
    req.timeout_ms = 2000;
    try {
        auto resp = http::perform(req);
        return resp.header("metadata-flavor") == "Google";
    } catch (const http::NetworkError&) {
        return false;
    }
}

inline std::shared_ptr<Credentials> default_credentials() {
    if (!emulator_endpoint().empty()) return std::make_shared<AnonymousCredentials>();
    const std::string adc = env_or("GOOGLE_APPLICATION_CREDENTIALS");
    if (!adc.empty()) return credentials_from_file(adc);
    std::string config = env_or("CLOUDSDK_CONFIG");
    if (config.empty() && !env_or("HOME").empty()) config = env_or("HOME") + "/.config/gcloud";
    if (!config.empty()) {
        const std::string gcloud = config + "/application_default_credentials.json";
        if (std::ifstream(gcloud)) return credentials_from_file(gcloud);
    }
    if (metadata_server_available()) return std::make_shared<ComputeMetadataCredentials>();
    CUMULUS_FAIL("no Google Cloud credentials found: set GOOGLE_APPLICATION_CREDENTIALS to a service-account key "
                 "file, run `gcloud auth application-default login`, run on Google Cloud (metadata server), or set "
                 "STORAGE_EMULATOR_HOST for an emulator");
}

}  // namespace cumulus::io::gcs
