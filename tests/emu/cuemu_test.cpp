// The CPU emulation of CUDA itself (tests/emu/include/cuemu.hpp): barriers,
// shuffles, launch checks, stream capture and graph replay behave as the
// CUDA tests that run on it assume, and the mistakes it is there to catch
// are caught.
#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

namespace {

template <typename T>
T* device_alloc(std::size_t n) {
    void* p = nullptr;
    REQUIRE(cudaMalloc(&p, n * sizeof(T)) == cudaSuccess);
    return static_cast<T*>(p);
}

// ---- kernels, written as for nvcc

__global__ void neighbour_kernel(const int* in, int* out) {
    __shared__ int s[256];
    s[threadIdx.x] = in[blockIdx.x * blockDim.x + threadIdx.x];
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x];
}

__global__ void warp_sum_kernel(const float* in, float* out) {
    float v = in[threadIdx.x];
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    out[threadIdx.x] = v;
}

__global__ void shfl_down_kernel(const int* in, int* out) {
    out[threadIdx.x] = __shfl_down_sync(0xffffffffu, in[threadIdx.x], 3);
}

__global__ void divergent_barrier_kernel(int* out) {
    if (threadIdx.x < 7) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1;
}

__global__ void half_warp_shuffle_kernel(int* out) {
    int v = int(threadIdx.x);
    if (threadIdx.x < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
    else __syncthreads();
    out[threadIdx.x] = v;
}

__global__ void maybe_barrier_kernel(int* out, bool sync) {
    if (sync) __syncthreads();
    out[threadIdx.x] = int(threadIdx.x);
}

__global__ void add_kernel(float* x, float v, int n) {
    const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < n) x[i] += v;
}

