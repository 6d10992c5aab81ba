// Facts about the running build and machine that users need when reporting speed:
// the SIMD target the kernels dispatch to, the version.
#pragma once

#include <string>

namespace attn {

std::string version();
// Name of the best SIMD target the dispatched kernels run on here, e.g. "AVX3".
std::string simd_target();

}  // namespace attn
