// A CUDA graph helper (as tiny-cuda-nn's cuda_graph.h): capture the work a
// function queues on the current stream once, then replay it.
//
// A captured graph holds raw device pointers. It stays valid only while the
// memory it was captured with belongs to the same tensors: the caller says
// what to watch (watch_live_blocks), and valid() turns false as soon as any
// of those blocks has been freed, so a replay never writes into memory that
// was handed to someone else.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include <cumulus/core/error.hpp>
#include <cumulus/cuda/runtime.cuh>

namespace cumulus::cuda {

class Graph {
public:
    Graph() = default;
    Graph(const Graph&) = delete;
    Graph& operator=(const Graph&) = delete;
    ~Graph() { reset(); }

    // Captures what fn() queues on `stream` (which must not be the legacy
    // default stream). Nothing runs during capture. Throws if fn() allocated
    // device memory with cudaMalloc, freed a device block, or failed; the
    // graph is then empty. The capture is thread-local
    // (cudaStreamCaptureModeThreadLocal) and only this thread's allocations
    // and frees count: other threads may allocate, free and work on other
    // streams meanwhile (a block they free that the graph uses is theirs to
    // answer for; watch_live_blocks tells).
    template <typename Fn>
    void capture(cudaStream_t stream, Fn&& fn) {
        reset();
        // This thread's counts: the capture is thread-local, so other threads
        // (a loader, another model) may allocate and free meanwhile.
        const auto before = CachingAllocator::this_thread_stats();
        cudaGraph_t g = nullptr;
        CUMULUS_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
        try {
            StreamGuard guard(stream);
            fn();
        } catch (...) {
            cudaGraph_t dropped = nullptr;
            (void)cudaStreamEndCapture(stream, &dropped);
            if (dropped) (void)cudaGraphDestroy(dropped);
            (void)cudaGetLastError();
            throw;
        }
        CUMULUS_CUDA_CHECK(cudaStreamEndCapture(stream, &g));
        const auto after = CachingAllocator::this_thread_stats();
        if (after.device_mallocs != before.device_mallocs) {
            CUMULUS_CUDA_CHECK_PRINT(cudaGraphDestroy(g));
            CUMULUS_FAIL("Graph::capture: the captured work allocated new device memory; run it once uncaptured "
                         "first so that every buffer exists");
        }
        // A block freed during capture is baked into the graph yet back in the
        // cache, where anything may get it between replays (or cudaFree it).
        if (after.releases != before.releases) {
            CUMULUS_CUDA_CHECK_PRINT(cudaGraphDestroy(g));
            CUMULUS_FAIL("Graph::capture: the captured work freed ", after.releases - before.releases,
                         " device block(s) (temporaries); give them persistent buffers so that replays own them");
        }
        cudaGraphExec_t exec = nullptr;
        cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
        CUMULUS_CUDA_CHECK_PRINT(cudaGraphDestroy(g));
        CUMULUS_CUDA_CHECK(e);
        exec_ = exec;
        stream_ = stream;
    }

    // Remembers every live device block, so that valid() can tell when one
    // of them is freed. Call right after capture.
    void watch_live_blocks() { watched_ = CachingAllocator::instance().live_blocks(); }

    bool captured() const { return exec_ != nullptr; }

    bool valid() const {
        if (!exec_) return false;
        const auto& a = CachingAllocator::instance();
        for (const auto& [p, id] : watched_)
            if (a.live_id(p) != id) return false;
        return true;
    }

    void replay() {
        CUMULUS_CHECK(exec_ != nullptr, "Graph::replay: nothing captured");
        CUMULUS_CUDA_CHECK(cudaGraphLaunch(exec_, stream_));
    }

    void reset() noexcept {
        if (exec_) CUMULUS_CUDA_CHECK_PRINT(cudaGraphExecDestroy(exec_));
        exec_ = nullptr;
        watched_.clear();
    }

private:
    cudaGraphExec_t exec_ = nullptr;
    cudaStream_t stream_ = nullptr;
    std::vector<std::pair<void*, std::uint64_t>> watched_;
};

}  // namespace cumulus::cuda
