// cuDNN as the convolution test's reference (conv_vs_cpu_test.cu) and the
// convolution benchmark's peer (benchmarks/cuda_conv_bench.cu): its status
// check, owners that destroy its objects on every way out (a throwing check
// included), and the four descriptors of one convolution in cumulus'
// layouts. Not part of the library: cuDNN is never the implementation.
#pragma once

#include <cudnn.h>

#include <cstdint>

#include <cumulus/core/error.hpp>
#include <cumulus/cpu/conv.hpp>

#define CUDNN_CHECK(expr)                                                                                     \
    do {                                                                                                      \
        const cudnnStatus_t st_ = (expr);                                                                     \
        if (st_ != CUDNN_STATUS_SUCCESS)                                                                      \
            CUMULUS_FAIL(#expr, ": ", cudnnGetErrorString(st_), " at ", __FILE__, ":", __LINE__);             \
    } while (0)

namespace cudnn_util {

// One cuDNN object, destroyed with the owner: CUDNN_CHECK(cudnnCreate(h.out())).
template <typename H, cudnnStatus_t (*Destroy)(H)>
class Owned {
public:
    Owned() = default;
    Owned(const Owned&) = delete;
    Owned& operator=(const Owned&) = delete;
    ~Owned() {
        if (h_) Destroy(h_);
    }
    H* out() { return &h_; }
    operator H() const { return h_; }

private:
    H h_{};
};
using Handle = Owned<cudnnHandle_t, cudnnDestroy>;
using TensorDesc = Owned<cudnnTensorDescriptor_t, cudnnDestroyTensorDescriptor>;
using FilterDesc = Owned<cudnnFilterDescriptor_t, cudnnDestroyFilterDescriptor>;
using ConvDesc = Owned<cudnnConvolutionDescriptor_t, cudnnDestroyConvolutionDescriptor>;
using PoolDesc = Owned<cudnnPoolingDescriptor_t, cudnnDestroyPoolingDescriptor>;

// cuDNN pads both sides of a dimension alike, by the padding before. Output
// position r then reads the same input rows as cumulus' (r * stride - pad
// before, onwards, zeros outside), so cuDNN computes the same convolution
// exactly when its output size, floor((in + 2 * pad - k) / stride) + 1,
// equals ours. That takes in symmetric 'same' padding and 'valid' padding
// with trailing rows no window reaches, and leaves out TensorFlow's 'same'
// with one more row after than before.
inline bool expressible(const cumulus::cpu::ConvShape& s) {
    auto out = [](std::int64_t in, std::int64_t pad, std::int64_t k, std::int64_t stride) {
        const std::int64_t span = in + 2 * pad - k;
        return span < 0 ? std::int64_t(-1) : span / stride + 1;
    };
    return s.n > 0 && out(s.h, s.pt, s.kh, s.sh) == s.oh && out(s.w, s.pl, s.kw, s.sw) == s.ow;
}

// x (N, H, W, C), y (N, OH, OW, O), the filter O x KH x KW x C (cuDNN's NHWC
// filter layout; cumulus' HWIO kernel must be transposed to it), a
// cross-correlation in FP32 with CUDNN_FMA_MATH (no tensor cores). s must
// be expressible().
struct ConvDescriptors {
    TensorDesc x, y;
    FilterDesc w;
    ConvDesc conv;
    explicit ConvDescriptors(const cumulus::cpu::ConvShape& s) {
        CUMULUS_CHECK(expressible(s), "cuDNN cannot express this convolution's padding");
        CUDNN_CHECK(cudnnCreateTensorDescriptor(x.out()));
        CUDNN_CHECK(cudnnCreateTensorDescriptor(y.out()));
        CUDNN_CHECK(cudnnCreateFilterDescriptor(w.out()));
        CUDNN_CHECK(cudnnCreateConvolutionDescriptor(conv.out()));
        CUDNN_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, int(s.n), int(s.c), int(s.h),
                                               int(s.w)));
        CUDNN_CHECK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, int(s.n), int(s.oc), int(s.oh),
                                               int(s.ow)));
        CUDNN_CHECK(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, int(s.oc), int(s.c), int(s.kh),
                                               int(s.kw)));
        CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv, int(s.pt), int(s.pl), int(s.sh), int(s.sw), 1, 1,
                                                    CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
        CUDNN_CHECK(cudnnSetConvolutionMathType(conv, CUDNN_FMA_MATH));
    }
};

}  // namespace cudnn_util
