// Optimizer updates on the GPU, the twins of cumulus/cpu/optimizer.hpp (same
// formulas, per-element arithmetic in T), plus one fused multi-tensor kernel
// per optimizer that updates every parameter of a model in one launch.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include <cumulus/core/error.hpp>
#include <cumulus/cuda/runtime.cuh>

namespace cumulus::cuda {

// One parameter tensor of a multi-tensor update.
template <typename T>
struct ParamSlots {
    T* w;
    const T* g;
    T* s0;  // RMSprop: mean square; SGD: velocity (may be null without momentum); Adam: m
    T* s1;  // Adam: v; unused otherwise
    std::int64_t n;
    std::int64_t first_chunk;  // index of this tensor's first chunk in the launch
};

struct RmspropArgs {
    float lr, rho, eps;
};
struct SgdArgs {
    float lr, momentum;
    bool nesterov;
};
struct AdamArgs {
    float lr, beta1, beta2, eps;
    std::int64_t step;                // used when step_ptr is null
    const long long* step_ptr;        // device counter of the update number (>= 1), for graphs
};

inline constexpr std::int64_t kOptimizerChunk = 4096;  // elements per block of a multi-tensor launch

// ---------------------------------------------------------------- per-element updates

template <typename T>
__device__ __forceinline__ void rmsprop_one(T& w, T g, T& ms, T lr, T rho, T one_minus_rho, T eps) {
    const T s = rho * ms + one_minus_rho * (g * g);
    ms = s;
    w -= lr * g / (sqrt(s) + eps);
}

template <typename T>
__device__ __forceinline__ void sgd_one(T& w, T g, T* v, T lr, T mom, bool nesterov) {
    if (v == nullptr) {
        w -= lr * g;
        return;
    }
    const T vi = mom * *v - lr * g;
    *v = vi;
    w += nesterov ? mom * vi - lr * g : vi;
}

template <typename T>
__device__ __forceinline__ void adam_one(T& w, T g, T& m, T& v, T alpha, T one_minus_b1, T one_minus_b2, T eps) {
    const T mi = m + (g - m) * one_minus_b1;
    const T vi = v + (g * g - v) * one_minus_b2;
    m = mi;
    v = vi;
    w -= mi * alpha / (sqrt(vi) + eps);
}

// alpha = lr * sqrt(1 - b2^t) / (1 - b1^t) in double, rounded once (as the CPU).
__host__ __device__ inline double adam_alpha(double lr, double b1, double b2, double t) {
    return lr * sqrt(1.0 - pow(b2, t)) / (1.0 - pow(b1, t));
}

// ---------------------------------------------------------------- kernels

#define CUMULUS_GRID_STRIDE(i, n)                                                                  \
    for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < (n); \
         i += std::int64_t(gridDim.x) * blockDim.x)

template <typename T>
__global__ void rmsprop_kernel(T* w, const T* g, T* ms, std::int64_t n, T lr, T rho, T one_minus_rho, T eps) {
    CUMULUS_GRID_STRIDE(i, n) rmsprop_one(w[i], g[i], ms[i], lr, rho, one_minus_rho, eps);
}

template <typename T>
__global__ void sgd_kernel(T* w, const T* g, T* v, std::int64_t n, T lr, T mom, bool nesterov) {
    CUMULUS_GRID_STRIDE(i, n) sgd_one(w[i], g[i], v ? v + i : nullptr, lr, mom, nesterov);
}

template <typename T>
__global__ void adam_kernel(T* w, const T* g, T* m, T* v, std::int64_t n, T alpha, T one_minus_b1, T one_minus_b2,
                            T eps) {
    CUMULUS_GRID_STRIDE(i, n) adam_one(w[i], g[i], m[i], v[i], alpha, one_minus_b1, one_minus_b2, eps);
}

