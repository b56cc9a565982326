// Normalization's host side on the CUDA backend: a batch's plan (its layer table, scratch, tiles and chunks,
// built on first use and kept in the job's backend cache), the kernel path the plan chooses, and the launch
// sequences of the forward and backward. The CPU backend's counterpart is cpu/normalize.cpp.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/normalize_plan.h"
#include "cuda/graph.h"

namespace bssn::cuda {

class CudaDevice;

// The kernels a batch runs. Chosen once, when its plan is built (planFor in normalize_plan.cpp), and nowhere else.
enum class NormalizePath : int32_t {
  // normalize.cu: a launch per phase, each streaming W from global memory; any size. Layers it can tile (see
  // DeviceLayer::tiled) take the tiled passes unless BSSN_CUDA_TILED=0.
  Streamed = 0,
  // normalize_fused.cu: the forward (training or eval, with or without outputs) as one cooperative launch that keeps
  // each tile of W in shared memory across the power iteration (weights up to kFusedMaxBatchBytes whose tiles the
  // card holds resident; matrices laid out [R][C][K]), and the backward as one more on the same tiles.
  // BSSN_CUDA_FUSED=0: never.
  Fused = 1,
};

// The largest batch (sum of W bytes) the fused path takes: what an H100 or H200's 132 SMs hold on chip.
constexpr int64_t kFusedMaxBatchBytes = int64_t(24) << 20;

// A device array of per-layer pointers, re-uploaded only when the pointers change.
struct PointerTable {
  BufferPtr buffer;
  std::vector<void*> current;
};

// Per-normalizer device data, built on its first use: the layer table, the scratch for W v products, the
// per-layer dots of the backward, and the pointer tables of outputs and gradients.
struct CudaPlan {
  NormalizePath path = NormalizePath::Streamed;
  BufferPtr table;
  BufferPtr scratch;
  BufferPtr dots;
  BufferPtr chunks;       // ElementChunk per chunk of every layer
  BufferPtr partialDots;  // a double per chunk
  BufferPtr arrivals;     // an unsigned per layer, zero between backward calls
  int64_t chunkCount = 0;
  int splitA = 1;         // row ranges per W^T u sum (BatchArgs::splitA)
  int finishThreads = 0;  // BatchArgs::finishThreads
  BufferPtr partialA;     // their partial sums
  BufferPtr maxA;         // per W^T u item and row range, max |w| (BatchArgs::maxA)
  BufferPtr tiles;        // Tile per tile of the tiled layers
  int64_t tileCount = 0, itemsX = 0, itemsT = 0;
  BufferPtr tilePartials, tileMax;
  PointerTable outputs, grads, gradOutputs;
  std::vector<const void*> weights;
  int64_t itemsA = 0, itemsB = 0;
  std::unique_ptr<LaunchGraphs> graphs;  // the forward's and backward's launch sequences, captured on first use
  // The fused path's tiles (NormalizePath::Fused): FusedLayer per layer, FusedTile per block, their scratch.
  BufferPtr fusedLayers, fusedTiles, fusedScratch;
  int fusedTileCount = 0;
  size_t fusedShared = 0;  // dynamic shared bytes per block
};

// The device address of a table holding `buffers`' pointers (uploaded in stream order when they changed).
void* pointersOf(CudaDevice& device, PointerTable& table, const std::vector<BufferPtr>& buffers);

// Forwards with more power iterations than this launch kernel by kernel (warm-ups run once; a graph would not pay).
constexpr int kMaxGraphIterations = 4;

// The fused path (normalize_fused_plan.cpp): plans `job`'s batch into `plan` and returns true where it fits on chip
// (nothing planned otherwise); enqueues a planned batch's forward and backward: false, with nothing enqueued and the
// error cleared, where the card refuses the cooperative launch as too large.
bool planFused(CudaDevice& device, const NormalizeJob& job, bool bidirectional, CudaPlan& plan);
bool fusedForward(CudaDevice& device, CudaPlan& plan, const NormalizeJob& job);
bool fusedBackward(CudaDevice& device, CudaPlan& plan, const NormalizeJob& job);

// Enqueue `job`'s forward (its power iterations, then the outputs when it has any) and backward on `device`'s
// stream, by the path of the batch's plan. The caller checks the launches.
void normalizeBatch(CudaDevice& device, const NormalizeJob& job);
void normalizeBackwardBatch(CudaDevice& device, const NormalizeJob& job);

}  // namespace bssn::cuda
