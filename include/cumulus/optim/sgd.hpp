// SGD with optional (Nesterov) momentum, Keras' semantics: lr 0.01 default.
#pragma once

#include <cumulus/ops/optimizer.hpp>
#include <cumulus/optim/optimizer.hpp>

namespace cumulus::optim {

template <typename T>
class SGD : public Optimizer<T> {
public:
    explicit SGD(float learning_rate = 0.01f, float momentum = 0.0f, bool nesterov = false)
        : Optimizer<T>(learning_rate), momentum_(momentum), nesterov_(nesterov) {
        CUMULUS_CHECK(momentum >= 0.0f && momentum < 1.0f, "SGD: momentum must be in [0, 1), got ", momentum);
    }
    std::string name() const override { return "SGD"; }
    float momentum() const { return momentum_; }
    bool nesterov() const { return nesterov_; }

protected:
    std::vector<std::string> slot_names() const override { return {"momentum"}; }
    void update(nn::Parameter<T>& p, Tensor<T>* s) override {
        ops::sgd_update(p.value, p.grad, s[0], this->learning_rate_, momentum_, nesterov_);
    }

private:
    float momentum_;
    bool nesterov_;
};

}  // namespace cumulus::optim
