// Softmax and the fused softmax cross-entropy on the GPU, the twins of
// cumulus/cpu/softmax_xent.hpp: one warp per row; the row maximum is the
// element the CPU's argmax picks (first maximum, NaN wins); exp sums, the
// log-sum-exp and the loss in double; per-row losses and hits combined in a
// fixed order, so results do not vary from run to run.
#pragma once

#include <cstdint>
#include <type_traits>

#include <cumulus/core/error.hpp>
#include <cumulus/cpu/softmax_xent.hpp>
#include <cumulus/cuda/reduce.cuh>
#include <cumulus/cuda/runtime.cuh>

namespace cumulus::cuda {

// Device-side running totals of a loss (for fit: the host reads them only to
// report progress).
struct XentTotals {
    double loss_sum;
    long long correct;
    long long bad_labels;  // rows whose label was outside [0, cols)
};

inline constexpr int kXentWarps = 8;  // rows per block

// ---------------------------------------------------------------- kernels

template <typename T>
__global__ void softmax_kernel(const T* logits, T* probs, std::int64_t rows, std::int64_t cols) {
    const int lane = threadIdx.x & 31;
    const std::int64_t r = std::int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
    if (r >= rows) return;
    const T* x = logits + r * cols;
    T* p = probs + r * cols;
    const ArgMax<T> am = warp_argmax_row(x, cols, lane);
    const T m = x[am.index];
    double s = 0;
    for (std::int64_t c = lane; c < cols; c += 32) s += static_cast<double>(device_exp(x[c] - m));
    s = warp_sum(s);
    __syncwarp();  // probs may alias logits: every lane's read of x[am.index] comes before any write
    const double inv = 1.0 / s;
    for (std::int64_t c = lane; c < cols; c += 32) p[c] = static_cast<T>(static_cast<double>(device_exp(x[c] - m)) * inv);
}

// Per block: loss and hits of its kXentWarps rows into partial_loss / partial_hits[blockIdx.x].
template <typename T, typename L>
__global__ void softmax_xent_kernel(const T* logits, const L* labels, T* dlogits, std::int64_t rows,
                                    std::int64_t cols, double inv_rows, double* partial_loss,
                                    long long* partial_hits, long long* partial_bad) {
    __shared__ double loss_s[kXentWarps];
    __shared__ long long hits_s[kXentWarps], bad_s[kXentWarps];
    const int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
    const std::int64_t r = std::int64_t(blockIdx.x) * kXentWarps + warp;
    double loss = 0;
    long long hit = 0, bad = 0;
    if (r < rows) {
        const T* x = logits + r * cols;
        const auto label = static_cast<long long>(labels[r]);
        if (label < 0 || label >= cols) {
            // A guard: the host learns of it at its next read of the totals, and
            // until then the row adds nothing to the step (a zero gradient).
            bad = 1;
            if (dlogits)
                for (std::int64_t c = lane; c < cols; c += 32) dlogits[r * cols + c] = T(0);
        } else {
            const ArgMax<T> am = warp_argmax_row(x, cols, lane);
            const T m = x[am.index];
            const double x_label = static_cast<double>(x[label]);
            double s = 0;
            for (std::int64_t c = lane; c < cols; c += 32) s += static_cast<double>(device_exp(x[c] - m));
            s = warp_sum(s);
            // dlogits may alias logits: every lane's reads of other lanes' elements
            // (x[label], x[am.index]) must be done before any lane writes.
            __syncwarp();
            if (dlogits) {
                T* g = dlogits + r * cols;
                const double scale = inv_rows / s;
                for (std::int64_t c = lane; c < cols; c += 32) {
                    const double e = static_cast<double>(device_exp(x[c] - m));
                    g[c] = static_cast<T>(e * scale - (c == label ? inv_rows : 0.0));
                }
            }
            loss = log(s) - (x_label - static_cast<double>(m));
            hit = am.index == label;
        }
    }
    if (lane == 0) {
        loss_s[warp] = loss;
        hits_s[warp] = hit;
        bad_s[warp] = bad;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double l = 0;
        long long h = 0, b = 0;
        for (int w = 0; w < kXentWarps; ++w) {
            l += loss_s[w];
            h += hits_s[w];
            b += bad_s[w];
        }
        partial_loss[blockIdx.x] = l;
        partial_hits[blockIdx.x] = h;
        partial_bad[blockIdx.x] = b;
    }
}

// One block sums the partials in a fixed order into *totals (or adds to it).
// A template only so that it is not defined again by each .cu file of a program.
template <int = 0>
__global__ void xent_combine_kernel(const double* partial_loss, const long long* partial_hits,
                                    const long long* partial_bad, std::int64_t n, XentTotals* totals,
                                    bool accumulate) {
    __shared__ double loss_s[kThreads];
    __shared__ long long hits_s[kThreads], bad_s[kThreads];
    double l = 0;
    long long h = 0, b = 0;
    for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        l += partial_loss[i];
        h += partial_hits[i];
        b += partial_bad[i];
    }
    loss_s[threadIdx.x] = l;
    hits_s[threadIdx.x] = h;
    bad_s[threadIdx.x] = b;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half >>= 1) {
        if (threadIdx.x < half) {
            loss_s[threadIdx.x] += loss_s[threadIdx.x + half];
            hits_s[threadIdx.x] += hits_s[threadIdx.x + half];
            bad_s[threadIdx.x] += bad_s[threadIdx.x + half];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        if (accumulate) {
            totals->loss_sum += loss_s[0];
            totals->correct += hits_s[0];
            totals->bad_labels += bad_s[0];
        } else {
            *totals = XentTotals{loss_s[0], hits_s[0], bad_s[0]};
        }
    }
}

