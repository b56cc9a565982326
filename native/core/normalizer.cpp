#include "core/normalizer.h"

#include <cmath>
#include <string>

#include "core/random.h"

namespace bssn {

namespace {

std::string layerName(size_t i) { return "weight " + std::to_string(i); }

void checkParams(float scale, float eps) {
  if (!(eps > 0) || !std::isfinite(eps)) throwRangeError("expected eps > 0");
  if (!std::isfinite(scale)) throwRangeError("expected a finite scale");
}

// Standard-normal vector from a seed, normalized as normalize() does (x / max(||x||, eps)).
void seedUnitVector(float* out, int64_t n, uint64_t seed, float eps) {
  double ss = 0;
  for (int64_t k = 0; k < n; ++k) {
    out[k] = normalAt(seed, uint64_t(k));
    ss += double(out[k]) * out[k];
  }
  const double inv = 1.0 / std::max(std::sqrt(ss), double(eps));
  for (int64_t k = 0; k < n; ++k) out[k] = float(out[k] * inv);
}

}  // namespace

Normalizer::Normalizer(std::vector<TensorPtr> weights, const NormalizerOptions& options)
    : weights_(std::move(weights)), params_(options.params) {
  if (weights_.empty()) throwRangeError("expected at least one weight, got none");
  if (options.dims.size() != weights_.size())
    throwRangeError("expected one dim per weight (" + std::to_string(weights_.size()) + "), got " +
                    std::to_string(options.dims.size()));
  checkParams(params_.scale, params_.eps);
  if (options.warmupIterations < 0) throwRangeError("expected warmupIterations >= 0");

  device_ = weights_[0]->device();
  auto layers = std::make_shared<std::vector<LayerView>>();
  int64_t stateSize = 0;
  for (size_t i = 0; i < weights_.size(); ++i) {
    const TensorPtr& w = weights_[i];
    w->buffer(layerName(i).c_str());
    if (w->device() != device_)
      throwTypeError("expected every weight on one device; " + layerName(i) + " is on " + w->device()->name() +
                     ", weight 0 on " + device_->name());
    const int nd = int(w->shape().size());
    if (nd < 1) throwRangeError("expected " + layerName(i) + " to have at least 1 dimension, got a scalar");
    if (w->numel() == 0) throwRangeError("expected " + layerName(i) + " to be non-empty, got shape " + shapeToString(w->shape()));
    int dim = options.dims[i];
    if (dim < -nd || dim >= nd)
      throwRangeError("dim " + std::to_string(dim) + " is out of range for " + layerName(i) + " of shape " +
                      shapeToString(w->shape()) + " (expected " + std::to_string(-nd) + ".." + std::to_string(nd - 1) + ")");
    if (dim < 0) dim += nd;
    LayerView v = makeLayerView(w->shape(), dim);
    v.stateBegin = stateSize;
    if (v.kind != LayerKind::Vector) {
      v.u1 = stateSize;
      v.v1 = v.u1 + v.R;
      stateSize = v.v1 + v.cols1();
    }
    if (v.kind == LayerKind::Bidirectional) {
      v.u2 = stateSize;
      v.v2 = v.u2 + v.C;
      stateSize = v.v2 + v.cols2();
    }
    v.stateSize = stateSize - v.stateBegin;
    layers->push_back(v);
  }
  layers_ = std::move(layers);

  // Seed u and v of every layer on the host (identical on every backend), upload once.
  std::vector<float> init(size_t(std::max<int64_t>(stateSize, 1)));
  for (size_t i = 0; i < layers_->size(); ++i) {
    const LayerView& v = (*layers_)[i];
    const int64_t offsets[4] = {v.u1, v.v1, v.u2, v.v2};
    const int64_t sizes[4] = {v.R, v.cols1(), v.C, v.cols2()};
    for (int k = 0; k < 4; ++k)
      if (offsets[k] >= 0) seedUnitVector(&init[offsets[k]], sizes[k], deriveSeed(options.seed, i * 4 + k), params_.eps);
  }
  state_ = device_->allocate(init.size() * sizeof(float));
  device_->upload(state_, 0, init.data(), init.size() * sizeof(float));
  sigmas_ = device_->allocate(weights_.size() * kSigmaStride * sizeof(float));
  device_->fill(sigmas_, weights_.size() * kSigmaStride, 0.0f);  // zero bits: the non-finite counts too
  divisors_ = device_->allocate(weights_.size() * sizeof(double));
  device_->fill(divisors_, weights_.size() * 2, 0.0f);

  for (const TensorPtr& w : weights_) {
    TensorPtr out = Tensor::create(device_, w->shape(), w->dtype());
    out->setOwner("BSSN");
    outputs_.push_back(std::move(out));
  }
  if (options.warmupIterations > 0) enqueue(options.warmupIterations, {});
}

const std::vector<TensorPtr>& Normalizer::outputs() const {
  checkAlive();
  return outputs_;
}

void Normalizer::checkAlive() const {
  if (disposed_) throwError("BSSN was disposed", ErrorCode::Disposed);
}

void Normalizer::checkLayer(size_t layer) const {
  checkAlive();
  if (layer >= weights_.size())
    throwRangeError("layer index " + std::to_string(layer) + " is out of range (0.." + std::to_string(weights_.size() - 1) + ")");
}

LayerStateSizes Normalizer::stateSizes(size_t layer) const {
  checkLayer(layer);
  const LayerView& v = (*layers_)[layer];
  LayerStateSizes s;
  if (v.kind != LayerKind::Vector) {
    s.u1 = v.R;
    s.v1 = v.cols1();
  }
  if (v.kind == LayerKind::Bidirectional) {
    s.u2 = v.C;
    s.v2 = v.cols2();
  }
  return s;
}

NormalizeJob Normalizer::makeJob() const {
  NormalizeJob job;
  job.layers = layers_;
  job.weights.reserve(weights_.size());
  for (size_t i = 0; i < weights_.size(); ++i) job.weights.push_back(weights_[i]->buffer(layerName(i).c_str()));
  job.state = state_;
  job.sigmas = sigmas_;
  job.divisors = divisors_;
  job.params = params_;
  job.backendCache = &backendCache_;
  return job;
}

// The buffers of `tensors`, which must match the weights one to one (device and shape).
std::vector<BufferPtr> Normalizer::checkedBuffers(const std::vector<TensorPtr>& tensors, const char* what) const {
  if (tensors.size() != weights_.size())
    throwRangeError("expected " + std::to_string(weights_.size()) + " " + what + " tensors, got " + std::to_string(tensors.size()));
  std::vector<BufferPtr> buffers;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorPtr& t = tensors[i];
    const std::string name = std::string(what) + " " + std::to_string(i);
    if (t->device() != device_) throwTypeError(name + " is not on the weights' device");
    if (t->shape() != weights_[i]->shape())
      throwRangeError(name + " has shape " + shapeToString(t->shape()) + ", expected " + shapeToString(weights_[i]->shape()));
    buffers.push_back(t->buffer(name.c_str()));
  }
  return buffers;
}

