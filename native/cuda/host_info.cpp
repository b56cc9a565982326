#include "cuda/host_info.h"

#include "cuda/check.h"
#include "cuda/fill.cuh"

namespace bssn::cuda {

HostInfo hostInfo() {
  HostInfo out;
  if (cudaDriverGetVersion(&out.driverVersion) != cudaSuccess) out.driverVersion = 0;
  if (cudaRuntimeGetVersion(&out.runtimeVersion) != cudaSuccess) out.runtimeVersion = 0;
  cudaGetLastError();
  out.availability = availability();
  int previous = -1;
  if (out.availability.deviceCount > 0 && cudaGetDevice(&previous) != cudaSuccess) previous = -1;
  for (int i = 0; i < out.availability.deviceCount; ++i) {
    HostGpu gpu;
    gpu.index = i;
    cudaDeviceProp prop;
    cudaError_t st = cudaGetDeviceProperties(&prop, i);
    if (st == cudaSuccess) {
      gpu.name = prop.name;
      gpu.major = prop.major;
      gpu.minor = prop.minor;
      gpu.totalMemory = prop.totalGlobalMem;
      gpu.multiprocessors = prop.multiProcessorCount;
      st = cudaSetDevice(i);
      if (st == cudaSuccess) st = probeKernelImage();
    }
    if (st != cudaSuccess) gpu.kernelError = describeStatus(st);
    cudaGetLastError();  // a missing kernel image is not sticky: clear it
    out.gpus.push_back(std::move(gpu));
  }
  if (previous >= 0) cudaSetDevice(previous);
  return out;
}

}  // namespace bssn::cuda
