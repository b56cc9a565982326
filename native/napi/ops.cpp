#include "napi/ops.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/ops.h"
#include "core/tensor.h"
#include "napi/convert.h"
#include "napi/errors.h"
#include "napi/tensor_handle.h"
#include "napi/type_tag.h"

namespace bssn::napi {

namespace {

const TensorPtr& tensorArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return unwrapTagged<TensorHandle>(info[i], (std::string(name) + " to be a bssn tensor handle").c_str())->tensor();
}

// Buffers of tensors that must all live on one device; returns that device.
Device& sameDevice(std::initializer_list<std::pair<const TensorPtr*, const char*>> tensors) {
  Device* device = nullptr;
  const char* first = nullptr;
  for (const auto& [t, name] : tensors) {
    if (!t || !*t) continue;
    (*t)->buffer(name);
    if (!device) {
      device = (*t)->device().get();
      first = name;
    } else if ((*t)->device().get() != device) {
      throwTypeError(std::string(name) + " is on " + (*t)->device()->name() + ", " + first + " on " + device->name());
    }
  }
  return *device;
}

void sameSize(const TensorPtr& a, const char* an, const TensorPtr& b, const char* bn) {
  if (a->numel() != b->numel())
    throwRangeError(std::string(bn) + " has shape " + shapeToString(b->shape()) + ", expected " + std::to_string(a->numel()) +
                    " elements like " + an + " " + shapeToString(a->shape()));
}

UnaryOp unaryOp(Napi::Value v) { return UnaryOp(toInteger(v, "unary op", 0, 5)); }
// The activations a bias can be fused with: relu, leaky relu, tanh, sigmoid.
UnaryOp activationOp(Napi::Value v) { return UnaryOp(toInteger(v, "activation op", 0, 3)); }

// [outer, channels, inner] of `shape` around `axis`.
void splitAt(const Shape& shape, int64_t axis, size_t& outer, size_t& channels, size_t& inner) {
  if (axis < 0 || axis >= int64_t(shape.size()))
    throwRangeError("channel axis " + std::to_string(axis) + " is out of range for shape " + shapeToString(shape));
  outer = inner = 1;
  for (int64_t a = 0; a < axis; ++a) outer *= size_t(shape[a]);
  for (size_t a = size_t(axis) + 1; a < shape.size(); ++a) inner *= size_t(shape[a]);
  channels = size_t(shape[axis]);
}

// The optimizer's tensors from parallel arrays (arguments 0.. of `info`, named by `lists`; a null name is an
// absent list): equal lengths, equal sizes per index, all on one device (with `extra` when given), which is returned.
Device& optimTensors(const Napi::CallbackInfo& info, const TensorPtr* extra, std::initializer_list<const char*> lists,
                     std::vector<OptimTensor>& out) {
  std::vector<std::vector<TensorPtr>> roles;
  for (const char* name : lists) roles.push_back(name ? toTensors(info[roles.size()], name) : std::vector<TensorPtr>{});
  const size_t count = roles[0].size();
  const char* const* names = lists.begin();
  for (size_t r = 1; r < roles.size(); ++r)
    if (names[r] && roles[r].size() != count)
      throwRangeError(std::string(names[r]) + " has " + std::to_string(roles[r].size()) + " tensors, expected " + std::to_string(count) +
                      " like params");
  Device* device = extra ? &sameDevice({{extra, "step"}}) : nullptr;
  for (size_t i = 0; i < count; ++i) {
    OptimTensor t;
    BufferPtr* slots[] = {&t.param, &t.grad, &t.m, &t.v};
    for (size_t r = 0; r < roles.size(); ++r) {
      if (!names[r]) continue;
      const TensorPtr& x = roles[r][i];
      const std::string name = std::string(names[r]) + "[" + std::to_string(i) + "]";
      if (r) sameSize(roles[0][i], ("params[" + std::to_string(i) + "]").c_str(), x, name.c_str());
      Device& d = sameDevice({{&x, name.c_str()}});
      if (!device) device = &d;
      else if (&d != device) throwTypeError(name + " is on " + d.name() + ", expected " + device->name());
      *slots[r] = x->buffer();
    }
    t.n = size_t(roles[0][i]->numel());
    out.push_back(std::move(t));
  }
  if (!device) throwRangeError("expected at least one parameter tensor");
  return *device;
}

double option(Napi::Object o, const char* key) { return toNumber(o.Get(key), key); }

template <typename F>
void def(Napi::Env env, Napi::Object ops, const char* name, F f) {
  ops.Set(name, Napi::Function::New(env, [f](const Napi::CallbackInfo& info) -> Napi::Value {
    return guard(info.Env(), [&]() -> Napi::Value {
      f(info);
      return info.Env().Undefined();
    });
  }, name));
}

// Conv2dArgs from (input [N, cIn, H, W], weight [cOut, cIn, kh, kw], output [N, cOut, outH, outW], options
// { strideH, strideW, padH, padW }) of a convolution input -> output, checking that the shapes agree.
Device& convArgs(const Napi::CallbackInfo& info, Conv2dArgs& a) {
  const TensorPtr &x = tensorArg(info, 0, "input"), &w = tensorArg(info, 1, "weight"), &y = tensorArg(info, 2, "output");
  Device& d = sameDevice({{&x, "input"}, {&w, "weight"}, {&y, "output"}});
  for (const auto& [t, name] : {std::pair{&x, "input"}, {&w, "weight"}, {&y, "output"}})
    if ((*t)->shape().size() != 4) throwRangeError(std::string("conv2d: expected a 4-D ") + name + ", got shape " + shapeToString((*t)->shape()));
  if (!info[3].IsObject()) throwTypeError("conv2d: expected options { strideH, strideW, padH, padW }");
  Napi::Object o = info[3].As<Napi::Object>();
  a.strideH = toInteger(o.Get("strideH"), "strideH", 1, 1 << 20);
  a.strideW = toInteger(o.Get("strideW"), "strideW", 1, 1 << 20);
  a.padH = toInteger(o.Get("padH"), "padH", 0, 1 << 20);
  a.padW = toInteger(o.Get("padW"), "padW", 0, 1 << 20);
  const Shape &xs = x->shape(), &ws = w->shape(), &ys = y->shape();
  a.n = xs[0], a.cIn = xs[1], a.h = xs[2], a.w = xs[3];
  a.cOut = ws[0], a.kh = ws[2], a.kw = ws[3];
  a.outH = ys[2], a.outW = ys[3];
  if (ws[1] != a.cIn) throwRangeError("conv2d: weight " + shapeToString(ws) + " expects " + std::to_string(ws[1]) + " input channels, the input has " + std::to_string(a.cIn));
  const int64_t eh = (a.h + 2 * a.padH - a.kh) / a.strideH + 1, ew = (a.w + 2 * a.padW - a.kw) / a.strideW + 1;
  if (a.h + 2 * a.padH < a.kh || a.w + 2 * a.padW < a.kw) throwRangeError("conv2d: the kernel is larger than the padded input");
  if (ys[0] != a.n || ys[1] != a.cOut || a.outH != eh || a.outW != ew)
    throwRangeError("conv2d: output has shape " + shapeToString(ys) + ", expected [" + std::to_string(a.n) + ", " + std::to_string(a.cOut) + ", " +
                    std::to_string(eh) + ", " + std::to_string(ew) + "]");
  if (x->numel() == 0 || w->numel() == 0) throwRangeError("conv2d: empty input or weight");
  a.x = x->buffer(), a.weight = w->buffer(), a.y = y->buffer();
  return d;
}

// [n, channels, inner] of an activation [N, C, ...], and a check that each per-channel tensor has C elements.
void channelGeometry(const TensorPtr& x, int64_t& n, int64_t& channels, int64_t& inner,
                     std::initializer_list<std::pair<const TensorPtr*, const char*>> perChannel) {
  if (x->shape().size() < 2) throwRangeError("batchNorm: expected an input [N, C, ...], got shape " + shapeToString(x->shape()));
  n = x->shape()[0];
  channels = x->shape()[1];
  inner = channels ? x->numel() / std::max<int64_t>(n * channels, 1) : 0;
  for (const auto& [t, name] : perChannel)
    if (*t && (*t)->numel() != channels)
      throwRangeError(std::string("batchNorm: ") + name + " has " + std::to_string((*t)->numel()) + " elements, expected " + std::to_string(channels));
}

}  // namespace

