// Optimizer updates over one parameter tensor, dispatched by device.
#pragma once

#include <cumulus/core/tensor.hpp>
#include <cumulus/cpu/optimizer.hpp>
#include <cumulus/ops/dispatch.hpp>
#if CUMULUS_WITH_CUDA && defined(__CUDACC__)
#include <cumulus/cuda/optimizer.cuh>
#endif

namespace cumulus::ops {

namespace detail {
template <typename T>
void check_slot(const char* op, const Tensor<T>& w, const Tensor<T>& s) {
    CUMULUS_CHECK(s.numel() == w.numel(), op, ": state of ", s.numel(), " elements for a parameter of ",
                  w.numel());
    check_same_device(op, w, s);
}
}  // namespace detail

template <typename T>
void rmsprop_update(Tensor<T>& w, const Tensor<T>& g, Tensor<T>& ms, float lr, float rho, float eps) {
    detail::check_slot("rmsprop_update", w, g);
    detail::check_slot("rmsprop_update", w, ms);
    CUMULUS_DISPATCH("rmsprop_update", w.device(),
                     cpu::rmsprop_update(w.data(), g.data(), ms.data(), w.numel(), lr, rho, eps),
                     cuda::rmsprop_update(w.data(), g.data(), ms.data(), w.numel(), lr, rho, eps));
}

// `v` may be undefined when momentum is 0.
template <typename T>
void sgd_update(Tensor<T>& w, const Tensor<T>& g, Tensor<T>& v, float lr, float momentum, bool nesterov) {
    detail::check_slot("sgd_update", w, g);
    if (momentum != 0.0f) detail::check_slot("sgd_update", w, v);
    T* vp = v.defined() ? v.data() : nullptr;
    CUMULUS_DISPATCH("sgd_update", w.device(),
                     cpu::sgd_update(w.data(), g.data(), vp, w.numel(), lr, momentum, nesterov),
                     cuda::sgd_update(w.data(), g.data(), vp, w.numel(), lr, momentum, nesterov));
}

template <typename T>
void adam_update(Tensor<T>& w, const Tensor<T>& g, Tensor<T>& m, Tensor<T>& v, float lr, float beta1, float beta2,
                 float eps, std::int64_t step) {
    detail::check_slot("adam_update", w, g);
    detail::check_slot("adam_update", w, m);
    detail::check_slot("adam_update", w, v);
    CUMULUS_DISPATCH("adam_update", w.device(),
                     cpu::adam_update(w.data(), g.data(), m.data(), v.data(), w.numel(), lr, beta1, beta2, eps, step),
                     cuda::adam_update(w.data(), g.data(), m.data(), v.data(), w.numel(), lr, beta1, beta2, eps,
                                       step));
}

}  // namespace cumulus::ops
