// Keras losses: sparse/categorical/binary cross-entropy and mean squared error, each as a
// sum of per-sample losses plus its exact gradient, with Keras 3 configs and names.
// Probability paths follow Keras' TensorFlow backend (keras/src/backend/tensorflow/nn.py).
// Deliberately not here: sample weights, ignore_class, masks, and the choice of feeding
// hidden logits (the model decides that and passes y_pred_are_logits).
#include "attn/losses.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>

namespace attn::losses {
namespace {

// keras.config.epsilon() is the Python float 1e-7; TF clips float32 tensors with it, so the
// bounds are float32 values: [1e-7f, 1 - 1e-7f] (the latter is 0.99999988f).
constexpr float kClipLo = 1e-7f;
constexpr float kClipHi = 1.0f - 1e-7f;

// clip_by_value passes the gradient where lo <= x <= hi and blocks it strictly outside.
inline double clip_value(float x, bool* inside) {
  if (x < kClipLo) {
    *inside = false;
    return kClipLo;
  }
  if (x > kClipHi) {
    *inside = false;
    return kClipHi;
  }
  *inside = true;
  return x;
}

// The decimal a float option was written as (0.1f -> 0.1), as Keras' Python config holds it.
double as_python_float(float f) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), f);
  double d = f;
  if (ec == std::errc()) std::from_chars(buf, end, d);
  return d;
}

