// The CUDA runtime API as the CPU emulation provides it (see cuemu.hpp):
// the functions kernels/cumulus/cuda/ and tests/cuda/ call, with CUDA's
// signatures and error codes.
#pragma once

#include <chrono>

#include "cuemu.hpp"

inline const char* cudaGetErrorName(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "cudaSuccess";
        case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
        case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
        case cudaErrorInitializationError: return "cudaErrorInitializationError";
        case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
        case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
        case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
        case cudaErrorNoDevice: return "cudaErrorNoDevice";
        case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
        case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
        case cudaErrorIllegalState: return "cudaErrorIllegalState";
        case cudaErrorNotReady: return "cudaErrorNotReady";
        case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
        case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
        case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
        case cudaErrorStreamCaptureUnmatched: return "cudaErrorStreamCaptureUnmatched";
        case cudaErrorStreamCaptureWrongThread: return "cudaErrorStreamCaptureWrongThread";
        default: return "cudaErrorUnknown";
    }
}
inline const char* cudaGetErrorString(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "no error";
        case cudaErrorInvalidValue: return "invalid argument";
        case cudaErrorMemoryAllocation: return "out of memory";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
        case cudaErrorInvalidDevicePointer: return "invalid device pointer";
        case cudaErrorInvalidDevice: return "invalid device ordinal";
        case cudaErrorInvalidResourceHandle: return "invalid resource handle";
        case cudaErrorNotReady: return "device not ready";
        case cudaErrorLaunchFailure: return "unspecified launch failure (cuemu: see the message above)";
        case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
        case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
        case cudaErrorStreamCaptureWrongThread:
            return "attempt to terminate a thread-local capture sequence from another thread";
        default: return "unknown error (cuemu)";
    }
}
// A kernel fault is sticky: reported by every call until cudaDeviceReset.
inline cudaError_t cudaGetLastError() {
    if (const cudaError_t f = ::cuemu::device_fault(); f != cudaSuccess) return f;
    const cudaError_t e = ::cuemu::last_error();
    ::cuemu::last_error() = cudaSuccess;
    return e;
}
inline cudaError_t cudaPeekAtLastError() {
    if (const cudaError_t f = ::cuemu::device_fault(); f != cudaSuccess) return f;
    return ::cuemu::last_error();
}

// ---------------------------------------------------------------- devices

