#include "cpu/blas.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "core/library.h"

#ifdef BSSN_STATIC_OPENBLAS
// The OpenBLAS linked into the addon (CMakeLists.txt, BSSN_OPENBLAS_STATIC), its symbols private to it.
// scripts/openblas.cjs checks that the archive defines all four.
extern "C" {
void cblas_sgemm(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
void openblas_set_num_threads(int);
char* openblas_get_config(void);
int blas_thread_shutdown_(void);
}
#endif

namespace bssn::cpu {

namespace {
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;  // CblasRowMajor, CblasNoTrans, CblasTrans
std::atomic<bool> enabled{true};

// System BLAS searched by soname. libblas.so.3 is whatever Debian's alternatives point at, often netlib's
// reference BLAS (CPU training 3.5x slower than on OpenBLAS): it is taken only when it proves to be a fast one.
const std::vector<std::string> kSystemBlas = {"libopenblas.so.0", "libopenblas.so", "libopenblasp.so.0", "libblis.so.4", "libblis.so.3",
                                              "libmkl_rt.so.2",   "libmkl_rt.so",   "libblas.so.3"};

// What a loaded BLAS is, by an entry point only OpenBLAS, BLIS or MKL exports (e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH
// NO_AFFINITY Haswell MAX_THREADS=64": the kernels it picked for this processor); "" when it is none of them.
std::string describe(void* handle) {
  if (auto config = reinterpret_cast<const char* (*)()>(dlsym(handle, "openblas_get_config"))) return config();
  if (auto version = reinterpret_cast<const char* (*)()>(dlsym(handle, "bli_info_get_version_str"))) return std::string("BLIS ") + version();
  if (auto version = reinterpret_cast<void (*)(char*, int)>(dlsym(handle, "MKL_Get_Version_String"))) {
    char text[256] = {};
    version(text, int(sizeof text) - 1);
    return text;
  }
  return "";
}

// The file a loaded library's cblas_sgemm lives in (a soname resolved to its path), or `fallback`.
std::string fileOf(void* handle, const std::string& fallback) {
  Dl_info info;
  void* sgemm = dlsym(handle, "cblas_sgemm");
  return sgemm && dladdr(sgemm, &info) && info.dli_fname ? info.dli_fname : fallback;
}

// A BLAS found on the system (or named by BSSN_BLAS_PATH: `onlyFast` false, used as given). blas() calls this
// once, so the library is loaded once and stays loaded.
void useSystemBlas(Blas& b, std::vector<std::string> candidates, bool onlyFast) {
  const SharedLibrary::Acceptor fast = [](const std::string& candidate, void* handle) -> std::string {
    if (!describe(handle).empty()) return "";
    return candidate + " (" + fileOf(handle, candidate) +
           ") is not OpenBLAS, BLIS or MKL: netlib's reference BLAS or another slow one, so it is not used";
  };
#ifdef BSSN_STATIC_OPENBLAS
  const char* hint = "BSSN_BLAS=system passed over the OpenBLAS linked into bssn: unset it to use that one.";
#else
  const char* hint =
      "This bssn was built without OpenBLAS linked in: rebuild it with it (Debian/Ubuntu: apt-get install libopenblas-pthread-dev, "
      "then npm rebuild bssn --build-from-source), install a BLAS (apt-get install libopenblas0-pthread), or name one with BSSN_BLAS_PATH.";
#endif
  static const SharedLibrary lib("a fast CPU BLAS (OpenBLAS, BLIS or MKL)", std::move(candidates), hint, onlyFast ? fast : SharedLibrary::Acceptor{});
  try {
    b.sgemm = lib.function<Blas::SgemmFn>("cblas_sgemm");
  } catch (const std::exception& e) {
    b.error = e.what();
    return;
  }
  const std::string what = describe(lib.handle());
  const std::string file = fileOf(lib.handle(), lib.path());
  b.name = what.empty() ? file : what + " (" + file + ")";
  for (const char* setter : {"openblas_set_num_threads", "bli_thread_set_num_threads", "MKL_Set_Num_Threads"})
    if (auto set = reinterpret_cast<void (*)(int)>(dlsym(lib.handle(), setter))) {
      set(1);  // one thread per call: see blas()
      break;
    }
}
}  // namespace

void stopLinkedBlasThreads() {
#ifdef BSSN_STATIC_OPENBLAS
  // OpenBLAS's constructor started a thread pool sized to the cores when the addon loaded. bssn calls it one
  // thread per call, so the pool only costs threads and memory: stopped at once. In this order: setting the
  // count after the shutdown would start the pool again (nothing sets it later).
  static std::once_flag once;
  std::call_once(once, [] {
    openblas_set_num_threads(1);
    blas_thread_shutdown_();
  });
#endif
}

const Blas& blas() {
  static std::once_flag once;
  static Blas b;
  // One thread per call: bssn splits large products across cores itself (cpu/ops.cpp). The BLAS's own threads
  // cost more than they give on the small products of a training step (measured: an MLP GAN step ran 5x slower
  // with OpenBLAS's 2 threads than with 1 on 2 busy cores), and spin against each other when several CPU devices
  // (worker threads) compute at once.
  std::call_once(once, [] {
    const char* env = std::getenv("BSSN_BLAS");
    const std::string mode = env ? env : "";
    if (mode == "none" || mode == "0") {
      b.error = "turned off by BSSN_BLAS=" + mode;
      return;
    }
    if (!mode.empty() && mode != "system") {
      b.error = "BSSN_BLAS=" + mode + " is not understood, so no BLAS is used (none: bssn's own loops; system: a system BLAS " +
                "instead of the linked-in OpenBLAS; unset: the linked-in OpenBLAS, else a system one)";
      return;
    }
    const char* path = std::getenv("BSSN_BLAS_PATH");
    if (path && *path) return useSystemBlas(b, {path}, false);
#ifdef BSSN_STATIC_OPENBLAS
    if (mode != "system") {
      b.sgemm = reinterpret_cast<Blas::SgemmFn>(&cblas_sgemm);
      b.name = std::string(openblas_get_config()) + " (linked in)";
      return;
    }
#endif
    // Tests name the sonames to search instead (BSSN_BLAS_SEARCH, colon-separated), so that a slow BLAS is
    // refused whatever this machine has installed.
    std::vector<std::string> search;
    std::istringstream names(std::getenv("BSSN_BLAS_SEARCH") ? std::getenv("BSSN_BLAS_SEARCH") : "");
    for (std::string name; std::getline(names, name, ':');)
      if (!name.empty()) search.push_back(name);
    useSystemBlas(b, search.empty() ? kSystemBlas : search, true);
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
