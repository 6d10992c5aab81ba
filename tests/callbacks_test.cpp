// Callbacks against Keras 3's definitions (keras-semantics.md sections 8 and 9), mostly
// driven directly with synthetic epoch logs:
//  - EarlyStopping epoch by epoch: wait is incremented before the improvement test,
//    patience 0/2/3, never a stop at epoch 0, start_from_epoch epochs fully ignored,
//    a baseline that keeps wait counting, |min_delta| in either direction, mode
//    min/max/auto (and a bad mode falling back to auto), restore_best_weights restoring
//    the best epoch's weights at train end (with or without a stop), stopped_epoch and
//    the verbose messages; and once inside fit.
//  - CSVLogger's exact bytes: "epoch" + sorted keys, val_ columns filled with NA when
//    the first epoch has none, 0-based epochs, Python float repr, \r\n rows, append.
//  - TerminateOnNaN: NaN or inf batch loss stops training, driven and inside fit.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "attn/attn.hpp"

namespace {

// Callbacks take the epoch logs by reference (they may add to them, as in Keras): these tests
// hand each call its own map.
void epoch_end(attn::callbacks::Callback& cb, int epoch, attn::callbacks::Logs logs) { cb.on_epoch_end(epoch, logs); }

namespace L = attn::layers;
namespace C = attn::callbacks;
using C::EarlyStoppingCallback;
using C::EarlyStoppingOptions;
using C::Logs;

// Input(2) -> Dense(1): three parameters, enough to see which weights are restored.
attn::Model tiny_model() {
  auto in = attn::Input({2});
  auto out = L::Dense(1)(in);
  return attn::Model(in, out);
}

// Runs one "training" of an EarlyStopping over per-epoch values of `key`; the model's
// weights are set to the epoch number (all parameters) before each epoch ends.
struct EsRun {
  int stopped_at = -1;  // epoch whose end set stop_training, -1 if none
  int stopped_epoch = 0;
  int best_epoch = 0;
  std::vector<float> weights_after;  // after on_train_end
};

EsRun run_early_stopping(EarlyStoppingOptions options, const std::vector<double>& values,
                       const std::string& key = "loss") {
  attn::Model model = tiny_model();
  EarlyStoppingCallback es(options);
  es.set_model(&model);
  model.stop_training = false;
  es.on_train_begin({});
  EsRun r;
  for (size_t e = 0; e < values.size(); ++e) {
    model.set_weights_flat(std::vector<float>(model.count_params(), static_cast<float>(e)));
    epoch_end(es, static_cast<int>(e), Logs{{key, values[e]}, {"other", 123.0}});
    if (model.stop_training) {
      r.stopped_at = static_cast<int>(e);
      break;
    }
  }
  es.on_train_end({});
  r.stopped_epoch = es.stopped_epoch();
  r.best_epoch = es.best_epoch();
  r.weights_after = model.get_weights_flat();
  return r;
}

class Callbacks : public ::testing::Test {
 protected:
  void SetUp() override {
    attn::clear_session();
    attn::set_random_seed(3);
  }
};

TEST_F(Callbacks, PatienceZeroStopsAtTheFirstEpochWithoutImprovement) {
  EsRun r = run_early_stopping({.monitor = "loss", .patience = 0}, {1.0, 0.9, 0.95, 0.8});
  EXPECT_EQ(r.stopped_at, 2);
  EXPECT_EQ(r.stopped_epoch, 2);
  EXPECT_EQ(r.best_epoch, 1);
  // An equal value is no improvement (strict comparison).
  EXPECT_EQ(run_early_stopping({.monitor = "loss", .patience = 0}, {1.0, 1.0}).stopped_at, 1);
}

TEST_F(Callbacks, PatienceTwoWithBestAtEpochThreeStopsAtEpochFive) {
  EsRun r = run_early_stopping({.monitor = "loss", .patience = 2}, {5, 4, 3, 2, 2.5, 2.6, 1.0});
  EXPECT_EQ(r.stopped_at, 5);
  EXPECT_EQ(r.stopped_epoch, 5);
  EXPECT_EQ(r.best_epoch, 3);
  // An improvement in between resets the count.
  EXPECT_EQ(run_early_stopping({.monitor = "loss", .patience = 2}, {5, 6, 4, 6, 7, 8}).stopped_at, 4);
}

TEST_F(Callbacks, PatienceThreeCountsThreeEpochsWithoutImprovement) {
  EXPECT_EQ(run_early_stopping({.monitor = "loss", .patience = 3}, {1.0, 1.1, 1.2, 1.3, 0.5}).stopped_at, 3);
  EXPECT_EQ(run_early_stopping({.monitor = "loss", .patience = 3}, {1.0, 1.1, 1.2, 0.9, 1.0, 1.0, 1.0}).stopped_at,
            6);
  // Never more epochs than given: no stop.
  EXPECT_EQ(run_early_stopping({.monitor = "loss", .patience = 3}, {1.0, 1.1, 1.2}).stopped_at, -1);
}

TEST_F(Callbacks, BaselineMissedAtEpochZero) {
  // patience 0 and a baseline the first value misses: wait is 1 after epoch 0, yet the
  // first value is always an improvement, so the stop comes at epoch 1.
  EsRun r = run_early_stopping({.monitor = "loss", .patience = 0, .baseline = 0.1}, {1.0, 1.0});
  EXPECT_EQ(r.stopped_at, 1);
  EXPECT_EQ(r.stopped_epoch, 1);
}

TEST_F(Callbacks, StartFromEpochIgnoresEarlierEpochsCompletely) {
  // Without start_from_epoch the rise at epoch 1 stops training.
  EXPECT_EQ(run_early_stopping({.monitor = "loss", .patience = 0}, {1.0, 2.0, 3.0, 2.5, 2.7}).stopped_at, 1);
  // With it, epochs 0 and 1 set no best: 3.0 at epoch 2 is the first best.
  EsRun r = run_early_stopping({.monitor = "loss", .patience = 0, .start_from_epoch = 2}, {1.0, 2.0, 3.0, 2.5, 2.7});
  EXPECT_EQ(r.stopped_at, 4);
  EXPECT_EQ(r.best_epoch, 3);
  // Nor do they count towards patience.
  EXPECT_EQ(
      run_early_stopping({.monitor = "loss", .patience = 1, .start_from_epoch = 3}, {1, 2, 3, 4, 5, 6}).stopped_at, 4);
}

TEST_F(Callbacks, BaselineNotBeatenKeepsCounting) {
  // Without a baseline: best at 0, stop after two non-improving epochs (epoch 2).
  EXPECT_EQ(run_early_stopping({.monitor = "loss", .patience = 2}, {1.0, 1.1, 1.2, 1.3}).stopped_at, 2);
  // With a baseline never beaten, epoch 0 already counts: stop at epoch 1.
  EXPECT_EQ(run_early_stopping({.monitor = "loss", .patience = 2, .baseline = 0.5}, {1.0, 1.1, 1.2, 1.3}).stopped_at,
            1);
  // Improvements that miss the baseline do not stop training but do not reset wait either.
  EsRun r = run_early_stopping({.monitor = "loss", .patience = 2, .baseline = 0.5}, {1.0, 0.9, 0.8, 0.85});
  EXPECT_EQ(r.stopped_at, 3);
  EXPECT_EQ(r.best_epoch, 2);
  // Beating the baseline resets wait.
  EXPECT_EQ(
      run_early_stopping({.monitor = "loss", .patience = 2, .baseline = 0.5}, {1.0, 0.4, 0.45, 0.46, 0.47}).stopped_at,
      3);
}

TEST_F(Callbacks, MinDeltaIsAnAbsoluteMargin) {
  // 0.95 is less than 1.0 but not by 0.1.
  EXPECT_EQ(run_early_stopping({.monitor = "loss", .min_delta = 0.1, .patience = 0}, {1.0, 0.95}).stopped_at, 1);
  EXPECT_EQ(run_early_stopping({.monitor = "loss", .min_delta = 0.1, .patience = 0}, {1.0, 0.85, 0.7}).stopped_at,
            -1);
  // The sign of min_delta does not matter.
  EXPECT_EQ(run_early_stopping({.monitor = "loss", .min_delta = -0.1, .patience = 0}, {1.0, 0.95}).stopped_at, 1);
  // Maximising: the new value must exceed the best by min_delta.
  EXPECT_EQ(run_early_stopping({.monitor = "accuracy", .min_delta = 0.1, .patience = 0}, {0.5, 0.55}, "accuracy")
                .stopped_at,
            1);
  EXPECT_EQ(run_early_stopping({.monitor = "accuracy", .min_delta = 0.1, .patience = 0}, {0.5, 0.65}, "accuracy")
                .stopped_at,
            -1);
  // The margin applies to the baseline too: 0.45 beats 0.5 but not by 0.1, so wait is not
  // reset at epoch 0 and patience 2 runs out at epoch 1 (without a baseline: epoch 2).
  EXPECT_EQ(run_early_stopping({.monitor = "loss", .min_delta = 0.1, .patience = 2, .baseline = 0.5},
                               {0.45, 0.44, 0.43})
                .stopped_at,
            1);
  EXPECT_EQ(run_early_stopping({.monitor = "loss", .min_delta = 0.1, .patience = 2, .baseline = 0.5},
                               {0.35, 0.34, 0.33})
                .stopped_at,
            2);
}

TEST_F(Callbacks, ModeAutoMinAndMax) {
  // auto: accuracy (val_ stripped) goes up, loss goes down.
  EXPECT_EQ(run_early_stopping({.monitor = "val_accuracy"}, {0.5, 0.6, 0.55}, "val_accuracy").stopped_at, 2);
  EXPECT_EQ(run_early_stopping({.monitor = "accuracy"}, {0.5, 0.4}, "accuracy").stopped_at, 1);
  EXPECT_EQ(run_early_stopping({.monitor = "val_loss"}, {0.5, 0.4, 0.45}, "val_loss").stopped_at, 2);
  // Explicit modes override the name.
  EXPECT_EQ(run_early_stopping({.monitor = "accuracy", .mode = "min"}, {0.5, 0.6}, "accuracy").stopped_at, 1);
  EXPECT_EQ(run_early_stopping({.monitor = "loss", .mode = "max"}, {1.0, 0.9}).stopped_at, 1);
  EXPECT_EQ(run_early_stopping({.monitor = "loss", .mode = "max"}, {1.0, 1.1}).stopped_at, -1);
  // A bad mode warns and falls back to auto.
  ::testing::internal::CaptureStderr();
  EsRun r = run_early_stopping({.monitor = "loss", .mode = "sideways"}, {1.0, 0.9, 1.0});
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(r.stopped_at, 2);
  EXPECT_NE(err.find("sideways"), std::string::npos) << err;
  // A name whose direction is unknown cannot be used with auto.
  EXPECT_THROW(EarlyStoppingCallback({.monitor = "val_widgets"}), std::invalid_argument);
  EXPECT_NO_THROW(EarlyStoppingCallback({.monitor = "val_widgets", .mode = "max"}));
  EXPECT_THROW(EarlyStoppingCallback({.patience = -1}), std::invalid_argument);
}

TEST_F(Callbacks, MissingMonitorWarnsAndChangesNothing) {
  attn::Model model = tiny_model();
  EarlyStoppingCallback es({.monitor = "val_loss", .patience = 0});
  es.set_model(&model);
  es.on_train_begin({});
  ::testing::internal::CaptureStderr();
  for (int e = 0; e < 3; ++e) epoch_end(es, e, {{"loss", 1.0 + e}});
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_FALSE(model.stop_training);
  EXPECT_EQ(es.wait(), 0);
  EXPECT_FALSE(es.best().has_value());
  EXPECT_NE(err.find("val_loss"), std::string::npos);
  EXPECT_NE(err.find("loss"), std::string::npos);
}

TEST_F(Callbacks, RestoreBestWeightsRestoresTheBestEpochsWeights) {
  // Stopped: best at epoch 1, stop at epoch 3; the weights are epoch 1's.
  EsRun r = run_early_stopping({.monitor = "loss", .patience = 2, .restore_best_weights = true}, {1.0, 0.5, 0.7, 0.8});
  EXPECT_EQ(r.stopped_at, 3);
  EXPECT_EQ(r.best_epoch, 1);
  EXPECT_EQ(r.weights_after, std::vector<float>(3, 1.0f));
  // Not stopped: Keras 3 restores at train end anyway.
  r = run_early_stopping({.monitor = "loss", .patience = 5, .restore_best_weights = true}, {1.0, 0.5, 0.4, 0.7});
  EXPECT_EQ(r.stopped_at, -1);
  EXPECT_EQ(r.weights_after, std::vector<float>(3, 2.0f));
  // Without restore_best_weights the last weights stay.
  r = run_early_stopping({.monitor = "loss", .patience = 2}, {1.0, 0.5, 0.7, 0.8});
  EXPECT_EQ(r.weights_after, std::vector<float>(3, 3.0f));
  // Epochs before start_from_epoch take no snapshot: the best counted epoch is 2, not 0.
  r = run_early_stopping({.monitor = "loss", .patience = 5, .restore_best_weights = true, .start_from_epoch = 2},
                         {0.1, 0.2, 0.9, 1.0});
  EXPECT_EQ(r.best_epoch, 2);
  EXPECT_EQ(r.weights_after, std::vector<float>(3, 2.0f));
}

TEST_F(Callbacks, VerboseMessages) {
  attn::Model model = tiny_model();
  EarlyStoppingCallback es({.monitor = "loss", .patience = 1, .verbose = 1, .restore_best_weights = true});
  es.set_model(&model);
  es.on_train_begin({});
  ::testing::internal::CaptureStdout();
  const double values[] = {1.0, 0.5, 0.6, 0.7};
  for (int e = 0; e < 4 && !model.stop_training; ++e) epoch_end(es, e, {{"loss", values[e]}});
  es.on_train_end({});
  EXPECT_EQ(::testing::internal::GetCapturedStdout(),
            "Epoch 3: early stopping\nRestoring model weights from the end of the best epoch: 2.\n");
  EXPECT_EQ(es.stopped_epoch(), 2);
}

TEST_F(Callbacks, TrainBeginResetsState) {
  attn::Model model = tiny_model();
  EarlyStoppingCallback es({.monitor = "loss", .patience = 0});
  es.set_model(&model);
  es.on_train_begin({});
  epoch_end(es, 0, {{"loss", 0.1}});
  epoch_end(es, 1, {{"loss", 0.2}});
  EXPECT_TRUE(model.stop_training);
  EXPECT_EQ(es.stopped_epoch(), 1);
  model.stop_training = false;
  es.on_train_begin({});
  EXPECT_EQ(es.stopped_epoch(), 0);
  EXPECT_FALSE(es.best().has_value());
  epoch_end(es, 0, {{"loss", 5.0}});  // would not improve on the old best 0.1
  epoch_end(es, 1, {{"loss", 4.0}});
  EXPECT_FALSE(model.stop_training);
}

// A problem where the loss cannot change (SGD with learning rate 0).
struct Frozen {
  attn::Tensor x{{8, 2}};
  attn::Tensor y{{8, 1}};
  Frozen() {
    for (int64_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 7) % 5) - 2.0f;
    for (int64_t i = 0; i < y.size(); ++i) y[i] = static_cast<float>(i % 3);
  }
};

