// Activations: the names Keras uses, and the ReLU and Softmax layers.
#pragma once

#include <string>
#include <string_view>

#include <cumulus/nn/layer.hpp>
#include <cumulus/ops/elementwise.hpp>
#include <cumulus/ops/softmax_xent.hpp>

namespace cumulus::nn {

enum class Activation { Linear, ReLU, Softmax };

inline std::string_view activation_name(Activation a) {
    switch (a) {
        case Activation::Linear: return "linear";
        case Activation::ReLU: return "relu";
        case Activation::Softmax: return "softmax";
    }
    return "?";
}

inline Activation parse_activation(std::string_view s) {
    if (s == "linear" || s.empty()) return Activation::Linear;
    if (s == "relu") return Activation::ReLU;
    if (s == "softmax") return Activation::Softmax;
    CUMULUS_FAIL("unknown activation '", s, "': expected linear, relu or softmax");
}

template <typename T>
class ReLU : public Layer<T> {
public:
    std::string type() const override { return "ReLU"; }
    Shape build(const Shape& in, std::uint64_t) override {
        this->input_shape_ = this->output_shape_ = in;
        return in;
    }
    Tensor<T> forward(const Tensor<T>& x, const Context&) override {
        this->check_input(x);
        this->ensure(y_, x.shape());
        ops::relu_forward(x, y_);
        return y_;
    }
    Tensor<T> backward(const Tensor<T>& dy, const Context&) override {
        if (!this->input_grad_needed()) return {};
        this->ensure(dx_, dy.shape());
        ops::relu_backward(y_, dy, dx_);
        return dx_;
    }

private:
    Tensor<T> y_, dx_;
};

// Softmax over the last axis of a (batch, classes) input. In training it is
// fused into the cross-entropy loss (Context::defer_softmax): forward passes
// the logits through and backward receives the loss's gradient wrt logits.
template <typename T>
class Softmax : public Layer<T> {
public:
    std::string type() const override { return "Softmax"; }
    bool outputs_softmax() const override { return true; }
    Shape build(const Shape& in, std::uint64_t) override {
        CUMULUS_CHECK(in.rank() == 1, this->where(), ": expected input of shape (None, classes), got (None",
                      this->tail(in), ")");
        this->input_shape_ = this->output_shape_ = in;
        return in;
    }
    Tensor<T> forward(const Tensor<T>& x, const Context& ctx) override {
        this->check_input(x);
        deferred_ = ctx.defer_softmax;
        if (deferred_) return x;
        this->ensure(y_, x.shape());
        ops::softmax(x, y_);
        return y_;
    }
    Tensor<T> backward(const Tensor<T>& dy, const Context&) override {
        CUMULUS_CHECK(deferred_, this->where(),
                      ": backward through a softmax is only supported fused with the cross-entropy loss");
        return dy;
    }

private:
    Tensor<T> y_;
    bool deferred_ = false;
};

}  // namespace cumulus::nn
