// The CPU reference implementation of the batched SN/SSN/BSN/BSSN forward (runs on the CPU stream).
#pragma once
#include "core/normalize_plan.h"

namespace bssn::cpu {

void normalizeBatch(const NormalizeJob& job);
void normalizeBackwardBatch(const NormalizeJob& job);

}  // namespace bssn::cpu
