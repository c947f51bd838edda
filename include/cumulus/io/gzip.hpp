// gzip (RFC 1952) through zlib.
//
// Decompression never trusts its input: truncated or corrupt streams and
// trailing garbage are errors that name the file and the byte offset, and the
// output is capped so that a small "gzip bomb" gives an error instead of
// exhausting memory. Gzip is recognised by its magic bytes, never by a name.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <zlib.h>

#include <cumulus/core/error.hpp>
#include <cumulus/io/file.hpp>

namespace cumulus::io {

// Default cap on decompressed bytes for read_maybe_gzip (4 GiB).
inline constexpr std::size_t kDefaultMaxGunzip = std::size_t{1} << 32;

namespace detail {

// zlib counts in uInt; feed it at most this many bytes per call.
inline constexpr std::size_t kZlibChunk = std::size_t{1} << 30;

}  // namespace detail

// True when the bytes start with the gzip magic 1f 8b.
inline bool is_gzip(const std::uint8_t* p, std::size_t n) { return n >= 2 && p[0] == 0x1f && p[1] == 0x8b; }

namespace detail {

struct InflateGuard {
    z_stream* zs;
    ~InflateGuard() { inflateEnd(zs); }
};

// Inflates gzip members one after another. With `prefix_only`, stops quietly
// once `max_output` bytes are out (used to peek at a header); otherwise more
// than `max_output` bytes is an error.
inline std::vector<std::uint8_t> gunzip_impl(const std::uint8_t* p, std::size_t n, const std::string& name,
                                             std::size_t max_output, bool prefix_only) {
    if (!is_gzip(p, n)) {
        if (n < 2) CUMULUS_FAIL(name, ": not gzip data: ", n, " bytes, too short for the magic 1f 8b");
        char found[8];
        std::snprintf(found, sizeof found, "%02x %02x", p[0], p[1]);
        CUMULUS_FAIL(name, ": not gzip data: expected magic bytes 1f 8b at offset 0, found ", found);
    }
    z_stream zs{};
    int rc = inflateInit2(&zs, 16 + MAX_WBITS);  // gzip wrapper only
    if (rc != Z_OK) CUMULUS_FAIL(name, ": zlib inflateInit2 failed (code ", rc, ")");
    InflateGuard guard{&zs};

    // One byte past the cap tells "exactly max_output" from "more".
    const std::size_t limit =
        prefix_only ? max_output : (max_output == std::numeric_limits<std::size_t>::max() ? max_output : max_output + 1);
    // ISIZE (last 4 bytes, mod 2^32) sizes the first allocation, but it is
    // untrusted: trusted only up to 8x the input (typical ratios are 2-10x),
    // so a damaged trailer cannot make us zero-fill ~1000x the input before
    // inflate finds the damage. Larger outputs grow by doubling.
    std::size_t hint = std::size_t{64} << 10;
    if (n >= 18) {
        std::size_t isize = std::size_t(p[n - 4]) | std::size_t(p[n - 3]) << 8 | std::size_t(p[n - 2]) << 16 |
                            std::size_t(p[n - 1]) << 24;
        std::size_t ratio_cap = n > std::numeric_limits<std::size_t>::max() / 8 ? n : n * 8;
        hint = std::max(hint, std::min(isize + 1, ratio_cap));
    }
    std::vector<std::uint8_t> out(std::min(hint, limit));
    std::size_t in_pos = 0, out_pos = 0, member_start = 0;
    int members = 0;
    for (;;) {
        if (out_pos == out.size()) {
            if (out.size() >= limit) break;  // only reached with prefix_only: the check below throws otherwise
            std::size_t grown = out.size() > limit / 2 ? limit : std::max<std::size_t>(out.size() * 2, 65536);
            out.resize(std::min(grown, limit));
        }
        zs.next_in = const_cast<Bytef*>(p + in_pos);
        zs.avail_in = static_cast<uInt>(std::min(n - in_pos, kZlibChunk));
        zs.next_out = out.data() + out_pos;
        zs.avail_out = static_cast<uInt>(std::min(out.size() - out_pos, kZlibChunk));
        const uInt avail_in = zs.avail_in, avail_out = zs.avail_out;
        rc = inflate(&zs, Z_NO_FLUSH);
        in_pos += avail_in - zs.avail_in;
        out_pos += avail_out - zs.avail_out;
        if (!prefix_only && out_pos > max_output)
            CUMULUS_FAIL(name, ": gzip data decompresses to more than the limit of ", max_output,
                         " bytes (stopped at input byte offset ", in_pos, " of ", n,
                         "); refusing to continue (corrupt file or gzip bomb?)");
        if (rc == Z_OK) continue;
        if (rc == Z_STREAM_END) {
            ++members;
            if (in_pos == n) break;
            if (is_gzip(p + in_pos, n - in_pos)) {  // concatenated members form one stream
                member_start = in_pos;
                inflateReset(&zs);
                continue;
            }
            // gzip(1) also ignores zero padding after the last member (tape blocks).
            if (std::all_of(p + in_pos, p + n, [](std::uint8_t b) { return b == 0; })) break;
            CUMULUS_FAIL(name, ": trailing garbage after gzip member ", members, ": ", n - in_pos,
                         " bytes from byte offset ", in_pos, " are neither zero padding nor another gzip member");
        }
        if (rc == Z_BUF_ERROR) {
            if (out_pos == out.size()) continue;  // output full: grow and retry
            if (in_pos == n)
                CUMULUS_FAIL(name, ": truncated gzip data: the input ends at byte offset ", n,
                             " inside gzip member ", members + 1, " (which starts at byte offset ", member_start,
                             "), after ", out_pos, " decompressed bytes");
        }
        CUMULUS_FAIL(name, ": corrupt gzip data at or near byte offset ", in_pos, " (gzip member ", members + 1,
                     " starting at byte offset ", member_start, "): ", zs.msg != nullptr ? zs.msg : "zlib error",
                     " (zlib code ", rc, ")");
    }
    out.resize(out_pos);
    return out;
}

}  // namespace detail

// Decompresses gzip data (one or more concatenated members, as gzip(1) writes
// with `cat a.gz b.gz`). Throws cumulus::Error naming `name_for_errors` and the
// byte offset on non-gzip, truncated or corrupt input, on trailing garbage, and
// when the output would exceed `max_output` bytes.
inline std::vector<std::uint8_t> gunzip(const std::uint8_t* p, std::size_t n, const std::string& name_for_errors,
                                        std::size_t max_output) {
    return detail::gunzip_impl(p, n, name_for_errors, max_output, false);
}

// At most the first `max_prefix` decompressed bytes: enough to read a file
// header before deciding how much output to allow. Stops quietly at the cap;
// still throws on damage within the bytes it needs.
inline std::vector<std::uint8_t> gunzip_prefix(const std::uint8_t* p, std::size_t n,
                                               const std::string& name_for_errors, std::size_t max_prefix) {
    return detail::gunzip_impl(p, n, name_for_errors, max_prefix, true);
}

// One gzip member holding `n` bytes, compressed at `level` (0..9, or -1 for
// zlib's default).
inline std::vector<std::uint8_t> gzip_compress(const std::uint8_t* p, std::size_t n, int level = 6) {
    CUMULUS_CHECK(level >= -1 && level <= 9, "gzip_compress: level must be -1..9, got ", level);
    z_stream zs{};
    int rc = deflateInit2(&zs, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
    CUMULUS_CHECK(rc == Z_OK, "gzip_compress: zlib deflateInit2 failed (code ", rc, ")");
    struct Guard {
        z_stream* zs;
        ~Guard() { deflateEnd(zs); }
    } guard{&zs};
    std::vector<std::uint8_t> out(std::min<std::size_t>(n, detail::kZlibChunk) / 2 + 256);
    std::size_t in_pos = 0, out_pos = 0;
    for (;;) {
        if (out_pos == out.size()) out.resize(out.size() * 2);
        zs.next_in = const_cast<Bytef*>(p + in_pos);
        zs.avail_in = static_cast<uInt>(std::min(n - in_pos, detail::kZlibChunk));
        zs.next_out = out.data() + out_pos;
        zs.avail_out = static_cast<uInt>(std::min(out.size() - out_pos, detail::kZlibChunk));
        const uInt avail_in = zs.avail_in, avail_out = zs.avail_out;
        const bool last = n - in_pos == zs.avail_in;
        rc = deflate(&zs, last ? Z_FINISH : Z_NO_FLUSH);
        in_pos += avail_in - zs.avail_in;
        out_pos += avail_out - zs.avail_out;
        if (rc == Z_STREAM_END) break;
        CUMULUS_CHECK(rc == Z_OK || rc == Z_BUF_ERROR, "gzip_compress: zlib deflate failed (code ", rc, ")");
    }
    out.resize(out_pos);
    return out;
}

inline std::vector<std::uint8_t> gzip_compress(const std::vector<std::uint8_t>& bytes, int level = 6) {
    return gzip_compress(bytes.data(), bytes.size(), level);
}

// The file's bytes, decompressed when they start with the gzip magic (the
// name does not matter). At most `max_output` decompressed bytes.
inline std::vector<std::uint8_t> read_maybe_gzip(const std::string& path, std::size_t max_output = kDefaultMaxGunzip) {
    std::vector<std::uint8_t> bytes = read_file(path);
    if (!is_gzip(bytes.data(), bytes.size())) return bytes;
    return gunzip(bytes.data(), bytes.size(), path, max_output);
}

}  // namespace cumulus::io
