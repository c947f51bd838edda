// Softmax and the fused softmax cross-entropy, dispatched by device.
#pragma once

#include <type_traits>

#include <cumulus/core/tensor.hpp>
#include <cumulus/cpu/softmax_xent.hpp>
#include <cumulus/ops/dispatch.hpp>
#if CUMULUS_WITH_CUDA && defined(__CUDACC__)
#include <cumulus/cuda/softmax_xent.cuh>
#endif

namespace cumulus::ops {

template <typename T>
void softmax(const Tensor<T>& logits, Tensor<T>& probs) {
    CUMULUS_CHECK(logits.rank() == 2 && probs.shape() == logits.shape(), "softmax: ", logits.shape().str(), " -> ",
                  probs.shape().str());
    check_same_device("softmax", logits, probs);
    CUMULUS_DISPATCH("softmax", logits.device(),
                     cpu::softmax(logits.data(), probs.data(), logits.dim(0), logits.dim(1)),
                     cuda::softmax(logits.data(), probs.data(), logits.dim(0), logits.dim(1)));
}

// Loss summed over the rows, the gradient of the mean loss over `grad_rows`
// rows (into dlogits, when given), and the number of rows predicted right.
template <typename T, typename L>
cpu::XentResult softmax_xent(const Tensor<T>& logits, const Tensor<L>& labels, std::type_identity_t<Tensor<T>>* dlogits,
                             std::int64_t grad_rows) {
    CUMULUS_CHECK(logits.rank() == 2 && labels.numel() == logits.dim(0), "softmax_xent: logits ",
                  logits.shape().str(), " with ", labels.numel(), " labels");
    check_same_device("softmax_xent", logits, labels);
    T* d = nullptr;
    if (dlogits) {
        CUMULUS_CHECK(dlogits->shape() == logits.shape(), "softmax_xent: gradient ", dlogits->shape().str(),
                      " for logits ", logits.shape().str());
        check_same_device("softmax_xent", logits, *dlogits);
        d = dlogits->data();
    }
    cpu::XentResult r{};
    CUMULUS_DISPATCH("softmax_xent", logits.device(),
                     r = cpu::softmax_xent(logits.data(), labels.data(), d, logits.dim(0), logits.dim(1), grad_rows),
                     r = cuda::softmax_xent(logits.data(), labels.data(), d, logits.dim(0), logits.dim(1),
                                            grad_rows));
    return r;
}

}  // namespace cumulus::ops
