#include "cuda/common.cuh"
#include "cuda/normalize.cuh"
#include "cuda/normalize_sigmas.cuh"

namespace bssn::cuda {

namespace {

constexpr int kThreads = 256;
static_assert(kThreads == kTileThreads, "the host plans tiles for this block size");
constexpr int kWarps = kThreads / kWarp;
constexpr int kRowGroup = 8;  // rows reduced at a time by sumRowsByK (bounds its shared memory)
// tiledMultiplyKernel's static shared memory (vRows, stepSums, sums) must fit a block's 48 KiB.
static_assert(sizeof(double) * (kTileMaxRows * kTileMaxK + kTileSteps * kThreads + kWarps * kRowGroup * kWarp) <= 48 * 1024,
              "tiled pass shared memory");

__device__ __forceinline__ int layerOfA(const BatchArgs& a, int64_t item) {
  return findSegment(a.layerCount, item, [&](int i) { return a.layers[i].beginA; });
}
__device__ __forceinline__ int layerOfB(const BatchArgs& a, int64_t item) {
  return findSegment(a.layerCount, item, [&](int i) { return a.layers[i].beginB; });
}

__device__ __forceinline__ bool isFinite(double x) { return fabs(x) <= 1.7976931348623157e308; }

// Training step 1: x1[j1] = sum_i W[i, c, m, k] u1[i] and x2[j2] = sum_c W[i, c, m, k] u2[c], one thread per
// entry and row range (a.splitA ranges), written unnormalized into the scratch (the finish kernel normalizes them),
// or as partial sums when split; the W1 entries also note their max |w|. Adjacent threads read adjacent k:
// coalesced along W's trailing axes.
__global__ void multiplyTransposedKernel(BatchArgs a) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t work = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; work < a.itemsA * a.splitA; work += stride) {
    const int64_t part = work / a.itemsA, item = work - part * a.itemsA;
    const DeviceLayer L = a.layers[layerOfA(a, item)];  // a copy: the stores below cannot make it reload
    const int64_t local = item - L.beginA;
    const int64_t cols1 = L.C * L.M * L.K;
    double s = 0;
    double* x;
    if (local < cols1) {
      const int64_t k = local % L.K, cm = local / L.K, m = cm % L.M, c = cm / L.M;
      const float* w = L.w + c * L.strideC + m * L.strideM + k;
      const float* u = a.state + L.u1;
      const int64_t lo = L.R * part / a.splitA, hi = L.R * (part + 1) / a.splitA;
      float mx = 0;
      for (int64_t i = lo; i < hi; ++i) {
        const float wi = w[i * L.strideI];
        s += double(wi) * u[i];
        mx = fmax(mx, fabsf(wi));
      }
      a.maxA[part * a.itemsA + item] = mx;
      x = a.scratch + L.x1 + local;
    } else {
      const int64_t j2 = local - cols1;
      const int64_t k = j2 % L.K, im = j2 / L.K, m = im % L.M, i = im / L.M;
      const float* w = L.w + i * L.strideI + m * L.strideM + k;
      const float* u = a.state + L.u2;
      const int64_t lo = L.C * part / a.splitA, hi = L.C * (part + 1) / a.splitA;
      for (int64_t c = lo; c < hi; ++c) s += double(w[c * L.strideC]) * u[c];
      x = a.scratch + L.x2 + j2;
    }
    if (a.splitA == 1) *x = s;
    else a.partialA[part * a.itemsA + item] = s;
  }
}

// The split sums of step 1, added in row-range order into the scratch; a W1 item's max |w| over its ranges goes to
// its first range's slot (the finish kernel reads only that one).
__global__ void sumPartialsKernel(BatchArgs a) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t item = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; item < a.itemsA; item += stride) {
    const DeviceLayer L = a.layers[layerOfA(a, item)];
    const int64_t local = item - L.beginA, cols1 = L.C * L.M * L.K;
    double s = 0;
    for (int part = 0; part < a.splitA; ++part) s += a.partialA[part * a.itemsA + item];
    a.scratch[local < cols1 ? L.x1 + local : L.x2 + (local - cols1)] = s;
    if (local < cols1) {
      float mx = 0;
      for (int part = 0; part < a.splitA; ++part) mx = fmax(mx, a.maxA[part * a.itemsA + item]);
      a.maxA[item] = mx;
    }
  }
}

