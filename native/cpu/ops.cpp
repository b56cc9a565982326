#include "cpu/ops.h"

#include "core/device.h"
#include "cpu/blas.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <system_error>
#include <thread>
#include <vector>

namespace bssn::cpu {

void unary(UnaryOp op, float p, const float* x, float* y, size_t n) {
  switch (op) {
    case UnaryOp::Relu:
      for (size_t i = 0; i < n; ++i) y[i] = x[i] > 0 ? x[i] : 0.0f;
      break;
    case UnaryOp::LeakyRelu:
      for (size_t i = 0; i < n; ++i) y[i] = x[i] > 0 ? x[i] : p * x[i];
      break;
    case UnaryOp::Tanh:
      for (size_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
      break;
    case UnaryOp::Sigmoid:
      for (size_t i = 0; i < n; ++i) y[i] = float(1.0 / (1.0 + std::exp(-double(x[i]))));
      break;
    case UnaryOp::Scale:
      for (size_t i = 0; i < n; ++i) y[i] = p * x[i];
      break;
    case UnaryOp::AddScalar:
      for (size_t i = 0; i < n; ++i) y[i] = x[i] + p;
      break;
  }
}

void unaryBackward(UnaryOp op, float p, const float* x, const float* y, const float* dy, float* dx, size_t n) {
  switch (op) {
    case UnaryOp::Relu:
      for (size_t i = 0; i < n; ++i) dx[i] = x[i] > 0 ? dy[i] : 0.0f;
      break;
    case UnaryOp::LeakyRelu:
      for (size_t i = 0; i < n; ++i) dx[i] = x[i] > 0 ? dy[i] : p * dy[i];
      break;
    case UnaryOp::Tanh:
      for (size_t i = 0; i < n; ++i) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
      break;
    case UnaryOp::Sigmoid:
      for (size_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
      break;
    case UnaryOp::Scale:
      for (size_t i = 0; i < n; ++i) dx[i] = p * dy[i];
      break;
    case UnaryOp::AddScalar:
      for (size_t i = 0; i < n; ++i) dx[i] = dy[i];
      break;
  }
}

void binary(BinaryOp op, const float* a, const float* b, float* out, size_t n) {
  switch (op) {
    case BinaryOp::Add:
      for (size_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
      break;
    case BinaryOp::Sub:
      for (size_t i = 0; i < n; ++i) out[i] = a[i] - b[i];
      break;
    case BinaryOp::Mul:
      for (size_t i = 0; i < n; ++i) out[i] = a[i] * b[i];
      break;
  }
}

void addBias(const float* x, const float* bias, float* out, size_t outer, size_t channels, size_t inner) {
  for (size_t o = 0; o < outer; ++o)
    for (size_t c = 0; c < channels; ++c) {
      const size_t base = (o * channels + c) * inner;
      for (size_t i = 0; i < inner; ++i) out[base + i] = x[base + i] + bias[c];
    }
}

void sumToBias(const float* dy, float* db, size_t outer, size_t channels, size_t inner) {
  std::vector<double> acc(channels, 0.0);
  for (size_t o = 0; o < outer; ++o)
    for (size_t c = 0; c < channels; ++c) {
      const float* p = dy + (o * channels + c) * inner;
      double s = 0;
      for (size_t i = 0; i < inner; ++i) s += p[i];
      acc[c] += s;
    }
  for (size_t c = 0; c < channels; ++c) db[c] = float(acc[c]);
}

// Row by row through unary and unaryBackward themselves, so the fused ops are the unfused pair bit for bit.
void biasActivation(UnaryOp op, float p, const float* x, const float* bias, float* y, size_t outer, size_t channels, size_t inner) {
  for (size_t o = 0; o < outer; ++o)
    for (size_t c = 0; c < channels; ++c) {
      const size_t base = (o * channels + c) * inner;
      for (size_t i = 0; i < inner; ++i) y[base + i] = x[base + i] + bias[c];
      unary(op, p, y + base, y + base, inner);
    }
}

// Relu and leaky relu (slope >= 0) read the pre-activation's sign from y: y > 0 exactly where x + bias > 0.
void biasActivationBackward(UnaryOp op, float p, const float* y, const float* dy, float* dx, float* db, bool accumulate, size_t outer,
                            size_t channels, size_t inner) {
  std::vector<double> acc(db ? channels : 0, 0.0);
  std::vector<float> scratch(dx ? 0 : inner);
  for (size_t o = 0; o < outer; ++o)
    for (size_t c = 0; c < channels; ++c) {
      const size_t base = (o * channels + c) * inner;
      float* g = dx ? dx + base : scratch.data();
      unaryBackward(op, p, y + base, y + base, dy + base, g, inner);
      if (!db) continue;
      double s = 0;  // sumToBias's order
      for (size_t i = 0; i < inner; ++i) s += g[i];
      acc[c] += s;
    }
  if (db)
    for (size_t c = 0; c < channels; ++c) db[c] = accumulate ? db[c] + float(acc[c]) : float(acc[c]);
}

void sum(const float* x, size_t n, float* out, float scale) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += x[i];
  out[0] = float(s * scale);
}

void hinge(const float* x, size_t n, size_t split, float scaleReal, float scaleFake, float* out) {
  double real = 0, fake = 0;
  for (size_t i = 0; i < n; ++i) {
    const float h = i < split ? 1.0f - x[i] : 1.0f + x[i];
    (i < split ? real : fake) += h > 0 ? h : 0.0f;
  }
  out[0] = float(real * scaleReal) + float(fake * scaleFake);
}

void hingeBackward(const float* x, const float* g, size_t n, size_t split, float scaleReal, float scaleFake, float* dx) {
  const float dReal = -g[0] * scaleReal, dFake = g[0] * scaleFake;
  for (size_t i = 0; i < n; ++i) dx[i] = i < split ? (1.0f - x[i] > 0 ? dReal : 0.0f) : (1.0f + x[i] > 0 ? dFake : 0.0f);
}

void broadcast(const float* scalar, float* out, size_t n, float scale) {
  const float v = scalar[0] * scale;
  for (size_t i = 0; i < n; ++i) out[i] = v;
}

namespace {

// Runs body(begin, end, part) over [0, n) split into `parts` contiguous ranges, one per thread (this one
// included). Ranges are independent, so the result does not depend on the split. If no thread can be started,
// this thread runs the remaining ranges.
template <typename Body>
void splitAcross(int64_t n, int64_t parts, Body&& body) {
  std::vector<std::thread> workers;
  // The threads read this frame's locals: they are joined before it unwinds, whatever throws here.
  struct JoinAll {
    std::vector<std::thread>& threads;
    ~JoinAll() {
      for (std::thread& w : threads)
        if (w.joinable()) w.join();
    }
  } joinAll{workers};
  int64_t started = 1;
  try {
    workers.reserve(size_t(parts));
    for (; started < parts; ++started) workers.emplace_back([&, t = started] { body(n * t / parts, n * (t + 1) / parts, t); });
  } catch (...) {
    // no thread (or memory for one) to be had: this thread does the parts not started
  }
  body(0, n / parts, 0);
  for (int64_t t = started; t < parts; ++t) body(n * t / parts, n * (t + 1) / parts, t);
}

// How many parts work of `ops` multiply-adds over `n` independent items is worth splitting into.
int64_t partsFor(int64_t n, int64_t ops) {
  const int64_t cores = std::max(1u, std::min(4u, std::thread::hardware_concurrency()));
  return ops >= (int64_t(1) << 24) ? std::max<int64_t>(1, std::min(cores, n)) : 1;
}

// The BLAS takes int dimensions and leading dimensions.
bool useBlas(std::initializer_list<int64_t> dims) {
  if (!blasEnabled()) return false;
  for (int64_t d : dims)
    if (d > INT32_MAX) return false;
  return true;
}

// A large product's rows split across cores, each part one single-threaded BLAS call. Every element of C is the
// same dot product whatever the split, so results do not depend on the core count.
void parallelBlasGemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
                      int64_t ldb, float beta, float* c, int64_t ldc) {
  splitAcross(m, partsFor(m, m * n * k), [&](int64_t begin, int64_t end, int64_t) {
    if (end > begin)
      blasGemm(transA, transB, end - begin, n, k, alpha, transA ? a + begin : a + begin * lda, lda, b, ldb, beta, c + begin * ldc, ldc);
  });
}

}  // namespace

// Row by row with a float64 accumulator row: op(A)[i, p] times row p of op(B), contiguous when B is not transposed.
// Very large products split their rows across the machine's cores; every row is computed the same way whatever
// the split, so results do not depend on the core count.
void gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* a, const float* b, float beta, float* c) {
  if (useBlas({m, n, k})) {
    if (m > 0 && n > 0) parallelBlasGemm(transA, transB, m, n, k, alpha, a, transA ? m : k, b, transB ? k : n, beta, c, n);
    return;
  }
  referenceGemm(transA, transB, m, n, k, alpha, a, b, beta, c);
}

void referenceGemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* a, const float* b, float beta,
                   float* c) {
  auto rows = [&](int64_t begin, int64_t end, std::vector<double>& acc) {
    for (int64_t i = begin; i < end; ++i) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t p = 0; p < k; ++p) {
        const double av = transA ? a[p * m + i] : a[i * k + p];
        if (av == 0) continue;
        if (!transB) {
          const float* row = b + p * n;
          for (int64_t j = 0; j < n; ++j) acc[j] += av * row[j];
        } else {
          for (int64_t j = 0; j < n; ++j) acc[j] += av * b[j * k + p];
        }
      }
      float* out = c + i * n;
      if (beta == 0)
        for (int64_t j = 0; j < n; ++j) out[j] = float(alpha * acc[j]);
      else
        for (int64_t j = 0; j < n; ++j) out[j] = float(alpha * acc[j] + double(beta) * out[j]);
    }
  };
  const int64_t parts = m * n * k >= (int64_t(1) << 26) ? partsFor(m, m * n * k) : 1;
  // Buffers first, on this thread: nothing inside a worker can throw.
  std::vector<std::vector<double>> accs(static_cast<size_t>(parts), std::vector<double>(static_cast<size_t>(n)));
  splitAcross(m, parts, [&](int64_t begin, int64_t end, int64_t part) { rows(begin, end, accs[size_t(part)]); });
}

