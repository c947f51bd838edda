// cumulus-gcs: copy files to, from and within Google Cloud Storage, with the
// conventions of gsutil / gcloud storage. Run `cumulus-gcs --help`.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cumulus/io/fs.hpp>
#include <cumulus/io/gcs.hpp>

namespace io = cumulus::io;
namespace gcs = cumulus::io::gcs;
namespace sfs = std::filesystem;

namespace {

const char* kUsage = R"(cumulus-gcs: Google Cloud Storage from the command line (gsutil conventions)

usage: cumulus-gcs [options] COMMAND ARGS...

commands:
  cp [-r] SRC... DST   copy files: local -> gs://, gs:// -> local, gs:// -> gs://.
                       DST ending in '/' (or an existing directory / prefix, or
                       several SRCs) receives DST/<basename of SRC>; with -r a
                       directory SRC is copied with everything under it.
  ls [-l] [-r] URL...  list objects and prefixes ("directories"); -l adds size
                       and time, -r lists everything under the URL.
  cat URL...           write objects to standard output.
  rm [-r] URL...       delete objects; -r also everything under a prefix.
  mb gs://BUCKET       create a bucket (meant for emulators).

gs:// URLs may hold wildcards in the object name, as in gsutil (quote them
from the shell): '*' any characters but '/', '**' any including '/', '?' one
character, [abc] / [a-z] / [!a-z] one of (or not of) a set. A wildcard
names the objects it matches and, unless it has '**', the "directories"
(prefixes) it matches whole: cp takes both (directories with -r), rm the
objects (and, with -r, what is under the directories), cat the objects, and
ls lists what matched (everything under it with -r). One that matches
nothing is an error ("No URLs matched").

options:
  -j N                         run N transfers in parallel (default 4)
  -r, -R, --recursive          recurse into directories / prefixes
  -l                           long listing
  --composite-threshold SIZE   upload files of at least SIZE (e.g. 150M) as
                               parallel composite uploads: up to 32 parts
                               uploaded at once, then composed (the object
                               gets a CRC32C but no MD5). Default: off.
  --no-progress                no progress bar (shown only on a terminal)
  -h, --help                   this help

Large files (over 8 MiB, or CUMULUS_GCS_RESUMABLE_THRESHOLD bytes) go up as
resumable uploads. The session of each one is saved in
$CUMULUS_GCS_STATE_DIR (default ${XDG_CACHE_HOME:-~/.cache}/cumulus-gcs/resumable)
until it finishes, so running an interrupted cp again resumes it where the
server stopped instead of starting over. Every transfer is checked by CRC32C.

Endpoint and credentials: STORAGE_EMULATOR_HOST or
CLOUD_STORAGE_EMULATOR_ENDPOINT (an emulator, no auth), else
GOOGLE_APPLICATION_CREDENTIALS, gcloud's application default credentials,
the GCE metadata server. Exit status: 0 when everything succeeded, 1 when any
object failed (each failure is named on stderr), 2 for a usage error.
)";

struct Options {
    int jobs = 4;
    bool recursive = false;
    bool long_list = false;
    bool progress = true;
    std::uint64_t composite_threshold = 0;
    std::string command;
    std::vector<std::string> args;
};

std::uint64_t parse_size(const std::string& s) {
    std::size_t pos = 0;
    double v = 0;
    try {
        v = std::stod(s, &pos);
    } catch (...) {
        CUMULUS_FAIL("'", s, "' is not a size (like 150M)");
    }
    std::string unit = s.substr(pos);
    double mult = 1;
    if (!unit.empty()) {
        const char u = static_cast<char>(std::toupper(static_cast<unsigned char>(unit[0])));
        mult = u == 'K' ? 1024.0 : u == 'M' ? 1048576.0 : u == 'G' ? 1073741824.0 : u == 'B' ? 1.0 : -1.0;
        CUMULUS_CHECK(mult > 0, "'", s, "' is not a size (like 150M)");
    }
    return static_cast<std::uint64_t>(v * mult);
}

