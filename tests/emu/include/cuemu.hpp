// cuemu: the CUDA backend's kernels run on the CPU, for testing them on a
// machine without a GPU. Not a simulator of the hardware: a functional model
// of the parts of CUDA that kernels/cumulus/cuda/ uses, strict where a GPU is
// strict, so that the CUDA tests (tests/cuda/*.cu) can run and fail here.
//
// - Kernels: every block runs in turn; its threads are fibers on
//   one OS thread, switched at __syncthreads() / __syncwarp() / shuffles.
//   Between barriers the threads run in turn, thread 0 first, or the last
//   first with CUEMU_THREAD_ORDER=reverse (blocks too), so that a race
//   between two threads fails in one order or the other.
//   A barrier that not every live thread of the block (or warp) reaches is a
//   deadlock, reported with the kernel's name. A kernel that has never
//   reached a barrier runs its threads as plain calls (fast path); should it
//   reach one later, the launch fails loudly.
// - Launches are checked as CUDA checks them: 0 blocks or threads, more than
//   1024 threads, grid y / z over 65535 give cudaErrorInvalidConfiguration.
// - __shared__ memory: in the kernels and tests that tests/emu/rewrite.py
//   rewrites, one heap block per declaration and OS thread (shared_array:
//   AddressSanitizer sees its bounds), filled with NaN bytes for each block;
//   elsewhere (cuemu_test) a static thread_local array, where a block finds
//   what the previous block left (as undefined as on a GPU).
// - Device memory: cudaMalloc'd host memory, filled with NaN bytes. Pointers
//   of every copy are checked against the allocations (cudaErrorInvalidValue
//   for a device pointer that is none).
// - Streams queue their work, in order, and run it only when CUDA says it
//   must be done: cudaStreamSynchronize, cudaEventSynchronize (the event's
//   stream), cudaDeviceSynchronize and cudaFree (every stream), a
//   copy into host memory (its stream, before it copies: into pageable memory
//   that is synchronous on a GPU too), and the legacy stream's implicit
//   synchronization: work for the legacy stream runs after what the
//   blocking streams (cudaStreamCreate) queued, work for a blocking stream
//   after what the legacy stream queued, and a non-blocking stream
//   (cudaStreamNonBlocking, as cumulus' own) waits for neither. So a host
//   read that no synchronization orders after the work that writes it sees
//   the NaN bytes of fresh memory, or stale data, as it may on a GPU, and
//   fails the test. A host-to-device copy takes its source at the call (the
//   driver stages pageable memory). A kernel fault shows at the next
//   synchronization (cudaErrorLaunchFailure) and is sticky, as on a GPU,
//   until cudaDeviceReset. CUEMU_STREAMS=immediate runs all work at the
//   call instead, with faults reported at the launch and not sticky (the
//   emulation as it was; for debugging).
//   Stream capture records every launch, copy and memset (with its arguments
//   as they were at capture) into a graph that cudaGraphLaunch replays;
//   cudaMalloc, cudaFree, a synchronization and work for the legacy stream
//   during capture fail with cudaErrorStreamCaptureUnsupported and invalidate
//   the capture, as on a GPU: on every thread for a global capture, on the
//   capturing thread for a thread-local one (other threads may allocate
//   meanwhile).
// - Events (for the benchmarks' timing) hold the host time at which their
//   stream's work reached them, so the time between two is the time the
//   work between them took on the CPU. cudaEventSynchronize runs the
//   event's stream's whole queue, and synchronizing a blocking stream runs
//   the legacy stream's queue first: where that is more than CUDA would run,
//   a missing synchronization can go unseen.
// - One device, "cuemu", sm_90, 132 multiprocessors.
#pragma once

#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

// ---------------------------------------------------------------- keywords

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static thread_local
#define __constant__ static

// ---------------------------------------------------------------- vector types

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return {x, y, z}; }
};
struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(16) int4 {
    int x, y, z, w;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
struct alignas(16) double2 {
    double x, y;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

// ---------------------------------------------------------------- runtime types

enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorIllegalState = 401,
    cudaErrorNotReady = 600,
    cudaErrorLaunchFailure = 719,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorStreamCaptureUnmatched = 903,
    cudaErrorStreamCaptureWrongThread = 908,
    cudaErrorUnknown = 999,
};
using cudaError = cudaError_t;
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2,
};
constexpr unsigned cudaStreamDefault = 0, cudaStreamNonBlocking = 1;