std::string format_float(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// Sparse labels are float class ids; Keras casts them to int (truncation). Anything outside
// [0, width) is an error rather than TF's NaN loss.
int64_t class_id(float label, int64_t width, const char* who) {
  if (!(label >= 0.0f && label < static_cast<float>(width)))
    throw std::invalid_argument(std::string(who) + ": label " + format_float(label) +
                                " is outside [0, " + std::to_string(width) + ")");
  return static_cast<int64_t>(label);
}

void check_batch(const LossBatch& b, const char* who) {
  if (b.batch < 0 || b.width <= 0 || (b.batch > 0 && (!b.y_pred || !b.y_true)))
    throw std::invalid_argument(std::string(who) + ": empty or inconsistent batch");
}

// Row maximum and sum of exp(z - max), for a stable logsumexp and softmax.
struct SoftmaxStats {
  double max;
  double sum;
};
// With exps (width doubles), the terms exp(z_j - max) are kept for the gradient: the exps are
// most of a training step's loss time.
SoftmaxStats softmax_stats(const float* z, int64_t width, double* exps = nullptr) {
  double m = z[0];
  for (int64_t j = 1; j < width; ++j) m = std::max(m, static_cast<double>(z[j]));
  double s = 0.0;
  for (int64_t j = 0; j < width; ++j) {
    const double e = std::exp(static_cast<double>(z[j]) - m);
    if (exps) exps[j] = e;
    s += e;
  }
  return {m, s};
}
// Rows up to this wide keep their exps on the stack; wider ones compute them again.
constexpr int64_t kKeptExps = 64;

// Base for the four losses: keeps the Keras name and the reduction as it was spelled, so
// get_config round-trips "auto" or "mean_with_sample_weight" configs unchanged.
class LossBase : public Loss {
 public:
  LossBase(std::string name, const std::string& reduction, bool from_logits)
      : name_(std::move(name)), reduction_name_(reduction) {
    reduction_ = reduction_from_string(reduction);
    from_logits_ = from_logits;
  }

 protected:
  nlohmann::json base_config() const {
    return {{"name", name_}, {"reduction", reduction_name_}};
  }
  std::string name_;
  std::string reduction_name_;
};

class SparseCategoricalCrossentropyLoss final : public LossBase {
 public:
  SparseCategoricalCrossentropyLoss(const CrossentropyOptions& o, std::string name)
      : LossBase(std::move(name), o.reduction, o.from_logits) {
    if (o.label_smoothing != 0.0f)
      throw std::invalid_argument(
          "SparseCategoricalCrossentropy: label_smoothing is not a Keras option for sparse labels");
  }
  std::string class_name() const override { return "SparseCategoricalCrossentropy"; }
  nlohmann::json get_config() const override {
    nlohmann::json c = base_config();
    c["from_logits"] = from_logits_;
    c["ignore_class"] = nullptr;
    return c;
  }
  bool is_crossentropy() const override { return true; }
  bool sparse_labels() const override { return true; }

  double sum_and_gradient(const LossBatch& b, bool y_pred_are_logits, float* grad,
                          float grad_scale) const override {
    check_batch(b, "SparseCategoricalCrossentropy");
    const int64_t w = b.width;
    double total = 0.0;
    for (int64_t i = 0; i < b.batch; ++i) {
      const float* z = b.y_pred + i * w;
      const int64_t y = class_id(b.y_true[i], w, "SparseCategoricalCrossentropy");
      float* g = grad ? grad + i * w : nullptr;
      if (from_logits_ || y_pred_are_logits) {
        // loss = logsumexp(z) - z_y; d/dz_j = softmax_j - [j == y].
        double kept[kKeptExps];
        double* exps = g && w <= kKeptExps ? kept : nullptr;
        const SoftmaxStats st = softmax_stats(z, w, exps);
        total += st.max + std::log(st.sum) - static_cast<double>(z[y]);
        if (g) {
          for (int64_t j = 0; j < w; ++j) {
            const double p = (exps ? exps[j] : std::exp(static_cast<double>(z[j]) - st.max)) / st.sum;
            g[j] = static_cast<float>(grad_scale * (p - (j == y ? 1.0 : 0.0)));
          }
        }
      } else {
        // TF backend: logits = log(clip(p)), then sparse softmax xent, i.e.
        // loss = log(sum_j c_j) - log(c_y) with c = clip(p): the clipped p renormalised.
        // d/dp_j = inside_j * (1/sum c - [j == y]/c_y).
        double csum = 0.0;
        for (int64_t j = 0; j < w; ++j) {
          bool inside;
          csum += clip_value(z[j], &inside);
        }
        bool y_inside;
        const double cy = clip_value(z[y], &y_inside);
        total += std::log(csum) - std::log(cy);
        if (g) {
          for (int64_t j = 0; j < w; ++j) {
            bool inside;
            const double c = clip_value(z[j], &inside);
            const double d = inside ? 1.0 / csum - (j == y ? 1.0 / c : 0.0) : 0.0;
            g[j] = static_cast<float>(grad_scale * d);
          }
        }
      }
    }
    return total;
  }
};

class CategoricalCrossentropyLoss final : public LossBase {
 public:
  CategoricalCrossentropyLoss(const CrossentropyOptions& o, std::string name)
      : LossBase(std::move(name), o.reduction, o.from_logits), label_smoothing_(o.label_smoothing) {}
  std::string class_name() const override { return "CategoricalCrossentropy"; }
  nlohmann::json get_config() const override {
    nlohmann::json c = base_config();
    c["from_logits"] = from_logits_;
    c["label_smoothing"] = as_python_float(label_smoothing_);
    c["axis"] = -1;
    return c;
  }
  bool is_crossentropy() const override { return true; }

  double sum_and_gradient(const LossBatch& b, bool y_pred_are_logits, float* grad,
                          float grad_scale) const override {
    check_batch(b, "CategoricalCrossentropy");
    const int64_t w = b.width;
    // keras/src/losses/losses.py categorical_crossentropy: y * (1 - ls) + ls / num_classes.
    const double keep = 1.0 - static_cast<double>(label_smoothing_);
    const double add = static_cast<double>(label_smoothing_) / static_cast<double>(w);
    auto target = [&](const float* t, int64_t j) { return t[j] * keep + add; };
    double total = 0.0;
    for (int64_t i = 0; i < b.batch; ++i) {
      const float* z = b.y_pred + i * w;
      const float* t = b.y_true + i * w;
      float* g = grad ? grad + i * w : nullptr;
      if (from_logits_ || y_pred_are_logits) {
        // loss = sum_j y_j (lse - z_j); d/dz_k = softmax_k * sum(y) - y_k (sum(y) is 1 for
        // one-hot or smoothed labels; kept general so the gradient is exact).
        double kept[kKeptExps];
        double* exps = g && w <= kKeptExps ? kept : nullptr;
        const SoftmaxStats st = softmax_stats(z, w, exps);
        const double lse = st.max + std::log(st.sum);
        double ysum = 0.0;
        for (int64_t j = 0; j < w; ++j) {
          const double y = target(t, j);
          ysum += y;
          total += y * (lse - static_cast<double>(z[j]));
        }
        if (g) {
          for (int64_t j = 0; j < w; ++j) {
            const double p = (exps ? exps[j] : std::exp(static_cast<double>(z[j]) - st.max)) / st.sum;
            g[j] = static_cast<float>(grad_scale * (p * ysum - target(t, j)));
          }
        }
      } else {
        // All backends: q = p / sum(p), c = clip(q), loss = -sum_j y_j log c_j.
        // With a_j = -y_j / c_j where unclipped (0 where clipped):
        // d/dp_k = (a_k - sum_j a_j q_j) / sum(p).
        double s = 0.0;
        for (int64_t j = 0; j < w; ++j) s += z[j];
        double aq = 0.0;
        for (int64_t j = 0; j < w; ++j) {
          const double q = z[j] / s;
          bool inside;
          const double c = clip_value(static_cast<float>(q), &inside);
          const double y = target(t, j);
          total -= y * std::log(c);
          if (inside) aq += -y / c * q;
        }
        if (g) {
          for (int64_t j = 0; j < w; ++j) {
            const double q = z[j] / s;
            bool inside;
            const double c = clip_value(static_cast<float>(q), &inside);
            const double a = inside ? -target(t, j) / c : 0.0;
            g[j] = static_cast<float>(grad_scale * (a - aq) / s);
          }
        }
      }
    }
    return total;
  }

 private:
  float label_smoothing_;
};

class BinaryCrossentropyLoss final : public LossBase {
 public:
  BinaryCrossentropyLoss(const CrossentropyOptions& o, std::string name)
      : LossBase(std::move(name), o.reduction, o.from_logits), label_smoothing_(o.label_smoothing) {}
  std::string class_name() const override { return "BinaryCrossentropy"; }
  nlohmann::json get_config() const override {
    nlohmann::json c = base_config();
    c["from_logits"] = from_logits_;
    c["label_smoothing"] = as_python_float(label_smoothing_);
    c["axis"] = -1;
    return c;
  }
  bool is_crossentropy() const override { return true; }

  double sum_and_gradient(const LossBatch& b, bool y_pred_are_logits, float* grad,
                          float grad_scale) const override {
    check_batch(b, "BinaryCrossentropy");
    const int64_t w = b.width;
    // keras/src/losses/losses.py binary_crossentropy: y * (1 - ls) + 0.5 * ls, then the
    // per-element loss is averaged over the last axis.
    const double keep = 1.0 - static_cast<double>(label_smoothing_);
    const double add = 0.5 * static_cast<double>(label_smoothing_);
    const double inv_w = 1.0 / static_cast<double>(w);
    const bool logits = from_logits_ || y_pred_are_logits;
    double total = 0.0;
    for (int64_t i = 0; i < b.batch; ++i) {
      const float* z = b.y_pred + i * w;
      const float* t = b.y_true + i * w;
      float* g = grad ? grad + i * w : nullptr;
      double row = 0.0;
      for (int64_t j = 0; j < w; ++j) {
        const double y = t[j] * keep + add;
        double d;
        if (logits) {
          // sigmoid_cross_entropy_with_logits: max(z,0) - z*y + log(1 + exp(-|z|));
          // d/dz = sigmoid(z) - y.
          const double x = z[j];
          row += std::max(x, 0.0) - x * y + std::log1p(std::exp(-std::abs(x)));
          const double sig = x >= 0.0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x));
          d = sig - y;
        } else {
          // TF backend: clip p to [eps, 1-eps], then -(y log p + (1-y) log(1-p)).
          bool inside;
          const double p = clip_value(z[j], &inside);
          row -= y * std::log(p) + (1.0 - y) * std::log(1.0 - p);
          d = inside ? -y / p + (1.0 - y) / (1.0 - p) : 0.0;
        }
        if (g) g[j] = static_cast<float>(grad_scale * d * inv_w);
      }
      total += row * inv_w;
    }
    return total;
  }

 private:
  float label_smoothing_;
};