void adam(const AdamArgs& a) {
  int64_t& step = *static_cast<int64_t*>(a.step->data());
  ++step;
  const double c1 = 1.0 - std::pow(double(a.beta1), double(step));
  const double c2 = 1.0 - std::pow(double(a.beta2), double(step));
  for (const OptimTensor& t : a.tensors) {
    float* p = t.param->f32();
    const float* g = t.grad->f32();
    float* m = t.m->f32();
    float* v = t.v->f32();
    for (size_t i = 0; i < t.n; ++i) {
      const float gi = g[i] + a.weightDecay * p[i];
      m[i] = a.beta1 * m[i] + (1 - a.beta1) * gi;
      v[i] = a.beta2 * v[i] + (1 - a.beta2) * gi * gi;
      p[i] = float(p[i] - a.lr * (m[i] / c1) / (std::sqrt(v[i] / c2) + a.eps));
    }
  }
}

void sgd(const SgdArgs& a) {
  for (const OptimTensor& t : a.tensors) {
    float* p = t.param->f32();
    const float* g = t.grad->f32();
    float* buf = t.m ? t.m->f32() : nullptr;
    for (size_t i = 0; i < t.n; ++i) {
      float d = g[i] + a.weightDecay * p[i];
      if (buf) {
        buf[i] = a.momentum * buf[i] + d;
        d = buf[i];
      }
      p[i] -= a.lr * d;
    }
  }
}

