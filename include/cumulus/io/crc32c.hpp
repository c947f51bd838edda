// CRC-32C (Castagnoli), the checksum of TFRecord framing, and TensorFlow's mask.
//
// Polynomial 0x1EDC6F41 (reflected 0x82F63B78), init and final xor 0xFFFFFFFF:
// crc32c("123456789") = 0xE3069283. On x86-64 CPUs with SSE4.2 the `crc32`
// instruction computes it (chosen at run time, no -m flags needed); elsewhere
// a slicing-by-8 table does, eight bytes per step.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

// nvcc's front end is kept off the target attribute: under it the table runs.
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define CUMULUS_CRC32C_X86 1
#include <nmmintrin.h>
#else
#define CUMULUS_CRC32C_X86 0
#endif

namespace cumulus::io {

namespace detail {

// kCrc32cTables[k][b]: the CRC of byte b followed by k zero bytes (slicing-by-8).
inline constexpr auto kCrc32cTables = [] {
    std::array<std::array<std::uint32_t, 256>, 8> t{};
    for (std::uint32_t b = 0; b < 256; ++b) {
        std::uint32_t c = b;
        for (int i = 0; i < 8; ++i) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        t[0][b] = c;
    }
    for (std::size_t k = 1; k < 8; ++k)
        for (std::size_t b = 0; b < 256; ++b) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFF];
    return t;
}();

inline std::uint64_t crc32c_load_le64(const unsigned char* p) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
    return v;
}

// The raw (unfinalised) register update, table-driven.
inline std::uint32_t crc32c_update_sw(std::uint32_t c, const unsigned char* p, std::size_t n) {
    const auto& t = kCrc32cTables;
    for (; n >= 8; n -= 8, p += 8) {
        const std::uint64_t v = crc32c_load_le64(p) ^ c;
        c = t[7][v & 0xFF] ^ t[6][(v >> 8) & 0xFF] ^ t[5][(v >> 16) & 0xFF] ^ t[4][(v >> 24) & 0xFF] ^
            t[3][(v >> 32) & 0xFF] ^ t[2][(v >> 40) & 0xFF] ^ t[1][(v >> 48) & 0xFF] ^ t[0][v >> 56];
    }
    for (; n > 0; --n) c = (c >> 8) ^ t[0][(c ^ *p++) & 0xFF];
    return c;
}

#if CUMULUS_CRC32C_X86
__attribute__((target("sse4.2"))) inline std::uint32_t crc32c_update_hw(std::uint32_t c, const unsigned char* p,
                                                                        std::size_t n) {
    for (; n > 0 && (reinterpret_cast<std::uintptr_t>(p) & 7) != 0; --n) c = _mm_crc32_u8(c, *p++);
#if defined(__x86_64__)
    std::uint64_t c64 = c;
    for (; n >= 8; n -= 8, p += 8) {
        std::uint64_t v;
        std::memcpy(&v, p, 8);
        c64 = _mm_crc32_u64(c64, v);
    }
    c = static_cast<std::uint32_t>(c64);
#endif
    for (; n >= 4; n -= 4, p += 4) {
        std::uint32_t v;
        std::memcpy(&v, p, 4);
        c = _mm_crc32_u32(c, v);
    }
    for (; n > 0; --n) c = _mm_crc32_u8(c, *p++);
    return c;
}
#endif

}  // namespace detail

// Whether crc32c() uses the SSE4.2 instruction on this CPU.
inline bool crc32c_hardware_available() {
#if CUMULUS_CRC32C_X86
    static const bool has = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("sse4.2") != 0;
    }();
    return has;
#else
    return false;
#endif
}

// "sse4.2" or "slicing-by-8": which implementation crc32c() runs.
inline const char* crc32c_backend() { return crc32c_hardware_available() ? "sse4.2" : "slicing-by-8"; }

// The table-driven implementation, on any CPU. `init` continues an earlier
// CRC: crc32c_software(b, nb, crc32c_software(a, na)) is the CRC of a then b.
inline std::uint32_t crc32c_software(const void* data, std::size_t n, std::uint32_t init = 0) {
    return ~detail::crc32c_update_sw(~init, static_cast<const unsigned char*>(data), n);
}

// The SSE4.2 implementation; only call it when crc32c_hardware_available().
inline std::uint32_t crc32c_hardware(const void* data, std::size_t n, std::uint32_t init = 0) {
#if CUMULUS_CRC32C_X86
    return ~detail::crc32c_update_hw(~init, static_cast<const unsigned char*>(data), n);
#else
    return crc32c_software(data, n, init);
#endif
}

// CRC-32C of n bytes, continuing `init` (0 to start).
inline std::uint32_t crc32c(const void* data, std::size_t n, std::uint32_t init = 0) {
    if (n == 0) return init;
    return crc32c_hardware_available() ? crc32c_hardware(data, n, init) : crc32c_software(data, n, init);
}

inline constexpr std::uint32_t kCrc32cMaskDelta = 0xa282ead8u;

// TensorFlow stores masked CRCs: a CRC of bytes that themselves hold CRCs is
// then unlikely to look like a valid CRC (tsl/lib/hash/crc32c.h).
constexpr std::uint32_t mask_crc(std::uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kCrc32cMaskDelta; }

constexpr std::uint32_t unmask_crc(std::uint32_t masked) {
    const std::uint32_t rot = masked - kCrc32cMaskDelta;
    return (rot >> 17) | (rot << 15);
}

// mask_crc(crc32c(data, n)): the value TFRecord stores.
inline std::uint32_t masked_crc32c(const void* data, std::size_t n) { return mask_crc(crc32c(data, n)); }

}  // namespace cumulus::io
