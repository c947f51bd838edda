// Philox4x32-10 (Salmon et al., "Parallel Random Numbers: As Easy as 1, 2, 3",
// SC'11): a counter-based generator. The output is a pure function of a
// 128-bit counter and a 64-bit key, so the CPU and a GPU kernel produce the
// same numbers for the same (key, counter) with no shared state.
#pragma once

#include <cstdint>

#include <cumulus/core/config.hpp>

namespace cumulus {

struct PhiloxBlock {
    std::uint32_t v[4];
};

namespace detail {
CUMULUS_HOST_DEVICE CUMULUS_FORCEINLINE void philox_round(std::uint32_t c[4], const std::uint32_t k[2]) {
    constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
    std::uint64_t p0 = std::uint64_t(kM0) * c[0];
    std::uint64_t p1 = std::uint64_t(kM1) * c[2];
    std::uint32_t hi0 = std::uint32_t(p0 >> 32), lo0 = std::uint32_t(p0);
    std::uint32_t hi1 = std::uint32_t(p1 >> 32), lo1 = std::uint32_t(p1);
    c[0] = hi1 ^ c[1] ^ k[0];
    c[1] = lo1;
    c[2] = hi0 ^ c[3] ^ k[1];
    c[3] = lo0;
}
}  // namespace detail

// One Philox4x32-10 block: ten rounds, the key bumped by the Weyl constants
// between rounds.
CUMULUS_HOST_DEVICE inline PhiloxBlock philox4x32_10(PhiloxBlock ctr, std::uint32_t key0, std::uint32_t key1) {
    constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
    std::uint32_t k[2] = {key0, key1};
    for (int r = 0; r < 10; ++r) {
        if (r) {
            k[0] += kW0;
            k[1] += kW1;
        }
        detail::philox_round(ctr.v, k);
    }
    return ctr;
}

// A uint32 to a float uniform in [0, 1): the top 24 bits, exactly representable.
CUMULUS_HOST_DEVICE inline float uint_to_unit_float(std::uint32_t x) { return float(x >> 8) * (1.0f / 16777216.0f); }

// The uniform number for element `i` of a keyed stream. Every consumer that
// needs one number per element (dropout masks) uses this so that the CPU and
// the GPU agree bit for bit: block (i / 4) of counter {i/4, stream, step},
// word i % 4, key = seed.
CUMULUS_HOST_DEVICE inline float philox_uniform_at(std::uint64_t seed, std::uint32_t stream, std::uint64_t step,
                                                   std::uint64_t i) {
    PhiloxBlock c{{std::uint32_t(i >> 2), stream, std::uint32_t(step), std::uint32_t(step >> 32)}};
    PhiloxBlock r = philox4x32_10(c, std::uint32_t(seed), std::uint32_t(seed >> 32));
    return uint_to_unit_float(r.v[i & 3]);
}

}  // namespace cumulus
