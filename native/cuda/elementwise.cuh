// Elementwise ops, bias add and its gradient, and the small reductions of the training stack.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

#include "core/ops.h"

namespace bssn::cuda {

void launchUnary(UnaryOp op, float param, const float* x, float* y, size_t n, cudaStream_t stream);
void launchUnaryBackward(UnaryOp op, float param, const float* x, const float* y, const float* dy, float* dx, size_t n,
                         cudaStream_t stream);
void launchBinary(BinaryOp op, const float* a, const float* b, float* out, size_t n, cudaStream_t stream);
void launchAddBias(const float* x, const float* bias, float* out, size_t outer, size_t channels, size_t inner, cudaStream_t stream);
// One block per channel: deterministic sums.
void launchSumToBias(const float* dy, float* db, size_t outer, size_t channels, size_t inner, cudaStream_t stream);
// One block: deterministic (the sums of the training stack are over losses, small).
void launchSum(const float* x, size_t n, float* out, float scale, cudaStream_t stream);
void launchBroadcast(const float* scalar, float* out, size_t n, float scale, cudaStream_t stream);

}  // namespace bssn::cuda
