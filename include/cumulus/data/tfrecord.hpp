// TFRecord files: TensorFlow's framing of opaque records (tf.train.Example
// protos, TensorBoard events, anything), read and written as a stream.
//
//   uint64 LE  length
//   uint32 LE  masked_crc32c(the 8 length bytes)
//   byte[length] data
//   uint32 LE  masked_crc32c(data)
//
// A file is the records back to back, with no header, optionally compressed
// as one zlib or gzip stream (TF's "ZLIB" / "GZIP"). The reader checks both
// CRCs of every record and caps the length before allocating; every error
// names the file, the record index and the byte offset in the uncompressed
// record stream (the file offset when the file is not compressed).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <zlib.h>

#include <cumulus/core/error.hpp>
#include <cumulus/io/crc32c.hpp>
#include <cumulus/io/file.hpp>
#include <cumulus/io/gzip.hpp>
#include <cumulus/io/zstream.hpp>

namespace cumulus::data {

enum class Compression { None, Gzip, Zlib };

// TensorFlow's names: "", "GZIP", "ZLIB".
inline const char* compression_name(Compression c) {
    switch (c) {
        case Compression::None: return "";
        case Compression::Gzip: return "GZIP";
        case Compression::Zlib: return "ZLIB";
    }
    return "?";
}

inline constexpr std::size_t kTFRecordHeaderSize = 12;  // length + its masked CRC
inline constexpr std::size_t kTFRecordFooterSize = 4;   // masked CRC of the data
// Default cap on one record's length; a corrupt length fails here instead of
// allocating. Change it per reader.
inline constexpr std::uint64_t kTFRecordDefaultMaxLength = std::uint64_t{1} << 30;

namespace detail::tfr {

inline std::uint64_t load_le64(const std::uint8_t* p) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
    return v;
}
inline std::uint32_t load_le32(const std::uint8_t* p) {
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = v << 8 | p[i];
    return v;
}
inline void store_le64(std::uint8_t* p, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
inline void store_le32(std::uint8_t* p, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

inline std::string hex32(std::uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08x", v);
    return buf;
}

// Whether 12 bytes are a record header whose length CRC checks out.
inline bool valid_tfrecord_header(const std::uint8_t* p) {
    return io::masked_crc32c(p, 8) == load_le32(p + 8);
}

// True when the bytes start with a zlib header (RFC 1950: deflate, window
// <= 32 KiB, FCHECK, no preset dictionary).
inline bool is_zlib_header(const std::uint8_t* p, std::size_t n) {
    if (n < 2) return false;
    const unsigned cmf = p[0], flg = p[1];
    return (cmf & 0x0F) == 8 && (cmf >> 4) <= 7 && (cmf * 256 + flg) % 31 == 0 && (flg & 0x20) == 0;
}

// Up to `want` bytes of the zlib stream at p (fewer if it ends or breaks).
inline std::size_t inflate_prefix(const std::uint8_t* p, std::size_t n, std::uint8_t* out, std::size_t want,
                                  bool* ended) {
    z_stream zs{};
    *ended = false;
    if (inflateInit2(&zs, MAX_WBITS) != Z_OK) return 0;
    zs.next_in = const_cast<Bytef*>(p);
    zs.avail_in = static_cast<uInt>(std::min<std::size_t>(n, io::detail::kZlibChunk));
    zs.next_out = out;
    zs.avail_out = static_cast<uInt>(want);
    const int rc = inflate(&zs, Z_SYNC_FLUSH);
    *ended = rc == Z_STREAM_END;
    const std::size_t got = want - zs.avail_out;
    inflateEnd(&zs);
    return got;
}

}  // namespace detail::tfr

// How a record stream starting with `prefix` is compressed, judged by content
// (never by the file name):
//  - the first 12 bytes are a valid record header (length CRC matches): None
//    (checked first: a plain record of length 0x...8b1f starts with 1f 8b);
//  - the gzip magic 1f 8b: Gzip;
//  - a valid zlib header whose first 12 decompressed bytes are a valid record
//    header, or which holds an empty stream: Zlib;
//  - otherwise None (reading then reports what is wrong with the first record).
// A prefix of 64 KiB is plenty for the zlib check.
inline Compression detect_compression(const std::uint8_t* prefix, std::size_t n) {
    if (n >= kTFRecordHeaderSize && detail::tfr::valid_tfrecord_header(prefix)) return Compression::None;
    if (io::is_gzip(prefix, n)) return Compression::Gzip;
    if (detail::tfr::is_zlib_header(prefix, n)) {
        std::uint8_t head[kTFRecordHeaderSize];
        bool ended = false;
        const std::size_t got = detail::tfr::inflate_prefix(prefix, n, head, sizeof head, &ended);
        if (got == sizeof head && detail::tfr::valid_tfrecord_header(head)) return Compression::Zlib;
        if (got == 0 && ended) return Compression::Zlib;
    }
    return Compression::None;
}

inline constexpr std::size_t kDetectPrefixSize = std::size_t{64} << 10;

// detect_compression on the first 64 KiB of the file at `path`.
inline Compression detect_compression(const std::string& path) {
    io::InputFile f(path);
    std::vector<std::uint8_t> prefix(static_cast<std::size_t>(std::min<std::uint64_t>(f.size(), kDetectPrefixSize)));
    f.read_exact(prefix.data(), prefix.size(), "the first bytes (to detect the compression)");
    return detect_compression(prefix.data(), prefix.size());
}

// Reads records one at a time from a file (or any io::ByteSource).
//
//   TFRecordReader reader("train.tfrecords");          // compression detected
//   std::vector<std::uint8_t> record;
//   while (reader.next(record)) use(record);
//
// A corrupt or truncated record throws cumulus::Error naming the file, the
// record index and its byte offset; the reader then stays failed.
class TFRecordReader {
public:
    // Detects the compression from the file's content (see detect_compression).
    explicit TFRecordReader(const std::string& path, std::uint64_t max_record_length = kTFRecordDefaultMaxLength)
        : TFRecordReader(path, detect_compression(path), max_record_length) {}

    TFRecordReader(const std::string& path, Compression compression,
                   std::uint64_t max_record_length = kTFRecordDefaultMaxLength)
        : compression_(compression), max_length_(max_record_length) {
        auto file = std::make_unique<io::FileSource>(path);
        if (compression == Compression::None) {
            known_size_ = file->size();
            size_known_ = true;
        }
        open(std::move(file));
    }

    // Records from any source, e.g. io::MemorySource over a buffer.
    TFRecordReader(std::unique_ptr<io::ByteSource> source, Compression compression,
                   std::uint64_t max_record_length = kTFRecordDefaultMaxLength)
        : compression_(compression), max_length_(max_record_length) {
        CUMULUS_CHECK(source != nullptr, "TFRecordReader: null source");
        open(std::move(source));
    }

    // Reads the next record into `record` (resized to fit); false at the end
    // of the stream (which must fall on a record boundary).
    bool next(std::vector<std::uint8_t>& record) {
        if (!failure_.empty()) CUMULUS_FAIL(failure_);
        try {
            return next_impl(record);
        } catch (const Error& e) {
            failure_ = e.what();
            throw;
        }
    }

    // Index of the next record (= records read so far).
    std::uint64_t record_index() const { return index_; }
    // Byte offset of the next record in the uncompressed stream.
    std::uint64_t offset() const { return offset_; }
    Compression compression() const { return compression_; }
    const std::string& name() const { return src_->name(); }
    std::uint64_t max_record_length() const { return max_length_; }

private:
    void open(std::unique_ptr<io::ByteSource> source) {
        if (compression_ == Compression::None)
            src_ = std::move(source);
        else
            src_ = std::make_unique<io::InflateSource>(
                std::move(source), compression_ == Compression::Gzip ? io::ZWrap::Gzip : io::ZWrap::Zlib);
    }

    std::string where() const {
        std::string s = "'" + src_->name() + "'";
        if (compression_ != Compression::None) s += std::string(" (") + compression_name(compression_) + ")";
        s += ": record " + std::to_string(index_) + " (starting at byte offset " + std::to_string(offset_);
        s += compression_ == Compression::None ? " of the file)" : " of the decompressed record stream)";
        return s;
    }

    // Reads up to n bytes; a decompression error gets the record's context.
    std::size_t read_some(std::uint8_t* dst, std::size_t n) {
        try {
            return src_->read(dst, n);
        } catch (const Error& e) {
            // The source's message starts with the file name, which where() already gives.
            std::string_view msg = e.what();
            const std::string prefix = src_->name() + ": ";
            if (msg.substr(0, prefix.size()) == prefix) msg.remove_prefix(prefix.size());
            CUMULUS_FAIL(where(), ": ", msg);
        }
    }

    void read_exact(std::uint8_t* dst, std::size_t n, std::uint64_t rel, const char* what) {
        const std::size_t got = read_some(dst, n);
        if (got < n)
            CUMULUS_FAIL(where(), ": truncated ", what, ": expected ", n, " bytes at byte offset ", offset_ + rel,
                         ", the stream ends after ", got);
    }

    bool next_impl(std::vector<std::uint8_t>& record) {
        std::uint8_t header[kTFRecordHeaderSize];
        const std::size_t got = read_some(header, sizeof header);
        if (got == 0) return false;
        if (got < sizeof header)
            CUMULUS_FAIL(where(), ": truncated record header: expected ", sizeof header, " bytes (length + CRC), ",
                         "the stream ends after ", got);
        const std::uint64_t length = detail::tfr::load_le64(header);
        const std::uint32_t stored = detail::tfr::load_le32(header + 8);
        const std::uint32_t computed = io::masked_crc32c(header, 8);
        if (stored != computed)
            CUMULUS_FAIL(where(), ": corrupt record length: the masked CRC of the length bytes (stored at byte offset ",
                         offset_ + 8, ") is ", detail::tfr::hex32(stored), ", the length bytes give ",
                         detail::tfr::hex32(computed), " (length field reads ", length, ")");
        if (length > max_length_)
            CUMULUS_FAIL(where(), ": record length ", length, " exceeds the limit of ", max_length_,
                         " bytes (raise max_record_length if the file is right)");
        if (size_known_) {
            const std::uint64_t left = known_size_ - src_->position();
            if (length > left || left - length < kTFRecordFooterSize)
                CUMULUS_FAIL(where(), ": truncated record: its length is ", length, " + ", kTFRecordFooterSize,
                             " CRC bytes, but only ", left, " bytes are left in the file after the header");
        }
        read_data(record, static_cast<std::size_t>(length));
        std::uint8_t footer[kTFRecordFooterSize];
        read_exact(footer, sizeof footer, kTFRecordHeaderSize + length, "record data CRC");
        const std::uint32_t stored_data = detail::tfr::load_le32(footer);
        const std::uint32_t computed_data = io::masked_crc32c(record.data(), record.size());
        if (stored_data != computed_data)
            CUMULUS_FAIL(where(), ": corrupt record data: the masked CRC of the ", length,
                         " data bytes (stored at byte offset ", offset_ + kTFRecordHeaderSize + length, ") is ",
                         detail::tfr::hex32(stored_data), ", the data gives ", detail::tfr::hex32(computed_data));
        ++index_;
        offset_ += kTFRecordHeaderSize + length + kTFRecordFooterSize;
        return true;
    }

    // Reads `length` bytes into record; when the size is not known up front
    // (compressed, or not a file), grows the buffer as the bytes arrive so that a corrupt but
    // CRC-valid length allocates no more than twice what the stream holds.
    void read_data(std::vector<std::uint8_t>& record, std::size_t length) {
        constexpr std::size_t kDirect = std::size_t{16} << 20;
        if (length <= kDirect || size_known_) {
            record.resize(length);
            read_exact(record.data(), length, kTFRecordHeaderSize, "record data");
            return;
        }
        record.clear();
        std::size_t have = 0;
        while (have < length) {
            const std::size_t step = std::min(length - have, std::max(kDirect, have));
            record.resize(have + step);
            const std::size_t got = read_some(record.data() + have, step);
            have += got;
            if (got < step)
                CUMULUS_FAIL(where(), ": truncated record data: expected ", length, " bytes at byte offset ",
                             offset_ + kTFRecordHeaderSize, ", the stream ends after ", have);
        }
    }

    Compression compression_;
    std::uint64_t max_length_;
    std::unique_ptr<io::ByteSource> src_;
    std::uint64_t known_size_ = 0;  // file size, for uncompressed files
    bool size_known_ = false;
    std::uint64_t index_ = 0;
    std::uint64_t offset_ = 0;
    std::string failure_;
};

// Writes records to a file, streaming, in TensorFlow's exact framing. The file
// appears only at close(): the bytes go to `path.tmp`, renamed over `path`
// then. Destroyed without close() (an exception on the way), it leaves
// nothing behind.
class TFRecordWriter {
public:
    // `level`: zlib compression level (-1 = zlib's default, as TF) for Gzip/Zlib.
    TFRecordWriter(const std::string& path, Compression compression = Compression::None, int level = -1)
        : TFRecordWriter(std::make_unique<io::AtomicFileSink>(path), compression, level) {}

    TFRecordWriter(std::unique_ptr<io::ByteSink> sink, Compression compression = Compression::None, int level = -1)
        : compression_(compression) {
        CUMULUS_CHECK(sink != nullptr, "TFRecordWriter: null sink");
        if (compression == Compression::None)
            sink_ = std::move(sink);
        else
            sink_ = std::make_unique<io::DeflateSink>(
                std::move(sink), compression == Compression::Gzip ? io::ZWrap::Gzip : io::ZWrap::Zlib, level);
    }

    void write(const std::uint8_t* data, std::size_t n) {
        CUMULUS_CHECK(!closed_, "'", sink_->name(), "': TFRecordWriter::write after close");
        std::uint8_t header[kTFRecordHeaderSize];
        detail::tfr::store_le64(header, n);
        detail::tfr::store_le32(header + 8, io::masked_crc32c(header, 8));
        std::uint8_t footer[kTFRecordFooterSize];
        detail::tfr::store_le32(footer, io::masked_crc32c(data, n));
        sink_->write(header, sizeof header);
        if (n > 0) sink_->write(data, n);
        sink_->write(footer, sizeof footer);
        ++count_;
    }
    void write(const std::vector<std::uint8_t>& record) { write(record.data(), record.size()); }
    void write(std::string_view record) {
        write(reinterpret_cast<const std::uint8_t*>(record.data()), record.size());
    }

    // Ends the compressed stream and renames the file into place.
    void close() {
        CUMULUS_CHECK(!closed_, "'", sink_->name(), "': TFRecordWriter::close twice");
        closed_ = true;
        sink_->finish();
    }

    std::uint64_t records_written() const { return count_; }
    Compression compression() const { return compression_; }

private:
    Compression compression_;
    std::unique_ptr<io::ByteSink> sink_;
    std::uint64_t count_ = 0;
    bool closed_ = false;
};

// One record framed as TFRecord bytes (uncompressed).
inline std::vector<std::uint8_t> frame_tfrecord(const std::uint8_t* data, std::size_t n) {
    std::vector<std::uint8_t> out;
    TFRecordWriter w(std::make_unique<io::VectorSink>(out));
    w.write(data, n);
    w.close();
    return out;
}

// Every record of the file at `path` (compression detected), in order.
inline std::vector<std::vector<std::uint8_t>> read_tfrecords(const std::string& path,
                                                             std::uint64_t max_record_length =
                                                                 kTFRecordDefaultMaxLength) {
    TFRecordReader r(path, max_record_length);
    std::vector<std::vector<std::uint8_t>> out;
    std::vector<std::uint8_t> rec;
    while (r.next(rec)) out.push_back(rec);
    return out;
}

// Writes `records` to `path` atomically.
inline void write_tfrecords(const std::string& path, const std::vector<std::vector<std::uint8_t>>& records,
                            Compression compression = Compression::None) {
    TFRecordWriter w(path, compression);
    for (const auto& r : records) w.write(r);
    w.close();
}

}  // namespace cumulus::data