// Multi-tensor: block b handles chunk b of the concatenation of all tensors'
// chunks; the tensor is found by binary search on first_chunk.
template <typename T>
__device__ __forceinline__ int find_tensor(const ParamSlots<T>* p, int count, std::int64_t chunk) {
    int lo = 0, hi = count - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (p[mid].first_chunk <= chunk) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

template <typename T, typename Update>
__device__ __forceinline__ void multi_tensor_apply(const ParamSlots<T>* params, int count, Update&& update) {
    for (std::int64_t chunk = blockIdx.x; ; chunk += gridDim.x) {
        // The last tensor's end: stop when past every chunk.
        const ParamSlots<T>& last = params[count - 1];
        if (chunk >= last.first_chunk + (last.n + kOptimizerChunk - 1) / kOptimizerChunk) return;
        const int t = find_tensor(params, count, chunk);
        const ParamSlots<T> p = params[t];  // a copy: its pointers stay in registers across the stores
        const std::int64_t begin = (chunk - p.first_chunk) * kOptimizerChunk;
        const std::int64_t end = begin + kOptimizerChunk < p.n ? begin + kOptimizerChunk : p.n;
        for (std::int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) update(p, i);
    }
}

template <typename T>
__global__ void rmsprop_multi_kernel(const ParamSlots<T>* params, int count, T lr, T rho, T one_minus_rho, T eps) {
    multi_tensor_apply(params, count, [&](const ParamSlots<T>& p, std::int64_t i) {
        rmsprop_one(p.w[i], p.g[i], p.s0[i], lr, rho, one_minus_rho, eps);
    });
}

template <typename T>
__global__ void sgd_multi_kernel(const ParamSlots<T>* params, int count, T lr, T mom, bool nesterov) {
    multi_tensor_apply(params, count, [&](const ParamSlots<T>& p, std::int64_t i) {
        sgd_one(p.w[i], p.g[i], mom != T(0) && p.s0 ? p.s0 + i : nullptr, lr, mom, nesterov);
    });
}

template <typename T>
__global__ void adam_multi_kernel(const ParamSlots<T>* params, int count, AdamArgs a, T one_minus_b1, T one_minus_b2,
                                  T eps, T host_alpha) {
    __shared__ T alpha_s;
    if (threadIdx.x == 0)
        alpha_s = a.step_ptr ? static_cast<T>(adam_alpha(a.lr, a.beta1, a.beta2, double(*a.step_ptr))) : host_alpha;
    __syncthreads();
    const T alpha = alpha_s;
    multi_tensor_apply(params, count, [&](const ParamSlots<T>& p, std::int64_t i) {
        adam_one(p.w[i], p.g[i], p.s0[i], p.s1[i], alpha, one_minus_b1, one_minus_b2, eps);
    });
}

#undef CUMULUS_GRID_STRIDE

// ---------------------------------------------------------------- launchers (one tensor)

template <typename T>
void rmsprop_update(T* w, const T* g, T* ms, std::int64_t n, float lr, float rho, float eps,
                    cudaStream_t stream = current_stream()) {
    CUMULUS_CHECK(n >= 0, "rmsprop_update: negative size ", n);
    if (n == 0) return;
    rmsprop_kernel<<<grid_for(n), kThreads, 0, stream>>>(w, g, ms, n, T(lr), T(rho),
                                                          T(1.0 - static_cast<double>(rho)), T(eps));
    CUMULUS_CUDA_CHECK_LAUNCH();
}

template <typename T>
void sgd_update(T* w, const T* g, T* v, std::int64_t n, float lr, float momentum, bool nesterov,
                cudaStream_t stream = current_stream()) {
    CUMULUS_CHECK(n >= 0, "sgd_update: negative size ", n);
    if (n == 0) return;
    if (momentum != 0.0f)
        CUMULUS_CHECK(v != nullptr, "sgd_update: momentum ", momentum, " needs a velocity buffer, got null");
    sgd_kernel<<<grid_for(n), kThreads, 0, stream>>>(w, g, momentum == 0.0f ? nullptr : v, n, T(lr), T(momentum),
                                                     nesterov);
    CUMULUS_CUDA_CHECK_LAUNCH();
}

template <typename T>
void adam_update(T* w, const T* g, T* m, T* v, std::int64_t n, float lr, float beta1, float beta2, float eps,
                 std::int64_t step, cudaStream_t stream = current_stream()) {
    CUMULUS_CHECK(n >= 0, "adam_update: negative size ", n);
    CUMULUS_CHECK(step >= 1, "adam_update: step must be >= 1 (the first update is step 1), got ", step);
    if (n == 0) return;
    const T alpha = static_cast<T>(adam_alpha(lr, beta1, beta2, static_cast<double>(step)));
    adam_kernel<<<grid_for(n), kThreads, 0, stream>>>(w, g, m, v, n, alpha, T(1.0 - double(beta1)),
                                                      T(1.0 - double(beta2)), T(eps));
    CUMULUS_CUDA_CHECK_LAUNCH();
}

// ---------------------------------------------------------------- multi-tensor

// The parameter list of a model on the device, uploaded once: one launch
// then updates all of them. The pointers must stay valid while it is used.
template <typename T>
class MultiTensorList {
public:
    MultiTensorList() = default;
    // `params` with first_chunk ignored (computed here).
    explicit MultiTensorList(std::vector<ParamSlots<T>> params) : host_(std::move(params)) {
        std::int64_t chunk = 0;
        for (auto& p : host_) {
            CUMULUS_CHECK(p.n > 0, "MultiTensorList: empty parameter tensor");
            p.first_chunk = chunk;
            chunk += (p.n + kOptimizerChunk - 1) / kOptimizerChunk;
        }
        chunks_ = chunk;
        if (!host_.empty()) {
            device_ = Tensor<std::uint8_t>::empty(Shape{std::int64_t(host_.size() * sizeof(ParamSlots<T>))},
                                                  Device::cuda(current_device_index()));
            copy_bytes(device_.data(), device_.device(), host_.data(), Device::cpu(), device_.nbytes());
        }
    }
    int size() const { return static_cast<int>(host_.size()); }
    std::int64_t chunks() const { return chunks_; }
    const ParamSlots<T>* device_data() const { return reinterpret_cast<const ParamSlots<T>*>(device_.data()); }
    const std::vector<ParamSlots<T>>& host() const { return host_; }

private:
    std::vector<ParamSlots<T>> host_;
    Tensor<std::uint8_t> device_;
    std::int64_t chunks_ = 0;
};

namespace detail {
inline unsigned multi_grid(std::int64_t chunks) {
    const std::int64_t cap = std::int64_t(device_properties().multiProcessorCount) * 16;
    return static_cast<unsigned>(chunks < cap ? (chunks < 1 ? 1 : chunks) : cap);
}
}  // namespace detail

template <typename T>
void rmsprop_update_multi(const MultiTensorList<T>& list, RmspropArgs a, cudaStream_t stream = current_stream()) {
    if (list.size() == 0) return;
    rmsprop_multi_kernel<<<detail::multi_grid(list.chunks()), kThreads, 0, stream>>>(
        list.device_data(), list.size(), T(a.lr), T(a.rho), T(1.0 - double(a.rho)), T(a.eps));
    CUMULUS_CUDA_CHECK_LAUNCH();
}

template <typename T>
void sgd_update_multi(const MultiTensorList<T>& list, SgdArgs a, cudaStream_t stream = current_stream()) {
    if (list.size() == 0) return;
    if (a.momentum != 0.0f)
        for (const auto& p : list.host())
            CUMULUS_CHECK(p.s0 != nullptr, "sgd_update_multi: momentum ", a.momentum, " needs velocity buffers");
    // Without momentum the velocity is not touched: pass null pointers.
    sgd_multi_kernel<<<detail::multi_grid(list.chunks()), kThreads, 0, stream>>>(list.device_data(), list.size(),
                                                                                 T(a.lr), T(a.momentum), a.nesterov);
    CUMULUS_CUDA_CHECK_LAUNCH();
}

template <typename T>
void adam_update_multi(const MultiTensorList<T>& list, AdamArgs a, cudaStream_t stream = current_stream()) {
    if (list.size() == 0) return;
    CUMULUS_CHECK(a.step_ptr != nullptr || a.step >= 1, "adam_update_multi: step must be >= 1, got ", a.step);
    const T host_alpha = a.step_ptr ? T(0) : static_cast<T>(adam_alpha(a.lr, a.beta1, a.beta2, double(a.step)));
    adam_multi_kernel<<<detail::multi_grid(list.chunks()), kThreads, 0, stream>>>(
        list.device_data(), list.size(), a, T(1.0 - double(a.beta1)), T(1.0 - double(a.beta2)), T(a.eps), host_alpha);
    CUMULUS_CUDA_CHECK_LAUNCH();
}

}  // namespace cumulus::cuda
