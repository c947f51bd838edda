// Local files: a checked sequential reader and an atomic writer.
//
// Every error names the path and, where it applies, the byte offset and the
// operating system's reason (strerror). Paths with a URL scheme (gs://b/o)
// go to the file-system backend registered for it (io/fs_registry.hpp), so
// every loader built on these reads and writes object stores too.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cumulus/core/error.hpp>
#include <cumulus/io/fs_registry.hpp>

namespace cumulus::io {

// A regular file opened for reading from the start, one exact read after another.
class InputFile {
public:
    explicit InputFile(const std::string& path) : path_(path) {
        if (!is_local_path(path)) {
            remote_ = remote_filesystem(path)->open_read(path, ReadRange{});
            size_ = remote_->size();
            return;
        }
        do {
            fd_ = ::open(local_path_of(path).c_str(), O_RDONLY | O_CLOEXEC);
        } while (fd_ < 0 && errno == EINTR);
        if (fd_ < 0) CUMULUS_FAIL("cannot open '", path, "' for reading: ", std::strerror(errno));
        struct stat st;
        if (::fstat(fd_, &st) != 0) {
            int err = errno;
            ::close(fd_);
            CUMULUS_FAIL("cannot stat '", path, "': ", std::strerror(err));
        }
        if (!S_ISREG(st.st_mode)) {
            ::close(fd_);
            CUMULUS_FAIL("'", path, "' is not a regular file");
        }
        size_ = static_cast<std::uint64_t>(st.st_size);
    }
    InputFile(const InputFile&) = delete;
    InputFile& operator=(const InputFile&) = delete;
    ~InputFile() {
        if (fd_ >= 0) ::close(fd_);
    }

    const std::string& path() const { return path_; }
    // The size when the file was opened.
    std::uint64_t size() const { return size_; }
    std::uint64_t offset() const { return offset_; }

    // Reads exactly n bytes at the current offset; `what` names them in errors.
    void read_exact(void* dst, std::size_t n, const char* what) {
        auto* p = static_cast<unsigned char*>(dst);
        std::size_t got = 0;
        if (remote_) {
            got = remote_->read(p, n);
            if (got < n)
                CUMULUS_FAIL("'", path_, "': unexpected end of file while reading ", what, ": expected ", n,
                             " bytes at offset ", offset_, ", found ", got);
        }
        while (got < n) {
            ssize_t r = ::read(fd_, p + got, n - got);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0)
                CUMULUS_FAIL("'", path_, "': reading ", what, " (", n, " bytes at offset ", offset_ + got,
                             ") failed: ", std::strerror(errno));
            if (r == 0)
                CUMULUS_FAIL("'", path_, "': unexpected end of file while reading ", what, ": expected ", n,
                             " bytes at offset ", offset_, ", found ", got);
            got += static_cast<std::size_t>(r);
        }
        offset_ += n;
    }

private:
    std::string path_;
    int fd_ = -1;
    std::unique_ptr<Reader> remote_;
    std::uint64_t size_ = 0;
    std::uint64_t offset_ = 0;
};

// Writes `path` all or nothing: the bytes go to `path.tmp`, are synced, and
// the temporary is renamed over `path` by commit(). A reader sees the old file
// or the complete new one, never a torn one. Without commit() (an exception
// on the way), the destructor removes the temporary. On an object store the
// bytes go to the backend's writer, whose close() (at commit) creates the
// object in one piece.
class AtomicFileWriter {
public:
    explicit AtomicFileWriter(const std::string& path) : path_(path), tmp_(local_path_of(path) + ".tmp") {
        if (!is_local_path(path)) {
            remote_ = remote_filesystem(path)->open_write(path);
            return;
        }
        do {
            fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
        } while (fd_ < 0 && errno == EINTR);
        if (fd_ < 0) CUMULUS_FAIL("cannot create '", tmp_, "' (to write '", path_, "'): ", std::strerror(errno));
    }
    AtomicFileWriter(const AtomicFileWriter&) = delete;
    AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
    ~AtomicFileWriter() {
        if (remote_) return;  // an unclosed remote writer abandons the upload itself
        if (fd_ >= 0) ::close(fd_);
        if (!committed_) ::unlink(tmp_.c_str());
    }

