// The on-chip forward (issue 23): for a batch whose weights fit in the shared memory of the card's
// multiprocessors, one cooperative launch does every power iteration (or eval's sigmas) and the outputs. Each block loads one tile of
// one layer into shared memory once; the phases of a step are separated by grid-wide barriers, and only small
// vectors (partial sums over a tile's rows or columns, their owners' sums, per-tile norms) go through global memory.
// W_hat is written from shared memory at the end: W is read once and W_hat written once.
//
// Traffic beyond those two passes, per training step: partial sums of x1, x2, t1, t2 written by every tile, read
// by their owners, the sums read back by the tiles (3 x 8 bytes per partial entry), the per-tile sums, and the
// finish's reads of x, t and writes of u, v. As counted on the emulator (bench/RESULTS.md) with 45000-element
// tiles shaped by tileShape (normalize_fused_plan.cpp), the training forward is 2.09 distinct passes for MLP-2D D, 2.23
// for SNGAN CNN D, 2.24 for SNGAN ResNet D. Issue 23's 2.1 holds for one-direction layers (partials about
// 12 / sqrt(tile elements) of a pass) but not for 3x3 convolutions in both directions (about
// 12 (K + 1) / sqrt(K tile elements) >= 0.17 at 227 KiB of shared memory): meeting it needs the partials kept on
// chip (thread-block clusters' distributed shared memory) or stored narrower. A layer of one tile still sends its
// vectors through global memory (the same code for every tile): skipping that is the next saving.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace bssn::cuda {

constexpr int kFusedThreads = 512;
// The dynamic shared memory the fused kernel may take: an H100's 227 KiB opt-in less room for its static arrays.
constexpr size_t kFusedMaxShared = 232448 - 1024;

// A layer of a fused batch as a row-major R x cols matrix (W1: rows i, columns j = c * K + k; a vector layer is one
// row of numel), cut into rowTiles x colTiles tiles (tile column boundaries are multiples of K). Offsets of its
// vectors: in the state buffer (floats) and in the fused scratch buffer (doubles).
struct FusedLayer {
  const float* w;
  int32_t kind;  // LayerKind: 0 vector, 1 matrix, 2 bidirectional
  int32_t both;  // runs the W2 direction too (rows c, columns (i, k))
  int64_t R, C, K, cols;
  int32_t rowTiles, colTiles;
  int32_t firstTile, tiles;
  int64_t u1, v1, u2, v2;  // state
  // Scratch: partial sums [rowTiles][cols] of x1 = W1^T u1, [colTiles][R * K] of x2 = W2^T u2, [colTiles][R] of
  // t1 = W1 x1, [rowTiles][C] of t2 = W2 x2; the owners' sums x1, x2, t1, t2; per tile 4 sums of squares (x1, x2,
  // t1, t2 over what it owns; a vector layer's tile: its elements' in the first) and its max |w|.
  int64_t xp1, xp2, tp1, tp2;
  int64_t x1, x2, t1, t2;
  int64_t norms, maxes;
};

struct FusedTile {
  int32_t layer;
  int32_t index;   // in its layer: rowTile * colTiles + colTile
  int32_t rowTile, colTile;
  int64_t r0, rows;  // rows [r0, r0 + rows)
  int64_t j0, cols;  // columns [j0, j0 + cols), multiples of K
};

struct FusedArgs {
  const FusedLayer* layers;
  const FusedTile* tiles;  // one per block
  float* state;
  double* scratch;
  float* sigmas;  // kSigmaSlots per layer, as the streamed kernels write them
  double* divisors;
  float* const* outputs;  // null: no outputs (sigmas only)
  int iterations;         // 0: eval
  float eps;
  float scale;
  int bidirectional;
};

// The backward on the same tiles: dW = (c/s) G - (c/s^2) <G, W> ds/dW (as backwardKernel), G kept in shared memory
// across the grid barrier after the dot, so G and W are read once and dW written once.
struct FusedBackwardArgs {
  const FusedLayer* layers;
  const FusedTile* tiles;
  const float* state;
  const double* divisors;     // per layer, from the forward
  const float* const* grads;  // dL/dW_hat per layer
  float* const* outputs;      // dL/dW per layer
  double* scratch;            // the fused scratch: each tile's share of <G, W>
  float scale;
  int bidirectional;
};

// Shared memory of a tile: its weights, then its slices of x1 and x2 (double) and of u1 and u2.
size_t fusedSharedBytes(int64_t rows, int64_t cols, int64_t K, bool both);

// The blocks of kFusedThreads one multiprocessor holds with `sharedBytes` each (after opting the kernel in).
int fusedBlocksPerMultiprocessor(size_t sharedBytes);

cudaError_t launchFusedBackward(const FusedBackwardArgs& args, int tileCount, size_t sharedBytes, cudaStream_t stream);

// One cooperative launch of args.iterations training steps (0: eval, sigma from the stored u and v), and the
// outputs where args.outputs is set: one block per tile.
cudaError_t launchFusedForward(const FusedArgs& args, int tileCount, size_t sharedBytes, cudaStream_t stream);

}  // namespace bssn::cuda
