#include "cuda/activation.cuh"
#include "cuda/bias_activation.cuh"
#include "cuda/common.cuh"

namespace bssn::cuda {

namespace {

constexpr int kThreads = 256;

// Relu and leaky relu (slope >= 0) take their derivative from the sign of the pre-activation, which y's sign gives:
// y > 0 exactly where x + bias > 0.
__device__ __forceinline__ float gradFromOutput(UnaryOp op, float p, float y, float g) { return unaryGrad(op, p, y, y, g); }

__global__ void biasActivationKernel(UnaryOp op, float p, const float* x, const float* bias, float* y, size_t n, size_t channels,
                                     size_t inner) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const float v = x[i] + bias[(i / inner) % channels];  // rounded to float first, as addBias stores it
    y[i] = applyUnary(op, p, v);
  }
}

__global__ void activationBackwardKernel(UnaryOp op, float p, const float* y, const float* dy, float* dx, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    dx[i] = gradFromOutput(op, p, y[i], dy[i]);
}

__global__ void biasActivationBackwardKernel(UnaryOp op, float p, const float* y, const float* dy, float* dx, float* db, bool accumulate,
                                             size_t outer, size_t channels, size_t inner) {
  BSSN_SHARED(double, partial, kThreads / kWarp);
  const size_t c = blockIdx.x;
  double s = 0;
  for (size_t j = threadIdx.x; j < outer * inner; j += blockDim.x) {
    const size_t o = j / inner, i = j % inner;
    const size_t at = (o * channels + c) * inner + i;
    const float g = gradFromOutput(op, p, y[at], dy[at]);
    if (dx) dx[at] = g;
    s += g;
  }
  s = blockSum(s, partial);
  // The unfused path adds a float sum into the gradient: the same rounding.
  if (threadIdx.x == 0) db[c] = accumulate ? db[c] + float(s) : float(s);
}

}  // namespace

void launchBiasActivation(UnaryOp op, float p, const float* x, const float* bias, float* y, size_t outer, size_t channels, size_t inner,
                          cudaStream_t stream) {
  const size_t n = outer * channels * inner;
  if (n) BSSN_LAUNCH(biasActivationKernel, gridFor(int64_t(n), kThreads), kThreads, 0, stream, op, p, x, bias, y, n, channels, inner);
}

void launchBiasActivationBackward(UnaryOp op, float p, const float* y, const float* dy, float* dx, float* db, bool accumulate, size_t outer,
                                  size_t channels, size_t inner, cudaStream_t stream) {
  if (db) {
    if (channels) BSSN_LAUNCH(biasActivationBackwardKernel, unsigned(channels), kThreads, 0, stream, op, p, y, dy, dx, db, accumulate, outer, channels, inner);
    return;
  }
  const size_t n = outer * channels * inner;
  if (dx && n) BSSN_LAUNCH(activationBackwardKernel, gridFor(int64_t(n), kThreads), kThreads, 0, stream, op, p, y, dy, dx, n);
}

}  // namespace bssn::cuda