// ---------------------------------------------------------------- launchers

// probs[r, :] = softmax(logits[r, :]); probs == logits is allowed.
template <typename T>
void softmax(const T* logits, T* probs, std::int64_t rows, std::int64_t cols, cudaStream_t stream = current_stream()) {
    CUMULUS_CHECK(rows >= 0, "softmax: negative rows ", rows);
    CUMULUS_CHECK(rows == 0 || cols >= 1, "softmax: cols ", cols, " must be >= 1");
    if (rows == 0) return;
    CUMULUS_CHECK(ceil_div(rows, kXentWarps) <= 0x7fffffff, "softmax: too many rows ", rows);
    softmax_kernel<<<unsigned(ceil_div(rows, kXentWarps)), kXentWarps * 32, 0, stream>>>(logits, probs, rows, cols);
    CUMULUS_CUDA_CHECK_LAUNCH();
}

// Persistent partial buffers for softmax_xent_async (a captured graph must
// not use scratch memory that is handed out again between replays).
struct XentWorkspace {
    Tensor<double> loss;
    Tensor<long long> hits, bad;
    void reserve(std::int64_t blocks, Device d) {
        if (blocks < 1) blocks = 1;
        if (loss.defined() && loss.numel() >= blocks && loss.device() == d) return;
        loss = Tensor<double>::empty(Shape{blocks}, d);
        hits = Tensor<long long>::empty(Shape{blocks}, d);
        bad = Tensor<long long>::empty(Shape{blocks}, d);
    }
};

