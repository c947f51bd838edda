// Dataset: labelled examples held in memory, batched by index.
//
// Examples are stored as uint8 (images; scaled to floats when a batch is
// gathered, as `x / 255.0` in the Keras seed) or as float. Labels are class
// indices stored as uint8 (at most 256 classes). The uint8 form is what a
// GPU keeps on the device; batches are gathered there by one kernel.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include <cumulus/core/tensor.hpp>
#include <cumulus/ops/data.hpp>

namespace cumulus::data {

class Dataset {
public:
    Dataset() = default;

    // `x` is (N, ...) uint8; each batch is x * scale.
    static Dataset from_uint8(Tensor<std::uint8_t> x, Tensor<std::uint8_t> labels, float scale = 1.0f / 255.0f) {
        Dataset d;
        d.x_u8_ = std::move(x);
        d.labels_ = std::move(labels);
        d.scale_ = scale;
        d.check();
        return d;
    }
    // `x` is (N, ...) float, used as is.
    static Dataset from_float(Tensor<float> x, Tensor<std::uint8_t> labels) {
        Dataset d;
        d.x_f32_ = std::move(x);
        d.labels_ = std::move(labels);
        d.check();
        return d;
    }

    std::int64_t size() const { return labels_.numel(); }
    bool is_uint8() const { return x_u8_.defined(); }
    float scale() const { return scale_; }
    const Tensor<std::uint8_t>& labels() const { return labels_; }
    const Tensor<std::uint8_t>& x_uint8() const { return x_u8_; }
    const Tensor<float>& x_float() const { return x_f32_; }
    Device device() const { return labels_.device(); }

    // One example's shape (without the batch dimension).
    Shape example_shape() const {
        const Shape& s = is_uint8() ? x_u8_.shape() : x_f32_.shape();
        Shape e;
        for (int i = 1; i < s.rank(); ++i) e.push_back(s[i]);
        return e;
    }
    std::int64_t example_size() const { return example_shape().numel(); }

    // The same examples viewed with another per-example shape (no copy), as
    // `x_train.reshape(60000, 784)` in the Keras seed.
    Dataset reshape_examples(const Shape& example) const {
        CUMULUS_CHECK(example.numel() == example_size(), "Dataset::reshape_examples: examples of shape ",
                      example_shape().str(), " cannot be viewed as ", example.str());
        Dataset d = *this;
        Shape full;
        full.push_back(size());
        for (auto v : example) full.push_back(v);
        if (is_uint8()) d.x_u8_ = x_u8_.reshape(full);
        else d.x_f32_ = x_f32_.reshape(full);
        return d;
    }

    // Examples [begin, end), a view.
    Dataset slice(std::int64_t begin, std::int64_t end) const {
        Dataset d = *this;
        if (is_uint8()) d.x_u8_ = x_u8_.slice(begin, end);
        else d.x_f32_ = x_f32_.slice(begin, end);
        d.labels_ = labels_.slice(begin, end);
        return d;
    }

    Dataset to(Device dev) const {
        Dataset d = *this;
        if (is_uint8()) d.x_u8_ = x_u8_.to(dev);
        else {
            CUMULUS_CHECK(dev.is_cpu(), "Dataset::to(", dev.str(), "): float datasets stay on the CPU; "
                          "store the examples as uint8 to keep them on a GPU");
            d.x_f32_ = x_f32_.to(dev);
        }
        d.labels_ = labels_.to(dev);
        return d;
    }

    // Gathers examples `indices[0..count)` into x (count, example...) and
    // their labels into y (count), both on the dataset's device.
    template <typename T, typename L>
    void gather(const std::int64_t* indices, std::int64_t count, Tensor<T>& x, Tensor<L>& y) const {
        if (is_uint8()) {
            ops::gather_normalize(x_u8_, indices, count, static_cast<T>(scale_), x);
        } else {
            CUMULUS_CHECK(x.device().is_cpu() && x.numel() == count * example_size(),
                          "Dataset::gather: bad batch buffer ", x.shape().str());
            const std::int64_t n = size(), f = example_size();
            const float* src = x_f32_.data();
            T* dst = x.data();
            for (std::int64_t i = 0; i < count; ++i) {
                CUMULUS_CHECK(indices[i] >= 0 && indices[i] < n, "Dataset::gather: index ", indices[i],
                              " out of range for ", n, " examples");
                for (std::int64_t j = 0; j < f; ++j) dst[i * f + j] = static_cast<T>(src[indices[i] * f + j]);
            }
        }
        ops::gather_labels(labels_, indices, count, y);
    }

    // The number of classes: 1 + the largest label (a CPU scan).
    int num_classes() const {
        auto v = labels_.to_vector();
        int m = -1;
        for (auto l : v) m = std::max(m, int(l));
        return m + 1;
    }

private:
    void check() const {
        const std::int64_t n = is_uint8() ? (x_u8_.rank() ? x_u8_.dim(0) : -1) : (x_f32_.rank() ? x_f32_.dim(0) : -1);
        CUMULUS_CHECK(n >= 0, "Dataset: examples must have a batch dimension");
        CUMULUS_CHECK(labels_.rank() == 1 && labels_.dim(0) == n, "Dataset: ", n, " examples but labels of shape ",
                      labels_.shape().str());
        CUMULUS_CHECK((is_uint8() ? x_u8_.device() : x_f32_.device()) == labels_.device(),
                      "Dataset: examples and labels on different devices");
    }

    Tensor<std::uint8_t> x_u8_;
    Tensor<float> x_f32_;
    Tensor<std::uint8_t> labels_;
    float scale_ = 1.0f;
};

}  // namespace cumulus::data
