// Embedding (keras/src/layers/core/embedding.py): output[..., :] = embeddings[id], the table's
// gradient the sum of the output gradients at each id's uses (hand-derived: the adjoint of a
// gather), Keras' "uniform" initializer, its config as Keras writes it, the ids checked before
// any run (TensorFlow on a CPU refuses ids outside [0, input_dim)), and a Transformer block over
// token ids that learns a task, trains alike on 1 and 2 threads, and reads back from .keras
// and .h5. Also keras_hub's PositionEmbedding, which adds the positions a pooled Transformer needs.
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
using attn::Tensor;

class EmbeddingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    attn::clear_session();
    attn::set_random_seed(5);
  }
};

TEST_F(EmbeddingTest, ForwardGathersRowsAndBackwardSumsEachIdsGradients) {
  auto layer = std::make_shared<L::EmbeddingLayer>(5, 3);
  const auto out = layer->call({attn::Input({4})});
  ASSERT_EQ(out[0]->shape, (attn::Shape{4, 3}));
  attn::Weight& table = layer->weights().at(0);
  EXPECT_EQ(table.name, "embeddings");
  // Row r holds 10r, 10r + 1, 10r + 2.
  for (int64_t i = 0; i < 15; ++i) table.value[i] = static_cast<float>(10 * (i / 3) + i % 3);

  const std::vector<float> ids = {4, 0, 4, 2, /* sample 2 */ 1, 1, 3, 0};
  std::vector<float> y(2 * 4 * 3, std::nanf(""));
  attn::CallOptions call;
  attn::ForwardContext f;
  f.batch = 2;
  f.call = &call;
  f.inputs = {ids.data()};
  f.outputs = {y.data()};
  layer->forward(f);
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 3; ++j) EXPECT_EQ(y[i * 3 + j], 10.0f * ids[i] + j) << i << "," << j;

  // L = sum(r * y): d(table row k) = sum of r over the positions holding id k.
  std::vector<float> r(24);
  for (int i = 0; i < 24; ++i) r[i] = 0.25f * static_cast<float>(i) - 2.0f;
  std::vector<float> grads(15 + 16, 0.0f);  // param_grads from offset 0
  table.offset = 0;
  attn::BackwardContext b;
  b.batch = 2;
  b.call = &call;
  b.inputs = {ids.data()};
  b.outputs = {y.data()};
  b.output_grads = {r.data()};
  b.input_grads = {nullptr};
  b.param_grads = grads.data();
  layer->backward(b);
  std::vector<double> want(15, 0.0);
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 3; ++j) want[static_cast<int>(ids[i]) * 3 + j] += r[i * 3 + j];
  for (int k = 0; k < 15; ++k) EXPECT_FLOAT_EQ(grads[k], want[k]) << k;
  layer->backward(b);  // backward adds
  for (int k = 0; k < 15; ++k) EXPECT_FLOAT_EQ(grads[k], 2 * want[k]) << k;
}

TEST_F(EmbeddingTest, StartsFromKerasUniformAndWritesKerasConfig) {
  auto layer = std::make_shared<L::EmbeddingLayer>(100, 8, L::EmbeddingOptions{.name = "tokens"});
  layer->call({attn::Input({6})});
  const Tensor& t = layer->weights()[0].value;
  float lo = 1, hi = -1;
  for (int64_t i = 0; i < t.size(); ++i) {
    lo = std::min(lo, t[i]);
    hi = std::max(hi, t[i]);
  }
  EXPECT_GE(lo, -0.05f);
  EXPECT_LE(hi, 0.05f);
  EXPECT_LT(lo, -0.04f);  // 800 draws of U(-0.05, 0.05) reach past +-0.04
  EXPECT_GT(hi, 0.04f);
  const nlohmann::json c = layer->get_config();
  EXPECT_EQ(c["name"], "tokens");
  EXPECT_EQ(c["input_dim"], 100);
  EXPECT_EQ(c["output_dim"], 8);
  EXPECT_EQ(c["mask_zero"], false);
  EXPECT_EQ(c["embeddings_initializer"]["class_name"], "RandomUniform");
  EXPECT_EQ(c["embeddings_initializer"]["config"]["minval"], -0.05);
  EXPECT_EQ(c["embeddings_initializer"]["config"]["maxval"], 0.05);
  EXPECT_THROW(L::EmbeddingLayer(0, 4), std::invalid_argument);
  EXPECT_THROW(L::EmbeddingLayer(4, 0), std::invalid_argument);
}

