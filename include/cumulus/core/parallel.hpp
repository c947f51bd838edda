// A small persistent thread pool for the CPU kernels.
//
// parallel_for(n, f) splits [0, n) into one contiguous range per thread and
// calls f(begin, end, thread_index); the calling thread takes range 0. The
// pool size is CUMULUS_NUM_THREADS when set, else the hardware concurrency.
// Calls from inside a parallel region run serially (no nested parallelism).
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace cumulus {

class ThreadPool {
public:
    explicit ThreadPool(int threads) : size_(std::max(1, threads)) {
        for (int i = 1; i < size_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
    }
    ~ThreadPool() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            stop_ = true;
            ++generation_;
        }
        cv_.notify_all();
        for (auto& t : workers_) t.join();
    }
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return size_; }

    static ThreadPool& global() {
        static ThreadPool pool(default_threads());
        return pool;
    }

    static int default_threads() {
        if (const char* s = std::getenv("CUMULUS_NUM_THREADS")) {
            int n = std::atoi(s);
            if (n > 0) return n;
        }
        unsigned hc = std::thread::hardware_concurrency();
        return hc ? static_cast<int>(hc) : 1;
    }

    // Runs f(begin, end, thread) over `parts` near-equal ranges of [0, n).
    template <typename F>
    void parallel_for(std::int64_t n, F&& f, int parts = 0) {
        if (n <= 0) return;
        if (parts <= 0) parts = size_;
        parts = static_cast<int>(std::min<std::int64_t>(std::min(parts, size_), n));
        if (parts <= 1 || in_region()) {
            f(std::int64_t{0}, n, 0);
            return;
        }
        std::function<void(int)> task = [&](int p) {
            std::int64_t b = n * p / parts, e = n * (p + 1) / parts;
            if (b < e) f(b, e, p);
        };
        run(task, parts);
    }

private:
    static bool& in_region() {
        thread_local bool flag = false;
        return flag;
    }

    void run(const std::function<void(int)>& task, int parts) {
        std::unique_lock<std::mutex> call_lock(call_mu_);  // one parallel region at a time
        {
            std::lock_guard<std::mutex> lock(mu_);
            task_ = &task;
            parts_ = parts;
            pending_.store(parts - 1, std::memory_order_relaxed);
            error_ = nullptr;
            ++generation_;
        }
        cv_.notify_all();
        in_region() = true;
        std::exception_ptr mine;
        try {
            task(0);
        } catch (...) {
            mine = std::current_exception();
        }
        in_region() = false;
        {
            std::unique_lock<std::mutex> lock(mu_);
            done_cv_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
            task_ = nullptr;
        }
        if (mine) std::rethrow_exception(mine);
        if (error_) std::rethrow_exception(error_);
    }

    void worker_loop(int index) {
        std::uint64_t seen = 0;
        in_region() = true;
        for (;;) {
            const std::function<void(int)>* task;
            {
                std::unique_lock<std::mutex> lock(mu_);
                cv_.wait(lock, [&] { return generation_ != seen; });
                seen = generation_;
                if (stop_) return;
                if (index >= parts_) continue;
                task = task_;
            }
            try {
                (*task)(index);
            } catch (...) {
                std::lock_guard<std::mutex> lock(mu_);
                if (!error_) error_ = std::current_exception();
            }
            if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                std::lock_guard<std::mutex> lock(mu_);
                done_cv_.notify_one();
            }
        }
    }

    int size_;
    std::vector<std::thread> workers_;
    std::mutex call_mu_;
    std::mutex mu_;
    std::condition_variable cv_, done_cv_;
    const std::function<void(int)>* task_ = nullptr;
    int parts_ = 0;
    std::atomic<int> pending_{0};
    std::uint64_t generation_ = 0;
    bool stop_ = false;
    std::exception_ptr error_;
};

template <typename F>
void parallel_for(std::int64_t n, F&& f, int parts = 0) {
    ThreadPool::global().parallel_for(n, std::forward<F>(f), parts);
}

}  // namespace cumulus
