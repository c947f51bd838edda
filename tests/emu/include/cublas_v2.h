// cuBLAS, as the CPU emulation provides it (see cuemu.hpp): cublasSgemm with
// cuBLAS' column-major semantics, computed in double on the host, so that
// the tests that compare with cuBLAS run the same code here. Not a fast path.
#pragma once

#include "cuda_runtime.h"

enum cublasStatus_t {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
};
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 };
enum cublasMath_t { CUBLAS_DEFAULT_MATH = 0, CUBLAS_TENSOR_OP_MATH = 1, CUBLAS_PEDANTIC_MATH = 2 };
struct cuemu_cublas {
    cudaStream_t stream = nullptr;
};
using cublasHandle_t = cuemu_cublas*;

inline cublasStatus_t cublasCreate(cublasHandle_t* h) {
    *h = new cuemu_cublas();
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasDestroy(cublasHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t) {
    return h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

// C = alpha op(A) op(B) + beta C, column-major, C m x n.
inline cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                  const float* alpha, const float* A, int lda, const float* B, int ldb,
                                  const float* beta, float* C, int ldc) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (m < 0 || n < 0 || k < 0 || ldc < std::max(1, m) || lda < std::max(1, ta == CUBLAS_OP_N ? m : k) ||
        ldb < std::max(1, tb == CUBLAS_OP_N ? k : n))
        return CUBLAS_STATUS_INVALID_VALUE;
    const float a = *alpha, b = *beta;
    const cudaError_t e = ::cuemu::submit(h->stream, [=]() {
        for (int j = 0; j < n; ++j)
            for (int i = 0; i < m; ++i) {
                double s = 0;
                for (int p = 0; p < k; ++p) {
                    const float x = ta == CUBLAS_OP_N ? A[i + std::size_t(p) * lda] : A[p + std::size_t(i) * lda];
                    const float y = tb == CUBLAS_OP_N ? B[p + std::size_t(j) * ldb] : B[j + std::size_t(p) * ldb];
                    s += double(x) * double(y);
                }
                float& c = C[i + std::size_t(j) * ldc];
                c = float(double(a) * s + (b == 0.0f ? 0.0 : double(b) * double(c)));
            }
    });
    return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}