void Normalizer::enqueue(int iterations, std::vector<BufferPtr> outputs, const CallParams* call) {
  NormalizeJob job = makeJob();
  if (call) job.params.scale = call->scale, job.params.eps = call->eps;
  job.outputs = std::move(outputs);
  job.iterations = iterations;
  device_->normalize(job);
}

void Normalizer::forward(int iterations, const std::vector<TensorPtr>* outputs, bool writeOutputs, const CallParams* call) {
  checkAlive();
  if (iterations < 0) throwRangeError("expected iterations >= 0");
  if (call) checkParams(call->scale, call->eps);
  std::vector<BufferPtr> outs;
  if (writeOutputs) outs = checkedBuffers(outputs ? *outputs : outputs_, "output");
  enqueue(iterations, std::move(outs), call);
}

const std::vector<TensorPtr>& Normalizer::gradOutputs() {
  checkAlive();
  if (gradOutputs_.empty()) {
    for (const TensorPtr& w : weights_) {
      TensorPtr g = Tensor::create(device_, w->shape(), w->dtype());
      g->setOwner("BSSN");
      gradOutputs_.push_back(std::move(g));
    }
  }
  return gradOutputs_;
}

void Normalizer::backward(const std::vector<TensorPtr>& grads, const std::vector<TensorPtr>* outputs) {
  checkAlive();
  NormalizeJob job = makeJob();
  job.grads = checkedBuffers(grads, "gradient");
  job.outputs = checkedBuffers(outputs ? *outputs : gradOutputs(), "weight gradient");
  device_->normalizeBackward(job);
}

