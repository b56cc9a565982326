#include <cmath>

#include "core/device.h"
#include "cuda/common.cuh"
#include "cuda/optim.cuh"

namespace bssn::cuda {

namespace {

__global__ void adamKernel(float* p, const float* g, float* m, float* v, size_t n, float lr, float b1, float b2, float eps, float wd,
                           double c1, double c2) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const float gi = g[i] + wd * p[i];
    const float mi = b1 * m[i] + (1 - b1) * gi;
    const float vi = b2 * v[i] + (1 - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = float(p[i] - lr * (mi / c1) / (sqrt(vi / c2) + eps));
  }
}

__global__ void sgdKernel(float* p, const float* g, float* buf, size_t n, float lr, float momentum, float wd, bool first) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    float d = g[i] + wd * p[i];
    if (buf) {
      buf[i] = first ? d : momentum * buf[i] + d;
      d = buf[i];
    }
    p[i] -= lr * d;
  }
}

}  // namespace

void launchAdam(const AdamArgs& a, cudaStream_t stream) {
  if (!a.n) return;
  const double c1 = 1.0 - std::pow(double(a.beta1), double(a.step));
  const double c2 = 1.0 - std::pow(double(a.beta2), double(a.step));
  BSSN_LAUNCH(adamKernel, gridFor(int64_t(a.n), 256), 256, 0, stream, a.param->f32(), a.grad->f32(), a.m->f32(), a.v->f32(), a.n, a.lr,
                                                               a.beta1, a.beta2, a.eps, a.weightDecay, c1, c2);
}

void launchSgd(const SgdArgs& a, cudaStream_t stream) {
  if (!a.n) return;
  BSSN_LAUNCH(sgdKernel, gridFor(int64_t(a.n), 256), 256, 0, stream, a.param->f32(), a.grad->f32(),
                                                              a.momentumBuffer ? a.momentumBuffer->f32() : nullptr, a.n, a.lr,
                                                              a.momentum, a.weightDecay, a.firstStep);
}

}  // namespace bssn::cuda
