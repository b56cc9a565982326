// libcudnn_emu: the cuDNN entry points bssn loads (native/cuda/cudnn_api.h), with cuDNN 9's names, status values
// and semantics for 2-D NCHW float convolutions, computing on the CPU in stream order on an emulated stream.
// Written from the definition, independent of bssn's CPU backend, so the two check each other.
//
// Two algorithms for each direction: 0 computes directly (no workspace), 1 goes through an im2col-style buffer
// in the caller's workspace, so a workspace that is too small or not device memory faults as on a GPU. The
// algorithm queries rank 1 first, so bssn's workspace path is the one exercised.
//
// Math types as cuDNN 9 treats float data: CUDNN_FMA_MATH computes in fp32 (double here); the others allow TF32
// tensor cores, which this library always takes (the heuristics report such algorithms as TENSOR_OP_MATH), so
// it rounds the inputs (x, w, dy) to TF32 before computing in double.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <thread>
#include <vector>

#include "bssn_emulator.h"
#include "tf32.h"

#define CUDNN_EMU_API extern "C" __attribute__((visibility("default")))

// What the Set calls stored; `set` is false until then (using an unset descriptor is BAD_PARAM).
struct cudnnTensorStruct {
  bool set = false;
  int n = 0, c = 0, h = 0, w = 0;
};
struct cudnnFilterStruct {
  bool set = false;
  int k = 0, c = 0, h = 0, w = 0;
};
struct cudnnConvolutionStruct {
  bool set = false;
  int padH = 0, padW = 0, strideH = 1, strideW = 1, dilationH = 1, dilationW = 1, mode = 0, computeType = 0;
  int mathType = 0;  // CUDNN_DEFAULT_MATH
};
// The handle holds its stream (the null stream until cudnnSetStream).
struct cudnnContext {
  std::atomic<cudaStream_t> stream{nullptr};
};

namespace {

// cudnnStatus_t (cuDNN 9 numbering)
enum : int {
  kSuccess = 0,
  kBadParam = 2000,
  kBadParamNull = 2002,
  kNotSupported = 3000,
  kExecutionFailed = 5000,
};
constexpr int kMajor = 9, kMinor = 13, kPatch = 0;  // a cuDNN 9 release for CUDA 13
constexpr int kNCHW = 0, kFormatCount = 3;          // cudnnTensorFormat_t: NCHW, NHWC, NCHW_VECT_C
constexpr int kFloat = 0, kDataTypeCount = 22;      // cudnnDataType_t
constexpr int kConvolution = 0, kCrossCorrelation = 1;
constexpr int kTensorOpMath = 1, kFmaMath = 3;  // cudnnMathType_t
constexpr int kNonDeterministic = 0, kDeterministic = 1;  // cudnnDeterminism_t
// Algorithm enumerants per direction (FWD_ALGO_COUNT, BWD_DATA_ALGO_COUNT, BWD_FILTER_ALGO_COUNT); this library
// implements 0 and 1 of each, the rest are valid names it does not support.
constexpr int kFwdAlgoCount = 8, kBwdDataAlgoCount = 6, kBwdFilterAlgoCount = 7;

enum class Dir { Fwd, BwdData, BwdFilter };

// One convolution's geometry, copied into the enqueued work (descriptors may be destroyed before it runs).
struct Geometry {
  int n, c, h, w;       // x
  int k, r, s;          // filter: k x c x r x s
  int p, q;             // y: n x k x p x q
  int padH, padW, strideH, strideW, dilH, dilW;
  bool flip;            // CUDNN_CONVOLUTION: the kernel is applied flipped
  size_t xCount() const { return size_t(n) * c * h * w; }
  size_t wCount() const { return size_t(k) * c * r * s; }
  size_t yCount() const { return size_t(n) * k * p * q; }
  size_t colRows() const { return size_t(c) * r * s; }  // im2col: one row per (channel, tap), one column per output pixel
  size_t colCols() const { return size_t(p) * q; }
  // The stored filter tap that meets input offset (i, j) of the window (the flip of CONVOLUTION mode).
  size_t tap(int ch, int i, int j) const { return (size_t(ch) * r + (flip ? r - 1 - i : i)) * s + (flip ? s - 1 - j : j); }
};

// The workspace algorithm 1 needs: an im2col buffer of one image (floats: exact copies of x), or for backward
// data the per-image W^T dy partial sums (doubles, so nothing is rounded before col2im).
size_t workspaceBytes(const Geometry& g, Dir dir, int algo) {
  if (algo == 0) return 0;
  return g.colRows() * g.colCols() * (dir == Dir::BwdData ? sizeof(double) : sizeof(float));
}

// Checks the descriptors agree (x's channels are the filter's, y's shape is the output's) and fills g.
int geometry(const cudnnTensorStruct* x, const cudnnFilterStruct* w, const cudnnConvolutionStruct* conv, const cudnnTensorStruct* y,
             Geometry& g) {
  if (!x || !w || !conv || !y) return kBadParamNull;
  if (!x->set || !w->set || !conv->set || !y->set) return kBadParam;
  if (conv->computeType != kFloat) return kNotSupported;
  const int64_t extentH = int64_t(conv->dilationH) * (w->h - 1) + 1, extentW = int64_t(conv->dilationW) * (w->w - 1) + 1;
  const int64_t spanH = int64_t(x->h) + 2 * int64_t(conv->padH) - extentH, spanW = int64_t(x->w) + 2 * int64_t(conv->padW) - extentW;
  if (x->c != w->c || spanH < 0 || spanW < 0) return kBadParam;
  const int64_t p = spanH / conv->strideH + 1, q = spanW / conv->strideW + 1;
  if (y->n != x->n || y->c != w->k || y->h != p || y->w != q) return kBadParam;
  g = Geometry{x->n, x->c, x->h, x->w, w->k, w->h, w->w, int(p), int(q), conv->padH, conv->padW,
               conv->strideH, conv->strideW, conv->dilationH, conv->dilationW, conv->mode == kConvolution};
  return kSuccess;
}

// Runs body(i) for i in [0, count), split over cores when there is enough work; each i is independent, so the
// result does not depend on the split.
template <typename F>
void parallelFor(int64_t count, double workPerItem, const F& body) {
  const int64_t cores = std::max(1u, std::thread::hardware_concurrency());
  const int64_t threads = std::min<int64_t>({cores, count, int64_t(double(count) * workPerItem / (1 << 18)) + 1});
  if (threads <= 1) {
    for (int64_t i = 0; i < count; ++i) body(i);
    return;
  }
  std::vector<std::thread> pool;
  for (int64_t t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (int64_t i = count * t / threads; i < count * (t + 1) / threads; ++i) body(i);
    });
  for (auto& th : pool) th.join();
}

