// ModelCheckpoint (keras/src/callbacks/model_checkpoint.py, keras-semantics.md section 9).
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "attn/callbacks.hpp"
#include "attn/io.hpp"
#include "attn/model.hpp"
#include "training/monitor.hpp"

namespace attn::callbacks {
namespace {

// One replacement field's value under a Python format spec ([0][width][.precision][type], the
// part of the mini-language file names use). Integers (epoch, batch) take d as well as the float
// types; floats without a type print as Python's repr.
std::string format_value(double value, bool is_int, const std::string& spec, const std::string& field) {
  size_t i = 0;
  bool zero = false;
  if (i < spec.size() && spec[i] == '0') zero = true, ++i;
  int width = 0, precision = -1;
  while (i < spec.size() && std::isdigit(static_cast<unsigned char>(spec[i])))
    width = std::min(width * 10 + (spec[i++] - '0'), 100000);  // capped: no overflow
  if (i < spec.size() && spec[i] == '.') {
    ++i;
    precision = 0;
    if (i == spec.size() || !std::isdigit(static_cast<unsigned char>(spec[i])))
      throw std::invalid_argument("format spec '" + spec + "' of field '" + field + "' has no precision after '.'");
    while (i < spec.size() && std::isdigit(static_cast<unsigned char>(spec[i])))
      precision = std::min(precision * 10 + (spec[i++] - '0'), 100000);
  }
  char type = 0;
  if (i < spec.size()) type = spec[i++];
  if (i != spec.size() || (type != 0 && std::string("dfFeEgG%").find(type) == std::string::npos))
    throw std::invalid_argument("format spec '" + spec + "' of field '" + field +
                                "' is not supported (use [0][width][.precision][d|f|e|g|%])");
  // A file name is at most 255 bytes; Python would build the string and then fail to open it.
  if (width > 255 || precision > 255)
    throw std::invalid_argument("format spec '" + spec + "' of field '" + field +
                                "' asks for more than 255 characters");
  std::string text;
  char buf[512];
  if (type == 'd' || (type == 0 && is_int)) {
    if (!is_int) throw std::invalid_argument("field '" + field + "' is a float; format code 'd' needs an integer");
    if (precision >= 0) throw std::invalid_argument("field '" + field + "': precision is not allowed with 'd'");
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(value));
    text = buf;
  } else if (type == 0) {
    text = float_repr(value);
  } else {
    const double v = type == '%' ? value * 100.0 : value;
    const char conv = type == '%' ? 'f' : type;
    const std::string fmt = std::string("%.") + std::to_string(precision < 0 ? 6 : precision) + conv;
    std::snprintf(buf, sizeof buf, fmt.c_str(), v);
    text = buf;
    if (type == '%') text += '%';
  }
  if (static_cast<int>(text.size()) < width) {
    const size_t pad = static_cast<size_t>(width) - text.size();
    const size_t at = zero && !text.empty() && (text[0] == '-' || text[0] == '+') ? 1 : 0;  // zeros after the sign
    text.insert(at, pad, zero ? '0' : ' ');
  }
  return text;
}

}  // namespace

ModelCheckpointCallback::ModelCheckpointCallback(std::string filepath, ModelCheckpointOptions options)
    : filepath_(std::move(filepath)), options_(std::move(options)) {
  if (options_.save_freq < 0)
    throw std::invalid_argument("ModelCheckpoint: save_freq must be 0 (every epoch) or a number of batches");
  if (options_.save_weights_only) {
    if (!filepath_.ends_with(".weights.h5"))
      throw std::invalid_argument("ModelCheckpoint: with save_weights_only the path must end in .weights.h5, got '" +
                                  filepath_ + "'");
  } else if (!filepath_.ends_with(".keras") && !filepath_.ends_with(".h5")) {
    // .h5: Keras' legacy format, as model.save writes it.
    throw std::invalid_argument("ModelCheckpoint: the path must end in .keras (or .h5), got '" + filepath_ + "'");
  }
  maximize_ = monitor_maximizes(options_.monitor, options_.mode, "ModelCheckpoint");
  // Keras starts from initial_value_threshold, else from +-inf (so the first value improves),
  // once: the best value carries over to later fit calls with the same callback (a resumed run
  // must not overwrite the best file with a worse model).
  best_ = options_.initial_value_threshold.value_or(maximize_ ? -INFINITY : INFINITY);
}

namespace {
void make_folder(const std::filesystem::path& folder) {
  std::error_code ec;
  std::filesystem::create_directories(folder, ec);
  if (ec)
    throw std::runtime_error("ModelCheckpoint: cannot create the folder " + folder.string() + " (" + ec.message() +
                             ")");
}
}  // namespace

