// CUDA plumbing: error checks, device selection and properties, the stream
// every launcher uses, and a caching device allocator.
//
// Host code only (no kernels), so g++ can compile it too when the CUDA
// headers are on the include path. Every op runs on one stream per device
// (current_stream()): work is ordered without device-wide syncs, a training
// step can be captured into a CUDA graph (the legacy default stream cannot
// be captured), and memory freed to the cache can be handed out again at
// once, since any later use is ordered after the earlier kernels.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <cumulus/core/device.hpp>
#include <cumulus/core/error.hpp>
#include <cumulus/core/tensor.hpp>

namespace cumulus::cuda {

// ---------------------------------------------------------------- errors

[[noreturn]] inline void throw_cuda_error(cudaError_t e, const char* expr, const char* file, int line) {
    throw Error(std::string("CUDA error ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ") in `" + expr +
                "` at " + file + ":" + std::to_string(line));
}

inline void check_cuda(cudaError_t e, const char* expr, const char* file, int line) {
    if (e != cudaSuccess) [[unlikely]] {
        (void)cudaGetLastError();  // clear a sticky-less error so the next call does not see it
        throw_cuda_error(e, expr, file, line);
    }
}

// For destructors and other places that must not throw.
// Returns whether e is cudaSuccess.
inline bool print_cuda_error(cudaError_t e, const char* expr, const char* file, int line) noexcept {
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        std::fprintf(stderr, "cumulus: CUDA error %s (%s) in `%s` at %s:%d\n", cudaGetErrorName(e),
                     cudaGetErrorString(e), expr, file, line);
    }
    return e == cudaSuccess;
}

}  // namespace cumulus::cuda

// Throws cumulus::Error naming the CUDA error, the expression, file and line.
#define CUMULUS_CUDA_CHECK(expr) ::cumulus::cuda::check_cuda((expr), #expr, __FILE__, __LINE__)
// Prints instead of throwing: for destructors.
#define CUMULUS_CUDA_CHECK_PRINT(expr) ::cumulus::cuda::print_cuda_error((expr), #expr, __FILE__, __LINE__)
// After every kernel launch: a bad configuration shows up here, not later.
#define CUMULUS_CUDA_CHECK_LAUNCH() ::cumulus::cuda::check_cuda(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