std::shared_ptr<Fence> Normalizer::readSigmas(const std::shared_ptr<std::vector<float>>& host) const {
  checkAlive();
  host->resize(weights_.size() * kSigmaStride);
  return device_->download(sigmas_, 0, std::shared_ptr<void>(host, host->data()), host->size() * sizeof(float));
}

std::shared_ptr<Fence> Normalizer::readState(size_t layer, const std::shared_ptr<std::vector<float>>& host) const {
  checkLayer(layer);
  const LayerView& v = (*layers_)[layer];
  host->resize(size_t(v.stateSize));
  if (v.stateSize == 0) return device_->fence();
  return device_->download(state_, size_t(v.stateBegin) * sizeof(float), std::shared_ptr<void>(host, host->data()),
                           host->size() * sizeof(float));
}

void Normalizer::writeStateVector(size_t layer, int which, const float* values, size_t count) {
  checkLayer(layer);
  const LayerView& v = (*layers_)[layer];
  static const char* names[4] = {"u", "v", "u2", "v2"};
  if (which < 0 || which > 3) throwRangeError("expected a state vector index 0..3");
  const int64_t offsets[4] = {v.u1, v.v1, v.u2, v.v2};
  const LayerStateSizes sizes = stateSizes(layer);
  const int64_t expected[4] = {sizes.u1, sizes.v1, sizes.u2, sizes.v2};
  if (int64_t(count) != expected[which])
    throwRangeError(std::string("expected ") + names[which] + " of layer " + std::to_string(layer) + " to have " +
                    std::to_string(expected[which]) + " values, got " + std::to_string(count));
  if (count == 0) return;
  // The power iteration never holds a non-finite state (it would poison every later step).
  for (size_t k = 0; k < count; ++k)
    if (!std::isfinite(values[k]))
      throwRangeError(std::string("expected finite values in ") + names[which] + " of layer " + std::to_string(layer) + ", got " +
                      std::to_string(values[k]) + " at index " + std::to_string(k));
  device_->upload(state_, size_t(offsets[which]) * sizeof(float), values, count * sizeof(float));
}

void Normalizer::adoptState(size_t layer, const Normalizer& other, size_t otherLayer) {
  checkLayer(layer);
  other.checkLayer(otherLayer);
  if (other.device_ != device_) throwTypeError("cannot adopt state from another device");
  const LayerView& a = (*layers_)[layer];
  const LayerView& b = (*other.layers_)[otherLayer];
  if (a.kind != b.kind || a.R != b.R || a.cols1() != b.cols1() || a.C != b.C || a.cols2() != b.cols2())
    throwRangeError("cannot adopt state of a layer with other state sizes");
  if (a.stateSize == 0) return;
  device_->copy(state_, size_t(a.stateBegin) * sizeof(float), other.state_, size_t(b.stateBegin) * sizeof(float),
                size_t(a.stateSize) * sizeof(float));
}

void Normalizer::dispose() {
  if (disposed_) return;
  disposed_ = true;
  for (const TensorPtr& o : outputs_) o->release();
  for (const TensorPtr& g : gradOutputs_) g->release();
  outputs_.clear();
  gradOutputs_.clear();
  weights_.clear();
  state_.reset();
  sigmas_.reset();
  divisors_.reset();
  backendCache_.reset();
}

}  // namespace bssn