// out = alpha * result + beta * out; out is not read when beta == 0 (NaN in it must not show).
inline void blend(float& out, double result, float alpha, float beta) {
  out = float(double(alpha) * result + (beta != 0 ? double(beta) * out : 0.0));
}

// The input row (or column) that output row o meets at filter offset i, maybe outside [0, h).
inline int64_t inputAt(int64_t o, int i, int stride, int pad, int dilation) { return o * stride - pad + int64_t(i) * dilation; }
// The output row that meets input row ih at filter offset i, or -1 when none does.
inline int64_t outputAt(int64_t ih, int i, int stride, int pad, int dilation, int outSize) {
  const int64_t t = ih + pad - int64_t(i) * dilation;
  if (t < 0 || t % stride != 0 || t / stride >= outSize) return -1;
  return t / stride;
}

// Fills col (rows: channel x tap as the stored filter orders them; columns: output pixels) from image `img` of x.
void im2col(const Geometry& g, const float* x, int img, float* col) {
  const float* xi = x + size_t(img) * g.c * g.h * g.w;
  for (int ch = 0; ch < g.c; ++ch)
    for (int i = 0; i < g.r; ++i)
      for (int j = 0; j < g.s; ++j) {
        float* row = col + g.tap(ch, i, j) * g.colCols();
        for (int po = 0; po < g.p; ++po) {
          const int64_t ih = inputAt(po, i, g.strideH, g.padH, g.dilH);
          for (int qo = 0; qo < g.q; ++qo) {
            const int64_t iw = inputAt(qo, j, g.strideW, g.padW, g.dilW);
            row[size_t(po) * g.q + qo] = ih >= 0 && ih < g.h && iw >= 0 && iw < g.w ? xi[(size_t(ch) * g.h + ih) * g.w + iw] : 0.0f;
          }
        }
      }
}