class MeanSquaredErrorLoss final : public LossBase {
 public:
  MeanSquaredErrorLoss(const std::string& reduction, std::string name)
      : LossBase(std::move(name), reduction, false) {}
  std::string class_name() const override { return "MeanSquaredError"; }
  nlohmann::json get_config() const override { return base_config(); }

  // Regression: y_pred_are_logits has no meaning here and is ignored.
  double sum_and_gradient(const LossBatch& b, bool, float* grad, float grad_scale) const override {
    check_batch(b, "MeanSquaredError");
    const int64_t w = b.width;
    const double inv_w = 1.0 / static_cast<double>(w);
    double total = 0.0;
    for (int64_t i = 0; i < b.batch; ++i) {
      const float* p = b.y_pred + i * w;
      const float* t = b.y_true + i * w;
      float* g = grad ? grad + i * w : nullptr;
      double row = 0.0;
      for (int64_t j = 0; j < w; ++j) {
        const double e = static_cast<double>(p[j]) - static_cast<double>(t[j]);
        row += e * e;
        if (g) g[j] = static_cast<float>(grad_scale * 2.0 * e * inv_w);
      }
      total += row * inv_w;
    }
    return total;
  }
};

// A JSON number or bool as float/bool, with the key in the error.
float json_float(const nlohmann::json& v, const std::string& key) {
  if (!v.is_number()) throw std::invalid_argument("loss config: " + key + " must be a number");
  return v.get<float>();
}

