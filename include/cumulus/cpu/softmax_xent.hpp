// Softmax, log-softmax and the fused softmax cross-entropy on the CPU.
//
// Every row is shifted by its maximum before exp, so logits of any magnitude
// are safe; the sum of exponentials, the log-sum-exp and the loss are kept in
// double. The row maximum is the element argmax picks (first maximum, NaN
// wins), so a NaN in a row makes that row's outputs NaN rather than hiding it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <cumulus/core/error.hpp>
#include <cumulus/core/parallel.hpp>
#include <cumulus/cpu/reduce.hpp>

namespace cumulus::cpu {

// What the fused loss returns for a batch.
struct XentResult {
    double loss_sum;        // loss summed over rows; the caller divides
    std::int64_t correct;   // rows whose argmax equals the label
};

namespace detail {

inline constexpr std::int64_t kSoftmaxGrain = 16384;
// Rows per partial loss: a fixed split, so the sum is the same on any thread count.
inline constexpr std::int64_t kXentChunk = 4096;

inline void check_rows_cols(const char* op, std::int64_t rows, std::int64_t cols) {
    CUMULUS_CHECK(rows >= 0, op, ": negative rows ", rows);
    CUMULUS_CHECK(rows == 0 || cols >= 1, op, ": cols ", cols, " must be >= 1");
}

// Runs row_fn(r, loss, correct) over all rows in fixed chunks; the chunk
// partials are combined in order.
template <typename RowFn>
XentResult xent_over_rows(std::int64_t rows, std::int64_t cols, RowFn&& row_fn) {
    const std::int64_t chunk_rows = std::max<std::int64_t>(1, kXentChunk / std::max<std::int64_t>(cols, 1));
    const std::int64_t chunks = (rows + chunk_rows - 1) / chunk_rows;
    std::vector<XentResult> partial(static_cast<std::size_t>(chunks), XentResult{0.0, 0});
    parallel_for(
        chunks,
        [&](std::int64_t b, std::int64_t e, int) {
            for (std::int64_t k = b; k < e; ++k) {
                XentResult acc{0.0, 0};
                const std::int64_t r_end = std::min(rows, (k + 1) * chunk_rows);
                for (std::int64_t r = k * chunk_rows; r < r_end; ++r) row_fn(r, acc.loss_sum, acc.correct);
                partial[static_cast<std::size_t>(k)] = acc;
            }
        },
        rows * cols >= kSoftmaxGrain ? 0 : 1);
    XentResult total{0.0, 0};
    for (const XentResult& p : partial) {
        total.loss_sum += p.loss_sum;
        total.correct += p.correct;
    }
    return total;
}

}  // namespace detail

// probs[r, :] = softmax(logits[r, :]).   (rows, cols); probs == logits is allowed.
template <typename T>
void softmax(const T* logits, T* probs, std::int64_t rows, std::int64_t cols) {
    detail::check_rows_cols("softmax", rows, cols);
    parallel_for(
        rows,
        [&](std::int64_t b, std::int64_t e, int) {
            for (std::int64_t r = b; r < e; ++r) {
                const T* x = logits + r * cols;
                T* p = probs + r * cols;
                const T m = x[detail::argmax_row(x, cols)];
                double s = 0;
                for (std::int64_t c = 0; c < cols; ++c) {
                    p[c] = std::exp(x[c] - m);
                    s += static_cast<double>(p[c]);
                }
                const double inv = 1.0 / s;
                for (std::int64_t c = 0; c < cols; ++c) p[c] = static_cast<T>(static_cast<double>(p[c]) * inv);
            }
        },
        rows * cols >= detail::kSoftmaxGrain ? 0 : 1);
}

// out[r, :] = log_softmax(logits[r, :]) = x - max - log(sum exp(x - max)).
// out == logits is allowed.
template <typename T>
void log_softmax(const T* logits, T* out, std::int64_t rows, std::int64_t cols) {
    detail::check_rows_cols("log_softmax", rows, cols);
    parallel_for(
        rows,
        [&](std::int64_t b, std::int64_t e, int) {
            for (std::int64_t r = b; r < e; ++r) {
                const T* x = logits + r * cols;
                T* o = out + r * cols;
                const T m = x[detail::argmax_row(x, cols)];
                double s = 0;
                for (std::int64_t c = 0; c < cols; ++c) s += static_cast<double>(std::exp(x[c] - m));
                // (x - m) first: exact for float inputs and kept small, so the
                // result is accurate relative to itself even when |m| is huge.
                const double log_s = std::log(s), dm = static_cast<double>(m);
                for (std::int64_t c = 0; c < cols; ++c) o[c] = static_cast<T>((static_cast<double>(x[c]) - dm) - log_s);
            }
        },
        rows * cols >= detail::kSoftmaxGrain ? 0 : 1);
}

// Fused softmax cross-entropy with integer labels (int32, int64, uint8, ...).
//   loss_sum = sum_r (logsumexp(logits[r, :]) - logits[r, label[r]])
//   dlogits  = (softmax(logits) - onehot(labels)) / grad_rows, the gradient
//              of loss_sum / grad_rows; skipped when dlogits is null.
//   correct  = #rows with argmax(logits[r, :]) == label[r]
// Labels outside [0, cols) throw cumulus::Error before anything is written.
// dlogits == logits is allowed.
template <typename T, typename L>
XentResult softmax_xent(const T* logits, const L* labels, T* dlogits, std::int64_t rows, std::int64_t cols,
                        std::int64_t grad_rows) {
    detail::check_rows_cols("softmax_xent", rows, cols);
    CUMULUS_CHECK(dlogits == nullptr || grad_rows > 0, "softmax_xent: grad_rows must be > 0, got ", grad_rows);
    for (std::int64_t r = 0; r < rows; ++r) detail::checked_label(labels, r, cols, "softmax_xent");
    const double inv_rows = dlogits ? 1.0 / static_cast<double>(grad_rows) : 0.0;
    return detail::xent_over_rows(rows, cols, [&](std::int64_t r, double& loss, std::int64_t& correct) {
        const T* x = logits + r * cols;
        const auto label = static_cast<std::int64_t>(labels[r]);
        const std::int64_t am = detail::argmax_row(x, cols);
        const T m = x[am];
        // Read before the loop below may overwrite x (in-place gradient).
        const double x_label = static_cast<double>(x[label]);
        double s = 0;
        if (dlogits) {
            T* g = dlogits + r * cols;
            for (std::int64_t c = 0; c < cols; ++c) {
                g[c] = std::exp(x[c] - m);
                s += static_cast<double>(g[c]);
            }
            const double scale = inv_rows / s;
            for (std::int64_t c = 0; c < cols; ++c)
                g[c] = static_cast<T>(static_cast<double>(g[c]) * scale - (c == label ? inv_rows : 0.0));
        } else {
            for (std::int64_t c = 0; c < cols; ++c) s += static_cast<double>(std::exp(x[c] - m));
        }
        loss += std::log(s) - (x_label - static_cast<double>(m));
        correct += am == label;
    });
}

// Fused softmax cross-entropy with probability targets (rows that sum to 1).
//   loss_sum = sum_r sum_c -targets[r, c] * log_softmax(logits[r, :])[c]
//              (terms with a zero target are skipped: 0 * log 0 = 0)
//   dlogits  = (softmax(logits) * sum_c targets[r, c] - targets) / grad_rows,
//              the exact gradient of loss_sum / grad_rows; it is
//              (softmax - targets) / grad_rows when the targets sum to 1.
//   correct  = #rows with argmax(logits[r, :]) == argmax(targets[r, :])
// dlogits == logits is allowed.
template <typename T>
XentResult softmax_xent_onehot(const T* logits, const T* targets, T* dlogits, std::int64_t rows, std::int64_t cols,
                               std::int64_t grad_rows) {
    detail::check_rows_cols("softmax_xent_onehot", rows, cols);
    CUMULUS_CHECK(dlogits == nullptr || grad_rows > 0, "softmax_xent_onehot: grad_rows must be > 0, got ",
                  grad_rows);
    const double inv_rows = dlogits ? 1.0 / static_cast<double>(grad_rows) : 0.0;
    return detail::xent_over_rows(rows, cols, [&](std::int64_t r, double& loss, std::int64_t& correct) {
        const T* x = logits + r * cols;
        const T* t = targets + r * cols;
        const std::int64_t am = detail::argmax_row(x, cols);
        const T m = x[am];
        correct += am == detail::argmax_row(t, cols);
        // loss = tsum * log(s) - sum_c t_c * (x_c - m); gathered in the same
        // pass as s, before an in-place gradient overwrites x.
        double s = 0, tsum = 0, dot = 0;
        T* g = dlogits ? dlogits + r * cols : nullptr;
        for (std::int64_t c = 0; c < cols; ++c) {
            const double tc = static_cast<double>(t[c]);
            if (tc != 0) {
                tsum += tc;
                dot += tc * (static_cast<double>(x[c]) - static_cast<double>(m));
            }
            const T e = std::exp(x[c] - m);
            s += static_cast<double>(e);
            if (g) g[c] = e;
        }
        if (g) {
            const double scale = tsum * inv_rows / s;
            for (std::int64_t c = 0; c < cols; ++c)
                g[c] = static_cast<T>(static_cast<double>(g[c]) * scale - static_cast<double>(t[c]) * inv_rows);
        }
        loss += tsum * std::log(s) - dot;
    });
}

}  // namespace cumulus::cpu
