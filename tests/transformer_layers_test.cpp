// The layers of a Transformer encoder block besides MultiHeadAttention, against Keras' formulas:
// LayerNormalization (keras/src/layers/normalization/layer_normalization.py: per row of the last
// axis, (x - mean) / sqrt(var + epsilon) * gamma + beta; values computed here in double,
// gradients by finite differences, with and without gamma and beta), Add (merging/add.py) and
// GlobalAveragePooling1D (pooling/global_average_pooling1d.py); their configs as Keras writes
// them; and a whole encoder block (embedding Dense, MultiHeadAttention, residual Add,
// LayerNormalization, feed-forward, pooling) that learns a task, and reads back from .keras and
// legacy .h5 with the same predictions.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "attn/attn.hpp"
#include "gradient_check.hpp"
#include "reload_check.hpp"

namespace {

namespace L = attn::layers;
using attn::CallOptions;
using attn::Shape;
using attn::Tensor;
using attn::testing::check_layer_gradients;
using attn::testing::GradCheck;

class TransformerLayers : public ::testing::Test {
 protected:
  void SetUp() override {
    attn::clear_session();
    attn::set_random_seed(3);
  }
};

// The layer's forward on `x` (batch B), weights as they are.
std::vector<float> forward(attn::Layer& layer, const std::vector<const std::vector<float>*>& xs, int64_t B,
                           const Shape& out_shape) {
  CallOptions call;
  std::vector<float> out(B * attn::shape_size(out_shape), std::nanf(""));
  std::vector<float> saved(std::max<int64_t>(1, B * layer.saved_floats_per_sample(call)));
  std::vector<float> scratch(std::max<int64_t>(1, layer.scratch_floats(B, call)));
  attn::ForwardContext f;
  f.batch = B;
  f.call = &call;
  for (const auto* x : xs) f.inputs.push_back(x->data());
  f.outputs = {out.data()};
  f.saved = saved.data();
  f.scratch = scratch.data();
  layer.forward(f);
  return out;
}

TEST_F(TransformerLayers, LayerNormalizationComputesKerasFormula) {
  auto layer = std::make_shared<L::LayerNormalizationLayer>(L::LayerNormalizationOptions{.epsilon = 0.01});
  const Shape shape = {3, 5};
  auto out = layer->call({attn::Input(shape)});
  ASSERT_EQ(out[0]->shape, shape);
  ASSERT_EQ(layer->weights().size(), 2u);
  EXPECT_EQ(layer->weights()[0].name, "gamma");  // Keras creates gamma, then beta
  EXPECT_EQ(layer->weights()[1].name, "beta");
  // Initial values: gamma ones, beta zeros.
  for (int64_t j = 0; j < 5; ++j) {
    EXPECT_EQ(layer->weights()[0].value[j], 1.0f);
    EXPECT_EQ(layer->weights()[1].value[j], 0.0f);
  }
  std::mt19937 gen(4);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  for (attn::Weight& w : layer->weights())
    for (int64_t j = 0; j < 5; ++j) w.value[j] = u(gen);
  std::vector<float> x(2 * 15);
  for (float& v : x) v = u(gen);
  for (int j = 0; j < 5; ++j) x[5 + j] = 0.25f;  // a constant row: its output is beta
  const auto y = forward(*layer, {&x}, 2, shape);
  const float* gamma = layer->weights()[0].value.data();
  const float* beta = layer->weights()[1].value.data();
  for (int64_t r = 0; r < 6; ++r) {
    double mean = 0, var = 0;
    for (int j = 0; j < 5; ++j) mean += x[r * 5 + j] / 5.0;
    for (int j = 0; j < 5; ++j) var += (x[r * 5 + j] - mean) * (x[r * 5 + j] - mean) / 5.0;
    for (int j = 0; j < 5; ++j) {
      const double want = (x[r * 5 + j] - mean) / std::sqrt(var + 0.01) * gamma[j] + beta[j];
      EXPECT_NEAR(y[r * 5 + j], want, 2e-6 * (1 + std::fabs(want))) << "row " << r << " feature " << j;
    }
  }
  for (int j = 0; j < 5; ++j) EXPECT_EQ(y[5 + j], beta[j]) << "constant row";
}

TEST_F(TransformerLayers, LayerNormalizationGradients) {
  for (const auto& [scale, center] : {std::pair{true, true}, {true, false}, {false, true}, {false, false}}) {
    SCOPED_TRACE(std::string("scale ") + (scale ? "on" : "off") + ", center " + (center ? "on" : "off"));
    GradCheck g;
    g.layer = std::make_shared<L::LayerNormalizationLayer>(L::LayerNormalizationOptions{.center = center, .scale = scale});
    g.input_shapes = {{3, 6}};
    check_layer_gradients(g);
    EXPECT_EQ(g.layer->weights().size(), static_cast<size_t>(scale) + static_cast<size_t>(center));
  }
  GradCheck flat;  // a rank-1 input: one row per sample
  flat.layer = std::make_shared<L::LayerNormalizationLayer>();
  flat.input_shapes = {{7}};
  flat.batch = 3;
  check_layer_gradients(flat);
}

TEST_F(TransformerLayers, LayerNormalizationRefusesOtherAxesAndBadEpsilon) {
  auto layer = std::make_shared<L::LayerNormalizationLayer>(L::LayerNormalizationOptions{.axis = 1});
  try {
    layer->call({attn::Input({4, 3})});
    FAIL() << "axis 1 of a rank-3 input accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("axis 1"), std::string::npos) << e.what();
  }
  auto last = std::make_shared<L::LayerNormalizationLayer>(L::LayerNormalizationOptions{.axis = 2});
  EXPECT_NO_THROW(last->call({attn::Input({4, 3})}));  // 2 is the last axis counting the batch
  EXPECT_THROW(L::LayerNormalizationLayer(L::LayerNormalizationOptions{.epsilon = 0.0}), std::invalid_argument);
}

TEST_F(TransformerLayers, AddSumsAndSendsTheGradientToEveryInput) {
  auto layer = std::make_shared<L::AddLayer>();
  GradCheck g;
  g.layer = layer;
  g.input_shapes = {{4, 3}, {4, 3}, {4, 3}};
  const auto res = check_layer_gradients(g);
  for (size_t i = 0; i < res.output.size(); ++i)
    EXPECT_EQ(res.output[i], res.inputs[0][i] + res.inputs[1][i] + res.inputs[2][i]);
  GradCheck twice;  // one node added to itself: its gradient is twice the output's
  twice.layer = std::make_shared<L::AddLayer>();
  twice.input_shapes = {{5}, {5}};
  twice.input_source = {0, 0};
  check_layer_gradients(twice);
  auto bad = std::make_shared<L::AddLayer>();
  try {
    bad->call({attn::Input({4, 3}), attn::Input({1, 3})});
    FAIL() << "shapes (4, 3) and (1, 3) accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("broadcasting is not supported"), std::string::npos) << e.what();
  }
}

TEST_F(TransformerLayers, GlobalAveragePooling1DIsTheMeanOverSteps) {
  GradCheck g;
  g.layer = std::make_shared<L::GlobalAveragePooling1DLayer>();
  g.input_shapes = {{5, 3}};
  const auto res = check_layer_gradients(g);
  ASSERT_EQ(res.output.size(), 2u * 3u);
  for (int b = 0; b < 2; ++b)
    for (int f = 0; f < 3; ++f) {
      double mean = 0;
      for (int t = 0; t < 5; ++t) mean += res.inputs[0][(b * 5 + t) * 3 + f] / 5.0;
      EXPECT_NEAR(res.output[b * 3 + f], mean, 1e-6);
    }
  auto keep = std::make_shared<L::GlobalAveragePooling1DLayer>(L::GlobalAveragePooling1DOptions{.keepdims = true});
  EXPECT_EQ(keep->call({attn::Input({5, 3})})[0]->shape, (Shape{1, 3}));
  auto flat = std::make_shared<L::GlobalAveragePooling1DLayer>();
  EXPECT_THROW(flat->call({attn::Input({5})}), std::invalid_argument);
}

// Input (8, 6) -> Dense(16) -> [MultiHeadAttention(2 heads of 8), Add, LayerNormalization] ->
// [Dense(32, relu) -> Dense(16), Add, LayerNormalization] -> GlobalAveragePooling1D ->
// Dense(3, softmax): the Keras examples' encoder block. 8 x 8 scores per head take
// MultiHeadAttention's fused kernel.
attn::Model encoder_classifier() {
  auto in = attn::Input({8, 6});
  auto x = L::Dense(16)(in);
  auto a = L::MultiHeadAttention(2, 8)({x, x});
  x = L::LayerNormalization()(L::Add()({x, a}));
  auto f = L::Dense(16)(L::Dense(32, {.activation = "relu"})(x));
  x = L::LayerNormalization()(L::Add()({x, f}));
  auto out = L::Dense(3, {.activation = "softmax"})(L::GlobalAveragePooling1D()(x));
  return attn::Model(in, out);
}

// Labels from how many steps have their first feature above 0.3 (at most 2, 3, at least 4): a
// task that pooling over steps can express, as the block has no positional information.
void make_task(int64_t n, Tensor& x, Tensor& y, uint32_t seed) {
  x = Tensor({n, 8, 6});
  y = Tensor({n});
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t s = 0; s < n; ++s) {
    int above = 0;
    for (int64_t i = 0; i < 48; ++i) {
      x.data()[s * 48 + i] = u(gen);
      above += i % 6 == 0 && x.data()[s * 48 + i] > 0.3f;
    }
    y.data()[s] = above <= 2 ? 0.0f : above == 3 ? 1.0f : 2.0f;
  }
}

