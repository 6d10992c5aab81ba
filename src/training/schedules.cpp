// Learning-rate schedules, each computed in float32 as keras/src/optimizers/schedules does.
#include "attn/schedules.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>

namespace attn::optimizers::schedules {
namespace {

void require_positive_steps(double steps, const std::string& cls, const char* arg = "decay_steps") {
  if (!(steps > 0.0))
    throw std::invalid_argument(cls + ": argument `" + arg + "` must be > 0, got " + std::to_string(steps));
}

class Exponential : public LearningRateSchedule {
 public:
  explicit Exponential(ExponentialDecayOptions o) : o_(std::move(o)) {
    require_positive_steps(static_cast<double>(o_.decay_steps), class_name());
  }
  float operator()(int64_t step) const override {
    float p = static_cast<float>(step) / static_cast<float>(o_.decay_steps);
    if (o_.staircase) p = std::floor(p);
    return static_cast<float>(o_.initial_learning_rate) * std::pow(static_cast<float>(o_.decay_rate), p);
  }
  std::string class_name() const override { return "ExponentialDecay"; }
  nlohmann::json get_config() const override {
    return {{"initial_learning_rate", o_.initial_learning_rate}, {"decay_steps", o_.decay_steps},
            {"decay_rate", o_.decay_rate}, {"staircase", o_.staircase}, {"name", o_.name}};
  }

 private:
  ExponentialDecayOptions o_;
};

class Piecewise : public LearningRateSchedule {
 public:
  explicit Piecewise(PiecewiseConstantDecayOptions o) : o_(std::move(o)) {
    if (o_.values.size() != o_.boundaries.size() + 1)
      throw std::invalid_argument("PiecewiseConstantDecay: the length of boundaries should be 1 less than the length "
                                  "of values (got " + std::to_string(o_.boundaries.size()) + " boundaries and " +
                                  std::to_string(o_.values.size()) + " values)");
  }
  float operator()(int64_t step) const override {
    // Keras sums value * [step in its interval]; exactly one interval holds the step.
    size_t i = 0;
    while (i < o_.boundaries.size() && step > o_.boundaries[i]) ++i;
    return static_cast<float>(o_.values[i]);
  }
  std::string class_name() const override { return "PiecewiseConstantDecay"; }
  nlohmann::json get_config() const override {
    return {{"boundaries", o_.boundaries}, {"values", o_.values}, {"name", o_.name}};
  }

 private:
  PiecewiseConstantDecayOptions o_;
};

class InverseTime : public LearningRateSchedule {
 public:
  explicit InverseTime(InverseTimeDecayOptions o) : o_(std::move(o)) { require_positive_steps(o_.decay_steps, class_name()); }
  float operator()(int64_t step) const override {
    float p = static_cast<float>(step) / static_cast<float>(o_.decay_steps);
    if (o_.staircase) p = std::floor(p);
    return static_cast<float>(o_.initial_learning_rate) / (1.0f + static_cast<float>(o_.decay_rate) * p);
  }
  std::string class_name() const override { return "InverseTimeDecay"; }
  nlohmann::json get_config() const override {
    return {{"initial_learning_rate", o_.initial_learning_rate}, {"decay_steps", o_.decay_steps},
            {"decay_rate", o_.decay_rate}, {"staircase", o_.staircase}, {"name", o_.name}};
  }

