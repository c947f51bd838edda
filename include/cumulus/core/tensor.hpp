// Tensor<T>: a typed, shaped, row-major view of reference-counted memory.
//
// Copying a Tensor shares its memory (as torch.Tensor does); clone() copies.
// slice() and reshape() are views: they never copy. Memory lives on one
// device; element access from the host is only allowed for CPU tensors.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include <cumulus/core/allocator.hpp>
#include <cumulus/core/device.hpp>
#include <cumulus/core/dtype.hpp>
#include <cumulus/core/error.hpp>
#include <cumulus/core/shape.hpp>

namespace cumulus {

// Raw memory of one device. Device backends (the CUDA one) register their
// allocate / free / copy functions here, so a CPU-only build needs no CUDA.
struct DeviceMemoryOps {
    void* (*allocate)(std::size_t bytes, Device d) = nullptr;
    void (*free)(void* p, Device d) noexcept = nullptr;
    // Copies `bytes` between two devices (either may be the CPU).
    void (*copy)(void* dst, Device dst_dev, const void* src, Device src_dev, std::size_t bytes) = nullptr;
};

inline DeviceMemoryOps& cuda_memory_ops() {
    static DeviceMemoryOps ops;
    return ops;
}

inline const DeviceMemoryOps& require_cuda_memory_ops(Device d) {
    const auto& ops = cuda_memory_ops();
    CUMULUS_CHECK(ops.allocate != nullptr, "device ", d.str(),
                  " requested, but this program was built without the CUDA backend "
                  "(rebuild with nvcc available and include <cumulus/cuda.hpp>)");
    return ops;
}

class Storage {
public:
    Storage(std::size_t bytes, Device device) : bytes_(bytes), device_(device) {
        if (device.is_cpu()) {
            ptr_ = host_allocate(bytes);
        } else {
            ptr_ = require_cuda_memory_ops(device).allocate(bytes, device);
        }
    }
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;
    ~Storage() {
        if (device_.is_cpu()) host_free(ptr_);
        else if (ptr_ != nullptr) cuda_memory_ops().free(ptr_, device_);
    }
    void* data() const { return ptr_; }
    std::size_t bytes() const { return bytes_; }
    Device device() const { return device_; }

private:
    void* ptr_ = nullptr;
    std::size_t bytes_ = 0;
    Device device_;
};

// Copies bytes between any two devices.
inline void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, std::size_t bytes) {
    if (bytes == 0) return;
    if (dst_dev.is_cpu() && src_dev.is_cpu()) {
        std::memcpy(dst, src, bytes);
        return;
    }
    require_cuda_memory_ops(dst_dev.is_cpu() ? src_dev : dst_dev).copy(dst, dst_dev, src, src_dev, bytes);
}

template <typename T>
class Tensor {
    static_assert(std::is_trivially_copyable_v<T>, "Tensor elements must be trivially copyable");

public:
    using value_type = T;

    Tensor() = default;

    // Uninitialised memory of the given shape on the given device.
    static Tensor empty(const Shape& shape, Device device = Device::cpu()) {
        Tensor t;
        t.shape_ = shape;
        std::size_t n = static_cast<std::size_t>(shape.numel());
        t.storage_ = std::make_shared<Storage>(n * sizeof(T), device);
        t.data_ = static_cast<T*>(t.storage_->data());
        return t;
    }
    static Tensor zeros(const Shape& shape, Device device = Device::cpu()) {
        Tensor t = empty(shape, device);
        t.fill(T{});
        return t;
    }
    static Tensor full(const Shape& shape, T value) {
        Tensor t = empty(shape);
        t.fill(value);
        return t;
    }
    // A CPU tensor holding `values` (which must have shape.numel() elements).
    static Tensor from_vector(const Shape& shape, const std::vector<T>& values) {
        CUMULUS_CHECK(static_cast<std::int64_t>(values.size()) == shape.numel(), "Tensor::from_vector: shape ",
                      shape.str(), " needs ", shape.numel(), " values, got ", values.size());
        Tensor t = empty(shape);
        if (!values.empty()) std::memcpy(t.data_, values.data(), values.size() * sizeof(T));
        return t;
    }

