// Adam, AdamW, SGD and RMSprop with Keras 3's update formulas, float32 arithmetic in Keras'
// operation order, gradient clipping and decoupled weight decay (keras/src/optimizers/).
// State is one contiguous buffer per slot, allocated in build(); apply() never allocates.
// Deliberately not here: learning-rate schedules, EMA, loss scaling, gradient accumulation
// (configs asking for them are rejected, not silently ignored).
#include "attn/optimizers.hpp"
#include "kernels/adam_update.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>

#include "attn/tensor.hpp"

namespace attn::optimizers {
namespace {

// Keras holds hyperparameters such as beta_1=0.9 as Python doubles, so `1 - beta_1` is formed
// in double and only then rounded to float32 (0.1f), whereas 1 - 0.9f is 0.10000002f. Our
// options are floats; recover the decimal the user wrote (the shortest round-trip text of
// the float) to reproduce Keras' constants exactly.
double as_python_float(float f) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), f);
  if (ec != std::errc()) return f;
  double d = f;
  std::from_chars(buf, end, d);
  return d;
}
float one_minus(float f) { return static_cast<float>(1.0 - as_python_float(f)); }

nlohmann::json optional_json(const std::optional<float>& v) {
  return v ? nlohmann::json(as_python_float(*v)) : nlohmann::json(nullptr);
}

// Shared machinery: slot buffers, weight decay, the apply() order of
// base_optimizer._backend_apply_gradients (clip, weight decay, update_step, iterations += 1).
class OptimizerBase : public Optimizer {
 public:
  OptimizerBase(std::string name, float learning_rate, const ClipOptions& clip,
                std::optional<float> weight_decay)
      : name_(std::move(name)), weight_decay_(weight_decay) {
    // Keras checks no value here; a NaN or infinite rate only turns every weight into NaN.
    if (!std::isfinite(learning_rate))
      throw std::invalid_argument("learning_rate must be a finite number, got " + std::to_string(learning_rate));
    learning_rate_ = learning_rate;
    clip_ = clip;
    // base_optimizer.py raises when more than one clipping option is given.
    const int set = (clip.clipnorm ? 1 : 0) + (clip.clipvalue ? 1 : 0) + (clip.global_clipnorm ? 1 : 0);
    if (set > 1)
      throw std::invalid_argument("Only one of clipnorm, clipvalue and global_clipnorm can be set");
  }

  void build(const std::vector<VariableSlice>& variables) override {
    variables_ = variables;
    total_ = 0;
    for (const auto& v : variables_) {
      if (v.offset < 0 || v.size < 0) throw std::invalid_argument("optimizer build: bad variable slice " + v.name);
      total_ = std::max(total_, v.offset + v.size);
    }
    // Keras zero-initialises every slot (add_variable_from_reference, initializer "zeros").
    buffers_.clear();
    for (const auto& slot : state_slots()) buffers_[slot] = allocate_floats(total_);
    bind_slots();
    built_ = true;
  }

  void apply(float* params, float* grads) override {
    begin_step(grads);
    update_range(params, grads, 0, total_);
    end_step();
  }

  void begin_step(float* grads) override {
    if (!built_) throw std::logic_error(class_name() + ": apply() before build()");
    clip(grads);
    if (schedule_) learning_rate_ = (*schedule_)(iterations_);  // _get_current_learning_rate
    prepare_step();
  }

  void update_range(float* params, const float* grads, int64_t begin, int64_t end) override {
    for (const auto& v : variables_) {
      const int64_t lo = std::max(begin, v.offset), hi = std::min(end, v.offset + v.size);
      if (lo >= hi) continue;
      if (weight_decay_) {
        // _apply_weight_decay, before the update: variable - variable * wd * lr, in float32.
        const float wd = *weight_decay_;
        const float lr = learning_rate_;
        float* w = params + lo;
        for (int64_t i = 0; i < hi - lo; ++i) w[i] = w[i] - w[i] * wd * lr;
      }
      update(params + lo, grads + lo, lo, hi - lo);
    }
  }

  float* state(const std::string& slot) override {
    auto it = buffers_.find(slot);
    if (it == buffers_.end()) throw std::invalid_argument(class_name() + ": no state slot '" + slot + "'");
    return it->second.get();
  }