bool is_gs(const std::string& p) { return p.rfind("gs://", 0) == 0; }

std::string human(double b) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", b, units[u]);
    return buf;
}

// ---- progress ----

struct Progress {
    std::atomic<std::uint64_t> done{0};
    std::uint64_t total = 0;
    std::atomic<int> files_done{0};
    int files = 0;
    bool enabled = false;
    std::atomic<bool> stop{false};
    std::thread thread;
    std::mutex out_mu;

    void start() {
        if (!enabled) return;
        thread = std::thread([this] {
            while (!stop) {
                draw();
                std::this_thread::sleep_for(std::chrono::milliseconds(200));
            }
        });
    }
    void draw() {
        std::lock_guard lock(out_mu);
        const double f = total ? static_cast<double>(done) / static_cast<double>(total) : 1.0;
        const int width = 30, fill = static_cast<int>(std::min(1.0, f) * width);
        std::fprintf(stderr, "\r[%s%s] %3d%% %s / %s, %d/%d files ", std::string(fill, '#').c_str(),
                     std::string(width - fill, ' ').c_str(), static_cast<int>(f * 100), human(static_cast<double>(done)).c_str(),
                     human(static_cast<double>(total)).c_str(), files_done.load(), files);
        std::fflush(stderr);
    }
    void finish() {
        if (!enabled) return;
        stop = true;
        thread.join();
        draw();
        std::fprintf(stderr, "\n");
    }
    void error(const std::string& msg) {
        std::lock_guard lock(out_mu);
        std::fprintf(stderr, "%scumulus-gcs: %s\n", enabled ? "\r\033[K" : "", msg.c_str());
    }
};

// ---- resumable upload state ----

std::string state_dir() {
    std::string d = gcs::env_or("CUMULUS_GCS_STATE_DIR");
    if (!d.empty()) return d;
    std::string cache = gcs::env_or("XDG_CACHE_HOME");
    if (cache.empty()) cache = gcs::env_or("HOME", "/tmp") + "/.cache";
    return cache + "/cumulus-gcs/resumable";
}

struct Transfer {
    std::string src, dst;
    std::uint64_t size = 0;
};

class Copier {
public:
    Copier(gcs::Client& client, const Options& opt, Progress& progress) : c_(client), opt_(opt), p_(progress) {}

    void copy(const Transfer& t) {
        if (is_gs(t.src) && is_gs(t.dst)) {
            const auto s = gcs::parse_gs_url(t.src), d = gcs::parse_gs_url(t.dst);
            c_.copy(s.bucket, s.object, d.bucket, d.object);
            p_.done += t.size;
        } else if (is_gs(t.src)) {
            download(t);
        } else if (is_gs(t.dst)) {
            upload(t);
        } else {
            io::fs::copy(t.src, t.dst);
            p_.done += t.size;
        }
    }

private:
    void download(const Transfer& t) {
        const auto s = gcs::parse_gs_url(t.src);
        const auto parent = sfs::path(t.dst).parent_path();
        if (!parent.empty()) sfs::create_directories(parent);
        io::AtomicFileWriter w(t.dst);
        c_.download(s.bucket, s.object, [&](const char* p, std::size_t n) {
            w.write(p, n);
            p_.done += n;
        });
        w.commit();
    }

    void upload(const Transfer& t) {
        const auto d = gcs::parse_gs_url(t.dst);
        CUMULUS_CHECK(!d.object.empty() && d.object.back() != '/', "'", t.dst, "' names no object");
        if (opt_.composite_threshold && t.size >= opt_.composite_threshold) return composite(t, d);
        if (t.size <= c_.options().resumable_threshold) {
            const auto bytes = io::read_file(t.src);
            // The object's current generation as a precondition makes the
            // upload idempotent, hence retried.
            gcs::UploadOptions uo;
            const auto cur = c_.try_get_metadata(d.bucket, d.object);
            uo.if_generation_match = cur ? cur->generation : 0;
            c_.upload_multipart(d.bucket, d.object, bytes.data(), bytes.size(), uo);
            p_.done += bytes.size();
            return;
        }
        resumable(t, d);
    }

