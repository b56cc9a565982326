// The fused path's host side (NormalizePath::Fused, normalize_fused.cu): which batches fit on chip, their tiles, and
// the one cooperative launch per forward and per backward. The streamed path's plan is normalize_plan.cpp.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>

#include "cuda/cuda_device.h"
#include "cuda/normalize_fused.cuh"
#include "cuda/normalize_plan.h"

namespace bssn::cuda {

namespace {

// W elements per tile by default: about a block's share of 24 MiB over 132 SMs (180 KB), leaving room for the
// tile's slices of x and u within the 227 KiB opt-in. BSSN_CUDA_FUSED_TILE overrides it (tests cut small layers into
// many tiles with it).
constexpr int64_t kFusedTileElements = 45000;

int64_t fusedTileElements() {
  if (const char* forced = std::getenv("BSSN_CUDA_FUSED_TILE"); forced && *forced) return std::max<int64_t>(1, std::atoll(forced));
  return kFusedTileElements;
}

// A layer the fused kernel reads as a row-major R x (C K) matrix, or a vector.
bool fusable(const LayerView& v) {
  return v.numel > 0 && (v.kind == LayerKind::Vector || (v.iOutermost && v.M == 1 && v.strideC == v.K && v.strideI == v.C * v.K));
}

// The tile shape of an R x cols layer (columns in multiples of K) within `elements`: the whole layer where it fits,
// otherwise the shape with the least partial-sum traffic. Per step a tile writes, and the owners read and pass on,
// partial sums (double) of x1 over its columns and t1 over its rows, and with both directions of x2 over its rows
// times K and t2 over its channels: about 6/rows + 6/cols of a pass over W for one direction (a square tile), and
// 6/rows + 6/channels (K + 1)/K for both (rows = channels: square in (i, c)). Widened where all rows fit.
void tileShape(int64_t R, int64_t cols, int64_t K, bool both, int64_t elements, int64_t& rows, int64_t& width) {
  rows = R, width = cols;
  if (R * cols <= elements) return;
  const int64_t unit = both ? K : 1;  // columns per unit of the tile's side
  // Column boundaries on whole K and, where the layer is wide enough, on 128 bytes (a warp's coalesced fp32 access,
  // forTile in normalize_fused.cu): a segment that starts mid-sector costs a fifth more sectors.
  const int64_t step = std::lcm(K, int64_t(32)) <= cols / 2 ? std::lcm(K, int64_t(32)) : K;
  width = std::min(cols, std::max(step, int64_t(std::sqrt(double(elements) / double(unit))) * unit / step * step));
  rows = std::min(R, std::max<int64_t>(1, elements / width));
  if (rows == R) width = std::min(cols, std::max(step, elements / R / step * step));
}

// What a captured fused forward depends on besides device memory.
struct FusedGraphKey {
  FusedArgs args;
  int64_t tiles;
  uint64_t shared;
};

// Whether the last fused launch was accepted. A refusal as too large (not sticky: nothing ran) is cleared, so that
// the caller's launch check does not report it and the batch can take the streamed kernels instead. (A refused
// launch inside a capture invalidates it; launchSequence then launches directly, and that status is the one seen.)
bool accepted(cudaError_t status) {
  if (status != cudaErrorCooperativeLaunchTooLarge) return true;
  (void)cudaGetLastError();
  return false;
}

}  // namespace

// Plans the fused path for `job`'s batch into `plan`; false (nothing planned) where the batch does not fit it.
bool planFused(CudaDevice& device, const NormalizeJob& job, bool bidirectional, CudaPlan& plan) {
  if (const char* env = std::getenv("BSSN_CUDA_FUSED"); env && std::strcmp(env, "0") == 0) return false;
  const std::vector<LayerView>& layers = *job.layers;
  int64_t bytes = 0;
  for (const LayerView& v : layers) {
    if (!fusable(v)) return false;
    bytes += v.numel * int64_t(sizeof(float));
  }
  if (layers.empty() || bytes > kFusedMaxBatchBytes) return false;
  const int64_t elements = fusedTileElements();
  std::vector<FusedLayer> table(layers.size());
  std::vector<FusedTile> tiles;
  int64_t scratch = 0;
  size_t shared = 0;
  const auto take = [&](int64_t n) { const int64_t at = scratch; scratch += n; return at; };
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerView& v = layers[l];
    FusedLayer& f = table[l];
    const bool vector = v.kind == LayerKind::Vector;
    f.w = job.weights[l]->f32();
    f.kind = int32_t(v.kind);
    f.both = v.kind == LayerKind::Bidirectional && bidirectional;
    f.R = vector ? 1 : v.R, f.C = vector ? 1 : v.C, f.K = vector ? 1 : v.K;
    f.cols = vector ? v.numel : v.C * v.K;
    f.u1 = v.u1, f.v1 = v.v1, f.u2 = v.u2, f.v2 = v.v2;
    int64_t rows, width;
    tileShape(f.R, f.cols, f.K, f.both, elements, rows, width);
    f.rowTiles = int32_t((f.R + rows - 1) / rows);
    f.colTiles = int32_t((f.cols + width - 1) / width);
    f.tiles = f.rowTiles * f.colTiles;
    f.firstTile = int32_t(tiles.size());
    f.xp1 = take(f.rowTiles * f.cols);
    f.xp2 = take(f.both ? f.colTiles * f.R * f.K : 0);
    f.tp1 = take(f.colTiles * f.R);
    f.tp2 = take(f.both ? f.rowTiles * f.C : 0);
    f.x1 = take(f.cols);
    f.x2 = take(f.both ? f.R * f.K : 0);
    f.t1 = take(f.R);
    f.t2 = take(f.both ? f.C : 0);
    f.norms = take(4 * int64_t(f.tiles));
    f.maxes = take(f.tiles);
    for (int32_t rt = 0; rt < f.rowTiles; ++rt)
      for (int32_t ct = 0; ct < f.colTiles; ++ct) {
        const FusedTile t{int32_t(l), rt * f.colTiles + ct, rt, ct, rt * rows, std::min(rows, f.R - rt * rows), ct * width,
                          std::min(width, f.cols - ct * width)};
        shared = std::max(shared, fusedSharedBytes(t.rows, t.cols, f.K, f.both));
        tiles.push_back(t);
      }
  }
  if (shared > kFusedMaxShared) return false;
  // Every tile's block resident at once (a cooperative launch refuses more).
  if (int64_t(tiles.size()) > int64_t(fusedBlocksPerMultiprocessor(shared)) * device.multiprocessors()) return false;
  plan.fusedLayers = device.allocate(table.size() * sizeof(FusedLayer));
  device.upload(plan.fusedLayers, 0, table.data(), table.size() * sizeof(FusedLayer));
  plan.fusedTiles = device.allocate(tiles.size() * sizeof(FusedTile));
  device.upload(plan.fusedTiles, 0, tiles.data(), tiles.size() * sizeof(FusedTile));
  plan.fusedScratch = device.allocate(size_t(scratch) * sizeof(double));
  // Vector layers leave some norm slots unwritten that the kernels add (unused): zeros, never uninitialised memory.
  device.fill(plan.fusedScratch, size_t(scratch) * 2, 0.0f);
  plan.fusedTileCount = int(tiles.size());
  plan.fusedShared = shared;
  return true;
}