// The vectors step 2 multiplies by: in training the unnormalized x of the scratch (the finish kernel divides t by
// ||x||), in eval the stored v.
__device__ __forceinline__ const double* stepVector(const BatchArgs& a, const DeviceLayer& L, bool first, const double*) {
  return a.scratch + (first ? L.x1 : L.x2);
}
__device__ __forceinline__ const float* stepVector(const BatchArgs& a, const DeviceLayer& L, bool first, const float*) {
  return a.state + (first ? L.v1 : L.v2);
}

// Step 2: t1[i] = sum_j1 W1[i][j1] v1[j1] and t2[c] = sum_j2 W2[c][j2] v2[j2], one warp per part of a row (at most
// kRowSpan entries, DeviceLayer::parts1/parts2), its sum into the scratch's tp1/tp2; v of type V (double:
// training's x; float: eval's v). Where the layout makes the row contiguous in memory (W1's rows for dim 0; W2's
// rows for dim 1 of a 4-D weight), it is read as it lies, with no index decoding.
template <typename V>
__global__ void multiplyKernel(BatchArgs a) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / kWarp;
  for (int64_t item = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / kWarp; item < a.itemsB; item += warps) {
    const DeviceLayer L = a.layers[layerOfB(a, item)];  // a copy: the store below cannot make it reload
    const int64_t local = item - L.beginB;
    const bool first = local < L.R * L.parts1;
    const int64_t parts = first ? L.parts1 : L.parts2, entry = first ? local : local - L.R * L.parts1;
    const int64_t r = entry / parts, part = entry - r * parts;  // the row (i or c) and its part
    const int64_t n = first ? L.C * L.M * L.K : L.R * L.M * L.K;
    const int64_t end = (part + 1) * kRowSpan < n ? (part + 1) * kRowSpan : n;
    const V* v = stepVector(a, L, first, static_cast<const V*>(nullptr));
    const float* row = first ? (L.iOutermost ? L.w + r * L.strideI : nullptr)
                             : (!L.iOutermost && L.M == 1 ? L.w + r * L.strideC : nullptr);
    double s = 0;
    if (row) {
      for (int64_t j = part * kRowSpan + lane; j < end; j += kWarp) s += double(row[j]) * v[j];
    } else {
      // Row entries (q, m, k) with q = c (W1's rows) or i (W2's): decoded per element, by fastDiv where it fits.
      const float* base = L.w + (first ? r * L.strideI : r * L.strideC);
      const int64_t strideQ = first ? L.strideC : L.strideI;
      for (int64_t j = part * kRowSpan + lane; j < end; j += kWarp) {
        int64_t k, m, q;
        if (L.fastDecode) {
          const uint32_t qm = fastDiv(uint32_t(j), L.divK), qq = fastDiv(qm, L.divM);
          k = uint32_t(j) - qm * uint32_t(L.K), m = qm - qq * uint32_t(L.M), q = qq;
        } else {
          const int64_t qm = j / L.K;
          k = j % L.K, m = qm % L.M, q = qm / L.M;
        }
        s += double(base[q * strideQ + m * L.strideM + k]) * v[j];
      }
    }
    s = warpSum(s);
    if (lane == 0) a.scratch[(first ? L.tp1 : L.tp2) + entry] = s;
  }
}

// A tiled layer as [outer][inner][K] (normalize.cuh): the state slots and scratch of its O and P directions.
struct TileView {
  int K;
  int64_t outer, inner, rowLen;
  const float *uO, *uP;
  float *vO, *vP;
  double *xO, *xP;  // training's x (scratch)
  double *tO, *tP;
};

__device__ __forceinline__ TileView tileView(const BatchArgs& a, const DeviceLayer& L) {
  const bool oIsI = L.iOutermost;
  TileView v;
  v.K = int(L.K);
  v.outer = oIsI ? L.R : L.C;
  v.inner = oIsI ? L.C : L.R;
  v.rowLen = v.inner * L.K;
  v.uO = a.state + (oIsI ? L.u1 : L.u2);
  v.uP = a.state + (oIsI ? L.u2 : L.u1);
  v.vO = a.state + (oIsI ? L.v1 : L.v2);
  v.vP = a.state + (oIsI ? L.v2 : L.v1);
  v.xO = a.scratch + (oIsI ? L.x1 : L.x2);
  v.xP = a.scratch + (oIsI ? L.x2 : L.x1);
  v.tO = a.scratch + (oIsI ? L.t1 : L.t2);
  v.tP = a.scratch + (oIsI ? L.t2 : L.t1);
  return v;
}

