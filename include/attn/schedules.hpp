// Learning-rate schedules (keras/src/optimizers/schedules/learning_rate_schedule.py): the rate
// for optimizer step `step` (the iteration count before the step), computed in float32 as Keras
// does. Give one to an optimizer with its options' learning_rate_schedule; it is saved in the
// optimizer's config as Keras serialises it, and such a config loads back.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace attn::optimizers::schedules {

class LearningRateSchedule {
 public:
  virtual ~LearningRateSchedule() = default;
  virtual float operator()(int64_t step) const = 0;
  virtual std::string class_name() const = 0;
  virtual nlohmann::json get_config() const = 0;  // the arguments, as Keras' get_config()
};

// initial_learning_rate * decay_rate ^ (step / decay_steps), the exponent floored with staircase.
struct ExponentialDecayOptions {
  double initial_learning_rate = 0.0;
  int64_t decay_steps = 0;  // > 0
  double decay_rate = 0.0;
  bool staircase = false;
  std::string name = "ExponentialDecay";
};
// values[0] while step <= boundaries[0], values[i] while step <= boundaries[i], then values.back().
struct PiecewiseConstantDecayOptions {
  std::vector<int64_t> boundaries;
  std::vector<double> values;  // one more than boundaries
  std::string name = "PiecewiseConstant";
};
// initial_learning_rate / (1 + decay_rate * step / decay_steps), the quotient floored with staircase.
struct InverseTimeDecayOptions {
  double initial_learning_rate = 0.0;
  double decay_steps = 0.0;  // > 0
  double decay_rate = 0.0;
  bool staircase = false;
  std::string name = "InverseTimeDecay";
};
// Optional linear warmup from initial_learning_rate to warmup_target over warmup_steps, then a
// cosine from warmup_target (or initial_learning_rate) down to alpha times it over decay_steps.
struct CosineDecayOptions {
  double initial_learning_rate = 0.0;
  int64_t decay_steps = 0;  // > 0
  double alpha = 0.0;
  std::string name = "CosineDecay";
  std::optional<double> warmup_target = std::nullopt;
  int64_t warmup_steps = 0;
};
// SGDR (Loshchilov & Hutter): a cosine from 1 down to alpha (times initial_learning_rate) over
// first_decay_steps, then a warm restart; period i lasts first_decay_steps * t_mul^i steps and
// starts at m_mul^i times the initial rate.
struct CosineDecayRestartsOptions {
  double initial_learning_rate = 0.0;
  int64_t first_decay_steps = 0;  // > 0
  double t_mul = 2.0;
  double m_mul = 1.0;
  double alpha = 0.0;
  std::string name = "SGDRDecay";
};
// (initial - end) * (1 - min(step, decay_steps) / decay_steps) ^ power + end; with cycle the
// decay restarts at each multiple of decay_steps.
struct PolynomialDecayOptions {
  double initial_learning_rate = 0.0;
  int64_t decay_steps = 0;  // > 0
  double end_learning_rate = 0.0001;
  double power = 1.0;
  bool cycle = false;
  std::string name = "PolynomialDecay";
};

// Each throws std::invalid_argument for arguments Keras refuses (decay_steps <= 0, lengths).
std::shared_ptr<LearningRateSchedule> ExponentialDecay(ExponentialDecayOptions options);
std::shared_ptr<LearningRateSchedule> PiecewiseConstantDecay(PiecewiseConstantDecayOptions options);
std::shared_ptr<LearningRateSchedule> InverseTimeDecay(InverseTimeDecayOptions options);
std::shared_ptr<LearningRateSchedule> CosineDecay(CosineDecayOptions options);
std::shared_ptr<LearningRateSchedule> CosineDecayRestarts(CosineDecayRestartsOptions options);
std::shared_ptr<LearningRateSchedule> PolynomialDecay(PolynomialDecayOptions options);

// Keras' serialized form: {"module": "keras.optimizers.schedules", "class_name", "config",
// "registered_name": null}.
nlohmann::json schedule_to_json(const LearningRateSchedule& schedule);
// From that form (or tf.keras' {"class_name", "config"}); throws std::invalid_argument naming
// an unknown class or a bad argument.
std::shared_ptr<LearningRateSchedule> schedule_from_json(const nlohmann::json& j);

}  // namespace attn::optimizers::schedules
