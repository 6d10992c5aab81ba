// compile, fit, evaluate, predict and train_on_batch with Keras' semantics
// (keras-semantics.md sections 5-7): a new permutation each epoch, the last
// partial batch kept, batch-size-weighted running means, validation on the
// end-of-epoch weights, callbacks and History.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <optional>
#include <stdexcept>

#include "attn/model.hpp"
#include "attn/random.hpp"
#include "model/executor.hpp"
#include "training/progress.hpp"

namespace attn {

namespace {

bool is_accuracy_name(const std::string& m) {
  return m == "accuracy" || m == "acc" || m == "sparse_categorical_accuracy" || m == "categorical_accuracy" ||
         m == "binary_accuracy";
}

// Whether arrays of shape `x` (batch first) fit an input of per-sample shape `input`, as Keras'
// Functional._adjust_input_rank has it: the same shape, or one trailing axis of size 1 more or
// less ((n, 784) for an input of (784, 1), and the reverse). Compared in place: train_step
// allocates nothing.
bool fits_input(const Shape& x, const Shape& input) {
  const size_t rank = x.size() - 1, want = input.size();
  const auto same_prefix = [&](size_t count) {
    for (size_t k = 0; k < count; ++k)
      if (input[k] >= 0 && x[k + 1] != input[k]) return false;
    return true;
  };
  if (rank == want) return same_prefix(want);
  if (rank == want + 1) return x.back() == 1 && same_prefix(want);
  if (rank + 1 == want) return input.back() == 1 && same_prefix(rank);
  return false;
}

// Checks a data array against the model's expected per-sample shape and for NaN/inf.
// Layers that read a model input's values as indices (Layer::takes_model_input_only) check them.
void check_inputs(const std::vector<Tensor>& xs, const std::vector<Node>& inputs,
                  const std::vector<std::shared_ptr<CallSite>>& sites, const char* what) {
  if (xs.size() != inputs.size())
    throw std::invalid_argument(std::string(what) + ": the model has " + std::to_string(inputs.size()) +
                                " inputs but " + std::to_string(xs.size()) + " arrays were given");
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    if (x.rank() < 1) throw std::invalid_argument(std::string(what) + ": input array has no batch axis");
    // Keras' check_data_cardinality: every input array holds the same samples.
    if (x.dim(0) != xs[0].dim(0))
      throw std::invalid_argument(std::string(what) + ": input " + std::to_string(i) + " has " +
                                  std::to_string(x.dim(0)) + " samples but input 0 has " +
                                  std::to_string(xs[0].dim(0)));
    if (!fits_input(x.shape(), inputs[i]->shape))
      throw std::invalid_argument(std::string(what) + ": input " + std::to_string(i) + " has shape " +
                                  shape_to_string(x.shape()) + " but the model expects " +
                                  batch_shape_to_string(inputs[i]->shape));
    // A float is infinite or NaN exactly when its exponent bits are all ones: an integer test
    // the compiler vectorises, then a second pass finds the culprit. (A float sum of x * 0, NaN
    // exactly for those, is one serial chain of adds: 25 us for a batch of 20 images, 70 ms for
    // MNIST's training set.)
    const float* data = x.data();
    const int64_t size = x.size();
    uint32_t non_finite = 0;
    for (int64_t k = 0; k < size; ++k) {
      uint32_t bits;
      std::memcpy(&bits, data + k, sizeof bits);
      non_finite |= (bits & 0x7f800000u) == 0x7f800000u;
    }
    if (non_finite == 0) continue;
    for (int64_t k = 0; k < size; ++k)
      if (!std::isfinite(data[k]))
        throw std::invalid_argument(std::string(what) + ": input " + std::to_string(i) + " has a non-finite value (" +
                                    std::to_string(data[k]) + ") in sample " + std::to_string(k / (size / x.dim(0))));
  }
  for (const auto& site : sites) {
    if (!site->layer->takes_model_input_only()) continue;
    for (const Node& n : site->inputs)
      for (size_t i = 0; i < inputs.size(); ++i)
        if (n->site == inputs[i]->site && xs[i].dim(0) > 0)
          site->layer->check_input_values(xs[i].data(), xs[i].dim(0), xs[i].size() / xs[i].dim(0), what, i);
  }
}

// Labels for n samples of an output of `rows` rows of `width` (Executor::output_rows/width):
// sparse losses take one class id per row, the others the output's shape.
void check_labels(const Tensor& y, int64_t n, const losses::Loss& loss, const Executor& ex, const char* what) {
  const int64_t rows = ex.output_rows(), width = ex.output_width();
  if (y.rank() < 1 || y.dim(0) != n)
    throw std::invalid_argument(std::string(what) + ": " + std::to_string(n) + " samples but y has shape " +
                                shape_to_string(y.shape()));
  const int64_t per = y.size() / std::max<int64_t>(1, n);
  if (loss.sparse_labels()) {
    if (per != rows)
      throw std::invalid_argument(std::string(what) + ": " + loss.class_name() +
                                  (rows == 1 ? std::string(" expects one class id per sample")
                                             : " expects one class id per output row (" + std::to_string(rows) +
                                                   " per sample)") +
                                  ", y has shape " + shape_to_string(y.shape()));
    for (int64_t i = 0; i < y.size(); ++i) {
      float v = y[i];
      if (!(v >= 0 && v < static_cast<float>(width)) || v != std::floor(v))
        throw std::invalid_argument(std::string(what) + ": label " + callbacks::float_repr(v) + " of sample " +
                                    std::to_string(i / rows) + " is not a class id in [0, " + std::to_string(width) +
                                    ")");
    }
  } else {
    if (per != rows * width)
      throw std::invalid_argument(std::string(what) + ": y has " + std::to_string(per) +
                                  " values per sample but the model outputs " + std::to_string(rows * width));
    for (int64_t i = 0; i < y.size(); ++i)
      if (!std::isfinite(y[i])) throw std::invalid_argument(std::string(what) + ": y has a non-finite value");
  }
}

// The accuracy the compiled metric names ask for, as Keras' compile_utils.get_metric picks it:
// "accuracy" and "acc" by the shapes, the others as named. attn computes one accuracy per model:
// names that select different ones are refused, as are labels the named one cannot read.
metrics::AccuracyKind accuracy_for(const std::vector<std::string>& names, const Tensor& y, const Executor& ex,
                                   const Shape& output_shape, const char* what) {
  // Reused: train_on_batch calls this every step, and a step allocates nothing.
  thread_local Shape pred_shape;
  pred_shape.assign(1, y.dim(0));
  pred_shape.insert(pred_shape.end(), output_shape.begin(), output_shape.end());
  std::optional<metrics::AccuracyKind> kind;
  const std::string* first = nullptr;
  for (const std::string& name : names) {
    using metrics::AccuracyKind;
    const AccuracyKind k = name == "sparse_categorical_accuracy" ? AccuracyKind::kSparseCategorical
                           : name == "categorical_accuracy"      ? AccuracyKind::kCategorical
                           : name == "binary_accuracy"           ? AccuracyKind::kBinary
                                                                 : metrics::resolve_accuracy(y.shape(), pred_shape);
    if (kind && *kind != k)
      throw std::invalid_argument(std::string(what) + ": metrics '" + *first + "' and '" + name +
                                  "' are different accuracies here; attn computes one per model");
    if (!kind) first = &name;
    kind = k;
  }
  const int64_t per = y.size() / std::max<int64_t>(1, y.dim(0));
  const bool sparse = *kind == metrics::AccuracyKind::kSparseCategorical;
  const int64_t wanted = sparse ? ex.output_rows() : ex.output_rows() * ex.output_width();
  if (per != wanted)
    throw std::invalid_argument(
        std::string(what) + ": metric '" + *first + "' needs " +
        (sparse ? "one class id per sample" + std::string(ex.output_rows() > 1 ? " and row" : "")
                : "labels of the output's shape " + shape_to_string(pred_shape)) +
        ", y has shape " + shape_to_string(y.shape()));
  return *kind;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

void Model::compile(std::shared_ptr<optimizers::Optimizer> optimizer, std::shared_ptr<losses::Loss> loss,
                    std::vector<std::string> metrics, CompileOptions options) {
  check_not_moved_from("compile");
  if (!optimizer) throw std::invalid_argument("compile: no optimizer");
  if (!loss) throw std::invalid_argument("compile: no loss");
  for (const auto& m : metrics)
    if (!is_accuracy_name(m))
      throw std::invalid_argument("compile: unsupported metric '" + m +
                                  "' (supported: accuracy, acc, sparse_categorical_accuracy, "
                                  "categorical_accuracy, binary_accuracy)");
  optimizer_ = std::move(optimizer);
  loss_ = std::move(loss);
  metric_names_ = std::move(metrics);
  // Keras logs each metric under the name it was given ("acc" stays "acc").
  metric_keys_.clear();
  for (const auto& m : metric_names_)
    if (std::find(metric_keys_.begin(), metric_keys_.end(), m) == metric_keys_.end()) metric_keys_.push_back(m);
  compile_options_ = options;
  optimizer_built_ = false;
  collect_trainable_variables();
  if (seed_ == 0) seed_ = random_seed();
  const Layer& head = *outputs_[0]->site->layer;
  hidden_logits_ = loss_->is_crossentropy() && head.has_keras_logits() &&
                   options.logits_semantics == LogitsSemantics::kTensorFlow;
  if (options.warn && loss_->is_crossentropy() && head.has_keras_logits() && loss_->from_logits()) {
    const std::string act = head.keras_logits_activation();
    if (hidden_logits_)
      std::fprintf(stderr,
                   "attn: warning: output layer '%s' has activation '%s' but the loss has from_logits=True; as Keras "
                   "on TensorFlow does, the loss uses that layer's pre-%s logits. You most likely meant activation "
                   "\"linear\" with from_logits=True (same result), or from_logits=False. Set "
                   "LogitsSemantics::kOutputs (CLI: --logits outputs) to feed the %s outputs to the loss as logits, "
                   "as Keras on JAX/PyTorch does.\n",
                   head.name().c_str(), act.c_str(), act.c_str(), act.c_str());
    else
      std::fprintf(stderr,
                   "attn: warning: output layer '%s' has activation '%s' and the loss has from_logits=True; its "
                   "outputs in (0, 1) are used as logits (Keras' JAX/PyTorch behaviour), which trains poorly.\n",
                   head.name().c_str(), act.c_str());
  }
  executor_.reset();  // the plan depends on hidden_logits_
}

namespace {
// Forward-only batches per pool round in evaluation (about): rounds are cheap at this size, and
// the progress bar moves between them.
constexpr int64_t kBatchesPerRound = 256;

// Keras' running means for one epoch (float32 totals, keras/src/metrics/reduction_metrics.py).
struct EpochMeans {
  metrics::Mean loss, accuracy;
  // n samples of `rows` output rows each: the loss is weighted by samples (Keras' loss tracker
  // by batch size), the accuracy counts rows (Keras' Mean over every value of the metric).
  void add(const Executor::BatchResult& r, double divisor, int64_t n, int64_t rows) {
    loss.update(static_cast<float>(r.loss_sum / divisor), static_cast<float>(n));
    accuracy.update_sum(static_cast<float>(r.correct), static_cast<float>(n * rows));
  }
  // The accuracy under each metric key (none: no metric).
  callbacks::Logs logs(const std::vector<std::string>& keys) const {
    callbacks::Logs l;
    write(l, keys);
    return l;
  }
  // Into existing entries after the first call: no allocation per step.
  void write(callbacks::Logs& l, const std::vector<std::string>& keys) const {
    l["loss"] = loss.result();
    for (const std::string& key : keys) l[key] = accuracy.result();
  }
};
}  // namespace

std::map<std::string, double> Model::run_epoch_eval(const std::vector<Tensor>& xs, const Tensor& y, int batch_size,
                                                    int verbose) {
  const int64_t n = xs[0].dim(0);
  Executor& ex = executor();
  ex.compute_accuracy = !metric_keys_.empty();
  const int64_t rows = ex.output_rows();
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  EpochMeans means;
  const int64_t steps = (n + batch_size - 1) / batch_size;
  Progbar bar(steps, verbose);
  callbacks::Logs logs;  // one map for every batch, as in fit
  // Rounds of equal size, so that none has fewer batches than threads when the whole has not
  // (see run_forward_batches).
  const int64_t rounds =
      std::min((steps + kBatchesPerRound - 1) / kBatchesPerRound, std::max<int64_t>(1, steps / ex.threads()));
  std::vector<Executor::BatchResult> results(rounds > 0 ? (steps + rounds - 1) / rounds : 0);
  const uint64_t seed = next_forward_seed();
  for (int64_t round = 0; round < rounds; ++round) {
    const int64_t first = steps * round / rounds, last = steps * (round + 1) / rounds;
    ex.run_forward_batches(xs, &y, order.data(), n, batch_size, first, last, results.data(), {}, seed);
    for (int64_t s = first; s < last; ++s) {  // in batch order, as one thread would: the same bits
      const int64_t count = std::min<int64_t>(batch_size, n - s * batch_size);
      means.add(results[s - first], loss_->reported_divisor(count * rows), count, rows);
      if (verbose > 0) {
        means.write(logs, metric_keys_);
        bar.update(s + 1, logs, s + 1 == steps);
      }
    }
  }
  return means.logs(metric_keys_);
}

std::map<std::string, double> Model::evaluate(const Tensor& x, const Tensor& y, EvaluateOptions options) {
  return evaluate(std::vector<Tensor>{x}, y, options);
}

std::map<std::string, double> Model::evaluate(const std::vector<Tensor>& xs, const Tensor& y,
                                              EvaluateOptions options) {
  check_not_moved_from("evaluate");
  if (!compiled()) throw std::logic_error("evaluate: compile the model first");
  if (options.batch_size <= 0) throw std::invalid_argument("evaluate: batch_size must be positive");
  if (options.verbose < 0 || options.verbose > 2)
    throw std::invalid_argument("evaluate: verbose must be 0, 1 or 2, got " + std::to_string(options.verbose));
  check_inputs(xs, inputs_, sites_, "evaluate");
  if (xs[0].dim(0) == 0)
    throw std::invalid_argument("evaluate: no samples (x has shape " + shape_to_string(xs[0].shape()) + ")");
  check_labels(y, xs[0].dim(0), *loss_, executor(), "evaluate");
  if (!metric_keys_.empty())
    executor().accuracy_kind = accuracy_for(metric_keys_, y, executor(), outputs_[0]->shape, "evaluate");
  return run_epoch_eval(xs, y, options.batch_size, options.verbose);
}

Tensor Model::predict(const Tensor& x, PredictOptions options) { return predict(std::vector<Tensor>{x}, options)[0]; }

std::vector<Tensor> Model::predict(const std::vector<Tensor>& xs, PredictOptions options) {
  check_not_moved_from("predict");
  return forward_values(xs, {outputs_[0]}, options, "predict");
}

std::vector<Tensor> Model::activations(const std::vector<Tensor>& xs, const std::vector<Node>& nodes,
                                       PredictOptions options) {
  return forward_values(xs, nodes, options, "activations");
}

std::vector<Tensor> Model::forward_values(const std::vector<Tensor>& xs, const std::vector<Node>& nodes,
                                          const PredictOptions& options, const char* what) {
  check_not_moved_from(what);
  if (options.batch_size <= 0) throw std::invalid_argument(std::string(what) + ": batch_size must be positive");
  check_inputs(xs, inputs_, sites_, what);
  const int64_t n = xs[0].dim(0);
  Executor& ex = executor();
  std::vector<Tensor> out;
  for (const Node& node : nodes) {
    if (!node || !ex.computes(node.get()))
      throw std::invalid_argument(
          std::string(what) + ": " +
          (node && node->site ? "output " + std::to_string(node->index) + " of layer '" + node->site->layer->name() + "'"
                              : std::string("a tensor")) +
          " is not computed by this model");
    Shape shape = node->shape;
    shape.insert(shape.begin(), n);
    out.emplace_back(shape);
  }
  std::vector<Executor::ForwardCopy> copies;
  for (size_t i = 0; i < nodes.size(); ++i) copies.push_back({nodes[i].get(), out[i].data()});
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  ex.compute_accuracy = false;
  const int64_t steps = (n + options.batch_size - 1) / options.batch_size;
  std::vector<Executor::BatchResult> results(steps);
  ex.run_forward_batches(xs, nullptr, order.data(), n, options.batch_size, 0, steps, results.data(), copies,
                         next_forward_seed());
  return out;
}

Model::StepResult Model::train_step(const std::vector<Tensor>& xs, const Tensor& y) {
  check_not_moved_from("train_on_batch");
  if (!compiled()) throw std::logic_error("train_on_batch: compile the model first");
  // The checks fit makes once for all its data, here for every batch: a bad label found inside
  // the step would be thrown on a worker thread.
  check_inputs(xs, inputs_, sites_, "train_on_batch");
  if (xs[0].dim(0) == 0)
    throw std::invalid_argument("train_on_batch: no samples (x has shape " + shape_to_string(xs[0].shape()) + ")");
  Executor& ex = executor();
  check_labels(y, xs[0].dim(0), *loss_, ex, "train_on_batch");
  if (!metric_keys_.empty()) ex.accuracy_kind = accuracy_for(metric_keys_, y, ex, outputs_[0]->shape, "train_on_batch");
  if (!optimizer_built_) {
    optimizer_->build(trainable_slices_);
    optimizer_built_ = true;
  }
  const int64_t n = xs.at(0).dim(0);
  // A fixed identity order for small batches; kept static so steady-state calls allocate nothing.
  static thread_local std::vector<int64_t> order;
  if (static_cast<int64_t>(order.size()) < n) {
    order.resize(n);
    std::iota(order.begin(), order.end(), 0);
  }
  ex.compute_accuracy = !metric_keys_.empty();
  auto r = ex.run(xs, &y, order.data(), n, true, true, hash_combine(seed_, 0x7ba1, optimizer_->iterations()));
  StepResult result;
  const int64_t rows = ex.output_rows();
  result.loss = r.loss_sum / loss_->reported_divisor(n * rows);
  result.accuracy = ex.compute_accuracy ? r.correct / double(n * rows) : std::nan("");
  return result;
}

std::map<std::string, double> Model::train_on_batch(const std::vector<Tensor>& xs, const Tensor& y) {
  StepResult r = train_step(xs, y);
  std::map<std::string, double> logs;
  logs["loss"] = r.loss;
  for (const std::string& key : metric_keys_) logs[key] = r.accuracy;
  return logs;
}

History Model::fit(const Tensor& x, const Tensor& y, FitOptions options) {
  return fit(std::vector<Tensor>{x}, y, std::move(options));
}

History Model::fit(const std::vector<Tensor>& xs_all, const Tensor& y_all, FitOptions options) {
  check_not_moved_from("fit");
  if (!compiled()) throw std::logic_error("fit: compile the model first");
  if (options.batch_size <= 0) throw std::invalid_argument("fit: batch_size must be positive, got " +
                                                           std::to_string(options.batch_size));
  if (options.epochs < 0) throw std::invalid_argument("fit: epochs must be >= 0");
  if (!(options.validation_split >= 0.0 && options.validation_split < 1.0))
    throw std::invalid_argument("fit: validation_split must be in [0, 1)");
  if (options.validation_freq <= 0) throw std::invalid_argument("fit: validation_freq must be positive");
  if (options.validation_batch_size && *options.validation_batch_size <= 0)
    throw std::invalid_argument("fit: validation_batch_size must be positive, got " +
                                std::to_string(*options.validation_batch_size));
  if (options.verbose < 0 || options.verbose > 2)
    throw std::invalid_argument("fit: verbose must be 0, 1 or 2, got " + std::to_string(options.verbose));
  for (const auto& cb : options.callbacks)
    if (!cb) throw std::invalid_argument("fit: a callback is null");
  check_inputs(xs_all, inputs_, sites_, "fit");
  if (xs_all[0].dim(0) == 0)
    throw std::invalid_argument("fit: no samples (x has shape " + shape_to_string(xs_all[0].shape()) + ")");
  Executor& ex = executor();
  const int64_t n_all = xs_all[0].dim(0);
  check_labels(y_all, n_all, *loss_, ex, "fit");

  // validation_split takes the last samples of every input, before any shuffling (Keras'
  // array_data_adapter), and only when no validation_data is given (Keras' fit).
  std::vector<Tensor> xs = xs_all;
  Tensor y = y_all;
  std::vector<Tensor> val_xs;
  Tensor val_y;
  if (options.validation_data) {
    val_xs = options.validation_data->xs;
    if (val_xs.empty()) throw std::invalid_argument("fit (validation data): no input arrays");
    val_y = options.validation_data->y;
  } else if (options.validation_split > 0.0) {
    const int64_t split = static_cast<int64_t>(std::floor(double(n_all) * (1.0 - options.validation_split)));
    for (auto& x : xs) {
      val_xs.push_back(x.rows(split, n_all));
      x = x.rows(0, split);
    }
    val_y = y_all.rows(split, n_all);
    y = y_all.rows(0, split);
  }
  const bool validating = !val_xs.empty();
  if (validating) {
    check_inputs(val_xs, inputs_, sites_, "fit (validation data)");
    check_labels(val_y, val_xs[0].dim(0), *loss_, ex, "fit (validation data)");
  }
  const int64_t n = xs[0].dim(0);
  if (n == 0) throw std::invalid_argument("fit: no training samples");
  const bool with_accuracy = !metric_keys_.empty();
  const metrics::AccuracyKind train_accuracy =
      with_accuracy ? accuracy_for(metric_keys_, y, ex, outputs_[0]->shape, "fit") : ex.accuracy_kind;
  std::optional<metrics::AccuracyKind> val_accuracy;
  if (with_accuracy && validating)
    val_accuracy = accuracy_for(metric_keys_, val_y, ex, outputs_[0]->shape, "fit (validation data)");
  const int64_t rows = ex.output_rows();
  if (!optimizer_built_) {
    optimizer_->build(trainable_slices_);
    optimizer_built_ = true;
  }
  ex.plan(std::min<int64_t>(options.batch_size, n));  // a batch larger than the data is the data

  History history;
  stop_training = false;
  for (auto& cb : options.callbacks) cb->set_model(this);
  for (auto& cb : options.callbacks) cb->on_train_begin({});
  const int64_t steps = (n + options.batch_size - 1) / options.batch_size;
  std::vector<int64_t> order(n);
  callbacks::Logs last_logs;
  for (int epoch = options.initial_epoch; epoch < options.epochs; ++epoch) {
    auto epoch_start = std::chrono::steady_clock::now();
    if (options.verbose && options.epochs > 1) std::printf("Epoch %d/%d\n", epoch + 1, options.epochs);
    for (auto& cb : options.callbacks) cb->on_epoch_begin(epoch, {});
    std::iota(order.begin(), order.end(), 0);
    if (options.shuffle) {
      // Fisher-Yates with our own generator: the same seed shuffles alike on every platform.
      std::mt19937_64 gen(hash_combine(seed_, 0x5f1e, static_cast<uint64_t>(epoch)));
      for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[gen() % static_cast<uint64_t>(i + 1)]);
    }
    EpochMeans means;
    Progbar bar(steps, options.verbose);
    callbacks::Logs batch_logs;  // one map for every step: a step allocates nothing
    for (int64_t s = 0; s < steps && !stop_training; ++s) {
      const int64_t begin = s * options.batch_size, count = std::min<int64_t>(options.batch_size, n - begin);
      const int64_t next = begin + count;
      if (next < n) ex.prefetch_for_next_run(order.data() + next, std::min<int64_t>(options.batch_size, n - next));
      // Every step: a callback may have run predict or evaluate on this model since the last.
      ex.compute_accuracy = with_accuracy;
      ex.accuracy_kind = train_accuracy;
      auto r = ex.run(xs, &y, order.data() + begin, count, true, true,
                      hash_combine(seed_, 0x7ba1, optimizer_->iterations()));
      means.add(r, loss_->reported_divisor(count * rows), count, rows);
      means.write(batch_logs, metric_keys_);
      for (auto& cb : options.callbacks) cb->on_train_batch_end(static_cast<int>(s), batch_logs);
      bar.update(s + 1, batch_logs);  // the last step too: the bar learns the step's keys first
    }
    callbacks::Logs logs = means.logs(metric_keys_);
    if (validating && (epoch + 1) % options.validation_freq == 0) {
      if (val_accuracy) ex.accuracy_kind = *val_accuracy;
      auto val = run_epoch_eval(val_xs, val_y, options.validation_batch_size.value_or(options.batch_size), 0);
      for (auto& [k, v] : val) logs["val_" + k] = v;
    }
    history.seconds.push_back(seconds_since(epoch_start));
    // Keras' order: the callbacks first (in the order given; they may add to the logs, as
    // ReduceLROnPlateau adds "learning_rate"), then the history, then the epoch's progress line,
    // which so comes after the callbacks' own messages.
    for (auto& cb : options.callbacks) cb->on_epoch_end(epoch, logs);
    history.epoch.push_back(epoch);
    for (auto& [k, v] : logs) history.history[k].push_back(v);
    bar.update(steps, logs, true);
    last_logs = logs;
    if (stop_training) {
      history.stopped_early = epoch + 1 < options.epochs;
      break;
    }
  }
  for (auto& cb : options.callbacks) cb->on_train_end(last_logs);  // Keras: the last epoch's logs
  return history;
}

}  // namespace attn
