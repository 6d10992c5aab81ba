// ReduceLROnPlateau (keras/src/callbacks/reduce_lr_on_plateau.py).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "attn/callbacks.hpp"
#include "attn/model.hpp"
#include "attn/optimizers.hpp"
#include "training/monitor.hpp"

namespace attn::callbacks {

ReduceLROnPlateauCallback::ReduceLROnPlateauCallback(ReduceLROnPlateauOptions options) : options_(std::move(options)) {
  if (!(options_.factor < 1.0))
    throw std::invalid_argument("ReduceLROnPlateau does not support a factor >= 1.0 (got " +
                                float_repr(options_.factor) + ")");
  if (options_.patience < 0 || options_.cooldown < 0)
    throw std::invalid_argument("ReduceLROnPlateau: patience and cooldown must be >= 0");
  if (options_.mode != "auto" && options_.mode != "min" && options_.mode != "max") {
    std::fprintf(stderr, "attn: warning: Learning rate reduction mode %s is unknown, fallback to auto mode.\n",
                 options_.mode.c_str());
    options_.mode = "auto";
  }
  // Its own rule, not EarlyStopping's: in auto mode any name holding "acc" is maximised.
  maximize_ = options_.mode == "max" || (options_.mode == "auto" && options_.monitor.find("acc") != std::string::npos);
}

void ReduceLROnPlateauCallback::on_train_begin(const Logs&) {
  best_ = maximize_ ? -INFINITY : INFINITY;
  wait_ = 0;
  cooldown_counter_ = 0;
}

void ReduceLROnPlateauCallback::on_epoch_end(int epoch, Logs& logs) {
  // Keras logs the rate the epoch ran with (before any reduction below), as a Python float.
  const bool compiled = model_ != nullptr && model_->optimizer() != nullptr;
  if (compiled) logs["learning_rate"] = model_->optimizer()->learning_rate();
  const auto it = logs.find(options_.monitor);
  if (it == logs.end()) {
    std::fprintf(stderr,
                 "attn: warning: Learning rate reduction is conditioned on metric `%s` which is not available. "
                 "Available metrics are: %s.\n",
                 options_.monitor.c_str(), joined_keys(logs).c_str());
    return;
  }
  const double current = it->second;
  if (cooldown_counter_ > 0) {
    --cooldown_counter_;
    wait_ = 0;
  }
  const bool improved = maximize_ ? current > best_ + options_.min_delta : current < best_ - options_.min_delta;
  if (improved) {
    best_ = current;
    wait_ = 0;
    return;
  }
  if (cooldown_counter_ > 0 || ++wait_ < options_.patience) return;
  if (!compiled) throw std::logic_error("ReduceLROnPlateau: the model has no optimizer (compile it first)");
  optimizers::Optimizer& opt = *model_->optimizer();
  // Keras reads the float32 rate as a Python float and computes the new one in double.
  const double old_lr = opt.learning_rate();
  if (!(old_lr > static_cast<double>(static_cast<float>(options_.min_lr)))) return;
  const double new_lr = std::max(old_lr * options_.factor, options_.min_lr);
  opt.set_learning_rate(static_cast<float>(new_lr));
  if (options_.verbose > 0)
    std::printf("\nEpoch %d: ReduceLROnPlateau reducing learning rate to %s.\n", epoch + 1, float_repr(new_lr).c_str());
  cooldown_counter_ = options_.cooldown;
  wait_ = 0;
}

std::shared_ptr<Callback> ReduceLROnPlateau(ReduceLROnPlateauOptions options) {
  return std::make_shared<ReduceLROnPlateauCallback>(std::move(options));
}

}  // namespace attn::callbacks
