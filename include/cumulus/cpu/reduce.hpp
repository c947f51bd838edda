// Reductions on the CPU: the bias gradient (column sums), row argmax, the
// count of correct predictions, and a full sum.
//
// Sums run in double over fixed-size chunks that are combined in chunk order,
// so a result does not depend on the number of threads.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include <cumulus/core/error.hpp>
#include <cumulus/core/parallel.hpp>

namespace cumulus::cpu {

namespace detail {

inline constexpr std::int64_t kReduceGrain = 32768;
// Elements per partial sum: small enough to parallelise, large enough that
// the partials cost nothing.
inline constexpr std::int64_t kSumChunk = 8192;

// bias_grad splits rows this narrow into row chunks, wider ones into column blocks.
inline constexpr std::int64_t kBiasGradNarrow = 64;

inline int reduce_parts(std::int64_t work) { return work >= kReduceGrain ? 0 : 1; }

// Index of the largest element of x[0..n), n >= 1: the first maximum, and a
// NaN counts as larger than everything (the first NaN wins), as numpy.argmax.
template <typename T>
std::int64_t argmax_row(const T* x, std::int64_t n) {
    T best = x[0];
    if (best != best) return 0;
    std::int64_t at = 0;
    for (std::int64_t c = 1; c < n; ++c) {
        const T v = x[c];
        if (v > best) {
            best = v;
            at = c;
        } else if (v != v) {
            return c;
        }
    }
    return at;
}

// Sum of x[0..n) in double; eight independent lanes vectorise without
// reassociating and shorten the error chains.
template <typename T>
double sum_serial(const T* x, std::int64_t n) {
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; ++j) lane[j] += static_cast<double>(x[i + j]);
    double tail = 0;
    for (; i < n; ++i) tail += static_cast<double>(x[i]);
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7])) + tail;
}

// Pairwise sum of partials (in their order), so the combine adds O(log n) error.
inline double sum_pairwise(const double* p, std::int64_t n) {
    if (n <= 8) {
        double s = 0;
        for (std::int64_t i = 0; i < n; ++i) s += p[i];
        return s;
    }
    const std::int64_t h = n / 2;
    return sum_pairwise(p, h) + sum_pairwise(p + h, n - h);
}

template <typename L>
std::int64_t checked_label(const L* labels, std::int64_t r, std::int64_t cols, const char* op) {
    static_assert(std::is_integral_v<L>, "labels must be an integer type");
    const auto label = static_cast<std::int64_t>(labels[r]);
    CUMULUS_CHECK(label >= 0 && label < cols, op, ": label ", label, " of row ", r, " is out of range [0, ", cols,
                  ")");
    return label;
}

}  // namespace detail

// db[c] (+)= sum_r dy[r, c].   dy: (rows, cols), db: (cols)
// Summed in double; with accumulate the previous db is added once at the end.
template <typename T>
void bias_grad(const T* dy, T* db, std::int64_t rows, std::int64_t cols, bool accumulate = false) {
    CUMULUS_CHECK(rows >= 0 && cols >= 0, "bias_grad: negative shape (", rows, ", ", cols, ")");
    if (cols == 0) return;
    auto store = [&](std::int64_t c, double s) {
        db[c] = accumulate ? static_cast<T>(static_cast<double>(db[c]) + s) : static_cast<T>(s);
    };
    if (cols >= detail::kBiasGradNarrow) {
        // Wide rows: each column block runs down all rows; no partials needed.
        constexpr std::int64_t kBlock = 256;
        parallel_for(
            (cols + kBlock - 1) / kBlock,
            [&](std::int64_t b, std::int64_t e, int) {
                for (std::int64_t blk = b; blk < e; ++blk) {
                    const std::int64_t c0 = blk * kBlock, w = std::min(kBlock, cols - c0);
                    double acc[kBlock];
                    for (std::int64_t c = 0; c < w; ++c) acc[c] = 0;
                    for (std::int64_t r = 0; r < rows; ++r) {
                        const T* row = dy + r * cols + c0;
                        for (std::int64_t c = 0; c < w; ++c) acc[c] += static_cast<double>(row[c]);
                    }
                    for (std::int64_t c = 0; c < w; ++c) store(c0 + c, acc[c]);
                }
            },
            detail::reduce_parts(rows * cols));
        return;
    }
    // Narrow rows (e.g. 10 classes): row chunks of about kSumChunk elements,
    // one vector of column partials each, combined in chunk order.
    const std::int64_t chunk_rows = std::max<std::int64_t>(1, detail::kSumChunk / cols);
    const std::int64_t chunks = (rows + chunk_rows - 1) / chunk_rows;
    std::vector<double> partial(static_cast<std::size_t>(chunks * cols), 0.0);
    parallel_for(
        chunks,
        [&](std::int64_t b, std::int64_t e, int) {
            for (std::int64_t k = b; k < e; ++k) {
                double* acc = partial.data() + k * cols;
                const std::int64_t r_end = std::min(rows, (k + 1) * chunk_rows);
                for (std::int64_t r = k * chunk_rows; r < r_end; ++r) {
                    const T* row = dy + r * cols;
                    for (std::int64_t c = 0; c < cols; ++c) acc[c] += static_cast<double>(row[c]);
                }
            }
        },
        detail::reduce_parts(rows * cols));
    for (std::int64_t c = 0; c < cols; ++c) {
        double s = 0;
        for (std::int64_t k = 0; k < chunks; ++k) s += partial[static_cast<std::size_t>(k * cols + c)];
        store(c, s);
    }
}

