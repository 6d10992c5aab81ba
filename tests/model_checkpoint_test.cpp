// ModelCheckpoint against Keras 3 (keras/src/callbacks/model_checkpoint.py, keras-semantics.md
// section 9): the path's Python format fields, the paths Keras refuses, save_best_only from +-inf
// or initial_value_threshold with the verbose messages, saving every N batches counted as Keras
// counts them, and the saved files read back with the weights they were saved with.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "attn/attn.hpp"
#include "attn/io.hpp"
#include "temp_dir.hpp"

namespace {

// Callbacks take the epoch logs by reference (they may add to them, as in Keras): these tests
// hand each call its own map.
void epoch_end(attn::callbacks::Callback& cb, int epoch, attn::callbacks::Logs logs) { cb.on_epoch_end(epoch, logs); }

namespace L = attn::layers;
namespace C = attn::callbacks;
namespace fs = std::filesystem;
using C::Logs;
using C::ModelCheckpointCallback;
using C::ModelCheckpointOptions;

attn::Model tiny_model() {
  auto in = attn::Input({2});
  return attn::Model(in, L::Dense(1)(in));
}

TEST(ModelCheckpoint, PathsAreFormattedAsPythonsStrFormat) {
  const Logs logs{{"loss", 0.5}, {"val_loss", 0.123456}, {"accuracy", 0.9361}};
  auto path = [&](const std::string& pattern, int epoch, int batch = -1) {
    return ModelCheckpointCallback(pattern).file_path(epoch, batch, logs);
  };
  EXPECT_EQ(path("m.keras", 0), "m.keras");
  EXPECT_EQ(path("ckpt-{epoch:02d}-{val_loss:.2f}.keras", 2), "ckpt-03-0.12.keras");  // epoch is 1-based
  EXPECT_EQ(path("{epoch}-{loss}.keras", 9), "10-0.5.keras");                       // repr without a spec
  EXPECT_EQ(path("{accuracy:.1%}_{val_loss:.3e}.keras", 0), "93.6%_1.235e-01.keras");
  EXPECT_EQ(path("{epoch:4d}|{loss:07.3f}.keras", 0), "   1|000.500.keras");
  EXPECT_EQ(path("{{epoch}}-{epoch}.keras", 0), "{epoch}-1.keras");
  EXPECT_EQ(path("e{epoch}b{batch:03d}.keras", 1, 4), "e2b005.keras");  // batch too is 1-based
  auto error = [&](const std::string& pattern) {
    try {
      path(pattern, 0);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error("{val_accuracy}.keras").find("no value named 'val_accuracy'"), std::string::npos);
  EXPECT_NE(error("{batch}.keras").find("no value named 'batch'"), std::string::npos);  // saving by epoch
  EXPECT_NE(error("{loss:d}.keras").find("'loss' is a float"), std::string::npos);
  EXPECT_NE(error("{loss:>8}.keras").find("not supported"), std::string::npos);
  EXPECT_NE(error("{loss.keras").find("unclosed"), std::string::npos);
  EXPECT_NE(error("{epoch:99999999999999999999d}.keras").find("more than 255 characters"), std::string::npos);
  EXPECT_NE(error("{loss:.300f}.keras").find("more than 255 characters"), std::string::npos);
}

// A template that cannot format fails when training begins, not after the first epoch's work;
// names are not known then, so an unknown one waits for the epoch's logs.
TEST(ModelCheckpoint, TemplateSyntaxIsCheckedWhenTrainingBegins) {
  for (const std::string bad : {"e{epoch:zz}.keras", "e{epoch.keras", "e}.keras", "e{loss:d}.keras"}) {
    ModelCheckpointCallback cb(bad);
    EXPECT_THROW(cb.on_train_begin({}), std::invalid_argument) << bad;
  }
  ModelCheckpointCallback later("e{epoch:02d}-{val_mystery:.3f}.keras");
  EXPECT_NO_THROW(later.on_train_begin({}));
  // So does a folder that cannot be made (under a plain file); one that can is made then.
  attn::testing::TempDir dir;
  std::ofstream(dir.file("plain")) << "x";
  ModelCheckpointCallback blocked(dir.file("plain/sub/e{epoch}.keras"));
  try {
    blocked.on_train_begin({});
    ADD_FAILURE() << "a folder under a plain file was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot create the folder " + dir.file("plain/sub")), std::string::npos)
        << e.what();
  }
  ModelCheckpointCallback nested(dir.file("a/b/e{epoch}.keras"));
  nested.on_train_begin({});
  EXPECT_TRUE(std::filesystem::is_directory(dir.file("a/b")));
}

