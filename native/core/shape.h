// Tensor shapes: validation and element counts, with overflow checks.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace bssn {

using Shape = std::vector<int64_t>;

enum class DType { Float32 };

inline size_t dtypeSize(DType) { return 4; }
inline const char* dtypeName(DType) { return "float32"; }

// Largest element count a tensor may have (2^40): keeps byte counts and offsets far from overflow.
constexpr int64_t kMaxElements = int64_t(1) << 40;

std::string shapeToString(const Shape& shape);
// Throws RangeError unless every dimension is a non-negative integer and the product fits kMaxElements.
int64_t checkedNumel(const Shape& shape);

}  // namespace bssn
