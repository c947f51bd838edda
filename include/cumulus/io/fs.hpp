// One file-system interface over local paths and object-store URLs
// (gs://bucket/object once <cumulus/io/gcs.hpp> is included somewhere in the
// program; other schemes through register_filesystem()).
//
//   auto r = fs::open_read("gs://b/data.tfrecord");  r->read(buf, n);
//   auto w = fs::open_write("gs://b/out.bin");  w->write(p, n);  w->close();
//   fs::exists, fs::stat, fs::file_size, fs::is_directory, fs::list,
//   fs::remove, fs::remove_all, fs::copy, fs::make_dirs, fs::join
//
// Writers commit on close(): a local file is renamed into place, an object is
// created by its upload's last request. Object stores have no directories:
// "a/b" is a directory when objects named "a/b/..." exist, make_dirs is a
// no-op, and removing a directory removes the objects under it.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cumulus/core/error.hpp>
#include <cumulus/io/file.hpp>
#include <cumulus/io/fs_registry.hpp>

namespace cumulus::io {

// Everything `r` delivers into `w`, 1 MiB at a time; closes (commits) `w`.
inline void stream_copy(Reader& r, Writer& w) {
    std::vector<char> buf(1 << 20);
    for (;;) {
        const std::size_t n = r.read(buf.data(), buf.size());
        if (n) w.write(buf.data(), n);
        if (n < buf.size()) break;
    }
    w.close();
}

// Local files: pread over a range, AtomicFileWriter for writes.
class LocalReader final : public Reader {
public:
    LocalReader(const std::string& path, ReadRange range) : path_(path) {
        const auto local = local_path_of(path);
        do {
            fd_ = ::open(local.c_str(), O_RDONLY | O_CLOEXEC);
        } while (fd_ < 0 && errno == EINTR);
        if (fd_ < 0) CUMULUS_FAIL("cannot open '", path, "' for reading: ", std::strerror(errno));
        struct stat st;
        if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
            ::close(fd_);
            CUMULUS_FAIL("'", path, "' is not a regular file");
        }
        const auto file_size = static_cast<std::uint64_t>(st.st_size);
        pos_ = std::min(range.offset, file_size);
        end_ = pos_ + std::min(range.length, file_size - pos_);
        size_ = end_ - pos_;
    }
    LocalReader(const LocalReader&) = delete;
    LocalReader& operator=(const LocalReader&) = delete;
    ~LocalReader() override { ::close(fd_); }

    std::size_t read(void* dst, std::size_t n) override {
        auto* p = static_cast<unsigned char*>(dst);
        std::size_t done = 0;
        n = static_cast<std::size_t>(std::min<std::uint64_t>(n, end_ - pos_));
        while (done < n) {
            ssize_t r = ::pread(fd_, p + done, n - done, static_cast<off_t>(pos_));
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) CUMULUS_FAIL("'", path_, "': reading at offset ", pos_, " failed: ", std::strerror(errno));
            if (r == 0)
                CUMULUS_FAIL("'", path_, "': the file shrank while being read (end at offset ", pos_, ")");
            done += static_cast<std::size_t>(r);
            pos_ += static_cast<std::uint64_t>(r);
        }
        return done;
    }
    std::uint64_t size() const override { return size_; }
    const std::string& path() const override { return path_; }

private:
    std::string path_;
    int fd_ = -1;
    std::uint64_t pos_ = 0, end_ = 0, size_ = 0;
};

class LocalWriter final : public Writer {
public:
    explicit LocalWriter(const std::string& path) : path_(path), w_(local_path_of(path)) {}
    void write(const void* data, std::size_t n) override {
        w_.write(data, n);
        written_ += n;
    }
    void close() override { w_.commit(); }
    std::uint64_t written() const override { return written_; }
    const std::string& path() const override { return path_; }

private:
    std::string path_;
    AtomicFileWriter w_;
    std::uint64_t written_ = 0;
};

