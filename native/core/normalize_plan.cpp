#include "core/normalize_plan.h"

namespace bssn {

LayerView makeLayerView(const Shape& shape, int dim) {
  LayerView v;
  const int nd = int(shape.size());
  v.numel = 1;
  for (int64_t d : shape) v.numel *= d;
  if (nd == 1) {
    v.kind = LayerKind::Vector;
    v.R = shape[0];
    return v;
  }
  int64_t K = 1;
  for (int a = dim + 1; a < nd; ++a) K *= shape[a];
  v.R = shape[dim];
  if (dim == 0) {
    // [R, C, trailing...]: the other axis is 1, the trailing axes follow it.
    v.C = shape[1];
    v.K = 1;
    for (int a = 2; a < nd; ++a) v.K *= shape[a];
    v.strideI = v.C * v.K;
    v.strideC = v.K;
  } else {
    // [C, middle..., R, trailing...]: the other axis is 0.
    v.C = shape[0];
    v.M = 1;
    for (int a = 1; a < dim; ++a) v.M *= shape[a];
    v.K = K;
    v.strideI = K;
    v.strideM = v.R * K;
    v.strideC = v.M * v.R * K;
    v.iOutermost = false;
  }
  v.kind = nd == 2 ? LayerKind::Matrix : LayerKind::Bidirectional;
  return v;
}

}  // namespace bssn
