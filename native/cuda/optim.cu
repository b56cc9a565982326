#include <algorithm>
#include <climits>
#include <cmath>

#include "core/device.h"
#include "cuda/common.cuh"
#include "cuda/optim.cuh"

namespace bssn::cuda {

namespace {

// Tensors per launch: their pointers and sizes travel in the kernel's arguments (no host-to-device copy, so a
// captured graph holds them), and the list must stay within the classic 4 KB parameter limit.
constexpr int kTensorsPerLaunch = 64;
constexpr int kThreads = 256;
constexpr int64_t kChunk = 4 * kThreads;  // elements per block: the grid runs over (tensor, chunk) pairs

// One launch's tensors: block b updates chunk b - firstBlock[t] of tensor t, firstBlock[count] = the grid size.
struct TensorList {
  float* param[kTensorsPerLaunch];
  const float* grad[kTensorsPerLaunch];
  float* m[kTensorsPerLaunch];  // Adam's first moment, SGD's momentum buffer (null without momentum)
  float* v[kTensorsPerLaunch];  // Adam's second moment
  int64_t n[kTensorsPerLaunch];
  int64_t firstBlock[kTensorsPerLaunch + 1];
  int count;
};
static_assert(sizeof(TensorList) + 64 <= 4096, "a launch's tensor list must fit the 4 KB kernel parameter limit");

__global__ void adamStepKernel(int64_t* step) { ++*step; }

__global__ void adamKernel(TensorList list, const int64_t* step, float lr, float b1, float b2, float eps, float wd) {
  const int64_t b = blockIdx.x;
  const int t = findSegment(list.count, b, [&](int i) { return list.firstBlock[i]; });  // empty tensors are never listed
  const int64_t begin = (b - list.firstBlock[t]) * kChunk, end = std::min(begin + kChunk, list.n[t]);
  float *p = list.param[t], *m = list.m[t], *v = list.v[t];
  const float* g = list.grad[t];
  // The bias corrections from the device's count, in double as the CPU reference computes them.
  const double c1 = 1.0 - pow(double(b1), double(*step));
  const double c2 = 1.0 - pow(double(b2), double(*step));
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const float gi = g[i] + wd * p[i];
    const float mi = b1 * m[i] + (1 - b1) * gi;
    const float vi = b2 * v[i] + (1 - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = float(p[i] - lr * (mi / c1) / (sqrt(vi / c2) + eps));
  }
}

__global__ void sgdKernel(TensorList list, float lr, float momentum, float wd) {
  const int64_t b = blockIdx.x;
  const int t = findSegment(list.count, b, [&](int i) { return list.firstBlock[i]; });  // empty tensors are never listed
  const int64_t begin = (b - list.firstBlock[t]) * kChunk, end = std::min(begin + kChunk, list.n[t]);
  float *p = list.param[t], *buf = list.m[t];
  const float* g = list.grad[t];
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    float d = g[i] + wd * p[i];
    if (buf) {
      buf[i] = momentum * buf[i] + d;
      d = buf[i];
    }
    p[i] -= lr * d;
  }
}

// Calls launch(list) once per run of up to kTensorsPerLaunch non-empty tensors (and grids within int range).
template <typename Launch>
void forEachList(const std::vector<OptimTensor>& tensors, Launch launch) {
  TensorList list{};
  auto flush = [&] {
    if (list.count) launch(list);
    list = TensorList{};
  };
  for (const OptimTensor& t : tensors) {
    if (!t.n) continue;
    const int64_t blocks = (int64_t(t.n) + kChunk - 1) / kChunk;
    if (list.count == kTensorsPerLaunch || list.firstBlock[list.count] + blocks > INT_MAX) flush();
    const int i = list.count++;
    list.param[i] = t.param->f32(), list.grad[i] = t.grad->f32();
    list.m[i] = t.m ? t.m->f32() : nullptr, list.v[i] = t.v ? t.v->f32() : nullptr;
    list.n[i] = int64_t(t.n);
    list.firstBlock[i + 1] = list.firstBlock[i] + blocks;
  }
  flush();
}

}  // namespace

void launchAdam(const AdamArgs& a, cudaStream_t stream) {
  // The increment first, in stream order before every update that reads it: race-free, and replayed with them.
  BSSN_LAUNCH(adamStepKernel, 1, 1, 0, stream, static_cast<int64_t*>(a.step->data()));
  forEachList(a.tensors, [&](const TensorList& list) {
    BSSN_LAUNCH(adamKernel, unsigned(list.firstBlock[list.count]), kThreads, 0, stream, list,
                static_cast<const int64_t*>(a.step->data()), a.lr, a.beta1, a.beta2, a.eps, a.weightDecay);
  });
}

void launchSgd(const SgdArgs& a, cudaStream_t stream) {
  forEachList(a.tensors, [&](const TensorList& list) {
    BSSN_LAUNCH(sgdKernel, unsigned(list.firstBlock[list.count]), kThreads, 0, stream, list, a.lr, a.momentum, a.weightDecay);
  });
}

}  // namespace bssn::cuda
