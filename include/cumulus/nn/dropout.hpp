// Dropout (inverted, as Keras): in training each element is kept with
// probability 1 - rate and scaled by 1 / (1 - rate); at inference it is the
// identity. The mask is keyed by (seed, layer index, step), so nothing is
// stored between forward and backward and a GPU draws the same mask.
#pragma once

#include <cumulus/nn/layer.hpp>
#include <cumulus/ops/dropout.hpp>

namespace cumulus::nn {

template <typename T>
class Dropout : public Layer<T> {
public:
    explicit Dropout(float rate) : rate_(rate) {
        CUMULUS_CHECK(rate >= 0.0f && rate < 1.0f, "Dropout: rate must be in [0, 1), got ", rate);
    }
    std::string type() const override { return "Dropout"; }
    float rate() const { return rate_; }

    Shape build(const Shape& in, std::uint64_t) override {
        this->input_shape_ = this->output_shape_ = in;
        return in;
    }
    Tensor<T> forward(const Tensor<T>& x, const Context& ctx) override {
        this->check_input(x);
        active_ = ctx.training && rate_ > 0.0f;
        if (!active_) return x;
        this->ensure(y_, x.shape());
#if CUMULUS_WITH_CUDA && defined(__CUDACC__)
        if (ctx.device_step != nullptr && x.device().is_cuda()) {
            check_same_device("dropout_forward", x, y_);
            cuda::dropout_forward_at(x.data(), y_.data(), x.numel(), rate_, ctx.seed,
                                     static_cast<std::uint32_t>(this->index()), ctx.device_step);
            return y_;
        }
#endif
        ops::dropout_forward(x, y_, rate_, key(ctx));
        return y_;
    }
    Tensor<T> backward(const Tensor<T>& dy, const Context& ctx) override {
        if (!this->input_grad_needed()) return {};
        if (!active_) return dy;
        this->ensure(dx_, dy.shape());
#if CUMULUS_WITH_CUDA && defined(__CUDACC__)
        if (ctx.device_step != nullptr && dy.device().is_cuda()) {
            check_same_device("dropout_backward", dy, dx_);
            cuda::dropout_backward_at(dy.data(), dx_.data(), dy.numel(), rate_, ctx.seed,
                                      static_cast<std::uint32_t>(this->index()), ctx.device_step);
            return dx_;
        }
#endif
        ops::dropout_backward(dy, dx_, rate_, key(ctx));
        return dx_;
    }

private:
    ops::DropoutKey key(const Context& ctx) const {
        return {ctx.seed, static_cast<std::uint32_t>(this->index()), ctx.step};
    }
    float rate_;
    bool active_ = false;
    Tensor<T> y_, dx_;
};

}  // namespace cumulus::nn
