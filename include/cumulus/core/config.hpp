// Build configuration: which compiler sees this header and what it may use.
#pragma once

#if defined(__CUDACC__)
#define CUMULUS_HOST_DEVICE __host__ __device__
#define CUMULUS_DEVICE __device__
#define CUMULUS_FORCEINLINE __forceinline__
#else
#define CUMULUS_HOST_DEVICE
#define CUMULUS_DEVICE
#define CUMULUS_FORCEINLINE inline __attribute__((always_inline))
#endif

// CUMULUS_WITH_CUDA is defined (to 1) by the build for translation units that
// link the CUDA runtime; a CPU-only build never sees device code.
#if !defined(CUMULUS_WITH_CUDA)
#define CUMULUS_WITH_CUDA 0
#endif

namespace cumulus {
inline constexpr bool built_with_cuda = CUMULUS_WITH_CUDA != 0;
}  // namespace cumulus
