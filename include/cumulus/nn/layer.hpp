// Layer: the unit a Sequential model is made of.
//
// A layer is built once with the per-example input shape (no batch
// dimension) and then runs forward and backward on batches. Forward keeps
// what backward needs; backward fills the parameters' gradients and returns
// the gradient with respect to the input. Output buffers are reused from
// step to step, so a training step allocates nothing once warm.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <cumulus/core/error.hpp>
#include <cumulus/core/shape.hpp>
#include <cumulus/core/tensor.hpp>

namespace cumulus::nn {

template <typename T>
struct Parameter {
    std::string name;  // "kernel", "bias"
    Tensor<T> value;
    Tensor<T> grad;
    bool trainable = true;
};

// What one forward/backward pass needs to know about the step it is part of.
struct Context {
    bool training = false;
    std::uint64_t seed = 0;   // dropout masks are keyed by (seed, layer, step)
    std::uint64_t step = 0;
    bool defer_softmax = false;  // the final softmax is fused into the loss
    // CUDA training: when set, a device pointer that holds `step`, read by the
    // kernels when they run (so that a replayed CUDA graph uses the new step).
    const std::uint64_t* device_step = nullptr;
};

template <typename T>
class Layer {
public:
    virtual ~Layer() = default;

    // The Keras class name: "Dense", "Dropout", ...
    virtual std::string type() const = 0;

    // Checks the per-example input shape, creates and initialises the
    // parameters (deterministically from `seed`), and returns the output shape.
    virtual Shape build(const Shape& input_shape, std::uint64_t seed) = 0;

    virtual Tensor<T> forward(const Tensor<T>& x, const Context& ctx) = 0;
    // Returns dL/dx, or an undefined tensor when input_grad_needed() is false.
    virtual Tensor<T> backward(const Tensor<T>& dy, const Context& ctx) = 0;

    virtual std::vector<Parameter<T>*> parameters() { return {}; }

    // True when the layer's output is a softmax that the loss may fuse.
    virtual bool outputs_softmax() const { return false; }

    // Moves parameters and buffers to `d`.
    virtual void to(Device d) {
        for (auto* p : parameters()) {
            p->value = p->value.to(d);
            if (p->grad.defined()) p->grad = p->grad.to(d);
        }
        device_ = d;
    }

    std::int64_t param_count() {
        std::int64_t n = 0;
        for (auto* p : parameters()) n += p->value.numel();
        return n;
    }
    std::int64_t trainable_param_count() {
        std::int64_t n = 0;
        for (auto* p : parameters())
            if (p->trainable) n += p->value.numel();
        return n;
    }

    const std::string& name() const { return name_; }
    void set_name(std::string n) { name_ = std::move(n); }
    int index() const { return index_; }
    void set_index(int i) { index_ = i; }
    const Shape& input_shape() const { return input_shape_; }
    const Shape& output_shape() const { return output_shape_; }
    Device device() const { return device_; }
    bool input_grad_needed() const { return input_grad_needed_; }
    void set_input_grad_needed(bool b) { input_grad_needed_ = b; }

    // "layer 'dense_1' (Dense, index 2)": how errors name a layer.
    std::string where() const {
        return "layer '" + name_ + "' (" + type() + ", index " + std::to_string(index_) + ")";
    }

protected:
    // The batch shape of a per-example shape.
    static Shape batched(std::int64_t batch, const Shape& per_example) {
        Shape s;
        s.push_back(batch);
        for (auto d : per_example) s.push_back(d);
        return s;
    }
    // Checks that x is a batch of this layer's input shape.
    void check_input(const Tensor<T>& x) const {
        bool ok = x.rank() == input_shape_.rank() + 1;
        for (int i = 0; ok && i < input_shape_.rank(); ++i) ok = x.dim(i + 1) == input_shape_[i];
        CUMULUS_CHECK(ok, where(), ": expected input of shape (None", tail(input_shape_), "), got ", x.shape().str());
        CUMULUS_CHECK(x.device() == device_, where(), ": input on ", x.device().str(), " but the layer is on ",
                      device_.str());
    }
    // `buf` with shape `s` on this layer's device, reallocated only when needed.
    Tensor<T>& ensure(Tensor<T>& buf, const Shape& s) const {
        if (!buf.defined() || !(buf.shape() == s) || !(buf.device() == device_)) buf = Tensor<T>::empty(s, device_);
        return buf;
    }
    static std::string tail(const Shape& s) {
        std::string r;
        for (auto d : s) r += ", " + std::to_string(d);
        return r;
    }

    Shape input_shape_, output_shape_;
    Device device_ = Device::cpu();

private:
    std::string name_;
    int index_ = 0;
    bool input_grad_needed_ = true;
};

}  // namespace cumulus::nn
