// ReduceLROnPlateau against Keras 3 (keras/src/callbacks/reduce_lr_on_plateau.py), driven epoch
// by epoch with hand-traced sequences: min_delta as a strict margin, patience, cooldown (the
// epoch that ends a cooldown counts again), min_lr as a floor and as a stop (a rate at min_lr is
// not reduced), the rate computed in double from the float32 rate, the verbose message, auto mode
// ("acc" in the name means max), and once inside fit.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "attn/attn.hpp"

namespace {

// Callbacks take the epoch logs by reference (they may add to them, as in Keras): these tests
// hand each call its own map.
void epoch_end(attn::callbacks::Callback& cb, int epoch, attn::callbacks::Logs logs) { cb.on_epoch_end(epoch, logs); }

namespace L = attn::layers;
namespace C = attn::callbacks;

attn::Model compiled_model(float lr) {
  auto in = attn::Input({2});
  attn::Model m(in, L::Dense(1)(in));
  m.compile(attn::optimizers::Adam({.learning_rate = lr}), attn::losses::MeanSquaredError());
  return m;
}

TEST(ReduceLROnPlateau, PatienceCooldownAndMinLrAsKerasTracesThem) {
  attn::clear_session();
  attn::Model model = compiled_model(0.001f);
  C::ReduceLROnPlateauCallback cb(
      {.monitor = "loss", .factor = 0.5, .patience = 2, .verbose = 1, .min_delta = 0.01, .cooldown = 1, .min_lr = 0.0003});
  cb.set_model(&model);
  cb.on_train_begin({});
  // 0.995 is not 0.01 better than 1.0; 0.98 is.
  const std::vector<double> loss = {1.0, 0.995, 0.98, 0.98, 0.98, 0.98, 0.98, 0.98, 0.98, 0.98};
  const float half = static_cast<float>(static_cast<double>(0.001f) * 0.5);
  const std::vector<float> want = {0.001f, 0.001f, 0.001f, 0.001f, half, half, 0.0003f, 0.0003f, 0.0003f, 0.0003f};
  const std::vector<int> wait = {0, 1, 0, 1, 0, 1, 0, 1, 2, 3};  // at 0.0003 = min_lr nothing more happens
  ::testing::internal::CaptureStdout();
  for (size_t e = 0; e < loss.size(); ++e) {
    epoch_end(cb, static_cast<int>(e), {{"loss", loss[e]}});
    EXPECT_EQ(model.optimizer()->learning_rate(), want[e]) << "epoch " << e;
    EXPECT_EQ(cb.wait(), wait[e]) << "epoch " << e;
  }
  EXPECT_EQ(::testing::internal::GetCapturedStdout(),
            "\nEpoch 5: ReduceLROnPlateau reducing learning rate to 0.0005000000237487257.\n"
            "\nEpoch 7: ReduceLROnPlateau reducing learning rate to 0.0003.\n");
  EXPECT_EQ(cb.best(), 0.98);
}

TEST(ReduceLROnPlateau, AutoModeMaximisesAccuracyNames) {
  attn::clear_session();
  attn::Model model = compiled_model(0.01f);
  C::ReduceLROnPlateauCallback cb({.monitor = "val_accuracy", .patience = 1});
  cb.set_model(&model);
  cb.on_train_begin({});
  for (int e = 0; e < 3; ++e) epoch_end(cb, e, {{"val_accuracy", 0.5 + 0.1 * e}});  // rising: kept
  EXPECT_EQ(model.optimizer()->learning_rate(), 0.01f);
  epoch_end(cb, 3, {{"val_accuracy", 0.7}});  // flat: patience 1 reached
  EXPECT_EQ(model.optimizer()->learning_rate(), static_cast<float>(static_cast<double>(0.01f) * 0.1));
  epoch_end(cb, 4, {{"loss", 1.0}});  // monitor missing: a warning, nothing else
  EXPECT_EQ(cb.wait(), 0);
}

TEST(ReduceLROnPlateau, RefusesAFactorOfOneOrMore) {
  EXPECT_THROW(C::ReduceLROnPlateauCallback({.factor = 1.0}), std::invalid_argument);
  EXPECT_THROW(C::ReduceLROnPlateauCallback({.patience = -1}), std::invalid_argument);
  EXPECT_NO_THROW(C::ReduceLROnPlateauCallback({.factor = 0.5}));
}

// Inside fit, watching the training loss in max mode (it falls, so it never "improves" after
// epoch 1): with patience 1 the rate drops after every later epoch.
TEST(ReduceLROnPlateau, ReducesTheRateInsideFit) {
  attn::clear_session();
  attn::set_random_seed(2);
  attn::Model model = compiled_model(0.001f);
  attn::Tensor x({8, 2}), y({8, 1});
  for (int64_t i = 0; i < x.size(); ++i) x[i] = std::sin(static_cast<float>(i));
  for (int64_t i = 0; i < y.size(); ++i) y[i] = static_cast<float>(i % 2);
  auto cb = C::ReduceLROnPlateau({.monitor = "loss", .patience = 1, .mode = "max"});
  auto h = model.fit(x, y, {.epochs = 3, .batch_size = 4, .verbose = 0, .shuffle = false, .callbacks = {cb}});
  ASSERT_LT(h.history["loss"][1], h.history["loss"][0]);
  ASSERT_LT(h.history["loss"][2], h.history["loss"][0]);
  const float once = static_cast<float>(static_cast<double>(0.001f) * 0.1);
  EXPECT_EQ(model.optimizer()->learning_rate(), static_cast<float>(static_cast<double>(once) * 0.1));
  // As Keras, the rate each epoch ran with goes into the logs, before that epoch's reduction.
  ASSERT_EQ(h.history["learning_rate"].size(), 3u);
  EXPECT_EQ(h.history["learning_rate"][0], static_cast<double>(0.001f));
  EXPECT_EQ(h.history["learning_rate"][1], static_cast<double>(0.001f));
  EXPECT_EQ(h.history["learning_rate"][2], static_cast<double>(once));
}

// The logs are Keras' dict: a callback after ReduceLROnPlateau sees "learning_rate", one before
// it does not, and the epoch's progress line (after every callback) shows it.
class SeenKeys : public C::Callback {
 public:
  void on_epoch_end(int, C::Logs& logs) override { seen.push_back(logs.count("learning_rate") == 1); }
  std::vector<bool> seen;
};

TEST(ReduceLROnPlateau, LaterCallbacksAndTheProgressLineSeeTheRate) {
  attn::clear_session();
  attn::set_random_seed(2);
  attn::Model model = compiled_model(0.001f);
  attn::Tensor x({8, 2}), y({8, 1});
  for (int64_t i = 0; i < x.size(); ++i) x[i] = std::cos(static_cast<float>(i));
  for (int64_t i = 0; i < y.size(); ++i) y[i] = static_cast<float>(i % 3);
  auto before = std::make_shared<SeenKeys>(), after = std::make_shared<SeenKeys>();
  testing::internal::CaptureStdout();
  model.fit(x, y,
            {.epochs = 2, .batch_size = 4, .verbose = 2, .validation_data = attn::Dataset{x, y},
             .callbacks = {before, C::ReduceLROnPlateau({.monitor = "loss"}), after}});
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(before->seen, std::vector<bool>({false, false}));
  EXPECT_EQ(after->seen, std::vector<bool>({true, true}));
  // Keras' order: the step's metrics, the validation ones, then what the callback added.
  const size_t loss = out.find(" - loss: "), val = out.find(" - val_loss: "), rate = out.find(" - learning_rate: 0.0010\n");
  ASSERT_NE(rate, std::string::npos) << out;
  EXPECT_LT(loss, val) << out;
  EXPECT_LT(val, rate) << out;
}

}  // namespace
