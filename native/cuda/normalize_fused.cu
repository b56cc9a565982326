#include "cuda/normalize_fused.cuh"

#include "cuda/common.cuh"
#include "cuda/normalize.cuh"
#include "cuda/normalize_sigmas.cuh"

namespace bssn::cuda {

namespace {

constexpr int kFusedWarps = kFusedThreads / kWarp;

__device__ __forceinline__ bool finite64(double x) { return fabs(x) <= 1.7976931348623157e308; }

// The tile's shared memory (normalize_fused.cuh, fusedSharedBytes): W, then x1 and x2 slices, then u1 and u2's.
struct TileMemory {
  float* w;
  double *x1, *x2;
  float *u1, *u2;
};
__host__ __device__ __forceinline__ int64_t weightFloats(int64_t rows, int64_t cols) { return (rows * cols + 1) / 2 * 2; }

__device__ TileMemory tileMemory(float* shared, const FusedTile& T, const FusedLayer& L) {
  TileMemory m;
  m.w = shared;
  m.x1 = reinterpret_cast<double*>(shared + weightFloats(T.rows, T.cols));
  m.x2 = m.x1 + T.cols;
  m.u1 = reinterpret_cast<float*>(m.x2 + (L.both ? T.rows * L.K : 0));
  m.u2 = m.u1 + T.rows;
  return m;
}

// A warp's dot product of the tile's row i of W1 with m.x1 (its columns' slice), in every lane.
__device__ __forceinline__ double rowDot(const TileMemory& m, const FusedTile& T, int64_t i, int lane) {
  double acc = 0;
  for (int64_t j = lane; j < T.cols; j += kWarp) acc += double(m.w[i * T.cols + j]) * m.x1[j];
  return warpSum(acc);
}

// A warp's dot product of the tile's part of W2's row c (entries (i, k) of channel c) with m.x2 (its rows' slice).
__device__ __forceinline__ double channelDot(const TileMemory& m, const FusedTile& T, int64_t K, int64_t c, int lane) {
  double acc = 0;
  for (int64_t e = lane; e < T.rows * K; e += kWarp) {
    const int64_t i = e / K, k = e - i * K;
    acc += double(m.w[i * T.cols + c * K + k]) * m.x2[e];
  }
  return warpSum(acc);
}

// The block's tile and its layer, read by thread 0 and shared (every thread reading the tables would cost a sector
// per field and warp: a tenth of a pass over W for MLP-2D D, as counted).
__device__ void tileOf(const FusedTile* tiles, const FusedLayer* layers, FusedTile& T, FusedLayer& L) {
  BSSN_SHARED(FusedTile, tile, 1);
  BSSN_SHARED(FusedLayer, layer, 1);
  if (threadIdx.x == 0) {
    *tile = tiles[blockIdx.x];
    *layer = layers[tile->layer];
  }
  __syncthreads();
  T = *tile;
  L = *layer;
}

// Calls f(e, at, i, j) for every element of the tile: e its index in the tile (row-major), at in the layer, (i, j)
// its row and column in the tile. Coalesced: a whole-width tile is one contiguous range, walked flat; a narrower
// one a warp per row segment (whose start tileShape aligns to 128 bytes), so no warp access straddles two rows.
template <typename F>
__device__ __forceinline__ void forTile(const FusedTile& T, const FusedLayer& L, F f) {
  if (T.cols == L.cols) {
    const int64_t base = T.r0 * L.cols, n = T.rows * T.cols;
    for (int64_t e = threadIdx.x; e < n; e += blockDim.x) {
      const int64_t i = int64_t(uint32_t(e) / uint32_t(T.cols));
      f(e, base + e, i, e - i * T.cols);
    }
    return;
  }
  const int lane = threadIdx.x % kWarp;
  for (int64_t i = threadIdx.x / kWarp; i < T.rows; i += kFusedWarps)
    for (int64_t j = lane; j < T.cols; j += kWarp) f(i * T.cols + j, (T.r0 + i) * L.cols + T.j0 + j, i, j);
}

// [lo, hi): the share of n entries that tile `index` of `tiles` owns (sums and writes).
__device__ __forceinline__ void owned(int64_t n, int index, int tiles, int64_t& lo, int64_t& hi) {
  lo = n * index / tiles;
  hi = n * (index + 1) / tiles;
}

// Owner step: dst[e] = sum over p < parts of partials[p][e] (in p order) for the entries this tile owns; returns the
// sum of their squares (valid in thread 0).
__device__ double ownerSum(double* dst, const double* partials, int64_t n, int parts, int index, int tiles, double* shared) {
  int64_t lo, hi;
  owned(n, index, tiles, lo, hi);
  double squares = 0;
  for (int64_t e = lo + threadIdx.x; e < hi; e += blockDim.x) {
    double s = 0;
    for (int p = 0; p < parts; ++p) s += partials[p * n + e];
    dst[e] = s;
    squares += s * s;
  }
  return blockSum(squares, shared);
}

// One direction's finish, as finishDirection in normalize.cu (same math, same eps floor), from the layer's sums of
// squares; the tile writes v and u for the entries it owns. Every thread of every tile of the layer takes the same
// branches (the sums are the same everywhere).
__device__ double finishOwned(float* u, float* v, const double* x, int64_t nv, const double* t, int64_t n, double xSquares,
                              double tSquares, double floor, int index, int tiles) {
  const double xNorm = sqrt(xSquares);
  if (!(finite64(xNorm) && xNorm > 0)) return finite64(xNorm) ? 0.0 : nan("");
  const double xDenom = fmax(xNorm, floor);
  const double tNorm = sqrt(tSquares) / xDenom;
  if (!(finite64(tNorm) && tNorm > 0)) return finite64(tNorm) ? 0.0 : nan("");
  const double tDenom = fmax(tNorm, floor);
  const double vFactor = 1.0 / xDenom, uFactor = vFactor / tDenom;
  int64_t lo, hi;
  owned(nv, index, tiles, lo, hi);
  for (int64_t e = lo + threadIdx.x; e < hi; e += blockDim.x) v[e] = float(x[e] * vFactor);
  owned(n, index, tiles, lo, hi);
  for (int64_t e = lo + threadIdx.x; e < hi; e += blockDim.x) u[e] = float(t[e] * uFactor);
  return tNorm * tNorm / tDenom;
}

// The tile's slices of the stored u1, v1 (and u2, v2) into m.u1, m.x1 (m.u2, m.x2): its rows, columns, channels
// and (row, k) entries. The caller synchronizes the block before reading them.
__device__ void loadStoredState(const float* state, const FusedTile& T, const FusedLayer& L, const TileMemory& m) {
  const int64_t cb = T.j0 / L.K, cn = T.cols / L.K;
  for (int64_t i = threadIdx.x; i < T.rows; i += blockDim.x) m.u1[i] = state[L.u1 + T.r0 + i];
  for (int64_t j = threadIdx.x; j < T.cols; j += blockDim.x) m.x1[j] = state[L.v1 + T.j0 + j];
  if (!L.both) return;
  for (int64_t c = threadIdx.x; c < cn; c += blockDim.x) m.u2[c] = state[L.u2 + cb + c];
  for (int64_t e = threadIdx.x; e < T.rows * L.K; e += blockDim.x) m.x2[e] = state[L.v2 + T.r0 * L.K + e];
}

// Eval (stored u and v): sigma = u^T W v per direction. Each tile adds its share (its rows dotted with v over its
// columns, times u, a warp per row; likewise per W2 row), and every tile of the layer adds the shares in tile
// order. Returns the divisor; tile 0 writes the sigmas (a non-finite step counted, as the streamed finish does).
__device__ double evalSigmas(const FusedArgs& a, const FusedTile& T, const FusedLayer& L, const TileMemory& m, double* norms,
                             double* partial, double* totals) {
  const bool matrix = L.kind != 0;
  const int64_t cn = T.cols / L.K;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  if (matrix) {
    loadStoredState(a.state, T, L, m);
    __syncthreads();
    double share1 = 0, share2 = 0;
    for (int64_t i = warp; i < T.rows; i += kFusedWarps) {
      const double dot = rowDot(m, T, i, lane);
      if (lane == 0) share1 += dot * m.u1[i];
    }
    if (L.both)
      for (int64_t c = warp; c < cn; c += kFusedWarps) {
        const double dot = channelDot(m, T, L.K, c, lane);
        if (lane == 0) share2 += dot * m.u2[c];
      }
    share1 = blockSum(share1, partial);
    share2 = blockSum(share2, partial);
    if (threadIdx.x == 0) norms[0] = share1, norms[1] = share2;
  }
  gridSync();
  if (threadIdx.x == 0) {
    double sums[2] = {0, 0};
    for (int t = 0; t < L.tiles; ++t)
      for (int q = 0; q < 2; ++q) sums[q] += a.scratch[L.norms + 4 * t + q];
    totals[0] = sums[0], totals[1] = sums[1];
  }
  __syncthreads();
  double s1 = matrix ? totals[0] : sqrt(totals[0]);  // a vector layer's tiles hold their sums of squares
  double s2 = matrix && L.both ? totals[1] : s1;
  if (!finite64(s1) || !finite64(s2)) s1 = s2 = nan("");
  if (T.index == 0 && threadIdx.x == 0) writeSigmas(a.sigmas, a.divisors, T.layer, s1, s2, a.bidirectional);
  return layerDivisor(s1, s2, a.bidirectional);
}

// The whole forward of a batch that fits on chip: one block per tile, grid barriers between the phases of each
// power-iteration step (iterations 0: eval, one barrier). Deterministic: every sum runs in a fixed order.
__global__ void __launch_bounds__(kFusedThreads) fusedForwardKernel(FusedArgs a) {
  BSSN_DYNAMIC_SHARED(float, shared);
  BSSN_SHARED(double, partial, kFusedWarps);
  BSSN_SHARED(double, totals, 5);
  FusedTile T;
  FusedLayer L;
  tileOf(a.tiles, a.layers, T, L);
  const TileMemory m = tileMemory(shared, T, L);
  const bool matrix = L.kind != 0;
  const int64_t cb = T.j0 / L.K, cn = T.cols / L.K;  // the tile's W2 rows: [cb, cb + cn)
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  double* const s = a.scratch;
  double* const norms = s + L.norms + 4 * T.index;

  // W is read once: into shared memory, coalesced along each row's columns; its max |w| (fmax drops NaN, which
  // shows in the products instead) and, for a vector layer, its sum of squares.
  float mx = 0;
  double squares = 0;
  forTile(T, L, [&](int64_t e, int64_t at, int64_t, int64_t) {
    const float x = L.w[at];
    m.w[e] = x;
    mx = fmax(mx, fabsf(x));
    squares += double(x) * x;
  });
  squares = blockSum(squares, partial);
  mx = float(blockMaxAbs(mx, reinterpret_cast<float*>(partial)));
  if (threadIdx.x == 0) {
    s[L.maxes + T.index] = mx;
    if (!matrix) norms[0] = squares;
  }

  double divisor = a.iterations == 0 ? evalSigmas(a, T, L, m, norms, partial, totals) : 0.0;
  for (int it = 0; it < a.iterations; ++it) {
    // Phase 1: the tile's partial sums of x1 = W1^T u1 (over its rows) and x2 = W2^T u2 (over its W2 rows).
    if (matrix) {
      for (int64_t i = threadIdx.x; i < T.rows; i += blockDim.x) m.u1[i] = a.state[L.u1 + T.r0 + i];
      if (L.both)
        for (int64_t c = threadIdx.x; c < cn; c += blockDim.x) m.u2[c] = a.state[L.u2 + cb + c];
      __syncthreads();
      for (int64_t j = threadIdx.x; j < T.cols; j += blockDim.x) {
        double acc = 0;
        for (int64_t i = 0; i < T.rows; ++i) acc += double(m.w[i * T.cols + j]) * m.u1[i];
        s[L.xp1 + T.rowTile * L.cols + T.j0 + j] = acc;
      }
      if (L.both)
        for (int64_t e = threadIdx.x; e < T.rows * L.K; e += blockDim.x) {
          const int64_t i = e / L.K, k = e - i * L.K;
          double acc = 0;
          for (int64_t c = 0; c < cn; ++c) acc += double(m.w[i * T.cols + c * L.K + k]) * m.u2[c];
          s[L.xp2 + T.colTile * (L.R * L.K) + T.r0 * L.K + e] = acc;
        }
    }
    gridSync();
    // Phase 2: owners add the partials (x1, x2) and their squares.
    if (matrix) {
      const double q1 = ownerSum(s + L.x1, s + L.xp1, L.cols, L.rowTiles, T.index, L.tiles, partial);
      const double q2 = L.both ? ownerSum(s + L.x2, s + L.xp2, L.R * L.K, L.colTiles, T.index, L.tiles, partial) : 0.0;
      if (threadIdx.x == 0) norms[0] = q1, norms[1] = q2;
    }
    gridSync();
    // Phase 3: the tile's partial sums of t1 = W1 x1 (over its columns) and t2 = W2 x2, a warp per row.
    if (matrix) {
      for (int64_t j = threadIdx.x; j < T.cols; j += blockDim.x) m.x1[j] = s[L.x1 + T.j0 + j];
      if (L.both)
        for (int64_t e = threadIdx.x; e < T.rows * L.K; e += blockDim.x) m.x2[e] = s[L.x2 + T.r0 * L.K + e];
      __syncthreads();
      for (int64_t i = warp; i < T.rows; i += kFusedWarps) {
        const double dot = rowDot(m, T, i, lane);
        if (lane == 0) s[L.tp1 + T.colTile * L.R + T.r0 + i] = dot;
      }
      if (L.both)
        for (int64_t c = warp; c < cn; c += kFusedWarps) {
          const double dot = channelDot(m, T, L.K, c, lane);
          if (lane == 0) s[L.tp2 + T.rowTile * L.C + cb + c] = dot;
        }
    }
    gridSync();
    // Phase 4: owners add the partials (t1, t2) and their squares.
    if (matrix) {
      const double q1 = ownerSum(s + L.t1, s + L.tp1, L.R, L.colTiles, T.index, L.tiles, partial);
      const double q2 = L.both ? ownerSum(s + L.t2, s + L.tp2, L.C, L.rowTiles, T.index, L.tiles, partial) : 0.0;
      if (threadIdx.x == 0) norms[2] = q1, norms[3] = q2;
    }
    gridSync();
    // Phase 5: every tile of the layer adds the per-tile sums in tile order (the same values everywhere); the
    // owners write v and u; tile 0 the sigmas.
    if (threadIdx.x == 0) {
      double sums[4] = {0, 0, 0, 0};
      float maxAbs = 0;
      for (int t = 0; t < L.tiles; ++t) {
        for (int q = 0; q < 4; ++q) sums[q] += s[L.norms + 4 * t + q];
        maxAbs = fmax(maxAbs, float(s[L.maxes + t]));
      }
      for (int q = 0; q < 4; ++q) totals[q] = sums[q];
      totals[4] = maxAbs;
    }
    __syncthreads();
    double s1, s2;
    if (!matrix) {
      s1 = s2 = sqrt(totals[0]);
      if (!finite64(s1)) s1 = s2 = nan("");
    } else {
      const double floor = double(a.eps) * totals[4];
      s1 = finishOwned(a.state + L.u1, a.state + L.v1, s + L.x1, L.cols, s + L.t1, L.R, totals[0], totals[2], floor, T.index, L.tiles);
      s2 = L.both ? finishOwned(a.state + L.u2, a.state + L.v2, s + L.x2, L.R * L.K, s + L.t2, L.C, totals[1], totals[3], floor,
                                T.index, L.tiles)
                  : s1;
      if (!finite64(s1) || !finite64(s2)) s1 = s2 = nan("");
    }
    divisor = layerDivisor(s1, s2, a.bidirectional);
    if (T.index == 0 && threadIdx.x == 0) writeSigmas(a.sigmas, a.divisors, T.layer, s1, s2, a.bidirectional);
    __syncthreads();  // `totals` is rewritten by the next step
    if (it + 1 < a.iterations) gridSync();  // the next step reads the u the owners wrote
  }

  // W_hat = c W / divisor from shared memory (the divisor is the same in every tile of the layer), as scaleKernel
  // computes it: a float factor, or in double where the factor is not a normal float.
  if (!a.outputs) return;
  const double exact = divisor != 0.0 ? double(a.scale) / divisor : 0.0;
  const float factor = float(exact);
  const bool wide = factor != 0.0f && !(fabsf(factor) >= 1.17549435e-38f && fabsf(factor) <= 3.40282347e38f);
  float* out = a.outputs[T.layer];
  forTile(T, L, [&](int64_t e, int64_t at, int64_t, int64_t) { out[at] = wide ? float(double(m.w[e]) * exact) : m.w[e] * factor; });
}

// The backward of a batch that fits on chip: each tile reads G (kept in shared memory) and W once for its share of
// <G, W>; after the grid barrier every tile adds the shares in tile order and writes dW from G and the state
// (a vector layer's ds/dw = w / s reads its W again: vectors are small).
__global__ void __launch_bounds__(kFusedThreads) fusedBackwardKernel(FusedBackwardArgs a) {
  BSSN_DYNAMIC_SHARED(float, shared);
  BSSN_SHARED(double, partial, kFusedWarps);
  BSSN_SHARED(double, total, 1);
  FusedTile T;
  FusedLayer L;
  tileOf(a.tiles, a.layers, T, L);
  const TileMemory m = tileMemory(shared, T, L);  // m.w holds G; m.x1, m.x2 the tile's slices of v1, v2
  const float* g = a.grads[T.layer];
  double dot = 0;
  forTile(T, L, [&](int64_t e, int64_t at, int64_t, int64_t) {
    const float x = g[at];
    m.w[e] = x;
    dot += double(x) * L.w[at];
  });
  dot = blockSum(dot, partial);
  if (threadIdx.x == 0) a.scratch[L.norms + 4 * T.index] = dot;
  if (L.kind != 0) loadStoredState(a.state, T, L, m);  // read after the grid barrier below
  gridSync();
  if (threadIdx.x == 0) {
    double sum = 0;
    for (int t = 0; t < L.tiles; ++t) sum += a.scratch[L.norms + 4 * t];
    *total = sum;
  }
  __syncthreads();
  float* out = a.outputs[T.layer];
  const double s = a.divisors[T.layer];
  const double coefG = s != 0 ? double(a.scale) / s : 0.0, coefS = s != 0 ? double(a.scale) / (s * s) * *total : 0.0;
  forTile(T, L, [&](int64_t e, int64_t at, int64_t i, int64_t j) {
    if (s == 0) {  // the forward wrote zeros whatever W was
      out[at] = 0.0f;
      return;
    }
    double ds;
    if (L.kind == 0) {
      ds = L.w[at] / s;  // s = ||w||
    } else {
      const int64_t c = j / L.K, k = j - c * L.K;
      ds = double(m.u1[i]) * m.x1[j];
      if (L.both) ds = 0.5 * (ds + double(m.u2[c]) * m.x2[i * L.K + k]);
    }
    out[at] = float(coefG * m.w[e] - coefS * ds);
  });
}

}  // namespace

size_t fusedSharedBytes(int64_t rows, int64_t cols, int64_t K, bool both) {
  return sizeof(float) * size_t(weightFloats(rows, cols)) + sizeof(double) * size_t(cols + (both ? rows * K : 0)) +
         sizeof(float) * size_t(rows + (both ? cols / K : 0));
}

int fusedBlocksPerMultiprocessor(size_t sharedBytes) {
  if (cudaFuncSetAttribute(fusedForwardKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kFusedMaxShared)) != cudaSuccess ||
      cudaFuncSetAttribute(fusedBackwardKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kFusedMaxShared)) != cudaSuccess) {
    cudaGetLastError();  // not an error of anything launched: the fused path is just not taken
    return 0;
  }
  int blocks = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, fusedForwardKernel, kFusedThreads, sharedBytes) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return blocks;
}

cudaError_t launchFusedBackward(const FusedBackwardArgs& args, int tileCount, size_t sharedBytes, cudaStream_t stream) {
  return BSSN_LAUNCH_COOPERATIVE(fusedBackwardKernel, unsigned(tileCount), kFusedThreads, sharedBytes, stream, args);
}

cudaError_t launchFusedForward(const FusedArgs& args, int tileCount, size_t sharedBytes, cudaStream_t stream) {
  return BSSN_LAUNCH_COOPERATIVE(fusedForwardKernel, unsigned(tileCount), kFusedThreads, sharedBytes, stream, args);
}

}  // namespace bssn::cuda
