// The probe of a captured training step (probes.h, capturedStep): kernels, copies in every direction, a memset,
// a cuBLAS gemm, a cuDNN convolution and a child graph, run directly and as one captured graph.
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "bssn_emulator.h"
#include "cuda/common.cuh"
#include "cuda/cublas.h"
#include "cuda/cudnn.h"
#include "emulator/probes.h"

namespace bssn::emu::probes {

namespace {

__global__ void stepAffineKernel(float* out, float a, float b, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) out[i] = out[i] * a + b;
}

// acc += in (acc zeroed by the step's memset, so a memset that does not run, or runs late, shows) and ++count.
__global__ void stepAccumulateKernel(float* acc, const float* in, int* count, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) acc[i] += in[i];
  if (i == 0) ++*count;
}

void check(cudaError_t st, const char* what) {
  if (st != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(st));
}
void checkLib(int st, const char* what) {
  if (st != 0) throw std::runtime_error(std::string(what) + " failed with status " + std::to_string(st));
}

constexpr int kBlock = 128;
unsigned blocksFor(int n) { return unsigned((n + kBlock - 1) / kBlock); }

// Sizes: the input is an M x K matrix (column-major) times a K x N weight into C (M x N), which is also the
// convolution's 1 x Cin x H x W input; the convolution (3 x 3, pad 1) gives Cout x H x W.
constexpr int M = 8, K = 16, N = 12, Cin = 2, H = 6, W = 8, Cout = 3, R = 3;
constexpr int kIn = M * K, kC = M * N, kY = Cout * H * W, kFilter = Cout * Cin * R * R;
static_assert(kC == Cin * H * W, "the gemm's output is the convolution's input");

struct Step {
  cudaStream_t stream = nullptr, other = nullptr;
  cublas::Handle blas = nullptr;
  cudnn::Handle dnn = nullptr;
  cudnn::TensorDesc xd = nullptr, yd = nullptr;
  cudnn::FilterDesc wd = nullptr;
  cudnn::ConvDesc cd = nullptr;
  float *in = nullptr, *copy = nullptr, *acc = nullptr, *weight = nullptr, *c = nullptr, *filter = nullptr, *y = nullptr;
  int* count = nullptr;
  void* workspace = nullptr;
  size_t workspaceBytes = 0;
  float *hostIn = nullptr, *hostOut = nullptr;  // pinned
  cudaGraphExec_t child = nullptr;              // y = y * s[2] + s[3], captured on `other`
  std::vector<float> s;

  template <typename T>
  T* device(size_t n) {
    void* p = nullptr;
    check(cudaMalloc(&p, n * sizeof(T)), "cudaMalloc");
    return static_cast<T*>(p);
  }

