#include "cuda/activation.cuh"
#include "cuda/common.cuh"
#include "cuda/elementwise.cuh"

namespace bssn::cuda {

namespace {

constexpr int kThreads = 256;

#define BSSN_GRID_LOOP(i, n) for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < (n); i += size_t(gridDim.x) * blockDim.x)

__global__ void unaryKernel(UnaryOp op, float p, const float* x, float* y, size_t n) {
  BSSN_GRID_LOOP(i, n) { y[i] = applyUnary(op, p, x[i]); }
}

__global__ void unaryBackwardKernel(UnaryOp op, float p, const float* x, const float* y, const float* dy, float* dx, size_t n) {
  const bool fromX = op == UnaryOp::Relu || op == UnaryOp::LeakyRelu, fromY = op == UnaryOp::Tanh || op == UnaryOp::Sigmoid;
  BSSN_GRID_LOOP(i, n) { dx[i] = unaryGrad(op, p, fromX ? x[i] : 0.0f, fromY ? y[i] : 0.0f, dy[i]); }
}

__global__ void binaryKernel(BinaryOp op, const float* a, const float* b, float* out, size_t n) {
  BSSN_GRID_LOOP(i, n) {
    out[i] = op == BinaryOp::Add ? a[i] + b[i] : op == BinaryOp::Sub ? a[i] - b[i] : a[i] * b[i];
  }
}

__global__ void addBiasKernel(const float* x, const float* bias, float* out, size_t n, size_t channels, size_t inner) {
  BSSN_GRID_LOOP(i, n) { out[i] = x[i] + bias[(i / inner) % channels]; }
}

__global__ void sumToBiasKernel(const float* dy, float* db, size_t outer, size_t channels, size_t inner) {
  BSSN_SHARED(double, partial, kThreads / kWarp);
  const size_t c = blockIdx.x;
  double s = 0;
  for (size_t j = threadIdx.x; j < outer * inner; j += blockDim.x) {
    const size_t o = j / inner, i = j % inner;
    s += dy[(o * channels + c) * inner + i];
  }
  s = blockSum(s, partial);
  if (threadIdx.x == 0) db[c] = float(s);
}

__global__ void sumKernel(const float* x, size_t n, float* out, float scale) {
  BSSN_SHARED(double, partial, 1024 / kWarp);
  double s = 0;
  for (size_t i = threadIdx.x; i < n; i += blockDim.x) s += x[i];
  s = blockSum(s, partial);
  if (threadIdx.x == 0) out[0] = float(s * scale);
}

__global__ void broadcastKernel(const float* scalar, float* out, size_t n, float scale) {
  BSSN_GRID_LOOP(i, n) { out[i] = scalar[0] * scale; }
}

}  // namespace

void launchUnary(UnaryOp op, float p, const float* x, float* y, size_t n, cudaStream_t stream) {
  if (n) BSSN_LAUNCH(unaryKernel, gridFor(int64_t(n), kThreads), kThreads, 0, stream, op, p, x, y, n);
}

void launchUnaryBackward(UnaryOp op, float p, const float* x, const float* y, const float* dy, float* dx, size_t n, cudaStream_t stream) {
  if (n) BSSN_LAUNCH(unaryBackwardKernel, gridFor(int64_t(n), kThreads), kThreads, 0, stream, op, p, x, y, dy, dx, n);
}

void launchBinary(BinaryOp op, const float* a, const float* b, float* out, size_t n, cudaStream_t stream) {
  if (n) BSSN_LAUNCH(binaryKernel, gridFor(int64_t(n), kThreads), kThreads, 0, stream, op, a, b, out, n);
}

void launchAddBias(const float* x, const float* bias, float* out, size_t outer, size_t channels, size_t inner, cudaStream_t stream) {
  const size_t n = outer * channels * inner;
  if (n) BSSN_LAUNCH(addBiasKernel, gridFor(int64_t(n), kThreads), kThreads, 0, stream, x, bias, out, n, channels, inner);
}

void launchSumToBias(const float* dy, float* db, size_t outer, size_t channels, size_t inner, cudaStream_t stream) {
  if (channels) BSSN_LAUNCH(sumToBiasKernel, unsigned(channels), kThreads, 0, stream, dy, db, outer, channels, inner);
}

void launchSum(const float* x, size_t n, float* out, float scale, cudaStream_t stream) {
  BSSN_LAUNCH(sumKernel, 1, 1024, 0, stream, x, n, out, scale);
}

void launchBroadcast(const float* scalar, float* out, size_t n, float scale, cudaStream_t stream) {
  if (n) BSSN_LAUNCH(broadcastKernel, gridFor(int64_t(n), kThreads), kThreads, 0, stream, scalar, out, n, scale);
}

}  // namespace bssn::cuda
