// Optional libraries (cuBLAS, cuDNN, a CPU BLAS) loaded at run time with dlopen: the addon builds without their
// headers and loads without them installed; an op that needs one reports which library is missing and why.
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace bssn {

class SharedLibrary {
 public:
  // Why a library that loaded is refused ("" to take it), e.g. the CPU BLAS refuses netlib's slow reference BLAS.
  using Acceptor = std::function<std::string(const std::string& candidate, void* handle)>;
  // Tries `candidates` in order, taking the first that loads and that `accept` (when given) does not refuse; on
  // failure, error() lists every attempt with dlerror's reason (or the refusal), then `hint`.
  SharedLibrary(const char* displayName, std::vector<std::string> candidates,
                const char* hint = "Install it (it ships with the CUDA toolkit or NVIDIA's packages) or add its folder to LD_LIBRARY_PATH.",
                const Acceptor& accept = {});
  // `file` by the loader's search path first, then in each folder named by the environment variables given
  // (e.g. CUDA_PATH/lib64), then in `folders`.
  static std::vector<std::string> candidates(const std::vector<std::string>& files, const std::vector<std::string>& envFolders,
                                             const std::vector<std::string>& folders);
  // The environment variable `pathVariable`, when set, is the only candidate (e.g. BSSN_CUBLAS_PATH): a user's
  // explicit choice, and how tests make a library missing. Otherwise `fallback`.
  static std::vector<std::string> overridable(const char* pathVariable, std::vector<std::string> fallback);
  // `file` in the folder of the addon itself (where the emulated build puts its emulated libraries).
  static std::string besideAddon(const std::string& file);
  ~SharedLibrary();
  SharedLibrary(const SharedLibrary&) = delete;
  SharedLibrary& operator=(const SharedLibrary&) = delete;

  bool loaded() const { return handle_ != nullptr; }
  const std::string& error() const { return error_; }
  const std::string& path() const { return path_; }
  void* handle() const { return handle_; }
  // Throws Error naming the library (and why it is missing, or which symbol is).
  void* symbol(const char* name) const;
  template <typename Fn>
  Fn function(const char* name) const {
    return reinterpret_cast<Fn>(symbol(name));
  }

 private:
  std::string name_;
  std::string path_;
  std::string error_;
  void* handle_ = nullptr;
};

}  // namespace bssn