  explicit Step(const std::vector<float>& scalars) : s(scalars) {
    if (s.size() != 6) throw std::invalid_argument("capturedStep: 6 scalars");
    check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    check(cudaStreamCreateWithFlags(&other, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    const cuda::CublasApi& b = cuda::cublasApi();
    checkLib(b.create(&blas), "cublasCreate");
    checkLib(b.setStream(blas, stream), "cublasSetStream");
    const cuda::CudnnApi& d = cuda::cudnnApi();
    checkLib(d.create(&dnn), "cudnnCreate");
    checkLib(d.setStream(dnn, stream), "cudnnSetStream");
    checkLib(d.createTensorDesc(&xd), "cudnnCreateTensorDescriptor");
    checkLib(d.setTensor4d(xd, cudnn::kTensorNCHW, cudnn::kDataFloat, 1, Cin, H, W), "cudnnSetTensor4dDescriptor");
    checkLib(d.createTensorDesc(&yd), "cudnnCreateTensorDescriptor");
    checkLib(d.setTensor4d(yd, cudnn::kTensorNCHW, cudnn::kDataFloat, 1, Cout, H, W), "cudnnSetTensor4dDescriptor");
    checkLib(d.createFilterDesc(&wd), "cudnnCreateFilterDescriptor");
    checkLib(d.setFilter4d(wd, cudnn::kDataFloat, cudnn::kTensorNCHW, Cout, Cin, R, R), "cudnnSetFilter4dDescriptor");
    checkLib(d.createConvDesc(&cd), "cudnnCreateConvolutionDescriptor");
    checkLib(d.setConv2d(cd, 1, 1, 1, 1, 1, 1, cudnn::kCrossCorrelation, cudnn::kDataFloat), "cudnnSetConvolution2dDescriptor");
    // fp32 math: the test compares with a float64 reference at fp32's tolerance (TF32 is test/tf32.test.ts's)
    checkLib(d.setConvMathType(cd, cudnn::kFmaMath), "cudnnSetConvolutionMathType");
    checkLib(d.getFwdWorkspace(dnn, xd, wd, cd, yd, 0, &workspaceBytes), "cudnnGetConvolutionForwardWorkspaceSize");
    in = device<float>(kIn), copy = device<float>(kIn), acc = device<float>(kIn), weight = device<float>(K * N);
    c = device<float>(kC), filter = device<float>(kFilter), y = device<float>(kY), count = device<int>(1);
    if (workspaceBytes) check(cudaMalloc(&workspace, workspaceBytes), "cudaMalloc");
    void* p = nullptr;
    check(cudaHostAlloc(&p, kIn * sizeof(float), cudaHostAllocDefault), "cudaHostAlloc");
    hostIn = static_cast<float*>(p);
    check(cudaHostAlloc(&p, kY * sizeof(float), cudaHostAllocDefault), "cudaHostAlloc");
    hostOut = static_cast<float*>(p);
    // The child graph, as bssn's normalization captures its own.
    check(cudaStreamBeginCapture(other, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    BSSN_LAUNCH(stepAffineKernel, blocksFor(kY), kBlock, 0, other, y, s[2], s[3], kY);
    const cudaError_t launched = cudaGetLastError();
    cudaGraph_t graph = nullptr;
    const cudaError_t ended = cudaStreamEndCapture(other, &graph);  // ended either way: no capture outlives the probe
    check(launched, "launch into the child capture");
    check(ended, "cudaStreamEndCapture");
    check(cudaGraphInstantiate(&child, graph, 0), "cudaGraphInstantiate");
    check(cudaGraphDestroy(graph), "cudaGraphDestroy");
  }

  ~Step() {
    cudaDeviceSynchronize();
    cudaGraphExecDestroy(child);
    for (void* p : {static_cast<void*>(in), static_cast<void*>(copy), static_cast<void*>(acc), static_cast<void*>(weight),
                    static_cast<void*>(c), static_cast<void*>(filter), static_cast<void*>(y), static_cast<void*>(count), workspace})
      cudaFree(p);
    cudaFreeHost(hostIn);
    cudaFreeHost(hostOut);
    const cuda::CudnnApi& d = cuda::cudnnApi();
    d.destroyTensorDesc(xd), d.destroyTensorDesc(yd), d.destroyFilterDesc(wd), d.destroyConvDesc(cd), d.destroy(dnn);
    cuda::cublasApi().destroy(blas);
    cudaStreamDestroy(stream);
    cudaStreamDestroy(other);
  }

  // The same starting state for both runs: weights, the gemm's accumulator and the filter from `init`, the count
  // zeroed, every output poisoned (NaN bytes), the pinned output too.
  void reset(const std::vector<float>& init) {
    if (init.size() != size_t(K * N + kC + kFilter)) throw std::invalid_argument("capturedStep: init size");
    check(cudaMemcpy(weight, init.data(), K * N * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
    check(cudaMemcpy(c, init.data() + K * N, kC * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
    check(cudaMemcpy(filter, init.data() + K * N + kC, kFilter * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
    for (float* p : {in, copy, acc}) check(cudaMemsetAsync(p, 0xFF, kIn * sizeof(float), stream), "cudaMemsetAsync");
    check(cudaMemsetAsync(y, 0xFF, kY * sizeof(float), stream), "cudaMemsetAsync");
    check(cudaMemsetAsync(count, 0, sizeof(int), stream), "cudaMemsetAsync");
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    std::memset(hostOut, 0xFF, kY * sizeof(float));
  }

  // One step on `stream`, every call's status checked: upload, kernel, device copy, memset, kernel, gemm,
  // convolution, child graph, download.
  void enqueue() {
    check(cudaMemcpyAsync(in, hostIn, kIn * sizeof(float), cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync H2D");
    BSSN_LAUNCH(stepAffineKernel, blocksFor(kIn), kBlock, 0, stream, in, s[0], s[1], kIn);
    check(cudaGetLastError(), "launch affine");
    check(cudaMemcpyAsync(copy, in, kIn * sizeof(float), cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync D2D");
    check(cudaMemsetAsync(acc, 0, kIn * sizeof(float), stream), "cudaMemsetAsync");
    BSSN_LAUNCH(stepAccumulateKernel, blocksFor(kIn), kBlock, 0, stream, acc, copy, count, kIn);
    check(cudaGetLastError(), "launch accumulate");
    const float alpha = s[4], beta = s[5];  // host scalars, read at the call (as cuBLAS in host pointer mode)
    checkLib(cuda::cublasApi().sgemm(blas, 0, 0, M, N, K, &alpha, acc, M, weight, K, &beta, c, M), "cublasSgemm");
    const float one = 1.0f, zero = 0.0f;
    checkLib(cuda::cudnnApi().convFwd(dnn, &one, xd, c, wd, filter, cd, 0, workspace, workspaceBytes, &zero, yd, y),
             "cudnnConvolutionForward");
    check(cudaGraphLaunch(child, stream), "cudaGraphLaunch (child)");
    check(cudaMemcpyAsync(hostOut, y, kY * sizeof(float), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync D2H");
  }

  // What a run left: the pinned download of each step, then the device buffers.
  void read(Report& report, const std::string& prefix, const std::vector<double>& downloads) const {
    const auto get = [](const float* p, size_t n) {
      std::vector<float> f(n);
      check(cudaMemcpy(f.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
      return std::vector<double>(f.begin(), f.end());
    };
    int n = 0;
    check(cudaMemcpy(&n, count, sizeof(int), cudaMemcpyDeviceToHost), "cudaMemcpy");
    report.values.push_back({prefix + "downloads", downloads});
    report.values.push_back({prefix + "in", get(in, kIn)});
    report.values.push_back({prefix + "acc", get(acc, kIn)});
    report.values.push_back({prefix + "c", get(c, kC)});
    report.values.push_back({prefix + "y", get(y, kY)});
    report.values.push_back({prefix + "count", {double(n)}});
  }
};

std::vector<double> stats() {
  BssnEmuStats s{};
  bssnEmuStats(&s);
  return {double(s.launches), double(s.graphLaunches)};
}

}  // namespace

Report capturedStep(const std::vector<float>& inputs, const std::vector<float>& init, const std::vector<float>& scalars, int mode) {
  if (inputs.empty() || inputs.size() % kIn) throw std::invalid_argument("capturedStep: inputs of whole steps");
  const size_t steps = inputs.size() / kIn;
  Report report;
  const auto status = [&](const std::string& what, cudaError_t st) { report.statuses.push_back({what, cudaGetErrorName(st)}); };
  Step step(scalars);
  // Each step uploads its own input, written into the pinned buffer before the step: a replay reads it then.
  const auto run = [&](const std::string& prefix, const auto& once) {
    std::vector<double> downloads;
    const bool counting = bssnEmuCountingAvailable() != 0;
    if (counting) bssnEmuCountingStart();
    for (size_t r = 0; r < steps; ++r) {
      std::memcpy(step.hostIn, inputs.data() + r * kIn, kIn * sizeof(float));
      once();
      check(cudaStreamSynchronize(step.stream), "cudaStreamSynchronize");
      downloads.insert(downloads.end(), step.hostOut, step.hostOut + kY);
      std::memset(step.hostOut, 0xFF, kY * sizeof(float));  // poisoned again: the next step must write it
    }
    if (counting) {
      BssnEmuCost c{};
      bssnEmuCountingStop(&c);
      report.values.push_back({prefix + "cost", {double(c.launches), double(c.graphLaunches), double(c.graphNodes), double(c.bytesToDevice),
                                                 double(c.bytesToHost), double(c.bytesDeviceToDevice)}});
    }
    step.read(report, prefix, downloads);
  };

  step.reset(init);
  std::vector<double> before = stats();
  run("direct.", [&] { step.enqueue(); });
  std::vector<double> after = stats();
  report.values.push_back({"direct.stats", {after[0] - before[0], after[1] - before[1]}});

  step.reset(init);
  before = stats();
  status("begin", cudaStreamBeginCapture(step.stream, cudaStreamCaptureMode(mode)));
  cudaStreamCaptureStatus captureStatus = cudaStreamCaptureStatusNone;
  unsigned long long id = 0;
  status("captureInfo", cudaStreamGetCaptureInfo(step.stream, &captureStatus, &id));
  cudaGraph_t graph = nullptr;
  status("captureInfoGraph", cudaStreamGetCaptureInfo(step.stream, &captureStatus, &id, &graph));
  cudaGetLastError();  // that refusal is the last error until read; the launches check theirs
  report.values.push_back({"captureInfo", {double(captureStatus), double(id)}});
  step.enqueue();
  status("end", cudaStreamEndCapture(step.stream, &graph));
  status("captureInfoAfterEnd", cudaStreamGetCaptureInfo(step.stream, &captureStatus));
  report.values.push_back({"captureStatusAfterEnd", {double(captureStatus)}});
  cudaGraphExec_t exec = nullptr;
  status("instantiate", cudaGraphInstantiate(&exec, graph, 0));
  status("graphDestroy", cudaGraphDestroy(graph));
  after = stats();
  report.values.push_back({"capture.stats", {after[0] - before[0], after[1] - before[1]}});
  // Nothing ran during the capture: the output and its download are still poisoned, the count zero.
  status("syncAfterCapture", cudaStreamSynchronize(step.stream));
  step.read(report, "afterCapture.", {});
  report.values.push_back({"afterCapture.hostOutNaN", {double(std::isnan(step.hostOut[0]) && std::isnan(step.hostOut[kY - 1]))}});

  step.reset(init);
  before = stats();
  run("replay.", [&] { check(cudaGraphLaunch(exec, step.stream), "cudaGraphLaunch"); });
  after = stats();
  report.values.push_back({"replay.stats", {after[0] - before[0], after[1] - before[1]}});
  status("execDestroy", cudaGraphExecDestroy(exec));
  return report;
}

std::string copyNodeAfterFree() {
  cudaStream_t stream = nullptr;
  check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  void *a = nullptr, *b = nullptr;
  check(cudaMalloc(&a, 256), "cudaMalloc");
  check(cudaMalloc(&b, 256), "cudaMalloc");
  check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), "cudaStreamBeginCapture");
  check(cudaMemcpyAsync(b, a, 256, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync");
  cudaGraph_t graph = nullptr;
  check(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
  cudaGraphExec_t exec = nullptr;
  check(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
  check(cudaFree(b), "cudaFree");
  check(cudaGraphLaunch(exec, stream), "cudaGraphLaunch");
  const cudaError_t st = cudaStreamSynchronize(stream);
  return std::string(cudaGetErrorName(st)) + ": " + bssnEmuStickyMessage();  // the context is dead: nothing to free
}

}  // namespace bssn::emu::probes
