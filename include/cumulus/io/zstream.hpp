// Streaming byte sources and sinks, with zlib/gzip inflate and deflate
// layered over them, so that a large compressed file is never held in memory.
//
//   ByteSource  read(dst, n) fills up to n bytes; fewer only at the end.
//     FileSource     a file through a bounded buffer (io::InputFile).
//     MemorySource   a span of bytes the caller keeps alive.
//     InflateSource  the decompressed bytes of a zlib (RFC 1950) or gzip
//                    (RFC 1952, members concatenated) stream read from
//                    another source.
//   ByteSink    write(p, n), then finish(); without finish() nothing is kept.
//     AtomicFileSink a file written through a buffer, renamed into place by
//                    finish() (io::AtomicFileWriter).
//     VectorSink     a std::vector<uint8_t>.
//     DeflateSink    compresses into another sink (zlib or gzip wrapper).
//
// Errors name the source (the file), the byte offset in the compressed input
// and how many bytes were decompressed before the damage.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <zlib.h>

#include <cumulus/core/error.hpp>
#include <cumulus/io/file.hpp>
#include <cumulus/io/gzip.hpp>

namespace cumulus::io {

// The wrapper around a deflate stream.
enum class ZWrap { Zlib, Gzip };

inline const char* zwrap_name(ZWrap w) { return w == ZWrap::Zlib ? "ZLIB" : "GZIP"; }

// Buffer size of the file layers, as TensorFlow's zlib streams use (256 KiB).
inline constexpr std::size_t kStreamBufferSize = std::size_t{256} << 10;

class ByteSource {
public:
    virtual ~ByteSource() = default;
    // Reads up to n bytes into dst; returns fewer than n only at the end.
    virtual std::size_t read(std::uint8_t* dst, std::size_t n) = 0;
    // Bytes returned by read() so far.
    virtual std::uint64_t position() const = 0;
    // The file (or buffer) name for error messages.
    virtual const std::string& name() const = 0;
};

class FileSource final : public ByteSource {
public:
    explicit FileSource(const std::string& path, std::size_t buffer_size = kStreamBufferSize)
        : file_(path), buf_(std::max<std::size_t>(buffer_size, 1)) {}

    std::size_t read(std::uint8_t* dst, std::size_t n) override {
        std::size_t done = 0;
        while (done < n) {
            if (begin_ == end_) {
                const std::uint64_t left = file_.size() - file_.offset();
                if (left == 0) break;
                // Large reads bypass the buffer.
                if (n - done >= buf_.size()) {
                    const auto k = static_cast<std::size_t>(std::min<std::uint64_t>(left, n - done));
                    file_.read_exact(dst + done, k, "data");
                    done += k;
                    continue;
                }
                const auto k = static_cast<std::size_t>(std::min<std::uint64_t>(left, buf_.size()));
                file_.read_exact(buf_.data(), k, "data");
                begin_ = 0;
                end_ = k;
            }
            const std::size_t k = std::min(n - done, end_ - begin_);
            std::memcpy(dst + done, buf_.data() + begin_, k);
            begin_ += k;
            done += k;
        }
        pos_ += done;
        return done;
    }
    std::uint64_t position() const override { return pos_; }
    const std::string& name() const override { return file_.path(); }
    std::uint64_t size() const { return file_.size(); }

private:
    InputFile file_;
    std::vector<std::uint8_t> buf_;
    std::size_t begin_ = 0, end_ = 0;
    std::uint64_t pos_ = 0;
};

class MemorySource final : public ByteSource {
public:
    MemorySource(const std::uint8_t* p, std::size_t n, std::string name) : p_(p), n_(n), name_(std::move(name)) {}

    std::size_t read(std::uint8_t* dst, std::size_t n) override {
        const std::size_t k = std::min(n, n_ - pos_);
        if (k > 0) std::memcpy(dst, p_ + pos_, k);
        pos_ += k;
        return k;
    }
    std::uint64_t position() const override { return pos_; }
    const std::string& name() const override { return name_; }

private:
    const std::uint8_t* p_;
    std::size_t n_;
    std::size_t pos_ = 0;
    std::string name_;
};

// Decompresses a whole zlib or gzip stream from `input`. Gzip members may be
// concatenated (as `cat a.gz b.gz` makes), and zero padding after the last one
// is ignored, as gzip(1) does; anything else after the stream is an error. An
// empty input is an empty stream (TensorFlow reads it as no records).
class InflateSource final : public ByteSource {
public:
    InflateSource(std::unique_ptr<ByteSource> input, ZWrap wrap, std::size_t buffer_size = kStreamBufferSize)
        : in_(std::move(input)), wrap_(wrap), buf_(std::max<std::size_t>(buffer_size, 16)) {
        CUMULUS_CHECK(in_ != nullptr, "InflateSource: null input");
        const int rc = inflateInit2(&zs_, wrap == ZWrap::Gzip ? 16 + MAX_WBITS : MAX_WBITS);
        if (rc != Z_OK) CUMULUS_FAIL(in_->name(), ": zlib inflateInit2 failed (code ", rc, ")");
        zs_.next_in = buf_.data();
        zs_.avail_in = 0;
    }
    InflateSource(const InflateSource&) = delete;
    InflateSource& operator=(const InflateSource&) = delete;
    ~InflateSource() override { inflateEnd(&zs_); }