 private:
  InverseTimeDecayOptions o_;
};

class Cosine : public LearningRateSchedule {
 public:
  explicit Cosine(CosineDecayOptions o) : o_(std::move(o)) {
    require_positive_steps(static_cast<double>(o_.decay_steps), class_name());
  }
  float operator()(int64_t step) const override {
    const float initial = static_cast<float>(o_.initial_learning_rate);
    const float decay_steps = static_cast<float>(o_.decay_steps);
    float s = static_cast<float>(step);
    if (!o_.warmup_target) return decayed(std::min(s, decay_steps), decay_steps, initial);
    const float target = static_cast<float>(*o_.warmup_target);
    const float warmup_steps = static_cast<float>(o_.warmup_steps);
    s = std::min(s, decay_steps + warmup_steps);
    if (s < warmup_steps) return (target - initial) * (s / warmup_steps) + initial;
    return decayed(s - warmup_steps, decay_steps, target);
  }
  std::string class_name() const override { return "CosineDecay"; }
  nlohmann::json get_config() const override {
    return {{"initial_learning_rate", o_.initial_learning_rate},
            {"decay_steps", o_.decay_steps},
            {"alpha", o_.alpha},
            {"name", o_.name},
            {"warmup_target", o_.warmup_target ? nlohmann::json(*o_.warmup_target) : nlohmann::json(nullptr)},
            {"warmup_steps", o_.warmup_steps}};
  }

 private:
  float decayed(float s, float decay_steps, float from) const {
    const float fraction = s / decay_steps;
    const float cosine = 0.5f * (1.0f + std::cos(std::numbers::pi_v<float> * fraction));
    const float alpha = static_cast<float>(o_.alpha);
    return from * (static_cast<float>(1.0 - o_.alpha) * cosine + alpha);
  }
  CosineDecayOptions o_;
};

class CosineRestarts : public LearningRateSchedule {
 public:
  explicit CosineRestarts(CosineDecayRestartsOptions o) : o_(std::move(o)) {
    require_positive_steps(static_cast<double>(o_.first_decay_steps), class_name(), "first_decay_steps");
  }
  float operator()(int64_t step) const override {
    // Every quantity a float32 tensor, as Keras casts them all to the rate's dtype.
    const float first = static_cast<float>(o_.first_decay_steps), alpha = static_cast<float>(o_.alpha);
    const float t_mul = static_cast<float>(o_.t_mul), m_mul = static_cast<float>(o_.m_mul);
    float fraction = static_cast<float>(step) / first;  // of the first period, then of the current one
    float restart = 0.0f;
    if (t_mul == 1.0f) {
      restart = std::floor(fraction);
      fraction -= restart;
    } else {
      // Periods 0..i-1 span (1 - t_mul^i) / (1 - t_mul) first periods.
      restart = std::floor(std::log(1.0f - fraction * (1.0f - t_mul)) / std::log(t_mul));
      const float before = (1.0f - std::pow(t_mul, restart)) / (1.0f - t_mul);
      fraction = (fraction - before) / std::pow(t_mul, restart);
    }
    const float cosine = 0.5f * std::pow(m_mul, restart) * (1.0f + std::cos(std::numbers::pi_v<float> * fraction));
    return static_cast<float>(o_.initial_learning_rate) * ((1.0f - alpha) * cosine + alpha);
  }
  std::string class_name() const override { return "CosineDecayRestarts"; }
  nlohmann::json get_config() const override {
    return {{"initial_learning_rate", o_.initial_learning_rate},
            {"first_decay_steps", o_.first_decay_steps},
            {"t_mul", o_.t_mul},
            {"m_mul", o_.m_mul},
            {"alpha", o_.alpha},
            {"name", o_.name}};
  }

 private:
  CosineDecayRestartsOptions o_;
};

class Polynomial : public LearningRateSchedule {
 public:
  explicit Polynomial(PolynomialDecayOptions o) : o_(std::move(o)) {
    require_positive_steps(static_cast<double>(o_.decay_steps), class_name());
  }
  float operator()(int64_t step) const override {
    const float initial = static_cast<float>(o_.initial_learning_rate);
    const float end = static_cast<float>(o_.end_learning_rate);
    float s = static_cast<float>(step), decay_steps = static_cast<float>(o_.decay_steps);
    if (o_.cycle) {
      // The first multiple of decay_steps at or above the step (1 at step 0).
      const float multiplier = s == 0.0f ? 1.0f : std::ceil(s / static_cast<float>(o_.decay_steps));
      decay_steps *= multiplier;
    } else {
      s = std::min(s, decay_steps);
    }
    const float p = s / decay_steps;
    return (initial - end) * std::pow(1.0f - p, static_cast<float>(o_.power)) + end;
  }
  std::string class_name() const override { return "PolynomialDecay"; }
  nlohmann::json get_config() const override {
    return {{"initial_learning_rate", o_.initial_learning_rate}, {"decay_steps", o_.decay_steps},
            {"end_learning_rate", o_.end_learning_rate}, {"power", o_.power},
            {"cycle", o_.cycle}, {"name", o_.name}};
  }

