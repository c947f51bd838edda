// MaxPool2D and AvgPool2D, as Keras' MaxPooling2D / AveragePooling2D with
// data_format channels_last: x is (batch, H, W, C), the window pool_size,
// strides defaulting to pool_size, padding 'valid' or 'same' with
// TensorFlow's arithmetic. Max pooling sends the gradient to the first
// maximum of each window; average pooling divides by the number of input
// elements inside the window (padding not counted), as TensorFlow does.
#pragma once

#include <cumulus/nn/conv2d.hpp>
#include <cumulus/nn/layer.hpp>
#include <cumulus/ops/pool.hpp>

namespace cumulus::nn {

enum class PoolMode { Max, Average };

template <typename T>
class Pool2D : public Layer<T> {
public:
    // strides 0 (the default) means strides = pool_size.
    Pool2D(PoolMode mode, Size2 pool_size, Size2 strides, Padding padding)
        : mode_(mode), pool_size_(pool_size), strides_(strides.h == 0 && strides.w == 0 ? pool_size : strides),
          padding_(padding) {
        CUMULUS_CHECK(pool_size_.h > 0 && pool_size_.w > 0, type(), ": pool size must be positive, got (",
                      pool_size_.h, ", ", pool_size_.w, ")");
        CUMULUS_CHECK(strides_.h > 0 && strides_.w > 0, type(), ": strides must be positive, got (", strides_.h,
                      ", ", strides_.w, ")");
    }

    // The Keras class names (MaxPool2D and AvgPool2D are Keras' aliases).
    std::string type() const override { return mode_ == PoolMode::Max ? "MaxPooling2D" : "AveragePooling2D"; }
    PoolMode mode() const { return mode_; }
    Size2 pool_size() const { return pool_size_; }
    Size2 strides() const { return strides_; }
    Padding padding() const { return padding_; }

    Shape build(const Shape& in, std::uint64_t) override {
        CUMULUS_CHECK(in.rank() == 3, this->where(), ": expected input of shape (None, height, width, channels), got (None",
                      this->tail(in), ")");
        CUMULUS_CHECK(padding_ == Padding::Same || (in[0] >= pool_size_.h && in[1] >= pool_size_.w), this->where(),
                      ": a ", pool_size_.h, "x", pool_size_.w, " window does not fit the ", in[0], "x", in[1],
                      " input with 'valid' padding");
        this->input_shape_ = in;
        const auto s = geometry(1);
        this->output_shape_ = Shape{s.oh, s.ow, in[2]};
        return this->output_shape_;
    }

    Tensor<T> forward(const Tensor<T>& x, const Context&) override {
        this->check_input(x);
        shape_ = geometry(x.dim(0));
        const Shape out = this->batched(x.dim(0), this->output_shape_);
        this->ensure(y_, out);
        if (mode_ == PoolMode::Max) {
            if (!argmax_.defined() || !(argmax_.shape() == out) || !(argmax_.device() == this->device_))
                argmax_ = Tensor<std::int32_t>::empty(out, this->device_);
            ops::max_pool2d_forward(shape_, x, y_, argmax_);
        } else {
            ops::avg_pool2d_forward(shape_, x, y_);
        }
        return y_;
    }

    Tensor<T> backward(const Tensor<T>& dy, const Context&) override {
        if (!this->input_grad_needed()) return {};
        CUMULUS_CHECK(y_.defined() && dy.shape() == y_.shape(), this->where(), ": gradient of shape ",
                      dy.shape().str(), " for an output of shape ",
                      y_.defined() ? y_.shape().str() : std::string("(none: no forward yet)"));
        this->ensure(dx_, this->batched(dy.dim(0), this->input_shape_));
        if (mode_ == PoolMode::Max) ops::max_pool2d_backward(shape_, dy, argmax_, dx_);
        else ops::avg_pool2d_backward(shape_, dy, dx_);
        return dx_;
    }

private:
    ops::ConvShape geometry(std::int64_t batch) const {
        const Shape& in = this->input_shape_;
        return cpu::pool_shape(batch, in[0], in[1], in[2], pool_size_.h, pool_size_.w, strides_.h, strides_.w,
                               padding_, mode_ == PoolMode::Max ? "MaxPooling2D" : "AveragePooling2D");
    }

    PoolMode mode_;
    Size2 pool_size_, strides_;
    Padding padding_;
    ops::ConvShape shape_;
    Tensor<T> y_, dx_;
    Tensor<std::int32_t> argmax_;
};

template <typename T>
class MaxPool2D : public Pool2D<T> {
public:
    explicit MaxPool2D(Size2 pool_size = 2, Size2 strides = Size2(0, 0), Padding padding = Padding::Valid)
        : Pool2D<T>(PoolMode::Max, pool_size, strides, padding) {}
};

template <typename T>
class AvgPool2D : public Pool2D<T> {
public:
    explicit AvgPool2D(Size2 pool_size = 2, Size2 strides = Size2(0, 0), Padding padding = Padding::Valid)
        : Pool2D<T>(PoolMode::Average, pool_size, strides, padding) {}
};

template <typename T>
using MaxPooling2D = MaxPool2D<T>;
template <typename T>
using AveragePooling2D = AvgPool2D<T>;

}  // namespace cumulus::nn