// Convolution by im2col + GEMM. cols is [cIn*kh*kw, outH*outW] with rows `ld` floats apart, so several images'
// columns can sit side by side in one matrix.
namespace {

void im2col(const Conv2dArgs& a, const float* img, float* cols, int64_t ld) {
  for (int64_t c = 0; c < a.cIn; ++c)
    for (int64_t ky = 0; ky < a.kh; ++ky)
      for (int64_t kx = 0; kx < a.kw; ++kx) {
        float* row = cols + ((c * a.kh + ky) * a.kw + kx) * ld;
        for (int64_t oy = 0; oy < a.outH; ++oy) {
          const int64_t iy = oy * a.strideH - a.padH + ky;
          float* out = row + oy * a.outW;
          if (iy < 0 || iy >= a.h) {
            std::fill(out, out + a.outW, 0.0f);
            continue;
          }
          const float* in = img + (c * a.h + iy) * a.w;
          for (int64_t ox = 0; ox < a.outW; ++ox) {
            const int64_t ix = ox * a.strideW - a.padW + kx;
            out[ox] = ix >= 0 && ix < a.w ? in[ix] : 0.0f;
          }
        }
      }
}

// img (zeroed first) += the columns folded back.
void col2im(const Conv2dArgs& a, const float* cols, int64_t ld, float* img) {
  std::fill(img, img + a.cIn * a.h * a.w, 0.0f);
  for (int64_t c = 0; c < a.cIn; ++c)
    for (int64_t ky = 0; ky < a.kh; ++ky)
      for (int64_t kx = 0; kx < a.kw; ++kx) {
        const float* row = cols + ((c * a.kh + ky) * a.kw + kx) * ld;
        for (int64_t oy = 0; oy < a.outH; ++oy) {
          const int64_t iy = oy * a.strideH - a.padH + ky;
          if (iy < 0 || iy >= a.h) continue;
          for (int64_t ox = 0; ox < a.outW; ++ox) {
            const int64_t ix = ox * a.strideW - a.padW + kx;
            if (ix >= 0 && ix < a.w) img[(c * a.h + iy) * a.w + ix] += row[oy * a.outW + ox];
          }
        }
      }
}

// On the BLAS, images go in chunks: their columns side by side make one wide product (the BLAS's own threads
// share it), with the column buffer bounded.
constexpr int64_t kChunkFloats = int64_t(4) << 20;

struct Chunks {
  int64_t k, plane, per;  // per: images per chunk
  explicit Chunks(const Conv2dArgs& a) : k(a.cIn * a.kh * a.kw), plane(a.outH * a.outW) {
    per = std::max<int64_t>(1, std::min<int64_t>(a.n, kChunkFloats / std::max<int64_t>(1, k * plane)));
  }
};

// dy of images [i0, i0 + b) as one [cOut, b*plane] matrix, and back.
void gatherOutputs(const Conv2dArgs& a, const float* y, int64_t i0, int64_t b, int64_t plane, float* out) {
  for (int64_t j = 0; j < b; ++j)
    for (int64_t co = 0; co < a.cOut; ++co)
      std::memcpy(out + co * b * plane + j * plane, y + ((i0 + j) * a.cOut + co) * plane, size_t(plane) * sizeof(float));
}
void scatterOutputs(const Conv2dArgs& a, const float* in, int64_t i0, int64_t b, int64_t plane, float* y) {
  for (int64_t j = 0; j < b; ++j)
    for (int64_t co = 0; co < a.cOut; ++co)
      std::memcpy(y + ((i0 + j) * a.cOut + co) * plane, in + co * b * plane + j * plane, size_t(plane) * sizeof(float));
}

// Runs body(j) for the b images of a chunk, split across cores when the chunk is large (copies are memory-bound).
template <typename Body>
void forImages(int64_t b, int64_t floatsPerImage, Body&& body) {
  const int64_t cores = std::max(1u, std::min(4u, std::thread::hardware_concurrency()));
  const int64_t parts = b * floatsPerImage >= (int64_t(1) << 18) ? std::min(cores, b) : 1;
  splitAcross(b, parts, [&](int64_t begin, int64_t end, int64_t) {
    for (int64_t j = begin; j < end; ++j) body(j);
  });
}

bool convOnBlas(const Conv2dArgs& a) {
  const Chunks c(a);
  return useBlas({a.cOut, c.k, c.per * c.plane});
}

// Runs body(i0, b, ld) over the batch in chunks of b images starting at i0 (ld = b * plane columns), with the
// chunk's column matrix `cols` [k, ld] and output-sized matrix `outs` [cOut, ld] allocated once.
template <typename Body>
void forChunks(const Conv2dArgs& a, Body&& body) {
  const Chunks c(a);
  std::vector<float> cols(size_t(c.k * c.per * c.plane)), outs(size_t(a.cOut * c.per * c.plane));
  for (int64_t i0 = 0; i0 < a.n; i0 += c.per) {
    const int64_t b = std::min(c.per, a.n - i0);
    body(c, i0, b, b * c.plane, cols.data(), outs.data());
  }
}

float* image(const Conv2dArgs& a, int64_t i) { return a.x->f32() + i * a.cIn * a.h * a.w; }

void blasConvForward(const Conv2dArgs& a) {
  forChunks(a, [&](const Chunks& c, int64_t i0, int64_t b, int64_t ld, float* cols, float* out) {
    forImages(b, c.k * c.plane, [&](int64_t j) { im2col(a, image(a, i0 + j), cols + j * c.plane, ld); });
    parallelBlasGemm(false, false, a.cOut, ld, c.k, 1.0f, a.weight->f32(), c.k, cols, ld, 0.0f, out, ld);
    scatterOutputs(a, out, i0, b, c.plane, a.y->f32());
  });
}

void blasConvBackwardData(const Conv2dArgs& a) {
  forChunks(a, [&](const Chunks& c, int64_t i0, int64_t b, int64_t ld, float* cols, float* dy) {
    gatherOutputs(a, a.y->f32(), i0, b, c.plane, dy);
    parallelBlasGemm(true, false, c.k, ld, a.cOut, 1.0f, a.weight->f32(), c.k, dy, ld, 0.0f, cols, ld);
    forImages(b, c.k * c.plane, [&](int64_t j) { col2im(a, cols + j * c.plane, ld, image(a, i0 + j)); });
  });
}

void blasConvBackwardFilter(const Conv2dArgs& a) {
  forChunks(a, [&](const Chunks& c, int64_t i0, int64_t b, int64_t ld, float* cols, float* dy) {
    forImages(b, c.k * c.plane, [&](int64_t j) { im2col(a, image(a, i0 + j), cols + j * c.plane, ld); });
    gatherOutputs(a, a.y->f32(), i0, b, c.plane, dy);
    parallelBlasGemm(false, true, a.cOut, c.k, ld, 1.0f, dy, ld, cols, ld, i0 == 0 ? 0.0f : 1.0f, a.weight->f32(), c.k);
  });
}

}  // namespace