    // Reads [off, off + n) of a local file.
    static void read_range(std::ifstream& in, const std::string& path, std::uint64_t off, std::vector<std::uint8_t>& buf,
                           std::size_t n) {
        buf.resize(n);
        in.clear();
        in.seekg(static_cast<std::streamoff>(off));
        in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(n));
        CUMULUS_CHECK(static_cast<std::size_t>(in.gcount()) == n, "'", path, "': short read at offset ", off);
    }

    static std::uint32_t file_crc(const std::string& path, std::uint64_t off, std::uint64_t n) {
        std::ifstream in(path, std::ios::binary);
        CUMULUS_CHECK(in, "cannot open '", path, "'");
        in.seekg(static_cast<std::streamoff>(off));
        std::vector<char> buf(1 << 20);
        std::uint32_t crc = 0;
        while (n > 0) {
            const auto k = static_cast<std::size_t>(std::min<std::uint64_t>(n, buf.size()));
            in.read(buf.data(), static_cast<std::streamsize>(k));
            CUMULUS_CHECK(static_cast<std::size_t>(in.gcount()) == k, "'", path, "': short read");
            crc = io::crc32c(buf.data(), k, crc);
            n -= k;
        }
        return crc;
    }

    void resumable(const Transfer& t, const gcs::GsUrl& d) {
        const std::string what = "upload " + t.dst;
        struct stat st;
        CUMULUS_CHECK(::stat(t.src.c_str(), &st) == 0, "cannot stat '", t.src, "'");
        const std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
        const std::string key = sfs::absolute(t.src).string() + "|" + std::to_string(size) + "|" +
                                std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + "|" +
                                t.dst;
        char name[40];
        std::snprintf(name, sizeof name, "%08x%08x.json", io::crc32c(key.data(), key.size()),
                      io::crc32c(key.data(), key.size(), 0x9e3779b9u));
        const std::string dir = state_dir();
        const std::string state_file = dir + "/" + name;
        const std::uint32_t crc = file_crc(t.src, 0, size);

        std::string session;
        std::uint64_t committed = 0;
        if (std::ifstream in{state_file}) {
            auto j = nlohmann::json::parse(in, nullptr, false);
            if (j.is_object() && j.value("key", "") == key && j.contains("session")) {
                try {
                    auto s = c_.query_resumable(j["session"].get<std::string>(), size, what);
                    if (s.done) {
                        c_.verified(s.object, crc, what);
                        p_.done += size;
                        sfs::remove(state_file);
                        return;
                    }
                    session = j["session"].get<std::string>();
                    committed = s.committed;
                } catch (const gcs::HttpError&) {
                    // The session expired or is unknown: start over.
                }
            }
        }
        if (session.empty()) {
            gcs::UploadOptions uo;
            uo.crc32c = gcs::crc32c_base64(crc);
            session = c_.start_resumable(d.bucket, d.object, uo, size);
            sfs::create_directories(dir);
            {
                // The session URL is a capability: the file is created readable by its owner only.
                const std::string text =
                    nlohmann::json{{"key", key}, {"session", session}, {"destination", t.dst}}.dump();
                const std::string tmp = state_file + ".tmp";
                ::unlink(tmp.c_str());
                const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                CUMULUS_CHECK(fd >= 0, "cannot create the upload state file ", tmp, ": ", std::strerror(errno));
                const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
                ::close(fd);
                CUMULUS_CHECK(ok, "cannot write the upload state file ", tmp);
            }
            sfs::rename(state_file + ".tmp", state_file);
        }
        p_.done += committed;
        std::uint64_t reported = committed;
        std::ifstream in(t.src, std::ios::binary);
        std::vector<std::uint8_t> window;
        const std::uint64_t window_size = std::max<std::uint64_t>(c_.options().chunk_size, 32u << 20) /
                                          gcs::kUploadQuantum * gcs::kUploadQuantum;
        gcs::ResumableStatus s;
        while (true) {
            const bool last = size - committed <= window_size;
            const auto n = static_cast<std::size_t>(last ? size - committed : window_size);
            read_range(in, t.src, committed, window, n);
            s = c_.send_resumable(session, committed, window.data(), n, last ? std::optional<std::uint64_t>(size) : std::nullopt,
                                  what, [&](std::uint64_t at) {
                                      if (at > reported) p_.done += at - reported;
                                      reported = std::max(reported, at);
                                  });
            committed = s.committed;
            if (s.done || last) break;
        }
        CUMULUS_CHECK(s.done, what, ": the session did not finish");
        c_.verified(s.object, crc, what);
        sfs::remove(state_file);
    }

    void composite(const Transfer& t, const gcs::GsUrl& d) {
        const std::string what = "upload " + t.dst;
        const std::uint64_t size = t.size;
        const std::uint64_t component = std::max<std::uint64_t>({std::uint64_t{50} << 20, (size + 31) / 32});
        std::uint64_t parts = std::clamp<std::uint64_t>((size + component - 1) / component, 2, 32);
        const std::uint64_t part_size = (size + parts - 1) / parts;
        parts = (size + part_size - 1) / part_size;
        char tag[20];
        std::snprintf(tag, sizeof tag, "%08x%08x", static_cast<unsigned>(std::random_device{}()),
                      io::crc32c(t.dst.data(), t.dst.size()));
        const std::string tmp_prefix = "cumulus-gcs-tmp/" + std::string(tag) + "/";
        std::vector<std::string> names(parts);
        std::atomic<std::size_t> next{0};
        std::mutex err_mu;
        std::string first_error;
        auto worker = [&] {
            std::ifstream in(t.src, std::ios::binary);
            std::vector<std::uint8_t> buf;
            for (std::size_t i; (i = next++) < parts;) {
                try {
                    const std::uint64_t off = i * part_size, n = std::min(part_size, size - off);
                    read_range(in, t.src, off, buf, static_cast<std::size_t>(n));
                    names[i] = tmp_prefix + std::to_string(i);
                    gcs::UploadOptions uo;
                    uo.if_generation_match = 0;
                    c_.upload_bytes(d.bucket, names[i], buf.data(), buf.size(), uo);
                    p_.done += n;
                } catch (const std::exception& e) {
                    std::lock_guard lock(err_mu);
                    if (first_error.empty()) first_error = e.what();
                }
            }
        };
        std::vector<std::thread> threads;
        for (int k = 0; k < std::max(1, opt_.jobs); ++k) threads.emplace_back(worker);
        for (auto& th : threads) th.join();
        auto cleanup = [&] {
            for (const auto& n : names)
                if (!n.empty()) try {
                        c_.delete_object(d.bucket, n);
                    } catch (...) {
                    }
        };
        if (!first_error.empty()) {
            cleanup();
            CUMULUS_FAIL(what, " (parallel composite): ", first_error);
        }
        try {
            const auto cur = c_.try_get_metadata(d.bucket, d.object);
            auto m = c_.compose(d.bucket, names, d.object, "application/octet-stream", cur ? cur->generation : 0);
            c_.verified(m, file_crc(t.src, 0, size), what);
        } catch (...) {
            cleanup();
            throw;
        }
        cleanup();
    }

    gcs::Client& c_;
    const Options& opt_;
    Progress& p_;
};

