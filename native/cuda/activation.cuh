// The elementwise activations and their derivatives, one definition shared by the unary kernels and the bias +
// activation kernels, so the fused path computes bit for bit what the unfused pair does.
#pragma once
#include <cuda_runtime.h>

#include "core/ops.h"

namespace bssn::cuda {

__device__ __forceinline__ float applyUnary(UnaryOp op, float p, float v) {
  switch (op) {
    case UnaryOp::Relu: return v > 0 ? v : 0.0f;
    case UnaryOp::LeakyRelu: return v > 0 ? v : p * v;
    case UnaryOp::Tanh: return tanhf(v);
    case UnaryOp::Sigmoid: return float(1.0 / (1.0 + exp(-double(v))));
    case UnaryOp::Scale: return p * v;
    default: return v + p;  // AddScalar
  }
}

// dy * f'(.) given the input x (relu, leaky relu) or the output y (tanh, sigmoid).
__device__ __forceinline__ float unaryGrad(UnaryOp op, float p, float x, float y, float g) {
  switch (op) {
    case UnaryOp::Relu: return x > 0 ? g : 0.0f;
    case UnaryOp::LeakyRelu: return x > 0 ? g : p * g;
    case UnaryOp::Tanh: return g * (1.0f - y * y);
    case UnaryOp::Sigmoid: return g * y * (1.0f - y);
    case UnaryOp::Scale: return p * g;
    default: return g;  // AddScalar
  }
}

}  // namespace bssn::cuda