// Images are independent: a batch splits across cores, each part with its own column buffer.
void conv2dForward(const Conv2dArgs& a) {
  if (convOnBlas(a)) return blasConvForward(a);
  const int64_t k = a.cIn * a.kh * a.kw, plane = a.outH * a.outW;
  const int64_t parts = partsFor(a.n, a.n * a.cOut * plane * k);
  std::vector<std::vector<float>> cols(static_cast<size_t>(parts), std::vector<float>(static_cast<size_t>(k * plane)));
  splitAcross(a.n, parts, [&](int64_t begin, int64_t end, int64_t part) {
    for (int64_t i = begin; i < end; ++i) {
      im2col(a, a.x->f32() + i * a.cIn * a.h * a.w, cols[size_t(part)].data(), plane);
      referenceGemm(false, false, a.cOut, plane, k, 1.0f, a.weight->f32(), cols[size_t(part)].data(), 0.0f, a.y->f32() + i * a.cOut * plane);
    }
  });
}

void conv2dBackwardData(const Conv2dArgs& a) {
  if (convOnBlas(a)) return blasConvBackwardData(a);
  const int64_t k = a.cIn * a.kh * a.kw, plane = a.outH * a.outW;
  const int64_t parts = partsFor(a.n, a.n * a.cOut * plane * k);
  std::vector<std::vector<float>> cols(static_cast<size_t>(parts), std::vector<float>(static_cast<size_t>(k * plane)));
  splitAcross(a.n, parts, [&](int64_t begin, int64_t end, int64_t part) {
    for (int64_t i = begin; i < end; ++i) {
      referenceGemm(true, false, k, plane, a.cOut, 1.0f, a.weight->f32(), a.y->f32() + i * a.cOut * plane, 0.0f, cols[size_t(part)].data());
      col2im(a, cols[size_t(part)].data(), plane, a.x->f32() + i * a.cIn * a.h * a.w);
    }
  });
}

