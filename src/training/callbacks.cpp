// EarlyStopping, CSVLogger and TerminateOnNaN, step for step as Keras 3
// (keras/src/callbacks/{early_stopping,csv_logger,terminate_on_nan}.py).
#include "attn/callbacks.hpp"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "attn/model.hpp"
#include "training/monitor.hpp"

namespace attn::callbacks {

std::string float_repr(double v) {
  // Python's repr: the shortest digits that read back the same, in fixed notation when
  // the decimal exponent e (v = d.ddd x 10^e) is in [-5, 16), else as d.ddde+XX.
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0) return std::signbit(v) ? "-0.0" : "0.0";
  char buf[48];
  for (int p = 1; p <= 17; ++p) {
    std::snprintf(buf, sizeof buf, "%.*e", p - 1, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  const std::string sci = buf;
  const size_t e_at = sci.find('e');
  const int exponent = std::atoi(sci.c_str() + e_at + 1);
  std::string digits;
  for (size_t i = 0; i < e_at; ++i)
    if (std::isdigit(static_cast<unsigned char>(sci[i]))) digits += sci[i];
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string s;
  if (v < 0) s.push_back('-');
  if (exponent < -4 || exponent >= 16) {
    s.push_back(digits[0]);
    if (digits.size() > 1) {
      s.push_back('.');
      s.append(digits, 1, std::string::npos);
    }
    char e[16];
    std::snprintf(e, sizeof e, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    s.append(e);
  } else if (exponent < 0) {
    s.append("0.");
    s.append(static_cast<size_t>(-exponent - 1), '0');
    s.append(digits);
  } else {
    const size_t int_digits = static_cast<size_t>(exponent) + 1;
    if (digits.size() <= int_digits) {
      s.append(digits);
      s.append(int_digits - digits.size(), '0');
      s.append(".0");
    } else {
      s.append(digits, 0, int_digits);
      s.push_back('.');
      s.append(digits, int_digits, std::string::npos);
    }
  }
  return s;
}

std::string joined_keys(const Logs& logs) {
  std::string keys;
  for (const auto& [k, v] : logs) keys += (keys.empty() ? "" : ",") + k;
  return keys;
}

bool monitor_maximizes(const std::string& monitor, const std::string& mode_arg, const char* who) {
  std::string mode = mode_arg;
  if (mode != "auto" && mode != "min" && mode != "max") {
    std::fprintf(stderr, "attn: warning: %s mode '%s' is unknown, falling back to 'auto'\n", who, mode.c_str());
    mode = "auto";
  }
  if (mode != "auto") return mode == "max";
  std::string m = monitor;
  if (m.rfind("val_", 0) == 0) m = m.substr(4);
  if (m == "loss" || (m.size() >= 4 && m.compare(m.size() - 4, 4, "loss") == 0)) return false;
  if (m.find("acc") != std::string::npos || m.find("auc") != std::string::npos) return true;
  throw std::invalid_argument(std::string(who) + ": cannot tell whether '" + monitor +
                              "' should go up or down; pass mode \"min\" or \"max\"");
}

EarlyStoppingCallback::EarlyStoppingCallback(EarlyStoppingOptions options) : options_(std::move(options)) {
  if (options_.patience < 0) throw std::invalid_argument("EarlyStopping: patience must be >= 0");
  maximize_ = monitor_maximizes(options_.monitor, options_.mode, "EarlyStopping");
}

bool EarlyStoppingCallback::improved(double current, double reference) const {
  // Keras negates min_delta when minimising, then tests op(current - min_delta, reference).
  double delta = std::fabs(options_.min_delta);
  return maximize_ ? current - delta > reference : current + delta < reference;
}

void EarlyStoppingCallback::on_train_begin(const Logs&) {
  wait_ = 0;
  stopped_epoch_ = 0;
  best_epoch_ = 0;
  best_.reset();
  best_weights_.clear();
}

void EarlyStoppingCallback::on_epoch_end(int epoch, Logs& logs) {
  auto it = logs.find(options_.monitor);
  if (it == logs.end()) {
    std::fprintf(stderr,
                 "attn: warning: EarlyStopping is conditioned on metric '%s' which is not available. Available "
                 "metrics are: %s\n",
                 options_.monitor.c_str(), joined_keys(logs).c_str());
    return;
  }
  if (epoch < options_.start_from_epoch) return;
  const double current = it->second;
  if (options_.restore_best_weights && best_weights_.empty() && model_) best_weights_ = model_->get_weights_flat();
  ++wait_;
  if (!best_ || improved(current, *best_)) {
    best_ = current;
    best_epoch_ = epoch;
    if (options_.restore_best_weights && model_) best_weights_ = model_->get_weights_flat();
    if (!options_.baseline || improved(current, *options_.baseline)) wait_ = 0;
    return;
  }
  if (wait_ >= options_.patience && epoch > 0) {
    stopped_epoch_ = epoch;
    if (model_) model_->stop_training = true;
  }
}

void EarlyStoppingCallback::on_train_end(const Logs&) {
  if (stopped_epoch_ > 0 && options_.verbose > 0) std::printf("Epoch %d: early stopping\n", stopped_epoch_ + 1);
  if (options_.restore_best_weights && !best_weights_.empty() && model_) {
    if (options_.verbose > 0)
      std::printf("Restoring model weights from the end of the best epoch: %d.\n", best_epoch_ + 1);
    model_->set_weights_flat(best_weights_);
  }
}

CSVLoggerCallback::CSVLoggerCallback(std::string filename, CSVLoggerOptions options)
    : filename_(std::move(filename)), options_(std::move(options)) {}

void CSVLoggerCallback::on_train_begin(const Logs&) {
  bool has_content = options_.append && std::filesystem::exists(filename_) && std::filesystem::file_size(filename_) > 0;
  file_.open(filename_, options_.append ? std::ios::app | std::ios::binary : std::ios::trunc | std::ios::binary);
  if (!file_) throw std::runtime_error("CSVLogger: cannot open '" + filename_ + "' for writing");
  header_written_ = has_content;
  keys_.clear();
}

void CSVLoggerCallback::on_epoch_end(int epoch, Logs& logs) {
  if (keys_.empty()) {
    for (const auto& [k, v] : logs) keys_.push_back(k);
    bool has_val = false;
    for (const auto& k : keys_) has_val |= k.rfind("val_", 0) == 0;
    if (!has_val) {
      size_t n = keys_.size();
      for (size_t i = 0; i < n; ++i) keys_.push_back("val_" + keys_[i]);
    }
  }
  const std::string& sep = options_.separator;
  if (!header_written_) {
    file_ << "epoch";
    for (const auto& k : keys_) file_ << sep << k;
    file_ << "\r\n";
    header_written_ = true;
  }
  file_ << epoch;
  for (const auto& k : keys_) {
    auto it = logs.find(k);
    file_ << sep << (it == logs.end() ? std::string("NA") : float_repr(it->second));
  }
  file_ << "\r\n";
  file_.flush();
}

void CSVLoggerCallback::on_train_end(const Logs&) { file_.close(); }

void TerminateOnNaNCallback::on_train_batch_end(int batch, const Logs& logs) {
  auto it = logs.find("loss");
  if (it != logs.end() && !std::isfinite(it->second)) {
    std::printf("Batch %d: Invalid loss, terminating training\n", batch);
    if (model_) model_->stop_training = true;
  }
}

std::shared_ptr<Callback> EarlyStopping(EarlyStoppingOptions options) {
  return std::make_shared<EarlyStoppingCallback>(std::move(options));
}
std::shared_ptr<Callback> CSVLogger(std::string filename, CSVLoggerOptions options) {
  return std::make_shared<CSVLoggerCallback>(std::move(filename), std::move(options));
}
std::shared_ptr<Callback> TerminateOnNaN() { return std::make_shared<TerminateOnNaNCallback>(); }

}  // namespace attn::callbacks
