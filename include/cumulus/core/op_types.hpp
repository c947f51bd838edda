// Small enums shared by the CPU and CUDA op families, so both sides have the
// same signatures.
#pragma once

namespace cumulus {

// Whether a GEMM operand is used as stored (row-major) or transposed.
enum class Transpose : bool { No = false, Yes = true };

// What a GEMM does to each output element after alpha * A B + beta * C.
enum class Epilogue {
    None,      // C
    Bias,      // C + bias[col]
    BiasRelu,  // max(C + bias[col], 0)
};

}  // namespace cumulus