// Token ids 0..9 (sequences of 8; 0 is an ordinary token) -> Embedding(10, 16) ->
// MultiHeadAttention(2 x 8) with a residual Add and LayerNormalization -> pooling -> Dense(3).
attn::Model token_classifier() {
  auto in = attn::Input({8}, "ids");
  auto x = L::Embedding(10, 16, {.name = "tokens"})(in);
  auto a = L::MultiHeadAttention(2, 8)({x, x});
  x = L::LayerNormalization()(L::Add()({x, a}));
  auto out = L::Dense(3, {.activation = "softmax"})(L::GlobalAveragePooling1D()(x));
  return attn::Model(in, out);
}

// Label: how often token 7 occurs (0, 1, 2 or more).
void make_tokens(int64_t n, Tensor& x, Tensor& y, uint32_t seed) {
  x = Tensor({n, 8});
  y = Tensor({n});
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> token(0, 9);
  for (int64_t s = 0; s < n; ++s) {
    int sevens = 0;
    for (int64_t i = 0; i < 8; ++i) {
      const int t = token(gen);
      x.data()[s * 8 + i] = static_cast<float>(t);
      sevens += t == 7;
    }
    y.data()[s] = static_cast<float>(std::min(sevens, 2));
  }
}

TEST_F(EmbeddingTest, TokenTransformerLearnsAndReadsBackFromKerasFiles) {
  attn::Model model = token_classifier();
  model.compile(attn::optimizers::Adam({.learning_rate = 3e-3}), attn::losses::SparseCategoricalCrossentropy(),
                {"accuracy"});
  Tensor x, y, xt, yt;
  make_tokens(800, x, y, 1);
  make_tokens(300, xt, yt, 2);
  const double before = model.evaluate(xt, yt)["loss"];
  model.fit(x, y, {.epochs = 15, .batch_size = 20, .verbose = 0});
  const auto after = model.evaluate(xt, yt);
  EXPECT_LT(after.at("loss"), 0.5 * before) << "held-out loss " << before << " -> " << after.at("loss");
  EXPECT_GT(after.at("accuracy"), 0.85);

  attn::testing::expect_same_predictions_after_reload(model, xt);
}

// The same steps on 1 and 2 threads: each thread's samples add into its own gradient copy, summed
// once per step, so the weights agree to rounding. The Dense after Flatten has 8 x 16 x 128 =
// 16,384 weights and trains as a team, with the Embedding among the layers before it.
TEST_F(EmbeddingTest, TrainsAlikeOnOneAndTwoThreads) {
  Tensor x, y;
  make_tokens(120, x, y, 3);
  std::vector<std::vector<float>> weights;
  for (int threads : {1, 2}) {
    attn::clear_session();
    attn::set_random_seed(8);
    auto in = attn::Input({8});
    auto h = L::Dense(128, {.activation = "relu"})(L::Flatten()(L::Embedding(10, 16)(in)));
    attn::Model model(in, L::Dense(3)(h));
    model.set_threads(threads);
    model.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy({.from_logits = true}));
    model.fit(x, y, {.epochs = 2, .batch_size = 20, .verbose = 0, .shuffle = false});
    weights.push_back(model.get_weights_flat());
  }
  ASSERT_EQ(weights[0].size(), weights[1].size());
  double worst = 0;
  for (size_t i = 0; i < weights[0].size(); ++i)
    worst = std::max(worst, static_cast<double>(std::fabs(weights[0][i] - weights[1][i])));
  EXPECT_LT(worst, 1e-4);
  // And the table (the first weight) did train: every row moved from where the seed started it.
  attn::clear_session();
  attn::set_random_seed(8);
  auto in = attn::Input({8});
  attn::Model fresh(in, L::Dense(3)(L::Dense(128)(L::Flatten()(L::Embedding(10, 16)(in)))));
  const std::vector<float> start = fresh.get_weights_flat();
  for (int row = 0; row < 10; ++row) {
    double moved = 0;
    for (int j = 0; j < 16; ++j) moved += std::fabs(start[row * 16 + j] - weights[0][row * 16 + j]);
    EXPECT_GT(moved, 1e-3) << "row " << row;
  }
}

void expect_error(const std::function<void()>& run, const std::vector<std::string>& parts) {
  try {
    run();
    ADD_FAILURE() << "no error";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    for (const std::string& p : parts) EXPECT_NE(what.find(p), std::string::npos) << "'" << p << "' not in: " << what;
  }
}