    std::size_t read(std::uint8_t* dst, std::size_t n) override {
        std::size_t done = 0;
        while (done < n && !finished_) {
            if (between_members_) {
                start_next_member();
                continue;
            }
            if (zs_.avail_in == 0 && !refill(0)) {
                if (out_total_ == 0 && consumed() == 0 && members_ == 0) {
                    finished_ = true;  // an empty file
                    break;
                }
                CUMULUS_FAIL(in_->name(), ": truncated ", zwrap_name(wrap_), " data: the input ends at byte offset ",
                             consumed(), member_note(), " after ", out_total_,
                             " decompressed bytes, before the end of the compressed stream");
            }
            const std::size_t want = std::min<std::size_t>(n - done, detail::kZlibChunk);
            zs_.next_out = dst + done;
            zs_.avail_out = static_cast<uInt>(want);
            const int rc = inflate(&zs_, Z_NO_FLUSH);
            const std::size_t got = want - zs_.avail_out;
            done += got;
            out_total_ += got;
            if (rc == Z_STREAM_END) {
                ++members_;
                between_members_ = true;
                continue;
            }
            if (rc == Z_OK || (rc == Z_BUF_ERROR && zs_.avail_in == 0)) continue;
            CUMULUS_FAIL(in_->name(), ": corrupt ", zwrap_name(wrap_), " data at or near byte offset ", consumed(),
                         member_note(), " after ", out_total_, " decompressed bytes: ",
                         zs_.msg != nullptr ? zs_.msg : "zlib error", " (zlib code ", rc, ")");
        }
        return done;
    }
    std::uint64_t position() const override { return out_total_; }
    const std::string& name() const override { return in_->name(); }
    // Compressed bytes consumed so far.
    std::uint64_t compressed_position() const { return consumed(); }
    ZWrap wrap() const { return wrap_; }

private:
    // Reads more input, keeping the `keep` unconsumed bytes; false at the end.
    bool refill(std::size_t keep) {
        if (keep > 0) std::memmove(buf_.data(), zs_.next_in, keep);
        const std::size_t got = in_->read(buf_.data() + keep, buf_.size() - keep);
        read_total_ += got;
        zs_.next_in = buf_.data();
        zs_.avail_in = static_cast<uInt>(keep + got);
        return got > 0;
    }

    std::uint64_t consumed() const { return read_total_ - zs_.avail_in; }

    std::string member_note() const {
        if (wrap_ != ZWrap::Gzip) return "";
        return " (in gzip member " + std::to_string(members_ + 1) + ", which starts at byte offset " +
               std::to_string(member_start_) + ")";
    }

    void start_next_member() {
        if (zs_.avail_in < 2) refill(zs_.avail_in);
        if (zs_.avail_in == 0) {
            finished_ = true;
            return;
        }
        if (wrap_ == ZWrap::Gzip && is_gzip(zs_.next_in, zs_.avail_in)) {
            member_start_ = consumed();
            inflateReset(&zs_);
            between_members_ = false;
            return;
        }
        // Zero padding after the last gzip member is allowed (gzip(1) does).
        const std::uint64_t at = consumed();
        for (;;) {
            if (wrap_ != ZWrap::Gzip ||
                !std::all_of(zs_.next_in, zs_.next_in + zs_.avail_in, [](std::uint8_t b) { return b == 0; }))
                CUMULUS_FAIL(in_->name(), ": trailing data after the end of the ", zwrap_name(wrap_),
                             " stream: the bytes from byte offset ", at, " are ",
                             wrap_ == ZWrap::Gzip ? "neither zero padding nor another gzip member"
                                                  : "not part of the zlib stream");
            zs_.avail_in = 0;
            if (!refill(0)) break;
        }
        finished_ = true;
    }