  nlohmann::json get_config() const override {
    nlohmann::json c = {
        {"name", name_},
        // float(self._learning_rate.numpy()): the float32 value widened, as Keras writes it.
        {"learning_rate", schedule_ ? schedules::schedule_to_json(*schedule_) : nlohmann::json(static_cast<double>(learning_rate_))},
        {"weight_decay", optional_json(weight_decay_)},
        {"clipnorm", optional_json(clip_.clipnorm)},
        {"global_clipnorm", optional_json(clip_.global_clipnorm)},
        {"clipvalue", optional_json(clip_.clipvalue)},
        {"use_ema", false},
        {"ema_momentum", 0.99},
        {"ema_overwrite_frequency", nullptr},
        {"loss_scale_factor", nullptr},
        {"gradient_accumulation_steps", nullptr},
    };
    const nlohmann::json own = own_config();  // named: items() of a temporary would dangle
    for (const auto& [k, v] : own.items()) c[k] = v;
    return c;
  }

 protected:
  virtual nlohmann::json own_config() const = 0;
  // Per-step scalars (Adam's bias correction) computed once, before the variable loop.
  virtual void prepare_step() {}
  // update_step for one variable: w, g and the slot buffers at `offset`, `size` elements.
  virtual void update(float* w, const float* g, int64_t offset, int64_t size) = 0;
  // Caches the slot pointers after build(), so update() does no lookups.
  virtual void bind_slots() = 0;
  float* slot_or_null(const char* name) {
    auto it = buffers_.find(name);
    return it == buffers_.end() ? nullptr : it->second.get();
  }

  std::string name_;
  std::optional<float> weight_decay_;
  int64_t total_ = 0;
  bool built_ = false;
  std::map<std::string, std::shared_ptr<float[]>> buffers_;
};

class AdamOptimizer : public OptimizerBase {
 public:
  AdamOptimizer(std::string name, float lr, float beta_1, float beta_2, float epsilon, bool amsgrad,
                const ClipOptions& clip, std::optional<float> weight_decay)
      : OptimizerBase(std::move(name), lr, clip, weight_decay),
        beta_1_(beta_1), beta_2_(beta_2), epsilon_(epsilon), amsgrad_(amsgrad),
        one_minus_beta_1_(one_minus(beta_1)), one_minus_beta_2_(one_minus(beta_2)) {}
  std::string class_name() const override { return "Adam"; }
  // Keras 3 adam.py build(): momentums, velocities, then velocity_hats for amsgrad.
  std::vector<std::string> state_slots() const override {
    if (amsgrad_) return {"momentum", "velocity", "velocity_hat"};
    return {"momentum", "velocity"};
  }

 protected:
  nlohmann::json own_config() const override {
    return {{"beta_1", as_python_float(beta_1_)},
            {"beta_2", as_python_float(beta_2_)},
            {"epsilon", as_python_float(epsilon_)},
            {"amsgrad", amsgrad_}};
  }
  void prepare_step() override {
    // adam.py update_step, all in float32: t = iterations + 1,
    // alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t).
    const float t = static_cast<float>(iterations_ + 1);
    const float b1p = std::pow(beta_1_, t);
    const float b2p = std::pow(beta_2_, t);
    alpha_ = learning_rate_ * std::sqrt(1.0f - b2p) / (1.0f - b1p);
  }
  void bind_slots() override {
    m_ = slot_or_null("momentum");
    v_ = slot_or_null("velocity");
    vh_ = slot_or_null("velocity_hat");
  }
  void update(float* w, const float* g, int64_t offset, int64_t size) override {
    // m and v stay uncorrected; epsilon is added outside the sqrt and is not
    // bias-corrected (the paper's "epsilon hat" form). SIMD kernel: same bits as scalar.
    kernels::adam_update({alpha_, epsilon_, one_minus_beta_1_, one_minus_beta_2_}, w, g, m_ + offset, v_ + offset,
                         vh_ ? vh_ + offset : nullptr, size);
  }


  float beta_1_, beta_2_, epsilon_;
  bool amsgrad_;
  float one_minus_beta_1_, one_minus_beta_2_;
  float alpha_ = 0.0f;
  float *m_ = nullptr, *v_ = nullptr, *vh_ = nullptr;
};

// adamw.py: Adam whose weight_decay (default 0.004) the base optimizer applies before the step.
class AdamWOptimizer final : public AdamOptimizer {
 public:
  using AdamOptimizer::AdamOptimizer;
  std::string class_name() const override { return "AdamW"; }
};

