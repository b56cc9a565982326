#include "core/device.h"
#include "cuda/batch_norm.cuh"
#include "cuda/common.cuh"

namespace bssn::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ int64_t at(int64_t j, int64_t c, int64_t channels, int64_t inner) {
  return ((j / inner) * channels + c) * inner + j % inner;
}

__global__ void batchNormKernel(const float* x, float* y, const float* gamma, const float* beta, float* runningMean, float* runningVar,
                                float* saveMean, float* saveInvStd, int64_t n, int64_t channels, int64_t inner, int training,
                                float momentum, float eps) {
  BSSN_SHARED(double, partial, kThreads / kWarp);
  BSSN_SHARED(double, broadcast, 1);
  const int64_t c = blockIdx.x, count = n * inner;
  double mean, invStd;
  if (training) {
    mean = blockTotal(count, [&](int64_t j) { return double(x[at(j, c, channels, inner)]); }, partial, broadcast) / double(count);
    const double ss = blockTotal(count, [&](int64_t j) {
      const double d = x[at(j, c, channels, inner)] - mean;
      return d * d;
    }, partial, broadcast);
    const double var = ss / double(count);
    invStd = 1.0 / sqrt(var + eps);
    if (threadIdx.x == 0) {
      saveMean[c] = float(mean);
      saveInvStd[c] = float(invStd);
      const double unbiased = count > 1 ? ss / double(count - 1) : var;
      runningMean[c] = float((1 - momentum) * runningMean[c] + momentum * mean);
      runningVar[c] = float((1 - momentum) * runningVar[c] + momentum * unbiased);
    }
  } else {
    mean = runningMean[c];
    invStd = 1.0 / sqrt(double(runningVar[c]) + eps);
  }
  const double g = gamma[c], b = beta[c];
  for (int64_t j = threadIdx.x; j < count; j += blockDim.x) {
    const int64_t k = at(j, c, channels, inner);
    y[k] = float((x[k] - mean) * invStd * g + b);
  }
}

__global__ void batchNormBackwardKernel(const float* x, const float* dy, const float* gamma, const float* saveMean, const float* saveInvStd,
                                        float* dx, float* dgamma, float* dbeta, int64_t n, int64_t channels, int64_t inner) {
  BSSN_SHARED(double, partial, kThreads / kWarp);
  BSSN_SHARED(double, broadcast, 1);
  const int64_t c = blockIdx.x, count = n * inner;
  const double mean = saveMean[c], invStd = saveInvStd[c], g = gamma[c];
  const double sumDy = blockTotal(count, [&](int64_t j) { return double(dy[at(j, c, channels, inner)]); }, partial, broadcast);
  const double sumDyXhat = blockTotal(count, [&](int64_t j) {
    const int64_t k = at(j, c, channels, inner);
    return double(dy[k]) * (x[k] - mean) * invStd;
  }, partial, broadcast);
  if (threadIdx.x == 0) {
    dbeta[c] = float(sumDy);
    dgamma[c] = float(sumDyXhat);
  }
  const double m = double(count);
  for (int64_t j = threadIdx.x; j < count; j += blockDim.x) {
    const int64_t k = at(j, c, channels, inner);
    const double xhat = (x[k] - mean) * invStd;
    dx[k] = float(g * invStd / m * (m * dy[k] - sumDy - xhat * sumDyXhat));
  }
}

const float* f(const BufferPtr& b) { return b ? b->f32() : nullptr; }
float* fm(const BufferPtr& b) { return b ? b->f32() : nullptr; }

}  // namespace

void launchBatchNorm(const BatchNormArgs& a, cudaStream_t stream) {
  if (a.channels == 0) return;
  BSSN_LAUNCH(batchNormKernel, unsigned(a.channels), kThreads, 0, stream, f(a.x), fm(a.y), f(a.gamma), f(a.beta), fm(a.runningMean), fm(a.runningVar),
                                                                 fm(a.saveMean), fm(a.saveInvStd), a.n, a.channels, a.inner,
                                                                 a.training ? 1 : 0, a.momentum, a.eps);
}

void launchBatchNormBackward(const BatchNormBackwardArgs& a, cudaStream_t stream) {
  if (a.channels == 0) return;
  BSSN_LAUNCH(batchNormBackwardKernel, unsigned(a.channels), kThreads, 0, stream, f(a.x), f(a.dy), f(a.gamma), f(a.saveMean), f(a.saveInvStd),
                                                                         fm(a.dx), fm(a.dgamma), fm(a.dbeta), a.n, a.channels, a.inner);
}

}  // namespace bssn::cuda