namespace cumulus::cuda {

// ---------------------------------------------------------------- devices

// The number of usable devices; 0 when there is no driver or no device.
inline int device_count() noexcept {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

inline bool available() noexcept { return device_count() > 0; }

// Why no device can be used, or "" when one can: for skip messages.
inline std::string unavailable_reason() {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(e);
    }
    if (n == 0) return "cudaGetDeviceCount found 0 devices";
    return "";
}

inline void check_device(Device d) {
    CUMULUS_CHECK(d.is_cuda(), "expected a CUDA device, got ", d.str());
    const int n = device_count();
    CUMULUS_CHECK(d.index >= 0 && d.index < n, "device ", d.str(), " requested but ", n,
                  " CUDA device(s) are visible");
}

inline void set_device(Device d) {
    check_device(d);
    CUMULUS_CUDA_CHECK(cudaSetDevice(d.index));
}

inline int current_device_index() {
    int i = 0;
    CUMULUS_CUDA_CHECK(cudaGetDevice(&i));
    return i;
}

// Properties of device `index`, read once.
inline const cudaDeviceProp& device_properties(int index = -1) {
    static std::mutex mu;
    static std::map<int, cudaDeviceProp> cache;
    if (index < 0) index = current_device_index();
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(index);
    if (it == cache.end()) {
        cudaDeviceProp p{};
        CUMULUS_CUDA_CHECK(cudaGetDeviceProperties(&p, index));
        it = cache.emplace(index, p).first;
    }
    return it->second;
}

// Sets the current device for a scope and restores the previous one.
class DeviceGuard {
public:
    explicit DeviceGuard(Device d) {
        CUMULUS_CUDA_CHECK(cudaGetDevice(&previous_));
        if (d.index != previous_) CUMULUS_CUDA_CHECK(cudaSetDevice(d.index));
    }
    ~DeviceGuard() { CUMULUS_CUDA_CHECK_PRINT(cudaSetDevice(previous_)); }
    DeviceGuard(const DeviceGuard&) = delete;
    DeviceGuard& operator=(const DeviceGuard&) = delete;

private:
    int previous_ = 0;
};

// ---------------------------------------------------------------- streams

// The library's stream of device `index` (non-blocking, created once, never
// destroyed: it must outlive every static tensor).
inline cudaStream_t library_stream(int index) {
    static std::mutex mu;
    static std::map<int, cudaStream_t> streams;
    std::lock_guard<std::mutex> lock(mu);
    auto it = streams.find(index);
    if (it == streams.end()) {
        int prev = 0;
        CUMULUS_CUDA_CHECK(cudaGetDevice(&prev));
        CUMULUS_CUDA_CHECK(cudaSetDevice(index));
        cudaStream_t s = nullptr;
        cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
        CUMULUS_CUDA_CHECK(cudaSetDevice(prev));
        CUMULUS_CUDA_CHECK(e);
        it = streams.emplace(index, s).first;
    }
    return it->second;
}

namespace detail {
inline thread_local cudaStream_t stream_override = nullptr;
inline thread_local bool has_stream_override = false;
}  // namespace detail

// The stream every op and copy of this thread runs on: the library stream of
// `device` (the current device), unless a StreamGuard says otherwise.
inline cudaStream_t current_stream(int device) {
    return detail::has_stream_override ? detail::stream_override : library_stream(device);
}
inline cudaStream_t current_stream() { return current_stream(current_device_index()); }

// Runs the ops of a scope on `s` (e.g. a benchmark's or a capture's stream).
class StreamGuard {
public:
    explicit StreamGuard(cudaStream_t s)
        : prev_(detail::stream_override), had_(detail::has_stream_override) {
        detail::stream_override = s;
        detail::has_stream_override = true;
    }
    ~StreamGuard() {
        detail::stream_override = prev_;
        detail::has_stream_override = had_;
    }
    StreamGuard(const StreamGuard&) = delete;
    StreamGuard& operator=(const StreamGuard&) = delete;

private:
    cudaStream_t prev_;
    bool had_;
};

inline void synchronize() { CUMULUS_CUDA_CHECK(cudaStreamSynchronize(current_stream())); }

// ---------------------------------------------------------------- allocator

namespace detail {
struct AllocatorThreadStats {
    std::int64_t device_mallocs = 0;  // cudaMalloc calls
    std::int64_t releases = 0;        // blocks returned to the free lists
};
inline thread_local AllocatorThreadStats allocator_thread_stats;
}  // namespace detail

// A caching allocator: freed blocks go to a free list keyed by device,
// rounded size and stream, and are handed out again without cudaMalloc. A
// block belongs to the stream that was current when it was allocated (the
// device's library stream, or a StreamGuard's), and only an allocation on
// that same stream gets it again; so a block freed while kernels that use
// it are still queued can be reused at once: the next user's work is queued
// on the same stream, after them. (As in PyTorch: a tensor that work on
// another stream also uses must be synchronized with before it is freed.
// A stream of one's own that allocated must be passed to release_stream()
// before it is destroyed; a cuda::Stream does so itself.)
class CachingAllocator {
public:
    struct Stats {
        std::int64_t device_mallocs = 0;  // cudaMalloc calls
        std::int64_t device_frees = 0;    // cudaFree calls (empty_cache only)
        std::int64_t requests = 0;        // allocate() calls
        std::int64_t cache_hits = 0;      // requests served from the free lists
        std::int64_t releases = 0;        // free() calls (blocks returned to the free lists)
        std::size_t bytes_in_use = 0;
        std::size_t bytes_cached = 0;     // in the free lists
    };
    // What the calling thread alone has done (Graph::capture compares these,
    // so that other threads' allocations during a capture do not count).
    using ThreadStats = detail::AllocatorThreadStats;

    static CachingAllocator& instance() {
        // Never destroyed: static tensors may be freed after it would be.
        static CachingAllocator* a = new CachingAllocator();
        return *a;
    }

