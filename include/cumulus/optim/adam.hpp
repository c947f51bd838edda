// Adam with Keras' defaults: lr 0.001, beta1 0.9, beta2 0.999, epsilon 1e-7.
#pragma once

#include <cumulus/ops/optimizer.hpp>
#include <cumulus/optim/optimizer.hpp>

namespace cumulus::optim {

template <typename T>
class Adam : public Optimizer<T> {
public:
    explicit Adam(float learning_rate = 0.001f, float beta1 = 0.9f, float beta2 = 0.999f, float epsilon = 1e-7f)
        : Optimizer<T>(learning_rate), beta1_(beta1), beta2_(beta2), epsilon_(epsilon) {}
    std::string name() const override { return "Adam"; }
    float beta1() const { return beta1_; }
    float beta2() const { return beta2_; }
    float epsilon() const { return epsilon_; }

protected:
    std::vector<std::string> slot_names() const override { return {"m", "v"}; }
    void update(nn::Parameter<T>& p, Tensor<T>* s) override {
        ops::adam_update(p.value, p.grad, s[0], s[1], this->learning_rate_, beta1_, beta2_, epsilon_,
                         this->iterations_);
    }

private:
    float beta1_, beta2_, epsilon_;
};

}  // namespace cumulus::optim
