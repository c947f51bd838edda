// libFuzzer target for the TFRecord framing, read from memory, and the
// inflate layer under it.
//
// Input that auto-detects as compressed, or starts with a valid record
// header, is read as it is (so real .tfrecord files are seeds). Otherwise the
// first byte picks what happens to the rest:
//   0: read as uncompressed records
//   1: gzip-compressed by DeflateSink, then read as Gzip (the framing behind inflate)
//   2: zlib-compressed, then read as Zlib
//   3: read as Gzip, 4: read as Zlib (inflate on arbitrary bytes)
// Anything may throw cumulus::Error. A stream read without error must be
// exactly the framing of the records read from it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include <cumulus/data/tfrecord.hpp>
#include <cumulus/io/crc32c.hpp>
#include <cumulus/io/zstream.hpp>

namespace data = cumulus::data;
namespace io = cumulus::io;
using Bytes = std::vector<std::uint8_t>;

namespace {

constexpr std::uint64_t kMaxRecord = 1 << 20;

// The records, or an empty optional-like flag when reading threw.
bool read_records(const std::uint8_t* p, std::size_t n, data::Compression c, std::vector<Bytes>& out) {
    try {
        data::TFRecordReader r(std::make_unique<io::MemorySource>(p, n, "fuzz"), c, kMaxRecord);
        Bytes rec;
        while (r.next(rec)) out.push_back(rec);
        if (r.record_index() != out.size()) std::abort();
        return true;
    } catch (const cumulus::Error&) {
        return false;
    }
}

Bytes frame_all(const std::vector<Bytes>& recs, data::Compression c) {
    Bytes out;
    data::TFRecordWriter w(std::make_unique<io::VectorSink>(out), c, 1);
    for (const auto& r : recs) w.write(r);
    w.close();
    return out;
}

bool equal(const Bytes& a, const std::uint8_t* p, std::size_t n) {
    return a.size() == n && (n == 0 || std::equal(a.begin(), a.end(), p));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* d, std::size_t size) {
    std::vector<Bytes> recs;
    const data::Compression detected = data::detect_compression(d, size);
    const bool plain_header = size >= data::kTFRecordHeaderSize && io::masked_crc32c(d, 8) ==
                                  (std::uint32_t(d[8]) | std::uint32_t(d[9]) << 8 | std::uint32_t(d[10]) << 16 |
                                   std::uint32_t(d[11]) << 24);
    if (plain_header || detected != data::Compression::None) {
        if (read_records(d, size, detected, recs) && detected == data::Compression::None &&
            !equal(frame_all(recs, detected), d, size))
            std::abort();
        return 0;
    }
    if (size == 0) return 0;
    const std::uint8_t* p = d + 1;
    const std::size_t n = size - 1;
    switch (d[0] % 5) {
        case 0:
            if (read_records(p, n, data::Compression::None, recs) && !equal(frame_all(recs, data::Compression::None), p, n))
                std::abort();
            break;
        case 1:
        case 2: {
            const auto c = d[0] % 5 == 1 ? data::Compression::Gzip : data::Compression::Zlib;
            Bytes z;
            {
                io::DeflateSink sink(std::make_unique<io::VectorSink>(z),
                                     c == data::Compression::Gzip ? io::ZWrap::Gzip : io::ZWrap::Zlib, 1);
                sink.write(p, n);
                sink.finish();
            }
            const bool ok = read_records(z.data(), z.size(), c, recs);
            std::vector<Bytes> plain;
            // Compression must not change the outcome.
            if (ok != read_records(p, n, data::Compression::None, plain) || (ok && plain != recs)) std::abort();
            if (ok && !equal(frame_all(recs, data::Compression::None), p, n)) std::abort();
            break;
        }
        case 3: read_records(p, n, data::Compression::Gzip, recs); break;
        default: read_records(p, n, data::Compression::Zlib, recs); break;
    }
    return 0;
}