// For each row r < rows, the sum of acc[r] over the block's threads that share k = threadIdx.x % K (K <= 32; K = 1:
// all threads), handed to out(r, k, sum) by one thread each. Deterministic: a fixed tree of shuffles in each warp
// (lanes l, l + K, l + 2K, ... share k), then the warps in order. `shared`: kWarps * kRowGroup * kWarp doubles.
template <typename Out>
__device__ void sumRowsByK(const double (&acc)[kTileRows], int rows, int K, double* shared, Out out) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
#pragma unroll
  for (int g = 0; g < kTileRows; g += kRowGroup) {
#pragma unroll
    for (int rr = 0; rr < kRowGroup; ++rr) {
      double x = acc[g + rr];
      for (int off = K; off < kWarp; off *= 2) {
        const double y = __shfl_down_sync(0xffffffffu, x, off);
        if (lane + off < kWarp) x += y;
      }
      if (lane < K) shared[(warp * kRowGroup + rr) * kWarp + lane] = x;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < kRowGroup * K; idx += blockDim.x) {
      const int rr = idx / K, k = idx % K;
      if (g + rr >= rows) continue;
      double s = 0;  // warp w's lane holding k: (32 w + lane) % K == k
      for (int w = 0; w < kWarps; ++w) s += shared[(w * kRowGroup + rr) * kWarp + ((k - kWarp * w) % K + K) % K];
      out(g + rr, k, s);
    }
    __syncthreads();
  }
}

// Step 1 of the tiled layers, one tile per block: each W element of the tile is read once for both directions.
// W_O^T u_O over the tile's rows goes to partA (per row block); W_P^T u_P, complete over the segment for each of
// the tile's rows and k, to partB (per segment); the tile's max |w| to tileMax. Thread t only ever sees k = t % K.
// The rows go kTileRows at a time (a group: acc's registers); each thread's W_O^T u_O sums carry across the groups
// in stepSums, so a tile of kTileMaxRows rows halves partA's traffic.
__global__ void __launch_bounds__(kThreads, 2) tiledTransposedKernel(BatchArgs a) {
  BSSN_SHARED(double, uRows, kTileMaxRows);
  BSSN_SHARED(double, stepSums, kTileSteps * kThreads);
  BSSN_SHARED(double, sums, kWarps * kRowGroup * kWarp);
  BSSN_SHARED(float, maxes, kWarps);
  for (int64_t tile = blockIdx.x; tile < a.tileCount; tile += gridDim.x) {
    const Tile tl = a.tiles[tile];
    const DeviceLayer& L = a.layers[tl.layer];
    const TileView v = tileView(a, L);
    const int K = v.K, T = K * (kThreads / K), t = threadIdx.x;
    for (int r = t; r < tl.rows; r += blockDim.x) uRows[r] = v.uO[tl.row0 + r];
    __syncthreads();
    const float* w = L.w + tl.row0 * v.rowLen;
    float mx = 0;
    double* partB = a.tilePartials + L.partB + (int64_t(tl.segment) * v.outer + tl.row0) * K;
    for (int g = 0; g < tl.rows; g += kTileRows) {
      const int rows = tl.rows - g < kTileRows ? tl.rows - g : kTileRows;
      const float* wg = w + g * v.rowLen;
      const double* ug = uRows + g;
      double acc[kTileRows];
#pragma unroll
      for (int r = 0; r < kTileRows; ++r) acc[r] = 0;
      if (t < T) {
        // j = p * K + k with k = t % K fixed: p steps by T / K (no division in the loop).
        int64_t p = (tl.j0 + t) / K;
        int n = 0;
        for (int64_t j = tl.j0 + t; j < tl.j1; j += T, p += T / K, ++n) {
          const double up = v.uP[p];
          double s = 0;
#pragma unroll
          for (int r = 0; r < kTileRows; ++r) {
            if (r < rows) {
              const float wr = wg[r * v.rowLen + j];
              const double x = wr;
              s += x * ug[r];
              acc[r] += x * up;
              mx = fmax(mx, fabsf(wr));
            }
          }
          stepSums[n * kThreads + t] = g == 0 ? s : stepSums[n * kThreads + t] + s;  // this thread's own slot
        }
      }
      sumRowsByK(acc, rows, K, sums, [&](int r, int k, double s) { partB[(g + r) * K + k] = s; });
    }
    double* partA = a.tilePartials + L.partA + tl.rowBlock * v.rowLen;
    if (t < T) {
      int n = 0;
      for (int64_t j = tl.j0 + t; j < tl.j1; j += T, ++n) partA[j] = stepSums[n * kThreads + t];
    }
    mx = blockMaxAbs(mx, maxes);
    if (t == 0) a.tileMax[tile] = mx;
  }
}

