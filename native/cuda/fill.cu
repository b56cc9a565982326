#include "core/random.h"
#include "cuda/common.cuh"
#include "cuda/fill.cuh"

namespace bssn::cuda {

namespace {

__global__ void fillKernel(float* dst, size_t count, float value) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x) dst[i] = value;
}

__global__ void randnKernel(float* dst, size_t count, uint64_t seed, float std) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x)
    dst[i] = std * normalAt(seed, i);
}

__global__ void randnFromTableKernel(float* dst, size_t count, const uint64_t* seed, float std) {
  const uint64_t s = *seed;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x)
    dst[i] = std * normalAt(s, i);
}

__global__ void randKernel(float* dst, size_t count, uint64_t seed, float low, float high) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x)
    dst[i] = low + (high - low) * uniformAt(seed, i);
}

}  // namespace

void launchRand(float* dst, size_t count, uint64_t seed, float low, float high, cudaStream_t stream) {
  if (count == 0) return;
  BSSN_LAUNCH(randKernel, gridFor(int64_t(count), 256), 256, 0, stream, dst, count, seed, low, high);
}

void launchFill(float* dst, size_t count, float value, cudaStream_t stream) {
  if (count == 0) return;
  BSSN_LAUNCH(fillKernel, gridFor(int64_t(count), 256), 256, 0, stream, dst, count, value);
}

void launchRandn(float* dst, size_t count, uint64_t seed, float std, cudaStream_t stream) {
  if (count == 0) return;
  BSSN_LAUNCH(randnKernel, gridFor(int64_t(count), 256), 256, 0, stream, dst, count, seed, std);
}

void launchRandnFromTable(float* dst, size_t count, const uint64_t* seed, float std, cudaStream_t stream) {
  if (count == 0) return;
  BSSN_LAUNCH(randnFromTableKernel, gridFor(int64_t(count), 256), 256, 0, stream, dst, count, seed, std);
}

cudaError_t probeKernelImage() {
  cudaFuncAttributes attributes;
  return cudaFuncGetAttributes(&attributes, fillKernel);
}

}  // namespace bssn::cuda
