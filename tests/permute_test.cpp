// Permute (keras/src/layers/reshaping/permute.py): values placed by hand for a transpose and a
// rank-3 reordering, finite-difference gradients, configs and files, and the patch cut a Vision
// Transformer makes from it (Reshape, Permute, Reshape), which then learns where in an image a
// bright block lies.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "attn/attn.hpp"
#include "gradient_check.hpp"
#include "reload_check.hpp"

namespace {

namespace L = attn::layers;
using attn::Shape;
using attn::Tensor;

class PermuteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    attn::clear_session();
    attn::set_random_seed(3);
  }
};

Tensor counting(const Shape& shape) {
  Tensor t(shape);
  for (int64_t i = 0; i < t.size(); ++i) t[i] = static_cast<float>(i);
  return t;
}

TEST_F(PermuteTest, PlacesEveryValueWhereItsAxesSay) {
  auto in = attn::Input({2, 3});
  attn::Model transpose(in, L::Permute({2, 1})(in));
  EXPECT_EQ(transpose.outputs().at(0)->shape, (Shape{3, 2}));
  // Two samples of [[0 1 2] [3 4 5]] and [[6 7 8] [9 10 11]].
  EXPECT_EQ(transpose.predict(counting({2, 2, 3})).to_vector(),
            (std::vector<float>{0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11}));

  // dims (3, 1, 2): out[k][i][j] = in[i][j][k] for an input of (2, 3, 4).
  auto in3 = attn::Input({2, 3, 4});
  attn::Model reorder(in3, L::Permute({3, 1, 2})(in3));
  ASSERT_EQ(reorder.outputs().at(0)->shape, (Shape{4, 2, 3}));
  const Tensor x = counting({1, 2, 3, 4});
  const Tensor y = reorder.predict(x);
  for (int k = 0; k < 4; ++k)
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j) EXPECT_EQ(y[(k * 2 + i) * 3 + j], x[(i * 3 + j) * 4 + k]) << k << i << j;
}

TEST_F(PermuteTest, CutsAnImageIntoPatches) {
  // A 4x4 image of values 0..15 in 2x2 patches, each patch's pixels row by row.
  auto in = attn::Input({4, 4});
  auto patches = L::Reshape({4, 4})(L::Permute({1, 3, 2, 4})(L::Reshape({2, 2, 2, 2})(in)));
  attn::Model model(in, patches);
  EXPECT_EQ(model.predict(counting({1, 4, 4})).to_vector(),
            (std::vector<float>{0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15}));
}

TEST_F(PermuteTest, GradientsMatchFiniteDifferences) {
  for (const std::vector<int64_t>& dims : {std::vector<int64_t>{1}, {2, 1}, {1, 3, 2, 4}, {4, 2, 3, 1}}) {
    attn::testing::GradCheck g;
    g.layer = std::make_shared<L::PermuteLayer>(dims);
    const Shape shapes[] = {{5}, {3, 4}, {2, 3, 2, 3}, {2, 3, 2, 3}};
    g.input_shapes = {shapes[dims.size() == 1 ? 0 : dims.size() == 2 ? 1 : dims[0] == 1 ? 2 : 3]};
    attn::testing::check_layer_gradients(g);
  }
}

TEST_F(PermuteTest, ConfigsFilesAndRefusals) {
  EXPECT_THROW(L::PermuteLayer({1, 1}), std::invalid_argument);
  EXPECT_THROW(L::PermuteLayer({0, 1}), std::invalid_argument);  // Keras counts from 1
  EXPECT_THROW(L::PermuteLayer({}), std::invalid_argument);
  auto wrong_rank = std::make_shared<L::PermuteLayer>(std::vector<int64_t>{2, 1});
  EXPECT_THROW(wrong_rank->call({attn::Input({2, 3, 4})}), std::invalid_argument);

  auto in = attn::Input({3, 5});
  auto out = L::Dense(2)(L::Flatten()(L::Permute({2, 1}, "swap")(in)));
  attn::Model model(in, out);
  const auto config = attn::io::model_to_config(model);
  bool found = false;
  for (const auto& l : config["config"]["layers"])
    if (l["config"]["name"] == "swap") {
      EXPECT_EQ(l["class_name"], "Permute");
      EXPECT_EQ(l["config"]["dims"], nlohmann::json::array({2, 1}));
      found = true;
    }
  EXPECT_TRUE(found);
  attn::testing::expect_same_predictions_after_reload(model, counting({2, 3, 5}));
  nlohmann::json bad = config;
  for (auto& l : bad["config"]["layers"])
    if (l["config"]["name"] == "swap") l["config"]["dims"] = nlohmann::json::array({2, 2});
  try {
    attn::io::model_from_config(bad, "edited.json");
    ADD_FAILURE() << "dims (2, 2) accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("option 'dims'"), std::string::npos) << e.what();
  }
}

// A Vision Transformer in Keras layers: 8x8 images cut into four 4x4 patches, each embedded by a
// Dense with a learned position, self-attention, pooling. The label says which quadrant holds a
// bright block; without positions every quadrant would look alike after pooling.
TEST_F(PermuteTest, PatchTransformerFindsTheBrightQuadrant) {
  const auto make = [](int64_t n, uint32_t seed, Tensor& x, Tensor& y) {
    x = Tensor({n, 8, 8});
    y = Tensor({n});
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> noise(0.0f, 0.3f);
    std::uniform_int_distribution<int> quadrant(0, 3);
    for (int64_t s = 0; s < n; ++s) {
      const int q = quadrant(gen);
      y[s] = static_cast<float>(q);
      for (int r = 0; r < 8; ++r)
        for (int c = 0; c < 8; ++c)
          x[(s * 8 + r) * 8 + c] = noise(gen) + ((r / 4) * 2 + c / 4 == q ? 0.7f : 0.0f);
    }
  };
  Tensor x, y, xv, yv;
  make(400, 1, x, y);
  make(200, 2, xv, yv);
  auto in = attn::Input({8, 8});
  auto patches = L::Reshape({4, 16})(L::Permute({1, 3, 2, 4})(L::Reshape({2, 4, 2, 4})(in)));
  auto tokens = L::Dense(16)(patches);
  tokens = L::Add()({tokens, L::PositionEmbedding(4)(tokens)});
  auto h = L::LayerNormalization()(L::Add()({tokens, L::MultiHeadAttention(2, 8)({tokens, tokens})}));
  auto out = L::Dense(4, {.activation = "softmax"})(L::GlobalAveragePooling1D()(h));
  attn::Model model(in, out);
  model.compile(attn::optimizers::Adam({.learning_rate = 5e-3f}), attn::losses::SparseCategoricalCrossentropy(),
                {"accuracy"});
  model.fit(x, y, {.epochs = 15, .batch_size = 20, .verbose = 0});
  EXPECT_GT(model.evaluate(xv, yv).at("accuracy"), 0.9);
  attn::testing::expect_same_predictions_after_reload(model, xv.rows(0, 8));
}

}  // namespace
