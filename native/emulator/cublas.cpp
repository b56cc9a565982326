// libcublas_emu: the cuBLAS entry points bssn loads (native/cuda/cublas_api.h), with cuBLAS 13's names, status
// values and column-major contract, computing on the CPU in stream order on an emulated stream. Independent of
// bssn's CPU backend, so the emulated GPU path checks the CUDA backend against a separate implementation.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <thread>
#include <vector>

#include "bssn_emulator.h"
#include "tf32.h"

#define CUBLAS_EMU_API extern "C" __attribute__((visibility("default")))

// The handle: the stream its work runs on and the math mode. The emulator computes in double; under
// CUBLAS_TF32_TENSOR_OP_MATH it first rounds A and B to TF32, as tensor cores do (the other modes' fp32 routines
// stay fp32 here). Atomics, as calls may come from any thread.
struct cublasContext {
  std::atomic<cudaStream_t> stream{nullptr};
  std::atomic<int> mathMode{0};
  std::atomic<void*> workspace{nullptr};  // the caller's (the emulated sgemm needs none)
};

namespace {

// cublasStatus_t
constexpr int kSuccess = 0, kNotInitialized = 1, kAllocFailed = 3, kInvalidValue = 7, kArchMismatch = 8, kMappingError = 11,
              kExecutionFailed = 13, kInternalError = 14, kNotSupported = 15, kLicenseError = 16;
constexpr int kOpN = 0, kOpT = 1, kOpC = 2;  // cublasOperation_t (C is T for real data)
constexpr int kTf32TensorOpMath = 3, kDisallowReducedPrecisionReduction = 16;  // cublasMath_t
constexpr int kMajor = 13, kMinor = 0, kPatch = 0;

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

// An operand's address range, checked when the work runs: that is when a GPU would touch it (and stream-ordered
// allocations and frees before it have taken effect).
struct Range {
  const char* name;
  const void* p;
  size_t bytes;
};

// Faults as a GPU would (and returns false) when a range is not device memory or not float-aligned.
bool accessible(const char* call, std::initializer_list<Range> ranges) {
  for (const Range& r : ranges) {
    const bool aligned = reinterpret_cast<uintptr_t>(r.p) % alignof(float) == 0;
    if (aligned && bssnEmuIsDeviceRange(r.p, r.bytes)) continue;
    char message[256];
    std::snprintf(message, sizeof message, "%s: %s [%p, +%zu bytes) is %s", call, r.name, r.p, r.bytes,
                  aligned ? "not device memory (an illegal address on a GPU)" : "misaligned for float");
    bssnEmuFault(aligned ? cudaErrorIllegalAddress : cudaErrorMisalignedAddress, message);
    return false;
  }
  return true;
}

// Floats spanned by a column-major rows x cols matrix with leading dimension ld.
size_t span(int rows, int cols, int ld) { return (size_t(ld) * size_t(cols - 1) + size_t(rows)) * sizeof(float); }

}  // namespace

CUBLAS_EMU_API int cublasCreate_v2(cublasContext** handle) {
  if (!handle) return kInvalidValue;
  *handle = new cublasContext;
  return kSuccess;
}

CUBLAS_EMU_API int cublasDestroy_v2(cublasContext* handle) {
  if (!handle) return kNotInitialized;
  delete handle;  // enqueued work holds copies of what it needs, never the handle
  return kSuccess;
}

CUBLAS_EMU_API int cublasSetStream_v2(cublasContext* handle, cudaStream_t stream) {
  if (!handle) return kNotInitialized;
  handle->stream = stream;
  return kSuccess;
}

CUBLAS_EMU_API int cublasGetVersion_v2(cublasContext*, int* version) {
  if (!version) return kInvalidValue;
  *version = kMajor * 10000 + kMinor * 100 + kPatch;
  return kSuccess;
}

CUBLAS_EMU_API int cublasSetWorkspace_v2(cublasContext* handle, void* workspace, size_t bytes) {
  if (!handle) return kNotInitialized;
  if (bytes > 0 && !workspace) return kInvalidValue;
  handle->workspace = workspace;
  return kSuccess;
}

CUBLAS_EMU_API int cublasSetMathMode(cublasContext* handle, int mode) {
  if (!handle) return kNotInitialized;
  // DEFAULT 0, TENSOR_OP 1, PEDANTIC 2, TF32_TENSOR_OP 3, FP32_EMULATED_BF16X9 4, optionally with
  // DISALLOW_REDUCED_PRECISION_REDUCTION (16).
  const int base = mode & ~kDisallowReducedPrecisionReduction;
  if (base < 0 || base > 4) return kInvalidValue;
  handle->mathMode = mode;
  return kSuccess;
}