// The fused loss without a host sync: loss, gradient and hits go to device
// memory; *totals is overwritten, or added to with accumulate. Labels are
// not checked on the host (they live on the device); a bad label gives its
// row a zero gradient, no loss or hit, and counts in totals->bad_labels.
template <typename T, typename L>
void softmax_xent_async(const T* logits, const L* labels, T* dlogits, std::int64_t rows, std::int64_t cols,
                        std::int64_t grad_rows, XentTotals* totals, bool accumulate,
                        XentWorkspace* workspace = nullptr, cudaStream_t stream = current_stream()) {
    static_assert(std::is_integral_v<L>, "labels must be an integer type");
    CUMULUS_CHECK(rows >= 0, "softmax_xent: negative rows ", rows);
    CUMULUS_CHECK(rows == 0 || cols >= 1, "softmax_xent: cols ", cols, " must be >= 1");
    CUMULUS_CHECK(dlogits == nullptr || grad_rows > 0, "softmax_xent: grad_rows must be > 0, got ", grad_rows);
    const std::int64_t blocks = rows == 0 ? 0 : ceil_div(rows, kXentWarps);
    const std::size_t parts = std::size_t(blocks > 0 ? blocks : 1);
    Scratch<double> s_loss(workspace ? 0 : parts, stream);
    Scratch<long long> s_hits(workspace ? 0 : parts, stream), s_bad(workspace ? 0 : parts, stream);
    double* partial_loss = s_loss.get();
    long long *partial_hits = s_hits.get(), *partial_bad = s_bad.get();
    if (workspace) {
        workspace->reserve(blocks, Device::cuda(current_device_index()));
        partial_loss = workspace->loss.data();
        partial_hits = workspace->hits.data();
        partial_bad = workspace->bad.data();
    }
    CUMULUS_CHECK(blocks <= 0x7fffffff, "softmax_xent: too many rows ", rows);
    const double inv_rows = dlogits ? 1.0 / static_cast<double>(grad_rows) : 0.0;
    if (blocks > 0) {
        softmax_xent_kernel<<<unsigned(blocks), kXentWarps * 32, 0, stream>>>(
            logits, labels, dlogits, rows, cols, inv_rows, partial_loss, partial_hits, partial_bad);
        CUMULUS_CUDA_CHECK_LAUNCH();
    }
    xent_combine_kernel<0><<<1, kThreads, 0, stream>>>(partial_loss, partial_hits, partial_bad, blocks, totals,
                                                    accumulate);
    CUMULUS_CUDA_CHECK_LAUNCH();
}

// The twin of cpu::softmax_xent: labels are checked first (a device-to-host
// copy of them), and the result is read back (a sync).
template <typename T, typename L>
cpu::XentResult softmax_xent(const T* logits, const L* labels, T* dlogits, std::int64_t rows, std::int64_t cols,
                             std::int64_t grad_rows, cudaStream_t stream = current_stream()) {
    CUMULUS_CHECK(rows >= 0, "softmax_xent: negative rows ", rows);
    CUMULUS_CHECK(rows == 0 || cols >= 1, "softmax_xent: cols ", cols, " must be >= 1");
    CUMULUS_CHECK(dlogits == nullptr || grad_rows > 0, "softmax_xent: grad_rows must be > 0, got ", grad_rows);
    if (rows > 0) {
        std::vector<L> host(static_cast<std::size_t>(rows));
        CUMULUS_CUDA_CHECK(cudaMemcpyAsync(host.data(), labels, host.size() * sizeof(L), cudaMemcpyDeviceToHost, stream));
        CUMULUS_CUDA_CHECK(cudaStreamSynchronize(stream));
        for (std::int64_t r = 0; r < rows; ++r) cpu::detail::checked_label(host.data(), r, cols, "softmax_xent");
    }
    Scratch<XentTotals> totals(1, stream);
    softmax_xent_async(logits, labels, dlogits, rows, cols, grad_rows, totals.get(), false, nullptr, stream);
    XentTotals t{};
    CUMULUS_CUDA_CHECK(cudaMemcpyAsync(&t, totals.get(), sizeof(t), cudaMemcpyDeviceToHost, stream));
    CUMULUS_CUDA_CHECK(cudaStreamSynchronize(stream));
    return cpu::XentResult{t.loss_sum, static_cast<std::int64_t>(t.correct)};
}

}  // namespace cumulus::cuda
