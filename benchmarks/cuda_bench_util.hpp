// What the CUDA benchmark programs share: the registration that turns an
// error into a failed benchmark, the device check, random device data, and
// event timing of kReps launches after a warm-up.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include <cumulus/core/random.hpp>
#include <cumulus/core/tensor.hpp>
#include <cumulus/cuda.hpp>

namespace cuda_bench {

inline constexpr int kReps = 20;

// Runs one benchmark. An exception (a CUDA, cuBLAS or cuDNN error, which the
// checks throw) marks this benchmark failed with its message, as
// SkipWithError does, instead of ending the program: the benchmarks after it
// still run and the JSON is complete, so one failing case costs a GPU run
// one figure, not all of them.
template <void (*Fn)(benchmark::State&)>
void guarded(benchmark::State& state) {
    try {
        Fn(state);
    } catch (const std::exception& e) {
        state.SkipWithError(e.what());
    }
}

}  // namespace cuda_bench

// BENCHMARK(fn), through cuda_bench::guarded, under fn's own name.
#define CUDA_BENCHMARK(fn) BENCHMARK(::cuda_bench::guarded<fn>)->Name(#fn)

namespace cuda_bench {

// False (and the benchmark marked as failed, with the reason) when there is no usable device.
inline bool have_device(benchmark::State& state) {
    const std::string why = cumulus::cuda::unavailable_reason();
    if (!why.empty()) {
        state.SkipWithError(("no CUDA device: " + why).c_str());
        return false;
    }
    return true;
}

// n floats uniform in [lo, hi) on the device, [-1, 1) by default (not zeros: they can time faster than real data).
inline cumulus::Tensor<float> random_device(std::int64_t n, std::uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
    cumulus::Philox rng(seed, 0);
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = rng.uniform(lo, hi);
    return cumulus::Tensor<float>::from_vector(cumulus::Shape{n}, v).to(cumulus::Device::cuda(0));
}

// One thread that keeps its stream busy for about ns nanoseconds (the
// GPU's global timer). Nothing on the CPU emulation, whose streams queue
// their work until a synchronization anyway.
template <int = 0>
__global__ void busy_wait_kernel(unsigned long long ns) {
#ifdef __CUDA_ARCH__
    unsigned long long start = 0, now = 0;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do {
        __nanosleep(1000);
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    } while (now - start < ns);
#else
    (void)ns;
#endif
}

// Warm-up, then per iteration the mean time of kReps launches of fn, from
// CUDA events. Each iteration's launches queue behind a busy wait longer
// than the host takes to issue them, so that the events time the GPU's
// work, not the rate at which the host (or a library's host side, as
// cuDNN's or cuBLAS's) issues it: for a kernel of a few microseconds the
// two are alike. The counter host_bound is the share of iterations where
// the wait ran out before the last launch was issued (the wait is then
// doubled); tools/gpu-summary reports any.
template <typename Fn>
void time_device(benchmark::State& state, Fn&& fn) {
    cudaStream_t s = cumulus::cuda::current_stream();
    for (int i = 0; i < 3; ++i) fn();
    CUMULUS_CUDA_CHECK(cudaStreamSynchronize(s));
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kReps; ++i) fn();
    const double issue_ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    CUMULUS_CUDA_CHECK(cudaStreamSynchronize(s));
    constexpr double kMaxWaitNs = 50e6;
    double wait_ns = std::min(kMaxWaitNs, 2 * issue_ns + 20e3);
    cudaEvent_t a, b;
    CUMULUS_CUDA_CHECK(cudaEventCreate(&a));
    CUMULUS_CUDA_CHECK(cudaEventCreate(&b));
    std::int64_t iterations = 0, host_bound = 0;
    for (auto _ : state) {
        busy_wait_kernel<><<<1, 1, 0, s>>>(static_cast<unsigned long long>(wait_ns));
        CUMULUS_CUDA_CHECK(cudaGetLastError());
        CUMULUS_CUDA_CHECK(cudaEventRecord(a, s));
        for (int i = 0; i < kReps; ++i) fn();
        CUMULUS_CUDA_CHECK(cudaEventRecord(b, s));
        // Not ready: the wait still runs, so every launch was queued before the first began.
        const cudaError_t q = cudaEventQuery(a);
        if (q == cudaSuccess) {
            ++host_bound;
            wait_ns = std::min(kMaxWaitNs, 2 * wait_ns);
        } else if (q == cudaErrorNotReady) {
            if (cudaPeekAtLastError() == cudaErrorNotReady) (void)cudaGetLastError();  // not an error
        } else {
            CUMULUS_CUDA_CHECK(q);
        }
        ++iterations;
        CUMULUS_CUDA_CHECK(cudaEventSynchronize(b));
        float ms = 0;
        CUMULUS_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
        state.SetIterationTime(double(ms) / 1e3 / kReps);
    }
    CUMULUS_CUDA_CHECK(cudaEventDestroy(a));
    CUMULUS_CUDA_CHECK(cudaEventDestroy(b));
    state.counters["host_bound"] = iterations ? double(host_bound) / double(iterations) : 0.0;
}

}  // namespace cuda_bench
