// Activations pass NaN through, as TensorFlow and JAX do: relu(NaN) is NaN, not 0, so a model
// whose weights have diverged reports a NaN loss (and TerminateOnNaN stops it) instead of
// training on looking healthy.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/activations.hpp"

namespace {
using attn::kernels::Activation;

TEST(Activations, NaNPassesThroughEveryActivation) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const Activation a : {Activation::kLinear, Activation::kRelu, Activation::kSigmoid, Activation::kTanh,
                             Activation::kGelu, Activation::kSoftmax}) {
    const std::vector<float> x = {-1.0f, nan, 2.0f};
    std::vector<float> y(3, 0.0f);
    attn::kernels::activation_forward(a, x.data(), y.data(), 1, 3);
    EXPECT_TRUE(std::isnan(y[1])) << attn::kernels::to_string(a);
  }
  // and relu keeps what it always did elsewhere
  const std::vector<float> x = {-1.0f, 0.0f, 2.5f};
  std::vector<float> y(3);
  attn::kernels::activation_forward(Activation::kRelu, x.data(), y.data(), 1, 3);
  EXPECT_EQ(y, (std::vector<float>{0.0f, 0.0f, 2.5f}));
}

}  // namespace