// y = conv(x, w).
void forward(const Geometry& g, int algo, const float* x, const float* w, float* y, void* ws, float alpha, float beta) {
  const size_t pq = g.colCols(), crs = g.colRows();
  if (algo == 0) {
    parallelFor(int64_t(g.n) * g.k, double(pq * crs), [&](int64_t nk) {
      const int img = int(nk / g.k), ko = int(nk % g.k);
      for (int po = 0; po < g.p; ++po)
        for (int qo = 0; qo < g.q; ++qo) {
          double sum = 0;
          for (int ch = 0; ch < g.c; ++ch)
            for (int i = 0; i < g.r; ++i) {
              const int64_t ih = inputAt(po, i, g.strideH, g.padH, g.dilH);
              if (ih < 0 || ih >= g.h) continue;
              for (int j = 0; j < g.s; ++j) {
                const int64_t iw = inputAt(qo, j, g.strideW, g.padW, g.dilW);
                if (iw < 0 || iw >= g.w) continue;
                sum += double(x[((size_t(img) * g.c + ch) * g.h + ih) * g.w + iw]) * w[size_t(ko) * crs + g.tap(ch, i, j)];
              }
            }
          blend(y[(size_t(img) * g.k + ko) * pq + size_t(po) * g.q + qo], sum, alpha, beta);
        }
    });
    return;
  }
  float* col = static_cast<float*>(ws);
  for (int img = 0; img < g.n; ++img) {
    im2col(g, x, img, col);
    parallelFor(g.k, double(pq * crs), [&](int64_t ko) {  // y[img] = W (k x crs) col (crs x pq)
      std::vector<double> acc(pq, 0.0);
      for (size_t t = 0; t < crs; ++t) {
        const double wt = w[size_t(ko) * crs + t];
        const float* row = col + t * pq;
        for (size_t o = 0; o < pq; ++o) acc[o] += wt * row[o];
      }
      float* yk = y + (size_t(img) * g.k + ko) * pq;
      for (size_t o = 0; o < pq; ++o) blend(yk[o], acc[o], alpha, beta);
    });
  }
}

// dx = conv^T(dy, w): each input pixel gathers the output pixels and taps that read it.
void backwardData(const Geometry& g, int algo, const float* w, const float* dy, float* dx, void* ws, float alpha, float beta) {
  const size_t pq = g.colCols(), crs = g.colRows(), hw = size_t(g.h) * g.w;
  if (algo == 0) {
    parallelFor(int64_t(g.n) * g.c, double(hw) * g.k * g.r * g.s, [&](int64_t nc) {
      const int img = int(nc / g.c), ch = int(nc % g.c);
      for (int ih = 0; ih < g.h; ++ih)
        for (int iw = 0; iw < g.w; ++iw) {
          double sum = 0;
          for (int i = 0; i < g.r; ++i) {
            const int64_t po = outputAt(ih, i, g.strideH, g.padH, g.dilH, g.p);
            if (po < 0) continue;
            for (int j = 0; j < g.s; ++j) {
              const int64_t qo = outputAt(iw, j, g.strideW, g.padW, g.dilW, g.q);
              if (qo < 0) continue;
              for (int ko = 0; ko < g.k; ++ko)
                sum += double(dy[(size_t(img) * g.k + ko) * pq + size_t(po) * g.q + qo]) * w[size_t(ko) * crs + g.tap(ch, i, j)];
            }
          }
          blend(dx[(size_t(img) * g.c + ch) * hw + size_t(ih) * g.w + iw], sum, alpha, beta);
        }
    });
    return;
  }
  double* col = static_cast<double*>(ws);
  for (int img = 0; img < g.n; ++img) {
    parallelFor(int64_t(crs), double(pq) * g.k, [&](int64_t t) {  // col = W^T (crs x k) dy[img] (k x pq)
      double* row = col + size_t(t) * pq;
      std::fill(row, row + pq, 0.0);
      for (int ko = 0; ko < g.k; ++ko) {
        const double wt = w[size_t(ko) * crs + size_t(t)];
        const float* dyk = dy + (size_t(img) * g.k + ko) * pq;
        for (size_t o = 0; o < pq; ++o) row[o] += wt * dyk[o];
      }
    });
    parallelFor(g.c, double(hw) * g.r * g.s, [&](int64_t ch) {  // col2im, as a gather
      for (int ih = 0; ih < g.h; ++ih)
        for (int iw = 0; iw < g.w; ++iw) {
          double sum = 0;
          for (int i = 0; i < g.r; ++i) {
            const int64_t po = outputAt(ih, i, g.strideH, g.padH, g.dilH, g.p);
            if (po < 0) continue;
            for (int j = 0; j < g.s; ++j) {
              const int64_t qo = outputAt(iw, j, g.strideW, g.padW, g.dilW, g.q);
              if (qo >= 0) sum += col[g.tap(int(ch), i, j) * pq + size_t(po) * g.q + qo];
            }
          }
          blend(dx[(size_t(img) * g.c + ch) * hw + size_t(ih) * g.w + iw], sum, alpha, beta);
        }
    });
  }
}