__device__ __forceinline__ const double* tileVector(const TileView& v, bool o, const double*) { return o ? v.xO : v.xP; }
__device__ __forceinline__ const float* tileVector(const TileView& v, bool o, const float*) { return o ? v.vO : v.vP; }

// Step 2 of the tiled layers: W_O v_O over the segment for each of the tile's rows (partC, per segment) and W_P v_P
// over the tile's rows for each inner index of the segment (partD, per row block), from one read of the tile. v is
// training's x (V = double) or eval's v (float), as in multiplyKernel. Rows go kTileRows at a time, as in step 1.
template <typename V>
__global__ void __launch_bounds__(kThreads, 2) tiledMultiplyKernel(BatchArgs a) {
  BSSN_SHARED(double, vRows, kTileMaxRows * kTileMaxK);
  BSSN_SHARED(double, stepSums, kTileSteps * kThreads);
  BSSN_SHARED(double, sums, kWarps * kRowGroup * kWarp);
  for (int64_t tile = blockIdx.x; tile < a.tileCount; tile += gridDim.x) {
    const Tile tl = a.tiles[tile];
    const DeviceLayer& L = a.layers[tl.layer];
    const TileView v = tileView(a, L);
    const int K = v.K, T = K * (kThreads / K), t = threadIdx.x, k = t % K;
    const V* vO = tileVector(v, true, static_cast<const V*>(nullptr));
    const V* vP = tileVector(v, false, static_cast<const V*>(nullptr));
    for (int idx = t; idx < tl.rows * K; idx += blockDim.x) vRows[idx] = vP[tl.row0 * K + idx];
    __syncthreads();
    const float* w = L.w + tl.row0 * v.rowLen;
    double* partC = a.tilePartials + L.partC + int64_t(tl.segment) * v.outer + tl.row0;
    for (int g = 0; g < tl.rows; g += kTileRows) {
      const int rows = tl.rows - g < kTileRows ? tl.rows - g : kTileRows;
      const float* wg = w + g * v.rowLen;
      const double* vg = vRows + g * K + k;
      double acc[kTileRows];
#pragma unroll
      for (int r = 0; r < kTileRows; ++r) acc[r] = 0;
      if (t < T) {
        int n = 0;
        for (int64_t j = tl.j0 + t; j < tl.j1; j += T, ++n) {
          const double vo = vO[j];
          double s = 0;
#pragma unroll
          for (int r = 0; r < kTileRows; ++r) {
            if (r < rows) {
              const double x = wg[r * v.rowLen + j];
              acc[r] += x * vo;
              s += x * vg[r * K];
            }
          }
          stepSums[n * kThreads + t] = g == 0 ? s : stepSums[n * kThreads + t] + s;  // this thread's own slot
        }
      }
      sumRowsByK(acc, rows, 1, sums, [&](int r, int, double s) { partC[g + r] = s; });
    }
    // (sumRowsByK ended with a barrier: every thread's stepSums are written.)
    // Each inner index p of the segment: its K consecutive threads' sums, in k order.
    const int groups = T / K;
    double* partD = a.tilePartials + L.partD + int64_t(tl.rowBlock) * v.inner;
    for (int idx = t; idx < kTileSteps * groups; idx += blockDim.x) {
      const int n = idx / groups, q = idx % groups;
      const int64_t p = tl.j0 / K + int64_t(n) * groups + q;  // j = p * K
      if (p * K >= tl.j1) continue;
      double s = 0;
      for (int kk = 0; kk < K; ++kk) s += stepSums[n * kThreads + q * K + kk];
      partD[p] = s;
    }
    // The next tile writes stepSums only after the barrier that follows its vRows: these reads are done by then.
  }
}

__device__ __forceinline__ int layerOfX(const BatchArgs& a, int64_t item) {
  return findSegment(a.layerCount, item, [&](int i) { return a.layers[i].beginX; });
}
__device__ __forceinline__ int layerOfT(const BatchArgs& a, int64_t item) {
  return findSegment(a.layerCount, item, [&](int i) { return a.layers[i].beginT; });
}