// ---- commands ----

// The objects and "directories" that a gs:// URL with wildcards names, in
// name order: objects with what the listing says of them (size, time,
// checksums; nothing more is asked of the server), directories (prefixes that
// the pattern matches whole, when it has no '**') as gs://b/dir/. A pattern
// ending in '/' names directories only. One listing of everything under the
// pattern's literal start.
struct Matches {
    std::vector<io::FileInfo> objects;
    std::vector<std::string> dirs;
    bool empty() const { return objects.empty() && dirs.empty(); }
};

Matches expand_wildcard(gcs::Client& client, const gcs::GsUrl& u, const std::string& url) {
    CUMULUS_CHECK(!gcs::has_wildcard(u.bucket), "'", url, "': wildcards in bucket names are not supported");
    std::string pat = u.object;
    const bool dirs_only = !pat.empty() && pat.back() == '/';
    if (dirs_only) pat.pop_back();
    const bool deep = pat.find("**") != std::string::npos;
    const std::string prefix(gcs::wildcard_prefix(pat));
    const std::string base = "gs://" + u.bucket + "/";
    Matches m;
    std::set<std::string> dirs;
    client.list(u.bucket, prefix, "", [&](const gcs::ListPage& page) {
        for (const auto& item : page.items) {
            const std::string& name = item.name;
            if (!dirs_only && name.back() != '/' && gcs::wildcard_match(pat, name))
                m.objects.push_back(gcs::GcsFileSystem::info_of(item));
            if (deep) continue;
            for (auto slash = name.find('/', prefix.size()); slash != std::string::npos; slash = name.find('/', slash + 1))
                if (gcs::wildcard_match(pat, std::string_view(name).substr(0, slash)))
                    dirs.insert(base + name.substr(0, slash + 1));
        }
        return true;
    });
    std::sort(m.objects.begin(), m.objects.end(),
              [](const io::FileInfo& a, const io::FileInfo& b) { return a.path < b.path; });
    m.dirs.assign(dirs.begin(), dirs.end());
    return m;
}

