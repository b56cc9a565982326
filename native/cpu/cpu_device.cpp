#include "cpu/cpu_device.h"

#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "core/normalize_plan.h"
#include "core/random.h"
#include "core/share.h"
#include "cpu/blas.h"
#include "cpu/normalize.h"
#include "cpu/ops.h"

namespace bssn {

namespace {

size_t envBytes(const char* name, size_t fallback) {
  const char* v = std::getenv(name);
  const long long n = v && *v ? std::atoll(v) : -1;
  return n >= 0 ? size_t(n) : fallback;
}

// Bytes of the buffers an op references: what its place in the queue keeps alive (for the queue's bound).
template <typename... Buffers>
size_t held(const Buffers&... buffers) {
  return (size_t(0) + ... + (buffers ? buffers->bytes() : 0));
}

size_t held(const NormalizeJob& job) {
  size_t bytes = held(job.state, job.sigmas, job.divisors);
  for (const auto* list : {&job.weights, &job.outputs, &job.grads})
    for (const BufferPtr& b : *list) bytes += held(b);
  return bytes;
}

size_t held(const std::vector<OptimTensor>& tensors) {
  size_t bytes = 0;
  for (const OptimTensor& t : tensors) bytes += held(t.param, t.grad, t.m, t.v);
  return bytes;
}

}  // namespace

CpuDevice::CpuDevice() : allocator_(envBytes("BSSN_CPU_CACHE_BYTES", size_t(1) << 30)) {}

DeviceInfo CpuDevice::info() {
  const cpu::Blas& b = cpu::blas();
  DeviceInfo out = {{"kind", std::string("cpu")},
                    {"name", name()},
                    {"streamThreads", 1.0},
                    {"hardwareThreads", double(std::thread::hardware_concurrency())}};
  if (cpu::blasEnabled()) out.push_back({"blas", b.name});
  else out.push_back({"blasError", b.sgemm ? std::string("turned off (the reference loops are in use)") : b.error});
  return out;
}

void* CpuDevice::allocateRaw(size_t bytes) {
  void* p = allocator_.allocate(bytes);
  if (!p) throwError("CPU allocation failed: out of memory (requested " + std::to_string(bytes) + " bytes)", ErrorCode::OutOfMemory);
  return p;
}

void CpuDevice::freeRaw(void* data, size_t bytes) noexcept { allocator_.release(data, bytes); }

// Fresh host memory that no queued task can reference yet: filled right away.
void CpuDevice::poisonRaw(void* data, size_t bytes) { std::memset(data, 0xFF, bytes); }

void CpuDevice::upload(const BufferPtr& dst, size_t dstOffset, const void* src, size_t bytes) {
  auto staged = std::make_shared<std::vector<unsigned char>>(static_cast<const unsigned char*>(src),
                                                             static_cast<const unsigned char*>(src) + bytes);
  stream_.enqueue([dst, dstOffset, staged] {
    std::memcpy(static_cast<unsigned char*>(dst->data()) + dstOffset, staged->data(), staged->size());
  }, held(dst) + bytes);
}

void CpuDevice::copy(const BufferPtr& dst, size_t dstOffset, const BufferPtr& src, size_t srcOffset, size_t bytes) {
  stream_.enqueue([dst, dstOffset, src, srcOffset, bytes] {
    std::memmove(static_cast<unsigned char*>(dst->data()) + dstOffset,
                 static_cast<const unsigned char*>(src->data()) + srcOffset, bytes);
  }, held(dst, src));
}

void CpuDevice::fill(const BufferPtr& dst, size_t count, float value) {
  stream_.enqueue([dst, count, value] {
    float* p = dst->f32();
    for (size_t k = 0; k < count; ++k) p[k] = value;
  }, held(dst));
}

void CpuDevice::randn(const BufferPtr& dst, size_t count, uint64_t seed, float std) {
  stream_.enqueue([dst, count, seed, std] {
    float* p = dst->f32();
    for (size_t k = 0; k < count; ++k) p[k] = std * normalAt(seed, k);
  }, held(dst));
}

void CpuDevice::randnFromTable(const BufferPtr& dst, size_t count, const BufferPtr& table, size_t index, float std) {
  stream_.enqueue([dst, count, table, index, std] {
    uint64_t seed;
    std::memcpy(&seed, static_cast<const char*>(table->data()) + index * sizeof(uint64_t), sizeof seed);
    float* p = dst->f32();
    for (size_t k = 0; k < count; ++k) p[k] = std * normalAt(seed, k);
  }, held(dst, table));
}

void CpuDevice::rand(const BufferPtr& dst, size_t count, uint64_t seed, float low, float high) {
  stream_.enqueue([dst, count, seed, low, high] {
    float* p = dst->f32();
    for (size_t k = 0; k < count; ++k) p[k] = low + (high - low) * uniformAt(seed, k);
  }, held(dst));
}

void CpuDevice::normalize(const NormalizeJob& job) {
  enqueueTimed("normalize", [job] { cpu::normalizeBatch(job); }, held(job));
}

void CpuDevice::normalizeBackward(const NormalizeJob& job) {
  enqueueTimed("normalizeBackward", [job] { cpu::normalizeBackwardBatch(job); }, held(job));
}

void CpuDevice::enqueueTimed(const char* name, std::function<void()> task, size_t bytes) {
  if (!kernelTiming()) return stream_.enqueue(std::move(task), bytes);
  stream_.enqueue([this, name, task = std::move(task)] {
    const auto start = std::chrono::steady_clock::now();
    task();
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::lock_guard<std::mutex> lock(timesMutex_);
    times_.push_back({name, ms});
  }, bytes);
}

std::shared_ptr<Fence> CpuDevice::takeKernelTimes(std::shared_ptr<std::vector<KernelTime>> out) {
  stream_.enqueue([this, out] {
    std::lock_guard<std::mutex> lock(timesMutex_);
    out->swap(times_);
    times_.clear();
  });
  return stream_.fence();
}

// Sharing: the data lives in the region's memfd after its control page, so another process maps it as it is.
std::shared_ptr<ShareRegion> CpuDevice::createShareRegion(size_t bytes) { return ShareRegion::create(bytes, true, DeviceKind::Cpu, 0); }

void CpuDevice::moveToShared(const BufferPtr& buffer, const std::shared_ptr<ShareRegion>& region) {
  // On the stream, the only thread that touches this device's buffers: work queued before sees the old memory.
  // Importers in this process read the buffer's pointer when their ops run: until this has run (or been dropped
  // with the stream, leaving the memory where it is), they wait, even for an exporter that is gone.
  struct MovedMark {
    explicit MovedMark(std::shared_ptr<ShareRegion> r) : region(std::move(r)) {}
    MovedMark(const MovedMark&) = delete;
    ~MovedMark() { region->markMoved(); }
    std::shared_ptr<ShareRegion> region;
  };
  auto mark = std::make_shared<MovedMark>(region);
  stream_.enqueue([this, buffer, region, mark] {
    std::memcpy(region->data(), buffer->data(), buffer->bytes());
    freeRaw(buffer->moveTo(region->data(), region), buffer->bytes());
  }, held(buffer));
}

uint32_t CpuDevice::publish(const std::shared_ptr<ShareRegion>& region) {
  const uint32_t publication = region->publish();
  stream_.enqueue([region, publication] { region->complete(publication); });
  return publication;
}

void CpuDevice::waitForPublication(ShareImport& import, uint32_t publication) {
  // A process or worker that ends while its stream waits for a slow exporter does not wait for the exporter.
  stream_.enqueue([this, region = import.region, publication] { region->waitCompleted(publication, [this] { return stream_.stopping(); }); });
}

BufferPtr CpuDevice::openShared(ShareImport& import) {
  return adoptExternal(import.region->data(), import.region->dataBytes(), import.region);
}

std::shared_ptr<Fence> CpuDevice::timestamp(std::shared_ptr<double> ms) {
  stream_.enqueue([ms, epoch = epoch_] {
    *ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - epoch).count();
  });
  return stream_.fence();
}