void conv2dBackwardFilter(const Conv2dArgs& a) {
  if (convOnBlas(a)) return blasConvBackwardFilter(a);
  const int64_t k = a.cIn * a.kh * a.kw, plane = a.outH * a.outW;
  std::vector<float> cols(static_cast<size_t>(k * plane));
  for (int64_t i = 0; i < a.n; ++i) {
    im2col(a, a.x->f32() + i * a.cIn * a.h * a.w, cols.data(), plane);
    referenceGemm(false, true, a.cOut, k, plane, 1.0f, a.y->f32() + i * a.cOut * plane, cols.data(), i == 0 ? 0.0f : 1.0f, a.weight->f32());
  }
}

void batchNorm(const BatchNormArgs& a) {
  const float* x = a.x->f32();
  float* y = a.y->f32();
  const int64_t count = a.n * a.inner;
  for (int64_t c = 0; c < a.channels; ++c) {
    double mean, invStd;
    if (a.training) {
      double s = 0, ss = 0;
      for (int64_t i = 0; i < a.n; ++i)
        for (int64_t k = 0; k < a.inner; ++k) s += x[(i * a.channels + c) * a.inner + k];
      mean = s / double(count);
      for (int64_t i = 0; i < a.n; ++i)
        for (int64_t k = 0; k < a.inner; ++k) {
          const double d = x[(i * a.channels + c) * a.inner + k] - mean;
          ss += d * d;
        }
      const double var = ss / double(count);
      invStd = 1.0 / std::sqrt(var + a.eps);
      a.saveMean->f32()[c] = float(mean);
      a.saveInvStd->f32()[c] = float(invStd);
      const double unbiased = count > 1 ? ss / double(count - 1) : var;
      float* rm = a.runningMean->f32();
      float* rv = a.runningVar->f32();
      rm[c] = float((1 - a.momentum) * rm[c] + a.momentum * mean);
      rv[c] = float((1 - a.momentum) * rv[c] + a.momentum * unbiased);
    } else {
      mean = a.runningMean->f32()[c];
      invStd = 1.0 / std::sqrt(double(a.runningVar->f32()[c]) + a.eps);
    }
    const double g = a.gamma->f32()[c], b = a.beta->f32()[c];
    for (int64_t i = 0; i < a.n; ++i)
      for (int64_t k = 0; k < a.inner; ++k) {
        const int64_t at = (i * a.channels + c) * a.inner + k;
        y[at] = float((x[at] - mean) * invStd * g + b);
      }
  }
}