    // Small blocks are rounded to 512 bytes, large ones to 2 MiB, so that
    // batches of slightly different sizes share blocks.
    static std::size_t round_size(std::size_t bytes) {
        constexpr std::size_t kSmall = 512, kLarge = std::size_t(2) << 20, kLargeFrom = std::size_t(1) << 20;
        if (bytes == 0) bytes = 1;
        const std::size_t q = bytes < kLargeFrom ? kSmall : kLarge;
        return (bytes + q - 1) / q * q;
    }

    // A block of at least `bytes` on `device` for work on the current stream
    // (a StreamGuard's, else the device's library stream).
    void* allocate(std::size_t bytes, int device) { return allocate(bytes, device, current_stream(device)); }
    // The same for work on `stream`: the block returns to that stream's free list.
    void* allocate(std::size_t bytes, int device, cudaStream_t stream) {
        const std::size_t size = round_size(bytes);
        std::lock_guard<std::mutex> lock(mu_);
        ++stats_.requests;
        auto& free_list = free_[Key{device, size, stream}];
        void* p = nullptr;
        if (!free_list.empty()) {
            p = free_list.back();
            free_list.pop_back();
            ++stats_.cache_hits;
            stats_.bytes_cached -= size;
        } else {
            int prev = 0;
            CUMULUS_CUDA_CHECK(cudaGetDevice(&prev));
            if (prev != device) CUMULUS_CUDA_CHECK(cudaSetDevice(device));
            cudaError_t e = cudaMalloc(&p, size);
            if (e == cudaErrorMemoryAllocation) {
                // Give the cached blocks back and try once more.
                (void)cudaGetLastError();
                release_cached_locked(device);
                e = cudaMalloc(&p, size);
            }
            if (prev != device) CUMULUS_CUDA_CHECK_PRINT(cudaSetDevice(prev));
            if (e != cudaSuccess) {
                (void)cudaGetLastError();
                CUMULUS_FAIL("CUDA allocation of ", bytes, " bytes on cuda:", device, " failed: ",
                             cudaGetErrorString(e), " (", stats_.bytes_in_use, " bytes in use)");
            }
            ++stats_.device_mallocs;
            ++detail::allocator_thread_stats.device_mallocs;
        }
        live_[p] = Block{size, device, stream, ++next_id_};
        stats_.bytes_in_use += size;
#ifdef CUMULUS_CUDA_EMULATION
        cuemuSetUsable(stream, p, bytes, size);  // tests/emu: past `bytes` is out of bounds
#endif
        return p;
    }

    void free(void* p) noexcept {
        if (p == nullptr) return;
        std::lock_guard<std::mutex> lock(mu_);
        auto it = live_.find(p);
        if (it == live_.end()) {
            std::fprintf(stderr, "cumulus: CachingAllocator::free of an unknown pointer %p\n", p);
            return;
        }
        const Block b = it->second;
        live_.erase(it);
        ++stats_.releases;
        ++detail::allocator_thread_stats.releases;
        stats_.bytes_in_use -= b.size;
        stats_.bytes_cached += b.size;
        free_[Key{b.device, b.size, b.stream}].push_back(p);
#ifdef CUMULUS_CUDA_EMULATION
        cuemuSetUsable(b.stream, p, 0, b.size);  // tests/emu: a cached block is out of bounds
#endif
    }

    // Call before destroying a stream that allocated device memory (its
    // handle may be reused by a stream created later, which must not inherit
    // blocks that the old one's queued work still uses): waits for the
    // stream's work, then gives its cached blocks, and the live blocks it
    // allocated, to the device's library stream.
    void release_stream(cudaStream_t stream) {
        CUMULUS_CUDA_CHECK(cudaStreamSynchronize(stream));
        std::lock_guard<std::mutex> lock(mu_);
        for (auto it = free_.begin(); it != free_.end();) {
            if (it->first.stream != stream || library_stream(it->first.device) == stream) {
                ++it;
                continue;
            }
            const Key to{it->first.device, it->first.size, library_stream(it->first.device)};
            auto& dst = free_[to];  // std::map: inserting keeps `it` valid
            dst.insert(dst.end(), it->second.begin(), it->second.end());
            it = free_.erase(it);
        }
        for (auto& [p, b] : live_)
            if (b.stream == stream) b.stream = library_stream(b.device);
    }