    void write(const void* data, std::size_t n) {
        if (remote_) {
            CUMULUS_CHECK(!committed_, "'", path_, "': write after commit");
            remote_->write(data, n);
            written_ += n;
            return;
        }
        CUMULUS_CHECK(fd_ >= 0 && !committed_, "'", path_, "': write after commit");
        const auto* p = static_cast<const unsigned char*>(data);
        std::size_t done = 0;
        while (done < n) {
            ssize_t w = ::write(fd_, p + done, n - done);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0)
                CUMULUS_FAIL("writing '", tmp_, "' (for '", path_, "') failed at offset ", written_ + done, ": ",
                             std::strerror(errno));
            done += static_cast<std::size_t>(w);
        }
        written_ += n;
    }

    void commit() {
        if (remote_) {
            CUMULUS_CHECK(!committed_, "'", path_, "': commit twice");
            remote_->close();
            committed_ = true;
            return;
        }
        CUMULUS_CHECK(fd_ >= 0 && !committed_, "'", path_, "': commit twice");
        if (::fsync(fd_) != 0) CUMULUS_FAIL("syncing '", tmp_, "' failed: ", std::strerror(errno));
        int fd = fd_;
        fd_ = -1;
        if (::close(fd) != 0) CUMULUS_FAIL("closing '", tmp_, "' failed: ", std::strerror(errno));
        if (std::rename(tmp_.c_str(), local_path_of(path_).c_str()) != 0)
            CUMULUS_FAIL("renaming '", tmp_, "' to '", path_, "' failed: ", std::strerror(errno));
        committed_ = true;
    }

private:
    std::string path_;
    std::string tmp_;
    int fd_ = -1;
    std::unique_ptr<Writer> remote_;
    std::uint64_t written_ = 0;
    bool committed_ = false;
};

// Replaces `path` with the n bytes at `data`, atomically (see AtomicFileWriter).
inline void write_file_atomic(const std::string& path, const void* data, std::size_t n) {
    AtomicFileWriter w(path);
    w.write(data, n);
    w.commit();
}

// The whole file as bytes. Throws cumulus::Error naming `path` when it cannot
// be opened or read (missing, a directory, unreadable).
inline std::vector<std::uint8_t> read_file(const std::string& path_or_url) {
    if (!is_local_path(path_or_url)) {
        auto r = remote_filesystem(path_or_url)->open_read(path_or_url, ReadRange{});
        std::vector<std::uint8_t> bytes(static_cast<std::size_t>(r->size()));
        const std::size_t got = r->read(bytes.data(), bytes.size());
        if (got != bytes.size())
            CUMULUS_FAIL("'", path_or_url, "': unexpected end of file after ", got, " of ", bytes.size(), " bytes");
        return bytes;
    }
    const std::string path = local_path_of(path_or_url);
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (std::filesystem::is_directory(status)) CUMULUS_FAIL("cannot read '", path, "': it is a directory");
    errno = 0;
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) CUMULUS_FAIL("cannot open '", path, "' for reading: ", std::strerror(errno));
    struct Closer {
        std::FILE* f;
        ~Closer() { std::fclose(f); }
    } closer{f};
    // The size is only a hint (pipes and /proc files report none or a wrong
    // one), so read until EOF, probing one byte before growing.
    std::size_t hint = 0;
    if (std::filesystem::is_regular_file(status)) {
        auto size = std::filesystem::file_size(path, ec);
        if (!ec) hint = static_cast<std::size_t>(size);
    }
    std::vector<std::uint8_t> bytes(hint);
    std::size_t used = 0;
    for (;;) {
        if (used == bytes.size()) {
            int c = std::fgetc(f);
            if (c == EOF) break;
            bytes.resize(std::max<std::size_t>(bytes.size() * 2, 65536));
            bytes[used++] = static_cast<std::uint8_t>(c);
        }
        std::size_t got = std::fread(bytes.data() + used, 1, bytes.size() - used, f);
        used += got;
        if (got == 0) break;
    }
    if (std::ferror(f)) {
        int err = errno;
        CUMULUS_FAIL("error reading '", path, "' after ", used, " bytes: ", std::strerror(err));
    }
    bytes.resize(used);
    return bytes;
}

// Writes `n` bytes to `path`, replacing it atomically.
inline void write_file(const std::string& path, const std::vector<std::uint8_t>& bytes) {
    write_file_atomic(path, bytes.data(), bytes.size());
}

}  // namespace cumulus::io
