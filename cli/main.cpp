// The attn command-line tool: train, evaluate, predict and summarise models.
// Thin on purpose: it parses flags (CLI11) and calls the library; anything worth
// testing lives in the library. Errors print one line naming the file or flag and
// exit non-zero; output files are written to a temporary name and renamed.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <thread>

#include "attn/attn.hpp"
#include "attn/io.hpp"
#include "attn/reference_model.hpp"
#include "attn/system.hpp"

namespace {

// CLI11's PositiveNumber lets "nan" and "inf" through; a learning rate must also fit a float.
const CLI::Validator kPositiveFiniteFloat(
    [](std::string& text) -> std::string {
      char* end = nullptr;
      const double v = std::strtod(text.c_str(), &end);
      if (text.empty() || *end != '\0' || !(v > 0.0) || !std::isfinite(static_cast<float>(v)))
        return "must be a positive finite number, got " + text;
      return {};
    },
    "POSITIVE");

// A whole-number flag at least `least` (0 or 1). CLI11's PositiveNumber and NonNegativeNumber
// speak of ranges of doubles ("Value 0 not in range 0.000000 to 1797693...") and let "-1"
// through to an unsigned flag as 2^64 - 1.
CLI::Validator whole_number_at_least(int least) {
  const std::string what = least == 0 ? "a whole number >= 0" : "a whole number >= " + std::to_string(least);
  return CLI::Validator(
      [least, what](std::string& text) -> std::string {
        uint64_t v = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
        if (text.empty() || ec == std::errc::invalid_argument || end != text.data() + text.size())
          return "must be " + what + ", got '" + text + "'";
        if (ec == std::errc::result_out_of_range) return "must be " + what + " that fits 64 bits, got " + text;
        if (v < static_cast<uint64_t>(least)) return "must be " + what + ", got " + text;
        return {};
      },
      least == 0 ? "NONNEGATIVE" : "POSITIVE");
}
// An empty name would otherwise read as "flag not given" (--out '' printed to stdout).
const CLI::Validator kNonEmpty([](std::string& text) { return text.empty() ? std::string("must not be empty") : ""; },
                               "PATH");
const CLI::Validator kPositive = whole_number_at_least(1);
const CLI::Validator kNonNegative = whole_number_at_least(0);

using namespace attn;

struct DataFlags {
  std::string dir;     // --data: MNIST images (IDX files or mnist.npz), scaled to 0..1
  std::string arrays;  // --arrays: a NumPy .npz of x_train, y_train, x_test, y_test, used as stored
  int64_t limit_train = 0;
  int64_t limit_test = 0;
};

// Pixels / 255, reshaped to the model's input shape (784x1 sequences for the reference model),
// in the images' own storage: callers hand over loaded images they do not read again. A scaled
// copy of the training set would be another 188 MB of fresh pages, and on these virtual machines
// touching a page for the first time costs more than the scaling itself.
Tensor prepare_images(Tensor images, int64_t limit, const Shape& input_shape, const std::string& what) {
  int64_t n = images.dim(0);
  if (limit > 0) n = std::min(n, limit);
  if (shape_size(input_shape) != images.size() / images.dim(0))
    throw std::invalid_argument(what + ": images have " + std::to_string(images.size() / images.dim(0)) +
                                " pixels but the model input " + shape_to_string(input_shape) + " needs " +
                                std::to_string(shape_size(input_shape)));
  Shape shape = input_shape;
  shape.insert(shape.begin(), n);
  Tensor x = images.rows(0, n).reshaped(shape);
  for (int64_t i = 0; i < x.size(); ++i) x[i] = x[i] / 255.0f;
  return x;
}

Tensor limit_rows(const Tensor& t, int64_t limit) {
  return limit > 0 && limit < t.dim(0) ? t.rows(0, limit) : t;
}

std::string history_json(const History& h) {
  nlohmann::json epochs = nlohmann::json::array();
  for (size_t i = 0; i < h.epoch.size(); ++i) {
    nlohmann::json e = {{"epoch", h.epoch[i] + 1}, {"seconds", h.seconds[i]}};
    for (const auto& [k, v] : h.history) e[k] = v[i];
    epochs.push_back(e);
  }
  return nlohmann::json{{"epochs", epochs}, {"stopped_early", h.stopped_early}}.dump(2) + "\n";
}

void print_banner(int threads, uint64_t seed) {
  std::printf("attn %s | threads %d | SIMD %s | seed %llu\n", attn::version().c_str(), threads,
              attn::simd_target().c_str(), static_cast<unsigned long long>(seed));
  std::fflush(stdout);
}

// Where an output goes, checked before any work so that a long run is not lost to a typo: its
// folder exists, it is not a folder, and it is not one of the command's other files (`others`:
// flag and path), which it would overwrite.
void check_writable(const std::string& path, const char* flag,
                    const std::vector<std::pair<const char*, std::string>>& others = {}) {
  if (path.empty()) return;
  namespace fs = std::filesystem;
  fs::path parent = fs::path(path).parent_path();
  if (parent.empty()) parent = ".";
  std::error_code ec;
  if (!fs::is_directory(parent, ec))
    throw std::runtime_error(std::string(flag) + " " + path + ": directory " + parent.string() + " does not exist");
  if (fs::is_directory(path, ec)) throw std::runtime_error(std::string(flag) + " " + path + ": is a directory");
  const bool exists = fs::exists(path, ec);
  if (exists && !fs::is_regular_file(path, ec)) return;  // a device (/dev/null) may take several outputs
  for (const auto& [other_flag, other] : others) {
    if (other.empty()) continue;
    const bool same = exists && fs::exists(other, ec)
                          ? fs::equivalent(path, other, ec)
                          : fs::weakly_canonical(path, ec) == fs::weakly_canonical(other, ec);
    if (same) throw std::runtime_error(std::string(flag) + " " + path + ": is also the " + other_flag + " file");
  }
}

std::string class_scores_csv(const Tensor& out, int64_t first_index) {
  const int64_t width = out.size() / out.dim(0);
  std::string csv;
  char buf[32];
  for (int64_t i = 0; i < out.dim(0); ++i) {
    const float* row = out.data() + i * width;
    int64_t best = 0;
    for (int64_t j = 1; j < width; ++j)
      if (row[j] > row[best]) best = j;
    csv += std::to_string(first_index + i) + "," + std::to_string(best);
    for (int64_t j = 0; j < width; ++j) {
      std::snprintf(buf, sizeof buf, ",%.6g", row[j]);
      csv += buf;
    }
    csv += "\n";
  }
  return csv;
}

// Class ids as the model's loss wants them: one-hot rows for a non-sparse cross-entropy (Keras
// files compiled with categorical_crossentropy), else unchanged; each checked against the
// model's outputs, with `source` naming the data in errors.
Tensor labels_for(const Model& model, const Tensor& ids, int64_t limit, const std::string& source) {
  Tensor y = limit_rows(ids, limit);
  const int64_t width = model.outputs().at(0)->shape.empty() ? 1 : model.outputs().at(0)->shape.back();
  if (width > 1)
    for (int64_t i = 0; i < y.dim(0); ++i)
      if (!(y[i] >= 0.0f && y[i] < static_cast<float>(width)))
        throw std::runtime_error(source + ": label " + std::to_string(static_cast<int64_t>(y[i])) + " of sample " +
                                 std::to_string(i) + " does not fit the model's " + std::to_string(width) + " outputs");
  if (!model.loss() || model.loss()->sparse_labels() || width <= 1) return y;
  Tensor one_hot({y.dim(0), width});
  for (int64_t i = 0; i < y.dim(0); ++i) one_hot[i * width + static_cast<int64_t>(y[i])] = 1.0f;
  return one_hot;
}

std::string data_dir(const DataFlags& flags) { return flags.dir.empty() ? data::default_mnist_dir() : flags.dir; }

// The data set of --data, else of ATTN_DATA_DIR (named in errors: it is not on the command line),
// else the set-up's cache.
data::Mnist load_data(const DataFlags& flags, data::Splits splits) {
  const char* env = std::getenv("ATTN_DATA_DIR");
  try {
    return data::load_mnist(data_dir(flags), splits);
  } catch (const data::DataError& e) {
    if (flags.dir.empty() && env && *env) throw data::DataError(std::string(e.what()) + " (from ATTN_DATA_DIR)");
    throw;
  }
}

// One split's samples as the model takes them. MNIST: images / 255 in the model's input shape,
// class ids as its loss wants them. --arrays: x_<split> and y_<split> as stored (fit, evaluate
// and predict check their shapes and values against the model), a rank-1 y of class ids made
// one-hot for a categorical cross-entropy as for MNIST.
struct Samples {
  Tensor x, y;  // y empty when not asked for
};
struct SplitData {
  Samples train, test;
};
// Which splits a verb reads; test_labels false reads only x_test (predict, attention).
struct Wanted {
  bool train = false;
  bool test = true;
  bool test_labels = true;
};

Samples array_samples(std::map<std::string, Tensor>& arrays, const Model& model, const std::string& split,
                      int64_t limit, const DataFlags& flags) {
  Samples s;
  s.x = limit_rows(arrays.at("x_" + split), limit);
  if (arrays.count("y_" + split)) {
    const Tensor& y = arrays.at("y_" + split);
    if (y.rank() < 1 || y.dim(0) != arrays.at("x_" + split).dim(0))
      throw std::runtime_error(flags.arrays + ": x_" + split + " holds " + std::to_string(arrays.at("x_" + split).dim(0)) +
                               " samples but y_" + split + " has shape " + shape_to_string(y.shape()));
    // Class ids for a cross-entropy; anything else (regression targets) goes to fit's own checks.
    const bool class_ids = y.rank() == 1 && (!model.loss() || model.loss()->is_crossentropy());
    s.y = class_ids ? labels_for(model, y, limit, flags.arrays + " (y_" + split + ")") : limit_rows(y, limit);
  }
  return s;
}

// What a verb reads, before the model it is for is known: read first, so that a bad data file
// is reported before anything about the model (and before a long model load).
struct LoadedData {
  data::Mnist mnist;
  std::map<std::string, Tensor> arrays;
};

LoadedData read_data(const DataFlags& flags, Wanted wanted) {
  LoadedData d;
  if (flags.arrays.empty()) {
    d.mnist = load_data(flags, wanted.train ? data::Splits::kBoth : data::Splits::kTestOnly);
    return d;
  }
  std::vector<std::string> names;
  if (wanted.train) names = {"x_train", "y_train"};
  if (wanted.test) names.push_back("x_test");
  if (wanted.test && wanted.test_labels) names.push_back("y_test");
  d.arrays = data::load_npz_arrays(flags.arrays, names);
  return d;
}

// The samples for `model`; `loaded` is consumed (the training images are scaled in place).
SplitData samples_for(const Model& model, LoadedData& loaded, const DataFlags& flags, Wanted wanted) {
  SplitData d;
  if (!flags.arrays.empty()) {
    if (wanted.train) d.train = array_samples(loaded.arrays, model, "train", flags.limit_train, flags);
    if (wanted.test) d.test = array_samples(loaded.arrays, model, "test", flags.limit_test, flags);
    return d;
  }
  data::Mnist& mnist = loaded.mnist;
  const Shape& input_shape = model.inputs().at(0)->shape;
  if (wanted.train) {
    d.train.x = prepare_images(std::move(mnist.train.x), flags.limit_train, input_shape, "training images");
    d.train.y = labels_for(model, mnist.train.y, flags.limit_train, data_dir(flags) + " (training labels)");
  }
  if (wanted.test) {
    d.test.x = prepare_images(std::move(mnist.test.x), flags.limit_test, input_shape, "test images");
    if (wanted.test_labels)
      d.test.y = labels_for(model, mnist.test.y, flags.limit_test, data_dir(flags) + " (test labels)");
  }
  return d;
}

// Runs f, naming the --arrays file in the data errors fit, evaluate and predict throw (shapes,
// non-finite values, labels, token ids), which otherwise name only the array's role.
template <typename F>
auto naming_arrays(const DataFlags& flags, F f) {
  try {
    return f();
  } catch (const std::invalid_argument& e) {
    if (flags.arrays.empty()) throw;
    throw std::invalid_argument("--arrays " + flags.arrays + ": " + e.what());
  }
}

int resolve_threads(int threads) {
  return threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// A model file; a weights-only file (--save/--checkpoint NAME.weights.h5) is read into the
// reference model, the one model the CLI knows without a file.
Model load_model_file(const std::string& path) {
  if (!path.ends_with(".weights.h5")) return io::load_model(path);
  Model model = reference_model();
  try {
    io::load_weights(model, path);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string(e.what()) +
                             " (a .weights.h5 file is read into the reference model; save other models as .keras)");
  }
  return model;
}

Model load_or_reference(const std::string& path) {
  if (path.empty()) return reference_model();
  if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error(path + ": cannot open");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const std::exception& e) {
      throw std::runtime_error(path + ": not valid JSON: " + e.what());
    }
    return io::model_from_config(j, path);
  }
  return load_model_file(path);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"attn: build, train, run and inspect Keras-style attention networks"};
  app.require_subcommand(1);
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // a repeated flag: the last wins
  app.set_version_flag("--version", attn::version());

  // train
  auto* train = app.add_subcommand("train", "Train a model on MNIST (default: the reference model, as the tutorial)");
  DataFlags tdata;
  std::string model_path, resume_path, save_path, history_path, csv_path, monitor = "loss", logits = "tensorflow";
  std::string checkpoint_path, checkpoint_monitor = "val_loss";
  bool checkpoint_best = false;
  int epochs = 5, batch_size = 20, patience = 3, threads = 0, verbose = -1;
  double learning_rate = 0.001;
  uint64_t seed = 1337;
  bool no_validation = false;
  auto* train_data =
      train->add_option("--data", tdata.dir, "MNIST directory (IDX files or mnist.npz)")->check(kNonEmpty);
  train
      ->add_option("--arrays", tdata.arrays,
                   "a NumPy .npz of x_train, y_train, x_test, y_test for any model, used as stored (instead of MNIST)")
      ->check(CLI::ExistingFile)
      ->excludes(train_data);
  auto* model_flag = train->add_option("--model", model_path,
                                       "Keras model config (.json) or model file to train instead of the reference model")
                         ->check(CLI::ExistingFile);
  train->add_option("--resume", resume_path, "continue training a saved model (weights and optimizer state)")
      ->check(CLI::ExistingFile)
      ->excludes(model_flag);  // the resumed file is the model
  train->add_option("--epochs", epochs, "epochs")->check(kPositive);
  train->add_option("--batch-size", batch_size, "batch size")->check(kPositive);
  train->add_option("--learning-rate", learning_rate, "Adam learning rate")->check(kPositiveFiniteFloat);
  train->add_option("--monitor", monitor,
                    "EarlyStopping monitor: loss, val_loss, or a metric the model logs (accuracy, val_accuracy)")
      ->check(kNonEmpty);
  train->add_option("--patience", patience, "EarlyStopping patience")->check(kNonNegative);
  train->add_option("--seed", seed, "seed for weights, shuffling and dropout")->check(kNonNegative);
  train->add_option("--threads", threads, "worker threads (0 = all cores)")->check(kNonNegative);
  train->add_option("--limit-train", tdata.limit_train, "use the first N training samples")->check(kPositive);
  train->add_option("--limit-test", tdata.limit_test, "use the first N test samples")->check(kPositive);
  train->add_flag("--no-validation", no_validation, "skip validation on the test set");
  train->add_option("--verbose", verbose, "0 silent, 1 progress bar, 2 one line per epoch")
      ->check(CLI::IsMember({0, 1, 2}));
  train->add_option("--save", save_path,
                    "save the trained model (.keras; .h5 for Keras' legacy format; .weights.h5 for weights only)")
      ->check(kNonEmpty);
  train->add_option("--checkpoint", checkpoint_path,
                    "ModelCheckpoint: save the model (.keras, or .weights.h5 for weights only) every epoch; the "
                    "path may hold {epoch:02d}, {val_loss:.4f}, ... as in Keras")
      ->check(kNonEmpty);
  train->add_flag("--checkpoint-best", checkpoint_best, "save a checkpoint only when --checkpoint-monitor improves");
  train->add_option("--checkpoint-monitor", checkpoint_monitor,
                    "quantity --checkpoint-best watches (default val_loss; the names --monitor takes)")
      ->check(kNonEmpty);
  train->add_option("--history", history_path, "write the per-epoch history as JSON")->check(kNonEmpty);
  train->add_option("--csv", csv_path, "CSVLogger file")->check(kNonEmpty);
  train->add_option("--logits", logits,
                    "how a cross-entropy reads a sigmoid/softmax output: tensorflow (pre-activation logits, "
                    "Keras on TensorFlow) or outputs (outputs as logits, Keras on JAX/PyTorch)")
      ->check(CLI::IsMember({"tensorflow", "outputs"}));

  // evaluate
  auto* evaluate = app.add_subcommand("evaluate", "Loss and accuracy of a saved model on the MNIST test set");
  DataFlags edata;
  std::string eval_model;
  int eval_threads = 0;
  evaluate->add_option("--model", eval_model, "model file (.keras or .h5)")->required()->check(CLI::ExistingFile);
  auto* eval_data = evaluate->add_option("--data", edata.dir, "MNIST directory")->check(kNonEmpty);
  evaluate->add_option("--arrays", edata.arrays, "a NumPy .npz holding x_test and y_test, used as stored")
      ->check(CLI::ExistingFile)
      ->excludes(eval_data);
  evaluate->add_option("--limit-test", edata.limit_test, "use the first N test samples")->check(kPositive);
  evaluate->add_option("--threads", eval_threads, "worker threads (0 = all cores)")->check(kNonNegative);

  // predict
  auto* predict = app.add_subcommand("predict", "Class and scores per sample of the MNIST test set");
  DataFlags pdata;
  std::string pred_model, pred_out;
  std::string pred_image;
  predict->add_option("--model", pred_model, "model file (.keras or .h5)")->required()->check(CLI::ExistingFile);
  auto* pred_data = predict->add_option("--data", pdata.dir, "MNIST directory")->check(kNonEmpty);
  auto* pred_limit =
      predict->add_option("--limit-test", pdata.limit_test, "use the first N test samples")->check(kPositive);
  auto* pred_arrays = predict->add_option("--arrays", pdata.arrays, "a NumPy .npz holding x_test, used as stored")
                          ->check(CLI::ExistingFile)
                          ->excludes(pred_data);
  predict
      ->add_option("--image", pred_image,
                   "one PNG or PGM image of a digit instead of the test set (resized to 28x28; "
                   "dark ink on light paper is inverted)")
      ->check(kNonEmpty)
      ->check(CLI::ExistingFile)
      ->excludes(pred_data)
      ->excludes(pred_arrays)
      ->excludes(pred_limit);  // they choose test images, which --image replaces
  predict
      ->add_option("--out", pred_out,
                   "write index,class,score_0..score_9 as CSV (default: stdout); a name ending in .npy gets "
                   "the outputs as a NumPy array of their full shape")
      ->check(kNonEmpty);

  // summary
  auto* summary = app.add_subcommand("summary", "Print a model's Keras summary table");
  std::string summary_model;
  summary->add_option("--model", summary_model, "model file or config (.keras, .h5, .json); default: the reference model")
      ->check(CLI::ExistingFile);

  // plot
  auto* plot = app.add_subcommand("plot", "Draw training curves (SVG) from a history written by train --history");
  std::string plot_history, plot_out;
  plot->add_option("--history", plot_history, "history JSON (attn train --history)")
      ->check(kNonEmpty)->required()->check(CLI::ExistingFile);
  plot->add_option("--out", plot_out, "SVG file to write")->check(kNonEmpty)->required();

  // attention
  auto* attention = app.add_subcommand("attention", "Draw the attention weights of one MNIST test image as a PNG");
  DataFlags adata;
  std::string att_model, att_layer, att_out;
  int64_t att_index = 0, att_query = -1;
  int att_head = -1;
  attention->add_option("--model", att_model, "model file (.keras or .h5)")->required()->check(CLI::ExistingFile);
  auto* att_data = attention->add_option("--data", adata.dir, "MNIST directory")->check(kNonEmpty);
  attention->add_option("--arrays", adata.arrays, "a NumPy .npz holding x_test (and y_test), used as stored")
      ->check(CLI::ExistingFile)
      ->excludes(att_data);
  attention->add_option("--index", att_index, "test image to draw")->check(kNonNegative);
  attention->add_option("--query", att_query, "query position (pixel row * 28 + column; default: the brightest pixel)")
      ->check(kNonNegative);
  attention->add_option("--layer", att_layer,
                        "Attention or MultiHeadAttention layer name, anywhere in the model (default: the first)")
      ->check(kNonEmpty);
  attention->add_option("--head", att_head, "MultiHeadAttention head to draw (default: the mean of the heads)")
      ->check(kNonNegative);
  attention->add_option("--out", att_out, "PNG file to write")->check(kNonEmpty)->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line, like every other error; CLI11's own format adds a second ("Run with --help").
    std::fprintf(stderr, "attn: error: %s (attn --help lists the flags)\n", e.what());
    return 1;
  }

  try {
    if (*train) {
      const int n_threads = resolve_threads(threads);
      check_writable(save_path, "--save");
      // Refused before training, not after it: a finished run must not be lost to its file name.
      if (!save_path.empty() && !save_path.ends_with(".keras") && !save_path.ends_with(".h5") &&
          !save_path.ends_with(".hdf5"))
        throw std::runtime_error("--save " + save_path +
                                 ": the file name must end in .keras (or .h5 / .hdf5, or .weights.h5 for weights only)");
      check_writable(history_path, "--history",
                     {{"--model", model_path}, {"--resume", resume_path}, {"--save", save_path}, {"--csv", csv_path}});
      check_writable(csv_path, "--csv", {{"--model", model_path}, {"--resume", resume_path}, {"--save", save_path}});
      if (no_validation && monitor.rfind("val_", 0) == 0)
        throw std::runtime_error("--monitor " + monitor + ": there is no validation (--no-validation)");
      if (verbose < 0) verbose = 1;
      std::shared_ptr<callbacks::Callback> checkpoint;
      if (!checkpoint_path.empty()) {
        if (no_validation && checkpoint_best && checkpoint_monitor.rfind("val_", 0) == 0)
          throw std::runtime_error("--checkpoint-monitor " + checkpoint_monitor + ": there is no validation (--no-validation)");
        try {
          checkpoint = callbacks::ModelCheckpoint(
              checkpoint_path, {.monitor = checkpoint_monitor, .verbose = verbose > 0 ? 1 : 0,
                                .save_best_only = checkpoint_best,
                                .save_weights_only = checkpoint_path.ends_with(".weights.h5")});
          checkpoint->on_train_begin({});  // its folder is made, or fails, before the data loads
        } catch (const std::exception& e) {
          throw std::runtime_error("--checkpoint " + checkpoint_path + ": " + e.what());
        }
      } else if (checkpoint_best || train->count("--checkpoint-monitor")) {
        throw std::runtime_error("--checkpoint-best and --checkpoint-monitor need --checkpoint PATH");
      }
      // What the epochs will log (the model's metrics under the names it was compiled with, as
      // Keras logs them): the monitors and the checkpoint path's fields must be among them,
      // found out before training (before anything loads for the reference model, which logs
      // accuracy; a model file's metrics are known once it is read).
      const auto check_logged_names = [&](const std::vector<std::string>& metrics) {
        callbacks::Logs logged = {{"loss", 0.0}};
        for (const std::string& m : metrics) logged[m] = 0.0;
        if (!no_validation) {
          const callbacks::Logs train_keys = logged;
          for (const auto& [key, value] : train_keys) logged["val_" + key] = value;
        }
        const auto check_monitor = [&](const std::string& flag, const std::string& name) {
          if (logged.count(name)) return;
          std::string known;
          for (const auto& [key, value] : logged) known += (known.empty() ? "" : ", ") + key;
          throw std::runtime_error(flag + " " + name + ": the model logs " + known);
        };
        check_monitor("--monitor", monitor);
        if (!checkpoint) return;
        if (checkpoint_best) check_monitor("--checkpoint-monitor", checkpoint_monitor);
        try {
          static_cast<const callbacks::ModelCheckpointCallback&>(*checkpoint).file_path(0, -1, logged);
        } catch (const std::exception& e) {
          throw std::runtime_error("--checkpoint " + checkpoint_path + ": " + e.what());
        }
      };
      if (model_path.empty() && resume_path.empty()) check_logged_names({"accuracy"});
      print_banner(n_threads, seed);
      attn::set_random_seed(seed);
      const Wanted wanted = {.train = true, .test = !no_validation};
      LoadedData loaded = read_data(tdata, wanted);
      Model model = resume_path.empty() ? load_or_reference(model_path) : io::load_model(resume_path);
      model.set_threads(n_threads);
      model.set_seed(seed);
      // A model file keeps the compile config it was saved with (a .keras file from Keras
      // brings its optimizer and loss); configs and the reference model get the tutorial's.
      if (!model.compiled()) {
        CompileOptions copts;
        copts.logits_semantics = logits == "outputs" ? LogitsSemantics::kOutputs : LogitsSemantics::kTensorFlow;
        model.compile(optimizers::Adam({.learning_rate = static_cast<float>(learning_rate)}),
                      losses::SparseCategoricalCrossentropy({.from_logits = true}), {"accuracy"}, copts);
      } else if (train->count("--learning-rate")) {
        model.optimizer()->set_learning_rate(static_cast<float>(learning_rate));
      }
      if (!model_path.empty() || !resume_path.empty()) check_logged_names(model.metric_names());
      SplitData data = samples_for(model, loaded, tdata, wanted);
      const Tensor& x_train = data.train.x;
      FitOptions fit;
      if (!resume_path.empty()) {
        // --epochs counts from the start of the first run, as Keras' initial_epoch does; the
        // saved optimizer step count says how many epochs of this size were done.
        const int64_t steps = (x_train.dim(0) + batch_size - 1) / batch_size;
        const int64_t done = model.optimizer() ? model.optimizer()->iterations() / steps : 0;
        if (done >= epochs)
          throw std::runtime_error("--resume " + resume_path + ": already trained " + std::to_string(done) +
                                   " epochs of " + std::to_string(steps) + " steps; pass --epochs above " +
                                   std::to_string(done));
        if (model.optimizer() && model.optimizer()->iterations() % steps != 0)
          std::fprintf(stderr,
                       "attn: warning: --resume %s: %lld steps done are not a whole number of epochs of %lld steps "
                       "(another --batch-size or --limit-train than the first run?); continuing after epoch %lld\n",
                       resume_path.c_str(), static_cast<long long>(model.optimizer()->iterations()),
                       static_cast<long long>(steps), static_cast<long long>(done));
        fit.initial_epoch = static_cast<int>(done);
        if (verbose) std::printf("resuming %s after epoch %lld\n", resume_path.c_str(), static_cast<long long>(done));
      }
      fit.epochs = epochs;
      fit.batch_size = batch_size;
      fit.verbose = verbose;
      if (!no_validation) fit.validation_data = Dataset{std::move(data.test.x), std::move(data.test.y)};
      fit.callbacks.push_back(callbacks::EarlyStopping({.monitor = monitor, .patience = patience, .verbose = 1}));
      if (!csv_path.empty()) fit.callbacks.push_back(callbacks::CSVLogger(csv_path));
      if (checkpoint) fit.callbacks.push_back(checkpoint);
      fit.callbacks.push_back(callbacks::TerminateOnNaN());
      History history = naming_arrays(tdata, [&] { return model.fit(x_train, data.train.y, fit); });
      if (!history_path.empty()) io::write_text_atomically(history_path, history_json(history));
      if (!save_path.empty()) {
        if (save_path.ends_with(".weights.h5"))
          io::save_weights(model, save_path);  // as Keras' save_weights names its files
        else
          io::save_model(model, save_path);
        if (verbose) std::printf("saved %s\n", save_path.c_str());
      }
    } else if (*evaluate) {
      Model model = load_model_file(eval_model);
      model.set_threads(resolve_threads(eval_threads));
      if (!model.compiled())
        model.compile(optimizers::Adam(), losses::SparseCategoricalCrossentropy({.from_logits = true}), {"accuracy"},
                      {.warn = false});
      LoadedData loaded = read_data(edata, {});
      SplitData data = samples_for(model, loaded, edata, {});
      auto logs = naming_arrays(edata, [&] { return model.evaluate(data.test.x, data.test.y); });
      std::printf("loss: %.4f", logs["loss"]);
      for (const auto& [key, value] : logs)  // the model's metrics, under the names it was compiled with
        if (key != "loss") std::printf(" - %s: %.4f", key.c_str(), value);
      std::printf("\n");
    } else if (*predict) {
      check_writable(pred_out, "--out", {{"--model", pred_model}, {"--image", pred_image}});
      Model model = load_model_file(pred_model);
      Tensor x;
      if (!pred_image.empty()) {
        Tensor img = data::load_grey_image(pred_image);
        x = prepare_images(img.reshaped({1, 28, 28}), 0, model.inputs().at(0)->shape, pred_image);
      } else {
        LoadedData loaded = read_data(pdata, {.test_labels = false});
        x = std::move(samples_for(model, loaded, pdata, {.test_labels = false}).test.x);
      }
      Tensor out = naming_arrays(pdata, [&] { return model.predict(x); });
      if (pred_out.ends_with(".npy")) {
        data::save_npy(pred_out, out);
        std::printf("wrote %s: outputs of shape %s\n", pred_out.c_str(), shape_to_string(out.shape()).c_str());
      } else {
        const int64_t width = out.size() / out.dim(0);
        std::string csv = "index,class";
        for (int64_t j = 0; j < width; ++j) csv += ",score_" + std::to_string(j);
        csv += "\n" + class_scores_csv(out, 0);
        if (pred_out.empty())
          std::fputs(csv.c_str(), stdout);
        else
          io::write_text_atomically(pred_out, csv);
      }
    } else if (*plot) {
      check_writable(plot_out, "--out", {{"--history", plot_history}});
      std::ifstream in(plot_history, std::ios::binary);
      const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      int first_epoch = 1;  // a resumed run's history starts later
      const auto history = plots::history_from_json(text, plot_history, &first_epoch);
      io::write_text_atomically(plot_out, plots::training_curves_svg(history, first_epoch));
      std::printf("wrote %s\n", plot_out.c_str());
    } else if (*attention) {
      check_writable(att_out, "--out", {{"--model", att_model}});
      Model model = load_model_file(att_model);
      // An .npz without y_test still has samples to draw; their labels are only printed.
      const std::vector<std::string> held = adata.arrays.empty() ? std::vector<std::string>{}
                                                                 : data::npz_array_names(adata.arrays);
      const bool labelled = adata.arrays.empty() || std::count(held.begin(), held.end(), "y_test");
      // Only the samples up to the one drawn are scaled and checked (the 10,000 test images are
      // read either way; a shorter set still reports its own size below).
      DataFlags up_to_index = adata;
      up_to_index.limit_test = att_index + 1;
      LoadedData loaded = read_data(up_to_index, {.test_labels = labelled});
      const SplitData data = samples_for(model, loaded, up_to_index, {.test_labels = labelled});
      const int64_t count = data.test.x.rank() > 0 ? data.test.x.dim(0) : 0;
      if (att_index >= count)
        throw std::runtime_error("--index " + std::to_string(att_index) + ": the test set has " +
                                 std::to_string(count) + (adata.arrays.empty() ? " images" : " samples"));
      const Tensor x = data.test.x.rows(att_index, att_index + 1).clone();
      Tensor w;
      try {
        w = plots::attention_weights(model, x, att_layer, att_head);
      } catch (const std::invalid_argument& e) {
        throw std::runtime_error("--model " + att_model + (att_head >= 0 ? " --head " + std::to_string(att_head) : "") +
                                 ": " + e.what());
      }
      const int64_t tq = w.dim(0), tv = w.dim(1), pixels = x.size();
      const auto side = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(pixels))));
      // A sample is drawn as a square picture when it has a square number of values and, from
      // --arrays, more than one axis (a flat one is a sequence of tokens, not a picture).
      const bool square_image = side * side == pixels && (adata.arrays.empty() || x.rank() > 2);
      // MNIST's images are already 0..1; arrays are drawn from their own smallest to largest value.
      Tensor picture = x.clone();
      if (!adata.arrays.empty() && pixels > 0) {
        const auto [lo, hi] = std::minmax_element(picture.data(), picture.data() + pixels);
        const float low = *lo, range = *hi - *lo;
        for (int64_t i = 0; i < pixels; ++i) picture[i] = range > 0 ? (picture[i] - low) / range : 0.0f;
      }
      std::string what = (adata.arrays.empty() ? "test image " : "x_test sample ") + std::to_string(att_index);
      if (data.test.y.rank() == 1) {
        what += " (label " + std::to_string(static_cast<int64_t>(data.test.y[att_index])) + ")";
      } else if (data.test.y.rank() == 2) {  // one-hot rows (a categorical cross-entropy's labels)
        const float* row = data.test.y.data() + att_index * data.test.y.dim(1);
        what += " (label " + std::to_string(std::max_element(row, row + data.test.y.dim(1)) - row) + ")";
      }
      if (square_image && tq == pixels && tv == pixels) {  // self-attention over the image's pixels
        if (att_query < 0) att_query = std::max_element(x.data(), x.data() + pixels) - x.data();
        if (att_query >= pixels)
          throw std::runtime_error("--query " + std::to_string(att_query) + ": positions are 0.." +
                                   std::to_string(pixels - 1));
        plots::write_png(plots::attention_map_image(picture.data(), w.data(), side, att_query), att_out);
        std::printf("wrote %s: %s, query pixel %lld (row %lld, column %lld)\n", att_out.c_str(), what.c_str(),
                    static_cast<long long>(att_query), static_cast<long long>(att_query / side),
                    static_cast<long long>(att_query % side));
      } else {  // positions made by earlier layers: the whole matrix
        if (att_query >= 0)
          throw std::runtime_error("--query " + std::to_string(att_query) + ": the layer attends over " +
                                   std::to_string(tq) + " x " + std::to_string(tv) +
                                   " positions that are not the image's pixels; leave --query out to draw its whole weight matrix");
        plots::write_png(plots::attention_matrix_image(picture.data(), square_image ? side : 0, w.data(), tq, tv),
                         att_out);
        std::printf("wrote %s: %s, attention weights over %lld queries x %lld keys%s\n", att_out.c_str(), what.c_str(),
                    static_cast<long long>(tq), static_cast<long long>(tv), tq * tv <= 256 ? ":" : "");
        if (tq * tv <= 256)  // small enough to read as numbers too
          for (int64_t i = 0; i < tq; ++i) {
            for (int64_t j = 0; j < tv; ++j) std::printf("%s%.4f", j ? " " : "  ", static_cast<double>(w[i * tv + j]));
            std::printf("\n");
          }
      }
    } else if (*summary) {
      Model model = load_or_reference(summary_model);
      model.summary(std::cout);
    }
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "attn: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    // One line, whatever the message quotes (a parser may quote raw bytes of a damaged file).
    std::string message = e.what();
    for (char& c : message)
      if ((c >= 0 && c < ' ') || c == '\x7f') c = '?';
    std::fprintf(stderr, "attn: error: %s\n", message.c_str());
    return 1;
  }
  // Output that could not be written (a full disk, a closed pipe) is an error, not a success.
  std::cout.flush();
  if (std::fflush(stdout) != 0 || std::ferror(stdout) || !std::cout) {
    std::fprintf(stderr, "attn: error: standard output: write failed (%s)\n", std::strerror(errno));
    return 1;
  }
  return 0;
}