std::shared_ptr<Fence> CpuDevice::download(const BufferPtr& src, size_t srcOffset, std::shared_ptr<void> host, size_t bytes) {
  stream_.enqueue([src, srcOffset, host = std::move(host), bytes] {
    std::memcpy(host.get(), static_cast<const unsigned char*>(src->data()) + srcOffset, bytes);
  }, held(src));
  return stream_.fence();
}

// Training-stack ops: each captures the buffers it touches, so they outlive a dispose until the op has run.
void CpuDevice::unary(UnaryOp op, float p, const BufferPtr& x, const BufferPtr& y, size_t n) {
  stream_.enqueue([=] { cpu::unary(op, p, x->f32(), y->f32(), n); }, held(x, y));
}

void CpuDevice::unaryBackward(UnaryOp op, float p, const BufferPtr& x, const BufferPtr& y, const BufferPtr& dy, const BufferPtr& dx, size_t n) {
  stream_.enqueue([=] { cpu::unaryBackward(op, p, x ? x->f32() : nullptr, y ? y->f32() : nullptr, dy->f32(), dx->f32(), n); },
                  held(x, y, dy, dx));
}

void CpuDevice::binary(BinaryOp op, const BufferPtr& a, const BufferPtr& b, const BufferPtr& out, size_t n) {
  stream_.enqueue([=] { cpu::binary(op, a->f32(), b->f32(), out->f32(), n); }, held(a, b, out));
}

