// What the CUDA runtime can tell about this host without opening a bssn device: driver and runtime versions, and
// per GPU its properties and whether this binary's kernels run on it (`bssn doctor`).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "cuda/cuda_device.h"

namespace bssn::cuda {

struct HostGpu {
  int index = 0;
  std::string name;
  int major = 0, minor = 0;  // compute capability
  size_t totalMemory = 0;
  int multiprocessors = 0;
  std::string kernelError;  // empty when bssn's kernels can run on it; else the runtime's reason
};

struct HostInfo {
  int driverVersion = 0;   // CUDA version the installed driver supports (1000 * major + 10 * minor); 0: no driver
  int runtimeVersion = 0;  // the CUDA runtime linked into this binary
  Availability availability;
  std::vector<HostGpu> gpus;
};

// Queries every GPU; checking the kernels creates each GPU's primary context (the calling thread's current
// device is restored afterwards).
HostInfo hostInfo();

}  // namespace bssn::cuda
