// CPU loops of the training-stack ops (run on the CPU stream; the reference for the CUDA kernels).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/ops.h"

namespace bssn::cpu {

void unary(UnaryOp op, float param, const float* x, float* y, size_t n);
void unaryBackward(UnaryOp op, float param, const float* x, const float* y, const float* dy, float* dx, size_t n);
void binary(BinaryOp op, const float* a, const float* b, float* out, size_t n);
void addBias(const float* x, const float* bias, float* out, size_t outer, size_t channels, size_t inner);
void sumToBias(const float* dy, float* db, size_t outer, size_t channels, size_t inner);
void biasActivation(UnaryOp op, float param, const float* x, const float* bias, float* y, size_t outer, size_t channels, size_t inner);
void biasActivationBackward(UnaryOp op, float param, const float* y, const float* dy, float* dx, float* db, bool accumulate, size_t outer,
                            size_t channels, size_t inner);
void sum(const float* x, size_t n, float* out, float scale);
void broadcast(const float* scalar, float* out, size_t n, float scale);
void hinge(const float* x, size_t n, size_t split, float scaleReal, float scaleFake, float* out);
void hingeBackward(const float* x, const float* g, size_t n, size_t split, float scaleReal, float scaleFake, float* dx);
// On the CPU BLAS when one is loaded (cpu/blas.h), else the reference loops below.
void gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* a, const float* b, float beta, float* c);
// The reference: float64 accumulation, row by row.
void referenceGemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* a, const float* b, float beta,
                   float* c);
void adam(const AdamArgs& args);
void sgd(const SgdArgs& args);
// Convolutions: chunks of images through the BLAS when one is loaded, else im2col + referenceGemm per image.
void conv2dForward(const Conv2dArgs& a);
void conv2dBackwardData(const Conv2dArgs& a);
void conv2dBackwardFilter(const Conv2dArgs& a);
void batchNorm(const BatchNormArgs& a);
void batchNormBackward(const BatchNormBackwardArgs& a);

}  // namespace bssn::cpu