// dw = sum over images and output pixels of dy times the input each tap read.
void backwardFilter(const Geometry& g, int algo, const float* x, const float* dy, float* dw, void* ws, float alpha, float beta) {
  const size_t pq = g.colCols(), crs = g.colRows();
  if (algo == 0) {
    parallelFor(int64_t(g.k) * g.c, double(g.n) * double(pq) * g.r * g.s, [&](int64_t kc) {
      const int ko = int(kc / g.c), ch = int(kc % g.c);
      for (int i = 0; i < g.r; ++i)
        for (int j = 0; j < g.s; ++j) {
          double sum = 0;
          for (int img = 0; img < g.n; ++img)
            for (int po = 0; po < g.p; ++po) {
              const int64_t ih = inputAt(po, i, g.strideH, g.padH, g.dilH);
              if (ih < 0 || ih >= g.h) continue;
              for (int qo = 0; qo < g.q; ++qo) {
                const int64_t iw = inputAt(qo, j, g.strideW, g.padW, g.dilW);
                if (iw < 0 || iw >= g.w) continue;
                sum += double(x[((size_t(img) * g.c + ch) * g.h + ih) * g.w + iw]) *
                       dy[(size_t(img) * g.k + ko) * pq + size_t(po) * g.q + qo];
              }
            }
          blend(dw[size_t(ko) * crs + g.tap(ch, i, j)], sum, alpha, beta);
        }
    });
    return;
  }
  float* col = static_cast<float*>(ws);
  std::vector<double> acc(g.wCount(), 0.0);  // summed over images before the one rounding to float
  for (int img = 0; img < g.n; ++img) {
    im2col(g, x, img, col);
    parallelFor(g.k, double(pq * crs), [&](int64_t ko) {  // dw[ko] += dy[img][ko] (1 x pq) col^T (pq x crs)
      const float* dyk = dy + (size_t(img) * g.k + ko) * pq;
      for (size_t t = 0; t < crs; ++t) {
        const float* row = col + t * pq;
        double sum = 0;
        for (size_t o = 0; o < pq; ++o) sum += double(dyk[o]) * row[o];
        acc[size_t(ko) * crs + t] += sum;
      }
    });
  }
  for (size_t t = 0; t < acc.size(); ++t) blend(dw[t], acc[t], alpha, beta);
}

// An operand's address range, checked when the work runs: that is when a GPU would touch it (and stream-ordered
// allocations and frees before it have taken effect).
struct Range {
  const char* name;
  const void* p;
  size_t bytes, align;
};

// Faults as a GPU would (and returns false) when a range is not device memory or misaligned for its type.
bool accessible(const char* call, std::initializer_list<Range> ranges) {
  for (const Range& r : ranges) {
    const bool aligned = reinterpret_cast<uintptr_t>(r.p) % r.align == 0;
    if (r.bytes == 0 || (aligned && bssnEmuIsDeviceRange(r.p, r.bytes))) continue;
    char message[256];
    std::snprintf(message, sizeof message, "%s: %s [%p, +%zu bytes) is %s", call, r.name, r.p, r.bytes,
                  aligned ? "not device memory (an illegal address on a GPU)" : "misaligned");
    bssnEmuFault(aligned ? cudaErrorIllegalAddress : cudaErrorMisalignedAddress, message);
    return false;
  }
  return true;
}

// cudnnConvolution{Fwd,BwdData,BwdFilter}AlgoPerf_t (one layout, as native/cuda/cudnn_api.h has it).
struct AlgoPerf {
  int algo;
  int status;
  float time;
  size_t memory;
  int determinism;
  int mathType;
  int reserved[3];
};

int algoCount(Dir dir) { return dir == Dir::Fwd ? kFwdAlgoCount : dir == Dir::BwdData ? kBwdDataAlgoCount : kBwdFilterAlgoCount; }

// An unknown enumerant is a bad parameter; a known one this library does not implement is unsupported.
int checkAlgo(Dir dir, int algo) {
  if (algo < 0 || algo >= algoCount(dir)) return kBadParam;
  return algo <= 1 ? kSuccess : kNotSupported;
}

