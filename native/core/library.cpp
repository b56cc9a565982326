#include "core/library.h"

#include <dlfcn.h>

#include <cstdlib>

#include "core/error.h"

namespace bssn {

SharedLibrary::SharedLibrary(const char* displayName, std::vector<std::string> candidates, const char* hint, const Acceptor& accept)
    : name_(displayName) {
  std::string tried;
  for (const std::string& candidate : candidates) {
    handle_ = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle_) {
      const std::string refused = accept ? accept(candidate, handle_) : std::string();
      if (refused.empty()) {
        path_ = candidate;
        return;
      }
      dlclose(handle_);
      handle_ = nullptr;
      tried += "\n  " + refused;
      continue;
    }
    const char* why = dlerror();
    tried += "\n  " + (why ? std::string(why) : candidate + ": not found");  // dlerror names the file
  }
  error_ = name_ + " could not be loaded; tried:" + tried + "\n  " + hint;
}

std::vector<std::string> SharedLibrary::candidates(const std::vector<std::string>& files, const std::vector<std::string>& envFolders,
                                                   const std::vector<std::string>& folders) {
  std::vector<std::string> dirs;
  for (const std::string& var : envFolders) {
    const char* value = std::getenv(var.substr(0, var.find('/')).c_str());
    if (value && *value) dirs.push_back(std::string(value) + (var.find('/') == std::string::npos ? "" : var.substr(var.find('/'))));
  }
  dirs.insert(dirs.end(), folders.begin(), folders.end());
  std::vector<std::string> out = files;
  for (const std::string& dir : dirs)
    for (const std::string& file : files) out.push_back(dir + "/" + file);
  return out;
}

std::vector<std::string> SharedLibrary::overridable(const char* pathVariable, std::vector<std::string> fallback) {
  const char* path = std::getenv(pathVariable);
  if (path && *path) return {path};
  return fallback;
}

std::string SharedLibrary::besideAddon(const std::string& file) {
  Dl_info info;
  if (!dladdr(reinterpret_cast<void*>(&SharedLibrary::besideAddon), &info) || !info.dli_fname) return file;
  const std::string self = info.dli_fname;
  const size_t slash = self.rfind('/');
  return slash == std::string::npos ? file : self.substr(0, slash + 1) + file;
}

SharedLibrary::~SharedLibrary() {
  // Left loaded: other threads may still be inside it at process exit.
}

void* SharedLibrary::symbol(const char* name) const {
  if (!handle_) throwError(error_, ErrorCode::LibraryMissing);
  dlerror();
  void* p = dlsym(handle_, name);
  if (!p) throwError(name_ + " (" + path_ + ") has no entry point " + name + ": an unsupported version?");
  return p;
}

}  // namespace bssn