inline cudaError_t cudaGetDeviceCount(int* n) {
    if (!n) return ::cuemu::fail(cudaErrorInvalidValue);
    *n = 1;
    return cudaSuccess;
}
namespace cuemu {
inline int& current_device() {
    static thread_local int d = 0;
    return d;
}
}  // namespace cuemu
inline cudaError_t cudaSetDevice(int d) {
    if (d != 0) return ::cuemu::fail(cudaErrorInvalidDevice);
    ::cuemu::current_device() = d;
    return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* d) {
    if (!d) return ::cuemu::fail(cudaErrorInvalidValue);
    *d = ::cuemu::current_device();
    return cudaSuccess;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
    if (!p) return ::cuemu::fail(cudaErrorInvalidValue);
    if (d != 0) return ::cuemu::fail(cudaErrorInvalidDevice);
    *p = cudaDeviceProp{};
    std::snprintf(p->name, sizeof p->name, "cuemu (CPU emulation)");
    p->totalGlobalMem = std::size_t(16) << 30;
    p->sharedMemPerBlock = 48 * 1024;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = 1024, p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 2147483647, p->maxGridSize[1] = 65535, p->maxGridSize[2] = 65535;
    p->clockRate = 1980000;
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 132;
    p->l2CacheSize = 50 * 1024 * 1024;
    p->maxThreadsPerMultiProcessor = 2048;
    p->sharedMemPerMultiprocessor = 228 * 1024;
    p->sharedMemPerBlockOptin = 227 * 1024;
    p->memoryBusWidth = 5120;
    return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() {
    if (::cuemu::capture_forbids_unsafe_calls()) return ::cuemu::unsafe_call_during_capture();
    ::cuemu::flush_all();
    return ::cuemu::device_fault();
}
// Here only the end of a sticky fault: the queued work is dropped, the
// fault and the last error cleared (allocations stay, unlike on a GPU).
inline cudaError_t cudaDeviceReset() {
    std::lock_guard<std::recursive_mutex> lock(::cuemu::work_lock());
    ::cuemu::legacy_stream().pending.clear();
    for (::cuemu::Stream* st : ::cuemu::live_stream_list()) st->pending.clear();
    ::cuemu::sticky_fault() = cudaSuccess;
    ::cuemu::last_error() = cudaSuccess;
    return cudaSuccess;
}

// ---------------------------------------------------------------- memory

// Not CUDA: a caching allocator (kernels/cumulus/cuda/runtime.cuh) tells
// the emulation that only the first `usable` bytes of its `bytes`-byte block
// at p are in use (0 while the block waits in its cache); cudaMalloc says
// the same of its own rounding. Under
// AddressSanitizer the rest is poisoned, so that a kernel or copy that
// reads or writes past the end of a tensor, or into a freed one, is
// reported where it happens, as compute-sanitizer's memcheck would; the
// cache's rounding of sizes would hide it otherwise. Without ASan, nothing.
inline void cuemuSetUsable([[maybe_unused]] void* p, [[maybe_unused]] std::size_t usable,
                           [[maybe_unused]] std::size_t bytes) {
#ifdef CUEMU_ASAN
    if (!p || usable > bytes) return;
    ASAN_UNPOISON_MEMORY_REGION(p, usable);
    ASAN_POISON_MEMORY_REGION(static_cast<char*>(p) + usable, bytes - usable);
#endif
}
// The same, in the order of the work on stream s (a caching allocator's
// blocks are stream-ordered: one freed while work queued on its stream still
// uses it is handed out again only to later work on that stream). Not part
// of a capture: applied when the stream's earlier work has run.
inline void cuemuSetUsable(cudaStream_t s, void* p, std::size_t usable, std::size_t bytes) {
#ifdef CUEMU_ASAN
    ::cuemu::queue_bookkeeping(s, [p, usable, bytes]() { cuemuSetUsable(p, usable, bytes); });
#else
    (void)s, (void)p, (void)usable, (void)bytes;
#endif
}

inline cudaError_t cudaMalloc(void** p, std::size_t n) {
    if (!p) return ::cuemu::fail(cudaErrorInvalidValue);
    if (::cuemu::capture_forbids_unsafe_calls()) return ::cuemu::unsafe_call_during_capture();
    if (cudaError_t f = ::cuemu::device_fault(); f != cudaSuccess) return f;
    *p = nullptr;
    if (n == 0) return cudaSuccess;
    const std::size_t rounded = (n + 255) / 256 * 256;
    void* q = std::aligned_alloc(256, rounded);
    if (!q) return ::cuemu::fail(cudaErrorMemoryAllocation);
    std::memset(q, 0xff, rounded);  // NaN in every float: unwritten outputs show
    cuemuSetUsable(q, n, rounded);  // past the end, for AddressSanitizer
    auto& m = ::cuemu::Memory::get();
    {
        std::lock_guard<std::mutex> lock(m.mu);
        m.blocks[reinterpret_cast<std::uintptr_t>(q)] = n;
        m.in_use += n;
    }
    *p = q;
    return cudaSuccess;
}
template <typename T>
cudaError_t cudaMalloc(T** p, std::size_t n) {
    return cudaMalloc(reinterpret_cast<void**>(p), n);
}
inline cudaError_t cudaFree(void* p) {
    if (::cuemu::capture_forbids_unsafe_calls()) return ::cuemu::unsafe_call_during_capture();
    if (!p) return cudaSuccess;
    ::cuemu::flush_all();  // cudaFree synchronizes with the device's work
    if (cudaError_t f = ::cuemu::device_fault(); f != cudaSuccess) return f;
    auto& m = ::cuemu::Memory::get();
    {
        std::lock_guard<std::mutex> lock(m.mu);
        auto it = m.blocks.find(reinterpret_cast<std::uintptr_t>(p));
        if (it == m.blocks.end()) return ::cuemu::fail(cudaErrorInvalidDevicePointer);
        m.in_use -= it->second;
        m.blocks.erase(it);
    }
    std::free(p);
    return cudaSuccess;
}

namespace cuemu {
// Checks a copy's pointers against its kind, as the driver does for device memory.
inline cudaError_t check_copy(void* dst, const void* src, std::size_t n, cudaMemcpyKind kind) {
    if (n == 0) return cudaSuccess;
    if (!dst || !src) return cudaErrorInvalidValue;
    auto& m = Memory::get();
    const bool dst_dev = m.contains(dst, n), src_dev = m.contains(src, n);
    switch (kind) {
        case cudaMemcpyHostToDevice: return dst_dev && !m.is_device(src) ? cudaSuccess : cudaErrorInvalidValue;
        case cudaMemcpyDeviceToHost: return src_dev && !m.is_device(dst) ? cudaSuccess : cudaErrorInvalidValue;
        case cudaMemcpyDeviceToDevice: return dst_dev && src_dev ? cudaSuccess : cudaErrorInvalidValue;
        case cudaMemcpyHostToHost: return cudaSuccess;
        case cudaMemcpyDefault: return cudaSuccess;
    }
    return cudaErrorInvalidMemcpyDirection;
}
}  // namespace cuemu

// From host memory the source is taken at the call (the driver stages
// pageable memory); into host memory the copy is done when the call returns
// (synchronous for pageable memory on a GPU too), after the stream's earlier
// work. Device to device: queued. (cudaMemcpy too, but for the legacy
// stream: from host memory or device to device it returns before the copy
// is done, as CUDA's "API synchronization behavior" allows.)
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t n, cudaMemcpyKind kind,
                                   cudaStream_t s = nullptr) {
    if (cudaError_t e = ::cuemu::check_copy(dst, src, n, kind); e != cudaSuccess) return ::cuemu::fail(e);
    if (n == 0) return cudaSuccess;
    auto& m = ::cuemu::Memory::get();
    const bool from_host = !m.is_device(src), to_host = !m.is_device(dst);
    cudaError_t e = cudaSuccess;
    const bool capturing = ::cuemu::is_capturing(s);
    if (from_host && !capturing) {
        auto staged = std::make_shared<std::vector<unsigned char>>(static_cast<const unsigned char*>(src),
                                                                   static_cast<const unsigned char*>(src) + n);
        e = ::cuemu::submit(s, [dst, staged]() { std::memcpy(dst, staged->data(), staged->size()); });
    } else {
        e = ::cuemu::submit(s, [dst, src, n]() { std::memmove(dst, src, n); });
    }
    if (e == cudaSuccess && to_host && !capturing) {
        e = ::cuemu::synchronize(::cuemu::stream_of(s));
    }
    return e;
}
inline cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t n, cudaMemcpyKind kind) {
    if (::cuemu::capture_forbids_unsafe_calls()) return ::cuemu::unsafe_call_during_capture();
    return cudaMemcpyAsync(dst, src, n, kind, nullptr);  // on the legacy stream
}
inline cudaError_t cudaMemcpyPeerAsync(void* dst, int, const void* src, int, std::size_t n, cudaStream_t s = nullptr) {
    return cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, s);
}
inline cudaError_t cudaMemsetAsync(void* p, int value, std::size_t n, cudaStream_t s = nullptr) {
    if (n == 0) return cudaSuccess;
    if (!::cuemu::Memory::get().contains(p, n)) return ::cuemu::fail(cudaErrorInvalidValue);
    return ::cuemu::submit(s, [p, value, n]() { std::memset(p, value, n); });
}
inline cudaError_t cudaMemset(void* p, int value, std::size_t n) {
    if (::cuemu::capture_forbids_unsafe_calls()) return ::cuemu::unsafe_call_during_capture();
    return cudaMemsetAsync(p, value, n, nullptr);
}

