// The CUDA backend in one include: device plumbing (errors, devices,
// streams, the caching allocator) and, under nvcc, every kernel family.
//
// Including it (or any <cumulus/cuda/*.cuh>) registers the CUDA memory ops,
// so Tensor<T>::empty(shape, Device::cuda()) and .to(Device) work. Under g++
// only the host plumbing is available (the CUDA headers must be on the
// include path and the program linked with cudart).
#pragma once

#include <cumulus/core/config.hpp>
#include <cumulus/cuda/runtime.cuh>

#if defined(__CUDACC__)
#include <cumulus/cuda/conv.cuh>
#include <cumulus/cuda/data.cuh>
#include <cumulus/cuda/dropout.cuh>
#include <cumulus/cuda/elementwise.cuh>
#include <cumulus/cuda/gemm.cuh>
#include <cumulus/cuda/graph.cuh>
#include <cumulus/cuda/optimizer.cuh>
#include <cumulus/cuda/pool.cuh>
#include <cumulus/cuda/reduce.cuh>
#include <cumulus/cuda/softmax_xent.cuh>
#endif
