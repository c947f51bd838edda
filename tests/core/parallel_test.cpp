#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include <cumulus/core/error.hpp>
#include <cumulus/core/parallel.hpp>

using cumulus::ThreadPool;

namespace {

struct Call {
    std::int64_t begin, end;
    int thread;
};

// Runs pool.parallel_for(n, ..., parts) and returns every call it made.
std::vector<Call> record(ThreadPool& pool, std::int64_t n, int parts = 0) {
    std::mutex mu;
    std::vector<Call> calls;
    pool.parallel_for(
        n,
        [&](std::int64_t b, std::int64_t e, int t) {
            std::lock_guard<std::mutex> lock(mu);
            calls.push_back({b, e, t});
        },
        parts);
    std::sort(calls.begin(), calls.end(), [](const Call& a, const Call& b) { return a.begin < b.begin; });
    return calls;
}

// The calls tile [0, n) with non-empty, contiguous, non-overlapping ranges.
bool tiles(const std::vector<Call>& calls, std::int64_t n) {
    std::int64_t next = 0;
    for (const auto& c : calls) {
        if (c.begin != next || c.end <= c.begin) return false;
        next = c.end;
    }
    return next == n;
}

}  // namespace

TEST_CASE("parallel_for covers every index exactly once") {
    ThreadPool pool(4);  // more threads than CI has cores, on purpose
    CHECK(pool.size() == 4);
    for (std::int64_t n : {1, 2, 3, 4, 5, 7, 64, 1000, 100003}) {
        CAPTURE(n);
        std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
        pool.parallel_for(n, [&](std::int64_t b, std::int64_t e, int) {
            for (std::int64_t i = b; i < e; ++i) hits[static_cast<std::size_t>(i)].fetch_add(1);
        });
        bool once = std::all_of(hits.begin(), hits.end(), [](const std::atomic<int>& h) { return h.load() == 1; });
        CHECK(once);

        auto calls = record(pool, n);
        CHECK(tiles(calls, n));
        CHECK(calls.size() == static_cast<std::size_t>(std::min<std::int64_t>(n, 4)));
        std::set<int> threads;
        for (const auto& c : calls) threads.insert(c.thread);
        CHECK(threads.size() == calls.size());  // one range per thread index
        CHECK(*threads.begin() >= 0);
        CHECK(*threads.rbegin() < pool.size());
    }
    CHECK(record(pool, 0).empty());
    CHECK(record(pool, -5).empty());
}

TEST_CASE("parallel_for: the ranges run on different threads, range 0 on the caller") {
    ThreadPool pool(3);
    std::mutex mu;
    std::set<std::thread::id> ids;
    std::thread::id first;
    int first_index = -1;
    pool.parallel_for(3, [&](std::int64_t b, std::int64_t, int t) {
        std::lock_guard<std::mutex> lock(mu);
        ids.insert(std::this_thread::get_id());
        if (b == 0) {
            first = std::this_thread::get_id();
            first_index = t;
        }
    });
    CHECK(first_index == 0);
    CHECK(ids.size() == 3);
    CHECK(first == std::this_thread::get_id());
}

TEST_CASE("parallel_for: parts limits the number of ranges") {
    ThreadPool pool(4);
    auto one = record(pool, 100, 1);
    REQUIRE(one.size() == 1);
    CHECK(one[0].begin == 0);
    CHECK(one[0].end == 100);
    CHECK(one[0].thread == 0);

    auto three = record(pool, 100, 3);
    CHECK(three.size() == 3);
    CHECK(tiles(three, 100));

    auto many = record(pool, 100, 64);  // capped at the pool size
    CHECK(many.size() == 4);
    CHECK(tiles(many, 100));

    ThreadPool single(1);
    auto s = record(single, 50);
    REQUIRE(s.size() == 1);
    CHECK(s[0].end == 50);
}

TEST_CASE("parallel_for propagates an exception and the pool stays usable") {
    ThreadPool pool(4);
    // Thrown by a worker's range (the last one) ...
    CHECK_THROWS_WITH_AS(pool.parallel_for(100,
                                           [](std::int64_t, std::int64_t e, int) {
                                               if (e == 100) CUMULUS_FAIL("bad row ", e - 1);
                                           }),
                         "bad row 99", cumulus::Error);
    // ... by the caller's range ...
    CHECK_THROWS_AS(pool.parallel_for(100,
                                      [](std::int64_t b, std::int64_t, int) {
                                          if (b == 0) throw std::out_of_range("first");
                                      }),
                    std::out_of_range);
    // ... and by every range at once.
    CHECK_THROWS_AS(pool.parallel_for(100, [](std::int64_t, std::int64_t, int) { throw std::runtime_error("all"); }),
                    std::runtime_error);

    auto calls = record(pool, 1000);
    CHECK(tiles(calls, 1000));
    CHECK(calls.size() == 4);
}

TEST_CASE("parallel_for: a nested call runs serially on the calling thread") {
    ThreadPool pool(4);
    std::atomic<int> inner_calls{0}, bad{0};
    std::atomic<std::int64_t> inner_sum{0};
    pool.parallel_for(4, [&](std::int64_t, std::int64_t, int) {
        auto me = std::this_thread::get_id();
        pool.parallel_for(10, [&](std::int64_t b, std::int64_t e, int t) {
            ++inner_calls;
            if (b != 0 || e != 10 || t != 0 || std::this_thread::get_id() != me) ++bad;
            for (std::int64_t i = b; i < e; ++i) inner_sum += i;
        });
    });
    CHECK(inner_calls == 4);  // one whole-range call per outer range
    CHECK(bad == 0);
    CHECK(inner_sum == 4 * 45);

    // After the region the caller is parallel again.
    CHECK(record(pool, 100).size() == 4);
}

TEST_CASE("parallel_for: many back-to-back regions") {
    ThreadPool pool(4);
    std::int64_t total = 0;
    for (int round = 0; round < 2000; ++round) {
        std::atomic<std::int64_t> sum{0};
        std::int64_t n = 1 + round % 37;
        pool.parallel_for(n, [&](std::int64_t b, std::int64_t e, int) {
            std::int64_t s = 0;
            for (std::int64_t i = b; i < e; ++i) s += i;
            sum += s;
        });
        REQUIRE(sum == n * (n - 1) / 2);
        total += sum;
    }
    CHECK(total > 0);
}

TEST_CASE("the global pool and the free parallel_for") {
    auto& pool = ThreadPool::global();
    CHECK(&pool == &ThreadPool::global());
    CHECK(pool.size() >= 1);
    CHECK(ThreadPool::default_threads() >= 1);
    std::vector<std::atomic<int>> hits(777);
    std::atomic<int> bad_thread{0};
    cumulus::parallel_for(777, [&](std::int64_t b, std::int64_t e, int t) {
        if (t < 0 || t >= pool.size()) ++bad_thread;
        for (std::int64_t i = b; i < e; ++i) hits[static_cast<std::size_t>(i)] += 1;
    });
    CHECK(bad_thread == 0);
    CHECK(std::all_of(hits.begin(), hits.end(), [](const std::atomic<int>& h) { return h.load() == 1; }));
}