// The _v7 heuristics: every algorithm of the direction, the implemented ones first with algorithm 1 (which
// needs a workspace) ranked above 0, the rest NOT_SUPPORTED, as cuDNN lists algorithms that cannot run.
int listAlgos(cudnnContext* handle, const cudnnTensorStruct* x, const cudnnFilterStruct* w, const cudnnConvolutionStruct* conv,
              const cudnnTensorStruct* y, Dir dir, int requested, int* returned, AlgoPerf* perf) {
  if (!handle || !returned || !perf) return kBadParamNull;
  if (requested <= 0) return kBadParam;
  Geometry g;
  if (const int st = geometry(x, w, conv, y, g)) return st;
  const int count = std::min(requested, algoCount(dir));
  for (int i = 0; i < count; ++i) {
    const int algo = i == 0 ? 1 : i == 1 ? 0 : i;
    // Backward algorithm 0 is cuDNN's atomics-based, non-deterministic one (computed deterministically here).
    const bool deterministic = !(algo == 0 && dir != Dir::Fwd);
    perf[i] = AlgoPerf{algo, checkAlgo(dir, algo), -1.0f, checkAlgo(dir, algo) == kSuccess ? workspaceBytes(g, dir, algo) : 0,
                       deterministic ? kDeterministic : kNonDeterministic, conv->mathType == kFmaMath ? kFmaMath : kTensorOpMath, {0, 0, 0}};
  }
  *returned = count;
  return kSuccess;
}

int workspaceSize(cudnnContext* handle, const cudnnTensorStruct* x, const cudnnFilterStruct* w, const cudnnConvolutionStruct* conv,
                  const cudnnTensorStruct* y, Dir dir, int algo, size_t* bytes) {
  if (!handle || !bytes) return kBadParamNull;
  Geometry g;
  if (const int st = geometry(x, w, conv, y, g)) return st;
  if (const int st = checkAlgo(dir, algo)) return st;
  *bytes = workspaceBytes(g, dir, algo);
  return kSuccess;
}

// Validates one convolution call and enqueues it on the handle's stream. x, w and y are the data of the
// descriptors xd, wd and yd; which of them is written depends on the direction.
int execute(const char* call, Dir dir, cudnnContext* handle, const void* alphaP, const void* betaP, const cudnnTensorStruct* xd,
            const void* x, const cudnnFilterStruct* wd, const void* w, const cudnnConvolutionStruct* conv, const cudnnTensorStruct* yd,
            const void* y, int algo, void* ws, size_t wsBytes) {
  if (!handle || !alphaP || !betaP || !x || !w || !y) return kBadParamNull;
  Geometry g;
  if (const int st = geometry(xd, wd, conv, yd, g)) return st;
  if (const int st = checkAlgo(dir, algo)) return st;
  const size_t need = workspaceBytes(g, dir, algo);
  if (wsBytes < need) return kBadParam;
  const float alpha = *static_cast<const float*>(alphaP), beta = *static_cast<const float*>(betaP);  // host scalars, read now
  const bool tf32 = conv->mathType != kFmaMath && !bssn::emu::tf32Overridden();  // the math type set now, as cuDNN reads it
  const cudaError_t st = bssn::emu::enqueue(handle->stream.load(), [=] {
    const bool fwd = dir == Dir::Fwd, data = dir == Dir::BwdData;
    if (!accessible(call, {{data ? "dx" : "x", x, g.xCount() * sizeof(float), alignof(float)},
                           {dir == Dir::BwdFilter ? "dw" : "w", w, g.wCount() * sizeof(float), alignof(float)},
                           {fwd ? "y" : "dy", y, g.yCount() * sizeof(float), alignof(float)},
                           {"workspace", ws, need, data ? alignof(double) : alignof(float)}}))
      return;
    // The inputs as the math unit sees them: under TF32, rounded copies (the device memory stays as it is).
    std::vector<float> rounded[2];
    int copies = 0;
    const auto in = [&](const void* p, size_t count) -> const float* {
      const float* f = static_cast<const float*>(p);
      if (!tf32) return f;
      std::vector<float>& r = rounded[copies++];
      r.resize(count);
      for (size_t i = 0; i < count; ++i) r[i] = bssn::emu::roundToTf32(f[i]);
      return r.data();
    };
    const auto out = [](const void* p) { return static_cast<float*>(const_cast<void*>(p)); };
    if (fwd) forward(g, algo, in(x, g.xCount()), in(w, g.wCount()), out(y), ws, alpha, beta);
    else if (data) backwardData(g, algo, in(w, g.wCount()), in(y, g.yCount()), out(x), ws, alpha, beta);
    else backwardFilter(g, algo, in(x, g.xCount()), in(y, g.yCount()), out(w), ws, alpha, beta);
  });
  return st == cudaSuccess ? kSuccess : kExecutionFailed;
}

