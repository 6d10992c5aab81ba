// Concatenate (keras/src/layers/merging/concatenate.py) and GlobalMaxPooling1D
// (keras/src/layers/pooling/global_max_pooling1d.py): values placed by hand, ties in the max
// gradient shared as TensorFlow shares them, finite-difference gradients, masks, configs and
// files, and a text CNN of both (two Conv1D branches joined, max-pooled) that learns a bigram.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "attn/attn.hpp"
#include "gradient_check.hpp"
#include "layer_once.hpp"
#include "reload_check.hpp"

namespace {

namespace L = attn::layers;
using attn::Shape;
using attn::Tensor;
using attn::testing::check_layer_gradients;
using attn::testing::GradCheck;

class MergingPooling : public ::testing::Test {
 protected:
  void SetUp() override {
    attn::clear_session();
    attn::set_random_seed(9);
  }
};

TEST_F(MergingPooling, ConcatenateJoinsAlongTheAxisGiven) {
  auto a = attn::Input({2, 3}), b = attn::Input({2, 1});
  attn::Model features(std::vector<attn::Node>{a, b}, std::vector<attn::Node>{L::Concatenate()({a, b})});
  EXPECT_EQ(features.outputs().at(0)->shape, (Shape{2, 4}));
  const Tensor xa({1, 2, 3}, {1, 2, 3, 4, 5, 6}), xb({1, 2, 1}, {10, 20});
  EXPECT_EQ(features.predict(std::vector<Tensor>{xa, xb}).at(0).to_vector(),
            (std::vector<float>{1, 2, 3, 10, 4, 5, 6, 20}));
  auto c = attn::Input({1, 3});
  // Keras' axis 1: the first sample axis.
  attn::Model steps(std::vector<attn::Node>{a, c}, std::vector<attn::Node>{L::Concatenate(1)({a, c})});
  EXPECT_EQ(steps.outputs().at(0)->shape, (Shape{3, 3}));
  EXPECT_EQ(steps.predict(std::vector<Tensor>{xa, Tensor({1, 1, 3}, {7, 8, 9})}).at(0).to_vector(),
            (std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_THROW(L::Concatenate(1)({a, b}), std::invalid_argument);   // (2, 3) and (2, 1) differ off axis 1
  EXPECT_THROW(L::Concatenate(0)({a, a}), std::invalid_argument);   // the batch axis
  EXPECT_THROW(L::Concatenate(3)({a, a}), std::invalid_argument);   // no such axis
  EXPECT_THROW(L::Concatenate()({a}), std::invalid_argument);       // one input
}

TEST_F(MergingPooling, ConcatenateGradients) {
  for (const int64_t axis : {-1, 1, 2, -2}) {
    SCOPED_TRACE("axis " + std::to_string(axis));
    GradCheck g;
    g.layer = std::make_shared<L::ConcatenateLayer>(axis);
    const bool middle = axis == 2 || axis == -2;
    g.input_shapes = middle ? std::vector<Shape>{{2, 3, 2}, {2, 1, 2}, {2, 2, 2}}
                     : axis == 1 ? std::vector<Shape>{{3, 2, 2}, {1, 2, 2}, {2, 2, 2}}
                                 : std::vector<Shape>{{2, 2, 3}, {2, 2, 1}, {2, 2, 2}};
    check_layer_gradients(g);
  }
  GradCheck same;  // one tensor joined to itself: both halves' gradients reach it
  same.layer = std::make_shared<L::ConcatenateLayer>(-1);
  same.input_shapes = {{3, 2}, {3, 2}};
  same.input_source = {0, 0};
  check_layer_gradients(same);
}

TEST_F(MergingPooling, ConcatenatePassesOneMaskAlongTheFeatures) {
  auto ids = attn::Input({5});
  auto e = L::Embedding(6, 4, {.mask_zero = true})(ids);
  auto joined = L::Concatenate()({e, L::Dense(3)(e)});
  EXPECT_EQ(joined->keras_mask, e->keras_mask);  // features joined: the steps' mask is unchanged
  EXPECT_THROW(L::Concatenate(1)({e, e}), std::invalid_argument);  // steps joined: Keras joins the masks
}

TEST_F(MergingPooling, GlobalMaxPoolingTakesTheMaximumAndSharesTies) {
  auto in = attn::Input({3, 2});
  auto layer = std::make_shared<L::GlobalMaxPooling1DLayer>();
  attn::Model model(in, layer->call({in})[0]);
  // Steps (1, 5), (4, 5), (4, -1): maxima 4 and 5, each held by two steps.
  const Tensor x({1, 3, 2}, {1, 5, 4, 5, 4, -1});
  EXPECT_EQ(model.predict(x).to_vector(), (std::vector<float>{4, 5}));
  const auto once = attn::testing::run_layer_once(*layer, x.to_vector(), 1, 2, {2.0f, -6.0f});
  EXPECT_EQ(once.dx, (std::vector<float>{0, -3, 1, -3, 1, 0}));  // each tie gets half

  // A NaN among the steps makes that feature's maximum NaN (model entry points refuse NaN
  // inputs, but a layer before may make one).
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const auto with_nan = attn::testing::run_layer_once(*layer, {1, 2, nan, 0, 3, 1}, 1, 2);
  EXPECT_TRUE(std::isnan(with_nan.y[0]));
  EXPECT_EQ(with_nan.y[1], 2.0f);

  auto first = attn::Input({2, 3});  // channels_first: (features, steps)
  attn::Model pool_first(first, L::GlobalMaxPooling1D({.data_format = "channels_first"})(first));
  EXPECT_EQ(pool_first.predict(Tensor({1, 2, 3}, {1, 7, 2, -4, -3, -5})).to_vector(), (std::vector<float>{7, -3}));
  EXPECT_EQ(L::GlobalMaxPooling1D({.keepdims = true})(attn::Input({4, 3}))->shape, (Shape{1, 3}));
}

TEST_F(MergingPooling, GlobalMaxPoolingGradients) {
  for (const char* format : {"channels_last", "channels_first"}) {
    SCOPED_TRACE(format);
    GradCheck g;  // random inputs: no ties, so finite differences see one step per feature
    g.layer = std::make_shared<L::GlobalMaxPooling1DLayer>(L::GlobalPooling1DOptions{.data_format = format});
    g.input_shapes = {{6, 4}};
    check_layer_gradients(g);
  }
}

// Token ids 0..7 in sequences of 10; the label says whether token 3 is directly followed by
// token 4 somewhere. Two Conv1D branches (2 and 3 taps) see bigrams; max pooling finds one anywhere.
TEST_F(MergingPooling, TextCnnLearnsABigramAndReadsBack) {
  const auto make = [](int64_t n, uint32_t seed, Tensor& x, Tensor& y) {
    x = Tensor({n, 10});
    y = Tensor({n});
    std::mt19937 gen(seed);
    std::uniform_int_distribution<int> token(0, 7);
    std::bernoulli_distribution plant(0.5);
    for (int64_t s = 0; s < n; ++s) {
      for (int64_t t = 0; t < 10; ++t) x[s * 10 + t] = static_cast<float>(token(gen));
      if (plant(gen)) {
        const int64_t at = token(gen);  // 0..7, so at + 1 <= 8 < 10
        x[s * 10 + at] = 3;
        x[s * 10 + at + 1] = 4;
      }
      for (int64_t t = 0; t + 1 < 10; ++t)
        if (x[s * 10 + t] == 3 && x[s * 10 + t + 1] == 4) y[s] = 1;
    }
  };
  Tensor x, y, xv, yv;
  make(800, 1, x, y);
  make(300, 2, xv, yv);
  auto ids = attn::Input({10});
  auto e = L::Embedding(8, 8)(ids);
  auto two = L::Conv1D(8, 2, {.padding = "same", .activation = "relu"})(e);
  auto three = L::Conv1D(8, 3, {.padding = "same", .activation = "relu"})(e);
  auto pooled = L::GlobalMaxPooling1D()(L::Concatenate()({two, three}));
  attn::Model model(ids, L::Dense(2, {.activation = "softmax"})(pooled));
  model.compile(attn::optimizers::Adam({.learning_rate = 1e-2f}), attn::losses::SparseCategoricalCrossentropy(),
                {"accuracy"});
  model.fit(x, y, {.epochs = 15, .batch_size = 20, .verbose = 0});
  EXPECT_GT(model.evaluate(xv, yv).at("accuracy"), 0.9);
  attn::testing::expect_same_predictions_after_reload(model, xv.rows(0, 8));
}

}  // namespace
