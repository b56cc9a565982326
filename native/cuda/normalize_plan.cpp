#include "cuda/normalize_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <numeric>

#include "cuda/cuda_device.h"
#include "cuda/normalize.cuh"

namespace bssn::cuda {

static_assert(kSigmaSlots == kSigmaStride && kNonFiniteSigmaSlot == kNonFiniteSlot, "the kernels' sigma layout");

namespace {

// What a captured forward depends on besides device memory: its arguments, iterations and whether it scales.
struct ForwardGraphKey {
  BatchArgs args;
  int32_t iterations;
  int32_t scale;
};

// How many row ranges each W^T u sum is split into: enough threads to fill the GPU (a resident block's worth per
// multiprocessor, 2048 threads) when the batch has few, long sums (small networks), none when it has many. Ranges
// stay at least 16 rows long, and at most kMaxRangeRows (no thread walks a long chain of dependent adds) while the
// split stays <= kMaxSplit. BSSN_CUDA_SPLIT_ROWS overrides it (tests force both paths with it).
constexpr int64_t kMaxRangeRows = 64;
constexpr int64_t kMaxSplit = 64;

int splitFor(const CudaDevice& device, int64_t itemsA, const std::vector<DeviceLayer>& layers) {
  if (const char* forced = std::getenv("BSSN_CUDA_SPLIT_ROWS"); forced && *forced) return std::max(1, std::min(64, std::atoi(forced)));
  if (itemsA == 0) return 1;
  int64_t longest = 0;  // the longest sum of the per-item kernel (tiled layers have none there)
  for (const DeviceLayer& d : layers)
    if (d.kind != 0 && !d.tiled) longest = std::max({longest, d.R, d.both ? d.C : 0});
  const int64_t wanted = (int64_t(device.multiprocessors()) * 2048 + itemsA - 1) / itemsA;
  const int64_t needed = std::min<int64_t>(kMaxSplit, (longest + kMaxRangeRows - 1) / kMaxRangeRows);
  return int(std::max<int64_t>({1, needed, std::min<int64_t>({wanted, 16, longest / 16})}));
}

// Whether layer `v` takes the tiled passes (normalize.cuh: both directions from one read of W): laid out
// [outer][inner][K] (dim 0, or dim 1 with nothing between) with K up to a warp.
bool tileable(const LayerView& v, bool both, bool tiling) { return tiling && both && (v.iOutermost || v.M == 1) && v.K <= kTileMaxK; }

// A tiled layer's row segment: `steps` elements for each of the tile's threads.
int64_t segmentLength(int64_t K, int steps) { return K * (kTileThreads / K) * steps; }

// Outer rows and steps per thread of a batch's tiles.
struct TileShape {
  int64_t rows;
  int steps;
};

// The batch's tile shape: the first of these that gives every multiprocessor two blocks. kTileMaxRows rows halve
// step 1's per-row-block partials (BigGAN: 751 tiles on 132 SMs), fewer rows and shorter segments give small
// networks' batches more tiles (on 132 SMs, SNGAN's 68 tiles become 382, ResNet's 40 become 152); those cost more
// partial sums (at one step, about 8 K / 256 bytes per element of W, written and read once), far less than idle
// multiprocessors at these sizes. BSSN_CUDA_TILE_ROWS (1 to 64) and BSSN_CUDA_TILE_STEPS (1 to 8) override it
// (tests force each shape with them).
TileShape tileShape(const std::vector<LayerView>& layers, bool bidirectional, bool tiling, int multiprocessors) {
  const TileShape shapes[] = {{kTileMaxRows, kTileSteps}, {kTileRows, kTileSteps}, {kTileRows, 4}, {kTileRows, 2}, {kTileRows, 1}};
  TileShape chosen = shapes[std::size(shapes) - 1];
  for (const TileShape& shape : shapes) {
    int64_t tiles = 0;
    for (const LayerView& v : layers) {
      if (!tileable(v, v.kind == LayerKind::Bidirectional && bidirectional, tiling)) continue;
      const int64_t outer = v.iOutermost ? v.R : v.C, inner = v.iOutermost ? v.C : v.R, segment = segmentLength(v.K, shape.steps);
      tiles += (outer + shape.rows - 1) / shape.rows * ((inner * v.K + segment - 1) / segment);
    }
    if (tiles >= 2 * int64_t(multiprocessors)) {
      chosen = shape;
      break;
    }
  }
  if (const char* rows = std::getenv("BSSN_CUDA_TILE_ROWS"); rows && *rows) chosen.rows = std::max(1, std::min(kTileMaxRows, std::atoi(rows)));
  if (const char* steps = std::getenv("BSSN_CUDA_TILE_STEPS"); steps && *steps) chosen.steps = std::max(1, std::min(kTileSteps, std::atoi(steps)));
  return chosen;
}

// Elements per chunk of the element passes: kChunkElements, halved (down to kMinChunkElements) while the batch's
// chunks would leave multiprocessors without two blocks each (on 132 SMs: ResNet's 67 chunks of 16384 become 516 of
// 2048, SNGAN's 181 become 359 of 8192).
// BSSN_CUDA_CHUNK_ELEMENTS overrides it (a multiple of 4; tests force many chunks per layer with it).
int64_t chunkElements(const std::vector<LayerView>& layers, int multiprocessors) {
  if (const char* forced = std::getenv("BSSN_CUDA_CHUNK_ELEMENTS"); forced && *forced)
    return std::max<int64_t>(4, std::min<int64_t>(kChunkElements, std::atoll(forced)) / 4 * 4);
  int64_t size = kChunkElements;
  for (; size > kMinChunkElements; size /= 2) {
    int64_t chunks = 0;
    for (const LayerView& v : layers) chunks += (v.numel + size - 1) / size;
    if (chunks >= 2 * int64_t(multiprocessors)) break;
  }
  return size;
}

// The finish kernel's block for `layers` (normalize.cuh): about 16 entries of the longest vector per thread.
int finishThreadsFor(const std::vector<LayerView>& layers) {
  int64_t longest = 0;
  for (const LayerView& v : layers) longest = std::max({longest, v.kind == LayerKind::Vector ? v.numel : 0, v.R, v.C, v.cols1(), v.cols2()});
  int threads = kMinFinishThreads;
  while (threads < kMaxFinishThreads && threads * int64_t(16) < longest) threads *= 2;
  return threads;
}

// The plan of `job`'s batch: built on first use (and again if its weights changed), kept in job.backendCache.
CudaPlan& planFor(CudaDevice& device, const NormalizeJob& job) {
  const std::vector<LayerView>& layers = *job.layers;
  auto* plan = static_cast<CudaPlan*>(job.backendCache->get());
  bool stale = !plan || plan->weights.size() != layers.size();
  for (size_t i = 0; !stale && i < layers.size(); ++i) stale = plan->weights[i] != job.weights[i]->data();
  if (!stale) return *plan;

  const bool bidirectional = modeIsBidirectional(job.params.mode);
  auto fresh = std::make_shared<CudaPlan>();
  // The kernel path: the one place it is chosen. The streamed kernels' tables are built whatever it is (eval
  // forwards and the backward use them).
  fresh->path = planFused(device, job, bidirectional, *fresh) ? NormalizePath::Fused : NormalizePath::Streamed;
  std::vector<DeviceLayer> table(layers.size());
  std::vector<ElementChunk> chunks;
  std::vector<Tile> tiles;
  int64_t scratch = 0, tilePartials = 0;
  const char* tiledEnv = std::getenv("BSSN_CUDA_TILED");
  const bool tiling = !(tiledEnv && std::strcmp(tiledEnv, "0") == 0);
  const TileShape shape = tileShape(layers, bidirectional, tiling, device.multiprocessors());
  const int64_t chunkSize = chunkElements(layers, device.multiprocessors());
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerView& v = layers[i];
    DeviceLayer& d = table[i];
    d.w = job.weights[i]->f32();
    d.kind = int32_t(v.kind);
    d.both = v.kind == LayerKind::Bidirectional && bidirectional;
    d.iOutermost = v.iOutermost;
    d.R = v.R, d.C = v.C, d.M = v.M, d.K = v.K;
    d.strideI = v.strideI, d.strideC = v.strideC, d.strideM = v.strideM;
    d.numel = v.numel;
    d.u1 = v.u1, d.v1 = v.v1, d.u2 = v.u2, d.v2 = v.v2;
    d.t1 = scratch;
    d.t2 = d.t1 + v.R;
    d.x1 = d.t2 + v.C;
    d.x2 = d.x1 + v.cols1();
    scratch = d.x2 + v.cols2();
    d.parts1 = d.parts2 = 1;
    d.tp1 = d.t1, d.tp2 = d.t2;
    d.beginA = fresh->itemsA;
    d.beginB = fresh->itemsB;
    d.beginX = fresh->itemsX;
    d.beginT = fresh->itemsT;
    d.fastDecode = v.numel > 0 && v.numel < (int64_t(1) << 31);  // every index fits fastDiv's range
    if (d.fastDecode) d.divK = makeFastDiv(uint32_t(v.K)), d.divC = makeFastDiv(uint32_t(v.C)), d.divR = makeFastDiv(uint32_t(v.R)), d.divM = makeFastDiv(uint32_t(v.M));
    d.tiled = tileable(v, d.both, tiling);
    if (d.tiled) {
      const int64_t outer = v.iOutermost ? v.R : v.C, inner = v.iOutermost ? v.C : v.R, rowLen = inner * v.K;
      const int64_t segment = segmentLength(v.K, shape.steps), tileRows = shape.rows;
      d.rowBlocks = (outer + tileRows - 1) / tileRows;
      d.segments = (rowLen + segment - 1) / segment;
      d.partA = tilePartials;
      d.partB = d.partA + d.rowBlocks * rowLen;
      d.partC = d.partB + d.segments * outer * v.K;
      d.partD = d.partC + d.segments * outer;
      tilePartials = d.partD + d.rowBlocks * inner;
      fresh->itemsX += rowLen + outer * v.K;
      fresh->itemsT += outer + inner;
      d.firstTile = int64_t(tiles.size());
      for (int64_t rb = 0; rb < d.rowBlocks; ++rb)
        for (int64_t seg = 0; seg < d.segments; ++seg)
          tiles.push_back(Tile{int32_t(i), int32_t(std::min<int64_t>(tileRows, outer - rb * tileRows)), rb * tileRows,
                               seg * segment, std::min(rowLen, (seg + 1) * segment), int32_t(rb), int32_t(seg)});
    } else if (v.kind != LayerKind::Vector) {
      fresh->itemsA += v.cols1() + (d.both ? v.cols2() : 0);
      d.parts1 = int32_t((v.cols1() + kRowSpan - 1) / kRowSpan);
      d.parts2 = d.both ? int32_t((v.cols2() + kRowSpan - 1) / kRowSpan) : 1;
      fresh->itemsB += v.R * d.parts1 + (d.both ? v.C * d.parts2 : 0);
      if (d.parts1 > 1) d.tp1 = scratch, scratch += v.R * d.parts1;
      if (d.parts2 > 1) d.tp2 = scratch, scratch += v.C * d.parts2;
    }
    fresh->weights.push_back(d.w);
    d.firstChunk = int64_t(chunks.size());
    for (int64_t begin = 0; begin < v.numel; begin += chunkSize)
      chunks.push_back(ElementChunk{int32_t(i), 0, begin, std::min(begin + chunkSize, v.numel)});
    d.chunks = int64_t(chunks.size()) - d.firstChunk;
  }
  fresh->table = device.allocate(table.size() * sizeof(DeviceLayer));
  device.upload(fresh->table, 0, table.data(), table.size() * sizeof(DeviceLayer));
  fresh->scratch = device.allocate(size_t(scratch) * sizeof(double));
  fresh->dots = device.allocate(layers.size() * sizeof(double));
  fresh->chunkCount = int64_t(chunks.size());
  fresh->chunks = device.allocate(chunks.size() * sizeof(ElementChunk));
  device.upload(fresh->chunks, 0, chunks.data(), chunks.size() * sizeof(ElementChunk));
  fresh->partialDots = device.allocate(chunks.size() * sizeof(double));
  fresh->tileCount = int64_t(tiles.size());
  if (!tiles.empty()) {
    fresh->tiles = device.allocate(tiles.size() * sizeof(Tile));
    device.upload(fresh->tiles, 0, tiles.data(), tiles.size() * sizeof(Tile));
    fresh->tilePartials = device.allocate(size_t(tilePartials) * sizeof(double));
    fresh->tileMax = device.allocate(tiles.size() * sizeof(float));
  }
  fresh->splitA = splitFor(device, fresh->itemsA, table);
  fresh->finishThreads = finishThreadsFor(layers);
  if (fresh->splitA > 1) fresh->partialA = device.allocate(size_t(fresh->splitA * fresh->itemsA) * sizeof(double));
  if (fresh->itemsA > 0) fresh->maxA = device.allocate(size_t(fresh->splitA * fresh->itemsA) * sizeof(float));
  fresh->arrivals = device.allocate(layers.size() * sizeof(unsigned));
  device.fill(fresh->arrivals, layers.size(), 0.0f);  // all-zero bits
  fresh->outputs.buffer = device.allocate(layers.size() * sizeof(void*));
  fresh->grads.buffer = device.allocate(layers.size() * sizeof(void*));
  fresh->gradOutputs.buffer = device.allocate(layers.size() * sizeof(void*));
  fresh->graphs = std::make_unique<LaunchGraphs>(device.index());
  *job.backendCache = fresh;
  return *fresh;
}

// The streamed path: normalize.cu's kernels, phase by phase, replayed from a captured graph when graphs are on.
void streamedForward(CudaDevice& device, CudaPlan& plan, const NormalizeJob& job) {
  const cudaStream_t stream = device.stream();
  ForwardGraphKey key;
  std::memset(&key, 0, sizeof key);  // padding too: the key is compared as bytes
  BatchArgs& args = key.args;
  args.layers = static_cast<const DeviceLayer*>(plan.table->data());
  args.layerCount = int(job.layers->size());
  args.state = job.state->f32();
  args.scratch = static_cast<double*>(plan.scratch->data());
  args.sigmas = job.sigmas->f32();
  args.divisors = static_cast<double*>(job.divisors->data());
  args.maxA = plan.maxA ? plan.maxA->f32() : nullptr;
  args.tileMax = plan.tileMax ? plan.tileMax->f32() : nullptr;
  args.itemsA = plan.itemsA;
  args.itemsB = plan.itemsB;
  args.chunks = static_cast<const ElementChunk*>(plan.chunks->data());
  args.chunkCount = plan.chunkCount;
  args.splitA = plan.splitA;
  args.finishThreads = plan.finishThreads;
  args.partialA = plan.partialA ? static_cast<double*>(plan.partialA->data()) : nullptr;
  args.tiles = plan.tiles ? static_cast<const Tile*>(plan.tiles->data()) : nullptr;
  args.tileCount = plan.tileCount;
  args.tilePartials = plan.tilePartials ? static_cast<double*>(plan.tilePartials->data()) : nullptr;
  args.itemsX = plan.itemsX;
  args.itemsT = plan.itemsT;
  args.eps = job.params.eps;
  args.scale = modeIsScaled(job.params.mode) ? job.params.scale : 1.0f;
  args.bidirectional = modeIsBidirectional(job.params.mode) ? 1 : 0;
  // The output pointers are read from a device table (uploaded before the launches when they changed).
  if (!job.outputs.empty()) args.outputs = static_cast<float* const*>(pointersOf(device, plan.outputs, job.outputs));
  key.iterations = job.iterations;
  key.scale = job.outputs.empty() ? 0 : 1;

  const bool training = job.iterations > 0;
  auto launches = [&] {
    for (int it = 0; it < std::max(job.iterations, 1); ++it) {
      if (training) device.timed("multiplyTransposed", [&] { launchMultiplyTransposed(args, stream); });
      device.timed("multiply", [&] { launchMultiply(args, training, stream); });
      device.timed("finish", [&] { launchFinish(args, training, stream); });
    }
    if (key.scale) device.timed("scale", [&] { launchScale(args, stream); });
  };
  if (job.iterations <= kMaxGraphIterations) device.launchSequence(*plan.graphs, &key, sizeof key, launches);
  else launches();
}

void streamedBackward(CudaDevice& device, CudaPlan& plan, const NormalizeJob& job) {
  const cudaStream_t stream = device.stream();
  BackwardArgs args;
  std::memset(&args, 0, sizeof args);  // the graph key
  args.layers = static_cast<const DeviceLayer*>(plan.table->data());
  args.layerCount = int(job.layers->size());
  args.state = job.state->f32();
  args.divisors = static_cast<const double*>(job.divisors->data());
  args.grads = static_cast<const float* const*>(pointersOf(device, plan.grads, job.grads));
  args.outputs = static_cast<float* const*>(pointersOf(device, plan.gradOutputs, job.outputs));
  args.dots = static_cast<double*>(plan.dots->data());
  args.partialDots = static_cast<double*>(plan.partialDots->data());
  args.arrivals = static_cast<unsigned*>(plan.arrivals->data());
  args.chunks = static_cast<const ElementChunk*>(plan.chunks->data());
  args.chunkCount = plan.chunkCount;
  args.scale = modeIsScaled(job.params.mode) ? job.params.scale : 1.0f;
  args.bidirectional = modeIsBidirectional(job.params.mode) ? 1 : 0;
  device.launchSequence(*plan.graphs, &args, sizeof args, [&] {
    device.timed("gradDots", [&] { launchGradDots(args, stream); });
    device.timed("backward", [&] { launchBackwardElements(args, stream); });
  });
}

}  // namespace

