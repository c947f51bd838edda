// Shape: the extents of a tensor, at most kMaxRank dimensions, stored inline.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include <cumulus/core/error.hpp>

namespace cumulus {

class Shape {
public:
    static constexpr int kMaxRank = 6;

    Shape() = default;
    Shape(std::initializer_list<std::int64_t> dims) {
        CUMULUS_CHECK(dims.size() <= kMaxRank, "Shape: rank ", dims.size(), " exceeds the maximum ", kMaxRank);
        for (auto d : dims) push_back(d);
    }
    template <typename It>
    Shape(It first, It last) {
        for (; first != last; ++first) push_back(static_cast<std::int64_t>(*first));
    }

    void push_back(std::int64_t d) {
        CUMULUS_CHECK(rank_ < kMaxRank, "Shape: rank exceeds the maximum ", kMaxRank);
        CUMULUS_CHECK(d >= 0, "Shape: negative extent ", d);
        dims_[rank_++] = d;
    }

    int rank() const { return rank_; }
    std::int64_t operator[](int i) const { return dims_[i]; }
    std::int64_t& operator[](int i) { return dims_[i]; }
    // Python-style index: -1 is the last dimension.
    std::int64_t dim(int i) const {
        int j = i < 0 ? i + rank_ : i;
        CUMULUS_CHECK(j >= 0 && j < rank_, "Shape ", str(), ": no dimension ", i);
        return dims_[j];
    }
    std::int64_t numel() const {
        std::int64_t n = 1;
        for (int i = 0; i < rank_; ++i) n *= dims_[i];
        return n;
    }
    const std::int64_t* begin() const { return dims_.data(); }
    const std::int64_t* end() const { return dims_.data() + rank_; }

    // The same shape with dimension 0 replaced.
    Shape with_dim0(std::int64_t d0) const {
        Shape s = *this;
        s.dims_[0] = d0;
        return s;
    }

    // "(128, 784)", as numpy prints shapes; "()" for a scalar.
    std::string str() const {
        std::string s = "(";
        for (int i = 0; i < rank_; ++i) {
            if (i) s += ", ";
            s += std::to_string(dims_[i]);
        }
        if (rank_ == 1) s += ",";
        return s + ")";
    }

    friend bool operator==(const Shape& a, const Shape& b) {
        if (a.rank_ != b.rank_) return false;
        for (int i = 0; i < a.rank_; ++i)
            if (a.dims_[i] != b.dims_[i]) return false;
        return true;
    }

private:
    std::array<std::int64_t, kMaxRank> dims_{};
    int rank_ = 0;
};

}  // namespace cumulus
