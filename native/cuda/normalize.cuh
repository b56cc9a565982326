// The batched power iteration and bidirectional normalization on the GPU. Every kernel covers all layers of a
// batch, described by a table of DeviceLayer in device memory, so the launch count per forward is fixed.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace bssn::cuda {

struct DeviceLayer {
  const float* w;
  int32_t kind;  // LayerKind: 0 vector, 1 matrix, 2 bidirectional
  int32_t both;  // this layer runs the W2 direction (bidirectional kind in bsn/bssn mode)
  int32_t iOutermost;  // memory order (i, c, k) (dim 0); otherwise (c, m, i, k)
  int32_t reserved;
  int64_t R, C, M, K;
  int64_t strideI, strideC, strideM;
  int64_t numel;
  int64_t u1, v1, u2, v2;  // offsets in the state buffer
  int64_t t1, t2;          // offsets in the scratch buffer (W v products)
  int64_t beginA;          // first item of this layer in the W^T u pass (cols1 [+ cols2] items)
  int64_t beginB;          // first item in the W v pass (R [+ C] items)
  int64_t firstChunk;      // this layer's element chunks: [firstChunk, firstChunk + chunks)
  int64_t chunks;
};

// The element passes (scale, backward) work in chunks of at most kChunkElements of one layer, from a table the
// host builds once per batch: a block finds its layer and per-layer factors once, not per element.
constexpr int64_t kChunkElements = 16384;
struct ElementChunk {
  int32_t layer;
  int32_t reserved;
  int64_t begin, end;  // elements of the layer, begin a multiple of 4 (16-byte aligned with the layer's pointers)
};

struct BatchArgs {
  const DeviceLayer* layers;  // device memory
  int layerCount;
  float* state;
  double* scratch;            // t = W x: unnormalized (about sigma^2), so double: finite for sigmas up to 1e150
  float* sigmas;              // 3 per layer: sigma1, sigma2, divisor
  float* const* outputs;      // device array of layerCount pointers
  int64_t itemsA, itemsB;
  const ElementChunk* chunks;  // device memory
  int64_t chunkCount;
  int splitA;                  // x = W^T u: each item's sum split over this many row ranges (1: none)
  double* partialA;            // splitA > 1: the partial sums, [splitA][itemsA]
  float eps;
  float scale;                // c, or 1 for sn/bsn
  int bidirectional;          // bsn/bssn: divisor is the mean of sigma1 and sigma2
};

struct BackwardArgs {
  const DeviceLayer* layers;  // device memory
  int layerCount;
  const float* state;
  const float* sigmas;
  const float* const* grads;  // dL/dW_hat per layer (device array of pointers)
  float* const* outputs;      // dL/dW per layer
  double* dots;               // per layer <G, W>
  double* partialDots;        // per chunk <G, W> over its elements
  unsigned* arrivals;         // per layer: chunks done (the last one sums the partials, then resets it to 0)
  const ElementChunk* chunks;
  int64_t chunkCount;
  float scale;
  int bidirectional;
};

// dW = (c/s) G - (c/s^2) <G, W> ds/dW for every layer: two launches, each over every chunk of every layer. First
// the dots, summed per layer in chunk order by the layer's last chunk to finish (deterministic); then the elements.
void launchGradDots(const BackwardArgs& args, cudaStream_t stream);
void launchBackwardElements(const BackwardArgs& args, cudaStream_t stream);

// One training power iteration is launchMultiplyTransposed, launchMultiply, launchFinish(training) for the whole
// batch; a forward adds launchScale. Eval is launchMultiply and launchFinish.
// x = W1^T u1 (and W2^T u2) into the v slots, unnormalized. With splitA > 1 each sum is split over row ranges (more
// threads for few, long sums) and a second launch adds the partials in order (the same result on every run).
void launchMultiplyTransposed(const BatchArgs& args, cudaStream_t stream);
// t = W1 v1 (and W2 v2) into scratch.
void launchMultiply(const BatchArgs& args, cudaStream_t stream);
// Per layer, training: v = x / ||x||, u = normalize(t / ||x||) and sigma = u^T M v; eval: sigma = u^T t with the
// stored u, v.
void launchFinish(const BatchArgs& args, bool training, cudaStream_t stream);
// out = c * W / divisor (zeros where the divisor is 0).
void launchScale(const BatchArgs& args, cudaStream_t stream);

}  // namespace bssn::cuda