TEST(ModelCheckpoint, RefusesPathsKerasRefuses) {
  EXPECT_THROW(ModelCheckpointCallback("m.txt"), std::invalid_argument);
  EXPECT_THROW(ModelCheckpointCallback("m.hdf5"), std::invalid_argument);
  EXPECT_NO_THROW(ModelCheckpointCallback("m.h5"));  // the legacy format, as Keras
  EXPECT_THROW(ModelCheckpointCallback("m.keras", {.save_weights_only = true}), std::invalid_argument);
  EXPECT_NO_THROW(ModelCheckpointCallback("m.weights.h5", {.save_weights_only = true}));
  EXPECT_THROW(ModelCheckpointCallback("m.keras", {.monitor = "val_mystery"}), std::invalid_argument);  // auto
  EXPECT_NO_THROW(ModelCheckpointCallback("m.keras", {.monitor = "val_mystery", .mode = "max"}));
  EXPECT_THROW(ModelCheckpointCallback("m.keras", {.save_freq = -1}), std::invalid_argument);
}

// Driven epoch by epoch: the weights are set to the epoch number before each epoch ends, so a
// file read back tells which epoch wrote it.
TEST(ModelCheckpoint, SaveBestOnlyKeepsTheBestEpochAndSaysSo) {
  attn::clear_session();
  attn::testing::TempDir dir;
  attn::Model model = tiny_model();
  model.compile(attn::optimizers::Adam(), attn::losses::MeanSquaredError());
  ModelCheckpointCallback cb(dir.file("sub/best.keras"), {.verbose = 1, .save_best_only = true});
  cb.set_model(&model);
  cb.on_train_begin({});
  const std::vector<double> val_loss = {0.5, 0.4, 0.45, 0.3, 0.3};
  ::testing::internal::CaptureStdout();
  for (int e = 0; e < 5; ++e) {
    model.set_weights_flat(std::vector<float>(model.count_params(), static_cast<float>(e)));
    cb.on_epoch_begin(e, {});
    epoch_end(cb, e, {{"loss", 1.0}, {"val_loss", val_loss[e]}});
  }
  const std::string out = ::testing::internal::GetCapturedStdout();
  const std::string path = dir.file("sub/best.keras");
  EXPECT_EQ(out,
            "\nEpoch 1: val_loss improved from inf to 0.50000, saving model to " + path + "\n" +
                "\nEpoch 1: finished saving model to " + path + "\n" +
                "\nEpoch 2: val_loss improved from 0.50000 to 0.40000, saving model to " + path + "\n" +
                "\nEpoch 2: finished saving model to " + path + "\n" +
                "\nEpoch 3: val_loss did not improve from 0.40000\n" +
                "\nEpoch 4: val_loss improved from 0.40000 to 0.30000, saving model to " + path + "\n" +
                "\nEpoch 4: finished saving model to " + path + "\n" +
                "\nEpoch 5: val_loss did not improve from 0.30000\n");
  ASSERT_TRUE(cb.best().has_value());
  EXPECT_EQ(*cb.best(), 0.3);
  attn::Model back = attn::io::load_model(path);
  EXPECT_EQ(back.get_weights_flat(), std::vector<float>(model.count_params(), 3.0f));  // epoch 4's
}

// The best value is kept from the constructor on, as Keras sets it in __init__: a second fit with
// the same callback (a resumed run) must not overwrite the best file with a worse model (the
// best was reset to inf at every train begin).
TEST(ModelCheckpoint, SaveBestOnlyRemembersTheBestAcrossFitCalls) {
  attn::clear_session();
  attn::testing::TempDir dir;
  attn::Model model = tiny_model();
  model.compile(attn::optimizers::Adam(), attn::losses::MeanSquaredError());
  ModelCheckpointCallback cb(dir.file("best.keras"), {.save_best_only = true});
  cb.set_model(&model);
  cb.on_train_begin({});
  model.set_weights_flat(std::vector<float>(model.count_params(), 1.0f));
  epoch_end(cb, 0, {{"val_loss", 0.2}});
  cb.on_train_end({});
  cb.on_train_begin({});  // the next fit
  model.set_weights_flat(std::vector<float>(model.count_params(), 2.0f));
  epoch_end(cb, 1, {{"val_loss", 0.9}});
  ASSERT_TRUE(cb.best().has_value());
  EXPECT_EQ(*cb.best(), 0.2);
  EXPECT_EQ(attn::io::load_model(dir.file("best.keras")).get_weights_flat(),
            std::vector<float>(model.count_params(), 1.0f));
}