// ---------------------------------------------------------------- streams

inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
    if (!s) return ::cuemu::fail(cudaErrorInvalidValue);
    *s = new ::cuemu::Stream();
    (*s)->non_blocking = (flags & cudaStreamNonBlocking) != 0;
    auto& live = ::cuemu::live_streams();
    std::lock_guard<std::mutex> lock(live.mu);
    live.streams.push_back(*s);
    return cudaSuccess;
}
inline cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }
inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
    if (!s) return ::cuemu::fail(cudaErrorInvalidResourceHandle);
    // The driver finishes the stream's work after the call returns; here it runs now.
    std::lock_guard<std::recursive_mutex> work(::cuemu::work_lock());
    ::cuemu::flush_stream(*s);
    {
        auto& live = ::cuemu::live_streams();
        std::lock_guard<std::mutex> lock(live.mu);
        live.streams.erase(std::remove(live.streams.begin(), live.streams.end(), s), live.streams.end());
    }
    delete s;
    return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    if (::cuemu::is_capturing(s) || ::cuemu::capture_forbids_unsafe_calls())
        return ::cuemu::unsafe_call_during_capture(&::cuemu::stream_of(s));
    return ::cuemu::synchronize(::cuemu::stream_of(s));
}
inline cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
    if (!s) return ::cuemu::fail(cudaErrorStreamCaptureUnsupported);  // the legacy stream cannot capture
    // work_lock first, as submit: it reads `capture` under it.
    const std::lock_guard<std::recursive_mutex> work(::cuemu::work_lock());
    if (cudaError_t f = ::cuemu::device_fault(); f != cudaSuccess) return f;
    if (s->capture) return ::cuemu::fail(cudaErrorIllegalState);
    const std::lock_guard<std::mutex> lock(::cuemu::capture_lock());
    s->capture = new ::cuemu::Graph();
    s->invalidated = false;
    s->mode = mode;
    s->owner = std::this_thread::get_id();
    ::cuemu::capturing().push_back(s);
    return cudaSuccess;
}
inline cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g) {
    if (!s || !s->capture) return ::cuemu::fail(cudaErrorInvalidValue);
    // Only the thread that began a global or thread-local capture may end it.
    if (s->mode != cudaStreamCaptureModeRelaxed && s->owner != std::this_thread::get_id())
        return ::cuemu::fail(cudaErrorStreamCaptureWrongThread);
    const std::lock_guard<std::recursive_mutex> work(::cuemu::work_lock());
    bool invalidated = false;
    {
        const std::lock_guard<std::mutex> lock(::cuemu::capture_lock());
        auto& v = ::cuemu::capturing();
        v.erase(std::remove(v.begin(), v.end(), s), v.end());
        invalidated = s->invalidated;
    }
    ::cuemu::Graph* graph = s->capture;
    s->capture = nullptr;
    if (invalidated) {
        delete graph;
        if (g) *g = nullptr;
        return ::cuemu::fail(cudaErrorStreamCaptureInvalidated);
    }
    if (!g) {
        delete graph;
        return ::cuemu::fail(cudaErrorInvalidValue);
    }
    *g = graph;
    return cudaSuccess;
}