class LocalFileSystem final : public FileSystem {
public:
    std::unique_ptr<Reader> open_read(const std::string& path, ReadRange range) override {
        return std::make_unique<LocalReader>(path, range);
    }
    std::unique_ptr<Writer> open_write(const std::string& path) override { return std::make_unique<LocalWriter>(path); }
    bool exists(const std::string& path) override {
        std::error_code ec;
        return std::filesystem::exists(local_path_of(path), ec);
    }
    FileInfo stat(const std::string& path) override {
        namespace sfs = std::filesystem;
        std::error_code ec;
        const sfs::path p = local_path_of(path);
        const auto st = sfs::status(p, ec);
        if (ec || !sfs::exists(st)) CUMULUS_FAIL("cannot stat '", path, "': no such file or directory");
        return info_of(p, st, path);
    }
    void list(const std::string& dir, bool recursive, const std::function<bool(const FileInfo&)>& visit) override {
        namespace sfs = std::filesystem;
        const sfs::path root = local_path_of(dir);
        std::error_code ec;
        const auto st = sfs::status(root, ec);
        if (sfs::is_regular_file(st)) {
            visit(info_of(root, st, dir));
            return;
        }
        if (!sfs::is_directory(st)) CUMULUS_FAIL("cannot list '", dir, "': not a directory");
        std::vector<FileInfo> entries;
        auto add = [&](const sfs::directory_entry& e) {
            std::error_code ec2;
            const auto s = e.status(ec2);
            if (ec2) return;
            if (recursive && sfs::is_directory(s)) return;
            entries.push_back(info_of(e.path(), s, e.path().string()));
        };
        if (recursive) {
            for (sfs::recursive_directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) add(*it);
        } else {
            for (sfs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) add(*it);
        }
        if (ec) CUMULUS_FAIL("cannot list '", dir, "': ", ec.message());
        std::sort(entries.begin(), entries.end(), [](const FileInfo& a, const FileInfo& b) { return a.path < b.path; });
        for (const auto& e : entries)
            if (!visit(e)) return;
    }
    void remove(const std::string& path) override {
        std::error_code ec;
        if (!std::filesystem::remove(local_path_of(path), ec) || ec)
            CUMULUS_FAIL("cannot remove '", path, "': ", ec ? ec.message() : std::string("no such file"));
    }
    void copy(const std::string& src, const std::string& dst) override {
        auto r = open_read(src, {});
        auto w = open_write(dst);
        stream_copy(*r, *w);
    }
    void make_dirs(const std::string& path) override {
        std::error_code ec;
        std::filesystem::create_directories(local_path_of(path), ec);
        if (ec) CUMULUS_FAIL("cannot create the directory '", path, "': ", ec.message());
    }

private:
    static FileInfo info_of(const std::filesystem::path& p, const std::filesystem::file_status& st,
                            const std::string& shown) {
        namespace sfs = std::filesystem;
        FileInfo fi;
        fi.path = shown;
        fi.is_dir = sfs::is_directory(st);
        struct stat s;
        if (::stat(p.c_str(), &s) == 0) {
            if (!fi.is_dir) fi.size = static_cast<std::uint64_t>(s.st_size);
            fi.mtime = static_cast<std::int64_t>(s.st_mtime);
        }
        return fi;
    }
};

