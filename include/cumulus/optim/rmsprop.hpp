// RMSprop with Keras' semantics and defaults: lr 0.001, rho 0.9, epsilon
// 1e-7 added outside the square root.
#pragma once

#include <cumulus/ops/optimizer.hpp>
#include <cumulus/optim/optimizer.hpp>

namespace cumulus::optim {

template <typename T>
class RMSprop : public Optimizer<T> {
public:
    explicit RMSprop(float learning_rate = 0.001f, float rho = 0.9f, float epsilon = 1e-7f)
        : Optimizer<T>(learning_rate), rho_(rho), epsilon_(epsilon) {}
    std::string name() const override { return "RMSprop"; }
    float rho() const { return rho_; }
    float epsilon() const { return epsilon_; }

protected:
    std::vector<std::string> slot_names() const override { return {"rms"}; }
    void update(nn::Parameter<T>& p, Tensor<T>* s) override {
        ops::rmsprop_update(p.value, p.grad, s[0], this->learning_rate_, rho_, epsilon_);
    }

private:
    float rho_, epsilon_;
};

}  // namespace cumulus::optim