class SGDOptimizer final : public OptimizerBase {
 public:
  SGDOptimizer(std::string name, float lr, float momentum, bool nesterov, const ClipOptions& clip,
               std::optional<float> weight_decay)
      : OptimizerBase(std::move(name), lr, clip, weight_decay), momentum_(momentum), nesterov_(nesterov) {
    // sgd.py: momentum must be a float in [0, 1].
    if (!(momentum >= 0.0f && momentum <= 1.0f))
      throw std::invalid_argument("SGD: momentum must be in [0, 1]");
  }
  std::string class_name() const override { return "SGD"; }
  // sgd.py creates the momentum slot only when momentum != 0.
  std::vector<std::string> state_slots() const override {
    if (momentum_ != 0.0f) return {"momentum"};
    return {};
  }

 protected:
  nlohmann::json own_config() const override {
    return {{"momentum", as_python_float(momentum_)}, {"nesterov", nesterov_}};
  }
  void bind_slots() override { m_ = slot_or_null("momentum"); }
  void update(float* w, const float* g, int64_t offset, int64_t size) override {
    const float lr = learning_rate_, mu = momentum_;
    if (!m_) {
      for (int64_t i = 0; i < size; ++i) w[i] -= g[i] * lr;
      return;
    }
    float* m = m_ + offset;
    for (int64_t i = 0; i < size; ++i) {
      // m = m*mu - g*lr; plain: w += m; Nesterov: w += m*mu - g*lr (with the new m).
      m[i] = m[i] * mu - g[i] * lr;
      if (nesterov_)
        w[i] += m[i] * mu - g[i] * lr;
      else
        w[i] += m[i];
    }
  }

  float momentum_;
  bool nesterov_;
  float* m_ = nullptr;
};

class RMSpropOptimizer final : public OptimizerBase {
 public:
  RMSpropOptimizer(std::string name, float lr, float rho, float momentum, float epsilon, bool centered,
                   const ClipOptions& clip, std::optional<float> weight_decay)
      : OptimizerBase(std::move(name), lr, clip, weight_decay),
        rho_(rho), momentum_(momentum), epsilon_(epsilon), centered_(centered), one_minus_rho_(one_minus(rho)) {}
  std::string class_name() const override { return "RMSprop"; }
  // rmsprop.py build(): velocities, momentums if momentum > 0, average_gradients if centered.
  std::vector<std::string> state_slots() const override {
    std::vector<std::string> s = {"velocity"};
    if (momentum_ > 0.0f) s.push_back("momentum");
    if (centered_) s.push_back("average_gradient");
    return s;
  }

 protected:
  nlohmann::json own_config() const override {
    return {{"rho", as_python_float(rho_)},
            {"momentum", as_python_float(momentum_)},
            {"epsilon", as_python_float(epsilon_)},
            {"centered", centered_}};
  }
  void bind_slots() override {
    v_ = slot_or_null("velocity");
    mom_ = slot_or_null("momentum");
    ag_ = slot_or_null("average_gradient");
  }
  void update(float* w, const float* g, int64_t offset, int64_t size) override {
    float* v = v_ + offset;
    float* mom = mom_ ? mom_ + offset : nullptr;
    float* ag = ag_ ? ag_ + offset : nullptr;
    const float lr = learning_rate_, rho = rho_, c = one_minus_rho_, eps = epsilon_, mu = momentum_;
    for (int64_t i = 0; i < size; ++i) {
      // v = rho*v + (1-rho)*g^2; epsilon is inside the sqrt.
      v[i] = rho * v[i] + c * (g[i] * g[i]);
      float denom;
      if (ag) {
        ag[i] = rho * ag[i] + c * g[i];
        denom = v[i] - ag[i] * ag[i] + eps;
      } else {
        denom = v[i] + eps;
      }
      const float increment = (lr * g[i]) / std::sqrt(denom);
      if (mom) {
        mom[i] = mu * mom[i] + increment;
        w[i] -= mom[i];
      } else {
        w[i] -= increment;
      }
    }
  }

  float rho_, momentum_, epsilon_;
  bool centered_;
  float one_minus_rho_;
  float *v_ = nullptr, *mom_ = nullptr, *ag_ = nullptr;
};

// ---- JSON ----

std::optional<float> optional_float(const nlohmann::json& v, const std::string& key) {
  if (v.is_null()) return std::nullopt;
  if (!v.is_number()) throw std::invalid_argument("optimizer config: " + key + " must be a number or null");
  return v.get<float>();
}
float number(const nlohmann::json& v, const std::string& key) {
  if (!v.is_number()) throw std::invalid_argument("optimizer config: " + key + " must be a number");
  return v.get<float>();
}

std::string canonical_class(const std::string& id) {
  // Keras 3 optimizers.get(): lower-case identifiers and class names.
  if (id == "adam" || id == "Adam") return "Adam";
  if (id == "adamw" || id == "AdamW") return "AdamW";
  if (id == "sgd" || id == "SGD") return "SGD";
  if (id == "rmsprop" || id == "RMSprop") return "RMSprop";
  throw std::invalid_argument("unknown optimizer '" + id + "'");
}

