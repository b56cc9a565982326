// Tensor ops of the training stack, described backend-neutrally. Every op writes into buffers its caller
// allocated (no allocation inside an op), is enqueued on the device's stream, and validates nothing: the
// N-API layer checks devices and sizes first.
#pragma once
#include <cstdint>

#include <memory>
#include <vector>

namespace bssn {

class Buffer;
using BufferPtr = std::shared_ptr<Buffer>;

enum class UnaryOp : int32_t {
  Relu = 0,
  LeakyRelu = 1,  // param: negative slope
  Tanh = 2,
  Sigmoid = 3,
  Scale = 4,      // y = param * x
  AddScalar = 5,  // y = x + param
};

enum class BinaryOp : int32_t { Add = 0, Sub = 1, Mul = 2 };

// Row-major C[m x n] = alpha * op(A) op(B) + beta * C, op(A) m x k and op(B) k x n, all dimensions >= 1.
// C is not read when beta == 0.
struct GemmArgs {
  bool transA = false, transB = false;
  int64_t m = 0, n = 0, k = 0;
  float alpha = 1, beta = 0;
  BufferPtr a, b, c;
};

// One parameter tensor of a multi-tensor optimizer update: n elements of param and grad, and of each state
// buffer the optimizer keeps for it (m and v for Adam, the momentum buffer or null for SGD in m).
struct OptimTensor {
  BufferPtr param, grad, m, v;
  size_t n = 0;
};

// Adam as PyTorch's (L2 weight decay added to the gradient) on every tensor, in one call. `step` is the
// optimizer's step count on the device (one int64, in an 8-byte buffer): the call increments it, then the update
// reads it, so that a captured graph advances it on every replay and nothing in the call depends on the host's count.
struct AdamArgs {
  std::vector<OptimTensor> tensors;
  BufferPtr step;
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weightDecay = 0;
};

// SGD with optional momentum and L2 weight decay on every tensor, in one call. Momentum buffers (m; null when
// momentum == 0) start at zero: PyTorch's first step sets buf = d, which is momentum * 0 + d, so no first-step
// flag is needed (and a replayed graph cannot carry a stale one).
struct SgdArgs {
  std::vector<OptimTensor> tensors;
  float lr = 1e-2f, momentum = 0, weightDecay = 0;
};

// A 2-D convolution (cross-correlation, as PyTorch's), NCHW activations and [cOut, cIn, kh, kw] filters.
// forward: y = conv(x, w); backwardData: x = conv^T(y, w) (the input gradient, and ConvTranspose2d's forward);
// backwardFilter: w = the filter gradient from x and dy (y holds dy). Outputs are overwritten.
struct Conv2dArgs {
  int64_t n = 1, cIn = 1, h = 1, w = 1;
  int64_t cOut = 1, kh = 1, kw = 1;
  int64_t strideH = 1, strideW = 1, padH = 0, padW = 0;
  int64_t outH = 1, outW = 1;
  BufferPtr x, weight, y;
};

// Batch normalization over [n, channels, inner] (inner = H * W), PyTorch's semantics: training normalizes with
// the batch statistics (biased variance), saves mean and 1/sqrt(var + eps) per channel, and updates the
// running mean and (unbiased) variance with `momentum`; eval normalizes with the running statistics.
struct BatchNormArgs {
  int64_t n = 1, channels = 1, inner = 1;
  bool training = true;
  float momentum = 0.1f, eps = 1e-5f;
  BufferPtr x, y, gamma, beta, runningMean, runningVar, saveMean, saveInvStd;
};

// Gradients of a training-mode batch norm: dx, dgamma, dbeta from x, dy, gamma and the saved statistics.
struct BatchNormBackwardArgs {
  int64_t n = 1, channels = 1, inner = 1;
  BufferPtr x, dy, gamma, saveMean, saveInvStd, dx, dgamma, dbeta;
};

// The ops a backend implements (the Device derives from it).
class Ops {
 public:
  virtual ~Ops() = default;
  // y = f(x) elementwise (y may alias x).
  virtual void unary(UnaryOp op, float param, const BufferPtr& x, const BufferPtr& y, size_t n) = 0;
  // dx = dy * f'(x), from x (relu, leaky relu) or y = f(x) (tanh, sigmoid); dx may alias dy.
  virtual void unaryBackward(UnaryOp op, float param, const BufferPtr& x, const BufferPtr& y, const BufferPtr& dy,
                             const BufferPtr& dx, size_t n) = 0;
  // out = a (op) b elementwise (out may alias a or b).
  virtual void binary(BinaryOp op, const BufferPtr& a, const BufferPtr& b, const BufferPtr& out, size_t n) = 0;
  // out[o, c, i] = x[o, c, i] + bias[c] for x viewed as [outer, channels, inner].
  virtual void addBias(const BufferPtr& x, const BufferPtr& bias, const BufferPtr& out, size_t outer, size_t channels,
                       size_t inner) = 0;
  // db[c] = sum over o, i of dy[o, c, i].
  virtual void sumToBias(const BufferPtr& dy, const BufferPtr& db, size_t outer, size_t channels, size_t inner) = 0;
  // A layer's bias and activation in one pass: y[o, c, i] = f(x[o, c, i] + bias[c]) for f relu, leaky relu, tanh or
  // sigmoid, f applied to the float sum (addBias then unary, bit for bit). y may alias x.
  virtual void biasActivation(UnaryOp op, float param, const BufferPtr& x, const BufferPtr& bias, const BufferPtr& y, size_t outer,
                              size_t channels, size_t inner) = 0;
  // Its backward in one pass: dx = dy * f'(.) from y alone (relu and leaky relu from y's sign, so the slope must be
  // >= 0), and db[c] = sum over o, i of dx, added to db when `accumulate` (db + float(sum), as the unfused path
  // rounds). dx may be null (not written) or alias dy; db may be null (no sum).
  virtual void biasActivationBackward(UnaryOp op, float param, const BufferPtr& y, const BufferPtr& dy, const BufferPtr& dx,
                                      const BufferPtr& db, bool accumulate, size_t outer, size_t channels, size_t inner) = 0;
  // out[0] = scale * sum(x[0..n)).
  virtual void sum(const BufferPtr& x, size_t n, const BufferPtr& out, float scale) = 0;
  // The discriminator's hinge loss over scores whose first `split` are real, the rest fake:
  // out[0] = float(scaleReal * sum_{i < split} relu(1 - x[i])) + float(scaleFake * sum_{i >= split} relu(1 + x[i])).
  virtual void hinge(const BufferPtr& x, size_t n, size_t split, float scaleReal, float scaleFake, const BufferPtr& out) = 0;
  // Its gradient given g[0]: -g scaleReal where 1 - x > 0 (i < split), g scaleFake where 1 + x > 0 (i >= split), else 0.
  virtual void hingeBackward(const BufferPtr& x, const BufferPtr& g, size_t n, size_t split, float scaleReal, float scaleFake,
                             const BufferPtr& dx) = 0;
  // out[i] = scale * scalar[0] for i < n.
  virtual void broadcast(const BufferPtr& scalar, const BufferPtr& out, size_t n, float scale) = 0;
  virtual void gemm(const GemmArgs& args) = 0;
  virtual void adam(const AdamArgs& args) = 0;
  virtual void sgd(const SgdArgs& args) = 0;
  virtual void conv2dForward(const Conv2dArgs& args) = 0;
  virtual void conv2dBackwardData(const Conv2dArgs& args) = 0;
  virtual void conv2dBackwardFilter(const Conv2dArgs& args) = 0;
  virtual void batchNorm(const BatchNormArgs& args) = 0;
  virtual void batchNormBackward(const BatchNormBackwardArgs& args) = 0;
};

}  // namespace bssn