// ---------------------------------------------------------------- events

struct cuemu_event {
    // What a queued record writes: shared with it, so that the event may be
    // destroyed before its record has run, as CUDA allows.
    struct State {
        std::chrono::steady_clock::time_point at{};
        bool recorded = false;  // a record of it has run
        int queued = 0;         // records queued, not yet run
    };
    std::shared_ptr<State> state = std::make_shared<State>();
    ::cuemu::Stream* stream = nullptr;  // where it was last recorded (it may be destroyed since)
};
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {  // the flags change nothing here
    if (!e) return ::cuemu::fail(cudaErrorInvalidValue);
    *e = new cuemu_event();
    return cudaSuccess;
}
inline cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, 0); }
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
    if (!e) return ::cuemu::fail(cudaErrorInvalidResourceHandle);
    std::lock_guard<std::recursive_mutex> work(::cuemu::work_lock());
    delete e;
    return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr) {
    if (!e) return ::cuemu::fail(cudaErrorInvalidResourceHandle);
    std::lock_guard<std::recursive_mutex> work(::cuemu::work_lock());
    // On a capturing stream a plain record only orders streams (a graph node
    // takes cudaEventRecordExternal), which in-order execution here gives:
    // nothing is recorded.
    if (s && s->capture) return cudaSuccess;
    e->stream = &::cuemu::stream_of(s);
    auto st = e->state;
    ++st->queued;
    const cudaError_t err = ::cuemu::submit(s, [st]() {
        st->at = std::chrono::steady_clock::now();
        st->recorded = true;
        --st->queued;
    });
    if (err != cudaSuccess) --st->queued;
    return err;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    if (!e) return ::cuemu::fail(cudaErrorInvalidResourceHandle);
    if (::cuemu::capture_forbids_unsafe_calls()) return ::cuemu::unsafe_call_during_capture();
    std::lock_guard<std::recursive_mutex> work(::cuemu::work_lock());
    // An event never recorded is complete, as on a GPU; so is one whose stream
    // is gone (cudaStreamDestroy ran its work).
    ::cuemu::Stream* st = e->stream;
    if (st && st != &::cuemu::legacy_stream()) {
        const auto live = ::cuemu::live_stream_list();
        if (std::find(live.begin(), live.end(), st) == live.end()) st = nullptr;
    }
    return st ? ::cuemu::synchronize(*st) : ::cuemu::device_fault();
}
// cudaErrorNotReady while a record of the event is queued (not kept as
// the last error: it is not one); an event never recorded is complete.
inline cudaError_t cudaEventQuery(cudaEvent_t e) {
    if (!e) return ::cuemu::fail(cudaErrorInvalidResourceHandle);
    std::lock_guard<std::recursive_mutex> work(::cuemu::work_lock());
    if (const cudaError_t f = ::cuemu::device_fault(); f != cudaSuccess) return f;
    return e->state->queued > 0 ? cudaErrorNotReady : cudaSuccess;
}
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
    if (!ms) return ::cuemu::fail(cudaErrorInvalidValue);
    if (!start || !end) return ::cuemu::fail(cudaErrorInvalidResourceHandle);
    std::lock_guard<std::recursive_mutex> work(::cuemu::work_lock());
    if (start->state->queued > 0 || end->state->queued > 0) return ::cuemu::fail(cudaErrorNotReady);
    if (!start->state->recorded || !end->state->recorded) return ::cuemu::fail(cudaErrorInvalidResourceHandle);
    *ms = std::chrono::duration<float, std::milli>(end->state->at - start->state->at).count();
    return cudaSuccess;
}

// ---------------------------------------------------------------- graphs

inline cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t g, unsigned long long = 0) {
    if (!exec || !g) return ::cuemu::fail(cudaErrorInvalidValue);
    *exec = new ::cuemu::GraphExec{g->ops};
    return cudaSuccess;
}
inline cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    delete g;
    return cudaSuccess;
}
inline cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
    delete e;
    return cudaSuccess;
}
inline cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s) {
    if (!e) return ::cuemu::fail(cudaErrorInvalidValue);
    for (const auto& op : e->ops)
        if (cudaError_t err = ::cuemu::submit(s, op); err != cudaSuccess) return err;
    return cudaSuccess;
}
