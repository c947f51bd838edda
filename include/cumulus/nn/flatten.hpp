// Flatten: (batch, d1, d2, ...) -> (batch, d1*d2*...), a view.
#pragma once

#include <cumulus/nn/layer.hpp>

namespace cumulus::nn {

template <typename T>
class Flatten : public Layer<T> {
public:
    std::string type() const override { return "Flatten"; }
    Shape build(const Shape& in, std::uint64_t) override {
        this->input_shape_ = in;
        this->output_shape_ = Shape{in.numel()};
        return this->output_shape_;
    }
    Tensor<T> forward(const Tensor<T>& x, const Context&) override {
        this->check_input(x);
        return x.reshape(Shape{x.dim(0), this->output_shape_[0]});
    }
    Tensor<T> backward(const Tensor<T>& dy, const Context&) override {
        if (!this->input_grad_needed()) return {};
        return dy.reshape(this->batched(dy.dim(0), this->input_shape_));
    }
};

}  // namespace cumulus::nn
