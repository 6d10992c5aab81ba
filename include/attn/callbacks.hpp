// Callbacks with Keras' hooks and semantics (keras/src/callbacks): EarlyStopping,
// ModelCheckpoint, ReduceLROnPlateau, CSVLogger, TerminateOnNaN, and the Callback interface
// users implement.
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "attn/tensor.hpp"

namespace attn {
class Model;
}

namespace attn::callbacks {

// Epoch logs: "loss", "accuracy", "val_loss", "val_accuracy"... (sorted, as Keras 3).
using Logs = std::map<std::string, double>;

class Callback {
 public:
  virtual ~Callback() = default;
  virtual void on_train_begin(const Logs&) {}
  virtual void on_train_end(const Logs&) {}
  virtual void on_epoch_begin(int /*epoch*/, const Logs&) {}
  // Like Keras' logs dict, the epoch logs may be added to (ReduceLROnPlateau adds
  // "learning_rate"): the callbacks after this one, the history and the progress line see it.
  virtual void on_epoch_end(int /*epoch*/, Logs&) {}
  virtual void on_train_batch_end(int /*batch*/, const Logs&) {}
  void set_model(Model* model) { model_ = model; }

 protected:
  Model* model_ = nullptr;
};

struct EarlyStoppingOptions {
  std::string monitor = "val_loss";
  double min_delta = 0.0;
  int patience = 0;
  int verbose = 0;
  std::string mode = "auto";  // "min", "max" or "auto"
  std::optional<double> baseline = std::nullopt;
  bool restore_best_weights = false;
  int start_from_epoch = 0;
};

// keras/src/callbacks/early_stopping.py, epoch by epoch as keras-semantics.md section 8.
class EarlyStoppingCallback : public Callback {
 public:
  explicit EarlyStoppingCallback(EarlyStoppingOptions options);
  void on_train_begin(const Logs&) override;
  void on_epoch_end(int epoch, Logs& logs) override;
  void on_train_end(const Logs&) override;
  int stopped_epoch() const { return stopped_epoch_; }
  int best_epoch() const { return best_epoch_; }
  std::optional<double> best() const { return best_; }
  int wait() const { return wait_; }

 private:
  bool improved(double current, double reference) const;
  EarlyStoppingOptions options_;
  bool maximize_ = false;
  int wait_ = 0;
  int stopped_epoch_ = 0;
  int best_epoch_ = 0;
  std::optional<double> best_;
  std::vector<float> best_weights_;
};

struct CSVLoggerOptions {
  std::string separator = ",";
  bool append = false;
};

// keras/src/callbacks/csv_logger.py: header epoch + sorted keys, 0-based epochs, \r\n rows.
class CSVLoggerCallback : public Callback {
 public:
  CSVLoggerCallback(std::string filename, CSVLoggerOptions options = {});
  void on_train_begin(const Logs&) override;
  void on_epoch_end(int epoch, Logs& logs) override;
  void on_train_end(const Logs&) override;

 private:
  std::string filename_;
  CSVLoggerOptions options_;
  std::vector<std::string> keys_;
  std::ofstream file_;
  bool header_written_ = false;
};

// Stops training when a batch loss is NaN or infinite.
class TerminateOnNaNCallback : public Callback {
 public:
  void on_train_batch_end(int batch, const Logs& logs) override;
};

struct ModelCheckpointOptions {
  std::string monitor = "val_loss";
  int verbose = 0;
  bool save_best_only = false;
  bool save_weights_only = false;  // the path must then end in .weights.h5
  std::string mode = "auto";       // "min", "max" or "auto"
  int save_freq = 0;               // 0: every epoch ("epoch"); N > 0: every N batches
  std::optional<double> initial_value_threshold = std::nullopt;
};

// keras/src/callbacks/model_checkpoint.py: saves the model (.keras) or its weights
// (.weights.h5) every epoch or every save_freq batches, or only when the monitored quantity
// improves. The path may hold Python format fields, as Keras fills them:
// "ckpt-{epoch:02d}-{val_loss:.4f}.keras" (epoch is 1-based; batch, also 1-based, when saving by
// batch; any log key). Missing folders are created; each file is written to a temporary name and
// renamed. Throws std::invalid_argument for a path Keras would refuse (or that needs writing the
// legacy .h5 format, which attn does not) and, when saving, for a field the logs do not have.
class ModelCheckpointCallback : public Callback {
 public:
  ModelCheckpointCallback(std::string filepath, ModelCheckpointOptions options = {});
  void on_train_begin(const Logs&) override;
  void on_epoch_begin(int epoch, const Logs&) override;
  void on_epoch_end(int epoch, Logs& logs) override;
  void on_train_batch_end(int batch, const Logs& logs) override;
  std::optional<double> best() const { return best_; }

  // The path for this epoch (0-based) and batch (0-based, or -1 when saving by epoch).
  std::string file_path(int epoch, int batch, const Logs& logs) const;

 private:
  void save(int epoch, int batch, const Logs& logs);
  // file_path; with any_name, a name not in logs formats as 0 (to check the template early).
  std::string format_path(int epoch, int batch, const Logs& logs, bool any_name) const;
  std::string filepath_;
  ModelCheckpointOptions options_;
  bool maximize_ = false;
  std::optional<double> best_;
  int current_epoch_ = 0;
  int batches_since_save_ = 0;
  int last_batch_ = 0;
};

struct ReduceLROnPlateauOptions {
  std::string monitor = "val_loss";
  double factor = 0.1;  // new rate = rate * factor; must be < 1
  int patience = 10;
  int verbose = 0;
  std::string mode = "auto";  // "min", "max", or "auto": max when the name holds "acc"
  double min_delta = 1e-4;
  int cooldown = 0;
  double min_lr = 0.0;
};

// keras/src/callbacks/reduce_lr_on_plateau.py: multiplies the optimizer's learning rate by
// factor (not below min_lr) after `patience` epochs without an improvement of more than
// min_delta, then waits `cooldown` epochs before counting again. (Keras also adds
// "learning_rate" to the epoch logs; attn's History does not get it.)
class ReduceLROnPlateauCallback : public Callback {
 public:
  explicit ReduceLROnPlateauCallback(ReduceLROnPlateauOptions options);
  void on_train_begin(const Logs&) override;
  void on_epoch_end(int epoch, Logs& logs) override;
  int wait() const { return wait_; }
  double best() const { return best_; }

 private:
  ReduceLROnPlateauOptions options_;
  bool maximize_ = false;
  double best_ = 0.0;
  int wait_ = 0;
  int cooldown_counter_ = 0;
};

std::shared_ptr<Callback> EarlyStopping(EarlyStoppingOptions options = {});
std::shared_ptr<Callback> ReduceLROnPlateau(ReduceLROnPlateauOptions options = {});
std::shared_ptr<Callback> ModelCheckpoint(std::string filepath, ModelCheckpointOptions options = {});
std::shared_ptr<Callback> CSVLogger(std::string filename, CSVLoggerOptions options = {});
std::shared_ptr<Callback> TerminateOnNaN();

// Python-style repr of a double (shortest text that reads back the same), as CSVLogger writes.
std::string float_repr(double v);

}  // namespace attn::callbacks