void CpuDevice::addBias(const BufferPtr& x, const BufferPtr& bias, const BufferPtr& out, size_t outer, size_t channels, size_t inner) {
  stream_.enqueue([=] { cpu::addBias(x->f32(), bias->f32(), out->f32(), outer, channels, inner); }, held(x, bias, out));
}

void CpuDevice::sumToBias(const BufferPtr& dy, const BufferPtr& db, size_t outer, size_t channels, size_t inner) {
  stream_.enqueue([=] { cpu::sumToBias(dy->f32(), db->f32(), outer, channels, inner); }, held(dy, db));
}

void CpuDevice::biasActivation(UnaryOp op, float p, const BufferPtr& x, const BufferPtr& bias, const BufferPtr& y, size_t outer,
                               size_t channels, size_t inner) {
  stream_.enqueue([=] { cpu::biasActivation(op, p, x->f32(), bias->f32(), y->f32(), outer, channels, inner); }, held(x, bias, y));
}

void CpuDevice::biasActivationBackward(UnaryOp op, float p, const BufferPtr& y, const BufferPtr& dy, const BufferPtr& dx, const BufferPtr& db,
                                       bool accumulate, size_t outer, size_t channels, size_t inner) {
  stream_.enqueue([=] { cpu::biasActivationBackward(op, p, y->f32(), dy->f32(), dx ? dx->f32() : nullptr, db ? db->f32() : nullptr, accumulate,
                                                    outer, channels, inner); },
                  held(y, dy, dx, db));
}

void CpuDevice::sum(const BufferPtr& x, size_t n, const BufferPtr& out, float scale) {
  stream_.enqueue([=] { cpu::sum(x->f32(), n, out->f32(), scale); }, held(x, out));
}

void CpuDevice::hinge(const BufferPtr& x, size_t n, size_t split, float scaleReal, float scaleFake, const BufferPtr& out) {
  stream_.enqueue([=] { cpu::hinge(x->f32(), n, split, scaleReal, scaleFake, out->f32()); }, held(x, out));
}

void CpuDevice::hingeBackward(const BufferPtr& x, const BufferPtr& g, size_t n, size_t split, float scaleReal, float scaleFake,
                              const BufferPtr& dx) {
  stream_.enqueue([=] { cpu::hingeBackward(x->f32(), g->f32(), n, split, scaleReal, scaleFake, dx->f32()); }, held(x, g, dx));
}

void CpuDevice::broadcast(const BufferPtr& scalar, const BufferPtr& out, size_t n, float scale) {
  stream_.enqueue([=] { cpu::broadcast(scalar->f32(), out->f32(), n, scale); }, held(scalar, out));
}

void CpuDevice::gemm(const GemmArgs& g) {
  stream_.enqueue([g] { cpu::gemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.a->f32(), g.b->f32(), g.beta, g.c->f32()); },
                  held(g.a, g.b, g.c));
}

void CpuDevice::adam(const AdamArgs& args) {
  stream_.enqueue([args] { cpu::adam(args); }, held(args.tensors) + held(args.step));
}

void CpuDevice::sgd(const SgdArgs& args) {
  stream_.enqueue([args] { cpu::sgd(args); }, held(args.tensors));
}

void CpuDevice::conv2dForward(const Conv2dArgs& args) {
  stream_.enqueue([args] { cpu::conv2dForward(args); }, held(args.x, args.weight, args.y));
}

void CpuDevice::conv2dBackwardData(const Conv2dArgs& args) {
  stream_.enqueue([args] { cpu::conv2dBackwardData(args); }, held(args.x, args.weight, args.y));
}

void CpuDevice::conv2dBackwardFilter(const Conv2dArgs& args) {
  stream_.enqueue([args] { cpu::conv2dBackwardFilter(args); }, held(args.x, args.weight, args.y));
}

void CpuDevice::batchNorm(const BatchNormArgs& args) {
  stream_.enqueue([args] { cpu::batchNorm(args); }, held(args.x, args.y));
}

void CpuDevice::batchNormBackward(const BatchNormBackwardArgs& args) {
  stream_.enqueue([args] { cpu::batchNormBackward(args); }, held(args.x, args.dy, args.dx));
}

}  // namespace bssn
