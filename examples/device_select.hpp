// --device for the example programs: cpu, cuda, or auto (a GPU when this
// program was built with CUDA and one is present, else the CPU).
#pragma once

#include <string>

#include <cumulus/core/config.hpp>
#include <cumulus/core/device.hpp>
#if CUMULUS_WITH_CUDA
#include <cumulus/cuda.hpp>  // registers the device memory ops; under nvcc, the kernels
#endif

namespace examples {

inline int cuda_device_count() {
#if CUMULUS_WITH_CUDA
    return cumulus::cuda::device_count();
#else
    return 0;
#endif
}

inline cumulus::Device select_device(const std::string& flag) {
    if (flag == "cpu") return cumulus::Device::cpu();
    if (flag == "cuda") {
        CUMULUS_CHECK(cumulus::built_with_cuda,
                      "--device cuda: this program was built without the CUDA backend; "
                      "use --device cpu (or --device auto, which falls back to the CPU)");
#if CUMULUS_WITH_CUDA
        const std::string why = cumulus::cuda::unavailable_reason();
        CUMULUS_CHECK(why.empty(), "--device cuda: no usable CUDA device (", why, ")");
#endif
        return cumulus::Device::cuda(0);
    }
    return cuda_device_count() > 0 ? cumulus::Device::cuda(0) : cumulus::Device::cpu();
}

}  // namespace examples
