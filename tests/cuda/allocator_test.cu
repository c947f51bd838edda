// The caching allocator: freed blocks are reused without cudaMalloc, sizes
// are rounded so that close sizes share blocks, tensors copy to and from the
// device exactly, errors name what failed, a graph capture refuses work that
// allocates or frees device blocks (on its own thread: other threads may),
// blocks stay with their stream, and a cuda::Stream hands its blocks on.
#include <string>
#include <thread>
#include <vector>

#include <cumulus/cuda.hpp>

#include "cuda_test_util.hpp"

using namespace cumulus;
using cuda_test::expect;

int main() {
    // Host-only checks first: they hold with or without a device.
    expect(cuda::CachingAllocator::round_size(1) == 512 && cuda::CachingAllocator::round_size(513) == 1024,
           "small sizes round to 512 bytes");
    expect(cuda::CachingAllocator::round_size((1 << 20) + 1) == (std::size_t(2) << 20),
           "large sizes round to 2 MiB");
    {
        std::string msg;
        try {
            CUMULUS_CUDA_CHECK(cudaErrorInvalidValue);
        } catch (const Error& e) {
            msg = e.what();
        }
        expect(msg.find("cudaErrorInvalidValue") != std::string::npos && msg.find("allocator_test.cu") != std::string::npos,
               "CUMULUS_CUDA_CHECK names the error and the file: " + msg);
    }
    if (cuda_test::no_device()) return cuda_test::failures ? 1 : cuda_test::kSkip;
    try {
        auto& a = cuda::CachingAllocator::instance();
        const Device gpu = Device::cuda(0);
        {
            auto t = Tensor<float>::empty(Shape{1000}, gpu);
            (void)t;
        }
        const auto s0 = a.stats();
        for (int i = 0; i < 100; ++i) {
            auto t = Tensor<float>::empty(Shape{1000 + i}, gpu);  // same 512-byte class up to 4096 bytes
            auto u = Tensor<float>::empty(Shape{3, 300000}, gpu);
            (void)t;
            (void)u;
        }
        const auto s1 = a.stats();
        expect(s1.device_mallocs - s0.device_mallocs <= 2,
               "100 rounds of two allocations: " + std::to_string(s1.device_mallocs - s0.device_mallocs) +
                   " cudaMalloc calls (at most 2)");
        expect(s1.cache_hits - s0.cache_hits >= 198, "the rest were cache hits");

        // Round trips, every byte.
        Philox rng(3, 0);
        std::vector<float> v = cuda_test::random_floats(123457, rng);
        auto d = Tensor<float>::from_vector(Shape{123457}, v).to(gpu);
        auto d2 = d.clone();
        expect(d2.device() == gpu && d2.to_vector() == v, "host -> device -> device -> host round trip");
        auto back = d.to(Device::cpu());
        expect(back.device().is_cpu() && back.to_vector() == v, "Tensor::to(cpu)");
        auto z = Tensor<float>::zeros(Shape{17}, gpu);
        expect(z.to_vector() == std::vector<float>(17, 0.0f), "zeros on the device");

        // A device that does not exist is an error, not a crash.
        bool threw = false;
        try {
            auto bad = Tensor<float>::empty(Shape{4}, Device::cuda(cuda::device_count() + 3));
        } catch (const Error&) {
            threw = true;
        }
        expect(threw, "a missing device index throws");

        // A graph capture refuses work that allocates (cudaMalloc is not
        // capturable) or frees a block (the graph would keep using memory
        // the cache hands out again), and keeps work that does neither.
        {  // two cached blocks of the size below: one for `kept`, one for the temporary
            auto w1 = Tensor<float>::empty(Shape{300}, gpu);
            auto w2 = Tensor<float>::empty(Shape{300}, gpu);
        }
        auto kept = Tensor<float>::zeros(Shape{300}, gpu);
        cudaStream_t stream = cuda::library_stream(0);
        auto capture_error = [&](auto&& fn) {
            cuda::Graph g;
            try {
                g.capture(stream, fn);
            } catch (const Error& e) {
                return std::string(e.what());
            }
            return std::string(g.captured() ? "" : "nothing captured");
        };
        const std::string freed = capture_error([&] {
            auto tmp = Tensor<float>::empty(Shape{300}, gpu);  // from the cache, back to it at the end
            cuda::scale(tmp.data(), 2.0f, tmp.numel(), stream);
        });
        expect(freed.find("freed 1 device block") != std::string::npos,
               "a capture that frees a temporary is refused: " + freed);
        const std::string clean = capture_error([&] { cuda::scale(kept.data(), 2.0f, kept.numel(), stream); });
        expect(clean.empty(), "a capture on persistent buffers succeeds: " + clean);
        // Only the capturing thread's allocations and frees count: another
        // thread may cudaMalloc and free during the capture (thread-local mode).
        {
            const auto mine0 = cuda::CachingAllocator::this_thread_stats();
            cuda::CachingAllocator::ThreadStats theirs{};
            std::int64_t mallocs_before = a.stats().device_mallocs, mallocs_during = 0;
            const std::string other = capture_error([&] {
                std::thread t([&] {
                    {
                        auto fresh = Tensor<float>::empty(Shape{3001}, gpu);  // a size no list holds: cudaMalloc
                    }  // and a free
                    theirs = cuda::CachingAllocator::this_thread_stats();
                });
                t.join();
                mallocs_during = a.stats().device_mallocs - mallocs_before;
                cuda::scale(kept.data(), 2.0f, kept.numel(), stream);
            });
            const auto mine1 = cuda::CachingAllocator::this_thread_stats();
            expect(mallocs_during == 1 && theirs.device_mallocs == 1 && theirs.releases == 1,
                   "the other thread allocated and freed during the capture, and its own counts say so");
            expect(mine1.device_mallocs == mine0.device_mallocs && mine1.releases == mine0.releases,
                   "another thread's allocation is not counted as this thread's");
            expect(other.empty(), "a capture is not refused for another thread's allocation: " + other);
        }

        // A block belongs to the stream it was allocated on: freed, it is not
        // handed to work on another stream (which could overtake kernels of
        // the first still using it), and its own stream gets it back.
        {
            a.empty_cache();
            cudaStream_t other = nullptr;
            CUMULUS_CUDA_CHECK(cudaStreamCreateWithFlags(&other, cudaStreamNonBlocking));
            const void* mine = nullptr;
            const void* theirs = nullptr;
            mine = Tensor<float>::empty(Shape{777}, gpu).data();  // freed at once, to the library stream's list
            {
                cuda::StreamGuard on(other);
                const auto before = a.stats();
                auto t = Tensor<float>::empty(Shape{777}, gpu);
                theirs = t.data();
                expect(theirs != mine && a.stats().device_mallocs == before.device_mallocs + 1,
                       "another stream does not get the library stream's freed block");
            }
            expect(Tensor<float>::empty(Shape{777}, gpu).data() == mine, "the library stream gets its block back");
            {
                cuda::StreamGuard on(other);
                expect(Tensor<float>::empty(Shape{777}, gpu).data() == theirs, "the other stream gets its own back");
                cuda::Scratch<float> s(777, cuda::library_stream(0));  // a launcher's scratch for work on a given stream
                expect(s.get() == mine, "a scratch for the library stream's work comes from its list");
            }
            // Before the stream is destroyed, its blocks go to the library stream.
            const void* kept_ptr = nullptr;
            {
                cuda::StreamGuard on(other);
                auto kept_t = Tensor<float>::empty(Shape{777}, gpu);  // lives on, past the stream
                kept_ptr = kept_t.data();
                theirs = Tensor<float>::empty(Shape{777}, gpu).data();  // freed to the stream's list
                a.release_stream(other);
                CUMULUS_CUDA_CHECK(cudaStreamDestroy(other));
                other = nullptr;
                {
                    cuda::StreamGuard lib(cuda::library_stream(0));
                    auto got = Tensor<float>::empty(Shape{777}, gpu);
                    expect(got.data() == theirs, "a released stream's cached block goes to the library stream");
                }
            }  // kept_t is freed here: to the library stream's list
            {
                auto x1 = Tensor<float>::empty(Shape{777}, gpu), x2 = Tensor<float>::empty(Shape{777}, gpu);
                expect((x1.data() == kept_ptr || x2.data() == kept_ptr),
                       "a live block of a released stream returns to the library stream when freed");
            }
            a.empty_cache();
        }

        // A cuda::Stream releases itself: destroyed, its cached blocks go to
        // the library stream, whose next allocation of that size gets one.
        {
            a.empty_cache();
            const void* on_it = nullptr;
            {
                cuda::Stream own;
                expect(own.get() != nullptr && own.get() != cuda::library_stream(0), "a stream of one's own");
                cuda::StreamGuard on(own);
                on_it = Tensor<float>::empty(Shape{555}, gpu).data();  // freed to own's list
                expect(Tensor<float>::empty(Shape{555}, gpu).data() == on_it, "the stream gets its block back");
                on_it = Tensor<float>::empty(Shape{555}, gpu).data();
            }
            cuda::StreamGuard lib(cuda::library_stream(0));
            const auto before = a.stats();
            auto got = Tensor<float>::empty(Shape{555}, gpu);
            expect(got.data() == on_it && a.stats().device_mallocs == before.device_mallocs,
                   "a destroyed cuda::Stream's cached block goes to the library stream");
            cuda::Stream moved_from;
            cuda::Stream moved(std::move(moved_from));
            bool refused = false;
            try {
                (void)moved_from.get();
            } catch (const Error&) {
                refused = true;
            }
            expect(!moved_from.valid() && refused && moved.valid() && moved.get() != nullptr,
                   "a moved cuda::Stream keeps its handle once; the moved-from one refuses to be used");
        }

        a.empty_cache();
        const auto s2 = a.stats();
        expect(s2.bytes_cached == 0, "empty_cache returns every cached block");
    } catch (const std::exception& e) {
        expect(false, std::string("exception: ") + e.what());
    }
    return cuda_test::finish("CUDA caching allocator");
}
