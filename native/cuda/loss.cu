#include "cuda/common.cuh"
#include "cuda/loss.cuh"

namespace bssn::cuda {

namespace {

__global__ void hingeKernel(const float* x, size_t n, size_t split, float scaleReal, float scaleFake, float* out) {
  BSSN_SHARED(double, partial, 1024 / kWarp);
  double real = 0, fake = 0;
  for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float h = i < split ? 1.0f - x[i] : 1.0f + x[i];
    (i < split ? real : fake) += h > 0 ? h : 0.0f;
  }
  real = blockSum(real, partial);
  __syncthreads();  // partial is reused
  fake = blockSum(fake, partial);
  if (threadIdx.x == 0) out[0] = float(real * scaleReal) + float(fake * scaleFake);
}

__global__ void hingeBackwardKernel(const float* x, const float* g, size_t n, size_t split, float scaleReal, float scaleFake, float* dx) {
  const float dReal = -g[0] * scaleReal, dFake = g[0] * scaleFake;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    dx[i] = i < split ? (1.0f - x[i] > 0 ? dReal : 0.0f) : (1.0f + x[i] > 0 ? dFake : 0.0f);
}

}  // namespace

void launchHinge(const float* x, size_t n, size_t split, float scaleReal, float scaleFake, float* out, cudaStream_t stream) {
  BSSN_LAUNCH(hingeKernel, 1, 1024, 0, stream, x, n, split, scaleReal, scaleFake, out);
}

void launchHingeBackward(const float* x, const float* g, size_t n, size_t split, float scaleReal, float scaleFake, float* dx,
                         cudaStream_t stream) {
  if (n) BSSN_LAUNCH(hingeBackwardKernel, gridFor(int64_t(n), 256), 256, 0, stream, x, g, n, split, scaleReal, scaleFake, dx);
}

}  // namespace bssn::cuda
