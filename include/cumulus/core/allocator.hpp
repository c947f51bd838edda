// Aligned host memory. 64-byte alignment: a cache line and an AVX-512 vector.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>

#include <cumulus/core/error.hpp>

namespace cumulus {

inline constexpr std::size_t kHostAlignment = 64;

inline void* host_allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    std::size_t rounded = (bytes + kHostAlignment - 1) / kHostAlignment * kHostAlignment;
    void* p = std::aligned_alloc(kHostAlignment, rounded);
    CUMULUS_CHECK(p != nullptr, "host allocation of ", bytes, " bytes failed");
    return p;
}

inline void host_free(void* p) noexcept { std::free(p); }

// A standard allocator over host_allocate, for std::vector of SIMD data.
template <typename T>
struct AlignedAllocator {
    using value_type = T;
    AlignedAllocator() = default;
    template <typename U>
    AlignedAllocator(const AlignedAllocator<U>&) noexcept {}
    T* allocate(std::size_t n) { return static_cast<T*>(host_allocate(n * sizeof(T))); }
    void deallocate(T* p, std::size_t) noexcept { host_free(p); }
    template <typename U>
    bool operator==(const AlignedAllocator<U>&) const noexcept { return true; }
};

}  // namespace cumulus