// The wildcard matches of `url`, or nothing when it is not a gs:// URL with a
// wildcard in the object name (it is then taken as it is).
std::optional<Matches> wildcard_matches(gcs::Client& client, const std::string& url) {
    if (!is_gs(url)) return std::nullopt;
    const auto u = gcs::parse_gs_url(url);
    if (!gcs::has_wildcard(u.object)) return std::nullopt;
    return expand_wildcard(client, u, url);
}

bool is_gs_wildcard(const std::string& url) { return is_gs(url) && gcs::has_wildcard(gcs::parse_gs_url(url).object); }

// Whether objects exist under URL/ (a "directory"): one one-item listing.
bool is_gs_prefix(gcs::Client& client, const std::string& url) {
    const auto u = gcs::parse_gs_url(url);
    std::string prefix = u.object;
    if (!prefix.empty() && prefix.back() != '/') prefix += '/';
    const auto page = client.list_page(u.bucket, prefix, "/", {}, 1);
    return !page.items.empty() || !page.prefixes.empty();
}

// What a gs:// URL without wildcards names: the object (as the server
// describes it), else a "directory" (is_dir: objects exist under URL/), else
// nothing. At most one metadata request and one one-item listing.
std::optional<io::FileInfo> lookup_gs(gcs::Client& client, const std::string& url) {
    const auto u = gcs::parse_gs_url(url);
    if (!u.object.empty() && u.object.back() != '/')
        if (auto m = client.try_get_metadata(u.bucket, u.object)) return gcs::GcsFileSystem::info_of(*m);
    if (!is_gs_prefix(client, url)) return std::nullopt;
    io::FileInfo dir;
    dir.path = url;
    dir.is_dir = true;
    return dir;
}

std::string no_match(const std::string& url) { return "No URLs matched: " + url; }

// The objects a gs:// URL without wildcards names: the object itself; else,
// with `recursive`, every object under URL/ ("directory" placeholders
// included). One metadata request (none for a bucket or a URL ending in
// '/'), and with `recursive` one listing.
std::vector<io::FileInfo> expand_gs(gcs::Client& client, const std::string& url, bool recursive) {
    const auto u = gcs::parse_gs_url(url);
    std::string prefix = u.object;
    if (!prefix.empty() && prefix.back() != '/') {
        if (auto m = client.try_get_metadata(u.bucket, u.object)) return {gcs::GcsFileSystem::info_of(*m)};
        prefix += '/';
    }
    std::vector<io::FileInfo> out;
    if (!recursive) return out;
    client.list(u.bucket, prefix, "", [&](const gcs::ListPage& page) {
        for (const auto& item : page.items) out.push_back(gcs::GcsFileSystem::info_of(item));
        return true;
    });
    return out;
}

std::string with_slash(std::string url) {
    if (url.empty() || url.back() != '/') url += '/';
    return url;
}