int setShape(int format, int dataType, int n, int c, int h, int w) {
  if (format < 0 || format >= kFormatCount || dataType < 0 || dataType >= kDataTypeCount) return kBadParam;
  if (n <= 0 || c <= 0 || h <= 0 || w <= 0) return kBadParam;
  if (format != kNCHW || dataType != kFloat) return kNotSupported;
  if (int64_t(n) * c * h * w > INT32_MAX) return kNotSupported;  // cuDNN's 2 Gi-element limit
  return kSuccess;
}

}  // namespace

CUDNN_EMU_API size_t cudnnGetVersion() { return size_t(kMajor) * 10000 + kMinor * 100 + kPatch; }

CUDNN_EMU_API const char* cudnnGetErrorString(int status) {
  static const struct {
    int code;
    const char* name;
  } names[] = {
      {0, "CUDNN_STATUS_SUCCESS"},
      {1001, "CUDNN_STATUS_NOT_INITIALIZED"},
      {1002, "CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH"},
      {1003, "CUDNN_STATUS_SERIALIZATION_VERSION_MISMATCH"},
      {1004, "CUDNN_STATUS_DEPRECATED"},
      {1005, "CUDNN_STATUS_LICENSE_ERROR"},
      {1006, "CUDNN_STATUS_RUNTIME_IN_PROGRESS"},
      {1007, "CUDNN_STATUS_RUNTIME_FP_OVERFLOW"},
      {1008, "CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED"},
      {2000, "CUDNN_STATUS_BAD_PARAM"},
      {2001, "CUDNN_STATUS_INVALID_VALUE"},
      {2002, "CUDNN_STATUS_BAD_PARAM_NULL_POINTER"},
      {2003, "CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER"},
      {2004, "CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED"},
      {2005, "CUDNN_STATUS_BAD_PARAM_OUT_OF_BOUND"},
      {2006, "CUDNN_STATUS_BAD_PARAM_SIZE_INSUFFICIENT"},
      {2007, "CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH"},
      {2008, "CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH"},
      {2009, "CUDNN_STATUS_BAD_PARAM_DUPLICATED_ENTRIES"},
      {2010, "CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE"},
      {2011, "CUDNN_STATUS_BAD_PARAM_CUDA_GRAPH_MISMATCH"},
      {2012, "CUDNN_STATUS_BAD_PARAM_DESCRIPTOR_TYPE"},
      {3000, "CUDNN_STATUS_NOT_SUPPORTED"},
      {3001, "CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN"},
      {3002, "CUDNN_STATUS_NOT_SUPPORTED_SHAPE"},
      {3003, "CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE"},
      {3004, "CUDNN_STATUS_NOT_SUPPORTED_LAYOUT"},
      {3005, "CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDA_DRIVER"},
      {3006, "CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDART"},
      {3007, "CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH"},
      {3008, "CUDNN_STATUS_NOT_SUPPORTED_RUNTIME_PREREQUISITE_MISSING"},
      {3009, "CUDNN_STATUS_NOT_SUPPORTED_SUBLIBRARY_UNAVAILABLE"},
      {3010, "CUDNN_STATUS_NOT_SUPPORTED_SHARED_MEMORY_INSUFFICIENT"},
      {3011, "CUDNN_STATUS_NOT_SUPPORTED_PADDING"},
      {3012, "CUDNN_STATUS_NOT_SUPPORTED_BAD_LAUNCH_PARAM"},
      {3013, "CUDNN_STATUS_NOT_SUPPORTED_CUDA_GRAPH_NATIVE_API"},
      {4000, "CUDNN_STATUS_INTERNAL_ERROR"},
      {4001, "CUDNN_STATUS_INTERNAL_ERROR_COMPILATION_FAILED"},
      {4002, "CUDNN_STATUS_INTERNAL_ERROR_UNEXPECTED_VALUE"},
      {4003, "CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED"},
      {4004, "CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED"},
      {4005, "CUDNN_STATUS_INTERNAL_ERROR_BAD_LAUNCH_PARAM"},
      {4006, "CUDNN_STATUS_INTERNAL_ERROR_TEXTURE_CREATION_FAILED"},
      {5000, "CUDNN_STATUS_EXECUTION_FAILED"},
      {5001, "CUDNN_STATUS_EXECUTION_FAILED_CUDA_DRIVER"},
      {5002, "CUDNN_STATUS_EXECUTION_FAILED_CUBLAS"},
      {5003, "CUDNN_STATUS_EXECUTION_FAILED_CUDART"},
      {5004, "CUDNN_STATUS_EXECUTION_FAILED_CURAND"},
  };
  for (const auto& n : names)
    if (n.code == status) return n.name;
  return "CUDNN_UNKNOWN_STATUS";
}