namespace fs {

inline FileSystem& local() {
    static LocalFileSystem l;
    return l;
}

// The backend of a path: local, or the one registered for its scheme.
inline std::shared_ptr<FileSystem> filesystem_of(const std::string& path) {
    if (is_local_path(path)) return std::shared_ptr<FileSystem>(&local(), [](FileSystem*) {});
    return remote_filesystem(path);
}

inline std::unique_ptr<Reader> open_read(const std::string& path, ReadRange range = {}) {
    return filesystem_of(path)->open_read(path, range);
}
inline std::unique_ptr<Writer> open_write(const std::string& path) { return filesystem_of(path)->open_write(path); }
inline bool exists(const std::string& path) { return filesystem_of(path)->exists(path); }
inline FileInfo stat(const std::string& path) { return filesystem_of(path)->stat(path); }
inline std::uint64_t file_size(const std::string& path) { return stat(path).size; }
inline bool is_directory(const std::string& path) {
    auto f = filesystem_of(path);
    return f->exists(path) && f->stat(path).is_dir;
}

// Visits `dir`'s entries page by page (see FileSystem::list).
inline void list(const std::string& dir, bool recursive, const std::function<bool(const FileInfo&)>& visit) {
    filesystem_of(dir)->list(dir, recursive, visit);
}
inline std::vector<FileInfo> list(const std::string& dir, bool recursive = false) {
    std::vector<FileInfo> out;
    list(dir, recursive, [&](const FileInfo& f) {
        out.push_back(f);
        return true;
    });
    return out;
}

inline void remove(const std::string& path) { filesystem_of(path)->remove(path); }

// Removes a file, or a directory and everything under it; returns how many
// files (objects) went. On an object store "gs://b/d" removes the object d
// and the objects under "d/", not "d2/...".
inline std::uint64_t remove_all(const std::string& path) {
    if (is_local_path(path)) {
        std::error_code ec;
        const auto n = std::filesystem::remove_all(local_path_of(path), ec);
        if (ec) CUMULUS_FAIL("cannot remove '", path, "': ", ec.message());
        return static_cast<std::uint64_t>(n);
    }
    auto f = filesystem_of(path);
    std::vector<std::string> victims;
    std::string prefix = path;
    if (prefix.back() != '/') {
        if (f->exists(prefix) && !f->stat(prefix).is_dir) victims.push_back(prefix);
        prefix += '/';
    }
    f->list(prefix, true, [&](const FileInfo& fi) {
        victims.push_back(fi.path);
        return true;
    });
    for (const auto& v : victims) f->remove(v);
    try {
        f->remove(prefix);  // the "d/" placeholder object a console-made folder has, if any
        return victims.size() + 1;
    } catch (const Error&) {
        return victims.size();
    }
}

inline void make_dirs(const std::string& path) { filesystem_of(path)->make_dirs(path); }

// Copies one file; across file systems the bytes stream through this process.
inline void copy(const std::string& src, const std::string& dst) {
    if (url_scheme(src) == url_scheme(dst)) {
        filesystem_of(src)->copy(src, dst);
        return;
    }
    auto r = open_read(src);
    auto w = open_write(dst);
    stream_copy(*r, *w);
}

inline std::vector<std::uint8_t> read_all(const std::string& path) {
    auto r = open_read(path);
    std::vector<std::uint8_t> out(static_cast<std::size_t>(r->size()));
    const std::size_t got = r->read(out.data(), out.size());
    CUMULUS_CHECK(got == out.size(), "'", path, "': expected ", out.size(), " bytes, read ", got);
    return out;
}

inline void write_all(const std::string& path, const void* data, std::size_t n) {
    auto w = open_write(path);
    w->write(data, n);
    w->close();
}

// "a" + "b" -> "a/b", without doubling the slash; gs://b + x -> gs://b/x.
inline std::string join(const std::string& a, const std::string& b) {
    if (a.empty()) return b;
    if (b.empty()) return a;
    std::string_view tail = b;
    while (!tail.empty() && tail.front() == '/' && !is_local_path(a)) tail.remove_prefix(1);
    if (is_local_path(a) && tail.front() == '/') return std::string(tail);  // an absolute local path wins
    return a.back() == '/' ? a + std::string(tail) : a + "/" + std::string(tail);
}

// The last component ("gs://b/x/y.bin" -> "y.bin"; a trailing '/' ignored).
inline std::string basename(std::string path) {
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace fs

}  // namespace cumulus::io
