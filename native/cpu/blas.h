// The CPU BLAS (CBLAS's sgemm) that products and convolutions run on; without one the CPU backend keeps its own
// loops (the reference the tests compare with). Chosen once per process:
//   BSSN_BLAS=none: none. BSSN_BLAS_PATH: that library, loaded as given.
//   Otherwise the OpenBLAS linked into the addon (built with BSSN_OPENBLAS_STATIC), unless BSSN_BLAS=system;
//   else a fast system BLAS (OpenBLAS, BLIS, MKL) loaded by soname; netlib's reference BLAS is refused.
#pragma once
#include <cstdint>
#include <string>

namespace bssn::cpu {

struct Blas {
  // cblas_sgemm(order, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc), CBLAS's enum values as ints.
  using SgemmFn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
  SgemmFn sgemm = nullptr;
  std::string name;   // e.g. "OpenBLAS 0.3.21 ... (linked in)", "OpenBLAS 0.3.21 ... (/usr/lib/.../libopenblas.so.0)"
  std::string error;  // why none is used
};

// The process-wide BLAS; blas().sgemm is null when none is used.
const Blas& blas();
// Stops the thread pool that the linked-in OpenBLAS starts when the addon loads (a no-op without one): called
// when the addon is loaded, whatever BLAS is used later.
void stopLinkedBlasThreads();
// Tests compare the BLAS path with the reference loops in one process: false forces the loops.
void setBlasEnabled(bool enabled);
bool blasEnabled();

// Row-major C = alpha op(A) op(B) + beta C through the BLAS (dimensions must fit in int: checked by the caller).
void blasGemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
              int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace bssn::cpu
