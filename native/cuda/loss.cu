#include "cuda/common.cuh"
#include "cuda/loss.cuh"

namespace bssn::cuda {

namespace {

__global__ void hingeSumKernel(const float* x, size_t n, float sign, float scale, float* out) {
  BSSN_SHARED(double, partial, 1024 / kWarp);
  double s = 0;
  for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float h = 1.0f + sign * x[i];
    s += h > 0 ? h : 0.0f;
  }
  s = blockSum(s, partial);
  if (threadIdx.x == 0) out[0] = float(s * scale);
}

__global__ void hingeSumBackwardKernel(const float* x, const float* g, size_t n, float sign, float scale, float* dx) {
  const float d = g[0] * scale * sign;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    dx[i] = 1.0f + sign * x[i] > 0 ? d : 0.0f;
}

}  // namespace

void launchHingeSum(const float* x, size_t n, float sign, float scale, float* out, cudaStream_t stream) {
  BSSN_LAUNCH(hingeSumKernel, 1, 1024, 0, stream, x, n, sign, scale, out);
}

void launchHingeSumBackward(const float* x, const float* g, size_t n, float sign, float scale, float* dx, cudaStream_t stream) {
  if (n) BSSN_LAUNCH(hingeSumBackwardKernel, gridFor(int64_t(n), 256), 256, 0, stream, x, g, n, sign, scale, dx);
}

}  // namespace bssn::cuda
