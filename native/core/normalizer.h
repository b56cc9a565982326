// A batch of weights normalized together (SN, SSN, BSN or BSSN) with persistent power-iteration state.
// Every forward is one device operation for the whole batch, whatever the number of layers.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/normalize_plan.h"
#include "core/tensor.h"

namespace bssn {

struct NormalizerOptions {
  NormalizeParams params;
  std::vector<int> dims;  // one per weight, may be negative (counted from the end)
  int warmupIterations = 15;
  uint64_t seed = 0;
};

// Per-call values of the options that leave the state alone (bssnNormalize applies them call by call).
struct CallParams {
  float scale = 1.0f;
  float eps = 1e-12f;
};

struct LayerStateSizes {
  int64_t u1 = 0, v1 = 0, u2 = 0, v2 = 0;
  int64_t total() const { return u1 + v1 + u2 + v2; }
};

class Normalizer {
 public:
  // Validates the weights and options (TypeError/RangeError), allocates state, sigmas and outputs, seeds the
  // state and enqueues the warm-up iterations.
  Normalizer(std::vector<TensorPtr> weights, const NormalizerOptions& options);
  ~Normalizer() { dispose(); }

  size_t size() const { return weights_.size(); }
  const DevicePtr& device() const { return device_; }
  const std::vector<TensorPtr>& outputs() const;
  const NormalizeParams& params() const { return params_; }
  LayerStateSizes stateSizes(size_t layer) const;

  // iterations >= 1: training (state advances); 0: eval. `outputs` null writes the owned outputs;
  // `writeOutputs` false computes sigmas only. `call`, when given, replaces scale and eps for this forward.
  void forward(int iterations, const std::vector<TensorPtr>* outputs, bool writeOutputs, const CallParams* call = nullptr);

  // Gradient with respect to the weights of the last forward's normalized weights, given `grads` (dL/dW_hat,
  // one per weight). `outputs` null writes the owned gradient tensors.
  void backward(const std::vector<TensorPtr>& grads, const std::vector<TensorPtr>* outputs);
  const std::vector<TensorPtr>& gradOutputs();

  // Reads into `host` (resized here; it must outlive the fence).
  std::shared_ptr<Fence> readSigmas(const std::shared_ptr<std::vector<float>>& host) const;
  std::shared_ptr<Fence> readState(size_t layer, const std::shared_ptr<std::vector<float>>& host) const;
  // Writes one of the layer's vectors (0: u1, 1: v1, 2: u2, 3: v2); `values` sized as stateSizes(layer) says.
  void writeStateVector(size_t layer, int which, const float* values, size_t count);
  // Copies layer `otherLayer`'s state of `other` into `layer` (same state sizes), in stream order.
  void adoptState(size_t layer, const Normalizer& other, size_t otherLayer);

  void dispose();
  bool disposed() const { return disposed_; }

 private:
  void checkLayer(size_t layer) const;
  void checkAlive() const;
  void enqueue(int iterations, std::vector<BufferPtr> outputs, const CallParams* call = nullptr);
  NormalizeJob makeJob() const;
  std::vector<BufferPtr> checkedBuffers(const std::vector<TensorPtr>& tensors, const char* what) const;

  DevicePtr device_;
  std::vector<TensorPtr> weights_;
  std::vector<TensorPtr> outputs_;
  std::vector<TensorPtr> gradOutputs_;  // created on the first backward
  std::shared_ptr<std::vector<LayerView>> layers_;
  BufferPtr state_;
  BufferPtr sigmas_;
  BufferPtr divisors_;
  mutable std::shared_ptr<void> backendCache_;  // a backend's per-batch data (it fills it on first use)
  NormalizeParams params_;
  bool disposed_ = false;
};

}  // namespace bssn
