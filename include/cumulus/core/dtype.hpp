// Element types: the runtime tag of each C++ element type a Tensor may hold.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

#include <cumulus/core/config.hpp>

namespace cumulus {

// IEEE 754 binary16. Storage and conversion only; arithmetic happens in float.
struct half {
    std::uint16_t bits = 0;
    half() = default;
    CUMULUS_HOST_DEVICE static half from_bits(std::uint16_t b) { half h; h.bits = b; return h; }
};

// bfloat16: the top 16 bits of a float32. Storage and conversion only.
struct bfloat16 {
    std::uint16_t bits = 0;
    bfloat16() = default;
    CUMULUS_HOST_DEVICE static bfloat16 from_bits(std::uint16_t b) { bfloat16 h; h.bits = b; return h; }
};

inline float to_float(bfloat16 v) {
    std::uint32_t u = std::uint32_t(v.bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline bfloat16 to_bfloat16(float f) {  // round to nearest even; NaN stays NaN
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return bfloat16::from_bits(std::uint16_t((u >> 16) | 0x40));
    u += 0x7fffu + ((u >> 16) & 1u);
    return bfloat16::from_bits(std::uint16_t(u >> 16));
}

inline float to_float(half v) {
    std::uint32_t sign = std::uint32_t(v.bits & 0x8000u) << 16;
    std::uint32_t exp = (v.bits >> 10) & 0x1fu;
    std::uint32_t man = v.bits & 0x3ffu;
    std::uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else {  // subnormal: normalise
            int e = -1;
            do { man <<= 1; ++e; } while ((man & 0x400u) == 0);
            u = sign | std::uint32_t(127 - 15 - e) << 23 | (man & 0x3ffu) << 13;
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | man << 13;
    } else {
        u = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

enum class DType : std::uint8_t { f16, bf16, f32, f64, i8, i32, i64, u8, boolean };

template <typename T> struct dtype_of;
template <> struct dtype_of<half> { static constexpr DType value = DType::f16; };
template <> struct dtype_of<bfloat16> { static constexpr DType value = DType::bf16; };
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<std::int8_t> { static constexpr DType value = DType::i8; };
template <> struct dtype_of<std::int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<std::int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<std::uint8_t> { static constexpr DType value = DType::u8; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::boolean; };
template <typename T> inline constexpr DType dtype_v = dtype_of<T>::value;

constexpr std::size_t dtype_size(DType t) {
    switch (t) {
        case DType::f16: case DType::bf16: return 2;
        case DType::f32: case DType::i32: return 4;
        case DType::f64: case DType::i64: return 8;
        case DType::i8: case DType::u8: case DType::boolean: return 1;
    }
    return 0;
}

// Names as numpy and safetensors spell them.
constexpr std::string_view dtype_name(DType t) {
    switch (t) {
        case DType::f16: return "float16";
        case DType::bf16: return "bfloat16";
        case DType::f32: return "float32";
        case DType::f64: return "float64";
        case DType::i8: return "int8";
        case DType::i32: return "int32";
        case DType::i64: return "int64";
        case DType::u8: return "uint8";
        case DType::boolean: return "bool";
    }
    return "?";
}

}  // namespace cumulus