    bool defined() const { return storage_ != nullptr; }
    T* data() const { return data_; }
    const Shape& shape() const { return shape_; }
    int rank() const { return shape_.rank(); }
    std::int64_t dim(int i) const { return shape_.dim(i); }
    std::int64_t numel() const { return shape_.numel(); }
    std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * sizeof(T); }
    Device device() const { return storage_ ? storage_->device() : Device::cpu(); }
    static constexpr DType dtype() { return dtype_v<T>; }
    // True when both tensors view the same memory block (not necessarily the same range).
    bool shares_storage_with(const Tensor& o) const { return storage_ && storage_ == o.storage_; }

    // Rows [begin, end) along dimension 0, as a view (no copy).
    Tensor slice(std::int64_t begin, std::int64_t end) const {
        CUMULUS_CHECK(rank() >= 1, "Tensor::slice on a scalar");
        CUMULUS_CHECK(0 <= begin && begin <= end && end <= shape_[0], "Tensor::slice [", begin, ", ", end,
                      ") out of range for shape ", shape_.str());
        Tensor t = *this;
        std::int64_t row = numel() / std::max<std::int64_t>(shape_[0], 1);
        t.data_ = data_ + begin * row;
        t.shape_[0] = end - begin;
        return t;
    }

    // The same memory with another shape of the same element count (a view).
    // One extent may be -1: it is inferred.
    Tensor reshape(std::initializer_list<std::int64_t> dims) const {
        Shape s;
        int infer = -1;
        std::int64_t known = 1;
        for (auto d : dims) {
            if (d == -1) {
                CUMULUS_CHECK(infer < 0, "Tensor::reshape: more than one -1");
                infer = s.rank();
                s.push_back(0);
            } else {
                s.push_back(d);
                known *= d;
            }
        }
        if (infer >= 0) {
            CUMULUS_CHECK(known > 0 && numel() % known == 0, "Tensor::reshape: cannot infer -1 of ", shape_.str());
            s[infer] = numel() / known;
        }
        return reshape(s);
    }
    Tensor reshape(const Shape& s) const {
        CUMULUS_CHECK(s.numel() == numel(), "Tensor::reshape: ", shape_.str(), " has ", numel(),
                      " elements, ", s.str(), " has ", s.numel());
        Tensor t = *this;
        t.shape_ = s;
        return t;
    }

    // A deep copy on the same device.
    Tensor clone() const {
        Tensor t = empty(shape_, device());
        copy_bytes(t.data_, t.device(), data_, device(), nbytes());
        return t;
    }

    // A copy on `d`, or this tensor itself when it already lives there.
    Tensor to(Device d) const {
        if (d == device()) return *this;
        Tensor t = empty(shape_, d);
        copy_bytes(t.data_, d, data_, device(), nbytes());
        return t;
    }

    // Copies `src` (same element count, any device) into this tensor's memory.
    void copy_from(const Tensor& src) {
        CUMULUS_CHECK(src.numel() == numel(), "Tensor::copy_from: ", src.shape().str(), " into ", shape_.str());
        copy_bytes(data_, device(), src.data_, src.device(), nbytes());
    }

    void fill(T value) {
        if (device().is_cpu()) {
            std::fill(data_, data_ + numel(), value);
        } else {
            std::vector<T> host(static_cast<std::size_t>(numel()), value);
            copy_bytes(data_, device(), host.data(), Device::cpu(), nbytes());
        }
    }

    std::vector<T> to_vector() const {
        std::vector<T> v(static_cast<std::size_t>(numel()));
        copy_bytes(v.data(), Device::cpu(), data_, device(), nbytes());
        return v;
    }

    // Bounds-checked element access on CPU tensors, for tests and small tools.
    template <typename... I>
    T& at(I... idx) const {
        static_assert(sizeof...(I) >= 1);
        CUMULUS_CHECK(device().is_cpu(), "Tensor::at on a ", device().str(), " tensor; copy it to the CPU first");
        CUMULUS_CHECK(static_cast<int>(sizeof...(I)) == rank(), "Tensor::at: ", sizeof...(I),
                      " indices for shape ", shape_.str());
        std::int64_t ids[] = {static_cast<std::int64_t>(idx)...};
        std::int64_t off = 0;
        for (int i = 0; i < rank(); ++i) {
            CUMULUS_CHECK(ids[i] >= 0 && ids[i] < shape_[i], "Tensor::at: index ", ids[i], " out of range in dim ",
                          i, " of ", shape_.str());
            off = off * shape_[i] + ids[i];
        }
        return data_[off];
    }
    T& operator[](std::int64_t i) const { return data_[i]; }  // flat, unchecked, CPU only

private:
    std::shared_ptr<Storage> storage_;
    T* data_ = nullptr;
    Shape shape_;
};

// A clear error when two operands of one op live on different devices.
template <typename A, typename B>
void check_same_device(const char* op, const Tensor<A>& a, const Tensor<B>& b) {
    CUMULUS_CHECK(a.device() == b.device(), op, ": operands on different devices (", a.device().str(), " and ",
                  b.device().str(), "); move them with .to(device) first");
}

}  // namespace cumulus