    // Returns every cached block of `device` (all devices when -1) to the driver.
    void empty_cache(int device = -1) {
        std::lock_guard<std::mutex> lock(mu_);
        release_cached_locked(device);
    }

    Stats stats() const {
        std::lock_guard<std::mutex> lock(mu_);
        return stats_;
    }
    // The calling thread's cudaMalloc calls and frees, since it started.
    static ThreadStats this_thread_stats() { return detail::allocator_thread_stats; }

    // Identity of a live block: its id changes when the block is freed and
    // handed out again. Graph replay uses it to tell that the memory a graph
    // was captured with is still owned by the same tensors.
    std::uint64_t live_id(const void* p) const {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = live_.find(const_cast<void*>(p));
        return it == live_.end() ? 0 : it->second.id;
    }
    // Every live block as (pointer, id).
    std::vector<std::pair<void*, std::uint64_t>> live_blocks() const {
        std::lock_guard<std::mutex> lock(mu_);
        std::vector<std::pair<void*, std::uint64_t>> v;
        v.reserve(live_.size());
        for (const auto& [p, b] : live_) v.emplace_back(p, b.id);
        return v;
    }

private:
    struct Block {
        std::size_t size;
        int device;
        cudaStream_t stream;  // the stream it was allocated on, whose free list it returns to
        std::uint64_t id;
    };
    struct Key {
        int device;
        std::size_t size;
        cudaStream_t stream;
        bool operator<(const Key& o) const {
            if (device != o.device) return device < o.device;
            if (size != o.size) return size < o.size;
            return std::less<cudaStream_t>()(stream, o.stream);
        }
    };

    void release_cached_locked(int device) {
        int prev = 0;
        CUMULUS_CUDA_CHECK_PRINT(cudaGetDevice(&prev));
        for (auto& [key, list] : free_) {
            if (device >= 0 && key.device != device) continue;
            if (list.empty()) continue;
            CUMULUS_CUDA_CHECK_PRINT(cudaSetDevice(key.device));
            // Queued kernels may still use the blocks. A device in error (a
            // kernel fault is sticky) cannot say that they are done: the
            // blocks stay cached rather than be freed under a kernel.
            if (!CUMULUS_CUDA_CHECK_PRINT(cudaDeviceSynchronize())) continue;
            for (void* p : list) {
                if (CUMULUS_CUDA_CHECK_PRINT(cudaFree(p))) ++stats_.device_frees;
                stats_.bytes_cached -= key.size;  // out of the cache either way
            }
            list.clear();
        }
        CUMULUS_CUDA_CHECK_PRINT(cudaSetDevice(prev));
    }

    mutable std::mutex mu_;
    std::map<Key, std::vector<void*>> free_;
    std::unordered_map<void*, Block> live_;
    std::uint64_t next_id_ = 0;
    Stats stats_;
};

// A non-blocking stream of one's own on the current device, destroyed with
// the object: its work is waited for and its blocks handed to the device's
// library stream first (CachingAllocator::release_stream), so that a stream
// created later with the same handle inherits nothing.
class Stream {
public:
    Stream() {
        CUMULUS_CUDA_CHECK(cudaGetDevice(&device_));
        CUMULUS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    }
    ~Stream() { destroy(); }
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    Stream(Stream&& o) noexcept : stream_(std::exchange(o.stream_, nullptr)), device_(o.device_) {}
    Stream& operator=(Stream&& o) noexcept {
        if (this != &o) {
            destroy();
            stream_ = std::exchange(o.stream_, nullptr);
            device_ = o.device_;
        }
        return *this;
    }