// Step 1's partials added in order (row blocks, then segments) into the scratch's x.
__global__ void combineXKernel(BatchArgs a) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t item = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; item < a.itemsX; item += stride) {
    const DeviceLayer& L = a.layers[layerOfX(a, item)];
    const TileView v = tileView(a, L);
    const int64_t local = item - L.beginX;
    double s = 0;
    if (local < v.rowLen) {
      for (int64_t rb = 0; rb < L.rowBlocks; ++rb) s += a.tilePartials[L.partA + rb * v.rowLen + local];
      v.xO[local] = s;
    } else {
      const int64_t e = local - v.rowLen;  // o * K + k
      for (int64_t seg = 0; seg < L.segments; ++seg) s += a.tilePartials[L.partB + seg * v.outer * v.K + e];
      v.xP[e] = s;
    }
  }
}

// Step 2's partials added in order into the scratch (t = W v).
__global__ void combineTKernel(BatchArgs a) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t item = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; item < a.itemsT; item += stride) {
    const DeviceLayer& L = a.layers[layerOfT(a, item)];
    const TileView v = tileView(a, L);
    const int64_t local = item - L.beginT;
    double s = 0;
    if (local < v.outer) {
      for (int64_t seg = 0; seg < L.segments; ++seg) s += a.tilePartials[L.partC + seg * v.outer + local];
      v.tO[local] = s;
    } else {
      const int64_t p = local - v.outer;
      for (int64_t rb = 0; rb < L.rowBlocks; ++rb) s += a.tilePartials[L.partD + rb * v.inner + p];
      v.tP[p] = s;
    }
  }
}

// sigma where a step's product is not usable: NaN when it is non-finite (a non-finite weight), 0 when it is zero
// (an all-zero weight). The state then stays as it was.
__device__ __forceinline__ double unusable(double norm) { return isFinite(norm) ? 0.0 : nan(""); }
__device__ __forceinline__ bool usable(double norm) { return isFinite(norm) && norm > 0; }

// Step 3 for one direction. Training: v = x / max(||x||, floor), t = (W x) / max(||x||, floor), then
// u = t / max(||t||, floor) and sigma = ||t||^2 / max(||t||, floor) (= u^T M v), where floor = eps * max|w|; u and v
// are written only when both products are finite and non-zero. Eval: sigma = u^T t. (Every branch below depends
// on block totals only: the whole block takes it.)
__device__ double finishDirection(float* u, float* v, const double* x, int64_t nv, const double* t, int64_t n, bool training,
                                  double floor, double* partial, double* broadcast) {
  if (!training) return blockTotal(n, [&](int64_t k) { return double(u[k]) * t[k]; }, partial, broadcast);
  const double xNorm = sqrt(blockTotal(nv, [&](int64_t k) { return x[k] * x[k]; }, partial, broadcast));
  if (!usable(xNorm)) return unusable(xNorm);
  const double xDenom = fmax(xNorm, floor);
  const double tNorm = sqrt(blockTotal(n, [&](int64_t k) { return t[k] * t[k]; }, partial, broadcast)) / xDenom;
  if (!usable(tNorm)) return unusable(tNorm);
  const double tDenom = fmax(tNorm, floor);
  const double vFactor = 1.0 / xDenom, uFactor = vFactor / tDenom;  // two divisions, not one per element
  for (int64_t k = threadIdx.x; k < nv; k += blockDim.x) v[k] = float(x[k] * vFactor);
  for (int64_t k = threadIdx.x; k < n; k += blockDim.x) u[k] = float(t[k] * uFactor);
  return tNorm * tNorm / tDenom;
}

// The layer's max |w|, from step 1's notes: its W1 items' (per-item pass; over all row ranges in the first's slot,
// sumPartialsKernel) or its tiles' (tiled pass).
__device__ double layerMaxAbs(const BatchArgs& a, const DeviceLayer& L, double* partial, double* broadcast) {
  float m = 0;
  if (L.tiled) {
    const int64_t tiles = L.rowBlocks * L.segments;
    for (int64_t k = threadIdx.x; k < tiles; k += blockDim.x) m = fmax(m, a.tileMax[L.firstTile + k]);
  } else {
    const int64_t cols1 = L.C * L.M * L.K;
    for (int64_t k = threadIdx.x; k < cols1; k += blockDim.x) m = fmax(m, a.maxA[L.beginA + k]);
  }
  float* shared = reinterpret_cast<float*>(partial);  // one float per warp fits where one double does
  m = blockMaxAbs(m, shared);
  if (threadIdx.x == 0) *broadcast = m;
  __syncthreads();
  const double total = *broadcast;
  __syncthreads();
  return total;
}

