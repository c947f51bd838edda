// Dense: y = activation(x W + b), W is (in, out) as in Keras.
#pragma once

#include <cumulus/nn/activation.hpp>
#include <cumulus/nn/init.hpp>
#include <cumulus/nn/layer.hpp>
#include <cumulus/ops/gemm.hpp>
#include <cumulus/ops/reduce.hpp>

namespace cumulus::nn {

template <typename T>
class Dense : public Layer<T> {
public:
    explicit Dense(std::int64_t units, Activation activation = Activation::Linear, bool use_bias = true)
        : units_(units), activation_(activation), use_bias_(use_bias) {
        CUMULUS_CHECK(units > 0, "Dense: units must be positive, got ", units);
    }

    std::string type() const override { return "Dense"; }
    std::int64_t units() const { return units_; }
    Activation activation() const { return activation_; }
    bool use_bias() const { return use_bias_; }
    bool outputs_softmax() const override { return activation_ == Activation::Softmax; }

    Shape build(const Shape& in, std::uint64_t seed) override {
        CUMULUS_CHECK(in.rank() == 1, this->where(), ": expected input of shape (None, features), got (None",
                      this->tail(in), "); add a Flatten layer before it");
        this->input_shape_ = in;
        this->output_shape_ = Shape{units_};
        const std::int64_t fan_in = in[0];
        kernel_.name = "kernel";
        kernel_.value = Tensor<T>::empty(Shape{fan_in, units_});
        Philox rng = init_stream(seed, this->index());
        glorot_uniform(kernel_.value, fan_in, units_, rng);
        kernel_.grad = Tensor<T>::zeros(kernel_.value.shape());
        if (use_bias_) {
            bias_.name = "bias";
            bias_.value = Tensor<T>::zeros(Shape{units_});
            bias_.grad = Tensor<T>::zeros(Shape{units_});
        }
        if (!(this->device_ == Device::cpu())) {
            Device d = this->device_;
            this->device_ = Device::cpu();
            this->to(d);
        }
        return this->output_shape_;
    }

    Tensor<T> forward(const Tensor<T>& x, const Context& ctx) override {
        this->check_input(x);
        x_ = x;
        const Shape out = Shape{x.dim(0), units_};
        this->ensure(z_, out);
        Epilogue epi = !use_bias_ ? Epilogue::None
                       : activation_ == Activation::ReLU ? Epilogue::BiasRelu
                                                         : Epilogue::Bias;
        ops::matmul(x, Transpose::No, kernel_.value, Transpose::No, z_, T(1), T(0), epi,
                    use_bias_ ? &bias_.value : nullptr, &workspace_);
        if (!use_bias_ && activation_ == Activation::ReLU) ops::relu_forward(z_, z_);
        softmax_deferred_ = ctx.defer_softmax;
        if (activation_ == Activation::Softmax && !ctx.defer_softmax) {
            this->ensure(probs_, out);
            ops::softmax(z_, probs_);
            return probs_;
        }
        return z_;
    }

    Tensor<T> backward(const Tensor<T>& dy, const Context&) override {
        CUMULUS_CHECK(dy.shape() == z_.shape(), this->where(), ": gradient of shape ", dy.shape().str(),
                      " for an output of shape ", z_.shape().str());
        Tensor<T> dz = dy;
        if (activation_ == Activation::ReLU) {
            this->ensure(dz_, dy.shape());
            ops::relu_backward(z_, dy, dz_);
            dz = dz_;
        } else if (activation_ == Activation::Softmax) {
            CUMULUS_CHECK(softmax_deferred_, this->where(),
                          ": backward through a softmax is only supported fused with the cross-entropy loss");
        }
        ops::matmul(x_, Transpose::Yes, dz, Transpose::No, kernel_.grad, T(1), T(0), Epilogue::None, nullptr,
                    &workspace_);  // (in, out) = x^T dz
        if (use_bias_) ops::bias_grad(dz, bias_.grad);
        if (!this->input_grad_needed()) return {};
        this->ensure(dx_, x_.shape());
        ops::matmul(dz, Transpose::No, kernel_.value, Transpose::Yes, dx_, T(1), T(0), Epilogue::None, nullptr,
                    &workspace_);  // (batch, in) = dz W^T
        return dx_;
    }

    std::vector<Parameter<T>*> parameters() override {
        if (use_bias_) return {&kernel_, &bias_};
        return {&kernel_};
    }
    Parameter<T>& kernel() { return kernel_; }
    Parameter<T>& bias() { return bias_; }
    // The GPU's split-K partial products (ops::matmul): undefined until a
    // product on the GPU was split.
    const Tensor<T>& workspace() const { return workspace_; }

private:
    std::int64_t units_;
    Activation activation_;
    bool use_bias_;
    bool softmax_deferred_ = false;
    Parameter<T> kernel_, bias_;
    Tensor<T> x_, z_, probs_, dz_, dx_;
    // The GPU's split-K partial products, shared by the three products (one
    // after another on one stream); grown to the largest, then kept.
    Tensor<T> workspace_;
};

}  // namespace cumulus::nn
