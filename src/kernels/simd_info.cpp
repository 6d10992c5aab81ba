// Reports Highway's run-time dispatch choice: the best target both compiled in and
// supported by this processor (lower bits are newer targets in Highway).
#include <hwy/highway.h>
#include <hwy/targets.h>

#include "attn/system.hpp"

namespace attn {

std::string version() { return ATTN_VERSION; }

std::string simd_target() {
  int64_t usable = hwy::SupportedTargets() & HWY_TARGETS;
  if (usable == 0) return "scalar";
  int64_t best = usable & -usable;
  return hwy::TargetName(best);
}

}  // namespace attn
