// The softmax cross-entropy loss (Keras' categorical_crossentropy on a
// softmax output, or on logits with from_logits), always computed fused from
// the logits: numerically stable, one pass for loss, gradient and accuracy.
#pragma once

#include <type_traits>

#include <cumulus/nn/sequential.hpp>
#include <cumulus/ops/softmax_xent.hpp>

namespace cumulus::nn {

struct SoftmaxCrossEntropy {
    // false: the model must end in a softmax, which is fused into the loss.
    // true: the model's outputs are logits.
    bool from_logits = false;

    template <typename T>
    void check(const Sequential<T>& model) const {
        CUMULUS_CHECK(from_logits || model.ends_with_softmax(), "categorical_crossentropy: model '", model.name(),
                      "' does not end in a softmax; add activation softmax to the last Dense layer, "
                      "or use SoftmaxCrossEntropy{.from_logits = true}");
        CUMULUS_CHECK(!from_logits || !model.ends_with_softmax(), "categorical_crossentropy with from_logits: model '",
                      model.name(), "' ends in a softmax, so its outputs are not logits");
    }

    // Loss summed over the batch and correct predictions; when `dlogits` is
    // given, the gradient of the mean loss over `grad_rows` rows.
    template <typename T, typename L>
    cpu::XentResult operator()(const Tensor<T>& logits, const Tensor<L>& labels, std::type_identity_t<Tensor<T>>* dlogits,
                               std::int64_t grad_rows) const {
        return ops::softmax_xent(logits, labels, dlogits, grad_rows);
    }
};

}  // namespace cumulus::nn