TEST_F(TransformerLayers, EncoderBlockTrainsAndReadsBackFromKerasFiles) {
  attn::Model model = encoder_classifier();
  model.compile(attn::optimizers::Adam({.learning_rate = 3e-3}), attn::losses::SparseCategoricalCrossentropy(),
                {"accuracy"});
  Tensor x, y, xt, yt;
  make_task(600, x, y, 1);
  make_task(200, xt, yt, 2);
  const double before = model.evaluate(xt, yt)["loss"];
  model.fit(x, y, {.epochs = 25, .batch_size = 20, .verbose = 0});
  const auto after = model.evaluate(xt, yt);
  EXPECT_LT(after.at("loss"), 0.5 * before) << "held-out loss " << before << " -> " << after.at("loss");
  EXPECT_GT(after.at("accuracy"), 0.75);

  attn::testing::expect_same_predictions_after_reload(model, xt);
  const nlohmann::json config = attn::io::model_to_config(model);
  int norms = 0, adds = 0, pools = 0;
  for (const auto& layer : config["config"]["layers"]) {
    const std::string cls = layer["class_name"];
    if (cls == "LayerNormalization") {
      ++norms;
      EXPECT_EQ(layer["config"]["epsilon"], 0.001);
      EXPECT_EQ(layer["config"]["axis"], nlohmann::json::array({-1}));
      EXPECT_EQ(layer["config"]["gamma_initializer"]["class_name"], "Ones");
    }
    adds += cls == "Add";
    if (cls == "GlobalAveragePooling1D") {
      ++pools;
      EXPECT_EQ(layer["config"]["data_format"], "channels_last");
    }
  }
  EXPECT_EQ(norms, 2);
  EXPECT_EQ(adds, 2);
  EXPECT_EQ(pools, 1);
}

// What the reader refuses names the layer and the option.
TEST_F(TransformerLayers, ReaderRefusesWhatTheLayersDoNotImplement) {
  attn::Model model = encoder_classifier();
  nlohmann::json config = attn::io::model_to_config(model);
  for (auto& layer : config["config"]["layers"])
    if (layer["class_name"] == "LayerNormalization") layer["config"]["rms_scaling"] = true;
  try {
    attn::io::model_from_config(config, "cfg.json");
    FAIL() << "rms_scaling accepted";
  } catch (const attn::io::FileError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("cfg.json"), std::string::npos) << what;
    EXPECT_NE(what.find("rms_scaling"), std::string::npos) << what;
  }
  config = attn::io::model_to_config(model);
  for (auto& layer : config["config"]["layers"])
    if (layer["class_name"] == "LayerNormalization") layer["config"]["axis"] = nlohmann::json::array({1, 2});
  EXPECT_THROW(attn::io::model_from_config(config, "cfg.json"), attn::io::FileError);
}

}  // namespace