std::shared_ptr<Optimizer> build_from_config(const std::string& cls, const nlohmann::json& config) {
  if (!config.is_object()) throw std::invalid_argument("optimizer config for " + cls + " must be an object");
  std::map<std::string, nlohmann::json> known;
  ClipOptions clip;
  std::optional<float> weight_decay;
  std::optional<float> lr;
  std::shared_ptr<const schedules::LearningRateSchedule> schedule;
  std::string name;
  for (const auto& [key, v] : config.items()) {
    if (key == "learning_rate" || key == "lr") {
      if (v.is_object()) {
        try {
          schedule = schedules::schedule_from_json(v);
        } catch (const std::invalid_argument& e) {
          throw std::invalid_argument("optimizer " + cls + ": learning_rate: " + e.what());
        }
      } else {
        lr = number(v, key);
      }
    } else if (key == "name") {
      if (!v.is_null()) name = v.get<std::string>();
    } else if (key == "weight_decay") {
      weight_decay = optional_float(v, key);
    } else if (key == "clipnorm") {
      clip.clipnorm = optional_float(v, key);
    } else if (key == "clipvalue") {
      clip.clipvalue = optional_float(v, key);
    } else if (key == "global_clipnorm") {
      clip.global_clipnorm = optional_float(v, key);
    } else if (key == "use_ema") {
      if (v.get<bool>()) throw std::invalid_argument("optimizer " + cls + ": use_ema is not supported");
    } else if (key == "loss_scale_factor" || key == "gradient_accumulation_steps") {
      if (!v.is_null()) throw std::invalid_argument("optimizer " + cls + ": " + key + " is not supported");
    } else if (key == "ema_momentum" || key == "ema_overwrite_frequency" || key == "jit_compile" ||
               key == "is_legacy_optimizer" || key == "decay") {
      // Only meaningful with use_ema, or ignored by Keras 3 itself (decay, jit_compile).
    } else {
      known[key] = v;
    }
  }
  auto take_float = [&](const char* key, float def) {
    auto it = known.find(key);
    if (it == known.end()) return def;
    const float f = number(it->second, key);
    known.erase(it);
    return f;
  };
  auto take_bool = [&](const char* key, bool def) {
    auto it = known.find(key);
    if (it == known.end()) return def;
    const bool b = it->second.get<bool>();
    known.erase(it);
    return b;
  };
  std::shared_ptr<Optimizer> opt;
  if (cls == "Adam" || cls == "AdamW") {
    const bool w = cls == "AdamW";
    const float b1 = take_float("beta_1", 0.9f), b2 = take_float("beta_2", 0.999f);
    const float eps = take_float("epsilon", 1e-7f);
    const bool ams = take_bool("amsgrad", false);
    if (w) {
      // adamw.py: default 0.004 and weight_decay=None is an error.
      if (!config.contains("weight_decay")) weight_decay = 0.004f;
      if (!weight_decay) throw std::invalid_argument("AdamW: weight_decay must be a float, got null");
      opt = std::make_shared<AdamWOptimizer>(name.empty() ? "adamw" : name, lr.value_or(0.001f), b1, b2, eps,
                                             ams, clip, weight_decay);
    } else {
      opt = std::make_shared<AdamOptimizer>(name.empty() ? "adam" : name, lr.value_or(0.001f), b1, b2, eps, ams,
                                            clip, weight_decay);
    }
  } else if (cls == "SGD") {
    const float mu = take_float("momentum", 0.0f);
    const bool nesterov = take_bool("nesterov", false);
    opt = std::make_shared<SGDOptimizer>(name.empty() ? "SGD" : name, lr.value_or(0.01f), mu, nesterov, clip,
                                         weight_decay);
  } else {
    const float rho = take_float("rho", 0.9f), mu = take_float("momentum", 0.0f);
    const float eps = take_float("epsilon", 1e-7f);
    const bool centered = take_bool("centered", false);
    opt = std::make_shared<RMSpropOptimizer>(name.empty() ? "rmsprop" : name, lr.value_or(0.001f), rho, mu, eps,
                                             centered, clip, weight_decay);
  }
  if (!known.empty())
    throw std::invalid_argument("optimizer " + cls + ": unknown config key '" + known.begin()->first + "'");
  opt->set_learning_rate_schedule(std::move(schedule));
  return opt;
}

}  // namespace

