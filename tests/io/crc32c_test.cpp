#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <cumulus/io/crc32c.hpp>

namespace io = cumulus::io;

namespace {

std::uint32_t crc_of(const std::string& s) { return io::crc32c(s.data(), s.size()); }

// Bit-at-a-time CRC-32C straight from the definition (reflected 0x82F63B78).
std::uint32_t crc32c_bitwise(const std::uint8_t* p, std::size_t n) {
    std::uint32_t c = 0xFFFFFFFFu;
    for (std::size_t i = 0; i < n; ++i) {
        c ^= p[i];
        for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

}  // namespace

TEST_CASE("crc32c: the vectors of formats.md") {
    MESSAGE("crc32c backend: ", io::crc32c_backend());
    CHECK(crc_of("123456789") == 0xE3069283u);
    CHECK(crc_of("hello world") == 0xC99465AAu);
    CHECK(crc_of("") == 0u);
    CHECK(io::crc32c_software("123456789", 9) == 0xE3069283u);
    CHECK(io::crc32c_software("hello world", 11) == 0xC99465AAu);
    CHECK(io::crc32c_software("", 0) == 0u);
    // RFC 3720 (iSCSI) B.4: 32 zero bytes and 32 0xFF bytes.
    std::uint8_t zeros[32] = {}, ones[32];
    std::memset(ones, 0xFF, sizeof ones);
    CHECK(io::crc32c(zeros, 32) == 0x8A9136AAu);
    CHECK(io::crc32c(ones, 32) == 0x62A8AB43u);
}

TEST_CASE("crc32c: TensorFlow's mask, and its inverse") {
    // The masked length CRC in the TFRecord of b"hello": 05 00.. 00 -> eab2043e (LE).
    const std::uint8_t len5[8] = {5, 0, 0, 0, 0, 0, 0, 0};
    CHECK(io::masked_crc32c(len5, 8) == 0x3e04b2eau);
    CHECK(io::masked_crc32c("hello", 5) == 0x191c1fbbu);
    const std::uint8_t len0[8] = {};
    CHECK(io::masked_crc32c(len0, 8) == 0x07980329u);
    CHECK(io::masked_crc32c("", 0) == 0xa282ead8u);  // mask(0) is the delta itself
    std::mt19937 rng(7);
    for (int i = 0; i < 10000; ++i) {
        const std::uint32_t c = rng();
        CHECK_EQ(io::unmask_crc(io::mask_crc(c)), c);
        CHECK_EQ(io::mask_crc(io::unmask_crc(c)), c);
    }
    CHECK(io::mask_crc(0xE3069283u) == (((0xE3069283u >> 15) | (0xE3069283u << 17)) + 0xa282ead8u));
    static_assert(io::unmask_crc(io::mask_crc(0x12345678u)) == 0x12345678u);
}

TEST_CASE("crc32c: hardware, slicing-by-8 and the bitwise definition agree on every length and alignment") {
    std::mt19937 rng(42);
    std::vector<std::uint8_t> buf(300 + 16);
    for (auto& b : buf) b = static_cast<std::uint8_t>(rng());
    const bool hw = io::crc32c_hardware_available();
    if (!hw) MESSAGE("no SSE4.2 on this CPU: only the software path is checked");
    for (std::size_t start = 0; start < 16; ++start) {
        for (std::size_t n = 0; n <= 300; ++n) {
            const std::uint8_t* p = buf.data() + start;
            const std::uint32_t want = crc32c_bitwise(p, n);
            REQUIRE_EQ(io::crc32c_software(p, n), want);
            if (hw) REQUIRE_EQ(io::crc32c_hardware(p, n), want);
            REQUIRE_EQ(io::crc32c(p, n), want);
        }
    }
}

TEST_CASE("crc32c: init continues a CRC across pieces") {
    std::mt19937 rng(3);
    std::vector<std::uint8_t> buf(4096);
    for (auto& b : buf) b = static_cast<std::uint8_t>(rng());
    const std::uint32_t whole = io::crc32c(buf.data(), buf.size());
    for (std::size_t cut : {0, 1, 7, 8, 9, 63, 1000, 4095, 4096}) {
        const std::uint32_t a = io::crc32c(buf.data(), cut);
        CHECK_EQ(io::crc32c(buf.data() + cut, buf.size() - cut, a), whole);
        CHECK_EQ(io::crc32c_software(buf.data() + cut, buf.size() - cut, io::crc32c_software(buf.data(), cut)),
                 whole);
        if (io::crc32c_hardware_available())
            CHECK_EQ(io::crc32c_hardware(buf.data() + cut, buf.size() - cut, io::crc32c_hardware(buf.data(), cut)),
                     whole);
    }
    // A large buffer: every path over a megabyte.
    std::vector<std::uint8_t> big(1 << 20);
    for (auto& b : big) b = static_cast<std::uint8_t>(rng());
    const std::uint32_t ref = crc32c_bitwise(big.data() + 3, big.size() - 3);
    CHECK_EQ(io::crc32c_software(big.data() + 3, big.size() - 3), ref);
    CHECK_EQ(io::crc32c(big.data() + 3, big.size() - 3), ref);
}