namespace cuemu {
struct Stream;
struct Graph;
struct GraphExec;
}  // namespace cuemu
using cudaStream_t = cuemu::Stream*;
using cudaGraph_t = cuemu::Graph*;
using cudaGraphExec_t = cuemu::GraphExec*;
struct cuemu_event;
using cudaEvent_t = cuemu_event*;

struct cudaDeviceProp {
    char name[256];
    std::size_t totalGlobalMem;
    std::size_t sharedMemPerBlock;
    int regsPerBlock;
    int warpSize;
    int maxThreadsPerBlock;
    int maxThreadsDim[3];
    int maxGridSize[3];
    int clockRate;
    int major;
    int minor;
    int multiProcessorCount;
    int l2CacheSize;
    int maxThreadsPerMultiProcessor;
    std::size_t sharedMemPerMultiprocessor;
    std::size_t sharedMemPerBlockOptin;
    int memoryBusWidth;
};

// ---------------------------------------------------------------- fibers' context switch

// x86-64: a switch that saves the callee-saved registers, MXCSR and the x87
// control word on the old stack (no system call, unlike swapcontext, which
// saves the signal mask); elsewhere ucontext.
#if defined(__x86_64__) && !defined(CUEMU_USE_UCONTEXT)
extern "C" void cuemu_switch(void** save_sp, void* new_sp);
extern "C" void cuemu_fiber_start();
asm(R"(
    .text
    .weak cuemu_switch
    .type cuemu_switch, @function
cuemu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size cuemu_switch, .-cuemu_switch
    .weak cuemu_fiber_start
    .type cuemu_fiber_start, @function
cuemu_fiber_start:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size cuemu_fiber_start, .-cuemu_fiber_start
)");
namespace cuemu {
struct Context {
    void* sp = nullptr;
    const void* stack_bottom = nullptr;  // for AddressSanitizer (see switch_context)
    std::size_t stack_bytes = 0;
};
// Prepares ctx to run entry(arg) on the stack [stack, stack + bytes) when switched to.
inline void make_context(Context& ctx, char* stack, std::size_t bytes, void (*entry)(void*), void* arg) {
    auto top = (reinterpret_cast<std::uintptr_t>(stack + bytes) & ~std::uintptr_t(15));
    auto* sp = reinterpret_cast<std::uint64_t*>(top);
    // cuemu_switch's ret pops this, leaving rsp = top (16-byte aligned) in
    // cuemu_fiber_start, so that its call enters entry() with rsp + 8
    // aligned, as the ABI promises every function.
    *--sp = reinterpret_cast<std::uint64_t>(&cuemu_fiber_start);  // where cuemu_switch returns to
    *--sp = 0;                                                    // rbp
    *--sp = 0;                                                    // rbx
    *--sp = reinterpret_cast<std::uint64_t>(arg);                 // r12
    *--sp = reinterpret_cast<std::uint64_t>(entry);               // r13
    *--sp = 0;                                                    // r14
    *--sp = 0;                                                    // r15
    *--sp = 0x037Full << 32 | 0x1F80ull;                          // MXCSR, x87 control word: the defaults
    ctx.sp = sp;
    ctx.stack_bottom = stack;
    ctx.stack_bytes = bytes;
}
inline void raw_switch(Context& from, Context& to) { cuemu_switch(&from.sp, to.sp); }
}  // namespace cuemu
#else
namespace cuemu {
struct Context {
    ucontext_t uc;
    const void* stack_bottom = nullptr;  // for AddressSanitizer (see switch_context)
    std::size_t stack_bytes = 0;
};
inline void ucontext_entry(unsigned lo, unsigned hi, unsigned elo, unsigned ehi) {
    auto* arg = reinterpret_cast<void*>((std::uintptr_t(hi) << 32) | lo);
    auto* entry = reinterpret_cast<void (*)(void*)>((std::uintptr_t(ehi) << 32) | elo);
    entry(arg);
}
inline void make_context(Context& ctx, char* stack, std::size_t bytes, void (*entry)(void*), void* arg) {
    getcontext(&ctx.uc);
    ctx.uc.uc_stack.ss_sp = stack;
    ctx.uc.uc_stack.ss_size = bytes;
    ctx.uc.uc_link = nullptr;
    const auto a = reinterpret_cast<std::uintptr_t>(arg), e = reinterpret_cast<std::uintptr_t>(entry);
    makecontext(&ctx.uc, reinterpret_cast<void (*)()>(ucontext_entry), 4, unsigned(a), unsigned(a >> 32), unsigned(e),
                unsigned(e >> 32));
    ctx.stack_bottom = stack;
    ctx.stack_bytes = bytes;
}
inline void raw_switch(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
}  // namespace cuemu
#endif

// Under AddressSanitizer the switches are announced to it, as its fiber
// interface asks (sanitizer/common_interface_defs.h), so that it knows
// which stack is in use; a fiber stack is unpoisoned before it is reused.
// The scheduler's stack is the OS thread's: its bounds are what ASan says
// a fiber came from when it first starts (note_fiber_start).
#if defined(__SANITIZE_ADDRESS__)
#define CUEMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CUEMU_ASAN 1
#endif
#endif
#ifdef CUEMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
namespace cuemu {
// Switches from the running context to `to`; `from_ends` when the running
// fiber never resumes (its frames are then forgotten).
inline void switch_context(Context& from, Context& to, bool from_ends = false) {
#ifdef CUEMU_ASAN
    void* fake_stack = nullptr;
    __sanitizer_start_switch_fiber(from_ends ? nullptr : &fake_stack, to.stack_bottom, to.stack_bytes);
    raw_switch(from, to);
    __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#else
    (void)from_ends;
    raw_switch(from, to);
#endif
}
// Called first thing on a new fiber: completes the switch that started it
// and learns the bounds of the stack it came from (the scheduler's).
inline void note_fiber_start([[maybe_unused]] Context& came_from) {
#ifdef CUEMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &came_from.stack_bottom, &came_from.stack_bytes);
#endif
}
// Before a stack is used for a new fiber: frames of a fiber that ended
// without returning (every fiber does) leave poisoned redzones behind.
inline void forget_stack([[maybe_unused]] char* stack, [[maybe_unused]] std::size_t bytes) {
#ifdef CUEMU_ASAN
    ASAN_UNPOISON_MEMORY_REGION(stack, bytes);
#endif
}
}  // namespace cuemu

namespace cuemu {

// ---------------------------------------------------------------- errors

inline cudaError_t& last_error() {
    static thread_local cudaError_t e = cudaSuccess;
    return e;
}
inline cudaError_t fail(cudaError_t e) {
    if (e != cudaSuccess) last_error() = e;
    return e;
}
[[noreturn]] inline void abort_with(const std::string& what) {
    std::fprintf(stderr, "cuemu: %s\n", what.c_str());
    std::fflush(stderr);
    std::abort();
}

// ---------------------------------------------------------------- memory

struct Memory {
    std::mutex mu;
    std::map<std::uintptr_t, std::size_t> blocks;  // start -> size
    std::size_t in_use = 0;

