// Small deterministic tensors for tests: values that vary without a random generator.
#pragma once

#include <cstdint>
#include <utility>

#include "attn/tensor.hpp"

namespace attn::testing {

// start + step * (i mod period) for element i: a saw-tooth, so that neighbouring samples differ.
inline Tensor ramp(Shape shape, float step, float start, int64_t period = 11) {
  Tensor t(std::move(shape));
  for (int64_t i = 0; i < t.size(); ++i) t[i] = start + step * static_cast<float>(i % period);
  return t;
}

}  // namespace attn::testing
