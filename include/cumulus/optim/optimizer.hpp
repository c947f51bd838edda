// Optimizer: updates a model's parameters from their gradients. Each
// optimizer keeps per-parameter state tensors ("slots"), created on the
// first step on the parameters' device.
#pragma once

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include <cumulus/nn/layer.hpp>

namespace cumulus::optim {

template <typename T>
class Optimizer {
public:
    explicit Optimizer(float learning_rate) : learning_rate_(learning_rate) {
        CUMULUS_CHECK(learning_rate > 0.0f, "optimizer: learning rate must be positive, got ", learning_rate);
    }
    virtual ~Optimizer() = default;

    virtual std::string name() const = 0;

    // One update of every trainable parameter.
    void step(const std::vector<nn::Parameter<T>*>& params) {
        if (slots_.empty()) create_slots(params);
        const std::size_t per = slots_per_param();  // once: slot_names() builds strings
        CUMULUS_CHECK(slots_.size() == params.size() * per, name(), ": called with ", params.size(),
                      " parameters, but its state was made for ", slots_.size() / std::max<std::size_t>(1, per));
        ++iterations_;
        for (std::size_t i = 0; i < params.size(); ++i) {
            if (!params[i]->trainable) continue;
            update(*params[i], &slots_[i * per]);
        }
    }

    float learning_rate() const { return learning_rate_; }
    void set_learning_rate(float lr) { learning_rate_ = lr; }
    std::int64_t iterations() const { return iterations_; }
    void set_iterations(std::int64_t n) { iterations_ = n; }

    // The state, named "<param index>/<slot name>", for checkpoints.
    std::vector<std::pair<std::string, Tensor<T>*>> state() {
        std::vector<std::pair<std::string, Tensor<T>*>> s;
        const auto names = slot_names();
        for (std::size_t i = 0; i < slots_.size(); ++i)
            s.emplace_back(std::to_string(i / names.size()) + "/" + names[i % names.size()], &slots_[i]);
        return s;
    }
    // Creates the state for `params` (zeros), so that state() can be filled from a checkpoint.
    void create_slots(const std::vector<nn::Parameter<T>*>& params) {
        slots_.clear();
        const std::size_t per = slots_per_param();
        for (auto* p : params)
            for (std::size_t k = 0; k < per; ++k)
                slots_.push_back(Tensor<T>::zeros(p->value.shape(), p->value.device()));
    }
    void to(Device d) {
        for (auto& s : slots_) s = s.to(d);
    }

protected:
    virtual std::vector<std::string> slot_names() const = 0;
    std::size_t slots_per_param() const { return slot_names().size(); }
    virtual void update(nn::Parameter<T>& p, Tensor<T>* slots) = 0;

    float learning_rate_;
    std::int64_t iterations_ = 0;
    std::vector<Tensor<T>> slots_;
};

}  // namespace cumulus::optim
