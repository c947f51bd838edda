// libFuzzer target for the IDX reader and the gzip layer under it.
//
// Input starting with 00 or the gzip magic goes to parse_idx as it is, so
// real IDX files (raw or .gz) are seeds. Otherwise the first byte picks:
//   odd:  parse_idx on the gzip-compressed rest (the IDX parser behind gzip)
//   even: gunzip of the rest with a small output cap
// Anything may throw cumulus::Error; whatever parses must be self-consistent.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include <cumulus/data/idx.hpp>
#include <cumulus/io/gzip.hpp>

namespace data = cumulus::data;
namespace io = cumulus::io;

namespace {

void check_parsed(const data::IdxArray& a, const std::uint8_t* p, std::size_t n) {
    if (a.data.size() != static_cast<std::size_t>(a.numel()) * a.elem_size()) std::abort();
    if (!io::is_gzip(p, n)) {
        // A raw file that parses has one encoding: re-serialising gives back the input.
        std::vector<std::uint8_t> again = data::serialize_idx(a);
        if (again.size() != n || !std::equal(again.begin(), again.end(), p)) std::abort();
    }
    if (a.dims.size() <= 6 && a.numel() <= (1 << 16)) (void)a.to_tensor<double>();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t* p = data + 1;
    const std::size_t n = size - 1;
    try {
        if (data[0] == 0 || io::is_gzip(data, size)) {
            check_parsed(data::parse_idx(data, size, "fuzz"), data, size);
        } else if (data[0] % 2 == 1) {
            std::vector<std::uint8_t> z = io::gzip_compress(p, n, 1);
            data::parse_idx(z, "fuzz.gz");
        } else {
            (void)io::gunzip(p, n, "fuzz.gz", 1 << 20);
        }
    } catch (const cumulus::Error&) {
    }
    return 0;
}