    static Memory& get() {
        static auto* m = new Memory();  // never destroyed: work may be flushed during static destruction
        return *m;
    }
    // Whether [p, p + n) lies inside one allocation.
    bool contains(const void* p, std::size_t n) {
        std::lock_guard<std::mutex> lock(mu);
        const auto a = reinterpret_cast<std::uintptr_t>(p);
        auto it = blocks.upper_bound(a);
        if (it == blocks.begin()) return false;
        --it;
        return a >= it->first && a + n <= it->first + it->second;
    }
    bool is_device(const void* p) { return contains(p, 1); }
};

// ---------------------------------------------------------------- streams and graphs

using Op = std::function<void()>;

struct Graph {
    std::vector<Op> ops;
};
struct GraphExec {
    std::vector<Op> ops;
};
struct Stream {
    bool non_blocking = false;  // cudaStreamNonBlocking: no implicit synchronization with the legacy stream
    std::vector<Op> pending;    // queued, not yet run (see flush)
    Graph* capture = nullptr;   // non-null while capturing
    bool invalidated = false;  // an unsupported call happened during capture
    cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
    std::thread::id owner;  // the thread that began the capture
};

inline Stream& legacy_stream() {
    static auto* s = new Stream();  // never destroyed: work may be flushed during static destruction
    return *s;
}
inline Stream& stream_of(cudaStream_t s) { return s ? *s : legacy_stream(); }
inline std::recursive_mutex& work_lock();
inline bool is_capturing(cudaStream_t s);

// Every stream that is capturing, in any mode, and the lock every use of
// the list and of a listed stream's `invalidated` takes: one thread may
// begin or end a capture while another makes a call that a capture forbids.
inline std::vector<Stream*>& capturing() {
    static auto* v = new std::vector<Stream*>();  // never destroyed, as the locks below
    return *v;
}
inline std::mutex& capture_lock() {
    static auto* m = new std::mutex();
    return *m;
}
// As CUDA's modes: a global capture forbids unsafe calls on every thread, a
// thread-local one only on the thread that began it, a relaxed one nowhere.
inline bool forbids_here(const Stream* s) {
    return s->mode == cudaStreamCaptureModeGlobal ||
           (s->mode == cudaStreamCaptureModeThreadLocal && s->owner == std::this_thread::get_id());
}
inline bool capture_forbids_unsafe_calls() {
    const std::lock_guard<std::mutex> lock(capture_lock());
    for (Stream* s : capturing())
        if (forbids_here(s)) return true;
    return false;
}
// Invalidates the captures that forbid the call (and the capture of the
// stream the call was for, e.g. synchronizing the capturing stream).
inline cudaError_t unsafe_call_during_capture(const Stream* target = nullptr) {
    {
        const std::lock_guard<std::mutex> lock(capture_lock());
        for (Stream* s : capturing())
            if (forbids_here(s) || s == target) s->invalidated = true;
    }
    return fail(cudaErrorStreamCaptureUnsupported);
}

// ---------------------------------------------------------------- queued work

// The lock under which work is queued and run: a stream may be shared by
// threads (cumulus' library stream is). Recursive: running work may queue
// none, but a flush runs the legacy stream's and the blocking streams' in turn.
inline std::recursive_mutex& work_lock() {
    static auto* m = new std::recursive_mutex();  // never destroyed: work may be flushed during static destruction
    return *m;
}
inline bool immediate_streams() {
    static const bool v = [] {
        const char* e = std::getenv("CUEMU_STREAMS");
        return e && std::string(e) == "immediate";
    }();
    return v;
}
// A kernel that failed while its stream's work ran. As on a GPU the fault
// is sticky: every synchronization, allocation, launch and
// cudaGetLastError from then on returns it, until cudaDeviceReset (which
// here only clears it and drops the queued work).
inline cudaError_t& sticky_fault() {
    static cudaError_t e = cudaSuccess;
    return e;
}
inline cudaError_t device_fault() {
    std::lock_guard<std::recursive_mutex> lock(work_lock());
    const cudaError_t e = sticky_fault();
    return e == cudaSuccess ? e : fail(e);
}
// Every stream not yet destroyed. A stream a program never destroys (as
// cumulus' library streams) stays reachable from here after static
// destructors have run, as the driver keeps it: no leak for LeakSanitizer.
struct LiveStreams {
    std::mutex mu;
    std::vector<Stream*> streams;
};
inline LiveStreams& live_streams() {
    static auto* v = new LiveStreams();  // never destroyed
    return *v;
}
inline std::vector<Stream*> live_stream_list() {
    auto& live = live_streams();
    std::lock_guard<std::mutex> lock(live.mu);
    return live.streams;
}
// Runs what a stream has queued, in order.
inline void flush(Stream& st) {
    std::lock_guard<std::recursive_mutex> lock(work_lock());
    while (!st.pending.empty()) {
        std::vector<Op> ops;
        ops.swap(st.pending);
        for (auto& op : ops) op();
    }
}
// What the legacy stream's implicit synchronization runs first: for the
// legacy stream, the blocking streams' work; for a blocking stream, the
// legacy stream's.
inline void flush_implicit(Stream& st) {
    if (st.non_blocking) return;
    if (&st == &legacy_stream()) {
        for (Stream* o : live_stream_list())
            if (!o->non_blocking) flush(*o);
    } else {
        flush(legacy_stream());
    }
}
// Everything queued anywhere (cudaDeviceSynchronize, cudaFree).
inline void flush_all() {
    std::lock_guard<std::recursive_mutex> lock(work_lock());
    flush(legacy_stream());
    for (Stream* o : live_stream_list()) flush(*o);
}
// Runs st's work and what the legacy stream's implicit synchronization orders before it.
inline void flush_stream(Stream& st) {
    std::lock_guard<std::recursive_mutex> lock(work_lock());
    flush_implicit(st);
    flush(st);
}

// A host wait for st (cudaStreamSynchronize, cudaEventSynchronize, a copy
// into host memory): its work runs, then the sticky fault, if any, is returned.
inline cudaError_t synchronize(Stream& st) {
    flush_stream(st);
    return device_fault();
}

inline bool is_capturing(cudaStream_t s) {
    std::lock_guard<std::recursive_mutex> lock(work_lock());
    return stream_of(s).capture != nullptr;
}

// Host-side bookkeeping in a stream's order (tests/emu's own, as the
// caching allocator's AddressSanitizer marks): queued behind the stream's
// work, but never recorded into a capture, never a legacy-stream
// synchronization, and at once when nothing is queued.
inline void queue_bookkeeping(cudaStream_t s, Op op) {
    Stream& st = stream_of(s);
    std::lock_guard<std::recursive_mutex> lock(work_lock());
    if (st.pending.empty() || immediate_streams()) op();
    else st.pending.push_back(std::move(op));
}

// Queues op on the stream, or records it when the stream captures. Work for
// the legacy stream while a capture is on is an unsafe call (it would
// synchronize with the capturing stream): the capture is invalidated, as on
// a GPU.
inline cudaError_t submit(cudaStream_t s, Op op) {
    if (!s && capture_forbids_unsafe_calls()) return unsafe_call_during_capture();
    Stream& st = stream_of(s);
    std::lock_guard<std::recursive_mutex> lock(work_lock());
    if (sticky_fault() != cudaSuccess) return fail(sticky_fault());
    if (st.capture) {
        st.capture->ops.push_back(std::move(op));
    } else if (immediate_streams()) {
        op();
    } else {
        flush_implicit(st);  // what this work waits for, queued ahead of it
        st.pending.push_back(std::move(op));
    }
    return cudaSuccess;
}

// ---------------------------------------------------------------- kernels

struct LaunchConfig {
    dim3 grid, block;
    std::size_t shared_bytes;
    cudaStream_t stream;
    LaunchConfig(dim3 g, dim3 b, std::size_t shmem = 0, cudaStream_t s = nullptr)
        : grid(g), block(b), shared_bytes(shmem), stream(s) {}
};

enum class Wait { none, block, warp };

struct Fiber {
    Context ctx;
    uint3 thread_idx{};
    unsigned linear = 0;
    bool done = false;
    Wait wait = Wait::none;
    std::uint64_t shfl_value = 0;  // what this lane offers to the shuffle it waits in
    const char* site_file = "";    // the __syncthreads() it waits at
    int site_line = 0;
};

struct BlockRun {
    const char* kernel = "";
    std::vector<Fiber> fibers;
    Context scheduler;
    Fiber* current = nullptr;
    bool fibers_mode = false;  // false: threads run as plain calls
    bool barrier_hit = false;
    std::exception_ptr error;
    // The values of the last released shuffle, per lane of the block.
    std::vector<std::uint64_t> shfl_released;
    std::vector<char> shfl_live;  // whether that lane took part in the release (had not exited)
    const std::function<void()>* body = nullptr;
};

struct ThreadState {
    uint3 thread_idx{}, block_idx{};
    dim3 block_dim{}, grid_dim{};
    BlockRun* run = nullptr;
};
// Counts the blocks this OS thread has started (never restored, unlike
// ThreadState, which run_grid saves and puts back around a launch).
inline std::uint64_t& block_serial() {
    static thread_local std::uint64_t n = 0;
    return n;
}
inline ThreadState& state() {
    static thread_local ThreadState s;
    return s;
}

[[noreturn]] inline void fiber_entry(void* arg) {
    auto* run = static_cast<BlockRun*>(arg);
    note_fiber_start(run->scheduler);
    try {
        (*run->body)();
    } catch (...) {
        if (!run->error) run->error = std::current_exception();
    }
    Fiber* f = run->current;
    f->done = true;
    f->wait = Wait::none;
    switch_context(f->ctx, run->scheduler, /*from_ends=*/true);  // never resumed
    std::abort();
}

// Suspends the calling thread until its barrier is released.
inline void wait_at(Wait w, std::uint64_t value = 0, const char* file = "", int line = 0) {
    ThreadState& ts = state();
    BlockRun* run = ts.run;
    if (!run) abort_with("a barrier or shuffle outside a kernel");
    run->barrier_hit = true;
    if (!run->fibers_mode)
        throw std::runtime_error("reached a barrier, which no earlier launch of it did: its threads ran as plain "
                                 "calls (tests/emu/include/cuemu.hpp, KernelInfo)");
    Fiber* f = run->current;
    f->wait = w;
    f->shfl_value = value;
    f->site_file = file;
    f->site_line = line;
    switch_context(f->ctx, run->scheduler);
    // resumed: the scheduler set state().thread_idx for us
}

inline constexpr std::size_t kStackBytes = 256 * 1024;

// The order in which threads run between two barriers, and blocks in a grid:
// CUEMU_THREAD_ORDER=forward (the default: thread 0 first) or reverse. A
// thread that reads shared (or global) memory another thread of its phase
// writes, with no barrier between them, sees the write in one order and
// not in the other; running the tests in both orders makes such a race a
// failure whichever thread's index is the lower.
inline bool reverse_order() {
    static const bool reverse = [] {
        const char* e = std::getenv("CUEMU_THREAD_ORDER");
        if (!e || !*e || std::strcmp(e, "forward") == 0) return false;
        if (std::strcmp(e, "reverse") == 0) return true;
        abort_with(std::string("CUEMU_THREAD_ORDER is '") + e + "'; expected forward or reverse");
    }();
    return reverse;
}
// The index that runs i-th of n.
inline unsigned in_order(unsigned i, unsigned n) { return reverse_order() ? n - 1 - i : i; }

// Runs one block with every thread a fiber; throws on a deadlock.
inline void run_block_fibers(BlockRun& run, unsigned nthreads, const dim3& bd) {
    ThreadState& ts = state();
    static thread_local std::vector<std::unique_ptr<char[]>> stacks;  // reused by every block
    // Per stack, whether the last fiber on it may have been left at any depth
    // (its block ended in an error or a deadlock). A fiber that ran to its end
    // left only fiber_entry's frames, at the top, so only the top is forgotten.
    static thread_local std::vector<char> abandoned;
    while (stacks.size() < nthreads) stacks.emplace_back(new char[kStackBytes]);
    abandoned.resize(stacks.size(), 0);
    run.fibers.assign(nthreads, Fiber{});
    run.shfl_released.assign(nthreads, 0);
    run.shfl_live.assign(nthreads, 0);
    for (unsigned t = 0; t < nthreads; ++t) {
        Fiber& f = run.fibers[t];
        f.linear = t;
        f.thread_idx = {t % bd.x, (t / bd.x) % bd.y, t / (bd.x * bd.y)};
        const std::size_t stale = abandoned[t] ? kStackBytes : std::size_t(16) * 1024;
        forget_stack(stacks[t].get() + (kStackBytes - stale), stale);
        abandoned[t] = 1;  // until the block ends cleanly
        make_context(f.ctx, stacks[t].get(), kStackBytes, fiber_entry, &run);
    }
    std::vector<char> runnable(nthreads, 1);
    for (;;) {
        for (unsigned i = 0; i < nthreads; ++i) {
            const unsigned t = in_order(i, nthreads);
            Fiber& f = run.fibers[t];
            if (f.done || !runnable[t]) continue;
            run.current = &f;
            ts.thread_idx = f.thread_idx;
            switch_context(run.scheduler, f.ctx);
            runnable[t] = 0;
        }
        if (run.error) return;
        // Everyone is done or waiting. Release warps whose live lanes all wait in a warp op.
        bool released = false, all_done = true, all_block = true;
        for (unsigned w0 = 0; w0 < nthreads; w0 += 32) {
            const unsigned w1 = std::min(nthreads, w0 + 32);
            bool any_live = false, all_warp = true;
            for (unsigned t = w0; t < w1; ++t) {
                const Fiber& f = run.fibers[t];
                if (f.done) continue;
                any_live = true;
                if (f.wait != Wait::warp) all_warp = false;
            }
            if (any_live && all_warp) {
                for (unsigned t = w0; t < w1; ++t) {
                    Fiber& f = run.fibers[t];
                    run.shfl_live[t] = !f.done;
                    if (f.done) continue;
                    run.shfl_released[t] = f.shfl_value;
                    f.wait = Wait::none;
                    runnable[t] = 1;
                }
                released = true;
            }
        }
        for (const Fiber& f : run.fibers) {
            if (f.done) continue;
            all_done = false;
            if (f.wait != Wait::block) all_block = false;
        }
        if (all_done) {
            std::fill(abandoned.begin(), abandoned.begin() + nthreads, 0);
            return;
        }
        if (released) continue;
        if (all_block) {
            // Every live thread must wait at the same __syncthreads(): one in a branch that
            // not the whole block takes is undefined on a GPU (a hang, or wrong results).
            const Fiber* first = nullptr;
            for (const Fiber& f : run.fibers) {
                if (f.done) continue;
                if (!first) first = &f;
                else if (f.site_line != first->site_line || std::strcmp(f.site_file, first->site_file) != 0)
                    throw std::runtime_error("threads " + std::to_string(first->linear) + " and " +
                                             std::to_string(f.linear) + " wait at different __syncthreads(): " +
                                             first->site_file + ":" + std::to_string(first->site_line) + " and " +
                                             f.site_file + ":" + std::to_string(f.site_line));
            }
            for (unsigned t = 0; t < nthreads; ++t) {
                Fiber& f = run.fibers[t];
                if (!f.done) {
                    f.wait = Wait::none;
                    runnable[t] = 1;
                }
            }
            continue;
        }
        // Deadlock: some wait at __syncthreads, others in a warp op of a warp that is not all there.
        std::string where;
        for (unsigned t = 0; t < nthreads; ++t) {
            const Fiber& f = run.fibers[t];
            if (f.done) continue;
            if (where.size() < 200)
                where += " t" + std::to_string(t) + (f.wait == Wait::block ? ":syncthreads" : ":warp-op");
        }
        throw std::runtime_error(std::string("deadlock in kernel ") + run.kernel + ", block (" +
                                 std::to_string(state().block_idx.x) + "," + std::to_string(state().block_idx.y) + "," +
                                 std::to_string(state().block_idx.z) + "): threads wait at different barriers:" +
                                 where);
    }
}

// What a launch site's kernel has shown: until its first launch is done, its
// threads run as fibers; if no thread reached a barrier, later launches run
// them as plain calls, and a barrier reached then fails the launch loudly.
struct KernelInfo {
    bool learned = false;
    bool needs_fibers = true;
};

inline cudaError_t check_config(const LaunchConfig& c) {
    const std::uint64_t threads = std::uint64_t(c.block.x) * c.block.y * c.block.z;
    if (c.grid.x == 0 || c.grid.y == 0 || c.grid.z == 0 || threads == 0 || threads > 1024 || c.block.z > 64 ||
        c.grid.y > 65535 || c.grid.z > 65535 || c.grid.x > 2147483647u || c.shared_bytes > 227 * 1024)
        return cudaErrorInvalidConfiguration;
    return cudaSuccess;
}

inline void run_grid(const char* name, KernelInfo& info, const LaunchConfig& c, const std::function<void()>& body) {
    ThreadState& ts = state();
    const ThreadState saved = ts;
    BlockRun run;
    run.kernel = name;
    run.body = &body;
    ts.run = &run;
    ts.grid_dim = c.grid;
    ts.block_dim = c.block;
    const unsigned nthreads = c.block.x * c.block.y * c.block.z;
    try {
        for (unsigned bz = 0; bz < c.grid.z; ++bz)
            for (unsigned by = 0; by < c.grid.y; ++by)
                for (unsigned bx = 0; bx < c.grid.x; ++bx) {
                    ts.block_idx = {in_order(bx, c.grid.x), in_order(by, c.grid.y), in_order(bz, c.grid.z)};
                    ++block_serial();
                    if (info.needs_fibers) {
                        run.fibers_mode = true;
                        run_block_fibers(run, nthreads, c.block);
                        if (run.error) std::rethrow_exception(run.error);
                        continue;
                    }
                    run.fibers_mode = false;
                    for (unsigned i = 0; i < nthreads; ++i) {
                        const unsigned t = in_order(i, nthreads);
                        ts.thread_idx = {t % c.block.x, (t / c.block.x) % c.block.y, t / (c.block.x * c.block.y)};
                        body();
                    }
                }
        if (!info.learned) {
            info.learned = true;
            info.needs_fibers = run.barrier_hit;
        }
    } catch (const std::exception& e) {
        // As a faulting kernel on a GPU: the next synchronization reports cudaErrorLaunchFailure.
        ts = saved;
        std::fprintf(stderr, "cuemu: kernel %s failed: %s\n", name, e.what());
        if (immediate_streams()) {
            fail(cudaErrorLaunchFailure);  // at the launch, and not sticky: as before queued streams
        } else {
            std::lock_guard<std::recursive_mutex> lock(work_lock());
            sticky_fault() = cudaErrorLaunchFailure;
        }
        return;
    }
    ts = saved;
}

template <typename Body, typename... Args>
void launch(const LaunchConfig& c, const char* name, Body body, Args&&... args) {
    static KernelInfo info;  // one per launch site and instantiation
    if (cudaError_t e = check_config(c); e != cudaSuccess) {
        fail(e);
        return;
    }
    auto packed = std::make_tuple(std::decay_t<Args>(std::forward<Args>(args))...);  // arguments as at launch
    (void)submit(c.stream, [c, name, body, packed]() {
        const std::function<void()> call = [&]() { std::apply(body, packed); };
        run_grid(name, info, c, call);
    });
}

// ---------------------------------------------------------------- shared memory

// What tests/emu/rewrite.py turns `__shared__ [__align__(n)] A name;` into:
// `auto& name = shared_array<A, n>([] {});`, one heap block per declaration
// (the lambda's type tells declarations, and instantiations, apart) and OS
// thread, which all threads of a block share. Heap, so that under
// AddressSanitizer an access past its end fails where it happens (as
// compute-sanitizer's memcheck reports shared-memory accesses out of
// bounds; a static array in an inline function gets no redzones). The first
// thread of each block to reach the declaration fills it with NaN bytes, so
// a read of what no thread of the block wrote shows (on a GPU it is
// whatever was there).
template <typename A, std::size_t Align, typename Site>
A& shared_array(Site) {
    static_assert(std::is_trivially_destructible_v<A>, "__shared__ variables must be trivial");
    constexpr std::size_t kAlign = Align > alignof(A) ? Align : alignof(A);
    struct Slot {
        void* p = nullptr;
        std::uint64_t block = 0;
        ~Slot() {
            if (p) ::operator delete(p, std::align_val_t(kAlign));
        }
    };
    static thread_local Slot slot;
    if (!slot.p) slot.p = ::operator new(sizeof(A), std::align_val_t(kAlign));
    const std::uint64_t block = block_serial();
    if (slot.block != block) {
        std::memset(slot.p, 0xff, sizeof(A));
        slot.block = block;
    }
    return *static_cast<A*>(slot.p);
}

// ---------------------------------------------------------------- warp ops

template <typename T>
std::uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>);
    std::uint64_t b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}
