#include "cuda/graph.h"

#include <algorithm>
#include <cstring>

namespace bssn::cuda {

LaunchGraphs::~LaunchGraphs() {
  if (entries_.empty()) return;
  cudaSetDevice(device_);
  for (const Entry& e : entries_) cudaGraphExecDestroy(e.exec);
  cudaGetLastError();  // after a fault these fail; nobody to tell from a destructor
}

cudaGraphExec_t LaunchGraphs::find(const void* key, size_t bytes) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->key.size() != bytes || std::memcmp(it->key.data(), key, bytes) != 0) continue;
    std::rotate(it, it + 1, entries_.end());  // to the back: the front is the least recently used
    return entries_.back().exec;
  }
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
