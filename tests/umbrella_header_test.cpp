// The README's C++ example, shrunk to 16 pixels: it builds with attn/attn.hpp alone (the
// umbrella header once left out io.hpp, so the README's load_model did not compile).
#include "attn/attn.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>
#include <string>

namespace {

TEST(UmbrellaHeader, ReadmeExampleBuildsAndRoundTrips) {
  using namespace attn;
  using namespace attn::layers;
  set_random_seed(3);
  Tensor x({8, 16, 1}), y({8});
  for (int64_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 7) % 5) / 4.0f;
  for (int64_t i = 0; i < 8; ++i) y[i] = static_cast<float>(i % 10);

  auto inputs = Input({16, 1});
  auto atten = Attention({.use_scale = true})({inputs, inputs}, {.training = false});
  auto flatten = Flatten()(atten);
  auto hidden = Dense(100, {.activation = "relu"})(flatten);
  auto outputs = Dense(10, {.activation = "sigmoid"})(hidden);
  Model model(inputs, outputs);
  model.compile(optimizers::Adam(), losses::SparseCategoricalCrossentropy({.from_logits = true}), {"accuracy"},
                {.warn = false});
  std::ostringstream table;
  model.summary(table);
  EXPECT_NE(table.str().find("Attention"), std::string::npos);
  auto es = callbacks::EarlyStopping({.monitor = "loss", .patience = 3, .start_from_epoch = 0});
  auto history = model.fit(x, y, {.epochs = 2, .batch_size = 4, .verbose = 0, .validation_data = Dataset{x, y},
                                  .callbacks = {es}});
  EXPECT_EQ(history.history.at("val_loss").size(), 2u);
  const std::string path =
      (std::filesystem::temp_directory_path() / ("attn-umbrella-" + std::to_string(::getpid()) + ".keras")).string();
  io::save_model(model, path);
  Model again = io::load_model(path);
  std::filesystem::remove(path);
  const Tensor a = model.predict(x), b = again.predict(x);
  ASSERT_EQ(a.shape(), b.shape());
  for (int64_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]) << i;
  EXPECT_FALSE(version().empty());
}

}  // namespace