TEST_F(EmbeddingTest, IdsOutsideTheTableAreRefusedBeforeAnyRun) {
  attn::Model model = token_classifier();
  model.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy(), {"accuracy"});
  Tensor x, y;
  make_tokens(40, x, y, 4);
  const auto weights = model.get_weights_flat();
  for (const float bad : {10.0f, -1.0f, 2.5f}) {
    SCOPED_TRACE(bad);
    Tensor xb = x.clone();
    xb.data()[3 * 8 + 5] = bad;  // sample 3
    expect_error([&] { model.fit(xb, y, {.epochs = 1, .batch_size = 20, .verbose = 0}); },
                 {"fit: input 0", "Embedding 'tokens'", "sample 3", "[0, 10)"});
    expect_error([&] { model.evaluate(xb, y); }, {"evaluate: input 0", "Embedding 'tokens'", "sample 3"});
    expect_error([&] { model.predict(xb); }, {"input 0", "Embedding 'tokens'", "sample 3"});
    expect_error([&] { model.train_on_batch({xb}, y); }, {"train_on_batch: input 0", "sample 3"});
    expect_error(
        [&] {
          model.fit(x, y, {.epochs = 1, .batch_size = 20, .verbose = 0, .validation_data = attn::Dataset{xb, y}});
        },
        {"validation data", "sample 3"});
  }
  EXPECT_EQ(model.get_weights_flat(), weights);  // nothing trained on bad data
}

TEST_F(EmbeddingTest, MustReadAModelInputDirectly) {
  auto in = attn::Input({4});
  auto ids = L::Dense(4)(in);
  auto out = L::Flatten()(L::Embedding(10, 2, {.name = "emb"})(ids));
  expect_error([&] { attn::Model(in, out); }, {"'emb'", "model input"});
}

// A model as Keras 3 writes it for token ids: an int32 Input, Embedding with Keras' defaults.
TEST_F(EmbeddingTest, ReadsKerasConfigsAndRefusesWhatItDoesNotImplement) {
  const auto config = [](const nlohmann::json& embedding_extra) {
    nlohmann::json emb = {{"name", "embedding"},
                          {"trainable", true},
                          {"dtype", "float32"},
                          {"input_dim", 50},
                          {"output_dim", 4},
                          {"embeddings_initializer",
                           {{"module", "keras.initializers"},
                            {"class_name", "RandomUniform"},
                            {"config", {{"minval", -0.05}, {"maxval", 0.05}, {"seed", nullptr}}},
                            {"registered_name", nullptr}}},
                          {"embeddings_regularizer", nullptr},
                          {"activity_regularizer", nullptr},
                          {"embeddings_constraint", nullptr},
                          {"mask_zero", false}};
    emb.update(embedding_extra);
    return nlohmann::json{
        {"class_name", "Sequential"},
        {"config",
         {{"name", "sequential"},
          {"layers",
           {{{"class_name", "InputLayer"},
             {"config", {{"batch_shape", {nullptr, 6}}, {"dtype", "int32"}, {"name", "input_layer"}}}},
            {{"class_name", "Embedding"}, {"config", emb}},
            {{"class_name", "Flatten"}, {"config", {{"name", "flatten"}, {"dtype", "float32"}}}},
            {{"class_name", "Dense"},
             {"config", {{"name", "dense"}, {"units", 2}, {"activation", "softmax"}, {"dtype", "float32"}}}}}}}}};
  };
  attn::Model model = attn::io::model_from_config(config(nlohmann::json::object()), "m.json");
  EXPECT_EQ(model.count_params(), 50 * 4 + 24 * 2 + 2);
  Tensor x({3, 6});
  for (int64_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i * 7 % 50);
  EXPECT_EQ(model.predict(x).shape(), (attn::Shape{3, 2}));

  const auto refused = [&](const nlohmann::json& extra, const std::string& option) {
    SCOPED_TRACE(extra.dump());
    try {
      attn::io::model_from_config(config(extra), "m.json");
      ADD_FAILURE() << "accepted";
    } catch (const attn::io::FileError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("m.json"), std::string::npos) << what;
      EXPECT_NE(what.find("'embedding'"), std::string::npos) << what;
      EXPECT_NE(what.find(option), std::string::npos) << what;
    }
  };
  // mask_zero is read (Flatten drops the mask, as in Keras 3); masking itself: keras_masks_test.
  EXPECT_NO_THROW(attn::io::model_from_config(config({{"mask_zero", true}}), "m.json"));
  refused({{"embeddings_initializer",
            {{"class_name", "RandomUniform"}, {"config", {{"minval", -1.0}, {"maxval", 1.0}}}}}},
          "embeddings_initializer");
  refused({{"embeddings_regularizer", {{"class_name", "L2"}, {"config", {{"l2", 0.01}}}}}}, "embeddings_regularizer");
  refused({{"input_dim", 0}}, "input_dim");
  // tf.keras 2's spelling: input_length and the "uniform" string are read.
  EXPECT_NO_THROW(
      attn::io::model_from_config(config({{"input_length", 6}, {"embeddings_initializer", "uniform"}}), "m.json"));
}

}  // namespace