TEST_F(Callbacks, EarlyStoppingInsideFit) {
  attn::Model model = tiny_model();
  model.compile(attn::optimizers::SGD({.learning_rate = 0.0f}), attn::losses::MeanSquaredError());
  Frozen d;
  auto es = std::make_shared<EarlyStoppingCallback>(EarlyStoppingOptions{.monitor = "loss", .patience = 2});
  auto h = model.fit(d.x, d.y, {.epochs = 10, .batch_size = 4, .verbose = 0, .shuffle = false, .callbacks = {es}});
  // Epoch 0 is the best; epochs 1 and 2 are equal, not better: stop at epoch 2.
  EXPECT_EQ(h.epoch, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(h.history["loss"].size(), 3u);
  EXPECT_TRUE(h.stopped_early);
  EXPECT_EQ(es->stopped_epoch(), 2);
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::filesystem::path temp_path(const std::string& name) {
  auto dir = std::filesystem::path(::testing::TempDir()) / "attn_callbacks_test";
  std::filesystem::create_directories(dir);
  auto p = dir / name;
  std::filesystem::remove(p);
  return p;
}

TEST_F(Callbacks, FloatReprIsPythons) {
  EXPECT_EQ(C::float_repr(0.5), "0.5");
  EXPECT_EQ(C::float_repr(0.1), "0.1");
  EXPECT_EQ(C::float_repr(1.0), "1.0");
  EXPECT_EQ(C::float_repr(-2.0), "-2.0");
  EXPECT_EQ(C::float_repr(10.0), "10.0");
  EXPECT_EQ(C::float_repr(100.0), "100.0");
  EXPECT_EQ(C::float_repr(123456789.0), "123456789.0");
  EXPECT_EQ(C::float_repr(1e15), "1000000000000000.0");
  EXPECT_EQ(C::float_repr(1e16), "1e+16");
  EXPECT_EQ(C::float_repr(1.5e16), "1.5e+16");
  EXPECT_EQ(C::float_repr(1.0 / 3.0), "0.3333333333333333");
  EXPECT_EQ(C::float_repr(0.0001), "0.0001");
  EXPECT_EQ(C::float_repr(0.00012), "0.00012");
  EXPECT_EQ(C::float_repr(0.00001), "1e-05");
  EXPECT_EQ(C::float_repr(1.25e-7), "1.25e-07");
  EXPECT_EQ(C::float_repr(2.5e300), "2.5e+300");
  EXPECT_EQ(C::float_repr(0.0), "0.0");
  EXPECT_EQ(C::float_repr(-0.0), "-0.0");
  EXPECT_EQ(C::float_repr(std::nan("")), "nan");
  EXPECT_EQ(C::float_repr(-std::numeric_limits<double>::infinity()), "-inf");
  // A float32 metric widened to double, as Keras' logs hold it (float(np.float32(0.9))).
  EXPECT_EQ(C::float_repr(static_cast<double>(0.9f)), "0.8999999761581421");
  EXPECT_EQ(C::float_repr(static_cast<double>(0.1f)), "0.10000000149011612");
}

TEST_F(Callbacks, CSVLoggerWritesKerasText) {
  auto path = temp_path("log.csv");
  C::CSVLoggerCallback csv(path.string());
  csv.on_train_begin({});
  epoch_end(csv, 0, {{"val_loss", 0.75}, {"loss", 0.5}, {"val_accuracy", 0.25}, {"accuracy", 1.0}});
  epoch_end(csv, 1, {{"val_loss", 0.1}, {"loss", static_cast<double>(0.9f)}, {"val_accuracy", 1e-05},
                       {"accuracy", 100.0}});
  csv.on_train_end({});
  EXPECT_EQ(read_file(path),
            "epoch,accuracy,loss,val_accuracy,val_loss\r\n"
            "0,1.0,0.5,0.25,0.75\r\n"
            "1,100.0,0.8999999761581421,1e-05,0.1\r\n");
}

TEST_F(Callbacks, CSVLoggerAddsValColumnsWhenTheFirstEpochHasNone) {
  // validation_freq > 1: the first epoch has no val_ keys; Keras adds them, filled with NA.
  auto path = temp_path("freq.csv");
  C::CSVLoggerCallback csv(path.string(), {.separator = ";"});
  csv.on_train_begin({});
  epoch_end(csv, 0, {{"loss", 2.0}, {"accuracy", 0.5}});
  epoch_end(csv, 1, {{"loss", 1.5}, {"accuracy", 0.75}, {"val_loss", 1.25}, {"val_accuracy", 0.625}});
  csv.on_train_end({});
  EXPECT_EQ(read_file(path),
            "epoch;accuracy;loss;val_accuracy;val_loss\r\n"
            "0;0.5;2.0;NA;NA\r\n"
            "1;0.75;1.5;0.625;1.25\r\n");
}

TEST_F(Callbacks, CSVLoggerAppendAndOverwrite) {
  auto path = temp_path("append.csv");
  {
    C::CSVLoggerCallback csv(path.string(), {.append = true});  // a new file still gets a header
    csv.on_train_begin({});
    epoch_end(csv, 0, {{"loss", 0.5}, {"val_loss", 0.25}});
    csv.on_train_end({});
  }
  {
    C::CSVLoggerCallback csv(path.string(), {.append = true});  // no second header
    csv.on_train_begin({});
    epoch_end(csv, 0, {{"loss", 0.125}, {"val_loss", 0.0625}});
    csv.on_train_end({});
  }
  EXPECT_EQ(read_file(path), "epoch,loss,val_loss\r\n0,0.5,0.25\r\n0,0.125,0.0625\r\n");
  {
    C::CSVLoggerCallback csv(path.string());  // append=false truncates
    csv.on_train_begin({});
    epoch_end(csv, 0, {{"loss", 3.0}, {"val_loss", 4.0}});
    csv.on_train_end({});
  }
  EXPECT_EQ(read_file(path), "epoch,loss,val_loss\r\n0,3.0,4.0\r\n");
}

TEST_F(Callbacks, CSVLoggerFlushesEveryEpoch) {
  auto path = temp_path("flush.csv");
  C::CSVLoggerCallback csv(path.string());
  csv.on_train_begin({});
  epoch_end(csv, 0, {{"loss", 0.5}, {"val_loss", 0.25}});
  EXPECT_EQ(read_file(path), "epoch,loss,val_loss\r\n0,0.5,0.25\r\n");
  csv.on_train_end({});
}

TEST_F(Callbacks, CSVLoggerInsideFit) {
  attn::Model model = tiny_model();
  model.compile(attn::optimizers::SGD({.learning_rate = 0.0f}), attn::losses::MeanSquaredError());
  Frozen d;
  auto path = temp_path("fit.csv");
  auto h = model.fit(d.x, d.y, {.epochs = 2, .batch_size = 4, .verbose = 0, .shuffle = false,
                                    .callbacks = {C::CSVLogger(path.string())}});
  const std::string loss = C::float_repr(h.history["loss"][0]);
  EXPECT_EQ(read_file(path), "epoch,loss,val_loss\r\n0," + loss + ",NA\r\n1," + loss + ",NA\r\n");
}

TEST_F(Callbacks, TerminateOnNaNDriven) {
  attn::Model model = tiny_model();
  C::TerminateOnNaNCallback t;
  t.set_model(&model);
  ::testing::internal::CaptureStdout();
  t.on_train_batch_end(0, {{"loss", 1.0}});
  EXPECT_FALSE(model.stop_training);
  t.on_train_batch_end(1, {{"accuracy", std::nan("")}});  // only the loss is looked at
  EXPECT_FALSE(model.stop_training);
  t.on_train_batch_end(2, {{"loss", std::nan("")}});
  EXPECT_TRUE(model.stop_training);
  model.stop_training = false;
  t.on_train_batch_end(7, {{"loss", std::numeric_limits<double>::infinity()}});
  EXPECT_TRUE(model.stop_training);
  EXPECT_EQ(::testing::internal::GetCapturedStdout(),
            "Batch 2: Invalid loss, terminating training\nBatch 7: Invalid loss, terminating training\n");
}

// Counts the batches fit runs.
struct BatchCounter : C::Callback {
  int batches = 0;
  std::vector<double> losses;
  void on_train_batch_end(int, const Logs& logs) override {
    ++batches;
    losses.push_back(logs.at("loss"));
  }
};

TEST_F(Callbacks, TerminateOnNaNStopsFitMidEpoch) {
  // A huge learning rate makes the loss overflow after a step or two.
  attn::Model model = tiny_model();
  model.compile(attn::optimizers::SGD({.learning_rate = 1e30f}), attn::losses::MeanSquaredError());
  Frozen d;
  auto counter = std::make_shared<BatchCounter>();
  ::testing::internal::CaptureStdout();
  auto h = model.fit(d.x, d.y,
                     {.epochs = 3, .batch_size = 1, .verbose = 0, .shuffle = false,
                      .callbacks = {C::TerminateOnNaN(), counter}});
  std::string out = ::testing::internal::GetCapturedStdout();
  ASSERT_FALSE(counter->losses.empty());
  EXPECT_FALSE(std::isfinite(counter->losses.back()));
  for (size_t i = 0; i + 1 < counter->losses.size(); ++i) EXPECT_TRUE(std::isfinite(counter->losses[i]));
  EXPECT_LT(counter->batches, 8);  // stopped inside the first epoch
  EXPECT_EQ(h.epoch, std::vector<int>{0});
  EXPECT_TRUE(h.stopped_early);
  EXPECT_NE(out.find("Invalid loss, terminating training"), std::string::npos);
}

}  // namespace