// Stands for a kernel that takes a while.
__global__ void sleep_kernel(int ms) {
    if (blockIdx.x == 0 && threadIdx.x == 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

__global__ void index_kernel(int* out) {
    const unsigned b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    out[b * (blockDim.x * blockDim.y * blockDim.z) + t] = int(b * 1000 + t);
}

// The address of a 16-byte-aligned local of a function that is not inlined:
// the compiler places it by the ABI's promise that the stack is aligned at
// each call, so a misaligned fiber stack shows here (and crashes code that
// keeps SSE values on the stack, such as libm's error path for sqrt(-x)).
__attribute__((noinline)) std::uintptr_t aligned_local_address() {
    alignas(16) volatile char b[16];
    b[0] = 1;
    return reinterpret_cast<std::uintptr_t>(&b[0]);
}

__global__ void stack_kernel(const float* in, float* out, int* misaligned) {
    __syncthreads();  // keeps every launch of it on fibers
    misaligned[threadIdx.x] = int(aligned_local_address() % 16);
    out[threadIdx.x] = sqrtf(in[threadIdx.x]);
}

// Which thread of which block ran when: a counter every thread bumps, before
// and after a barrier (racy on a GPU; in turn here, so it shows the order).
__global__ void order_kernel(int* before, int* after, int* counter, bool sync) {
    const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    before[i] = (*counter)++;
    if (sync) __syncthreads();
    after[i] = (*counter)++;
}

// Thread 0 writes a shared value that the others read with no barrier
// between: a race, whose outcome the emulation's order decides.
__global__ void racy_broadcast_kernel(int* out) {
    __shared__ int value;
    if (threadIdx.x == 0) value = 42;
    out[threadIdx.x] = value;
}

// What tests/emu/rewrite.py makes of `__shared__ float s[4];` in the kernels.
__global__ void shared_array_kernel(float* out) {
    auto& s = ::cuemu::shared_array<float[4], 16>([] {});
    const unsigned b = blockIdx.x, t = threadIdx.x;
    out[b * 8 + t] = s[t];  // before any thread of this block wrote: NaN, whatever the last block left
    __syncthreads();
    s[t] = float(b * 10 + t);
    __syncthreads();
    out[b * 8 + 4 + t] = s[(t + 1) % 4];  // what another thread of the block wrote
}

#define LAUNCH(kernel, grid, block, stream, ...)                                                              \
    ::cuemu::launch(::cuemu::LaunchConfig(grid, block, 0, stream), #kernel,                                   \
                    [](auto&&... a) { kernel(a...); }, __VA_ARGS__)

}  // namespace

TEST_CASE("cuemu: __syncthreads orders shared-memory writes before reads, block by block") {
    const int blocks = 3, threads = 256, n = blocks * threads;
    std::vector<int> in(n), out(n);
    for (int i = 0; i < n; ++i) in[i] = i * 7 + 1;
    int* d_in = device_alloc<int>(n);
    int* d_out = device_alloc<int>(n);
    REQUIRE(cudaMemcpy(d_in, in.data(), n * sizeof(int), cudaMemcpyHostToDevice) == cudaSuccess);
    LAUNCH(neighbour_kernel, blocks, threads, nullptr, d_in, d_out);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    REQUIRE(cudaMemcpy(out.data(), d_out, n * sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess);
    for (int b = 0; b < blocks; ++b)
        for (int t = 0; t < threads; ++t) CHECK(out[b * threads + t] == in[b * threads + (t + 1) % threads]);
    cudaFree(d_in);
    cudaFree(d_out);
}

TEST_CASE("cuemu: warp shuffles exchange the values of one step") {
    std::vector<float> in(64), out(64);
    float s0 = 0, s1 = 0;
    for (int i = 0; i < 64; ++i) {
        in[i] = float(i * i % 13);
        (i < 32 ? s0 : s1) += in[i];
    }
    float* d_in = device_alloc<float>(64);
    float* d_out = device_alloc<float>(64);
    cudaMemcpy(d_in, in.data(), sizeof(float) * 64, cudaMemcpyHostToDevice);
    LAUNCH(warp_sum_kernel, 1, 64, nullptr, d_in, d_out);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    cudaMemcpy(out.data(), d_out, sizeof(float) * 64, cudaMemcpyDeviceToHost);
    for (int i = 0; i < 64; ++i) CHECK(out[i] == (i < 32 ? s0 : s1));

    std::vector<int> iin(32), iout(32);
    for (int i = 0; i < 32; ++i) iin[i] = 100 + i;
    int* di = device_alloc<int>(32);
    int* dout = device_alloc<int>(32);
    cudaMemcpy(di, iin.data(), sizeof(int) * 32, cudaMemcpyHostToDevice);
    LAUNCH(shfl_down_kernel, 1, 32, nullptr, di, dout);
    cudaMemcpy(iout.data(), dout, sizeof(int) * 32, cudaMemcpyDeviceToHost);
    for (int i = 0; i < 32; ++i) CHECK(iout[i] == (i + 3 < 32 ? 100 + i + 3 : 100 + i));  // own value past the end
    cudaFree(d_in);
    cudaFree(d_out);
    cudaFree(di);
    cudaFree(dout);
}

TEST_CASE("cuemu: built-in indices cover 3-D grids and blocks") {
    const dim3 grid(3, 2, 2), block(4, 3, 2);
    const int n = 12 * 24;
    int* d = device_alloc<int>(n);
    LAUNCH(index_kernel, grid, block, nullptr, d);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    std::vector<int> out(n);
    cudaMemcpy(out.data(), d, sizeof(int) * n, cudaMemcpyDeviceToHost);
    for (int b = 0; b < 12; ++b)
        for (int t = 0; t < 24; ++t) CHECK(out[b * 24 + t] == b * 1000 + t);
    cudaFree(d);
}

// A kernel fault: on queued streams (the default) the next synchronization
// reports it, and it is sticky until cudaDeviceReset, as on a GPU; with
// CUEMU_STREAMS=immediate the launch reports it, once.
cudaError_t fault_of_last_launch() {
    if (::cuemu::immediate_streams()) return cudaGetLastError();
    CHECK(cudaGetLastError() == cudaSuccess);  // queued: a GPU reports a fault later too
    const cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) {
        CHECK(cudaDeviceSynchronize() == e);  // sticky
        CHECK(cudaGetLastError() == e);
        CHECK(cudaGetLastError() == e);
        CHECK(cudaDeviceReset() == cudaSuccess);
        CHECK(cudaDeviceSynchronize() == cudaSuccess);
    }
    return e;
}

TEST_CASE("cuemu: barriers that not every thread reaches fail the launch") {
    int* d = device_alloc<int>(64);
    LAUNCH(divergent_barrier_kernel, 1, 64, nullptr, d);
    CHECK(fault_of_last_launch() == cudaErrorLaunchFailure);
    LAUNCH(half_warp_shuffle_kernel, 1, 32, nullptr, d);
    CHECK(fault_of_last_launch() == cudaErrorLaunchFailure);
    // First launched (from this one site) without its barrier, the kernel then runs as plain
    // calls; a barrier reached later fails loudly instead of running wrong.
    for (const bool sync : {false, true}) {
        LAUNCH(maybe_barrier_kernel, 2, 32, nullptr, d, sync);
        CHECK(fault_of_last_launch() == (sync ? cudaErrorLaunchFailure : cudaSuccess));
    }
    cudaFree(d);
}

TEST_CASE("cuemu: a kernel fault is sticky: allocations, launches and captures fail until cudaDeviceReset") {
    if (::cuemu::immediate_streams()) return;
    int* d = device_alloc<int>(64);
    LAUNCH(divergent_barrier_kernel, 1, 64, nullptr, d);
    CHECK(cudaDeviceSynchronize() == cudaErrorLaunchFailure);
    void* p = nullptr;
    CHECK(cudaMalloc(&p, 64) == cudaErrorLaunchFailure);
    LAUNCH(add_kernel, 1, 32, nullptr, reinterpret_cast<float*>(d), 1.0f, 4);
    CHECK(cudaGetLastError() == cudaErrorLaunchFailure);
    cudaStream_t s = nullptr;
    REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaErrorLaunchFailure);
    CHECK(cudaFree(d) == cudaErrorLaunchFailure);
    CHECK(cudaDeviceReset() == cudaSuccess);
    CHECK(cudaMalloc(&p, 64) == cudaSuccess);
    CHECK(cudaFree(p) == cudaSuccess);
    CHECK(cudaFree(d) == cudaSuccess);
    cudaStreamDestroy(s);
}

