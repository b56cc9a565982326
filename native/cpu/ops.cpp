#include "cpu/ops.h"

#include "core/device.h"

#include <cmath>
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

void sum(const float* x, size_t n, float* out, float scale) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += x[i];
  out[0] = float(s * scale);
}

void broadcast(const float* scalar, float* out, size_t n, float scale) {
  const float v = scalar[0] * scale;
  for (size_t i = 0; i < n; ++i) out[i] = v;
}

// Row by row with a float64 accumulator row: op(A)[i, p] times row p of op(B), contiguous when B is not transposed.
void gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* a, const float* b, float beta, float* c) {
  std::vector<double> acc(static_cast<size_t>(n));
  for (int64_t i = 0; i < m; ++i) {
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
}

void adam(const AdamArgs& a) {
  float* p = a.param->f32();
  const float* g = a.grad->f32();
  float* m = a.m->f32();
  float* v = a.v->f32();
  const double c1 = 1.0 - std::pow(double(a.beta1), double(a.step));
  const double c2 = 1.0 - std::pow(double(a.beta2), double(a.step));
  for (size_t i = 0; i < a.n; ++i) {
    const float gi = g[i] + a.weightDecay * p[i];
    m[i] = a.beta1 * m[i] + (1 - a.beta1) * gi;
    v[i] = a.beta2 * v[i] + (1 - a.beta2) * gi * gi;
    p[i] = float(p[i] - a.lr * (m[i] / c1) / (std::sqrt(v[i] / c2) + a.eps));
  }
}

void sgd(const SgdArgs& a) {
  float* p = a.param->f32();
  const float* g = a.grad->f32();
  float* buf = a.momentumBuffer ? a.momentumBuffer->f32() : nullptr;
  for (size_t i = 0; i < a.n; ++i) {
    float d = g[i] + a.weightDecay * p[i];
    if (buf) {
      buf[i] = a.firstStep ? d : a.momentum * buf[i] + d;
      d = buf[i];
    }
    p[i] -= a.lr * d;
  }
}

}  // namespace bssn::cpu
