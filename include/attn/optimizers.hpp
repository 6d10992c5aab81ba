// Optimizers with Keras' formulas and defaults (keras-semantics.md section 4).
// Parameters, gradients and optimizer state are each one contiguous float buffer;
// a variable is a slice of it, so an update is one pass over memory.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "attn/schedules.hpp"

namespace attn::optimizers {

// One trainable variable inside the contiguous buffers.
struct VariableSlice {
  int64_t offset = 0;
  int64_t size = 0;
  std::string name;  // Keras variable name, e.g. "kernel"
};

struct ClipOptions {
  std::optional<float> clipnorm;         // per variable: g *= clipnorm / max(norm(g), clipnorm)
  std::optional<float> clipvalue;        // elementwise clip to [-v, v]
  std::optional<float> global_clipnorm;  // all variables together
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual std::string class_name() const = 0;  // "Adam"
  virtual nlohmann::json get_config() const = 0;

  // Allocates state for these variables (total floats = sum of sizes). Called once by the model.
  virtual void build(const std::vector<VariableSlice>& variables) = 0;
  // One step: clip grads (in place) as configured, then update params. Increments iterations().
  virtual void apply(float* params, float* grads) = 0;

  // The same step in three parts, so threads can each update a range of the buffers:
  // begin_step(grads) clips (it needs all gradients) and computes the step's scalars;
  // update_range() is elementwise, so any split of [0, total) gives the same bits as
  // apply(); end_step() counts the iteration. apply() == begin + update_range(all) + end.
  virtual void begin_step(float* grads) = 0;
  virtual void update_range(float* params, const float* grads, int64_t begin, int64_t end) = 0;
  virtual void end_step() { ++iterations_; }
  // True when begin_step() reads the gradients (clipping); then they must be complete first.
  // Otherwise it reads none (grads may be null) and update_range() may follow per range as
  // each range's gradients complete.
  bool clips() const { return clip_.clipnorm || clip_.clipvalue || clip_.global_clipnorm; }

  int64_t iterations() const { return iterations_; }
  void set_iterations(int64_t it) { iterations_ = it; }
  // The rate the next step uses: the schedule's value at iterations() when there is one.
  float learning_rate() const { return schedule_ ? (*schedule_)(iterations_) : learning_rate_; }
  // As in Keras, a rate that comes from a schedule cannot be set: throws std::logic_error.
  void set_learning_rate(float lr);
  void set_learning_rate_schedule(std::shared_ptr<const schedules::LearningRateSchedule> schedule) {
    schedule_ = std::move(schedule);
  }
  const schedules::LearningRateSchedule* learning_rate_schedule() const { return schedule_.get(); }
  // The optimizer's own state slots in Keras order, e.g. Adam: {"m", "v"} (+ "v_hat" for amsgrad).
  // state(slot) is a buffer laid out like the parameters.
  virtual std::vector<std::string> state_slots() const = 0;
  virtual float* state(const std::string& slot) = 0;

 protected:
  void clip(float* grads) const;  // applies ClipOptions over variables_
  float learning_rate_ = 0.001f;  // with a schedule, the value begin_step() computed
  std::shared_ptr<const schedules::LearningRateSchedule> schedule_;
  int64_t iterations_ = 0;
  ClipOptions clip_;
  std::vector<VariableSlice> variables_;
};

struct AdamOptions {
  float learning_rate = 0.001f;
  float beta_1 = 0.9f;
  float beta_2 = 0.999f;
  float epsilon = 1e-7f;
  bool amsgrad = false;
  ClipOptions clip = {};
  std::shared_ptr<const schedules::LearningRateSchedule> learning_rate_schedule = nullptr;  // replaces learning_rate
};
struct AdamWOptions {
  float learning_rate = 0.001f;
  float weight_decay = 0.004f;
  float beta_1 = 0.9f;
  float beta_2 = 0.999f;
  float epsilon = 1e-7f;
  bool amsgrad = false;
  ClipOptions clip = {};
  std::shared_ptr<const schedules::LearningRateSchedule> learning_rate_schedule = nullptr;  // replaces learning_rate
};
struct SGDOptions {
  float learning_rate = 0.01f;
  float momentum = 0.0f;
  bool nesterov = false;
  ClipOptions clip = {};
  std::shared_ptr<const schedules::LearningRateSchedule> learning_rate_schedule = nullptr;  // replaces learning_rate
};
struct RMSpropOptions {
  float learning_rate = 0.001f;
  float rho = 0.9f;
  float momentum = 0.0f;
  float epsilon = 1e-7f;
  bool centered = false;
  ClipOptions clip = {};
  std::shared_ptr<const schedules::LearningRateSchedule> learning_rate_schedule = nullptr;  // replaces learning_rate
};

std::shared_ptr<Optimizer> Adam(AdamOptions options = {});
std::shared_ptr<Optimizer> AdamW(AdamWOptions options = {});
std::shared_ptr<Optimizer> SGD(SGDOptions options = {});
std::shared_ptr<Optimizer> RMSprop(RMSpropOptions options = {});

// From a Keras name ("adam") or a serialized {"class_name":..., "config":...}.
std::shared_ptr<Optimizer> optimizer_from_json(const nlohmann::json& j);

}  // namespace attn::optimizers
