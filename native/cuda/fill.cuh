// Element-wise initializers: constant fill and counter-based normal samples (identical to the CPU's).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace bssn::cuda {

void launchFill(float* dst, size_t count, float value, cudaStream_t stream);
void launchRandn(float* dst, size_t count, uint64_t seed, float std, cudaStream_t stream);
// The seed read from *seed when the kernel runs (a graph's replays see the seeds copied in before each).
void launchRandnFromTable(float* dst, size_t count, const uint64_t* seed, float std, cudaStream_t stream);
void launchRand(float* dst, size_t count, uint64_t seed, float low, float high, cudaStream_t stream);
// Whether this binary holds kernel code the current device can run; `why` says what is missing otherwise.
cudaError_t probeKernelImage();

}  // namespace bssn::cuda
