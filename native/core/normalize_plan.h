// What a backend needs to normalize a batch of weights in one operation: each weight's view as the two
// matrices W1 and W2 (read in the weight's own layout, never transposed in memory), and where its power
// iteration state lives.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/device.h"
#include "core/shape.h"

namespace bssn {

enum class Mode : int32_t { SN = 0, SSN = 1, BSN = 2, BSSN = 3 };

inline bool modeIsBidirectional(Mode m) { return m == Mode::BSN || m == Mode::BSSN; }
inline bool modeIsScaled(Mode m) { return m == Mode::SSN || m == Mode::BSSN; }

enum class LayerKind : int32_t {
  Vector = 0,         // 1-D weight: sigma = ||w||, no state
  Matrix = 1,         // 2-D weight: W2 = W1^T has the same sigma, one (u, v) pair
  Bidirectional = 2,  // >= 3-D weight: W1 and W2 each with their own (u, v)
};

// Element (i, c, m, k) of a weight sits at i*strideI + c*strideC + m*strideM + k, where i runs over the
// output axis `dim` (R rows), c over the "other" axis (C), m over the axes between them (M, only when
// dim >= 2) and k over the trailing axes (K, contiguous). Then
//   W1[i][(c*M + m)*K + k]   (R x C*M*K: `dim` moved to the front, the rest in order, as PyTorch reshapes)
//   W2[c][(i*M + m)*K + k]   (C x R*M*K: the first two axes of that swapped)
struct LayerView {
  LayerKind kind = LayerKind::Vector;
  int64_t R = 1, C = 1, M = 1, K = 1;
  int64_t strideI = 0, strideC = 0, strideM = 0;
  int64_t numel = 0;
  // Offsets (in floats) of this layer's vectors in the shared state buffer; -1 where the kind has none.
  int64_t u1 = -1, v1 = -1, u2 = -1, v2 = -1;
  int64_t stateBegin = 0, stateSize = 0;
  // dim == 0: memory order is (i, c, k); otherwise (c, m, i, k).
  bool iOutermost = true;

  int64_t cols1() const { return C * M * K; }
  int64_t cols2() const { return R * M * K; }
};

// Builds the view of a weight of `shape` normalized along `dim` (already validated and non-negative).
LayerView makeLayerView(const Shape& shape, int dim);

struct NormalizeParams {
  Mode mode = Mode::BSSN;
  float scale = 1.0f;
  float eps = 1e-12f;
};

// Number of 32-bit slots per layer in the sigma buffer: sigma1, sigma2, divisor (floats: Infinity past 3.4e38, as
// reported), then the count of steps that met a non-finite weight (uint32 bits; kNonFiniteSlot).
constexpr int kSigmaStride = 4;
constexpr int kNonFiniteSlot = 3;

struct NormalizeJob {
  std::shared_ptr<const std::vector<LayerView>> layers;
  std::vector<BufferPtr> weights;  // one per layer
  std::vector<BufferPtr> outputs;  // one per layer, or empty: compute sigmas only (backward: dL/dW)
  std::vector<BufferPtr> grads;    // backward only: dL/dW_hat, one per layer
  BufferPtr state;                 // every layer's u1, v1, u2, v2
  BufferPtr sigmas;                // kSigmaStride slots per layer
  BufferPtr divisors;              // one double per layer: the divisor at full range (what outputs and gradients use)
  int iterations = 1;              // 0: eval, sigma = u^T M v from the stored state
  NormalizeParams params;
  // Per-batch data a backend keeps between forwards (CUDA: the device-side layer table); owned by the batch.
  std::shared_ptr<void>* backendCache = nullptr;
};

}  // namespace bssn
