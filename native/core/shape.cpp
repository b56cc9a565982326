#include "core/shape.h"

#include "core/error.h"

namespace bssn {

std::string shapeToString(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

int64_t checkedNumel(const Shape& shape) {
  if (shape.size() > 8) throwRangeError("expected at most 8 dimensions, got shape " + shapeToString(shape));
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throwRangeError("expected non-negative dimensions, got shape " + shapeToString(shape));
    if (d != 0 && n > kMaxElements / d) throwRangeError("shape " + shapeToString(shape) + " has too many elements");
    n *= d;
  }
  return n;
}

}  // namespace bssn
