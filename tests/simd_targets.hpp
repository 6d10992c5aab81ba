// Runs a test body once per SIMD target this binary has code for and the processor supports
// (SSE2 ... AVX-512 on x86), each run traced with the target's name: vector widths change
// tails, tile shapes and strip widths, so the fast kernels are checked on each.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>

#include <hwy/targets.h>

namespace attn::testing {

template <class Body>
void on_every_simd_target(Body body) {
  for (const int64_t target : hwy::SupportedAndGeneratedTargets()) {
    SCOPED_TRACE(hwy::TargetName(target));
    hwy::SetSupportedTargetsForTest(target);
    body();
  }
  hwy::SetSupportedTargetsForTest(0);
}

}  // namespace attn::testing