namespace {

namespace L = attn::layers;
using attn::Tensor;

class PositionEmbeddingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    attn::clear_session();
    attn::set_random_seed(6);
  }
};

// The table's first rows, whatever the input's values; the table's gradient (finite differences)
// is the sum over samples of the output gradient, and nothing reaches the input.
TEST_F(PositionEmbeddingTest, OutputsTheTablesFirstRowsAndSumsTheirGradients) {
  attn::testing::GradCheck g;
  auto layer = std::make_shared<L::PositionEmbeddingLayer>(7);
  g.layer = layer;
  g.input_shapes = {{5, 3}};
  g.batch = 3;
  const auto res = attn::testing::check_layer_gradients(g);
  const Tensor& table = layer->weights().at(0).value;
  EXPECT_EQ(layer->weights()[0].name, "embeddings");
  EXPECT_EQ(table.shape(), (attn::Shape{7, 3}));
  for (int b = 0; b < 3; ++b)
    for (int i = 0; i < 15; ++i) EXPECT_EQ(res.output[b * 15 + i], table[i]);
  auto short_layer = std::make_shared<L::PositionEmbeddingLayer>(4);
  EXPECT_THROW(short_layer->call({attn::Input({5, 3})}), std::invalid_argument);
  EXPECT_THROW(L::PositionEmbeddingLayer(0), std::invalid_argument);
  const nlohmann::json c = layer->get_config();
  EXPECT_EQ(c["sequence_length"], 7);
  EXPECT_EQ(c["initializer"]["class_name"], "GlorotUniform");
}

// Label: the token at position 0 (of 3). Pooled self-attention without positions cannot tell
// where a token is; with PositionEmbedding added to the tokens it learns the task.
TEST_F(PositionEmbeddingTest, GivesAPooledTransformerThePositions) {
  constexpr int64_t kLen = 6;
  const auto make = [](int64_t n, uint32_t seed, Tensor& x, Tensor& y) {
    x = Tensor({n, kLen});
    y = Tensor({n});
    std::mt19937 gen(seed);
    std::uniform_int_distribution<int> token(0, 2);
    for (int64_t s = 0; s < n; ++s) {
      for (int64_t t = 0; t < kLen; ++t) x[s * kLen + t] = static_cast<float>(token(gen));
      y[s] = x[s * kLen];
    }
  };
  Tensor x, y, xt, yt;
  make(900, 1, x, y);
  make(300, 2, xt, yt);
  std::vector<double> accuracy;
  for (const bool positions : {true, false}) {
    attn::clear_session();
    attn::set_random_seed(6);
    auto ids = attn::Input({kLen});
    auto tokens = L::Embedding(3, 16)(ids);
    auto h = positions ? L::Add()({tokens, L::PositionEmbedding(kLen)(tokens)}) : tokens;
    h = L::LayerNormalization()(L::Add()({h, L::MultiHeadAttention(2, 8)({h, h})}));
    attn::Model model(ids, L::Dense(3, {.activation = "softmax"})(L::GlobalAveragePooling1D()(h)));
    model.compile(attn::optimizers::Adam({.learning_rate = 5e-3}), attn::losses::SparseCategoricalCrossentropy(),
                  {"accuracy"});
    model.fit(x, y, {.epochs = 10, .batch_size = 30, .verbose = 0});
    accuracy.push_back(model.evaluate(xt, yt).at("accuracy"));
    if (positions) {
      attn::testing::expect_same_predictions_after_reload(model, xt);
      const nlohmann::json config = attn::io::model_to_config(model);
      bool found = false;
      for (const auto& layer : config["config"]["layers"]) {
        if (layer["class_name"] != "PositionEmbedding") continue;
        found = true;
        EXPECT_EQ(layer["registered_name"], "keras_hub>PositionEmbedding");
      }
      EXPECT_TRUE(found);
    }
  }
  EXPECT_GT(accuracy[0], 0.9) << "with positions";
  // Without positions, token counts alone give some of it (0.48 measured; chance is 1/3).
  EXPECT_LT(accuracy[1], 0.6) << "without positions";
}

}  // namespace
