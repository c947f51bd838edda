// Conv2D: y = activation(conv(x, kernel) + bias), as Keras' Conv2D with
// data_format channels_last: x is (batch, H, W, C), the kernel is HWIO
// (kh, kw, C, filters), padding 'valid' or 'same' with TensorFlow's
// arithmetic. The kernel starts glorot-uniform (fan_in = kh*kw*C,
// fan_out = kh*kw*filters), the bias at zero, as in Keras.
#pragma once

#include <cumulus/nn/activation.hpp>
#include <cumulus/nn/init.hpp>
#include <cumulus/nn/layer.hpp>
#include <cumulus/ops/conv.hpp>
#include <cumulus/ops/elementwise.hpp>
#include <cumulus/ops/reduce.hpp>

namespace cumulus::nn {

using Padding = cpu::Padding;
using cpu::padding_name;
using cpu::parse_padding;

// A (height, width) pair; one number means both, as Keras' kernel_size=5.
struct Size2 {
    std::int64_t h = 1, w = 1;
    Size2() = default;
    Size2(std::int64_t both) : h(both), w(both) {}  // NOLINT(google-explicit-constructor): Keras' int form
    Size2(std::int64_t height, std::int64_t width) : h(height), w(width) {}
    bool operator==(const Size2&) const = default;
};

template <typename T>
class Conv2D : public Layer<T> {
public:
    Conv2D(std::int64_t filters, Size2 kernel_size, Size2 strides = 1, Padding padding = Padding::Valid,
           Activation activation = Activation::Linear, bool use_bias = true)
        : filters_(filters), kernel_size_(kernel_size), strides_(strides), padding_(padding),
          activation_(activation), use_bias_(use_bias) {
        CUMULUS_CHECK(filters > 0, "Conv2D: filters must be positive, got ", filters);
        CUMULUS_CHECK(kernel_size.h > 0 && kernel_size.w > 0, "Conv2D: kernel size must be positive, got (",
                      kernel_size.h, ", ", kernel_size.w, ")");
        CUMULUS_CHECK(strides.h > 0 && strides.w > 0, "Conv2D: strides must be positive, got (", strides.h, ", ",
                      strides.w, ")");
        CUMULUS_CHECK(activation != Activation::Softmax, "Conv2D: softmax activation is not supported");
    }

    std::string type() const override { return "Conv2D"; }
    std::int64_t filters() const { return filters_; }
    Size2 kernel_size() const { return kernel_size_; }
    Size2 strides() const { return strides_; }
    Padding padding() const { return padding_; }
    Activation activation() const { return activation_; }
    bool use_bias() const { return use_bias_; }

    Shape build(const Shape& in, std::uint64_t seed) override {
        CUMULUS_CHECK(in.rank() == 3, this->where(), ": expected input of shape (None, height, width, channels), got (None",
                      this->tail(in), ")");
        this->input_shape_ = in;
        const auto s = geometry(1, in);
        this->output_shape_ = Shape{s.oh, s.ow, filters_};
        const std::int64_t kk = kernel_size_.h * kernel_size_.w;
        kernel_.name = "kernel";
        kernel_.value = Tensor<T>::empty(Shape{kernel_size_.h, kernel_size_.w, in[2], filters_});
        Philox rng = init_stream(seed, this->index());
        glorot_uniform(kernel_.value, kk * in[2], kk * filters_, rng);
        kernel_.grad = Tensor<T>::zeros(kernel_.value.shape());
        if (use_bias_) {
            bias_.name = "bias";
            bias_.value = Tensor<T>::zeros(Shape{filters_});
            bias_.grad = Tensor<T>::zeros(Shape{filters_});
        }
        if (!(this->device_ == Device::cpu())) {
            Device d = this->device_;
            this->device_ = Device::cpu();
            this->to(d);
        }
        return this->output_shape_;
    }

    Tensor<T> forward(const Tensor<T>& x, const Context&) override {
        this->check_input(x);
        x_ = x;
        shape_ = geometry(x.dim(0), this->input_shape_);
        this->ensure(y_, this->batched(x.dim(0), this->output_shape_));
        const Epilogue epi = !use_bias_                         ? Epilogue::None
                             : activation_ == Activation::ReLU ? Epilogue::BiasRelu
                                                               : Epilogue::Bias;
        ops::conv2d_forward(shape_, x, kernel_.value, y_, epi, use_bias_ ? &bias_.value : nullptr);
        if (!use_bias_ && activation_ == Activation::ReLU) ops::relu_forward(y_, y_);
        return y_;
    }

    Tensor<T> backward(const Tensor<T>& dy, const Context&) override {
        CUMULUS_CHECK(y_.defined() && dy.shape() == y_.shape(), this->where(), ": gradient of shape ",
                      dy.shape().str(), " for an output of shape ",
                      y_.defined() ? y_.shape().str() : std::string("(none: no forward yet)"));
        Tensor<T> dz = dy;
        if (activation_ == Activation::ReLU) {
            this->ensure(dz_, dy.shape());
            ops::relu_backward(y_, dy, dz_);
            dz = dz_;
        }
        ops::conv2d_backward_filter(shape_, x_, dz, kernel_.grad, &filter_ws_);
        if (use_bias_) ops::bias_grad(dz, bias_.grad);
        if (!this->input_grad_needed()) return {};
        this->ensure(dx_, x_.shape());
        ops::conv2d_backward_data(shape_, dz, kernel_.value, dx_);
        return dx_;
    }

    std::vector<Parameter<T>*> parameters() override {
        if (use_bias_) return {&kernel_, &bias_};
        return {&kernel_};
    }
    Parameter<T>& kernel() { return kernel_; }
    Parameter<T>& bias() { return bias_; }

private:
    ops::ConvShape geometry(std::int64_t batch, const Shape& in) const {
        return cpu::conv_shape(batch, in[0], in[1], in[2], kernel_size_.h, kernel_size_.w, filters_, strides_.h,
                               strides_.w, padding_, "Conv2D");
    }

    std::int64_t filters_;
    Size2 kernel_size_, strides_;
    Padding padding_;
    Activation activation_;
    bool use_bias_;
    Parameter<T> kernel_, bias_;
    ops::ConvShape shape_;
    Tensor<T> x_, y_, dz_, dx_;
    Tensor<T> filter_ws_;  // GPU: partial sums of the filter gradient, kept from step to step
};

}  // namespace cumulus::nn
