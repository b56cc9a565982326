#include "cuda/graph.h"

#include <cstring>

namespace bssn::cuda {

LaunchGraphs::~LaunchGraphs() {
  if (entries_.empty()) return;
  cudaSetDevice(device_);
  for (const Entry& e : entries_) cudaGraphExecDestroy(e.exec);
  cudaGetLastError();  // after a fault these fail; nobody to tell from a destructor
}

cudaGraphExec_t LaunchGraphs::find(const void* key, size_t bytes) const {
  for (const Entry& e : entries_)
    if (e.key.size() == bytes && std::memcmp(e.key.data(), key, bytes) == 0) return e.exec;
  return nullptr;
}

void LaunchGraphs::add(const void* key, size_t bytes, cudaGraphExec_t exec) {
  if (entries_.size() >= kMaxGraphs) {
    cudaGraphExecDestroy(entries_.front().exec);
    entries_.erase(entries_.begin());
  }
  const auto* begin = static_cast<const unsigned char*>(key);
  entries_.push_back(Entry{std::vector<unsigned char>(begin, begin + bytes), exec});
}

}  // namespace bssn::cuda
