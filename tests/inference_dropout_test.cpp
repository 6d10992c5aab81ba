// Dropout pinned to training=true at inference (Monte Carlo dropout): as Keras' seed generator
// advances with every draw, each predict call and each sample gets its own mask; a seeded
// program draws the same sequence again, whatever the batch size or thread count. (Every call
// used to repeat one mask, and samples at the same row of different batches shared it.)
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "attn/attn.hpp"

namespace {

namespace L = attn::layers;
using attn::Model;
using attn::Tensor;

constexpr int64_t kSamples = 8, kWidth = 64;

Model mc_dropout_model() {
  auto in = attn::Input({kWidth});
  return Model(in, L::Dropout(0.5f)(in, {.training = true}));
}

Tensor ones() {
  Tensor x({kSamples, kWidth});
  for (int64_t i = 0; i < x.size(); ++i) x[i] = 1.0f;
  return x;
}

std::vector<float> row(const Tensor& t, int64_t r) { return {t.data() + r * kWidth, t.data() + (r + 1) * kWidth}; }

TEST(InferenceDropout, EveryCallAndEverySampleDrawsItsOwnMask) {
  attn::clear_session();
  attn::set_random_seed(4);
  Model m = mc_dropout_model();
  m.set_threads(1);
  const Tensor first = m.predict(ones(), {.batch_size = 2});
  const Tensor second = m.predict(ones(), {.batch_size = 2});
  EXPECT_NE(first.to_vector(), second.to_vector());
  int64_t kept = 0;
  for (int64_t i = 0; i < first.size(); ++i) {
    ASSERT_TRUE(first[i] == 0.0f || first[i] == 2.0f) << first[i];  // kept values scaled by 1 / (1 - rate)
    kept += first[i] != 0.0f;
  }
  EXPECT_NEAR(double(kept) / first.size(), 0.5, 0.1);
  for (int64_t a = 0; a < kSamples; ++a)
    for (int64_t b = a + 1; b < kSamples; ++b) EXPECT_NE(row(first, a), row(first, b)) << a << " " << b;
}

// The draws go on across compile and set_threads (which replace the model's executor), as a
// Keras layer's seed generator keeps its state: masks never start over.
TEST(InferenceDropout, DrawsGoOnAcrossCompileAndThreadChanges) {
  attn::clear_session();
  attn::set_random_seed(4);
  Model m = mc_dropout_model();
  std::vector<std::vector<float>> draws;
  draws.push_back(m.predict(ones()).to_vector());
  m.compile(attn::optimizers::SGD(), attn::losses::MeanSquaredError());
  draws.push_back(m.predict(ones()).to_vector());
  m.compile(attn::optimizers::SGD(), attn::losses::MeanSquaredError());
  draws.push_back(m.predict(ones()).to_vector());
  m.set_threads(m.threads() == 1 ? 2 : 1);
  draws.push_back(m.predict(ones()).to_vector());
  for (size_t a = 0; a < draws.size(); ++a)
    for (size_t b = a + 1; b < draws.size(); ++b) EXPECT_NE(draws[a], draws[b]) << a << " " << b;
}

TEST(InferenceDropout, SeededRunsRepeatWhateverTheBatchesAndThreads) {
  std::vector<std::vector<float>> runs;
  for (const auto& [threads, batch] : std::vector<std::pair<int, int>>{{1, 2}, {1, 8}, {2, 3}, {2, 8}}) {
    attn::clear_session();
    attn::set_random_seed(4);
    Model m = mc_dropout_model();
    m.set_threads(threads);
    m.predict(ones(), {.batch_size = batch});
    runs.push_back(m.predict(ones(), {.batch_size = batch}).to_vector());  // the second call's masks
  }
  for (size_t i = 1; i < runs.size(); ++i) EXPECT_EQ(runs[i], runs[0]) << "run " << i;
  attn::clear_session();
  attn::set_random_seed(5);  // another seed, another sequence
  Model m = mc_dropout_model();
  m.predict(ones());
  EXPECT_NE(m.predict(ones()).to_vector(), runs[0]);
}

}  // namespace