template <typename T>
T from_bits(std::uint64_t b) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}

template <typename T>
T shfl(T v, unsigned src_of_lane(unsigned lane, unsigned arg), unsigned arg, int width) {
    ThreadState& ts = state();
    wait_at(Wait::warp, to_bits(v));
    BlockRun* run = ts.run;
    const unsigned me = run->current->linear;
    const unsigned warp0 = me / 32 * 32, lane = me % 32;
    const unsigned w = unsigned(width <= 0 || width > 32 ? 32 : width);
    const unsigned seg = lane / w * w;
    unsigned src = src_of_lane(lane % w, arg);
    if (src >= w) src = lane % w;  // out of the segment: own value (as __shfl_down / __shfl_up do)
    const unsigned idx = warp0 + seg + src;
    if (idx >= run->fibers.size() || !run->shfl_live[idx])
        throw std::runtime_error("shuffle reads lane " + std::to_string(idx % 32) + ", which has exited");
    return from_bits<T>(run->shfl_released[idx]);
}

}  // namespace cuemu

// ---------------------------------------------------------------- built-in variables and functions

#define threadIdx (::cuemu::state().thread_idx)
#define blockIdx (::cuemu::state().block_idx)
#define blockDim (::cuemu::state().block_dim)
#define gridDim (::cuemu::state().grid_dim)
inline constexpr int warpSize = 32;

