// The SIMD Adam kernel against its scalar reference: bit-identical on random data over
// many sizes (SIMD body, scalar tail, both), with and without amsgrad, over several steps.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/adam_update.hpp"

namespace {

using attn::kernels::AdamStep;

TEST(AdamKernel, BitIdenticalToScalarReference) {
  std::mt19937 gen(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (bool amsgrad : {false, true}) {
    for (int64_t n : {0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 257, 1000, 4099}) {
      std::vector<float> w(n), m(n), v(n), vh(n);
      for (int64_t i = 0; i < n; ++i) {
        w[i] = normal(gen);
        m[i] = 0.1f * normal(gen);
        v[i] = std::abs(0.01f * normal(gen));
        vh[i] = v[i] * (i % 2 ? 2.0f : 0.5f);
      }
      auto w2 = w, m2 = m, v2 = v, vh2 = vh;
      for (int t = 1; t <= 3; ++t) {
        std::vector<float> g(n);
        for (int64_t i = 0; i < n; ++i) g[i] = i % 5 == 0 ? 0.0f : normal(gen) * (i % 3 ? 1e-3f : 10.0f);
        const AdamStep step{0.001f * (0.5f + t), 1e-7f, 0.1f, 0.001f};
        attn::kernels::adam_update(step, w.data(), g.data(), m.data(), v.data(), amsgrad ? vh.data() : nullptr, n);
        attn::kernels::adam_update_reference(step, w2.data(), g.data(), m2.data(), v2.data(),
                                             amsgrad ? vh2.data() : nullptr, n);
      }
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(std::memcmp(&w[i], &w2[i], 4), 0) << "n=" << n << " i=" << i << " " << w[i] << " vs " << w2[i];
        ASSERT_EQ(m[i], m2[i]) << n << " " << i;
        ASSERT_EQ(v[i], v2[i]) << n << " " << i;
        if (amsgrad) {
          ASSERT_EQ(vh[i], vh2[i]) << n << " " << i;
        }
      }
    }
  }
}

TEST(AdamKernel, ReferenceMatchesHandComputedStep) {
  // One step from zero state, g = 0.5, lr 0.001, t = 1: alpha = 0.001 * sqrt(0.001) / 0.1,
  // m = 0.05, v = 0.00025, w -= m * alpha / (sqrt(v) + 1e-7) ~= 0.001 (Adam's first step is ~lr).
  float w = 1.0f, g = 0.5f, m = 0.0f, v = 0.0f;
  const float alpha = 0.001f * std::sqrt(1.0f - 0.999f) / (1.0f - 0.9f);
  attn::kernels::adam_update({alpha, 1e-7f, 0.1f, 0.001f}, &w, &g, &m, &v, nullptr, 1);
  EXPECT_FLOAT_EQ(m, 0.05f);
  EXPECT_FLOAT_EQ(v, 0.00025f);
  EXPECT_NEAR(w, 1.0 - 0.05 * (0.001 * std::sqrt(0.001) / 0.1) / (std::sqrt(0.00025) + 1e-7), 1e-7);
}

}  // namespace