TEST_CASE("cuemu: streams run their work when a synchronization needs it, and the legacy stream waits only for "
          "blocking streams") {
    if (::cuemu::immediate_streams()) return;  // CUEMU_STREAMS=immediate: everything runs at the call
    cudaStream_t nb = nullptr, blocking = nullptr;
    REQUIRE(cudaStreamCreateWithFlags(&nb, cudaStreamNonBlocking) == cudaSuccess);
    REQUIRE(cudaStreamCreate(&blocking) == cudaSuccess);
    float* d = device_alloc<float>(4);
    float h[4] = {-1, -1, -1, -1};
    const float zeros[4] = {0, 0, 0, 0};
    // A host-to-device copy takes its source at the call.
    float src[4] = {0, 0, 0, 0};
    REQUIRE(cudaMemcpyAsync(d, src, sizeof src, cudaMemcpyHostToDevice, nb) == cudaSuccess);
    src[0] = 99;
    LAUNCH(add_kernel, 1, 32, nb, d, 1.0f, 4);
    // The legacy stream's copy does not wait for a non-blocking stream: it reads the NaN of fresh memory.
    REQUIRE(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess);
    CHECK(std::isnan(h[0]));
    // Synchronizing the stream runs its work.
    REQUIRE(cudaStreamSynchronize(nb) == cudaSuccess);
    REQUIRE(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess);
    for (float v : h) CHECK(v == 1.0f);
    // A blocking stream's work runs before the legacy stream's next work.
    LAUNCH(add_kernel, 1, 32, blocking, d, 1.0f, 4);
    REQUIRE(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess);
    for (float v : h) CHECK(v == 2.0f);
    // A device-to-host copy on a stream is done when it returns, after the stream's earlier work.
    LAUNCH(add_kernel, 1, 32, nb, d, 1.0f, 4);
    REQUIRE(cudaMemcpyAsync(h, d, sizeof h, cudaMemcpyDeviceToHost, nb) == cudaSuccess);
    for (float v : h) CHECK(v == 3.0f);
    // An event's synchronization runs the work queued before its record.
    cudaEvent_t e = nullptr;
    REQUIRE(cudaEventCreate(&e) == cudaSuccess);
    REQUIRE(cudaMemcpyAsync(d, zeros, sizeof zeros, cudaMemcpyHostToDevice, nb) == cudaSuccess);
    REQUIRE(cudaEventRecord(e, nb) == cudaSuccess);
    REQUIRE(cudaEventSynchronize(e) == cudaSuccess);
    REQUIRE(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess);
    for (float v : h) CHECK(v == 0.0f);
    // cudaDeviceSynchronize runs every stream's work.
    LAUNCH(add_kernel, 1, 32, nb, d, 5.0f, 4);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    REQUIRE(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess);
    for (float v : h) CHECK(v == 5.0f);
    // A plain cudaMemcpy from host memory returns before the copy is done:
    // queued on the legacy stream, which the non-blocking stream does not wait for.
    REQUIRE(cudaMemcpy(d, zeros, sizeof zeros, cudaMemcpyHostToDevice) == cudaSuccess);
    REQUIRE(cudaMemcpyAsync(h, d, sizeof h, cudaMemcpyDeviceToHost, nb) == cudaSuccess);
    for (float v : h) CHECK(v == 5.0f);
    // An event may be destroyed before its record runs, and its stream before it.
    cudaEvent_t e2 = nullptr;
    REQUIRE(cudaEventCreate(&e2) == cudaSuccess);
    LAUNCH(add_kernel, 1, 32, nb, d, 1.0f, 4);
    REQUIRE(cudaEventRecord(e2, nb) == cudaSuccess);
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, e, e2) == cudaErrorNotReady);  // queued
    (void)cudaGetLastError();
    REQUIRE(cudaEventDestroy(e2) == cudaSuccess);
    REQUIRE(cudaEventRecord(e, blocking) == cudaSuccess);
    REQUIRE(cudaStreamDestroy(blocking) == cudaSuccess);
    CHECK(cudaEventSynchronize(e) == cudaSuccess);
    REQUIRE(cudaStreamSynchronize(nb) == cudaSuccess);
    cudaEventDestroy(e);
    cudaFree(d);
    cudaStreamDestroy(nb);
}

