// Sequential: a stack of layers, built as they are added (as Keras does when
// the input shape is known), with a Keras-style summary().
#pragma once

#include <cctype>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <cumulus/nn/layer.hpp>

namespace cumulus::nn {

namespace detail {
// "Dense" -> "dense", "ReLU" -> "re_lu", "MaxPool2D" -> "max_pool2d" (Keras' rule).
inline std::string snake_case(const std::string& s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        bool upper = std::isupper(static_cast<unsigned char>(c)) != 0;
        if (upper && i > 0) {
            bool prev_lower = std::islower(static_cast<unsigned char>(s[i - 1])) != 0;
            bool next_lower = i + 1 < s.size() && std::islower(static_cast<unsigned char>(s[i + 1])) != 0;
            bool prev_upper = std::isupper(static_cast<unsigned char>(s[i - 1])) != 0;
            if (prev_lower || (prev_upper && next_lower)) out += '_';
        }
        out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return out;
}

// 669706 -> "669,706"
inline std::string thousands(std::int64_t n) {
    const std::string digits = std::to_string(n < 0 ? -n : n);
    std::string s = n < 0 ? "-" : "";
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) s += ',';
        s += digits[i];
    }
    return s;
}
}  // namespace detail

template <typename T = float>
class Sequential {
public:
    // `input_shape` is one example's shape, without the batch dimension;
    // `seed` determines every layer's initial weights.
    explicit Sequential(Shape input_shape, std::uint64_t seed = 0, std::string name = "sequential")
        : input_shape_(input_shape), seed_(seed), name_(std::move(name)) {}

    Sequential(Sequential&&) noexcept = default;
    Sequential& operator=(Sequential&&) noexcept = default;

    // Appends a layer, names it as Keras would (dense, dense_1, ...), and builds it.
    template <typename L>
    L& add(L layer) {
        auto p = std::make_unique<L>(std::move(layer));
        L& ref = *p;
        add(std::unique_ptr<Layer<T>>(std::move(p)));
        return ref;
    }
    Layer<T>& add(std::unique_ptr<Layer<T>> layer, std::string name = "") {
        CUMULUS_CHECK(layer != nullptr, "Sequential::add: null layer");
        const int index = static_cast<int>(layers_.size());
        if (name.empty()) {
            std::string base = detail::snake_case(layer->type());
            int& count = name_counts_[base];
            name = count == 0 ? base : base + "_" + std::to_string(count);
            ++count;
        }
        for (auto& l : layers_)
            CUMULUS_CHECK(l->name() != name, "Sequential::add: a layer named '", name, "' already exists");
        layer->set_name(std::move(name));
        layer->set_index(index);
        bool earlier_params = false;
        for (auto& l : layers_) earlier_params = earlier_params || !l->parameters().empty();
        layer->set_input_grad_needed(earlier_params);
        layer->to(device_);
        layer->build(output_shape(), seed_);
        layers_.push_back(std::move(layer));
        return *layers_.back();
    }

    std::size_t size() const { return layers_.size(); }
    Layer<T>& layer(std::size_t i) { return *layers_.at(i); }
    const Layer<T>& layer(std::size_t i) const { return *layers_.at(i); }
    const Shape& input_shape() const { return input_shape_; }
    Shape output_shape() const { return layers_.empty() ? input_shape_ : layers_.back()->output_shape(); }
    std::uint64_t seed() const { return seed_; }
    const std::string& name() const { return name_; }
    Device device() const { return device_; }

    // True when the model ends in a softmax (a Softmax layer or a Dense with
    // softmax activation): the cross-entropy loss then fuses it.
    bool ends_with_softmax() const {
        return !layers_.empty() && layers_.back()->outputs_softmax();
    }

    Tensor<T> forward(const Tensor<T>& x, const Context& ctx) {
        CUMULUS_CHECK(!layers_.empty(), "Sequential '", name_, "': the model has no layers");
        Tensor<T> h = x;
        for (auto& l : layers_) h = l->forward(h, ctx);
        return h;
    }

    // Backpropagates dL/d(output) through every layer, filling the gradients.
    void backward(const Tensor<T>& dy, const Context& ctx) {
        Tensor<T> g = dy;
        for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) {
            g = (*it)->backward(g, ctx);
            if (!g.defined()) break;
        }
    }

    std::vector<Parameter<T>*> parameters() {
        std::vector<Parameter<T>*> ps;
        for (auto& l : layers_)
            for (auto* p : l->parameters()) ps.push_back(p);
        return ps;
    }

    std::int64_t param_count() {
        std::int64_t n = 0;
        for (auto& l : layers_) n += l->param_count();
        return n;
    }

    void to(Device d) {
        for (auto& l : layers_) l->to(d);
        device_ = d;
    }

    // The Keras (tf.keras 2.x) summary table.
    std::string summary() {
        constexpr int kWidth = 65;
        const int pos[3] = {29, 55, 65};
        auto row = [&](const std::string& a, const std::string& b, const std::string& c) {
            std::string line;
            const std::string f[3] = {a, b, c};
            for (int i = 0; i < 3; ++i) {
                if (i > 0) line = line.substr(0, line.size() - 1) + " ";
                line += f[i];
                line = line.substr(0, static_cast<std::size_t>(pos[i]));
                line += std::string(static_cast<std::size_t>(pos[i]) - line.size(), ' ');
            }
            return line + "\n";
        };
        std::ostringstream os;
        os << "Model: \"" << name_ << "\"\n";
        os << std::string(kWidth, '_') << "\n";
        os << row("Layer (type)", "Output Shape", "Param #");
        os << std::string(kWidth, '=') << "\n";
        std::int64_t total = 0, trainable = 0;
        for (std::size_t i = 0; i < layers_.size(); ++i) {
            auto& l = *layers_[i];
            std::string shape = "(None";
            for (auto d : l.output_shape()) shape += ", " + std::to_string(d);
            shape += ")";
            os << row(l.name() + " (" + l.type() + ")", shape, std::to_string(l.param_count()));
            os << std::string(kWidth, i + 1 == layers_.size() ? '=' : '_') << "\n";
            total += l.param_count();
            trainable += l.trainable_param_count();
        }
        if (layers_.empty()) os << std::string(kWidth, '=') << "\n";
        os << "Total params: " << detail::thousands(total) << "\n";
        os << "Trainable params: " << detail::thousands(trainable) << "\n";
        os << "Non-trainable params: " << detail::thousands(total - trainable) << "\n";
        os << std::string(kWidth, '_') << "\n";
        return os.str();
    }

private:
    Shape input_shape_;
    std::uint64_t seed_;
    std::string name_;
    Device device_ = Device::cpu();
    std::vector<std::unique_ptr<Layer<T>>> layers_;
    std::map<std::string, int> name_counts_;
};

}  // namespace cumulus::nn