    // A moved-from Stream holds no stream; CUDA would take its nullptr for
    // the legacy default stream, so using it throws.
    cudaStream_t get() const {
        CUMULUS_CHECK(stream_ != nullptr, "cuda::Stream: used after it was moved from");
        return stream_;
    }
    operator cudaStream_t() const { return get(); }
    bool valid() const { return stream_ != nullptr; }
    int device() const { return device_; }
    void synchronize() const { CUMULUS_CUDA_CHECK(cudaStreamSynchronize(get())); }

private:
    // When the blocks cannot be handed on (the wait failed), the stream is
    // left alive rather than destroyed: a new stream must not get its handle,
    // and with it blocks that queued work may still use.
    void destroy() noexcept {
        if (!stream_) return;
        bool released = false;
        try {
            CachingAllocator::instance().release_stream(stream_);
            released = true;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "cumulus: a cuda::Stream's blocks could not be handed on (%s); the stream is "
                         "left undestroyed\n", e.what());
        }
        if (released) CUMULUS_CUDA_CHECK_PRINT(cudaStreamDestroy(stream_));
        stream_ = nullptr;
    }

    cudaStream_t stream_ = nullptr;
    int device_ = 0;
};

// Scratch device memory for the length of one launcher call (partials and
// the like) whose work runs on `stream`; from the cache, so free in steady
// state.
template <typename T>
class Scratch {
public:
    explicit Scratch(std::size_t count, cudaStream_t stream = current_stream()) : count_(count) {
        if (count_ > 0)
            ptr_ = static_cast<T*>(
                CachingAllocator::instance().allocate(count_ * sizeof(T), current_device_index(), stream));
    }
    ~Scratch() { CachingAllocator::instance().free(ptr_); }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    T* get() const { return ptr_; }

private:
    std::size_t count_;
    T* ptr_ = nullptr;
};

// ---------------------------------------------------------------- memory ops for Tensor

namespace detail {

inline void* tensor_allocate(std::size_t bytes, Device d) {
    check_device(d);
    return CachingAllocator::instance().allocate(bytes, d.index);
}

inline void tensor_free(void* p, Device) noexcept { CachingAllocator::instance().free(p); }

// Copies on the current stream; a copy that involves the host waits for it,
// so the host memory can be used (or freed) as soon as the call returns.
inline void tensor_copy(void* dst, Device dst_dev, const void* src, Device src_dev, std::size_t bytes) {
    if (bytes == 0) return;
    const Device dev = dst_dev.is_cuda() ? dst_dev : src_dev;
    check_device(dev);
    DeviceGuard guard(dev);
    cudaStream_t s = current_stream();
    cudaMemcpyKind kind = dst_dev.is_cpu()   ? cudaMemcpyDeviceToHost
                          : src_dev.is_cpu() ? cudaMemcpyHostToDevice
                                             : cudaMemcpyDeviceToDevice;
    if (kind == cudaMemcpyDeviceToDevice && dst_dev.index != src_dev.index) {
        {  // the source's writers run on its own device's stream: let them finish first
            DeviceGuard on_src(src_dev);
            CUMULUS_CUDA_CHECK(cudaStreamSynchronize(current_stream()));
        }
        CUMULUS_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_dev.index, src, src_dev.index, bytes, s));
        CUMULUS_CUDA_CHECK(cudaStreamSynchronize(s));
        return;
    }
    CUMULUS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, s));
    if (kind != cudaMemcpyDeviceToDevice) CUMULUS_CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace detail

// Makes Tensor<T> on CUDA devices work (allocation, free, copies). Idempotent;
// <cumulus/cuda.hpp> and every kernel header call it during static init.
inline bool register_memory_ops() {
    DeviceMemoryOps& ops = cuda_memory_ops();
    ops.allocate = &detail::tensor_allocate;
    ops.free = &detail::tensor_free;
    ops.copy = &detail::tensor_copy;
    return true;
}

namespace detail {
inline const bool memory_ops_registered = register_memory_ops();
}  // namespace detail

// ---------------------------------------------------------------- launch helpers

inline constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements: enough to fill the device,
// never more than the elements need (at least 1).
inline unsigned grid_for(std::int64_t n, int threads = kThreads) {
    const std::int64_t need = (n + threads - 1) / threads;
    const std::int64_t cap = std::int64_t(device_properties().multiProcessorCount) * 32;
    const std::int64_t g = need < cap ? need : cap;
    return static_cast<unsigned>(g < 1 ? 1 : g);
}

inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

}  // namespace cumulus::cuda