// base_optimizer._clip_gradients: clipnorm (per variable) wins, else global_clipnorm, else
// clipvalue; each only when > 0. The constructor already refuses more than one.
void Optimizer::clip(float* grads) const {
  if (clip_.clipnorm && *clip_.clipnorm > 0.0f) {
    // _clip_by_norm: g * clipnorm / max(||g||, clipnorm); a zero gradient stays zero.
    const float c = *clip_.clipnorm;
    for (const auto& v : variables_) {
      float* g = grads + v.offset;
      double l2sum = 0.0;
      for (int64_t i = 0; i < v.size; ++i) l2sum += static_cast<double>(g[i]) * g[i];
      const float norm = static_cast<float>(std::sqrt(l2sum));
      const float divisor = std::max(norm, c);
      for (int64_t i = 0; i < v.size; ++i) g[i] = (g[i] * c) / divisor;
    }
  } else if (clip_.global_clipnorm && *clip_.global_clipnorm > 0.0f) {
    // clip_by_global_norm: scale = c * min(1/norm, 1/c), plus (norm - norm) so an inf/NaN
    // norm poisons every gradient instead of passing through.
    const float c = *clip_.global_clipnorm;
    double l2sum = 0.0;
    for (const auto& v : variables_) {
      const float* g = grads + v.offset;
      for (int64_t i = 0; i < v.size; ++i) l2sum += static_cast<double>(g[i]) * g[i];
    }
    const float norm = static_cast<float>(std::sqrt(l2sum));
    const float scale = c * std::min(1.0f / norm, 1.0f / c) + (norm - norm);
    for (const auto& v : variables_) {
      float* g = grads + v.offset;
      for (int64_t i = 0; i < v.size; ++i) g[i] *= scale;
    }
  } else if (clip_.clipvalue && *clip_.clipvalue > 0.0f) {
    const float c = *clip_.clipvalue;
    for (const auto& v : variables_) {
      float* g = grads + v.offset;
      for (int64_t i = 0; i < v.size; ++i) g[i] = std::clamp(g[i], -c, c);
    }
  }
}

void Optimizer::set_learning_rate(float lr) {
  if (schedule_)
    throw std::logic_error(class_name() + ": this optimizer was created with a LearningRateSchedule (" +
                           schedule_->class_name() + ") as its learning rate, hence its learning rate is not settable");
  if (!std::isfinite(lr))
    throw std::invalid_argument(class_name() + ": learning_rate must be a finite number, got " + std::to_string(lr));
  learning_rate_ = lr;
}

namespace {
std::shared_ptr<Optimizer> with_schedule(std::shared_ptr<Optimizer> opt,
                                         std::shared_ptr<const schedules::LearningRateSchedule> schedule) {
  opt->set_learning_rate_schedule(std::move(schedule));
  return opt;
}
}  // namespace

std::shared_ptr<Optimizer> Adam(AdamOptions o) {
  return with_schedule(std::make_shared<AdamOptimizer>("adam", o.learning_rate, o.beta_1, o.beta_2, o.epsilon,
                                                       o.amsgrad, o.clip, std::nullopt),
                       o.learning_rate_schedule);
}
std::shared_ptr<Optimizer> AdamW(AdamWOptions o) {
  return with_schedule(std::make_shared<AdamWOptimizer>("adamw", o.learning_rate, o.beta_1, o.beta_2, o.epsilon,
                                                        o.amsgrad, o.clip, o.weight_decay),
                       o.learning_rate_schedule);
}
std::shared_ptr<Optimizer> SGD(SGDOptions o) {
  return with_schedule(
      std::make_shared<SGDOptimizer>("SGD", o.learning_rate, o.momentum, o.nesterov, o.clip, std::nullopt),
      o.learning_rate_schedule);
}
std::shared_ptr<Optimizer> RMSprop(RMSpropOptions o) {
  return with_schedule(std::make_shared<RMSpropOptimizer>("rmsprop", o.learning_rate, o.rho, o.momentum, o.epsilon,
                                                          o.centered, o.clip, std::nullopt),
                       o.learning_rate_schedule);
}

std::shared_ptr<Optimizer> optimizer_from_json(const nlohmann::json& j) {
  if (j.is_string()) return build_from_config(canonical_class(j.get<std::string>()), nlohmann::json::object());
  if (!j.is_object() || !j.contains("class_name"))
    throw std::invalid_argument("optimizer must be a name or {\"class_name\", \"config\"}, got " + j.dump());
  return build_from_config(canonical_class(j.at("class_name").get<std::string>()),
                           j.value("config", nlohmann::json::object()));
}

}  // namespace attn::optimizers