// out[r] = argmax_c x[r, c]: the first maximum; a NaN counts as the maximum
// (numpy.argmax).   x: (rows, cols), cols >= 1
template <typename T>
void argmax_rows(const T* x, std::int32_t* out, std::int64_t rows, std::int64_t cols) {
    CUMULUS_CHECK(rows >= 0, "argmax_rows: negative rows ", rows);
    if (rows == 0) return;
    CUMULUS_CHECK(cols >= 1 && cols <= std::numeric_limits<std::int32_t>::max(), "argmax_rows: cols ", cols,
                  " must be in [1, 2^31)");
    parallel_for(
        rows,
        [&](std::int64_t b, std::int64_t e, int) {
            for (std::int64_t r = b; r < e; ++r)
                out[r] = static_cast<std::int32_t>(detail::argmax_row(x + r * cols, cols));
        },
        detail::reduce_parts(rows * cols));
}

// The number of rows whose argmax (as argmax_rows) equals the label.
// Labels (int32, int64, uint8, ...) outside [0, cols) throw cumulus::Error.
template <typename T, typename L>
std::int64_t count_correct(const T* logits, const L* labels, std::int64_t rows, std::int64_t cols) {
    CUMULUS_CHECK(rows >= 0, "count_correct: negative rows ", rows);
    if (rows == 0) return 0;
    CUMULUS_CHECK(cols >= 1, "count_correct: cols ", cols, " must be >= 1");
    for (std::int64_t r = 0; r < rows; ++r) detail::checked_label(labels, r, cols, "count_correct");
    const std::int64_t chunk_rows = std::max<std::int64_t>(1, detail::kSumChunk / cols);
    const std::int64_t chunks = (rows + chunk_rows - 1) / chunk_rows;
    std::vector<std::int64_t> hits(static_cast<std::size_t>(chunks), 0);
    parallel_for(
        chunks,
        [&](std::int64_t b, std::int64_t e, int) {
            for (std::int64_t k = b; k < e; ++k) {
                std::int64_t h = 0;
                const std::int64_t r_end = std::min(rows, (k + 1) * chunk_rows);
                for (std::int64_t r = k * chunk_rows; r < r_end; ++r)
                    h += detail::argmax_row(logits + r * cols, cols) == static_cast<std::int64_t>(labels[r]);
                hits[static_cast<std::size_t>(k)] = h;
            }
        },
        detail::reduce_parts(rows * cols));
    std::int64_t total = 0;
    for (std::int64_t h : hits) total += h;
    return total;
}

// sum_i x[i] in double.
template <typename T>
double sum(const T* x, std::int64_t n) {
    CUMULUS_CHECK(n >= 0, "sum: negative size ", n);
    if (n <= detail::kSumChunk) return detail::sum_serial(x, n);
    const std::int64_t chunks = (n + detail::kSumChunk - 1) / detail::kSumChunk;
    std::vector<double> partial(static_cast<std::size_t>(chunks));
    parallel_for(
        chunks,
        [&](std::int64_t b, std::int64_t e, int) {
            for (std::int64_t k = b; k < e; ++k) {
                const std::int64_t lo = k * detail::kSumChunk, hi = std::min(n, lo + detail::kSumChunk);
                partial[static_cast<std::size_t>(k)] = detail::sum_serial(x + lo, hi - lo);
            }
        },
        detail::reduce_parts(n));
    return detail::sum_pairwise(partial.data(), chunks);
}

}  // namespace cumulus::cpu