    std::unique_ptr<ByteSource> in_;
    ZWrap wrap_;
    std::vector<std::uint8_t> buf_;
    z_stream zs_{};
    std::uint64_t read_total_ = 0;  // compressed bytes read from in_
    std::uint64_t out_total_ = 0;
    std::uint64_t member_start_ = 0;
    int members_ = 0;
    bool between_members_ = false;
    bool finished_ = false;
};

class ByteSink {
public:
    virtual ~ByteSink() = default;
    virtual void write(const std::uint8_t* p, std::size_t n) = 0;
    // Completes the output (flushes, ends the stream, commits the file).
    virtual void finish() = 0;
    // Bytes given to write() so far.
    virtual std::uint64_t position() const = 0;
    virtual const std::string& name() const = 0;
};

class AtomicFileSink final : public ByteSink {
public:
    explicit AtomicFileSink(const std::string& path, std::size_t buffer_size = kStreamBufferSize)
        : path_(path), file_(path) {
        buf_.reserve(std::max<std::size_t>(buffer_size, 1));
    }
    void write(const std::uint8_t* p, std::size_t n) override {
        CUMULUS_CHECK(!finished_, "'", path_, "': write after finish");
        pos_ += n;
        if (buf_.size() + n > buf_.capacity()) {
            flush();
            if (n >= buf_.capacity()) {
                file_.write(p, n);
                return;
            }
        }
        buf_.insert(buf_.end(), p, p + n);
    }
    void finish() override {
        CUMULUS_CHECK(!finished_, "'", path_, "': finish twice");
        flush();
        file_.commit();
        finished_ = true;
    }
    std::uint64_t position() const override { return pos_; }
    const std::string& name() const override { return path_; }

private:
    void flush() {
        if (!buf_.empty()) file_.write(buf_.data(), buf_.size());
        buf_.clear();
    }
    std::string path_;
    AtomicFileWriter file_;
    std::vector<std::uint8_t> buf_;
    std::uint64_t pos_ = 0;
    bool finished_ = false;
};

class VectorSink final : public ByteSink {
public:
    explicit VectorSink(std::vector<std::uint8_t>& out, std::string name = "memory")
        : out_(out), name_(std::move(name)) {}
    void write(const std::uint8_t* p, std::size_t n) override { out_.insert(out_.end(), p, p + n); }
    void finish() override {}
    std::uint64_t position() const override { return out_.size(); }
    const std::string& name() const override { return name_; }

private:
    std::vector<std::uint8_t>& out_;
    std::string name_;
};

// Compresses everything written into `output`, as TensorFlow's
// ZlibOutputBuffer does: window bits 15 (zlib) or 31 (gzip), memLevel 9.
class DeflateSink final : public ByteSink {
public:
    DeflateSink(std::unique_ptr<ByteSink> output, ZWrap wrap, int level = Z_DEFAULT_COMPRESSION,
                std::size_t buffer_size = kStreamBufferSize)
        : out_(std::move(output)), wrap_(wrap), buf_(std::max<std::size_t>(buffer_size, 64)) {
        CUMULUS_CHECK(out_ != nullptr, "DeflateSink: null output");
        CUMULUS_CHECK(level >= -1 && level <= 9, out_->name(), ": compression level must be -1..9, got ", level);
        const int rc =
            deflateInit2(&zs_, level, Z_DEFLATED, wrap == ZWrap::Gzip ? 16 + MAX_WBITS : MAX_WBITS, 9,
                         Z_DEFAULT_STRATEGY);
        if (rc != Z_OK) CUMULUS_FAIL(out_->name(), ": zlib deflateInit2 failed (code ", rc, ")");
    }
    DeflateSink(const DeflateSink&) = delete;
    DeflateSink& operator=(const DeflateSink&) = delete;
    ~DeflateSink() override { deflateEnd(&zs_); }

    void write(const std::uint8_t* p, std::size_t n) override {
        CUMULUS_CHECK(!finished_, out_->name(), ": write after finish");
        in_total_ += n;
        while (n > 0) {
            const std::size_t k = std::min(n, detail::kZlibChunk);
            run(p, k, Z_NO_FLUSH);
            p += k;
            n -= k;
        }
    }
    void finish() override {
        CUMULUS_CHECK(!finished_, out_->name(), ": finish twice");
        run(nullptr, 0, Z_FINISH);
        finished_ = true;
        out_->finish();
    }
    std::uint64_t position() const override { return in_total_; }
    const std::string& name() const override { return out_->name(); }
    ZWrap wrap() const { return wrap_; }

private:
    void run(const std::uint8_t* p, std::size_t n, int flush) {
        zs_.next_in = const_cast<Bytef*>(p);
        zs_.avail_in = static_cast<uInt>(n);
        for (;;) {
            zs_.next_out = buf_.data();
            zs_.avail_out = static_cast<uInt>(buf_.size());
            const int rc = deflate(&zs_, flush);
            if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
                CUMULUS_FAIL(out_->name(), ": zlib deflate failed (code ", rc, ")");
            const std::size_t have = buf_.size() - zs_.avail_out;
            if (have > 0) out_->write(buf_.data(), have);
            if (flush == Z_FINISH ? rc == Z_STREAM_END : (zs_.avail_in == 0 && zs_.avail_out != 0)) break;
        }
    }

    std::unique_ptr<ByteSink> out_;
    ZWrap wrap_;
    std::vector<std::uint8_t> buf_;
    z_stream zs_{};
    std::uint64_t in_total_ = 0;
    bool finished_ = false;
};

}  // namespace cumulus::io
