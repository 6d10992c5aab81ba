// MaxPooling1D and AveragePooling1D (keras/src/layers/pooling): windows worked out by hand for
// valid and same padding (padded steps left out of maxima and averages), the max gradient to the
// first tied step (TensorFlow's MaxPoolGrad: tensorflow/tensorflow#51682), finite-difference
// gradients, Keras configs and files.
#include <gtest/gtest.h>

#include <functional>
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

class Pooling1DTest : public ::testing::Test {
 protected:
  void SetUp() override { attn::clear_session(); }
};

std::vector<float> pool(const std::shared_ptr<attn::Layer>& layer, const Tensor& x) {
  auto in = attn::Input({x.dim(1), x.dim(2)});
  attn::Model model(in, layer->call({in})[0]);
  return model.predict(x).to_vector();
}

TEST_F(Pooling1DTest, WindowsByHand) {
  const Tensor x({1, 5, 1}, {1, 3, 2, 5, 4});
  using Max = L::MaxPooling1DLayer;
  using Avg = L::AveragePooling1DLayer;
  EXPECT_EQ(pool(std::make_shared<Max>(2), x), (std::vector<float>{3, 5}));  // strides default to pool_size
  EXPECT_EQ(pool(std::make_shared<Avg>(2), x), (std::vector<float>{2, 3.5f}));
  // same, strides 2: windows {1,3} {2,5} {4} (the padded step after is left out).
  EXPECT_EQ(pool(std::make_shared<Max>(2, L::Pooling1DOptions{.padding = "same"}), x), (std::vector<float>{3, 5, 4}));
  EXPECT_EQ(pool(std::make_shared<Avg>(2, L::Pooling1DOptions{.padding = "same"}), x), (std::vector<float>{2, 3.5f, 4}));
  // same, pool 3, strides 1: one padded step on each side.
  EXPECT_EQ(pool(std::make_shared<Max>(3, L::Pooling1DOptions{.strides = 1, .padding = "same"}), x),
            (std::vector<float>{3, 3, 5, 5, 5}));
  EXPECT_EQ(pool(std::make_shared<Avg>(3, L::Pooling1DOptions{.strides = 1, .padding = "same"}), x),
            (std::vector<float>{2, 2, 10.0f / 3.0f, 11.0f / 3.0f, 4.5f}));
  // valid, pool 3, strides 2: windows {1,3,2} {2,5,4}; features pooled separately.
  const Tensor two({1, 5, 2}, {1, -1, 3, -3, 2, -2, 5, -5, 4, -4});
  EXPECT_EQ(pool(std::make_shared<Max>(3, L::Pooling1DOptions{.strides = 2}), two), (std::vector<float>{3, -1, 5, -2}));
}

TEST_F(Pooling1DTest, MaxGradientGoesToTheFirstTiedStep) {
  auto layer = std::make_shared<L::MaxPooling1DLayer>(3);
  layer->call({attn::Input({3, 1})});
  EXPECT_EQ(attn::testing::run_layer_once(*layer, {0.6f, 0.6f, 0.3f}, 1, 1, {1.0f}).dx, (std::vector<float>{1, 0, 0}));
}

TEST_F(Pooling1DTest, GradientsMatchFiniteDifferences) {
  for (const bool max : {true, false})
    for (const auto& [size, strides, padding] : std::vector<std::tuple<int64_t, int64_t, std::string>>{
             {2, 0, "valid"}, {3, 2, "valid"}, {3, 1, "same"}, {2, 3, "same"}, {4, 2, "same"}}) {
      SCOPED_TRACE(std::string(max ? "max" : "average") + " pool " + std::to_string(size) + " strides " +
                   std::to_string(strides) + " " + padding);
      attn::testing::GradCheck g;
      const L::Pooling1DOptions o{.strides = strides, .padding = padding};
      g.layer = max ? std::shared_ptr<attn::Layer>(std::make_shared<L::MaxPooling1DLayer>(size, o))
                    : std::make_shared<L::AveragePooling1DLayer>(size, o);
      g.input_shapes = {{9, 3}};
      // Finite differences straddle the kink where two values of a window lie within a step of
      // each other: the harness's default data has such a pair (sample 0, feature 2, steps 1 and
      // 2, 0.0005 apart); with this seed no two values within 3 steps are closer than 0.06.
      g.data_seed = 5;
      attn::testing::check_layer_gradients(g);
    }
}

TEST_F(Pooling1DTest, KerasConfigsFilesAndRefusals) {
  EXPECT_THROW(L::MaxPooling1DLayer(0), std::invalid_argument);
  EXPECT_THROW(L::MaxPooling1DLayer(2, {.padding = "causal"}), std::invalid_argument);
  EXPECT_THROW(L::MaxPooling1D(6)(attn::Input({5, 2})), std::invalid_argument);  // no whole window

  auto in = attn::Input({12, 2});
  auto h = L::MaxPooling1D(2, {.name = "max"})(L::Conv1D(4, 3, {.activation = "relu"})(in));
  h = L::AveragePooling1D(3, {.strides = 1, .padding = "same", .name = "avg"})(h);
  attn::Model model(in, L::Dense(2)(L::Flatten()(h)));
  const auto config = attn::io::model_to_config(model);
  for (const auto& l : config["config"]["layers"]) {
    if (l["config"]["name"] == "max") {
      EXPECT_EQ(l["class_name"], "MaxPooling1D");
      EXPECT_EQ(l["config"]["pool_size"], nlohmann::json::array({2}));
      EXPECT_EQ(l["config"]["strides"], nlohmann::json::array({2}));
    }
    if (l["config"]["name"] == "avg") {
      EXPECT_EQ(l["config"]["padding"], "same");
    }
  }
  Tensor x({3, 12, 2});
  for (int64_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 37) % 11) / 11.0f - 0.4f;
  attn::testing::expect_same_predictions_after_reload(model, x);

  const auto edited = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json c = config;
    for (auto& l : c["config"]["layers"])
      if (l["config"]["name"] == "max") edit(l["config"]);
    return c;
  };
  // Keras writes strides null for "same as pool_size"; a bare integer reads too.
  EXPECT_NO_THROW(attn::io::model_from_config(edited([](nlohmann::json& l) {
    l["strides"] = nullptr;
    l["pool_size"] = 2;
  })));
  for (const auto& [key, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"data_format", "channels_first"}, {"padding", "full"}, {"pool_size", 0}, {"strides", nlohmann::json::array({0})}}) {
    try {
      attn::io::model_from_config(edited([&](nlohmann::json& l) { l[key] = value; }), "edited.json");
      ADD_FAILURE() << key << " " << value.dump() << " accepted";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find("option '" + key + "'"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