Napi::Object defineOps(Napi::Env env) {
  Napi::Object ops = Napi::Object::New(env);

  // unary(op, param, x, y)
  def(env, ops, "unary", [](const Napi::CallbackInfo& info) {
    const UnaryOp op = unaryOp(info[0]);
    const float param = float(toNumber(info[1], "param"));
    const TensorPtr &x = tensorArg(info, 2, "x"), &y = tensorArg(info, 3, "y");
    Device& d = sameDevice({{&x, "x"}, {&y, "y"}});
    sameSize(x, "x", y, "y");
    d.unary(op, param, x->buffer(), y->buffer(), size_t(x->numel()));
  });

  // unaryBackward(op, param, x | null, y | null, dy, dx)
  def(env, ops, "unaryBackward", [](const Napi::CallbackInfo& info) {
    const UnaryOp op = unaryOp(info[0]);
    const float param = float(toNumber(info[1], "param"));
    const bool needsX = op == UnaryOp::Relu || op == UnaryOp::LeakyRelu;
    const bool needsY = op == UnaryOp::Tanh || op == UnaryOp::Sigmoid;
    static const TensorPtr none;
    const TensorPtr& x = needsX ? tensorArg(info, 2, "x") : none;
    const TensorPtr& y = needsY ? tensorArg(info, 3, "y") : none;
    const TensorPtr &dy = tensorArg(info, 4, "dy"), &dx = tensorArg(info, 5, "dx");
    Device& d = sameDevice({{&x, "x"}, {&y, "y"}, {&dy, "dy"}, {&dx, "dx"}});
    sameSize(dy, "dy", dx, "dx");
    if (x) sameSize(dy, "dy", x, "x");
    if (y) sameSize(dy, "dy", y, "y");
    d.unaryBackward(op, param, x ? x->buffer() : nullptr, y ? y->buffer() : nullptr, dy->buffer(), dx->buffer(), size_t(dy->numel()));
  });

  // binary(op, a, b, out)
  def(env, ops, "binary", [](const Napi::CallbackInfo& info) {
    const BinaryOp op = BinaryOp(toInteger(info[0], "binary op", 0, 2));
    const TensorPtr &a = tensorArg(info, 1, "a"), &b = tensorArg(info, 2, "b"), &out = tensorArg(info, 3, "out");
    Device& d = sameDevice({{&a, "a"}, {&b, "b"}, {&out, "out"}});
    sameSize(a, "a", b, "b");
    sameSize(a, "a", out, "out");
    d.binary(op, a->buffer(), b->buffer(), out->buffer(), size_t(a->numel()));
  });

  // addBias(x, bias, out, channelAxis)
  def(env, ops, "addBias", [](const Napi::CallbackInfo& info) {
    const TensorPtr &x = tensorArg(info, 0, "x"), &bias = tensorArg(info, 1, "bias"), &out = tensorArg(info, 2, "out");
    Device& d = sameDevice({{&x, "x"}, {&bias, "bias"}, {&out, "out"}});
    size_t outer, channels, inner;
    splitAt(x->shape(), toInteger(info[3], "channel axis", 0, 7), outer, channels, inner);
    if (size_t(bias->numel()) != channels)
      throwRangeError("bias has " + std::to_string(bias->numel()) + " elements, expected " + std::to_string(channels) + " (one per channel)");
    sameSize(x, "x", out, "out");
    d.addBias(x->buffer(), bias->buffer(), out->buffer(), outer, channels, inner);
  });

  // sumToBias(dy, db, channelAxis)
  def(env, ops, "sumToBias", [](const Napi::CallbackInfo& info) {
    const TensorPtr &dy = tensorArg(info, 0, "dy"), &db = tensorArg(info, 1, "db");
    Device& d = sameDevice({{&dy, "dy"}, {&db, "db"}});
    size_t outer, channels, inner;
    splitAt(dy->shape(), toInteger(info[2], "channel axis", 0, 7), outer, channels, inner);
    if (size_t(db->numel()) != channels)
      throwRangeError("db has " + std::to_string(db->numel()) + " elements, expected " + std::to_string(channels));
    d.sumToBias(dy->buffer(), db->buffer(), outer, channels, inner);
  });

  // biasActivation(op, param, x, bias, y, channelAxis): y = f(x + bias), f relu, leaky relu, tanh or sigmoid
  def(env, ops, "biasActivation", [](const Napi::CallbackInfo& info) {
    const UnaryOp op = activationOp(info[0]);
    const float param = float(toNumber(info[1], "param"));
    const TensorPtr &x = tensorArg(info, 2, "x"), &bias = tensorArg(info, 3, "bias"), &y = tensorArg(info, 4, "y");
    Device& d = sameDevice({{&x, "x"}, {&bias, "bias"}, {&y, "y"}});
    size_t outer, channels, inner;
    splitAt(x->shape(), toInteger(info[5], "channel axis", 0, 7), outer, channels, inner);
    if (size_t(bias->numel()) != channels)
      throwRangeError("bias has " + std::to_string(bias->numel()) + " elements, expected " + std::to_string(channels) + " (one per channel)");
    sameSize(x, "x", y, "y");
    d.biasActivation(op, param, x->buffer(), bias->buffer(), y->buffer(), outer, channels, inner);
  });

  // biasActivationBackward(op, param, y, dy, dx | null, db | null, accumulate, channelAxis)
  def(env, ops, "biasActivationBackward", [](const Napi::CallbackInfo& info) {
    const UnaryOp op = activationOp(info[0]);
    const float param = float(toNumber(info[1], "param"));
    // The derivative comes from y's sign, which is the pre-activation's only for a slope >= 0.
    if (op == UnaryOp::LeakyRelu && param < 0)
      throwRangeError("biasActivationBackward: leaky relu's slope must be >= 0 (y's sign gives the input's), got " + std::to_string(param));
    static const TensorPtr none;
    const auto optional = [&](size_t i, const char* name) -> const TensorPtr& {
      return info[i].IsNull() || info[i].IsUndefined() ? none : tensorArg(info, i, name);
    };
    const TensorPtr &y = tensorArg(info, 2, "y"), &dy = tensorArg(info, 3, "dy");
    const TensorPtr &dx = optional(4, "dx"), &db = optional(5, "db");
    Device& d = sameDevice({{&y, "y"}, {&dy, "dy"}, {&dx, "dx"}, {&db, "db"}});
    size_t outer, channels, inner;
    splitAt(y->shape(), toInteger(info[7], "channel axis", 0, 7), outer, channels, inner);
    sameSize(y, "y", dy, "dy");
    if (dx) sameSize(y, "y", dx, "dx");
    if (db && size_t(db->numel()) != channels)
      throwRangeError("db has " + std::to_string(db->numel()) + " elements, expected " + std::to_string(channels));
    d.biasActivationBackward(op, param, y->buffer(), dy->buffer(), dx ? dx->buffer() : nullptr, db ? db->buffer() : nullptr,
                             info[6].ToBoolean(), outer, channels, inner);
  });

  // sum(x, out, scale): out[0] = scale * sum(x)
  def(env, ops, "sum", [](const Napi::CallbackInfo& info) {
    const TensorPtr &x = tensorArg(info, 0, "x"), &out = tensorArg(info, 1, "out");
    Device& d = sameDevice({{&x, "x"}, {&out, "out"}});
    if (out->numel() != 1) throwRangeError("sum: expected a one-element output, got shape " + shapeToString(out->shape()));
    d.sum(x->buffer(), size_t(x->numel()), out->buffer(), float(toNumber(info[2], "scale")));
  });

  // randnFromTable(out, table, index, std): out = std * normal samples of the uint64 seed table[index], read on the
  // device (the table is a float32 tensor holding the seeds' bits, two elements per seed)
  def(env, ops, "randnFromTable", [](const Napi::CallbackInfo& info) {
    const TensorPtr &out = tensorArg(info, 0, "out"), &table = tensorArg(info, 1, "table");
    Device& d = sameDevice({{&out, "out"}, {&table, "table"}});
    const int64_t seeds = table->numel() / 2;
    const int64_t index = toInteger(info[2], "index", 0, std::max<int64_t>(seeds - 1, 0));
    if (index >= seeds) throwRangeError("randnFromTable: the table holds no seed " + std::to_string(index));
    const double std = toNumber(info[3], "std");
    if (!std::isfinite(std)) throwRangeError("expected std to be finite");
    d.randnFromTable(out->buffer(), size_t(out->numel()), table->buffer(), size_t(index), float(std));
  });

  // copyRange(dst, dstOffset, src, srcOffset, count): count elements copied on the device (offsets in elements)
  def(env, ops, "copyRange", [](const Napi::CallbackInfo& info) {
    const TensorPtr &dst = tensorArg(info, 0, "dst"), &src = tensorArg(info, 2, "src");
    Device& d = sameDevice({{&dst, "dst"}, {&src, "src"}});
    const int64_t dstOffset = toInteger(info[1], "dstOffset", 0, dst->numel());
    const int64_t srcOffset = toInteger(info[3], "srcOffset", 0, src->numel());
    const int64_t count = toInteger(info[4], "count", 0, std::min(dst->numel() - dstOffset, src->numel() - srcOffset));
    d.copy(dst->buffer(), size_t(dstOffset) * sizeof(float), src->buffer("source tensor"), size_t(srcOffset) * sizeof(float),
           size_t(count) * sizeof(float));
  });

  // hinge(x, out, split, scaleReal, scaleFake): the discriminator's hinge loss, x's first `split` scores real
  def(env, ops, "hinge", [](const Napi::CallbackInfo& info) {
    const TensorPtr &x = tensorArg(info, 0, "x"), &out = tensorArg(info, 1, "out");
    Device& d = sameDevice({{&x, "x"}, {&out, "out"}});
    if (out->numel() != 1) throwRangeError("hinge: expected a one-element output, got shape " + shapeToString(out->shape()));
    d.hinge(x->buffer(), size_t(x->numel()), size_t(toInteger(info[2], "split", 0, x->numel())), float(toNumber(info[3], "scaleReal")),
            float(toNumber(info[4], "scaleFake")), out->buffer());
  });

  // hingeBackward(x, g, dx, split, scaleReal, scaleFake)
  def(env, ops, "hingeBackward", [](const Napi::CallbackInfo& info) {
    const TensorPtr &x = tensorArg(info, 0, "x"), &g = tensorArg(info, 1, "g"), &dx = tensorArg(info, 2, "dx");
    Device& d = sameDevice({{&x, "x"}, {&g, "g"}, {&dx, "dx"}});
    if (g->numel() != 1) throwRangeError("hingeBackward: expected a one-element gradient, got shape " + shapeToString(g->shape()));
    if (dx->numel() != x->numel())
      throwRangeError("hingeBackward: dx has " + std::to_string(dx->numel()) + " elements, expected " + std::to_string(x->numel()));
    d.hingeBackward(x->buffer(), g->buffer(), size_t(x->numel()), size_t(toInteger(info[3], "split", 0, x->numel())),
                    float(toNumber(info[4], "scaleReal")), float(toNumber(info[5], "scaleFake")), dx->buffer());
  });

  // broadcast(scalar, out, scale): out[i] = scale * scalar[0]
  def(env, ops, "broadcast", [](const Napi::CallbackInfo& info) {
    const TensorPtr &s = tensorArg(info, 0, "scalar"), &out = tensorArg(info, 1, "out");
    Device& d = sameDevice({{&s, "scalar"}, {&out, "out"}});
    if (s->numel() != 1) throwRangeError("broadcast: expected a one-element source, got shape " + shapeToString(s->shape()));
    d.broadcast(s->buffer(), out->buffer(), size_t(out->numel()), float(toNumber(info[2], "scale")));
  });

  // gemm(a, b, c, transA, transB, alpha, beta): c = alpha * op(a) op(b) + beta * c, all 2-D
  def(env, ops, "gemm", [](const Napi::CallbackInfo& info) {
    const TensorPtr &a = tensorArg(info, 0, "a"), &b = tensorArg(info, 1, "b"), &c = tensorArg(info, 2, "c");
    Device& d = sameDevice({{&a, "a"}, {&b, "b"}, {&c, "c"}});
    for (const auto& [t, name] : {std::pair{&a, "a"}, {&b, "b"}, {&c, "c"}})
      if ((*t)->shape().size() != 2) throwRangeError(std::string("gemm: expected ") + name + " to be 2-D, got shape " + shapeToString((*t)->shape()));
    GemmArgs g;
    g.transA = info[3].ToBoolean();
    g.transB = info[4].ToBoolean();
    g.alpha = float(toNumber(info[5], "alpha"));
    g.beta = float(toNumber(info[6], "beta"));
    g.m = a->shape()[g.transA ? 1 : 0];
    g.k = a->shape()[g.transA ? 0 : 1];
    const int64_t kb = b->shape()[g.transB ? 1 : 0];
    g.n = b->shape()[g.transB ? 0 : 1];
    if (kb != g.k)
      throwRangeError("gemm: inner dimensions differ: op(a) is " + std::to_string(g.m) + "x" + std::to_string(g.k) + ", op(b) is " +
                      std::to_string(kb) + "x" + std::to_string(g.n));
    if (c->shape() != Shape{g.m, g.n})
      throwRangeError("gemm: c has shape " + shapeToString(c->shape()) + ", expected [" + std::to_string(g.m) + ", " + std::to_string(g.n) + "]");
    if (g.m == 0 || g.n == 0 || g.k == 0) throwRangeError("gemm: dimensions must be at least 1");
    g.a = a->buffer();
    g.b = b->buffer();
    g.c = c->buffer();
    d.gemm(g);
  });

  // adam(params[], grads[], ms[], vs[], step, { lr, beta1, beta2, eps, weightDecay }): every tensor in one call;
  // step is the optimizer's device count (an int64 in a 2-element tensor), incremented by the call.
  def(env, ops, "adam", [](const Napi::CallbackInfo& info) {
    const TensorPtr& step = tensorArg(info, 4, "step");
    if (step->buffer("step")->bytes() != sizeof(int64_t)) throwRangeError("adam: expected step to be a 2-element tensor (one int64)");
    if (!info[5].IsObject()) throwTypeError("expected Adam options");
    Napi::Object o = info[5].As<Napi::Object>();
    AdamArgs a;
    a.step = step->buffer();
    a.lr = float(option(o, "lr")), a.beta1 = float(option(o, "beta1")), a.beta2 = float(option(o, "beta2"));
    a.eps = float(option(o, "eps")), a.weightDecay = float(option(o, "weightDecay"));
    Device& d = optimTensors(info, &step, {"params", "grads", "ms", "vs"}, a.tensors);
    d.adam(a);
  });

  // sgd(params[], grads[], momentumBuffers[] | null, { lr, momentum, weightDecay }): every tensor in one call.
  def(env, ops, "sgd", [](const Napi::CallbackInfo& info) {
    if (!info[3].IsObject()) throwTypeError("expected SGD options");
    Napi::Object o = info[3].As<Napi::Object>();
    SgdArgs a;
    a.lr = float(option(o, "lr")), a.momentum = float(option(o, "momentum")), a.weightDecay = float(option(o, "weightDecay"));
    Device& d = optimTensors(info, nullptr, {"params", "grads", info[2].IsNull() ? nullptr : "momentumBuffers"}, a.tensors);
    d.sgd(a);
  });

  // conv2d(input, weight, output, options): output = conv(input, weight)
  def(env, ops, "conv2d", [](const Napi::CallbackInfo& info) {
    Conv2dArgs a;
    convArgs(info, a).conv2dForward(a);
  });
  // conv2dBackwardData(input, weight, output, options): input = conv^T(output, weight)
  def(env, ops, "conv2dBackwardData", [](const Napi::CallbackInfo& info) {
    Conv2dArgs a;
    convArgs(info, a).conv2dBackwardData(a);
  });
  // conv2dBackwardFilter(input, weight, output, options): weight = d(conv)/d(weight) from input and output (= dy)
  def(env, ops, "conv2dBackwardFilter", [](const Napi::CallbackInfo& info) {
    Conv2dArgs a;
    convArgs(info, a).conv2dBackwardFilter(a);
  });

  // batchNorm(x, y, gamma, beta, runningMean, runningVar, saveMean | null, saveInvStd | null, { training, momentum, eps })
  def(env, ops, "batchNorm", [](const Napi::CallbackInfo& info) {
    static const TensorPtr none;
    const TensorPtr &x = tensorArg(info, 0, "x"), &y = tensorArg(info, 1, "y"), &gamma = tensorArg(info, 2, "gamma"),
                    &beta = tensorArg(info, 3, "beta"), &rm = tensorArg(info, 4, "runningMean"), &rv = tensorArg(info, 5, "runningVar");
    if (!info[8].IsObject()) throwTypeError("batchNorm: expected options { training, momentum, eps }");
    Napi::Object o = info[8].As<Napi::Object>();
    BatchNormArgs a;
    a.training = o.Get("training").ToBoolean();
    a.momentum = float(toNumber(o.Get("momentum"), "momentum"));
    a.eps = float(toNumber(o.Get("eps"), "eps"));
    const TensorPtr& sm = a.training ? tensorArg(info, 6, "saveMean") : none;
    const TensorPtr& si = a.training ? tensorArg(info, 7, "saveInvStd") : none;
    Device& d = sameDevice({{&x, "x"}, {&y, "y"}, {&gamma, "gamma"}, {&beta, "beta"}, {&rm, "runningMean"}, {&rv, "runningVar"}, {&sm, "saveMean"}, {&si, "saveInvStd"}});
    sameSize(x, "x", y, "y");
    channelGeometry(x, a.n, a.channels, a.inner, {{&gamma, "gamma"}, {&beta, "beta"}, {&rm, "runningMean"}, {&rv, "runningVar"}, {&sm, "saveMean"}, {&si, "saveInvStd"}});
    if (a.training && a.n * a.inner < 2) throwRangeError("batchNorm: training needs more than one value per channel");
    a.x = x->buffer(), a.y = y->buffer(), a.gamma = gamma->buffer(), a.beta = beta->buffer();
    a.runningMean = rm->buffer(), a.runningVar = rv->buffer();
    if (sm) a.saveMean = sm->buffer();
    if (si) a.saveInvStd = si->buffer();
    d.batchNorm(a);
  });

  // batchNormBackward(x, dy, gamma, saveMean, saveInvStd, dx, dgamma, dbeta)
  def(env, ops, "batchNormBackward", [](const Napi::CallbackInfo& info) {
    const TensorPtr &x = tensorArg(info, 0, "x"), &dy = tensorArg(info, 1, "dy"), &gamma = tensorArg(info, 2, "gamma"),
                    &sm = tensorArg(info, 3, "saveMean"), &si = tensorArg(info, 4, "saveInvStd"), &dx = tensorArg(info, 5, "dx"),
                    &dg = tensorArg(info, 6, "dgamma"), &db = tensorArg(info, 7, "dbeta");
    Device& d = sameDevice({{&x, "x"}, {&dy, "dy"}, {&gamma, "gamma"}, {&sm, "saveMean"}, {&si, "saveInvStd"}, {&dx, "dx"}, {&dg, "dgamma"}, {&db, "dbeta"}});
    sameSize(x, "x", dy, "dy");
    sameSize(x, "x", dx, "dx");
    BatchNormBackwardArgs a;
    channelGeometry(x, a.n, a.channels, a.inner, {{&gamma, "gamma"}, {&sm, "saveMean"}, {&si, "saveInvStd"}, {&dg, "dgamma"}, {&db, "dbeta"}});
    a.x = x->buffer(), a.dy = dy->buffer(), a.gamma = gamma->buffer(), a.saveMean = sm->buffer(), a.saveInvStd = si->buffer();
    a.dx = dx->buffer(), a.dgamma = dg->buffer(), a.dbeta = db->buffer();
    d.batchNormBackward(a);
  });

  return ops;
}

}  // namespace bssn::napi