void ModelCheckpointCallback::on_train_begin(const Logs&) {
  // The template's syntax and format specs are checked now, not after the first epoch's work;
  // which names exist is known only then.
  format_path(0, options_.save_freq == 0 ? -1 : 0, {}, true);
  // A folder that cannot be made fails now too. The folder part with no {field} is made (as
  // save would make it); one that varies with the epoch is made at each save.
  const std::filesystem::path fixed = std::filesystem::path(filepath_).parent_path();
  if (!fixed.empty() && fixed.string().find('{') == std::string::npos) make_folder(fixed);
}

void ModelCheckpointCallback::on_epoch_begin(int epoch, const Logs&) { current_epoch_ = epoch; }

void ModelCheckpointCallback::on_epoch_end(int epoch, Logs& logs) {
  if (options_.save_freq == 0) save(epoch, -1, logs);
}

void ModelCheckpointCallback::on_train_batch_end(int batch, const Logs& logs) {
  if (options_.save_freq == 0) return;
  // As Keras counts: a batch index that does not grow starts a new epoch.
  batches_since_save_ += batch <= last_batch_ ? batch + 1 : batch - last_batch_;
  last_batch_ = batch;
  if (batches_since_save_ < options_.save_freq) return;
  batches_since_save_ = 0;
  save(current_epoch_, batch, logs);
}

std::string ModelCheckpointCallback::file_path(int epoch, int batch, const Logs& logs) const {
  return format_path(epoch, batch, logs, false);
}

std::string ModelCheckpointCallback::format_path(int epoch, int batch, const Logs& logs, bool any_name) const {
  std::string out;
  const std::string& p = filepath_;
  for (size_t i = 0; i < p.size(); ++i) {
    if ((p[i] == '{' || p[i] == '}') && i + 1 < p.size() && p[i + 1] == p[i]) {  // {{ and }}
      out += p[i++];
      continue;
    }
    if (p[i] == '}') throw std::invalid_argument("ModelCheckpoint: path '" + p + "' has a single '}'");
    if (p[i] != '{') {
      out += p[i];
      continue;
    }
    const size_t close = p.find('}', i);
    if (close == std::string::npos) throw std::invalid_argument("ModelCheckpoint: path '" + p + "' has an unclosed '{'");
    const std::string field = p.substr(i + 1, close - i - 1);
    const size_t colon = field.find(':');
    const std::string name = field.substr(0, colon), spec = colon == std::string::npos ? "" : field.substr(colon + 1);
    double value = 0.0;
    bool is_int = false;
    if (auto it = logs.find(name); it != logs.end()) {
      value = it->second;
    } else if (name == "epoch" || (name == "batch" && batch >= 0)) {
      value = name == "epoch" ? epoch + 1 : batch + 1;
      is_int = true;
    } else if (any_name && name != "batch") {  // a name the epoch's logs may hold: formats as 0.0
    } else {
      std::string available = batch >= 0 ? "epoch, batch" : "epoch";
      for (const auto& [k, v] : logs) available += ", " + k;
      throw std::invalid_argument("ModelCheckpoint: failed to format the path '" + p + "': no value named '" + name +
                                  "' (available: " + available + ")");
    }
    try {
      out += format_value(value, is_int, spec, name);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("ModelCheckpoint: failed to format the path '" + p + "': " + e.what());
    }
    i = close;
  }
  return out;
}

void ModelCheckpointCallback::save(int epoch, int batch, const Logs& logs) {
  const std::string path = file_path(epoch, batch, logs);
  const bool verbose = options_.verbose > 0;
  if (options_.save_best_only) {
    const auto it = logs.find(options_.monitor);
    if (it == logs.end()) {
      std::fprintf(stderr, "attn: warning: ModelCheckpoint can save best model only with %s available.\n",
                   options_.monitor.c_str());
    } else {
      const double current = it->second;
      char best[64];
      std::snprintf(best, sizeof best, "%.5f", *best_);
      if (!(maximize_ ? current > *best_ : current < *best_)) {
        if (verbose) std::printf("\nEpoch %d: %s did not improve from %s\n", epoch + 1, options_.monitor.c_str(), best);
        return;
      }
      if (verbose)
        std::printf("\nEpoch %d: %s improved from %s to %.5f, saving model to %s\n", epoch + 1,
                    options_.monitor.c_str(), best, current, path.c_str());
      best_ = current;
    }
  } else if (verbose) {
    std::printf("\nEpoch %d: saving model to %s\n", epoch + 1, path.c_str());
  }
  if (model_ == nullptr) throw std::logic_error("ModelCheckpoint: the callback has no model (call set_model)");
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) make_folder(parent);
  if (options_.save_weights_only)
    io::save_weights(*model_, path);
  else
    io::save_model(*model_, path);
  if (verbose) std::printf("\nEpoch %d: finished saving model to %s\n", epoch + 1, path.c_str());
  std::fflush(stdout);
}

std::shared_ptr<Callback> ModelCheckpoint(std::string filepath, ModelCheckpointOptions options) {
  return std::make_shared<ModelCheckpointCallback>(std::move(filepath), std::move(options));
}

}  // namespace attn::callbacks