// The part of `path` after `root` ("gs://b/p/" + "x/y" -> "x/y").
std::string relative_to(const std::string& path, std::string root) {
    if (!root.empty() && root.back() != '/') root += '/';
    return path.rfind(root, 0) == 0 ? path.substr(root.size()) : io::fs::basename(path);
}

int cmd_cp(gcs::Client& client, const Options& opt) {
    CUMULUS_CHECK(opt.args.size() >= 2, "cp needs SRC... DST");
    const std::string dst = opt.args.back();
    CUMULUS_CHECK(!is_gs_wildcard(dst), "cp: the destination '", dst, "' has a wildcard; name one place");
    // Each source with what is known of it: a wildcard's matches come with
    // their listing; any other gs:// source is looked up once, below.
    struct Source {
        std::string url;
        std::optional<io::FileInfo> info;
    };
    std::vector<Source> srcs;
    std::vector<std::string> failures;
    for (auto it = opt.args.begin(); it != opt.args.end() - 1; ++it) {
        const auto m = wildcard_matches(client, *it);
        if (!m) {
            srcs.push_back({*it, std::nullopt});
            continue;
        }
        if (m->empty()) failures.push_back(no_match(*it));
        for (const auto& f : m->objects) srcs.push_back({f.path, f});
        for (const auto& d : m->dirs) {  // a directory source
            io::FileInfo dir;
            dir.path = d.substr(0, d.size() - 1);
            dir.is_dir = true;
            srcs.push_back({dir.path, dir});
        }
    }
    const bool dst_is_dir = dst.back() == '/' || srcs.size() > 1 ||
                            (is_gs(dst) && gcs::parse_gs_url(dst).object.empty()) || io::fs::is_directory(dst);
    std::vector<Transfer> todo;
    for (auto& [src, info] : srcs) {
        if (is_gs(src) && !info) {
            info = lookup_gs(client, src);
            if (!info) {
                failures.push_back("No such object: " + src);
                continue;
            }
        }
        const bool src_dir = info ? info->is_dir : sfs::is_directory(src);
        if (src_dir) {
            if (!opt.recursive) {
                failures.push_back("omitting directory '" + src + "' (use cp -r)");
                continue;
            }
            // gsutil: into an existing DST the directory nests as DST/<name>/...; else it becomes DST.
            const std::string base = dst_is_dir ? io::fs::join(dst, io::fs::basename(src)) : dst;
            for (const auto& f : is_gs(src) ? expand_gs(client, with_slash(src), true) : io::fs::list(src, true))
                if (!f.is_dir && f.path.back() != '/') todo.push_back({f.path, io::fs::join(base, relative_to(f.path, src)), f.size});
            continue;
        }
        std::uint64_t size = 0;
        if (info) {
            size = info->size;
        } else {
            std::error_code ec;
            size = sfs::file_size(src, ec);
            if (ec) {
                failures.push_back("cannot read '" + src + "': " + ec.message());
                continue;
            }
        }
        todo.push_back({src, dst_is_dir ? io::fs::join(dst, io::fs::basename(src)) : dst, size});
    }
    Progress progress;
    progress.enabled = opt.progress && ::isatty(2);
    for (const auto& t : todo) progress.total += t.size;
    progress.files = static_cast<int>(todo.size());
    for (const auto& f : failures) progress.error(f);
    Copier copier(client, opt, progress);
    std::atomic<std::size_t> next{0};
    std::atomic<int> failed{static_cast<int>(failures.size())};
    progress.start();
    auto worker = [&] {
        for (std::size_t i; (i = next++) < todo.size();) {
            try {
                copier.copy(todo[i]);
                ++progress.files_done;
            } catch (const std::exception& e) {
                ++failed;
                progress.error("cp " + todo[i].src + " -> " + todo[i].dst + " failed: " + e.what());
            }
        }
    };
    std::vector<std::thread> threads;
    const int n = static_cast<int>(std::min<std::size_t>(std::max(1, opt.jobs), std::max<std::size_t>(todo.size(), 1)));
    for (int k = 0; k < n; ++k) threads.emplace_back(worker);
    for (auto& th : threads) th.join();
    progress.finish();
    return failed ? 1 : 0;
}

