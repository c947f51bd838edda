// The file-system backend interface and the registry of backends by URL
// scheme ("gs" for gs://bucket/object). Light on purpose: io/file.hpp
// includes it to route non-local paths, and a backend with heavy
// dependencies (io/gcs.hpp: libcurl, OpenSSL) registers itself here only when
// a program includes it. io/fs.hpp is the user-facing API on top.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <cumulus/core/error.hpp>

namespace cumulus::io {

// A sequential reader. read() returns fewer than n bytes only at the end.
class Reader {
public:
    virtual ~Reader() = default;
    virtual std::size_t read(void* dst, std::size_t n) = 0;
    // The number of bytes this reader delivers in all (its range of the file).
    virtual std::uint64_t size() const = 0;
    virtual const std::string& path() const = 0;
};

// A buffered writer: nothing is visible at `path` until close() returns.
// Destroying it unclosed (an exception on the way) abandons the write.
class Writer {
public:
    virtual ~Writer() = default;
    virtual void write(const void* data, std::size_t n) = 0;
    virtual void close() = 0;
    virtual std::uint64_t written() const = 0;
    virtual const std::string& path() const = 0;
};

struct FileInfo {
    std::string path;         // full path or URL
    std::uint64_t size = 0;
    bool is_dir = false;      // a directory, or a common prefix ("dir/") on object stores
    std::int64_t mtime = 0;   // seconds since the epoch, 0 when unknown
    std::string crc32c;       // object stores: base64 big-endian CRC-32C, as the server reports it
    std::string md5;          // object stores: base64 MD5, empty for composite objects
};

struct ReadRange {
    std::uint64_t offset = 0;
    std::uint64_t length = std::numeric_limits<std::uint64_t>::max();  // to the end
};

class FileSystem {
public:
    virtual ~FileSystem() = default;
    virtual std::unique_ptr<Reader> open_read(const std::string& path, ReadRange range) = 0;
    virtual std::unique_ptr<Writer> open_write(const std::string& path) = 0;
    virtual bool exists(const std::string& path) = 0;
    // Throws when `path` does not exist. On object stores a path that is only
    // a prefix of other objects is a directory.
    virtual FileInfo stat(const std::string& path) = 0;
    // Calls visit for each entry under `dir` (a directory or an object prefix
    // ending in '/'; a bare prefix lists names starting with it), page by
    // page; visit returns false to stop. Not recursive: subdirectories come
    // as is_dir entries. Recursive: files only.
    virtual void list(const std::string& dir, bool recursive, const std::function<bool(const FileInfo&)>& visit) = 0;
    virtual void remove(const std::string& path) = 0;
    // src and dst both on this file system.
    virtual void copy(const std::string& src, const std::string& dst) = 0;
    // Object stores have no directories: a no-op there.
    virtual void make_dirs(const std::string& path) = 0;
};

// "gs" for "gs://b/o"; "" for a local path (no scheme, or "file://").
inline std::string_view url_scheme(std::string_view path) {
    const auto colon = path.find("://");
    if (colon == std::string_view::npos || colon == 0) return {};
    for (std::size_t i = 0; i < colon; ++i) {
        const char c = path[i];
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        const bool ok = alpha || (i > 0 && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'));
        if (!ok) return {};
    }
    const auto s = path.substr(0, colon);
    if (s == "file") return {};
    return s;
}

inline bool is_local_path(std::string_view path) { return url_scheme(path).empty(); }

// "file:///x" -> "/x"; other paths unchanged.
inline std::string local_path_of(std::string_view path) {
    if (path.substr(0, 7) == "file://") return std::string(path.substr(7));
    return std::string(path);
}

namespace detail {
struct FsRegistry {
    std::mutex mu;
    std::map<std::string, std::shared_ptr<FileSystem>, std::less<>> by_scheme;
};
inline FsRegistry& fs_registry() {
    static FsRegistry r;
    return r;
}
}  // namespace detail

// Makes `fs` the backend of "scheme://" paths, replacing any earlier one.
inline void register_filesystem(const std::string& scheme, std::shared_ptr<FileSystem> fs) {
    auto& r = detail::fs_registry();
    std::lock_guard lock(r.mu);
    r.by_scheme[scheme] = std::move(fs);
}

inline std::shared_ptr<FileSystem> find_filesystem(std::string_view scheme) {
    auto& r = detail::fs_registry();
    std::lock_guard lock(r.mu);
    auto it = r.by_scheme.find(scheme);
    return it == r.by_scheme.end() ? nullptr : it->second;
}

// The backend of a non-local path; throws naming what to include and link.
inline std::shared_ptr<FileSystem> remote_filesystem(const std::string& path) {
    const auto scheme = url_scheme(path);
    auto fs = find_filesystem(scheme);
    if (fs) return fs;
    if (scheme == "gs")
        CUMULUS_FAIL("'", path, "': no backend for gs:// paths in this program: #include <cumulus/io/gcs.hpp> ",
                     "in one of its source files and link the CMake target cumulus::gcs (libcurl, OpenSSL)");
    CUMULUS_FAIL("'", path, "': no file-system backend registered for '", scheme, "://' paths");
}

}  // namespace cumulus::io
