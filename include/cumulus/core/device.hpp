// Devices: where a tensor's memory lives and where an op runs.
#pragma once

#include <string>
#include <string_view>

#include <cumulus/core/error.hpp>

namespace cumulus {

enum class DeviceType { CPU, CUDA };

struct Device {
    DeviceType type = DeviceType::CPU;
    int index = 0;

    static constexpr Device cpu() { return {DeviceType::CPU, 0}; }
    static constexpr Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
    bool is_cpu() const { return type == DeviceType::CPU; }
    bool is_cuda() const { return type == DeviceType::CUDA; }

    std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
    friend bool operator==(const Device&, const Device&) = default;
};

// "cpu", "cuda", "cuda:1" (as PyTorch spells them).
inline Device parse_device(std::string_view s) {
    if (s == "cpu") return Device::cpu();
    if (s == "cuda") return Device::cuda(0);
    if (s.substr(0, 5) == "cuda:" && s.size() > 5) {
        int i = 0;
        for (char c : s.substr(5)) {
            CUMULUS_CHECK(c >= '0' && c <= '9', "bad device '", s, "': expected cpu, cuda or cuda:N");
            i = i * 10 + (c - '0');
        }
        return Device::cuda(i);
    }
    CUMULUS_FAIL("bad device '", s, "': expected cpu, cuda or cuda:N");
}

}  // namespace cumulus