CUDNN_EMU_API int cudnnCreate(cudnnContext** handle) {
  if (!handle) return kBadParamNull;
  *handle = new cudnnContext;
  return kSuccess;
}

CUDNN_EMU_API int cudnnDestroy(cudnnContext* handle) {
  if (!handle) return kBadParamNull;
  delete handle;  // enqueued work holds copies of what it needs, never the handle
  return kSuccess;
}

CUDNN_EMU_API int cudnnSetStream(cudnnContext* handle, cudaStream_t stream) {
  if (!handle) return kBadParamNull;
  handle->stream = stream;
  return kSuccess;
}

CUDNN_EMU_API int cudnnCreateTensorDescriptor(cudnnTensorStruct** desc) {
  if (!desc) return kBadParamNull;
  *desc = new cudnnTensorStruct;
  return kSuccess;
}

CUDNN_EMU_API int cudnnSetTensor4dDescriptor(cudnnTensorStruct* desc, int format, int dataType, int n, int c, int h, int w) {
  if (!desc) return kBadParamNull;
  if (const int st = setShape(format, dataType, n, c, h, w)) return st;
  *desc = cudnnTensorStruct{true, n, c, h, w};
  return kSuccess;
}

CUDNN_EMU_API int cudnnDestroyTensorDescriptor(cudnnTensorStruct* desc) {
  delete desc;  // NULL is a no-op
  return kSuccess;
}

CUDNN_EMU_API int cudnnCreateFilterDescriptor(cudnnFilterStruct** desc) {
  if (!desc) return kBadParamNull;
  *desc = new cudnnFilterStruct;
  return kSuccess;
}

// Note the argument order: data type before format, unlike cudnnSetTensor4dDescriptor.
CUDNN_EMU_API int cudnnSetFilter4dDescriptor(cudnnFilterStruct* desc, int dataType, int format, int k, int c, int h, int w) {
  if (!desc) return kBadParamNull;
  if (const int st = setShape(format, dataType, k, c, h, w)) return st;
  *desc = cudnnFilterStruct{true, k, c, h, w};
  return kSuccess;
}

CUDNN_EMU_API int cudnnDestroyFilterDescriptor(cudnnFilterStruct* desc) {
  delete desc;
  return kSuccess;
}

CUDNN_EMU_API int cudnnCreateConvolutionDescriptor(cudnnConvolutionStruct** desc) {
  if (!desc) return kBadParamNull;
  *desc = new cudnnConvolutionStruct;
  return kSuccess;
}

CUDNN_EMU_API int cudnnSetConvolution2dDescriptor(cudnnConvolutionStruct* desc, int padH, int padW, int strideH, int strideW, int dilationH,
                                                  int dilationW, int mode, int computeType) {
  if (!desc) return kBadParamNull;
  if (padH < 0 || padW < 0 || strideH <= 0 || strideW <= 0 || dilationH <= 0 || dilationW <= 0) return kBadParam;
  if ((mode != kConvolution && mode != kCrossCorrelation) || computeType < 0 || computeType >= kDataTypeCount) return kBadParam;
  // A compute type other than float is accepted here and refused (NOT_SUPPORTED) by the calls that use it.
  *desc = cudnnConvolutionStruct{true, padH, padW, strideH, strideW, dilationH, dilationW, mode, computeType, desc->mathType};
  return kSuccess;
}

CUDNN_EMU_API int cudnnSetConvolutionMathType(cudnnConvolutionStruct* desc, int mathType) {
  if (!desc) return kBadParamNull;
  if (mathType < 0 || mathType > kFmaMath) return kBadParam;  // DEFAULT, TENSOR_OP, TENSOR_OP_ALLOW_CONVERSION, FMA
  desc->mathType = mathType;  // read by each call: all but FMA_MATH round the inputs to TF32
  return kSuccess;
}