// A .h5 path writes Keras' legacy format, which loads back.
TEST(ModelCheckpoint, LegacyH5Path) {
  attn::clear_session();
  attn::testing::TempDir dir;
  attn::Model model = tiny_model();
  ModelCheckpointCallback cb(dir.file("m{epoch}.h5"));
  cb.set_model(&model);
  cb.on_train_begin({});
  epoch_end(cb, 0, {{"val_loss", 1.0}});
  EXPECT_EQ(dir.listing(), (std::vector<std::string>{"m1.h5"}));
  EXPECT_EQ(attn::io::load_model(dir.file("m1.h5")).get_weights_flat(), model.get_weights_flat());
}

TEST(ModelCheckpoint, InitialValueThresholdAndMaxMode) {
  attn::clear_session();
  attn::testing::TempDir dir;
  attn::Model model = tiny_model();
  ModelCheckpointCallback cb(dir.file("e{epoch}.weights.h5"),
                             {.monitor = "val_accuracy", .save_best_only = true, .save_weights_only = true,
                              .initial_value_threshold = 0.8});
  cb.set_model(&model);
  cb.on_train_begin({});
  const std::vector<double> acc = {0.7, 0.85, 0.8, 0.9};
  for (int e = 0; e < 4; ++e) epoch_end(cb, e, {{"val_accuracy", acc[e]}});
  EXPECT_EQ(dir.listing(), (std::vector<std::string>{"e2.weights.h5", "e4.weights.h5"}));
}

// Every 2 batches of 3 per epoch: Keras' count carries over the epoch boundary.
TEST(ModelCheckpoint, SavesEveryNBatchesInsideFit) {
  attn::clear_session();
  attn::set_random_seed(3);
  attn::testing::TempDir dir;
  attn::Model model = tiny_model();
  model.compile(attn::optimizers::SGD({.learning_rate = 0.01f}), attn::losses::MeanSquaredError());
  attn::Tensor x({12, 2}), y({12, 1});
  for (int64_t i = 0; i < x.size(); ++i) x[i] = std::sin(static_cast<float>(i));
  for (int64_t i = 0; i < y.size(); ++i) y[i] = static_cast<float>(i % 3);
  auto cb = C::ModelCheckpoint(dir.file("e{epoch}-b{batch}.keras"), {.save_freq = 2});
  model.fit(x, y, {.epochs = 2, .batch_size = 4, .verbose = 0, .shuffle = false, .callbacks = {cb}});
  EXPECT_EQ(dir.listing(), (std::vector<std::string>{"e1-b2.keras", "e2-b1.keras", "e2-b3.keras"}));
}

// Every epoch inside fit: each file holds that epoch's weights, and the last one the final ones.
TEST(ModelCheckpoint, SavesEveryEpochInsideFit) {
  attn::clear_session();
  attn::set_random_seed(4);
  attn::testing::TempDir dir;
  attn::Model model = tiny_model();
  model.compile(attn::optimizers::Adam(), attn::losses::MeanSquaredError());
  attn::Tensor x({8, 2}), y({8, 1});
  for (int64_t i = 0; i < x.size(); ++i) x[i] = std::cos(static_cast<float>(i));
  for (int64_t i = 0; i < y.size(); ++i) y[i] = static_cast<float>(i % 2);
  auto cb = C::ModelCheckpoint(dir.file("m-{epoch:02d}-{loss:.4f}.keras"), {.monitor = "loss"});
  auto h = model.fit(x, y, {.epochs = 3, .batch_size = 4, .verbose = 0, .shuffle = false, .callbacks = {cb}});
  const auto files = dir.listing();
  ASSERT_EQ(files.size(), 3u);
  for (int e = 0; e < 3; ++e) {
    char want[64];
    std::snprintf(want, sizeof want, "m-%02d-%.4f.keras", e + 1, h.history["loss"][e]);
    EXPECT_EQ(files[e], want);
  }
  attn::Model last = attn::io::load_model(dir.file(files[2]));
  EXPECT_EQ(last.get_weights_flat(), model.get_weights_flat());
  attn::Model first = attn::io::load_model(dir.file(files[0]));
  EXPECT_NE(first.get_weights_flat(), model.get_weights_flat());  // Adam moved the weights since
}

}  // namespace