// A row's parts of the W v pass (DeviceLayer::parts1/parts2), added in order into t.
__device__ void combineParts(double* t, const double* tp, int64_t rows, int parts) {
  if (parts == 1) return;  // tp is t
  for (int64_t k = threadIdx.x; k < rows; k += blockDim.x) {
    double s = 0;
    for (int p = 0; p < parts; ++p) s += tp[k * parts + p];
    t[k] = s;
  }
  __syncthreads();
}

// One block per layer: sigmas and divisor (and, in training, the normalized v and u). A non-finite weight gives
// sigma NaN (so the output is NaN, as PyTorch's) and counts a step in the layer's non-finite slot. Blocks of
// a.finishThreads, so that each thread's share of a layer's vectors stays short (BigGAN's widest, 13824 entries, are
// 14 each of 1024 threads).
__global__ void __launch_bounds__(kMaxFinishThreads) finishKernel(BatchArgs a, int training) {
  BSSN_SHARED(double, partial, kMaxFinishThreads / kWarp);
  BSSN_SHARED(double, broadcast, 1);
  const DeviceLayer L = a.layers[blockIdx.x];  // a copy: the state and scratch stores cannot make it reload
  double s1, s2;
  if (L.kind != 0) {
    combineParts(a.scratch + L.t1, a.scratch + L.tp1, L.R, L.parts1);
    if (L.both) combineParts(a.scratch + L.t2, a.scratch + L.tp2, L.C, L.parts2);
  }
  if (L.kind == 0) {
    s1 = s2 = sqrt(blockTotal(L.numel, [&](int64_t k) { return double(L.w[k]) * L.w[k]; }, partial, broadcast));
    if (!isFinite(s1)) s1 = s2 = nan("");
  } else {
    const int64_t cols1 = L.C * L.M * L.K, cols2 = L.R * L.M * L.K;
    const double floor = training ? double(a.eps) * layerMaxAbs(a, L, partial, broadcast) : 0.0;
    s1 = finishDirection(a.state + L.u1, a.state + L.v1, a.scratch + L.x1, cols1, a.scratch + L.t1, L.R, training, floor,
                         partial, broadcast);
    s2 = L.both ? finishDirection(a.state + L.u2, a.state + L.v2, a.scratch + L.x2, cols2, a.scratch + L.t2, L.C, training,
                                  floor, partial, broadcast)
                : s1;
    if (!isFinite(s1) || !isFinite(s2)) s1 = s2 = nan("");
  }
  if (threadIdx.x == 0) writeSigmas(a.sigmas, a.divisors, int(blockIdx.x), s1, s2, a.bidirectional);
}

__device__ __forceinline__ bool aligned16(const void* a, const void* b) {
  return ((reinterpret_cast<uintptr_t>(a) | reinterpret_cast<uintptr_t>(b)) & 15) == 0;
}

// out = c * W / divisor, one chunk of one layer per block (grid-stride over chunks); float4 where aligned. The
// factor is computed in double; where it is not a normal float (a divisor past float's range either way) the
// elements are multiplied in double.
__global__ void scaleKernel(BatchArgs a) {
  for (int64_t chunk = blockIdx.x; chunk < a.chunkCount; chunk += gridDim.x) {
    const ElementChunk ch = a.chunks[chunk];
    const DeviceLayer& L = a.layers[ch.layer];
    const double divisor = a.divisors[ch.layer];
    const double exact = divisor != 0.0 ? double(a.scale) / divisor : 0.0;
    const float factor = float(exact);
    const float* w = L.w + ch.begin;
    float* out = a.outputs[ch.layer] + ch.begin;
    const int64_t n = ch.end - ch.begin;
    int64_t done = 0;
    if (factor != 0.0f && !(fabsf(factor) >= 1.17549435e-38f && fabsf(factor) <= 3.40282347e38f)) {
      for (int64_t k = threadIdx.x; k < n; k += blockDim.x) out[k] = float(double(w[k]) * exact);
      continue;
    }
    if (aligned16(w, out)) {
      const int64_t n4 = n / 4;
      const float4* w4 = reinterpret_cast<const float4*>(w);
      float4* out4 = reinterpret_cast<float4*>(out);
      for (int64_t k = threadIdx.x; k < n4; k += blockDim.x) {
        const float4 x = w4[k];
        out4[k] = make_float4(x.x * factor, x.y * factor, x.z * factor, x.w * factor);
      }
      done = n4 * 4;
    }
    for (int64_t k = done + threadIdx.x; k < n; k += blockDim.x) out[k] = w[k] * factor;
  }
}

