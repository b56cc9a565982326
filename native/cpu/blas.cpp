#include "cpu/blas.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "core/library.h"

namespace bssn::cpu {

namespace {
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;  // CblasRowMajor, CblasNoTrans, CblasTrans
std::atomic<bool> enabled{true};
}  // namespace

const Blas& blas() {
  static std::once_flag once;
  static Blas b;
  std::call_once(once, [] {
    const char* off = std::getenv("BSSN_BLAS");
    if (off && (std::strcmp(off, "none") == 0 || std::strcmp(off, "0") == 0)) {
      b.error = "turned off by BSSN_BLAS=" + std::string(off);
      return;
    }
    static const SharedLibrary lib(
        "a CPU BLAS",
        SharedLibrary::overridable("BSSN_BLAS_PATH", {"libopenblas.so.0", "libopenblas.so", "libblis.so.4", "libmkl_rt.so.2", "libmkl_rt.so",
                                                      "libblas.so.3"}),
        "Install one for fast CPU training (Debian/Ubuntu: apt-get install libopenblas0-pthread), or name it with BSSN_BLAS_PATH.");
    try {
      b.sgemm = lib.function<Blas::SgemmFn>("cblas_sgemm");
      b.name = lib.path();
      // One thread per call: bssn splits large products across cores itself (cpu/ops.cpp). The BLAS's own
      // threads cost more than they give on the small products of a training step (measured: an MLP GAN step
      // ran 5x slower with OpenBLAS's 2 threads than with 1 on 2 busy cores), and spin against each other when
      // several CPU devices (worker threads) compute at once.
      for (const char* setter : {"openblas_set_num_threads", "bli_thread_set_num_threads", "MKL_Set_Num_Threads"}) {
        try {
          lib.function<void (*)(int)>(setter)(1);
          break;
        } catch (const std::exception&) {
        }
      }
      try {
        // OpenBLAS says what it is and which kernels it picked for this processor.
        using ConfigFn = const char* (*)();
        const char* config = lib.function<ConfigFn>("openblas_get_config")();
        if (config) b.name = std::string(config) + " (" + lib.path() + ")";
      } catch (const std::exception&) {
      }
    } catch (const std::exception& e) {
      b.sgemm = nullptr;
      b.error = e.what();
    }
  });
  return b;
}

void setBlasEnabled(bool on) { enabled = on; }
bool blasEnabled() { return enabled && blas().sgemm; }

void blasGemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
              int64_t ldb, float beta, float* c, int64_t ldc) {
  blas().sgemm(kRowMajor, transA ? kTrans : kNoTrans, transB ? kTrans : kNoTrans, int(m), int(n), int(k), alpha, a, int(lda), b, int(ldb), beta,
               c, int(ldc));
}

}  // namespace bssn::cpu