// The fused path: the forward (every power iteration, or eval's sigmas from the stored state, and the outputs when
// there are any) as one cooperative launch.
bool fusedForward(CudaDevice& device, CudaPlan& plan, const NormalizeJob& job) {
  FusedGraphKey key;
  std::memset(&key, 0, sizeof key);  // padding too: the key is compared as bytes
  FusedArgs& args = key.args;
  args.layers = static_cast<const FusedLayer*>(plan.fusedLayers->data());
  args.tiles = static_cast<const FusedTile*>(plan.fusedTiles->data());
  args.state = job.state->f32();
  args.scratch = static_cast<double*>(plan.fusedScratch->data());
  args.sigmas = job.sigmas->f32();
  args.divisors = static_cast<double*>(job.divisors->data());
  if (!job.outputs.empty()) args.outputs = static_cast<float* const*>(pointersOf(device, plan.outputs, job.outputs));
  args.iterations = job.iterations;
  args.eps = job.params.eps;
  args.scale = modeIsScaled(job.params.mode) ? job.params.scale : 1.0f;
  args.bidirectional = modeIsBidirectional(job.params.mode) ? 1 : 0;
  key.tiles = plan.fusedTileCount;
  key.shared = plan.fusedShared;
  // The launch's status is also the last error, which the caller's launch check reports (a refusal, below, aside).
  cudaError_t status = cudaSuccess;
  auto launch = [&] {
    device.timed("fused", [&] { status = launchFusedForward(args, plan.fusedTileCount, plan.fusedShared, device.stream()); });
  };
  if (job.iterations <= kMaxGraphIterations) device.launchSequence(*plan.graphs, &key, sizeof key, launch);
  else launch();
  return accepted(status);
}

// The fused path's backward: one cooperative launch on the forward's tiles.
bool fusedBackward(CudaDevice& device, CudaPlan& plan, const NormalizeJob& job) {
  FusedBackwardArgs args;
  std::memset(&args, 0, sizeof args);  // the graph key
  args.layers = static_cast<const FusedLayer*>(plan.fusedLayers->data());
  args.tiles = static_cast<const FusedTile*>(plan.fusedTiles->data());
  args.state = job.state->f32();
  args.divisors = static_cast<const double*>(job.divisors->data());
  args.grads = static_cast<const float* const*>(pointersOf(device, plan.grads, job.grads));
  args.outputs = static_cast<float* const*>(pointersOf(device, plan.gradOutputs, job.outputs));
  args.scratch = static_cast<double*>(plan.fusedScratch->data());
  args.scale = modeIsScaled(job.params.mode) ? job.params.scale : 1.0f;
  args.bidirectional = modeIsBidirectional(job.params.mode) ? 1 : 0;
  cudaError_t status = cudaSuccess;
  device.launchSequence(*plan.graphs, &args, sizeof args, [&] {
    device.timed("fusedBackward", [&] { status = launchFusedBackward(args, plan.fusedTileCount, plan.fusedShared, device.stream()); });
  });
  return accepted(status);
}

}  // namespace bssn::cuda
