// Keras' implicit masks (keras/src/layers/layer.py __call__: a layer's `mask` or `<input>_mask`
// arguments left None are filled from the inputs' masks; supports_masking layers pass them on):
// Embedding(mask_zero=True) masks id 0, MultiHeadAttention and Attention use the mask as their
// query/value masks, GlobalAveragePooling1D averages the kept steps only
// (pooling/global_average_pooling1d.py: sum / count, NaN when nothing is kept), Dense,
// LayerNormalization and Add pass it on, Flatten drops it. Checked against the same models given
// the masks explicitly, against hand-computed means, and by the padding's embedding having no
// effect on any prediction.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "attn/attn.hpp"
#include "layer_once.hpp"
#include "reload_check.hpp"

namespace {

namespace L = attn::layers;
using attn::Tensor;

class KerasMasks : public ::testing::Test {
 protected:
  void SetUp() override {
    attn::clear_session();
    attn::set_random_seed(11);
  }
};

constexpr int64_t kSteps = 8;

// Ids 1..9 for `length` steps of each sample (length 2..8, drawn), then padding 0.
Tensor padded_ids(int64_t n, uint32_t seed, Tensor* labels = nullptr) {
  Tensor x({n, kSteps});
  if (labels) *labels = Tensor({n});
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> token(1, 9), length(2, static_cast<int>(kSteps));
  for (int64_t s = 0; s < n; ++s) {
    const int len = length(gen);
    bool seven = false;
    for (int64_t t = 0; t < kSteps; ++t) {
      const int id = t < len ? token(gen) : 0;
      x[s * kSteps + t] = static_cast<float>(id);
      seven |= id == 7;
    }
    if (labels) (*labels)[s] = seven ? 1.0f : 0.0f;
  }
  return x;
}

Tensor nonzero(const Tensor& ids) {
  Tensor m(ids.shape());
  for (int64_t i = 0; i < ids.size(); ++i) m[i] = ids[i] != 0.0f ? 1.0f : 0.0f;
  return m;
}

// Embedding(mask_zero) -> MultiHeadAttention -> Add -> LayerNormalization -> Dense -> pooling.
attn::Model masked_encoder(bool mask_zero) {
  auto ids = attn::Input({kSteps}, "ids");
  auto x = L::Embedding(10, 8, {.mask_zero = mask_zero, .name = "tokens"})(ids);
  auto a = L::MultiHeadAttention(2, 4, {.name = "mha"})({x, x});
  x = L::LayerNormalization()(L::Add()({x, a}));
  x = L::Dense(8, {.activation = "relu"})(x);
  return attn::Model(ids, L::Dense(2, {.activation = "softmax"})(L::GlobalAveragePooling1D()(x)));
}

void set_padding_row(attn::Model& model, float value) {
  attn::Weight& table = model.get_layer("tokens")->weights()[0];
  for (int64_t j = 0; j < 8; ++j) table.value[j] = value;  // row 0: the padding id
}

TEST_F(KerasMasks, PaddingHasNoEffectOnceMasked) {
  const Tensor x = padded_ids(30, 1);
  for (const bool mask_zero : {true, false}) {
    SCOPED_TRACE(mask_zero);
    attn::clear_session();
    attn::set_random_seed(11);
    attn::Model model = masked_encoder(mask_zero);
    set_padding_row(model, 0.3f);
    const Tensor a = model.predict(x);
    set_padding_row(model, -2.0f);
    const Tensor b = model.predict(x);
    double diff = 0;
    for (int64_t i = 0; i < a.size(); ++i) diff = std::max(diff, static_cast<double>(std::fabs(a[i] - b[i])));
    if (mask_zero)
      EXPECT_LT(diff, 1e-6);  // the padding's embedding reaches nothing
    else
      EXPECT_GT(diff, 1e-3);  // without the mask it does: the check above can fail
  }
}

// The implicit masks are the explicit ones Keras' call would receive: the same weights with
// query_mask / value_mask (MultiHeadAttention), mask=[q, v] (Attention) and mask (pooling) given
// from a second input holding ids != 0 give the same predictions.
TEST_F(KerasMasks, ImplicitMasksEqualTheExplicitOnes) {
  const Tensor x = padded_ids(25, 2);
  for (const bool mha : {true, false}) {
    SCOPED_TRACE(mha ? "MultiHeadAttention" : "Attention");
    attn::clear_session();
    attn::set_random_seed(5);
    auto ids = attn::Input({kSteps});
    auto emb = L::Embedding(10, 6, {.mask_zero = true});
    auto e = emb(ids);
    auto mha_layer = L::MultiHeadAttention(2, 3);
    auto att_layer = L::Attention({.use_scale = true});
    auto pool = L::GlobalAveragePooling1D();
    auto head = L::Dense(3);
    auto attend = [&](const attn::Node& x, attn::CallOptions o) {
      return mha ? mha_layer({x, x}, o) : att_layer({x, x}, o);
    };
    attn::Model implicit(ids, head(pool(attend(e, {}))));

    auto ids2 = attn::Input({kSteps});
    auto keep = attn::Input({kSteps});
    auto e2 = L::Embedding(10, 6)(ids2);  // no mask_zero: the masks come from `keep`
    attn::CallOptions o;
    o.query_mask = keep;
    o.value_mask = keep;
    attn::CallOptions p;
    p.mask = keep;
    auto mha2 = L::MultiHeadAttention(2, 3);
    auto att2 = L::Attention({.use_scale = true});
    auto head2 = L::Dense(3);
    auto attended = mha ? mha2({e2, e2}, o) : att2({e2, e2}, o);
    attn::Model explicit_model({ids2, keep}, {head2(L::GlobalAveragePooling1D()(attended, p))});
    explicit_model.set_weights_flat(implicit.get_weights_flat());

    const Tensor a = implicit.predict(x);
    const Tensor b = explicit_model.predict({x, nonzero(x)})[0];
    ASSERT_EQ(a.size(), b.size());
    for (int64_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << i;
  }
}

TEST_F(KerasMasks, PoolingAveragesTheKeptStepsOnly) {
  auto ids = attn::Input({4});
  auto emb = L::Embedding(5, 2, {.mask_zero = true});
  attn::Model model(ids, L::GlobalAveragePooling1D()(emb(ids)));
  Tensor& table = emb->weights()[0].value;
  for (int64_t i = 0; i < 10; ++i) table[i] = static_cast<float>(i);  // row r = (2r, 2r + 1)
  Tensor x({3, 4});
  const float rows[12] = {1, 3, 0, 0, /**/ 4, 4, 2, 0, /**/ 0, 0, 0, 0};
  for (int i = 0; i < 12; ++i) x[i] = rows[i];
  const Tensor y = model.predict(x);
  EXPECT_FLOAT_EQ(y[0], (2.0f + 6.0f) / 2);  // ids 1 and 3
  EXPECT_FLOAT_EQ(y[1], (3.0f + 7.0f) / 2);
  EXPECT_FLOAT_EQ(y[2], (8.0f + 8.0f + 4.0f) / 3);  // ids 4, 4, 2
  EXPECT_FLOAT_EQ(y[3], (9.0f + 9.0f + 5.0f) / 3);
  EXPECT_TRUE(std::isnan(y[4]));  // nothing kept: 0 / 0, as Keras gives
}

TEST_F(KerasMasks, PoolingGradientGoesToTheKeptStepsOnly) {
  auto layer = std::make_shared<L::GlobalAveragePooling1DLayer>();
  auto in = attn::Input({3, 2});
  auto keep = attn::Input({3});
  attn::CallOptions call;
  call.mask = keep;
  layer->call({in}, call);
  const std::vector<float> mask = {1, 0, 1};
  const auto once = attn::testing::run_layer_once(*layer, {1, 2, 3, 4, 5, 6}, 1, 2, {0.5f, -1.0f}, mask.data(), call);
  EXPECT_FLOAT_EQ(once.y[0], (1.0f + 5.0f) / 2);
  EXPECT_FLOAT_EQ(once.y[1], (2.0f + 6.0f) / 2);
  const std::vector<float> want = {0.25f, -0.5f, 0, 0, 0.25f, -0.5f};
  for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(once.dx[i], want[i]) << i;
}

TEST_F(KerasMasks, PaddedSequencesTrainAndReadBackWithTheirMasks) {
  attn::Model model = masked_encoder(true);
  model.compile(attn::optimizers::Adam({.learning_rate = 3e-3}), attn::losses::SparseCategoricalCrossentropy(),
                {"accuracy"});
  Tensor y, yt;
  const Tensor x = padded_ids(800, 3, &y), xt = padded_ids(300, 4, &yt);
  model.fit(x, y, {.epochs = 15, .batch_size = 20, .verbose = 0});
  EXPECT_GT(model.evaluate(xt, yt).at("accuracy"), 0.9);

  // Keras writes mask_zero in the Embedding's config and no mask arguments in the calls that
  // took their masks from their inputs; read back, the masks are rebuilt the same way.
  const nlohmann::json config = attn::io::model_to_config(model);
  const std::string text = config.dump();
  EXPECT_EQ(text.find("query_mask"), std::string::npos);
  EXPECT_EQ(text.find("value_mask"), std::string::npos);
  EXPECT_EQ(text.find("\"mask\""), std::string::npos);
  for (const auto& layer : config["config"]["layers"]) {
    if (layer["class_name"] == "Embedding") {
      EXPECT_EQ(layer["config"]["mask_zero"], true);
    }
  }
  // Read back, with the padding's embedding changed (masked: it changes nothing).
  attn::testing::expect_same_predictions_after_reload(model, xt,
                                                      [](attn::Model& back) { set_padding_row(back, 5.0f); });
}

// Keras 3 records the mask arguments its Layer.__call__ fills in the call's kwargs, as tensors
// made by operations outside the model's layers (Embedding's not_equal). Such a config reads as
// if they were absent: the layers take the masks from their inputs again.
TEST_F(KerasMasks, ReadsConfigsThatRecordTheDerivedMasks) {
  attn::Model model = masked_encoder(true);
  nlohmann::json config = attn::io::model_to_config(model);
  const nlohmann::json derived = {
      {"class_name", "__keras_tensor__"},
      {"config", {{"shape", {nullptr, kSteps}}, {"dtype", "bool"}, {"keras_history", {"not_equal", 0, 0}}}}};
  int recorded = 0;
  for (auto& layer : config["config"]["layers"]) {
    auto& kwargs = layer["inbound_nodes"][0]["kwargs"];
    if (layer["class_name"] == "MultiHeadAttention") {
      kwargs["query_mask"] = derived;
      kwargs["value_mask"] = derived;
      kwargs["key_mask"] = nullptr;
      ++recorded;
    } else if (layer["class_name"] == "GlobalAveragePooling1D") {
      kwargs["mask"] = derived;
      ++recorded;
    }
  }
  ASSERT_EQ(recorded, 2);
  attn::Model back = attn::io::model_from_config(config, "recorded.json");
  back.set_weights_flat(model.get_weights_flat());
  const Tensor x = padded_ids(20, 7);
  const Tensor want = model.predict(x);
  set_padding_row(back, -3.0f);  // still masked
  const Tensor got = back.predict(x);
  for (int64_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << i;
  // A reference to a layer that is in the model but was never called stays an error.
  for (auto& layer : config["config"]["layers"])
    if (layer["class_name"] == "MultiHeadAttention")
      layer["inbound_nodes"][0]["kwargs"]["query_mask"]["config"]["keras_history"] = {"tokens", 5, 0};
  EXPECT_THROW(attn::io::model_from_config(config, "recorded.json"), attn::io::FileError);
}

TEST_F(KerasMasks, RefusesMasksItCannotHonour) {
  // A masked output: Keras would mask the loss.
  {
    auto ids = attn::Input({kSteps});
    auto out = L::Dense(3)(L::Embedding(10, 4, {.mask_zero = true, .name = "emb"})(ids));
    try {
      attn::Model model(ids, out);
      ADD_FAILURE() << "accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("mask"), std::string::npos) << e.what();
    }
  }
  // Flatten drops the mask (Keras 3 layers without supports_masking do), so this one is fine.
  {
    auto ids = attn::Input({kSteps});
    auto out = L::Dense(3)(L::Flatten()(L::Embedding(10, 4, {.mask_zero = true})(ids)));
    EXPECT_NO_THROW(attn::Model(ids, out));
  }
  // Two different masks into one Add.
  {
    auto a = attn::Input({kSteps});
    auto b = attn::Input({kSteps});
    auto ea = L::Embedding(10, 4, {.mask_zero = true})(a);
    auto eb = L::Embedding(10, 4, {.mask_zero = true})(b);
    EXPECT_THROW(L::Add()({ea, eb}), std::invalid_argument);
  }
}

}  // namespace