// <G, W> per chunk (float4 where aligned: 16 steps per thread); the last chunk of a layer to finish sums the layer's
// partials in chunk order (the same result whatever the order the chunks ran in) and resets the layer's counter for
// the next call. The layer's fields are read once per chunk, into registers.
__global__ void gradDotKernel(BackwardArgs a) {
  BSSN_SHARED(double, partial, kThreads / kWarp);
  BSSN_SHARED(int, last, 1);
  for (int64_t chunk = blockIdx.x; chunk < a.chunkCount; chunk += gridDim.x) {
    const ElementChunk ch = a.chunks[chunk];
    const DeviceLayer& layer = a.layers[ch.layer];
    const int64_t firstChunk = layer.firstChunk, chunks = layer.chunks;
    const float* __restrict__ w = layer.w + ch.begin;
    const float* __restrict__ g = a.grads[ch.layer] + ch.begin;
    const int64_t n = ch.end - ch.begin;
    double s = 0;
    int64_t done = 0;
    if (aligned16(w, g)) {
      const float4* w4 = reinterpret_cast<const float4*>(w);
      const float4* g4 = reinterpret_cast<const float4*>(g);
      for (int64_t q = threadIdx.x; q < n / 4; q += blockDim.x) {
        const float4 x = g4[q], y = w4[q];
        s += double(x.x) * y.x + double(x.y) * y.y + double(x.z) * y.z + double(x.w) * y.w;
      }
      done = n / 4 * 4;
    }
    for (int64_t k = done + threadIdx.x; k < n; k += blockDim.x) s += double(g[k]) * w[k];
    s = blockSum(s, partial);
    if (threadIdx.x == 0) {
      a.partialDots[chunk] = s;
      __threadfence();  // the partial is visible before the count says so
      last[0] = atomicAdd(&a.arrivals[ch.layer], 1u) == unsigned(chunks - 1);
    }
    __syncthreads();
    if (last[0]) {
      __threadfence();
      double total = 0;
      for (int64_t c = firstChunk + threadIdx.x; c < firstChunk + chunks; c += blockDim.x) total += a.partialDots[c];
      total = blockSum(total, partial);  // a fixed assignment and tree: the same sum on every run
      if (threadIdx.x == 0) {
        a.dots[ch.layer] = total;
        a.arrivals[ch.layer] = 0;
      }
    }
    __syncthreads();  // `last` is reused by the next chunk
  }
}

// ds/dW at element k of layer L: u1[i] v1[j1] (and its mean with u2[c] v2[j2] when both), or w / ||w|| for a vector
// (`inverse`: 1 / ||w||).
__device__ __forceinline__ double sigmaGradient(const DeviceLayer& L, const float* __restrict__ st, int64_t k, double inverse) {
  if (L.kind == 0) return L.w[k] * inverse;
  int64_t kk, i, c, m;
  if (L.fastDecode) {
    const uint32_t n = uint32_t(k), rest = fastDiv(n, L.divK);
    kk = n - rest * uint32_t(L.K);
    if (L.iOutermost) {
      i = fastDiv(rest, L.divC), c = rest - uint32_t(i) * uint32_t(L.C), m = 0;
    } else {
      const uint32_t cm = fastDiv(rest, L.divR), cc = fastDiv(cm, L.divM);
      i = rest - cm * uint32_t(L.R), m = cm - cc * uint32_t(L.M), c = cc;
    }
  } else {
    const int64_t rest = k / L.K;
    kk = k % L.K;
    if (L.iOutermost) {
      i = rest / L.C, c = rest % L.C, m = 0;
    } else {
      const int64_t cm = rest / L.R;
      i = rest % L.R, m = cm % L.M, c = cm / L.M;
    }
  }
  double ds = double(st[L.u1 + i]) * st[L.v1 + (c * L.M + m) * L.K + kk];
  if (L.both) ds = 0.5 * (ds + double(st[L.u2 + c]) * st[L.v2 + (i * L.M + m) * L.K + kk]);
  return ds;
}

