#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <ios>
#include <limits>

#include <cumulus/core/dtype.hpp>

using cumulus::bfloat16;
using cumulus::DType;
using cumulus::half;

namespace {

std::uint32_t float_bits(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

float bits_float(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

float h(std::uint16_t bits) { return cumulus::to_float(half::from_bits(bits)); }
float bf(std::uint16_t bits) { return cumulus::to_float(bfloat16::from_bits(bits)); }
std::uint16_t to_bf_bits(float f) { return cumulus::to_bfloat16(f).bits; }

// binary16 decoded from its definition, in double precision.
double half_reference(std::uint16_t b) {
    int sign = b >> 15, exp = (b >> 10) & 0x1f, man = b & 0x3ff;
    double mag;
    if (exp == 0) mag = std::ldexp(double(man), -24);
    else if (exp == 31) mag = man ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
    else mag = std::ldexp(double(1024 + man), exp - 25);
    return sign ? -mag : mag;
}

}  // namespace

TEST_CASE("dtype: sizes, tags and names") {
    CHECK(cumulus::dtype_size(DType::f16) == 2);
    CHECK(cumulus::dtype_size(DType::bf16) == 2);
    CHECK(cumulus::dtype_size(DType::f32) == 4);
    CHECK(cumulus::dtype_size(DType::f64) == 8);
    CHECK(cumulus::dtype_size(DType::i8) == 1);
    CHECK(cumulus::dtype_size(DType::i32) == 4);
    CHECK(cumulus::dtype_size(DType::i64) == 8);
    CHECK(cumulus::dtype_size(DType::u8) == 1);
    CHECK(cumulus::dtype_size(DType::boolean) == 1);

    static_assert(cumulus::dtype_v<float> == DType::f32);
    static_assert(cumulus::dtype_v<double> == DType::f64);
    static_assert(cumulus::dtype_v<half> == DType::f16);
    static_assert(cumulus::dtype_v<bfloat16> == DType::bf16);
    static_assert(cumulus::dtype_v<std::uint8_t> == DType::u8);
    static_assert(cumulus::dtype_v<std::int64_t> == DType::i64);
    static_assert(cumulus::dtype_v<bool> == DType::boolean);

    // The tag's size is the C++ type's size.
    CHECK(cumulus::dtype_size(cumulus::dtype_v<half>) == sizeof(half));
    CHECK(cumulus::dtype_size(cumulus::dtype_v<bfloat16>) == sizeof(bfloat16));
    CHECK(cumulus::dtype_size(cumulus::dtype_v<float>) == sizeof(float));
    CHECK(cumulus::dtype_size(cumulus::dtype_v<std::int8_t>) == sizeof(std::int8_t));
    CHECK(cumulus::dtype_size(cumulus::dtype_v<std::int32_t>) == sizeof(std::int32_t));
    CHECK(cumulus::dtype_size(cumulus::dtype_v<bool>) == sizeof(bool));

    CHECK(cumulus::dtype_name(DType::f16) == "float16");
    CHECK(cumulus::dtype_name(DType::bf16) == "bfloat16");
    CHECK(cumulus::dtype_name(DType::f32) == "float32");
    CHECK(cumulus::dtype_name(DType::f64) == "float64");
    CHECK(cumulus::dtype_name(DType::i8) == "int8");
    CHECK(cumulus::dtype_name(DType::i32) == "int32");
    CHECK(cumulus::dtype_name(DType::i64) == "int64");
    CHECK(cumulus::dtype_name(DType::u8) == "uint8");
    CHECK(cumulus::dtype_name(DType::boolean) == "bool");
}

TEST_CASE("half -> float: known bit patterns") {
    CHECK(h(0x3c00) == 1.0f);
    CHECK(h(0xc000) == -2.0f);
    CHECK(h(0x7bff) == 65504.0f);    // largest finite
    CHECK(h(0xfbff) == -65504.0f);
    CHECK(h(0x0400) == std::ldexp(1.0f, -14));  // smallest normal
    CHECK(h(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
    CHECK(h(0x8001) == -std::ldexp(1.0f, -24));
    CHECK(h(0x03ff) == std::ldexp(1023.0f, -24));  // largest subnormal
    CHECK(h(0x3555) == 0.333251953125f);
    CHECK(h(0x3bff) == 1.0f - std::ldexp(1.0f, -11));
    CHECK(float_bits(h(0x0000)) == 0x00000000u);
    CHECK(float_bits(h(0x8000)) == 0x80000000u);  // -0 keeps its sign
    CHECK(h(0x7c00) == std::numeric_limits<float>::infinity());
    CHECK(h(0xfc00) == -std::numeric_limits<float>::infinity());
    CHECK(std::isnan(h(0x7e00)));
    CHECK(std::isnan(h(0x7c01)));  // a signalling-NaN pattern is still a NaN, not infinity
    CHECK(std::isnan(h(0xfe00)));
}

TEST_CASE("half -> float: every one of the 65536 patterns matches the definition") {
    int mismatches = 0;
    for (std::uint32_t b = 0; b < 0x10000; ++b) {
        float got = h(static_cast<std::uint16_t>(b));
        double want = half_reference(static_cast<std::uint16_t>(b));
        bool ok = std::isnan(want) ? std::isnan(got) : (double(got) == want && std::signbit(got) == std::signbit(want));
        if (!ok && ++mismatches <= 5) FAIL_CHECK("half bits 0x" << std::hex << b << ": got " << got << ", want " << want);
    }
    CHECK(mismatches == 0);
}

TEST_CASE("bfloat16 <-> float: known bit patterns") {
    CHECK(bf(0x3f80) == 1.0f);
    CHECK(bf(0xc000) == -2.0f);
    CHECK(bf(0x7f80) == std::numeric_limits<float>::infinity());
    CHECK(bf(0xff80) == -std::numeric_limits<float>::infinity());
    CHECK(std::isnan(bf(0x7fc0)));
    CHECK(bf(0x0001) == bits_float(0x00010000u));  // smallest bfloat16 subnormal
    CHECK(bf(0x7f7f) == bits_float(0x7f7f0000u));  // largest finite

    CHECK(to_bf_bits(1.0f) == 0x3f80);
    CHECK(to_bf_bits(-2.0f) == 0xc000);
    CHECK(to_bf_bits(0.0f) == 0x0000);
    CHECK(to_bf_bits(-0.0f) == 0x8000);
    CHECK(to_bf_bits(std::numeric_limits<float>::infinity()) == 0x7f80);
    CHECK(to_bf_bits(-std::numeric_limits<float>::infinity()) == 0xff80);
    CHECK(to_bf_bits(std::ldexp(1.0f, -24)) == 0x3380);  // 2^-24 is exact in bfloat16
    CHECK(to_bf_bits(65504.0f) == 0x4780);  // rounds up to 65536: bfloat16 has 8 significant bits
    CHECK(bf(to_bf_bits(65504.0f)) == 65536.0f);
}

TEST_CASE("float -> bfloat16: round to nearest even, NaN stays NaN") {
    const float ulp = std::ldexp(1.0f, -7);  // spacing of bfloat16 in [1, 2)
    CHECK(to_bf_bits(1.0f + ulp / 2) == 0x3f80);   // tie: down to even
    CHECK(to_bf_bits(1.0f + 3 * ulp / 2) == 0x3f82);  // tie: up to even
    CHECK(to_bf_bits(1.0f + ulp / 2 + std::ldexp(1.0f, -20)) == 0x3f81);  // above the tie
    CHECK(to_bf_bits(1.0f + ulp / 2 - std::ldexp(1.0f, -20)) == 0x3f80);  // below the tie
    CHECK(to_bf_bits(-(1.0f + 3 * ulp / 2)) == 0xbf82);
    CHECK(to_bf_bits(bits_float(0x7f7fffffu)) == 0x7f80);  // FLT_MAX overflows to infinity

    for (std::uint32_t nan : {0x7fc00000u, 0x7f800001u, 0xffc00000u, 0x7f80ffffu, 0x7fffffffu}) {
        CAPTURE(nan);
        auto b = cumulus::to_bfloat16(bits_float(nan));
        CHECK(std::isnan(cumulus::to_float(b)));  // a payload only in the low bits must not become infinity
        CHECK((b.bits & 0x8000) == ((nan >> 16) & 0x8000));
    }

    // Every non-NaN bfloat16 survives a round trip through float exactly.
    int mismatches = 0;
    for (std::uint32_t b = 0; b < 0x10000; ++b) {
        float f = bf(static_cast<std::uint16_t>(b));
        if (std::isnan(f)) continue;
        if (to_bf_bits(f) != b && ++mismatches <= 5) FAIL_CHECK("bfloat16 bits 0x" << std::hex << b);
        if (float_bits(f) != b << 16 && ++mismatches <= 5) FAIL_CHECK("bfloat16 bits 0x" << std::hex << b);
    }
    CHECK(mismatches == 0);
}