int cmd_ls(gcs::Client& client, const Options& opt) {
    CUMULUS_CHECK(!opt.args.empty(), "ls needs a gs:// URL");
    int rc = 0;
    std::uint64_t objects = 0, bytes = 0;
    auto show = [&](const io::FileInfo& f) {
        if (opt.long_list && !f.is_dir) {
            // As gsutil ls -l: size, the object's update time (UTC), URL.
            char when[32] = "-";
            const std::time_t t = static_cast<std::time_t>(f.mtime);
            std::tm tm{};
            if (f.mtime > 0 && ::gmtime_r(&t, &tm)) std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
            std::printf("%12llu  %s  %s\n", static_cast<unsigned long long>(f.size), when, f.path.c_str());
            ++objects;
            bytes += f.size;
        } else {
            std::printf("%s\n", f.path.c_str());
        }
    };
    // One URL without wildcards: the object, or what is in (-r: under) the prefix.
    auto list_one = [&](const std::string& url) {
        bool any = false;
        io::fs::list(url, opt.recursive, [&](const io::FileInfo& f) {
            any = true;
            show(f);
            return true;
        });
        if (!any && !io::fs::exists(url)) {
            std::fprintf(stderr, "cumulus-gcs: ls: %s matched no objects\n", url.c_str());
            rc = 1;
        }
    };
    for (const auto& arg : opt.args) {
        CUMULUS_CHECK(is_gs(arg), "ls lists gs:// URLs, got '", arg, "'");
        const auto m = wildcard_matches(client, arg);
        if (!m) {
            list_one(arg);
            continue;
        }
        // A wildcard lists what it matched, in name order: objects as the
        // listing described them, and directories by name (-r: everything
        // under them).
        if (m->empty()) {
            std::fprintf(stderr, "cumulus-gcs: ls: %s\n", no_match(arg).c_str());
            rc = 1;
        }
        auto obj = m->objects.begin();
        auto dir = m->dirs.begin();
        while (obj != m->objects.end() || dir != m->dirs.end()) {
            if (dir == m->dirs.end() || (obj != m->objects.end() && obj->path < *dir)) {
                show(*obj++);
            } else if (opt.recursive) {
                list_one(*dir++);
            } else {
                std::printf("%s\n", (dir++)->c_str());
            }
        }
    }
    if (opt.long_list) std::printf("TOTAL: %llu objects, %llu bytes (%s)\n", static_cast<unsigned long long>(objects),
                                   static_cast<unsigned long long>(bytes), human(static_cast<double>(bytes)).c_str());
    return rc;
}

int cmd_cat(gcs::Client& client, const Options& opt) {
    CUMULUS_CHECK(!opt.args.empty(), "cat needs a gs:// URL");
    int rc = 0;
    for (const auto& arg : opt.args) {
        std::vector<std::string> urls{arg};
        try {
            if (const auto m = wildcard_matches(client, arg)) {
                urls.clear();
                for (const auto& f : m->objects) urls.push_back(f.path);
                if (urls.empty()) CUMULUS_FAIL(no_match(arg));
            }
        } catch (const std::exception& e) {
            std::fprintf(stderr, "cumulus-gcs: cat %s failed: %s\n", arg.c_str(), e.what());
            rc = 1;
            continue;
        }
        for (const auto& url : urls) {
            try {
                const auto u = gcs::parse_gs_url(url);
                client.download(u.bucket, u.object,
                                [](const char* p, std::size_t n) { std::fwrite(p, 1, n, stdout); });
            } catch (const std::exception& e) {
                std::fprintf(stderr, "cumulus-gcs: cat %s failed: %s\n", url.c_str(), e.what());
                rc = 1;
            }
        }
    }
    std::fflush(stdout);
    return rc;
}