#define __syncthreads() ::cuemu::wait_at(::cuemu::Wait::block, 0, __FILE__, __LINE__)
inline void __syncwarp(unsigned = 0xffffffffu) { ::cuemu::wait_at(::cuemu::Wait::warp); }
template <typename T>
T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
    return ::cuemu::shfl(v, [](unsigned l, unsigned m) { return l ^ m; }, unsigned(mask), width);
}
template <typename T>
T __shfl_down_sync(unsigned, T v, unsigned d, int width = 32) {
    return ::cuemu::shfl(v, [](unsigned l, unsigned dd) { return l + dd; }, d, width);
}
template <typename T>
T __shfl_up_sync(unsigned, T v, unsigned d, int width = 32) {
    return ::cuemu::shfl(v, [](unsigned l, unsigned dd) { return l >= dd ? l - dd : 1000u; }, d, width);
}
template <typename T>
T __shfl_sync(unsigned, T v, int src, int width = 32) {
    return ::cuemu::shfl(v, [](unsigned, unsigned s) { return s; }, unsigned(src), width);
}
template <typename T>
T __ldg(const T* p) {
    return *p;
}
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float __int_as_float(int i) { return ::cuemu::from_bits<float>(std::uint32_t(i)); }
inline int __float_as_int(float f) { return int(std::uint32_t(::cuemu::to_bits(f))); }
inline float __uint_as_float(unsigned u) { return ::cuemu::from_bits<float>(u); }
inline unsigned __float_as_uint(float f) { return unsigned(::cuemu::to_bits(f)); }
inline unsigned __umulhi(unsigned a, unsigned b) { return unsigned((std::uint64_t(a) * b) >> 32); }
using std::fmaxf;
using std::fminf;
