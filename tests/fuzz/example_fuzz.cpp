// libFuzzer target for parse_example and parse_sequence_example.
//
// Input starting with a valid TFRecord header is read as a record file and
// each record parsed (so real .tfrecord files are seeds); any other input is
// parsed as one serialized message. Anything may throw cumulus::Error. What
// parses must re-encode stably: serialize(parse(serialize(x))) ==
// serialize(x), byte for byte (bytes compare NaNs exactly, == would not).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include <cumulus/data/example.hpp>
#include <cumulus/data/tfrecord.hpp>
#include <cumulus/io/crc32c.hpp>
#include <cumulus/io/zstream.hpp>

namespace data = cumulus::data;
namespace io = cumulus::io;
using Bytes = std::vector<std::uint8_t>;

namespace {

void check_message(const std::uint8_t* p, std::size_t n) {
    try {
        const data::Example ex = data::parse_example(p, n, "fuzz");
        const Bytes s1 = data::serialize_example(ex);
        const data::Example again = data::parse_example(s1, "fuzz re-encoded");
        if (again.features.size() != ex.features.size()) std::abort();
        for (std::size_t i = 0; i < ex.features.size(); ++i)
            if (again.features[i].first != ex.features[i].first ||
                again.features[i].second.kind != ex.features[i].second.kind ||
                again.features[i].second.size() != ex.features[i].second.size())
                std::abort();
        if (data::serialize_example(again) != s1) std::abort();
    } catch (const cumulus::Error&) {
    }
    try {
        const data::SequenceExample s = data::parse_sequence_example(p, n, "fuzz");
        const Bytes s1 = data::serialize_sequence_example(s);
        if (data::serialize_sequence_example(data::parse_sequence_example(s1, "fuzz re-encoded")) != s1) std::abort();
    } catch (const cumulus::Error&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* d, std::size_t size) {
    const bool record_file = size >= data::kTFRecordHeaderSize && io::masked_crc32c(d, 8) ==
                                 (std::uint32_t(d[8]) | std::uint32_t(d[9]) << 8 | std::uint32_t(d[10]) << 16 |
                                  std::uint32_t(d[11]) << 24);
    if (!record_file) {
        check_message(d, size);
        return 0;
    }
    try {
        data::TFRecordReader r(std::make_unique<io::MemorySource>(d, size, "fuzz"), data::Compression::None, 1 << 20);
        Bytes rec;
        while (r.next(rec)) check_message(rec.data(), rec.size());
    } catch (const cumulus::Error&) {
    }
    return 0;
}