 private:
  PolynomialDecayOptions o_;
};

// Reads a schedule's config: every key must be one the class takes.
class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& config, std::string cls) : config_(config), cls_(std::move(cls)) {
    if (!config_.is_object()) throw std::invalid_argument(cls_ + ": the schedule's config must be an object");
  }
  double number(const char* key, std::optional<double> fallback = std::nullopt) {
    used_.push_back(key);
    if (!config_.contains(key)) {
      if (fallback) return *fallback;
      throw std::invalid_argument(cls_ + ": the schedule's config has no '" + key + "'");
    }
    const nlohmann::json& v = config_.at(key);
    if (!v.is_number()) throw std::invalid_argument(cls_ + ": '" + key + "' must be a number, got " + v.dump());
    return v.get<double>();
  }
  int64_t integer(const char* key, std::optional<int64_t> fallback = std::nullopt) {
    const double v = number(key, fallback ? std::optional<double>(static_cast<double>(*fallback)) : std::nullopt);
    if (v != std::floor(v)) throw std::invalid_argument(cls_ + ": '" + key + "' must be a whole number");
    return static_cast<int64_t>(v);
  }
  bool boolean(const char* key, bool fallback) {
    used_.push_back(key);
    if (!config_.contains(key)) return fallback;
    if (!config_.at(key).is_boolean()) throw std::invalid_argument(cls_ + ": '" + key + "' must be true or false");
    return config_.at(key).get<bool>();
  }
  std::optional<double> optional_number(const char* key) {
    if (!config_.contains(key) || config_.at(key).is_null()) {
      used_.push_back(key);
      return std::nullopt;
    }
    return number(key);
  }
  std::string name(const std::string& fallback) {
    used_.push_back("name");
    return config_.contains("name") && config_.at("name").is_string() ? config_.at("name").get<std::string>()
                                                                       : fallback;
  }
  template <typename T>
  std::vector<T> list(const char* key) {
    used_.push_back(key);
    if (!config_.contains(key) || !config_.at(key).is_array())
      throw std::invalid_argument(cls_ + ": '" + key + "' must be a list of numbers");
    std::vector<T> out;
    for (const auto& v : config_.at(key)) {
      if (!v.is_number()) throw std::invalid_argument(cls_ + ": '" + key + "' must be a list of numbers");
      out.push_back(v.get<T>());
    }
    return out;
  }
  void finish() const {
    for (const auto& [key, v] : config_.items())
      if (std::find(used_.begin(), used_.end(), key) == used_.end())
        throw std::invalid_argument(cls_ + ": unknown schedule argument '" + key + "'");
  }

 private:
  const nlohmann::json& config_;
  std::string cls_;
  std::vector<std::string> used_;
};

}  // namespace

std::shared_ptr<LearningRateSchedule> ExponentialDecay(ExponentialDecayOptions o) {
  return std::make_shared<Exponential>(std::move(o));
}
std::shared_ptr<LearningRateSchedule> PiecewiseConstantDecay(PiecewiseConstantDecayOptions o) {
  return std::make_shared<Piecewise>(std::move(o));
}
std::shared_ptr<LearningRateSchedule> InverseTimeDecay(InverseTimeDecayOptions o) {
  return std::make_shared<InverseTime>(std::move(o));
}
std::shared_ptr<LearningRateSchedule> CosineDecay(CosineDecayOptions o) { return std::make_shared<Cosine>(std::move(o)); }
std::shared_ptr<LearningRateSchedule> CosineDecayRestarts(CosineDecayRestartsOptions o) {
  return std::make_shared<CosineRestarts>(std::move(o));
}
std::shared_ptr<LearningRateSchedule> PolynomialDecay(PolynomialDecayOptions o) {
  return std::make_shared<Polynomial>(std::move(o));
}

