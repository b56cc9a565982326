#include "cuda/conv.h"

#include <algorithm>
#include <climits>
#include <string>

#include "core/device.h"
#include "core/error.h"
#include "cuda/cuda_device.h"
#include "cuda/cudnn.h"

namespace bssn::cuda {

namespace {

void check(const char* call, cudnn::Status st) {
  if (st != cudnn::kSuccess) throwCudnn(call, st);
}

int narrow(int64_t v, const char* what) {
  if (v < 0 || v > INT_MAX) throwRangeError(std::string("convolution ") + what + " exceeds cuDNN's 32-bit limits");
  return int(v);
}

// The heuristics' first algorithm that can run (status success) in an allowed math type, or, preferably, the
// first deterministic one, so that a training run repeats bit for bit (--resume relies on it; backward algorithm 0
// sums with atomics and is not), as long as its workspace is not much larger (an FFT algorithm's can be gigabytes).
// Without TF32 only FMA-math entries qualify (PyTorch asserts the same): the heuristics may rank tensor-op ones.
const cudnn::AlgoPerf& pickAlgo(const cudnn::AlgoPerf* perf, int count, bool tf32, const char* call) {
  const auto usable = [&](const cudnn::AlgoPerf& p) { return p.status == cudnn::kSuccess && (tf32 || p.mathType == cudnn::kFmaMath); };
  const cudnn::AlgoPerf* first = nullptr;
  for (int i = 0; i < count && !first; ++i)
    if (usable(perf[i])) first = &perf[i];
  if (!first) throwError(std::string(call) + ": no convolution algorithm is available for this shape");
  const size_t budget = std::max(2 * first->memory, size_t(64) << 20);
  for (int i = 0; i < count; ++i)
    if (usable(perf[i]) && perf[i].determinism == cudnn::kDeterministic && perf[i].memory <= budget) return perf[i];
  return *first;
}

}  // namespace

struct ConvCache::Plan {
  cudnn::TensorDesc x = nullptr, y = nullptr;
  cudnn::FilterDesc w = nullptr;
  cudnn::ConvDesc conv = nullptr;
  int fwdAlgo = -1, bwdDataAlgo = -1, bwdFilterAlgo = -1;
  // The math type each chosen algorithm runs with (its perf entry's; cuDNN 7.4+ needs algorithm and math type
  // together), the one the descriptor holds now, and whether TF32 was allowed when the algorithms were chosen.
  int fwdMath = cudnn::kFmaMath, bwdDataMath = cudnn::kFmaMath, bwdFilterMath = cudnn::kFmaMath;
  int descMath = cudnn::kFmaMath;
  bool tf32 = false;
  size_t fwdBytes = 0, bwdDataBytes = 0, bwdFilterBytes = 0;

