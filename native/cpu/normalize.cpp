#include "cpu/normalize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>
#if defined(__SSE__)
#include <immintrin.h>
#endif

namespace bssn::cpu {

namespace {

// Visits every contiguous run of K elements of a weight in memory order, with the (i, c, m) it belongs to.
// Sorting the three outer axes by stride makes the walk sequential whatever `dim` is.
template <typename Fn>
void forEachRun(const LayerView& v, Fn&& fn) {
  struct Axis { int64_t size, stride; int which; };
  Axis axes[3] = {{v.R, v.strideI, 0}, {v.C, v.strideC, 1}, {v.M, v.strideM, 2}};
  std::sort(axes, axes + 3, [](const Axis& a, const Axis& b) { return a.stride > b.stride; });
  int64_t idx[3] = {0, 0, 0};
  for (int64_t a = 0; a < axes[0].size; ++a) {
    idx[axes[0].which] = a;
    for (int64_t b = 0; b < axes[1].size; ++b) {
      idx[axes[1].which] = b;
      for (int64_t c = 0; c < axes[2].size; ++c) {
        idx[axes[2].which] = c;
        fn(idx[0], idx[1], idx[2], idx[0] * v.strideI + idx[1] * v.strideC + idx[2] * v.strideM);
      }
    }
  }
}

// A weight with K == M == 1 is a plain matrix P[a][b] (b contiguous): rows are i (dim 0) or c (dim >= 1).
bool isPlainMatrix(const LayerView& v) { return v.K == 1 && v.M == 1; }

// Folds max |p[k]| over k < n into m. Called on runs just read (in cache). On x86-64 with SSE's maxps, which
// a plain loop does not get (a float max's NaN rules keep it scalar); fmax drops NaN either way (a non-finite weight
// shows in the products' norms instead).
inline void foldMaxAbs(const float* p, int64_t n, float& m) {
  int64_t k = 0;
#if defined(__SSE__)
  if (n >= 8) {
    const __m128 mask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
    __m128 a = _mm_set1_ps(m), b = a;
    for (; k + 8 <= n; k += 8) {
      a = _mm_max_ps(_mm_and_ps(_mm_loadu_ps(p + k), mask), a);
      b = _mm_max_ps(_mm_and_ps(_mm_loadu_ps(p + k + 4), mask), b);
    }
    alignas(16) float lanes[4];
    _mm_store_ps(lanes, _mm_max_ps(a, b));
    m = std::fmax(std::fmax(lanes[0], lanes[1]), std::fmax(lanes[2], lanes[3]));
  }
#endif
  for (; k < n; ++k) m = std::fmax(m, std::fabs(p[k]));
}

// x1 = W1^T u1 and, when x2 is given, x2 = W2^T u2: one walk over W serves both directions. With maxAbs, also
// folds max |w| into it, from the rows while they are in cache.
void multiplyTransposed(const LayerView& v, const float* w, const float* u1, const float* u2, std::vector<double>& x1, double* x2,
                        float* maxAbs) {
  std::fill(x1.begin(), x1.end(), 0.0);
  if (x2) std::fill(x2, x2 + v.cols2(), 0.0);
  if (isPlainMatrix(v)) {
    const bool rowsAreI = v.strideI > v.strideC;
    const int64_t rows = rowsAreI ? v.R : v.C, cols = rowsAreI ? v.C : v.R;
    // x over the columns is an axpy per row; x over the rows is a dot per row.
    double* axpyOut = rowsAreI ? x1.data() : x2;
    double* dotOut = rowsAreI ? x2 : x1.data();
    const float* axpyScale = rowsAreI ? u1 : u2;
    const float* dotWith = rowsAreI ? u2 : u1;
    for (int64_t r = 0; r < rows; ++r) {
      const float* p = w + r * cols;
      if (axpyOut) {
        const double a = axpyScale[r];
        for (int64_t c = 0; c < cols; ++c) axpyOut[c] += double(p[c]) * a;
      }
      if (dotOut) {
        double s = 0;
        for (int64_t c = 0; c < cols; ++c) s += double(p[c]) * dotWith[c];
        dotOut[r] = s;
      }
      if (maxAbs) foldMaxAbs(p, cols, *maxAbs);
    }
    return;
  }
  const int64_t M = v.M, K = v.K;
  int64_t folded = 0;  // the walk is in memory order over the dense weight: fold max |w| every few KiB read
  forEachRun(v, [&](int64_t i, int64_t c, int64_t m, int64_t off) {
    const float* p = w + off;
    if (maxAbs && (off + K - folded >= 2048 || off + K == v.numel)) {
      foldMaxAbs(w + folded, off + K - folded, *maxAbs);
      folded = off + K;
    }
    const double a = u1[i];
    double* r1 = x1.data() + (c * M + m) * K;
    for (int64_t k = 0; k < K; ++k) r1[k] += double(p[k]) * a;
    if (x2) {
      const double b = u2[c];
      double* r2 = x2 + (i * M + m) * K;
      for (int64_t k = 0; k < K; ++k) r2[k] += double(p[k]) * b;
    }
  });
}

// t1 = W1 v1 and, when t2 is given, t2 = W2 v2.
void multiply(const LayerView& v, const float* w, const float* v1, const float* v2, std::vector<double>& t1, double* t2) {
  std::fill(t1.begin(), t1.end(), 0.0);
  if (t2) std::fill(t2, t2 + v.C, 0.0);
  if (isPlainMatrix(v)) {
    const bool rowsAreI = v.strideI > v.strideC;
    const int64_t rows = rowsAreI ? v.R : v.C, cols = rowsAreI ? v.C : v.R;
    double* dotOut = rowsAreI ? t1.data() : t2;
    double* axpyOut = rowsAreI ? t2 : t1.data();
    const float* dotWith = rowsAreI ? v1 : v2;
    const float* axpyScale = rowsAreI ? v2 : v1;
    for (int64_t r = 0; r < rows; ++r) {
      const float* p = w + r * cols;
      if (dotOut) {
        double s = 0;
        for (int64_t c = 0; c < cols; ++c) s += double(p[c]) * dotWith[c];
        dotOut[r] = s;
      }
      if (axpyOut) {
        const double a = axpyScale[r];
        for (int64_t c = 0; c < cols; ++c) axpyOut[c] += double(p[c]) * a;
      }
    }
    return;
  }
  const int64_t M = v.M, K = v.K;
  forEachRun(v, [&](int64_t i, int64_t c, int64_t m, int64_t off) {
    const float* p = w + off;
    const float* a = v1 + (c * M + m) * K;
    double s1 = 0;
    for (int64_t k = 0; k < K; ++k) s1 += double(p[k]) * a[k];
    t1[i] += s1;
    if (t2) {
      const float* b = v2 + (i * M + m) * K;
      double s2 = 0;
      for (int64_t k = 0; k < K; ++k) s2 += double(p[k]) * b[k];
      t2[c] += s2;
    }
  });
}

double norm(const std::vector<double>& x) {
  double ss = 0;
  for (double e : x) ss += e * e;
  return std::sqrt(ss);
}

void scaleInto(const std::vector<double>& x, double divisor, float* out) {
  for (size_t k = 0; k < x.size(); ++k) out[k] = float(x[k] / divisor);
}

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// sigma as reported when a step's product is not usable: NaN when it is non-finite (a non-finite weight), 0 when
// it is zero (an all-zero weight).
double unusable(double norm) { return std::isfinite(norm) ? 0.0 : kNaN; }
bool usable(double norm) { return std::isfinite(norm) && norm > 0; }

struct LayerSigmas { double sigma1, sigma2; uint32_t nonFiniteSteps; };

// Power iteration on W1 (and on W2 when the mode needs it and the layer has one), in float64 accumulators.
// iterations == 0 (eval) only evaluates sigma = u^T M v from the stored state. A step changes a direction's u and
// v only when its products are finite and non-zero: a non-finite or all-zero weight leaves the state as it was.
LayerSigmas layerSigmas(const LayerView& v, const float* w, float* state, int iterations, float eps, bool second) {
  if (v.kind == LayerKind::Vector) {
    double ss = 0;
    for (int64_t k = 0; k < v.numel; ++k) ss += double(w[k]) * w[k];
    const double n = std::sqrt(ss);
    if (!std::isfinite(n)) return {kNaN, kNaN, uint32_t(std::max(iterations, 1))};  // per step, as the matrices count
    return {n, n, 0};
  }
  const bool both = second && v.kind == LayerKind::Bidirectional;
  float* u1 = state + v.u1;
  float* v1 = state + v.v1;
  float* u2 = both ? state + v.u2 : nullptr;
  float* v2 = both ? state + v.v2 : nullptr;
  std::vector<double> x1, x2, t1(size_t(v.R)), t2(both ? size_t(v.C) : 0);

  auto dot = [](const float* a, const std::vector<double>& b) {
    double s = 0;
    for (size_t k = 0; k < b.size(); ++k) s += a[k] * b[k];
    return s;
  };

  if (iterations == 0) {
    multiply(v, w, v1, v2, t1, both ? t2.data() : nullptr);
    const double s1 = dot(u1, t1), s2 = both ? dot(u2, t2) : 0.0;
    if (!std::isfinite(s1) || !std::isfinite(s2)) return {kNaN, kNaN, 1};
    return {s1, s2, 0};
  }
  // eps is relative to the weight's scale: the iteration runs as on W / max|W|, so any finite scale of W gives the
  // same normalized weight (the float64 accumulators hold every float weight's products). max |w| comes from the
  // first step's walk over W.
  float maxAbs = 0;
  double floor = 0;  // eps * max |w|
  x1.resize(size_t(v.cols1()));
  if (both) x2.resize(size_t(v.cols2()));
  // The step's v, kept aside until the step is known to be usable.
  std::vector<float> next1(x1.size()), next2(x2.size());
  LayerSigmas out{0, 0, 0};
  // One direction's end of a step: x = M^T u (next holds x / ||x||), t = M next. Returns sigma.
  auto finish = [&](const std::vector<double>& t, const std::vector<float>& next, float* u, float* vv) {
    const double tNorm = norm(t);
    if (!usable(tNorm)) return unusable(tNorm);
    const double tDenom = std::max(tNorm, floor);
    std::copy(next.begin(), next.end(), vv);
    scaleInto(t, tDenom, u);
    return tNorm * tNorm / tDenom;  // u^T M v with u = t / max(||t||, eps)
  };
  for (int it = 0; it < iterations; ++it) {
    multiplyTransposed(v, w, u1, u2, x1, both ? x2.data() : nullptr, it == 0 ? &maxAbs : nullptr);
    if (it == 0) floor = double(eps) * maxAbs;
    const double xNorm1 = norm(x1), xNorm2 = both ? norm(x2) : 1.0;
    const bool ok1 = usable(xNorm1), ok2 = usable(xNorm2);
    const double xDenom1 = std::max(xNorm1, floor), xDenom2 = std::max(xNorm2, floor);
    if (ok1) scaleInto(x1, xDenom1, next1.data());
    if (both && ok2) scaleInto(x2, xDenom2, next2.data());
    multiply(v, w, ok1 ? next1.data() : v1, ok2 ? next2.data() : v2, t1, both ? t2.data() : nullptr);
    out.sigma1 = ok1 ? finish(t1, next1, u1, v1) : unusable(xNorm1);
    if (both) out.sigma2 = ok2 ? finish(t2, next2, u2, v2) : unusable(xNorm2);
    if (std::isnan(out.sigma1) || std::isnan(out.sigma2)) ++out.nonFiniteSteps;
  }
  return out;
}

// out = w * factor with factor = c / divisor computed in double: in float where the factor is a normal float (the
// common case), else in double, so a divisor past float's range still gives the right output.
void scaleWeight(const float* w, float* out, int64_t n, double factor) {
  const float f = float(factor);
  if (std::isnormal(f)) {
    for (int64_t k = 0; k < n; ++k) out[k] = w[k] * f;
  } else {
    for (int64_t k = 0; k < n; ++k) out[k] = float(double(w[k]) * factor);
  }
}

}  // namespace

void normalizeBatch(const NormalizeJob& job) {
  const std::vector<LayerView>& layers = *job.layers;
  float* state = job.state->f32();
  float* sigmas = job.sigmas->f32();
  double* divisors = static_cast<double*>(job.divisors->data());
  const NormalizeParams& p = job.params;
  const bool bidirectional = modeIsBidirectional(p.mode);
  const double scale = modeIsScaled(p.mode) ? double(p.scale) : 1.0;
  for (size_t j = 0; j < layers.size(); ++j) {
    const LayerView& v = layers[j];
    const float* w = job.weights[j]->f32();
    LayerSigmas s = layerSigmas(v, w, state, job.iterations, p.eps, bidirectional);
    if (v.kind != LayerKind::Bidirectional) s.sigma2 = s.sigma1;  // W2 = W1^T (or a vector): same sigma
    if (!bidirectional) s.sigma2 = 0;                            // sn/ssn never look at W2
    const double divisor = bidirectional ? 0.5 * (s.sigma1 + s.sigma2) : s.sigma1;
    sigmas[j * kSigmaStride + 0] = float(s.sigma1);
    sigmas[j * kSigmaStride + 1] = float(s.sigma2);
    sigmas[j * kSigmaStride + 2] = float(divisor);
    uint32_t count;  // a uint32 in a float slot
    std::memcpy(&count, &sigmas[j * kSigmaStride + kNonFiniteSlot], sizeof count);
    count += s.nonFiniteSteps;
    std::memcpy(&sigmas[j * kSigmaStride + kNonFiniteSlot], &count, sizeof count);
    divisors[j] = divisor;
    if (job.outputs.empty()) continue;
    // An all-zero weight has divisor 0: its output is zeros, not NaN. A non-finite one has divisor NaN: all NaN.
    scaleWeight(w, job.outputs[j]->f32(), v.numel, divisor != 0 ? scale / divisor : 0.0);
  }
}

void normalizeBackwardBatch(const NormalizeJob& job) {
  const std::vector<LayerView>& layers = *job.layers;
  const float* state = job.state->f32();
  const double* divisors = static_cast<const double*>(job.divisors->data());
  const NormalizeParams& p = job.params;
  const bool bidirectional = modeIsBidirectional(p.mode);
  const double c = modeIsScaled(p.mode) ? double(p.scale) : 1.0;
  for (size_t j = 0; j < layers.size(); ++j) {
    const LayerView& v = layers[j];
    const float* w = job.weights[j]->f32();
    const float* g = job.grads[j]->f32();
    float* dw = job.outputs[j]->f32();
    const double s = divisors[j];
    if (s == 0) {  // the forward wrote zeros whatever W was
      std::fill(dw, dw + v.numel, 0.0f);
      continue;
    }
    double gw = 0;
    for (int64_t k = 0; k < v.numel; ++k) gw += double(g[k]) * w[k];
    const double a = c / s;            // coefficient of G
    const double b = c / (s * s) * gw;  // coefficient of ds/dW
    if (v.kind == LayerKind::Vector) {
      // s = ||w||: ds/dw = w / ||w||
      for (int64_t k = 0; k < v.numel; ++k) dw[k] = float(a * g[k] - b * w[k] / s);
      continue;
    }
    const bool both = bidirectional && v.kind == LayerKind::Bidirectional;
    const float* u1 = state + v.u1;
    const float* v1 = state + v.v1;
    const float* u2 = both ? state + v.u2 : nullptr;
    const float* v2 = both ? state + v.v2 : nullptr;
    const int64_t M = v.M, K = v.K;
    // ds/dW = u1 v1^T in W1's layout (averaged with u2 v2^T mapped back from W2's layout in bsn/bssn).
    forEachRun(v, [&](int64_t i, int64_t ci, int64_t m, int64_t off) {
      const float* r1 = v1 + (ci * M + m) * K;
      const float* r2 = both ? v2 + (i * M + m) * K : nullptr;
      for (int64_t k = 0; k < K; ++k) {
        const double ds = both ? 0.5 * (double(u1[i]) * r1[k] + double(u2[ci]) * r2[k]) : double(u1[i]) * r1[k];
        dw[off + k] = float(a * g[off + k] - b * ds);
      }
    });
  }
}

}  // namespace bssn::cpu