nlohmann::json schedule_to_json(const LearningRateSchedule& schedule) {
  return {{"module", "keras.optimizers.schedules"},
          {"class_name", schedule.class_name()},
          {"config", schedule.get_config()},
          {"registered_name", nullptr}};
}

std::shared_ptr<LearningRateSchedule> schedule_from_json(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("class_name") || !j.at("class_name").is_string())
    throw std::invalid_argument("learning-rate schedule must be {\"class_name\", \"config\"}, got " + j.dump());
  const std::string cls = j.at("class_name").get<std::string>();
  const nlohmann::json config = j.value("config", nlohmann::json::object());
  ConfigReader r(config, cls);
  std::shared_ptr<LearningRateSchedule> s;
  if (cls == "ExponentialDecay") {
    ExponentialDecayOptions o{.initial_learning_rate = r.number("initial_learning_rate"),
                              .decay_steps = r.integer("decay_steps"),
                              .decay_rate = r.number("decay_rate"),
                              .staircase = r.boolean("staircase", false),
                              .name = r.name("ExponentialDecay")};
    s = ExponentialDecay(o);
  } else if (cls == "PiecewiseConstantDecay") {
    PiecewiseConstantDecayOptions o{.boundaries = r.list<int64_t>("boundaries"),
                                    .values = r.list<double>("values"),
                                    .name = r.name("PiecewiseConstant")};
    s = PiecewiseConstantDecay(o);
  } else if (cls == "InverseTimeDecay") {
    InverseTimeDecayOptions o{.initial_learning_rate = r.number("initial_learning_rate"),
                              .decay_steps = r.number("decay_steps"),
                              .decay_rate = r.number("decay_rate"),
                              .staircase = r.boolean("staircase", false),
                              .name = r.name("InverseTimeDecay")};
    s = InverseTimeDecay(o);
  } else if (cls == "CosineDecay") {
    CosineDecayOptions o{.initial_learning_rate = r.number("initial_learning_rate"),
                         .decay_steps = r.integer("decay_steps"),
                         .alpha = r.number("alpha", 0.0),
                         .name = r.name("CosineDecay"),
                         .warmup_target = r.optional_number("warmup_target"),
                         .warmup_steps = r.integer("warmup_steps", 0)};
    s = CosineDecay(o);
  } else if (cls == "CosineDecayRestarts") {
    CosineDecayRestartsOptions o{.initial_learning_rate = r.number("initial_learning_rate"),
                                 .first_decay_steps = r.integer("first_decay_steps"),
                                 .t_mul = r.number("t_mul", 2.0),
                                 .m_mul = r.number("m_mul", 1.0),
                                 .alpha = r.number("alpha", 0.0),
                                 .name = r.name("SGDRDecay")};
    s = CosineDecayRestarts(o);
  } else if (cls == "PolynomialDecay") {
    PolynomialDecayOptions o{.initial_learning_rate = r.number("initial_learning_rate"),
                             .decay_steps = r.integer("decay_steps"),
                             .end_learning_rate = r.number("end_learning_rate", 0.0001),
                             .power = r.number("power", 1.0),
                             .cycle = r.boolean("cycle", false),
                             .name = r.name("PolynomialDecay")};
    s = PolynomialDecay(o);
  } else {
    throw std::invalid_argument("learning-rate schedule '" + cls +
                                "' is not supported (ExponentialDecay, PiecewiseConstantDecay, InverseTimeDecay, "
                                "CosineDecay, CosineDecayRestarts, PolynomialDecay are)");
  }
  r.finish();
  return s;
}

}  // namespace attn::optimizers::schedules
