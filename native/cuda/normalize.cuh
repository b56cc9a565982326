// The batched power iteration and bidirectional normalization on the GPU. Every kernel covers all layers of a
// batch, described by a table of DeviceLayer in device memory, so the launch count per forward is fixed.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/fast_div.h"

namespace bssn::cuda {

struct DeviceLayer {
  const float* w;
  int32_t kind;  // LayerKind: 0 vector, 1 matrix, 2 bidirectional
  int32_t both;  // this layer runs the W2 direction (bidirectional kind in bsn/bssn mode)
  int32_t iOutermost;  // memory order (i, c, k) (dim 0); otherwise (c, m, i, k)
  int32_t tiled;       // both directions' products come from the tiled passes (below), not the per-item kernels
  int64_t R, C, M, K;
  int64_t strideI, strideC, strideM;
  int64_t numel;
  int64_t u1, v1, u2, v2;  // offsets in the state buffer
  int64_t t1, t2;          // offsets in the scratch buffer (W v products)
  int64_t tp1, tp2;        // the per-item W v pass's partial sums of t1 and t2, [row][part] (t1, t2 when one part)
  int64_t x1, x2;          // offsets in the scratch buffer (training: x = W^T u, unnormalized, cols1 and cols2)
  int64_t beginA;          // first item of this layer in the W^T u pass (cols1 [+ cols2] items)
  int64_t beginB;          // first item in the W v pass (R * parts1 [+ C * parts2] items)
  int64_t firstChunk;      // this layer's element chunks: [firstChunk, firstChunk + chunks)
  int64_t chunks;
  // Tiled layers: partial sums of the row blocks and segments of their tiles (offsets in the partial buffers),
  // and their first item in each combining pass.
  int64_t rowBlocks, segments;
  int64_t partA, partB, partC, partD;  // doubles: [rowBlocks][rowLen] (W_O^T u_O over each row block),
                                       // [segments][outer][K], [segments][outer], [rowBlocks][inner]
  int64_t firstTile;          // this layer's tiles: [firstTile, firstTile + rowBlocks * segments)
  int64_t beginX, beginT;     // first item in the x (v slots) and t (scratch) combining passes
  // Element decoding of the backward by 32-bit multiply-shift division, when numel < 2^31 (fastDecode).
  FastDiv divK, divC, divR, divM;
  int32_t fastDecode;
  // The per-item W v pass splits a row into parts of at most kRowSpan elements, a warp each (so no lane walks more
  // than kRowSpan / 32 elements); the finish kernel adds a row's parts in order.
  int32_t parts1, parts2;
  int32_t reserved;
};
constexpr int64_t kRowSpan = 1024;

// The tiled passes read W once per power-iteration step for both directions. A tiled layer's memory is
// [outer][inner][K] with K contiguous (dim 0: outer = i, inner = c; dim 1 of a 4-D or larger weight: outer = c,
// inner = i). Call "O" the direction whose rows run over outer (W1 for dim 0, W2 for dim 1) and "P" the other: a
// row of W_O is W[o][.][.] as it lies (j = inner * K + k), and W_P's entries for row p are W[.][p][.]. A tile is
// up to kTileRows outer rows times a segment of the row; one block per tile. Step 1 (x = W^T u) gives W_O^T u_O
// per row block (partA) and, complete per row, W_P^T u_P per segment (partB); step 2 (t = W v) gives W_O v_O per
// segment (partC) and W_P v_P per row block (partD). A combining pass adds the partials in a fixed order.
constexpr int kTileThreads = 256;  // per block; a tiled layer uses K * (256 / K) of them, so each keeps one k
constexpr int kTileRows = 32;
constexpr int kTileSteps = 8;    // elements of a row per thread and tile: the segment is kTileSteps * threads long
constexpr int kTileMaxK = 32;    // K up to a warp's width (3x3 and 5x5 kernels); larger K keeps the per-item kernels
struct Tile {
  int32_t layer;
  int32_t rows;          // outer rows of this tile: [row0, row0 + rows)
  int64_t row0;
  int64_t j0, j1;        // the segment of each row (multiples of K)
  int32_t rowBlock, segment;
};

// The element passes (scale, backward) work in chunks of at most kChunkElements of one layer, from a table the
// host builds once per batch: a block finds its layer and per-layer factors once, not per element.
constexpr int64_t kChunkElements = 16384;
struct ElementChunk {
  int32_t layer;
  int32_t reserved;
  int64_t begin, end;  // elements of the layer, begin a multiple of 4 (16-byte aligned with the layer's pointers)
};

// The sigma buffer's layout (kSigmaStride and kNonFiniteSlot of core/normalize_plan.h; cuda_device.cpp checks).
constexpr int kSigmaSlots = 4;
constexpr int kNonFiniteSigmaSlot = 3;

struct BatchArgs {
  const DeviceLayer* layers;  // device memory
  int layerCount;
  float* state;
  // x = W^T u and t = W x, unnormalized (about sigma and sigma^2), so double: a float weight's products stay in
  // range whatever its scale (x in float overflowed for weights near 3e38).
  double* scratch;
  float* sigmas;              // kSigmaStride slots per layer: sigma1, sigma2, divisor, non-finite step count (bits)
  double* divisors;           // per layer, the divisor at full range (the output's factor and the backward's)
  float* maxA;                // [splitA][itemsA]: per W1 item of the W^T u pass, max |w| over its row range
  float* tileMax;             // [tileCount]: per tile, max |w| over it
  float* const* outputs;      // device array of layerCount pointers
  int64_t itemsA, itemsB;
  const ElementChunk* chunks;  // device memory
  int64_t chunkCount;
  int splitA;                  // x = W^T u: each item's sum split over this many row ranges (1: none)
  double* partialA;            // splitA > 1: the partial sums, [splitA][itemsA]
  const Tile* tiles;           // the tiled layers' tiles (device memory)
  int64_t tileCount;
  double* tilePartials;        // the tiles' partial sums (DeviceLayer::partA ... partD)
  int64_t itemsX, itemsT;      // items of the combining passes (x: rowLen + outer * K per layer; t: outer + inner)
  float eps;
  float scale;                // c, or 1 for sn/bsn
  int bidirectional;          // bsn/bssn: divisor is the mean of sigma1 and sigma2
};

struct BackwardArgs {
  const DeviceLayer* layers;  // device memory
  int layerCount;
  const float* state;
  const double* divisors;     // per layer (BatchArgs::divisors)
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
// x = W1^T u1 (and W2^T u2) into the scratch, unnormalized, and the max |w| of each W1 item or tile. With splitA > 1
// each sum is split over row ranges (more threads for few, long sums) and a second launch adds the partials in order
// (the same result on every run).
void launchMultiplyTransposed(const BatchArgs& args, cudaStream_t stream);
// t = W1 v1 (and W2 v2) into scratch; in training v is the unnormalized x of the scratch.
void launchMultiply(const BatchArgs& args, bool training, cudaStream_t stream);
// Per layer, training: v = x / ||x||, u = normalize(t / ||x||) and sigma = u^T M v, with eps relative to max |w|
// (as on W / max|W|: any finite scale of W gives the same result); u and v change only where the products are
// finite and non-zero (sigma NaN and the step counted where not finite, 0 where zero). Eval: sigma = u^T t with the
// stored u, v.
void launchFinish(const BatchArgs& args, bool training, cudaStream_t stream);
// out = c * W / divisor (zeros where the divisor is 0).
void launchScale(const BatchArgs& args, cudaStream_t stream);

}  // namespace bssn::cuda