void batchNormBackward(const BatchNormBackwardArgs& a) {
  const float* x = a.x->f32();
  const float* dy = a.dy->f32();
  float* dx = a.dx->f32();
  const double count = double(a.n * a.inner);
  for (int64_t c = 0; c < a.channels; ++c) {
    const double mean = a.saveMean->f32()[c], invStd = a.saveInvStd->f32()[c], g = a.gamma->f32()[c];
    double sumDy = 0, sumDyXhat = 0;
    for (int64_t i = 0; i < a.n; ++i)
      for (int64_t k = 0; k < a.inner; ++k) {
        const int64_t at = (i * a.channels + c) * a.inner + k;
        sumDy += dy[at];
        sumDyXhat += dy[at] * (x[at] - mean) * invStd;
      }
    a.dbeta->f32()[c] = float(sumDy);
    a.dgamma->f32()[c] = float(sumDyXhat);
    for (int64_t i = 0; i < a.n; ++i)
      for (int64_t k = 0; k < a.inner; ++k) {
        const int64_t at = (i * a.channels + c) * a.inner + k;
        const double xhat = (x[at] - mean) * invStd;
        dx[at] = float(g * invStd / count * (count * dy[at] - sumDy - xhat * sumDyXhat));
      }
  }
}

}  // namespace bssn::cpu
