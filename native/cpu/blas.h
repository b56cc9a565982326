// A CPU BLAS (OpenBLAS, BLIS, MKL: they share the CBLAS interface) loaded at run time by soname, the way cuBLAS
// is: the addon needs none, and without one the CPU backend keeps its own loops (the reference the tests compare
// with). BSSN_BLAS_PATH names the library to load; BSSN_BLAS=none turns it off.
#pragma once
#include <cstdint>
#include <string>

namespace bssn::cpu {

struct Blas {
  // cblas_sgemm(order, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc), CBLAS's enum values as ints.
  using SgemmFn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
  SgemmFn sgemm = nullptr;
  std::string name;   // e.g. "OpenBLAS 0.3.21 ... (libopenblas.so.0)"
  std::string error;  // why none is used
};

// The process-wide BLAS; blas().sgemm is null when none is used.
const Blas& blas();
// Tests compare the BLAS path with the reference loops in one process: false forces the loops.
void setBlasEnabled(bool enabled);
bool blasEnabled();

// Row-major C = alpha op(A) op(B) + beta C through the BLAS (dimensions must fit in int: checked by the caller).
void blasGemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
              int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace bssn::cpu
