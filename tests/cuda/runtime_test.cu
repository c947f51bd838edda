// The CUDA runtime smoke test: the core headers compile under nvcc, and
// Philox4x32-10 in device code gives bit for bit the host's numbers.
// A plain main (not doctest) so that it can say "skipped" with exit code 77
// when the machine has no usable CUDA device.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <vector>

#include <cumulus/core/allocator.hpp>
#include <cumulus/core/config.hpp>
#include <cumulus/core/device.hpp>
#include <cumulus/core/dtype.hpp>
#include <cumulus/core/error.hpp>
#include <cumulus/core/op_types.hpp>
#include <cumulus/core/parallel.hpp>
#include <cumulus/core/philox.hpp>
#include <cumulus/core/random.hpp>
#include <cumulus/core/shape.hpp>
#include <cumulus/core/tensor.hpp>

static_assert(cumulus::built_with_cuda, "this test is built with CUMULUS_WITH_CUDA=1");

namespace {

constexpr int kSkip = 77;
constexpr std::uint64_t kSeed = 0x243f6a8885a308d3ull;
constexpr std::uint32_t kStream = 5;
constexpr std::uint64_t kStep = 0x100000002ull;

// Block i: counter {i, i ^ 0x9e3779b9, stream, 7}, key from the seed.
CUMULUS_HOST_DEVICE cumulus::PhiloxBlock block_for(std::uint32_t i) {
    cumulus::PhiloxBlock c{{i, i ^ 0x9e3779b9u, kStream, 7u}};
    return cumulus::philox4x32_10(c, std::uint32_t(kSeed), std::uint32_t(kSeed >> 32));
}

__global__ void philox_kernel(std::uint32_t* words, float* uniforms, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    cumulus::PhiloxBlock b = block_for(std::uint32_t(i));
    for (int w = 0; w < 4; ++w) words[4 * i + w] = b.v[w];
    uniforms[i] = cumulus::philox_uniform_at(kSeed, kStream, kStep, std::uint64_t(i));
}

int failures = 0;

void expect(bool ok, const char* what) {
    if (!ok) {
        std::printf("FAILED: %s\n", what);
        ++failures;
    }
}

bool cuda_ok(cudaError_t e, const char* what) {
    if (e == cudaSuccess) return true;
    std::printf("FAILED: %s: %s\n", what, cudaGetErrorString(e));
    ++failures;
    return false;
}

}  // namespace

int main() {
    // Host-side checks that need no device: the headers work as usual under nvcc.
    expect(cumulus::Shape{128, 784}.str() == "(128, 784)", "Shape::str under nvcc");
    expect(cumulus::parse_device("cuda:1") == cumulus::Device::cuda(1), "parse_device under nvcc");
    {
        cumulus::PhiloxBlock z = cumulus::philox4x32_10(cumulus::PhiloxBlock{{0, 0, 0, 0}}, 0, 0);
        expect(z.v[0] == 0x6627e8d5u && z.v[1] == 0xe169c58du && z.v[2] == 0xbc57ac4cu && z.v[3] == 0x9b00dbd8u,
               "Philox4x32-10 known answer on the host under nvcc");
        auto t = cumulus::Tensor<float>::from_vector({2, 2}, {1, 2, 3, 4});
        expect(t.slice(1, 2).at(0, 1) == 4.0f, "Tensor under nvcc");
        float sum = 0;
        cumulus::Philox rng(1, 0);
        for (int i = 0; i < 100; ++i) sum += rng.uniform();
        expect(sum > 30 && sum < 70, "Philox::uniform under nvcc");
    }

    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        std::printf("SKIPPED: no CUDA device (%s)\n",
                    err != cudaSuccess ? cudaGetErrorString(err) : "cudaGetDeviceCount returned 0 devices");
        return failures ? 1 : kSkip;
    }

    cudaDeviceProp prop{};
    if (cuda_ok(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties"))
        std::printf("device 0: %s (sm_%d%d), %d device(s)\n", prop.name, prop.major, prop.minor, count);

    const int n = 100003;  // not a multiple of the block size
    std::uint32_t* d_words = nullptr;
    float* d_uniforms = nullptr;
    bool ok = cuda_ok(cudaMalloc(&d_words, sizeof(std::uint32_t) * 4 * n), "cudaMalloc words") &&
              cuda_ok(cudaMalloc(&d_uniforms, sizeof(float) * n), "cudaMalloc uniforms");
    std::vector<std::uint32_t> words(std::size_t(4) * n);
    std::vector<float> uniforms(n);
    if (ok) {
        const int threads = 256;
        philox_kernel<<<(n + threads - 1) / threads, threads>>>(d_words, d_uniforms, n);
        ok = cuda_ok(cudaGetLastError(), "kernel launch") && cuda_ok(cudaDeviceSynchronize(), "kernel run") &&
             cuda_ok(cudaMemcpy(words.data(), d_words, words.size() * sizeof(std::uint32_t), cudaMemcpyDeviceToHost),
                     "copy words") &&
             cuda_ok(cudaMemcpy(uniforms.data(), d_uniforms, uniforms.size() * sizeof(float), cudaMemcpyDeviceToHost),
                     "copy uniforms");
    }
    cudaFree(d_words);
    cudaFree(d_uniforms);

    if (ok) {
        int word_mismatches = 0, uniform_mismatches = 0;
        for (int i = 0; i < n; ++i) {
            cumulus::PhiloxBlock b = block_for(std::uint32_t(i));
            for (int w = 0; w < 4; ++w) word_mismatches += words[std::size_t(4) * i + w] != b.v[w];
            uniform_mismatches += uniforms[i] != cumulus::philox_uniform_at(kSeed, kStream, kStep, std::uint64_t(i));
        }
        if (word_mismatches || uniform_mismatches)
            std::printf("device vs host: %d word and %d uniform mismatches of %d elements\n", word_mismatches,
                        uniform_mismatches, n);
        expect(word_mismatches == 0, "device Philox4x32-10 words equal the host's");
        expect(uniform_mismatches == 0, "device philox_uniform_at equals the host's");
    }

    std::printf("%s: cuda runtime test\n", failures ? "FAILED" : "PASSED");
    return failures ? 1 : 0;
}