TEST_CASE("cuemu: launch configurations are checked as CUDA checks them") {
    float* d = device_alloc<float>(4);
    LAUNCH(add_kernel, 0, 32, nullptr, d, 1.0f, 4);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
    LAUNCH(add_kernel, 1, 1025, nullptr, d, 1.0f, 4);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
    LAUNCH(add_kernel, dim3(1, 65536), 32, nullptr, d, 1.0f, 4);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
    LAUNCH(add_kernel, 1, 32, nullptr, d, 1.0f, 4);
    CHECK(cudaGetLastError() == cudaSuccess);
    CHECK(cudaGetLastError() == cudaSuccess);  // read once, then cleared
    cudaFree(d);
}

TEST_CASE("cuemu: memory is NaN-filled, and copies are checked against the allocations") {
    float* d = device_alloc<float>(8);
    float h[8];
    REQUIRE(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess);
    for (float v : h) CHECK(v != v);
    CHECK(cudaMemcpy(h, d, sizeof h, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);   // directions swapped
    CHECK(cudaMemcpy(d, h, sizeof h * 2, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);  // past the end
    CHECK(cudaGetLastError() == cudaErrorInvalidValue);
    CHECK(cudaFree(h) == cudaErrorInvalidDevicePointer);
    CHECK(cudaGetLastError() == cudaErrorInvalidDevicePointer);
    cudaFree(d);
}

TEST_CASE("cuemu: a captured graph replays its launches with the arguments as captured") {
    cudaStream_t s = nullptr;
    REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
    float* d = device_alloc<float>(5);
    REQUIRE(cudaMemsetAsync(d, 0, 5 * sizeof(float), s) == cudaSuccess);
    float v = 1.5f;
    REQUIRE(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
    LAUNCH(add_kernel, 1, 32, s, d, v, 5);
    v = 100.0f;  // not seen by the graph
    float h[5];
    for (float& x : h) x = -1;
    REQUIRE(cudaMemcpyAsync(h, d, sizeof h, cudaMemcpyDeviceToHost, s) == cudaSuccess);
    CHECK(h[0] == -1.0f);  // nothing runs during capture
    cudaGraph_t g = nullptr;
    REQUIRE(cudaStreamEndCapture(s, &g) == cudaSuccess);
    cudaGraphExec_t exec = nullptr;
    REQUIRE(cudaGraphInstantiate(&exec, g, 0) == cudaSuccess);
    REQUIRE(cudaGraphLaunch(exec, s) == cudaSuccess);
    REQUIRE(cudaGraphLaunch(exec, s) == cudaSuccess);
    REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
    for (float x : h) CHECK(x == 3.0f);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(g);
    cudaFree(d);
    cudaStreamDestroy(s);
}

TEST_CASE("cuemu: allocation, freeing, synchronization and the legacy stream invalidate a capture") {
    cudaStream_t s = nullptr;
    REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
    float* d = device_alloc<float>(4);
    auto expect_invalidated = [&](auto&& unsafe) {
        REQUIRE(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
        CHECK(unsafe() == cudaErrorStreamCaptureUnsupported);
        cudaGraph_t g = nullptr;
        CHECK(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated);
        CHECK(g == nullptr);
        (void)cudaGetLastError();
    };
    expect_invalidated([] {
        void* p = nullptr;
        return cudaMalloc(&p, 64);
    });
    expect_invalidated([&] { return cudaFree(d); });
    expect_invalidated([&] { return cudaStreamSynchronize(s); });
    expect_invalidated([] { return cudaDeviceSynchronize(); });
    expect_invalidated([&] { return cudaMemsetAsync(d, 0, 16, nullptr); });
    // Relaxed mode permits allocation.
    REQUIRE(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed) == cudaSuccess);
    void* p = nullptr;
    CHECK(cudaMalloc(&p, 64) == cudaSuccess);
    cudaGraph_t g = nullptr;
    CHECK(cudaStreamEndCapture(s, &g) == cudaSuccess);
    cudaGraphDestroy(g);
    cudaFree(p);
    // The legacy stream cannot capture.
    CHECK(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeGlobal) == cudaErrorStreamCaptureUnsupported);
    (void)cudaGetLastError();
    cudaFree(d);
    cudaStreamDestroy(s);
}

TEST_CASE("cuemu: a thread-local capture lets other threads allocate (not end it); a global one does not") {
    cudaStream_t s = nullptr;
    REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
    auto other_thread_malloc = [] {
        cudaError_t e = cudaSuccess;
        std::thread t([&] {
            void* p = nullptr;
            e = cudaMalloc(&p, 64);
            if (e == cudaSuccess) e = cudaFree(p);
        });
        t.join();
        return e;
    };
    cudaGraph_t g = nullptr;
    REQUIRE(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
    CHECK(other_thread_malloc() == cudaSuccess);
    cudaError_t from_other = cudaSuccess;
    std::thread([&] { from_other = cudaStreamEndCapture(s, &g); }).join();
    CHECK(from_other == cudaErrorStreamCaptureWrongThread);  // only the capturing thread ends it
    CHECK(cudaStreamEndCapture(s, &g) == cudaSuccess);
    cudaGraphDestroy(g);
    g = nullptr;
    REQUIRE(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess);
    CHECK(other_thread_malloc() == cudaErrorStreamCaptureUnsupported);
    CHECK(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated);
    (void)cudaGetLastError();
    cudaStreamDestroy(s);
}

TEST_CASE("cuemu: fibers run on ABI-aligned stacks, and sqrtf of a negative is NaN as on a GPU") {
    const int n = 64;
    std::vector<float> in(n), out(n);
    for (int i = 0; i < n; ++i) in[i] = i % 2 ? float(i) : -float(i + 1);
    std::vector<int> misaligned(n, -1);
    float* d_in = device_alloc<float>(n);
    float* d_out = device_alloc<float>(n);
    int* d_mis = device_alloc<int>(n);
    REQUIRE(cudaMemcpy(d_in, in.data(), n * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
    LAUNCH(stack_kernel, 1, n, nullptr, d_in, d_out, d_mis);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    REQUIRE(cudaMemcpy(out.data(), d_out, n * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
    REQUIRE(cudaMemcpy(misaligned.data(), d_mis, n * sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess);
    for (int i = 0; i < n; ++i) {
        CHECK(misaligned[i] == 0);
        if (i % 2) CHECK(out[i] == doctest::Approx(std::sqrt(float(i))));
        else CHECK(std::isnan(out[i]));
    }
    cudaFree(d_in);
    cudaFree(d_out);
    cudaFree(d_mis);
}

TEST_CASE("cuemu: events time the work between them on the stream") {
    cudaStream_t s = nullptr;
    REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
    cudaEvent_t a = nullptr, b = nullptr;
    REQUIRE(cudaEventCreate(&a) == cudaSuccess);
    REQUIRE(cudaEventCreate(&b) == cudaSuccess);
    float ms = -1;
    CHECK(cudaEventElapsedTime(&ms, a, b) == cudaErrorInvalidResourceHandle);  // not recorded yet
    (void)cudaGetLastError();
    REQUIRE(cudaEventRecord(a, s) == cudaSuccess);
    LAUNCH(sleep_kernel, 1, 32, s, 20);
    REQUIRE(cudaEventRecord(b, s) == cudaSuccess);
    REQUIRE(cudaEventSynchronize(b) == cudaSuccess);
    REQUIRE(cudaEventElapsedTime(&ms, a, b) == cudaSuccess);
    CHECK(ms >= 19.0f);
    CHECK(ms < 2000.0f);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaStreamDestroy(s);
}

TEST_CASE("cuemu: threads and blocks run in the order CUEMU_THREAD_ORDER names, so that a race fails in one") {
    const char* env = std::getenv("CUEMU_THREAD_ORDER");
    const bool reverse = env && std::string(env) == "reverse";
    CHECK(::cuemu::reverse_order() == reverse);
    const int blocks = 2, threads = 4, n = blocks * threads;
    int* d_before = device_alloc<int>(n);
    int* d_after = device_alloc<int>(n);
    int* d_counter = device_alloc<int>(1);
    for (bool sync : {false, true}) {  // plain calls, then fibers
        CAPTURE(sync);
        REQUIRE(cudaMemset(d_counter, 0, sizeof(int)) == cudaSuccess);
        if (sync) LAUNCH(order_kernel, blocks, threads, nullptr, d_before, d_after, d_counter, true);
        else LAUNCH(order_kernel, blocks, threads, nullptr, d_before, d_after, d_counter, false);
        REQUIRE(cudaGetLastError() == cudaSuccess);
        std::vector<int> before(n), after(n);
        REQUIRE(cudaMemcpy(before.data(), d_before, n * sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess);
        REQUIRE(cudaMemcpy(after.data(), d_after, n * sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess);
        for (int b = 0; b < blocks; ++b)
            for (int t = 0; t < threads; ++t) {
                const int i = b * threads + t;
                const int rank_b = reverse ? blocks - 1 - b : b, rank_t = reverse ? threads - 1 - t : t;
                const int first = rank_b * 2 * threads;  // counts of the blocks that ran before
                if (sync) {
                    // Every thread of the block passes the barrier before any runs on.
                    CHECK(before[i] == first + rank_t);
                    CHECK(after[i] == first + threads + rank_t);
                } else {
                    CHECK(before[i] == first + 2 * rank_t);
                    CHECK(after[i] == first + 2 * rank_t + 1);
                }
            }
    }
    int* d_out = device_alloc<int>(32);
    LAUNCH(racy_broadcast_kernel, 1, 32, nullptr, d_out);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    std::vector<int> out(32);
    REQUIRE(cudaMemcpy(out.data(), d_out, sizeof(int) * 32, cudaMemcpyDeviceToHost) == cudaSuccess);
    CHECK(out[0] == 42);
    if (reverse) CHECK(out[1] != 42);  // read before thread 0 wrote (the static starts at 0)
    else CHECK(out[31] == 42);          // forward order hides the race
    cudaFree(d_before);
    cudaFree(d_after);
    cudaFree(d_counter);
    cudaFree(d_out);
}

TEST_CASE("cuemu: under AddressSanitizer, memory past a tensor's end in its cached block is out of bounds") {
#ifdef CUEMU_ASAN
    char* d = device_alloc<char>(512);
    cuemuSetUsable(d, 100, 512);  // as the caching allocator does for a 100-byte tensor
    CHECK(!__asan_address_is_poisoned(d));
    CHECK(!__asan_address_is_poisoned(d + 99));
    CHECK(__asan_address_is_poisoned(d + 100));
    CHECK(__asan_address_is_poisoned(d + 511));
    cuemuSetUsable(d, 0, 512);  // back in the cache
    CHECK(__asan_address_is_poisoned(d));
    cuemuSetUsable(d, 512, 512);
    CHECK(!__asan_address_is_poisoned(d + 511));
    char* odd = device_alloc<char>(13);  // cudaMalloc's own rounding (to 256) is out of bounds too
    CHECK(!__asan_address_is_poisoned(odd + 12));
    CHECK(__asan_address_is_poisoned(odd + 13));
    cudaFree(d);
    cudaFree(odd);
#else
    MESSAGE("not built with AddressSanitizer: nothing to check here (tools/test's build-asan/ checks it)");
#endif
}

TEST_CASE("cuemu: rewritten __shared__ arrays are shared by a block and NaN-filled for each block") {
    float* d = device_alloc<float>(16);
    std::vector<float> out(16);
    for (int blocks : {2, 1, 1}) {  // a one-block launch after another launch too
        CAPTURE(blocks);
        LAUNCH(shared_array_kernel, blocks, 4, nullptr, d);
        REQUIRE(cudaGetLastError() == cudaSuccess);
        REQUIRE(cudaMemcpy(out.data(), d, sizeof(float) * 16, cudaMemcpyDeviceToHost) == cudaSuccess);
        for (int b = 0; b < blocks; ++b)
            for (int t = 0; t < 4; ++t) {
                CHECK(std::isnan(out[b * 8 + t]));
                CHECK(out[b * 8 + 4 + t] == float(b * 10 + (t + 1) % 4));
            }
    }
#ifdef CUEMU_ASAN
    {  // its own heap block, with AddressSanitizer's redzone right after it
        auto& s = ::cuemu::shared_array<float[4], 16>([] {});
        CHECK(!__asan_address_is_poisoned(&s[3]));
        CHECK(__asan_address_is_poisoned(&s[3] + 1));
    }
#endif
    cudaFree(d);
}
