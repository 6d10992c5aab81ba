// Subnormals flushed to zero on the threads that compute, as TensorFlow does: the guard sets
// and restores the calling thread's mode, every thread of the pool computes with it (the caller
// only inside run()), and so does a model's forward pass, on one thread and on two.
#include <gtest/gtest.h>

#include <limits>
#include <vector>

#include "attn/attn.hpp"
#include "model/flush_denormals.hpp"
#include "model/thread_pool.hpp"

namespace {

// 1e-20 * 1e-20 = 1e-40, below float's smallest normal (1.18e-38): a subnormal, or 0 when
// flushed. volatile keeps the compiler from folding it at compile time.
float subnormal_product() {
  volatile float a = 1e-20f;
  volatile float b = 1e-20f;
  return a * b;
}

bool flushing_supported() {
#if defined(__x86_64__) || defined(__i386__)
  return true;
#else
  return false;
#endif
}

TEST(FlushDenormals, GuardSetsAndRestoresTheCallingThreadsMode) {
  if (!flushing_supported()) GTEST_SKIP() << "subnormals are flushed only on x86";
  ASSERT_FALSE(attn::ScopedFlushDenormals::active()) << "the test thread starts in IEEE mode";
  const float before = subnormal_product();
  EXPECT_GT(before, 0.0f);
  EXPECT_LT(before, std::numeric_limits<float>::min());
  {
    attn::ScopedFlushDenormals flush;
    EXPECT_TRUE(attn::ScopedFlushDenormals::active());
    EXPECT_EQ(subnormal_product(), 0.0f);
    // A subnormal input reads as zero too (DAZ), not only results.
    volatile float tiny = before;
    volatile float one = 1.0f;
    EXPECT_EQ(tiny * one, 0.0f);
    {
      attn::ScopedFlushDenormals nested;  // already set: leaves it set on the way out
    }
    EXPECT_TRUE(attn::ScopedFlushDenormals::active());
  }
  EXPECT_FALSE(attn::ScopedFlushDenormals::active());
  EXPECT_EQ(subnormal_product(), before);
}

TEST(FlushDenormals, EveryPoolThreadFlushesAndTheCallerGetsItsModeBack) {
  if (!flushing_supported()) GTEST_SKIP() << "subnormals are flushed only on x86";
  for (int threads : {1, 2, 3}) {
    attn::ThreadPool pool(threads);
    std::vector<float> products(threads, -1.0f);
    std::vector<int> active(threads, -1);
    auto fn = [&](int i) {
      products[i] = subnormal_product();
      active[i] = attn::ScopedFlushDenormals::active() ? 1 : 0;
    };
    for (int round = 0; round < 3; ++round) {
      pool.run(fn);
      for (int i = 0; i < threads; ++i) {
        EXPECT_EQ(products[i], 0.0f) << threads << " threads, thread " << i;
        EXPECT_EQ(active[i], 1) << threads << " threads, thread " << i;
      }
      EXPECT_FALSE(attn::ScopedFlushDenormals::active()) << threads << " threads";
      EXPECT_GT(subnormal_product(), 0.0f) << threads << " threads";
    }
  }
}

TEST(FlushDenormals, ModelOutputsAreFlushedOnOneThreadAndOnTwo) {
  if (!flushing_supported()) GTEST_SKIP() << "subnormals are flushed only on x86";
  attn::clear_session();
  auto in = attn::Input({1});
  attn::Model m(in, attn::layers::Dense(1)(in));
  m.set_weights_flat({1e-20f, 0.0f});  // kernel, bias
  attn::Tensor x({4, 1}, {1e-20f, 2e-20f, 1.0f, -1.0f});
  for (int threads : {1, 2}) {
    m.set_threads(threads);
    const attn::Tensor y = m.predict(x, {.batch_size = 2});
    EXPECT_EQ(y[0], 0.0f) << threads << " threads";  // 1e-40 in IEEE arithmetic
    EXPECT_EQ(y[1], 0.0f) << threads << " threads";  // 2e-40
    EXPECT_EQ(y[2], 1e-20f) << threads << " threads";
    EXPECT_EQ(y[3], -1e-20f) << threads << " threads";
  }
  EXPECT_FALSE(attn::ScopedFlushDenormals::active());
}

}  // namespace