std::shared_ptr<Loss> loss_from_config(const std::string& class_name, const nlohmann::json& config) {
  if (!config.is_object())
    throw std::invalid_argument("loss config for " + class_name + " must be an object");
  CrossentropyOptions o;
  std::string name;
  for (const auto& [key, v] : config.items()) {
    if (key == "from_logits") {
      o.from_logits = v.get<bool>();
    } else if (key == "reduction") {
      // Keras 3 serializes reduction=None as null.
      o.reduction = v.is_null() ? "none" : v.get<std::string>();
    } else if (key == "label_smoothing") {
      o.label_smoothing = json_float(v, key);
    } else if (key == "name") {
      if (!v.is_null()) name = v.get<std::string>();
    } else if (key == "axis") {
      if (!(v.is_number_integer() && v.get<int64_t>() == -1))
        throw std::invalid_argument("loss " + class_name + ": only axis=-1 is supported, got " + v.dump());
    } else if (key == "ignore_class") {
      if (!v.is_null())
        throw std::invalid_argument("loss " + class_name + ": ignore_class=" + v.dump() +
                                    " is not supported");
    } else if (key == "dtype" || key == "fn") {
      // dtype: float32 is the only compute dtype here; fn: LossFunctionWrapper's function,
      // implied by the class.
    } else {
      throw std::invalid_argument("loss " + class_name + ": unknown config key '" + key + "'");
    }
  }
  if (class_name == "SparseCategoricalCrossentropy")
    return std::make_shared<SparseCategoricalCrossentropyLoss>(
        o, name.empty() ? "sparse_categorical_crossentropy" : name);
  if (class_name == "CategoricalCrossentropy")
    return std::make_shared<CategoricalCrossentropyLoss>(o, name.empty() ? "categorical_crossentropy" : name);
  if (class_name == "BinaryCrossentropy")
    return std::make_shared<BinaryCrossentropyLoss>(o, name.empty() ? "binary_crossentropy" : name);
  if (class_name == "MeanSquaredError") {
    if (o.from_logits || o.label_smoothing != 0.0f)
      throw std::invalid_argument("loss MeanSquaredError takes no from_logits/label_smoothing");
    return std::make_shared<MeanSquaredErrorLoss>(o.reduction, name.empty() ? "mean_squared_error" : name);
  }
  throw std::invalid_argument("unknown loss '" + class_name + "'");
}