CUDNN_EMU_API int cudnnDestroyConvolutionDescriptor(cudnnConvolutionStruct* desc) {
  delete desc;
  return kSuccess;
}

CUDNN_EMU_API int cudnnGetConvolutionForwardAlgorithm_v7(cudnnContext* handle, cudnnTensorStruct* x, cudnnFilterStruct* w,
                                                         cudnnConvolutionStruct* conv, cudnnTensorStruct* y, int requested,
                                                         int* returned, AlgoPerf* perf) {
  return listAlgos(handle, x, w, conv, y, Dir::Fwd, requested, returned, perf);
}

CUDNN_EMU_API int cudnnGetConvolutionForwardWorkspaceSize(cudnnContext* handle, cudnnTensorStruct* x, cudnnFilterStruct* w,
                                                          cudnnConvolutionStruct* conv, cudnnTensorStruct* y, int algo, size_t* bytes) {
  return workspaceSize(handle, x, w, conv, y, Dir::Fwd, algo, bytes);
}

// y = alpha conv(x, w) + beta y
CUDNN_EMU_API int cudnnConvolutionForward(cudnnContext* handle, const void* alpha, cudnnTensorStruct* xDesc, const void* x,
                                          cudnnFilterStruct* wDesc, const void* w, cudnnConvolutionStruct* conv, int algo, void* ws,
                                          size_t wsBytes, const void* beta, cudnnTensorStruct* yDesc, void* y) {
  return execute("cudnnConvolutionForward", Dir::Fwd, handle, alpha, beta, xDesc, x, wDesc, w, conv, yDesc, y, algo, ws, wsBytes);
}

CUDNN_EMU_API int cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnnContext* handle, cudnnFilterStruct* w, cudnnTensorStruct* dy,
                                                              cudnnConvolutionStruct* conv, cudnnTensorStruct* dx, int requested,
                                                              int* returned, AlgoPerf* perf) {
  return listAlgos(handle, dx, w, conv, dy, Dir::BwdData, requested, returned, perf);
}

CUDNN_EMU_API int cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnContext* handle, cudnnFilterStruct* w, cudnnTensorStruct* dy,
                                                               cudnnConvolutionStruct* conv, cudnnTensorStruct* dx, int algo,
                                                               size_t* bytes) {
  return workspaceSize(handle, dx, w, conv, dy, Dir::BwdData, algo, bytes);
}

// dx = alpha conv^T(dy, w) + beta dx
CUDNN_EMU_API int cudnnConvolutionBackwardData(cudnnContext* handle, const void* alpha, cudnnFilterStruct* wDesc, const void* w,
                                               cudnnTensorStruct* dyDesc, const void* dy, cudnnConvolutionStruct* conv, int algo,
                                               void* ws, size_t wsBytes, const void* beta, cudnnTensorStruct* dxDesc, void* dx) {
  return execute("cudnnConvolutionBackwardData", Dir::BwdData, handle, alpha, beta, dxDesc, dx, wDesc, w, conv, dyDesc, dy, algo, ws,
                 wsBytes);
}

CUDNN_EMU_API int cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnnContext* handle, cudnnTensorStruct* x, cudnnTensorStruct* dy,
                                                                cudnnConvolutionStruct* conv, cudnnFilterStruct* dw, int requested,
                                                                int* returned, AlgoPerf* perf) {
  return listAlgos(handle, x, dw, conv, dy, Dir::BwdFilter, requested, returned, perf);
}

CUDNN_EMU_API int cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnnContext* handle, cudnnTensorStruct* x, cudnnTensorStruct* dy,
                                                                 cudnnConvolutionStruct* conv, cudnnFilterStruct* dw, int algo,
                                                                 size_t* bytes) {
  return workspaceSize(handle, x, dw, conv, dy, Dir::BwdFilter, algo, bytes);
}

// dw = alpha (d conv / d w)(x, dy) + beta dw
CUDNN_EMU_API int cudnnConvolutionBackwardFilter(cudnnContext* handle, const void* alpha, cudnnTensorStruct* xDesc, const void* x,
                                                 cudnnTensorStruct* dyDesc, const void* dy, cudnnConvolutionStruct* conv, int algo,
                                                 void* ws, size_t wsBytes, const void* beta, cudnnFilterStruct* dwDesc, void* dw) {
  return execute("cudnnConvolutionBackwardFilter", Dir::BwdFilter, handle, alpha, beta, xDesc, x, dwDesc, dw, conv, dyDesc, dy, algo, ws,
                 wsBytes);
}