// The device address of a table holding `buffers`' pointers (uploaded in stream order when they changed).
void* pointersOf(CudaDevice& device, PointerTable& table, const std::vector<BufferPtr>& buffers) {
  std::vector<void*> pointers;
  for (const BufferPtr& b : buffers) pointers.push_back(b->data());
  // A captured step gets a table of its own, written once (the graph's constant); the eager table is left alone.
  if (device.capturing()) return device.captureConstant(pointers.data(), pointers.size() * sizeof(void*));
  if (pointers != table.current) {
    device.upload(table.buffer, 0, pointers.data(), pointers.size() * sizeof(void*));
    table.current = std::move(pointers);
  }
  return table.buffer->data();
}

// A fused launch the card refuses at run time (it holds fewer blocks resident than when the batch was planned: MPS,
// green contexts) moves the batch to the streamed kernels for good, whose tables every plan has.
void normalizeBatch(CudaDevice& device, const NormalizeJob& job) {
  CudaPlan& plan = planFor(device, job);
  if (plan.path == NormalizePath::Fused && fusedForward(device, plan, job)) return;
  plan.path = NormalizePath::Streamed;
  streamedForward(device, plan, job);
}

void normalizeBackwardBatch(CudaDevice& device, const NormalizeJob& job) {
  CudaPlan& plan = planFor(device, job);
  if (plan.path == NormalizePath::Fused && fusedBackward(device, plan, job)) return;
  plan.path = NormalizePath::Streamed;
  streamedBackward(device, plan, job);
}

}  // namespace bssn::cuda
