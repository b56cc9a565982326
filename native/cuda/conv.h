// 2-D convolutions on cuDNN: descriptors and algorithms chosen once per shape (cached), workspace from the
// device's stream-ordered pool, TF32 tensor-core math where the device allows it (Device::tf32().conv), fp32 FMA
// math otherwise.
#pragma once
#include <map>
#include <memory>
#include <tuple>

#include "core/ops.h"
#include "cuda/cudnn_api.h"

namespace bssn::cuda {

class CudaDevice;

class ConvCache {
 public:
  explicit ConvCache(CudaDevice& device);
  ~ConvCache();
  ConvCache(const ConvCache&) = delete;
  ConvCache& operator=(const ConvCache&) = delete;

  void forward(const Conv2dArgs& args);
  void backwardData(const Conv2dArgs& args);
  void backwardFilter(const Conv2dArgs& args);

 private:
  struct Plan;
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>;
  Plan& planFor(const Conv2dArgs& args);
  Plan& current(const Conv2dArgs& args);
  void setMath(Plan& plan, int math);
  static int queryMath(const Plan& plan);

  CudaDevice& device_;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace bssn::cuda