// Keras' string identifiers (keras/src/losses/__init__.py ALL_OBJECTS_DICT): the function
// names, their aliases, and the class names.
std::string class_for_identifier(const std::string& id) {
  if (id == "sparse_categorical_crossentropy" || id == "SparseCategoricalCrossentropy")
    return "SparseCategoricalCrossentropy";
  if (id == "categorical_crossentropy" || id == "CategoricalCrossentropy")
    return "CategoricalCrossentropy";
  if (id == "binary_crossentropy" || id == "BinaryCrossentropy") return "BinaryCrossentropy";
  if (id == "mse" || id == "MSE" || id == "mean_squared_error" || id == "MeanSquaredError")
    return "MeanSquaredError";
  throw std::invalid_argument("unknown loss '" + id + "'");
}

}  // namespace

Reduction reduction_from_string(const std::string& name) {
  if (name == "sum_over_batch_size" || name == "auto") return Reduction::kSumOverBatchSize;
  if (name == "sum") return Reduction::kSum;
  // Without sample weights, mean_with_sample_weight divides by the element count like mean.
  if (name == "mean" || name == "mean_with_sample_weight") return Reduction::kMean;
  if (name == "none") return Reduction::kNone;
  throw std::invalid_argument("unknown loss reduction '" + name + "'");
}

std::string to_string(Reduction r) {
  switch (r) {
    case Reduction::kSumOverBatchSize: return "sum_over_batch_size";
    case Reduction::kSum: return "sum";
    case Reduction::kMean: return "mean";
    case Reduction::kNone: return "none";
  }
  return "sum_over_batch_size";
}

// keras/src/losses/loss.py reduce_values: sum_over_batch_size and mean divide by the number
// of per-sample loss values; "none" has no scalar, so its scalar form is the sum.
double Loss::reduction_divisor(int64_t batch) const {
  switch (reduction_) {
    case Reduction::kSumOverBatchSize:
    case Reduction::kMean: return batch > 0 ? static_cast<double>(batch) : 1.0;
    case Reduction::kSum:
    case Reduction::kNone: return 1.0;
  }
  return 1.0;
}

// keras/src/metrics/reduction_metrics.py: the loss tracker's Mean reduces a loss vector to its
// mean (reduce_to_samplewise_values with the batch size as a scalar weight).
double Loss::reported_divisor(int64_t batch) const {
  if (reduction_ == Reduction::kNone) return batch > 0 ? static_cast<double>(batch) : 1.0;
  return reduction_divisor(batch);
}

std::shared_ptr<Loss> SparseCategoricalCrossentropy(CrossentropyOptions options) {
  return std::make_shared<SparseCategoricalCrossentropyLoss>(options, "sparse_categorical_crossentropy");
}
std::shared_ptr<Loss> CategoricalCrossentropy(CrossentropyOptions options) {
  return std::make_shared<CategoricalCrossentropyLoss>(options, "categorical_crossentropy");
}
std::shared_ptr<Loss> BinaryCrossentropy(CrossentropyOptions options) {
  return std::make_shared<BinaryCrossentropyLoss>(options, "binary_crossentropy");
}
std::shared_ptr<Loss> MeanSquaredError(std::string reduction) {
  return std::make_shared<MeanSquaredErrorLoss>(reduction, "mean_squared_error");
}

std::shared_ptr<Loss> loss_from_json(const nlohmann::json& j) {
  if (j.is_string()) return loss_from_config(class_for_identifier(j.get<std::string>()), nlohmann::json::object());
  if (!j.is_object() || !j.contains("class_name"))
    throw std::invalid_argument("loss must be a name or {\"class_name\", \"config\"}, got " + j.dump());
  const std::string cls = j.at("class_name").get<std::string>();
  const nlohmann::json config = j.value("config", nlohmann::json::object());
  // Keras 3 serializes a plain loss function as {"class_name": "function", "config": "name"}.
  if (cls == "function") {
    if (!config.is_string()) throw std::invalid_argument("loss function config must be a name");
    return loss_from_json(config);
  }
  return loss_from_config(class_for_identifier(cls), config);
}

}  // namespace attn::losses