CUBLAS_EMU_API const char* cublasGetStatusString(int status) {
  switch (status) {
    case kSuccess: return "CUBLAS_STATUS_SUCCESS";
    case kNotInitialized: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case kAllocFailed: return "CUBLAS_STATUS_ALLOC_FAILED";
    case kInvalidValue: return "CUBLAS_STATUS_INVALID_VALUE";
    case kArchMismatch: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case kMappingError: return "CUBLAS_STATUS_MAPPING_ERROR";
    case kExecutionFailed: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case kInternalError: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case kNotSupported: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case kLicenseError: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "<unknown>";
  }
}

CUBLAS_EMU_API int cublasGetProperty(int type, int* value) {
  if (!value) return kInvalidValue;
  switch (type) {  // libraryPropertyType
    case 0: *value = kMajor; return kSuccess;
    case 1: *value = kMinor; return kSuccess;
    case 2: *value = kPatch; return kSuccess;
    default: return kInvalidValue;
  }
}

// C = alpha op(A) op(B) + beta C, column-major, op(A) m x k, op(B) k x n; alpha and beta are host pointers
// (the default pointer mode), read now.
CUBLAS_EMU_API int cublasSgemm_v2(cublasContext* handle, int transa, int transb, int m, int n, int k, const float* alpha,
                                  const float* A, int lda, const float* B, int ldb, const float* beta, float* C, int ldc) {
  if (!handle) return kNotInitialized;
  const auto validOp = [](int op) { return op == kOpN || op == kOpT || op == kOpC; };
  if (!validOp(transa) || !validOp(transb) || m < 0 || n < 0 || k < 0) return kInvalidValue;
  const bool ta = transa != kOpN, tb = transb != kOpN;
  if (lda < std::max(1, ta ? k : m) || ldb < std::max(1, tb ? n : k) || ldc < std::max(1, m)) return kInvalidValue;
  if (!alpha || !beta) return kInvalidValue;
  if (m == 0 || n == 0) return kSuccess;

  const float a = *alpha, b = *beta;
  const bool readAB = k > 0 && a != 0;  // as BLAS: A and B are not read when they cannot contribute
  const bool tf32 = (handle->mathMode.load() & ~kDisallowReducedPrecisionReduction) == kTf32TensorOpMath && !bssn::emu::tf32Overridden();
  const auto in = [tf32](float v) { return double(tf32 ? bssn::emu::roundToTf32(v) : v); };  // an operand as the math unit sees it
  const cudaError_t st = bssn::emu::enqueue(handle->stream.load(), [=] {
    const Range c{"C", C, span(m, n, ldc)};
    const bool ok = readAB ? accessible("cublasSgemm_v2", {{"A", A, ta ? span(k, m, lda) : span(m, k, lda)},
                                                            {"B", B, tb ? span(n, k, ldb) : span(k, n, ldb)}, c})
                           : accessible("cublasSgemm_v2", {c});
    if (!ok) return;
    parallelFor(n, double(m) * (readAB ? k : 1), [&](int64_t j) {
      std::vector<double> acc(m, 0.0), bj(readAB ? k : 0);  // column j of C and of op(B)
      for (int l = 0; l < int(bj.size()); ++l) bj[l] = in(tb ? B[j + l * size_t(ldb)] : B[l + j * size_t(ldb)]);
      if (readAB && ta) {  // op(A)(i, l) = A[l + i lda]: a dot product down column i of A
        for (int i = 0; i < m; ++i) {
          const float* ai = A + i * size_t(lda);
          for (int l = 0; l < k; ++l) acc[i] += in(ai[l]) * bj[l];
        }
      } else if (readAB) {  // op(A)(i, l) = A[i + l lda]: columns of A scaled into acc
        for (int l = 0; l < k; ++l) {
          const float* al = A + l * size_t(lda);
          for (int i = 0; i < m; ++i) acc[i] += in(al[i]) * bj[l];
        }
      }
      float* cj = C + j * size_t(ldc);
      for (int i = 0; i < m; ++i)  // beta == 0: C is write-only, so NaN or garbage in it never shows
        cj[i] = float(double(a) * acc[i] + (b != 0 ? double(b) * cj[i] : 0.0));
    });
  });
  return st == cudaSuccess ? kSuccess : kExecutionFailed;  // a launch that fails, as cuBLAS reports it
}
