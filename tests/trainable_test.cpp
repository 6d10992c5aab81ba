// Frozen layers (Layer::set_trainable(false), Keras' layer.trainable = False): their weights do
// not move under any optimizer (AdamW's decay and SGD's momentum included) while gradients still
// flow through them to the layers before; the summary counts them as non-trainable at once;
// a change takes effect for training when the model is compiled again (Keras' fine-tuning
// recipe: freeze, train the head, unfreeze, recompile, train); the flag survives a .keras file.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "attn/attn.hpp"
#include "test_tensors.hpp"
#include "temp_dir.hpp"

namespace {

namespace L = attn::layers;
using attn::Model;
using attn::Tensor;

class TrainableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    attn::clear_session();
    attn::set_random_seed(3);
  }
};

using attn::testing::ramp;

// in(4) -> first Dense(5) -> middle Dense(3, tanh) -> last Dense(2); weights flat in that order:
// first 25 values, middle 18, last 8.
struct Net {
  L::Dense first = L::Dense(5, {.activation = "tanh", .name = "first"});
  L::Dense middle = L::Dense(3, {.activation = "tanh", .name = "middle"});
  L::Dense last = L::Dense(2, {.name = "last"});
  std::shared_ptr<Model> model;
  explicit Net(bool freeze_middle_first) {
    auto in = attn::Input({4});
    auto h = middle(first(in));
    if (freeze_middle_first) attn::Model(in, h).get_layer("middle")->set_trainable(false);
    model = std::make_shared<Model>(in, last(h));
  }
  std::shared_ptr<attn::Layer> layer(const std::string& name) const { return model->get_layer(name); }
};

struct Parts {
  std::vector<float> first, middle, last;
};
Parts parts(const Model& m) {
  const std::vector<float> w = m.get_weights_flat();
  return {{w.begin(), w.begin() + 25}, {w.begin() + 25, w.begin() + 43}, {w.begin() + 43, w.end()}};
}

const Tensor& inputs() {
  static const Tensor x = ramp({16, 4}, 0.21f, -1.2f, 13);
  return x;
}
const Tensor& targets() {
  static const Tensor y = ramp({16, 2}, 0.3f, -0.9f, 13);
  return y;
}

TEST_F(TrainableTest, FrozenLayerStaysPutUnderEveryOptimizerWhileOthersLearnThroughIt) {
  const std::vector<std::pair<std::string, std::shared_ptr<attn::optimizers::Optimizer>>> optimizers = {
      {"AdamW", attn::optimizers::AdamW({.learning_rate = 0.05f, .weight_decay = 0.5f})},
      {"SGD momentum", attn::optimizers::SGD({.learning_rate = 0.1f, .momentum = 0.9f})},
      {"RMSprop", attn::optimizers::RMSprop({.learning_rate = 0.05f})},
  };
  for (const auto& [name, optimizer] : optimizers) {
    attn::set_random_seed(3);
    Net net(true);
    EXPECT_FALSE(net.layer("middle")->trainable());
    net.model->compile(optimizer, attn::losses::MeanSquaredError(), {});
    const Parts before = parts(*net.model);
    net.model->fit(inputs(), targets(), {.epochs = 3, .batch_size = 4, .verbose = 0});
    const Parts after = parts(*net.model);
    EXPECT_EQ(after.middle, before.middle) << name;
    EXPECT_NE(after.last, before.last) << name;
    EXPECT_NE(after.first, before.first) << name << ": no gradient reached the layer before the frozen one";
  }
}

TEST_F(TrainableTest, UnfreezingTakesEffectAtTheNextCompile) {
  Net net(true);  // frozen before the model was built
  const auto compile = [&] {
    net.model->compile(attn::optimizers::Adam({.learning_rate = 0.05f}), attn::losses::MeanSquaredError(), {});
  };
  compile();
  net.model->fit(inputs(), targets(), {.epochs = 2, .batch_size = 4, .verbose = 0});
  const Parts frozen = parts(*net.model);
  net.layer("middle")->set_trainable(true);
  compile();
  net.model->fit(inputs(), targets(), {.epochs = 2, .batch_size = 4, .verbose = 0});
  EXPECT_NE(parts(*net.model).middle, frozen.middle);  // was: frozen for good
  EXPECT_EQ(net.model->trainable_variables().size(), 6u);
  // And freezing again, then compiling, stops it (the optimizer is built for the flags then).
  net.layer("middle")->set_trainable(false);
  compile();
  EXPECT_EQ(net.model->trainable_variables().size(), 4u);
  const Parts again = parts(*net.model);
  net.model->fit(inputs(), targets(), {.epochs = 2, .batch_size = 4, .verbose = 0});
  EXPECT_EQ(parts(*net.model).middle, again.middle);
}

TEST_F(TrainableTest, SummaryCountsFrozenWeightsAsNonTrainable) {
  Net net(false);
  EXPECT_EQ(net.model->count_trainable_params(), 51);
  net.layer("middle")->set_trainable(false);  // as Keras: counted at once, compiled or not
  EXPECT_EQ(net.model->count_params(), 51);
  EXPECT_EQ(net.model->count_trainable_params(), 33);
  const std::string text = net.model->summary();
  EXPECT_NE(text.find(" Trainable params: 33 (132.00 B)\n"), std::string::npos) << text;
  EXPECT_NE(text.find(" Non-trainable params: 18 (72.00 B)\n"), std::string::npos) << text;
}

TEST_F(TrainableTest, FlagSurvivesAKerasFile) {
  attn::testing::TempDir dir("attn-trainable-test");
  Net net(true);
  net.model->compile(attn::optimizers::Adam(), attn::losses::MeanSquaredError(), {});
  net.model->fit(inputs(), targets(), {.epochs = 1, .batch_size = 8, .verbose = 0});
  attn::io::save_model(*net.model, dir.file("m.keras"));
  Model back = attn::io::load_model(dir.file("m.keras"));
  EXPECT_FALSE(back.get_layer("middle")->trainable());
  EXPECT_TRUE(back.get_layer("last")->trainable());
  EXPECT_EQ(back.count_trainable_params(), 33);
  const Parts before = parts(back);
  back.fit(inputs(), targets(), {.epochs = 2, .batch_size = 4, .verbose = 0});
  EXPECT_EQ(parts(back).middle, before.middle);
  EXPECT_NE(parts(back).last, before.last);
}

}  // namespace