int cmd_rm(gcs::Client& client, const Options& opt) {
    CUMULUS_CHECK(!opt.args.empty(), "rm needs a gs:// URL");
    int rc = 0;
    for (const auto& url : opt.args) {
        try {
            CUMULUS_CHECK(is_gs(url), "rm removes gs:// objects, got '", url, "'");
            if (const auto m = wildcard_matches(client, url)) {
                if (m->empty()) CUMULUS_FAIL(no_match(url));
                std::vector<std::string> doomed;
                for (const auto& f : m->objects) doomed.push_back(f.path);
                for (const auto& d : m->dirs) {
                    if (!opt.recursive) {
                        std::fprintf(stderr, "Omitting prefix %s (use rm -r)\n", d.c_str());
                        continue;
                    }
                    for (const auto& f : expand_gs(client, d, true)) doomed.push_back(f.path);
                }
                std::sort(doomed.begin(), doomed.end());
                doomed.erase(std::unique(doomed.begin(), doomed.end()), doomed.end());
                for (const auto& f : doomed) {
                    io::fs::remove(f);
                    std::fprintf(stderr, "Removing %s\n", f.c_str());
                }
                continue;
            }
            const auto found = expand_gs(client, url, opt.recursive);
            if (found.empty()) {
                // expand_gs found no object named url: a prefix, or nothing at all.
                if (!opt.recursive && is_gs_prefix(client, url)) CUMULUS_FAIL(url, " is a prefix: use rm -r");
                CUMULUS_FAIL("No such object: ", url);
            }
            for (const auto& f : found) {
                io::fs::remove(f.path);
                std::fprintf(stderr, "Removing %s\n", f.path.c_str());
            }
        } catch (const std::exception& e) {
            std::fprintf(stderr, "cumulus-gcs: rm %s failed: %s\n", url.c_str(), e.what());
            rc = 1;
        }
    }
    return rc;
}

Options parse_args(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            CUMULUS_CHECK(i + 1 < argc, a, " needs a value");
            return argv[++i];
        };
        if (a == "-h" || a == "--help") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        } else if (a == "-j" || a == "-m") {
            if (a == "-m") continue;  // gsutil's "parallel": -j's default already is
            o.jobs = std::stoi(value());
            CUMULUS_CHECK(o.jobs >= 1, "-j needs a positive number");
        } else if (a.rfind("-j", 0) == 0 && a.size() > 2) {
            o.jobs = std::stoi(a.substr(2));
        } else if (a == "-r" || a == "-R" || a == "--recursive") {
            o.recursive = true;
        } else if (a == "-l") {
            o.long_list = true;
        } else if (a == "--no-progress") {
            o.progress = false;
        } else if (a == "--composite-threshold") {
            o.composite_threshold = parse_size(value());
        } else if (a.size() > 1 && a[0] == '-') {
            CUMULUS_FAIL("unknown option '", a, "' (see --help)");
        } else if (o.command.empty()) {
            o.command = a;
        } else {
            o.args.push_back(a);
        }
    }
    return o;
}

}  // namespace

int main(int argc, char** argv) {
    Options opt;
    try {
        opt = parse_args(argc, argv);
        if (opt.command.empty()) CUMULUS_FAIL("no command (see --help)");
        if (opt.command != "cp" && opt.command != "ls" && opt.command != "cat" && opt.command != "rm" &&
            opt.command != "mb")
            CUMULUS_FAIL("unknown command '", opt.command, "' (see --help)");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "cumulus-gcs: %s\n", e.what());
        return 2;
    }
    try {
        auto client = std::make_shared<gcs::Client>(gcs::ClientOptions::from_env());
        gcs::use_client(client);
        if (opt.command == "cp") return cmd_cp(*client, opt);
        if (opt.command == "ls") return cmd_ls(*client, opt);
        if (opt.command == "cat") return cmd_cat(*client, opt);
        if (opt.command == "rm") return cmd_rm(*client, opt);
        for (const auto& url : opt.args) client->create_bucket(gcs::parse_gs_url(url).bucket);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "cumulus-gcs: %s: %s\n", opt.command.c_str(), e.what());
        return 1;
    }
}