// dW = (c/s) G - (c/s^2) <G, W> ds/dW, one chunk per block: the layer (a copy in registers: the output stores cannot
// make it reload) and the coefficients once per chunk; G read and dW written as float4 where aligned.
__global__ void backwardKernel(BackwardArgs a) {
  for (int64_t chunk = blockIdx.x; chunk < a.chunkCount; chunk += gridDim.x) {
    const ElementChunk ch = a.chunks[chunk];
    const DeviceLayer L = a.layers[ch.layer];
    float* __restrict__ out = a.outputs[ch.layer];
    const float* __restrict__ g = a.grads[ch.layer];
    const float* __restrict__ st = a.state;
    const double s = a.divisors[ch.layer];
    if (s == 0) {  // the forward wrote zeros whatever W was
      for (int64_t k = ch.begin + threadIdx.x; k < ch.end; k += blockDim.x) out[k] = 0.0f;
      continue;
    }
    const double coefG = double(a.scale) / s;
    const double coefS = double(a.scale) / (s * s) * a.dots[ch.layer];
    const double inverse = 1.0 / s;
    const auto at = [&](int64_t k, float gk) { return float(coefG * gk - coefS * sigmaGradient(L, st, k, inverse)); };
    int64_t done = ch.begin;
    if (aligned16(g + ch.begin, out + ch.begin)) {
      const float4* g4 = reinterpret_cast<const float4*>(g + ch.begin);
      float4* out4 = reinterpret_cast<float4*>(out + ch.begin);
      const int64_t n4 = (ch.end - ch.begin) / 4;
      for (int64_t q = threadIdx.x; q < n4; q += blockDim.x) {
        const float4 x = g4[q];
        const int64_t k = ch.begin + 4 * q;
        out4[q] = make_float4(at(k, x.x), at(k + 1, x.y), at(k + 2, x.z), at(k + 3, x.w));
      }
      done = ch.begin + n4 * 4;
    }
    for (int64_t k = done + threadIdx.x; k < ch.end; k += blockDim.x) out[k] = at(k, g[k]);
  }
}

}  // namespace

void launchGradDots(const BackwardArgs& args, cudaStream_t stream) {
  if (args.chunkCount > 0) BSSN_LAUNCH(gradDotKernel, gridFor(args.chunkCount, 1), kThreads, 0, stream, args);
}

void launchBackwardElements(const BackwardArgs& args, cudaStream_t stream) {
  if (args.chunkCount > 0) BSSN_LAUNCH(backwardKernel, gridFor(args.chunkCount, 1), kThreads, 0, stream, args);
}

void launchMultiplyTransposed(const BatchArgs& args, cudaStream_t stream) {
  if (args.tileCount > 0) {
    BSSN_LAUNCH(tiledTransposedKernel, gridFor(args.tileCount, 1), kThreads, 0, stream, args);
    BSSN_LAUNCH(combineXKernel, gridFor(args.itemsX, kThreads), kThreads, 0, stream, args);
  }
  if (args.itemsA == 0) return;
  BSSN_LAUNCH(multiplyTransposedKernel, gridFor(args.itemsA * args.splitA, kThreads), kThreads, 0, stream, args);
  if (args.splitA > 1) BSSN_LAUNCH(sumPartialsKernel, gridFor(args.itemsA, kThreads), kThreads, 0, stream, args);
}

void launchMultiply(const BatchArgs& args, bool training, cudaStream_t stream) {
  if (args.tileCount > 0) {
    // Launched by launchKernel with the kernel's plain name (BSSN_LAUNCH would add the template argument to it).
    launchKernel("tiledMultiplyKernel", training ? tiledMultiplyKernel<double> : tiledMultiplyKernel<float>,
                 gridFor(args.tileCount, 1), kThreads, 0, stream, args);
    BSSN_LAUNCH(combineTKernel, gridFor(args.itemsT, kThreads), kThreads, 0, stream, args);
  }
  if (args.itemsB == 0) return;
  launchKernel("multiplyKernel", training ? multiplyKernel<double> : multiplyKernel<float>, gridFor(args.itemsB * kWarp, kThreads),
               kThreads, 0, stream, args);
}

void launchFinish(const BatchArgs& args, bool training, cudaStream_t stream) {
  BSSN_LAUNCH(finishKernel, unsigned(args.layerCount), unsigned(args.finishThreads), 0, stream, args, training ? 1 : 0);
}

void launchScale(const BatchArgs& args, cudaStream_t stream) {
  if (args.chunkCount > 0) BSSN_LAUNCH(scaleKernel, gridFor(args.chunkCount, 1), kThreads, 0, stream, args);
}

}  // namespace bssn::cuda