  ~Plan() {
    const CudnnApi& api = cudnnApi();
    if (x) api.destroyTensorDesc(x);
    if (y) api.destroyTensorDesc(y);
    if (w) api.destroyFilterDesc(w);
    if (conv) api.destroyConvDesc(conv);
  }
};

ConvCache::ConvCache(CudaDevice& device) : device_(device) {}
ConvCache::~ConvCache() = default;

ConvCache::Plan& ConvCache::planFor(const Conv2dArgs& a) {
  const Key key{a.n, a.cIn, a.h, a.w, a.cOut, a.kh, a.kw, a.strideH, a.strideW, a.padH, a.padW};
  auto found = plans_.find(key);
  if (found != plans_.end()) return *found->second;

  const CudnnApi& api = cudnnApi();
  auto plan = std::make_unique<Plan>();
  check("cudnnCreateTensorDescriptor", api.createTensorDesc(&plan->x));
  check("cudnnCreateTensorDescriptor", api.createTensorDesc(&plan->y));
  check("cudnnCreateFilterDescriptor", api.createFilterDesc(&plan->w));
  check("cudnnCreateConvolutionDescriptor", api.createConvDesc(&plan->conv));
  check("cudnnSetTensor4dDescriptor", api.setTensor4d(plan->x, cudnn::kTensorNCHW, cudnn::kDataFloat, narrow(a.n, "batch"),
                                                      narrow(a.cIn, "channels"), narrow(a.h, "height"), narrow(a.w, "width")));
  check("cudnnSetTensor4dDescriptor", api.setTensor4d(plan->y, cudnn::kTensorNCHW, cudnn::kDataFloat, narrow(a.n, "batch"),
                                                      narrow(a.cOut, "channels"), narrow(a.outH, "height"), narrow(a.outW, "width")));
  check("cudnnSetFilter4dDescriptor", api.setFilter4d(plan->w, cudnn::kDataFloat, cudnn::kTensorNCHW, narrow(a.cOut, "channels"),
                                                      narrow(a.cIn, "channels"), narrow(a.kh, "kernel"), narrow(a.kw, "kernel")));
  check("cudnnSetConvolution2dDescriptor", api.setConv2d(plan->conv, narrow(a.padH, "padding"), narrow(a.padW, "padding"),
                                                         narrow(a.strideH, "stride"), narrow(a.strideW, "stride"), 1, 1,
                                                         cudnn::kCrossCorrelation, cudnn::kDataFloat));
  check("cudnnSetConvolutionMathType", api.setConvMathType(plan->conv, cudnn::kFmaMath));
  return *plans_.emplace(key, std::move(plan)).first->second;
}

// The plan for `a` with algorithms chosen for the device's current TF32 setting (chosen again after it changes).
ConvCache::Plan& ConvCache::current(const Conv2dArgs& a) {
  Plan& p = planFor(a);
  const bool tf32 = device_.tf32().conv;
  if (p.tf32 != tf32) {
    p.fwdAlgo = p.bwdDataAlgo = p.bwdFilterAlgo = -1;
    p.tf32 = tf32;
  }
  return p;
}

void ConvCache::setMath(Plan& p, int math) {
  if (p.descMath == math) return;
  check("cudnnSetConvolutionMathType", cudnnApi().setConvMathType(p.conv, math));
  p.descMath = math;
}

// What the heuristics are asked under: DEFAULT_MATH lets them offer TF32 tensor-core algorithms for float data.
int ConvCache::queryMath(const Plan& p) { return p.tf32 ? cudnn::kDefaultMath : cudnn::kFmaMath; }

void ConvCache::forward(const Conv2dArgs& a) {
  const CudnnApi& api = cudnnApi();
  cudnn::Handle h = device_.cudnnHandle();
  Plan& p = current(a);
  if (p.fwdAlgo < 0) {
    cudnn::AlgoPerf perf[8];
    int count = 0;
    setMath(p, queryMath(p));
    check("cudnnGetConvolutionForwardAlgorithm_v7", api.getFwdAlgo(h, p.x, p.w, p.conv, p.y, 8, &count, perf));
    const cudnn::AlgoPerf& chosen = pickAlgo(perf, count, p.tf32, "cudnnGetConvolutionForwardAlgorithm_v7");
    p.fwdAlgo = chosen.algo;
    p.fwdMath = chosen.mathType;
    setMath(p, p.fwdMath);
    check("cudnnGetConvolutionForwardWorkspaceSize", api.getFwdWorkspace(h, p.x, p.w, p.conv, p.y, p.fwdAlgo, &p.fwdBytes));
  }
  setMath(p, p.fwdMath);
  BufferPtr workspace = p.fwdBytes ? device_.allocate(p.fwdBytes) : nullptr;  // stream-ordered: freed after the op
  const float one = 1.0f, zero = 0.0f;
  check("cudnnConvolutionForward", api.convFwd(h, &one, p.x, a.x->data(), p.w, a.weight->data(), p.conv, p.fwdAlgo,
                                               workspace ? workspace->data() : nullptr, p.fwdBytes, &zero, p.y, a.y->data()));
}

void ConvCache::backwardData(const Conv2dArgs& a) {
  const CudnnApi& api = cudnnApi();
  cudnn::Handle h = device_.cudnnHandle();
  Plan& p = current(a);
  if (p.bwdDataAlgo < 0) {
    cudnn::AlgoPerf perf[8];
    int count = 0;
    setMath(p, queryMath(p));
    check("cudnnGetConvolutionBackwardDataAlgorithm_v7", api.getBwdDataAlgo(h, p.w, p.y, p.conv, p.x, 8, &count, perf));
    const cudnn::AlgoPerf& chosen = pickAlgo(perf, count, p.tf32, "cudnnGetConvolutionBackwardDataAlgorithm_v7");
    p.bwdDataAlgo = chosen.algo;
    p.bwdDataMath = chosen.mathType;
    setMath(p, p.bwdDataMath);
    check("cudnnGetConvolutionBackwardDataWorkspaceSize", api.getBwdDataWorkspace(h, p.w, p.y, p.conv, p.x, p.bwdDataAlgo, &p.bwdDataBytes));
  }
  setMath(p, p.bwdDataMath);
  BufferPtr workspace = p.bwdDataBytes ? device_.allocate(p.bwdDataBytes) : nullptr;
  const float one = 1.0f, zero = 0.0f;
  check("cudnnConvolutionBackwardData", api.convBwdData(h, &one, p.w, a.weight->data(), p.y, a.y->data(), p.conv, p.bwdDataAlgo,
                                                        workspace ? workspace->data() : nullptr, p.bwdDataBytes, &zero, p.x, a.x->data()));
}

void ConvCache::backwardFilter(const Conv2dArgs& a) {
  const CudnnApi& api = cudnnApi();
  cudnn::Handle h = device_.cudnnHandle();
  Plan& p = current(a);
  if (p.bwdFilterAlgo < 0) {
    cudnn::AlgoPerf perf[8];
    int count = 0;
    setMath(p, queryMath(p));
    check("cudnnGetConvolutionBackwardFilterAlgorithm_v7", api.getBwdFilterAlgo(h, p.x, p.y, p.conv, p.w, 8, &count, perf));
    const cudnn::AlgoPerf& chosen = pickAlgo(perf, count, p.tf32, "cudnnGetConvolutionBackwardFilterAlgorithm_v7");
    p.bwdFilterAlgo = chosen.algo;
    p.bwdFilterMath = chosen.mathType;
    setMath(p, p.bwdFilterMath);
    check("cudnnGetConvolutionBackwardFilterWorkspaceSize",
          api.getBwdFilterWorkspace(h, p.x, p.y, p.conv, p.w, p.bwdFilterAlgo, &p.bwdFilterBytes));
  }
  setMath(p, p.bwdFilterMath);
  BufferPtr workspace = p.bwdFilterBytes ? device_.allocate(p.bwdFilterBytes) : nullptr;
  const float one = 1.0f, zero = 0.0f;
  check("cudnnConvolutionBackwardFilter", api.convBwdFilter(h, &one, p.x, a.x->data(), p.y, a.y->data(), p.conv, p.bwdFilterAlgo,
                                                            workspace ? workspace->data() : nullptr, p.bwdFilterBytes, &zero, p.w,
                                                            a.weight->data()));
}

}  // namespace bssn::cuda
