// Optimizers: steps against double-precision twins of Keras 3's formulas (written out here
// from keras/src/optimizers/*.py), epsilon placement, clipping, slots, configs and JSON.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "attn/optimizers.hpp"

namespace attn::optimizers {
namespace {

// Two variables ("kernel" of 3, "bias" of 2) in one contiguous buffer.
const std::vector<VariableSlice> kVars = {{0, 3, "kernel"}, {3, 2, "bias"}};
const std::vector<float> kW0 = {1.0f, -2.0f, 0.5f, 0.25f, -0.75f};
const std::vector<std::vector<float>> kGrads = {
    {0.1f, -0.3f, 0.05f, 1.5f, -0.02f},
    {-0.2f, 0.1f, 0.04f, 0.5f, 0.3f},
    {0.3f, -0.05f, -0.1f, -1.0f, 0.01f},
};

// ClipOptions' members have no default initialisers, so build them field by field.
ClipOptions clip_norm(float v) { ClipOptions c; c.clipnorm = v; return c; }
ClipOptions clip_global(float v) { ClipOptions c; c.global_clipnorm = v; return c; }
ClipOptions clip_value(float v) { ClipOptions c; c.clipvalue = v; return c; }

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// Runs `steps` steps of opt from kW0 with kGrads, returning the parameters.
std::vector<float> run(Optimizer& opt, int steps) {
  opt.build(kVars);
  std::vector<float> w = kW0;
  for (int s = 0; s < steps; ++s) {
    std::vector<float> g = kGrads[s % kGrads.size()];
    opt.apply(w.data(), g.data());
  }
  return w;
}

void expect_close(const std::vector<float>& got, const std::vector<double>& want, double tol = 2e-7) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "index " << i;
}

struct AdamTwin {
  double lr = 0.001, b1 = 0.9, b2 = 0.999, eps = 1e-7, wd = 0.0;
  bool amsgrad = false;
  int64_t t = 0;
  std::vector<double> m = std::vector<double>(5, 0.0), v = m, vhat = m;
  void step(std::vector<double>& w, const std::vector<float>& g) {
    for (auto& x : w) x -= x * wd * lr;  // decoupled decay first (AdamW)
    ++t;
    const double alpha = lr * std::sqrt(1 - std::pow(b2, t)) / (1 - std::pow(b1, t));
    for (size_t i = 0; i < w.size(); ++i) {
      m[i] += (g[i] - m[i]) * (1 - b1);
      v[i] += (double(g[i]) * g[i] - v[i]) * (1 - b2);
      vhat[i] = std::max(vhat[i], v[i]);
      w[i] -= alpha * m[i] / (std::sqrt(amsgrad ? vhat[i] : v[i]) + eps);
    }
  }
};

// ---- Adam ----

TEST(OptimAdam, OneStepMatchesFormula) {
  auto opt = Adam();
  auto w = run(*opt, 1);
  AdamTwin twin;
  auto want = to_double(kW0);
  twin.step(want, kGrads[0]);
  expect_close(w, want);
  EXPECT_EQ(opt->iterations(), 1);
  // After one step |dw| is lr for every nonzero gradient (m/sqrt(v) = sign(g) once corrected).
  EXPECT_NEAR(w[0] - kW0[0], -0.001, 1e-6);
}

TEST(OptimAdam, SeveralStepsMatchFormula) {
  auto opt = Adam({.learning_rate = 0.01f});
  auto w = run(*opt, 7);
  AdamTwin twin;
  twin.lr = 0.01;
  auto want = to_double(kW0);
  for (int s = 0; s < 7; ++s) twin.step(want, kGrads[s % 3]);
  expect_close(w, want, 1e-6);
  for (int i = 0; i < 5; ++i) {
    EXPECT_NEAR(opt->state("momentum")[i], twin.m[i], 1e-6);
    EXPECT_NEAR(opt->state("velocity")[i], twin.v[i], 1e-7);
  }
}

TEST(OptimAdam, UsesKerasPythonConstants) {
  // Keras forms 1 - beta_1 in double (0.1) before rounding to float32; 1 - 0.9f would be
  // 0.10000002f. The first momentum of a unit gradient shows which one was used.
  auto opt = Adam();
  opt->build({{0, 1, "w"}});
  float w = 0.0f, g = 1.0f;
  opt->apply(&w, &g);
  EXPECT_EQ(opt->state("momentum")[0], 0.1f);
  EXPECT_NE(opt->state("momentum")[0], 1.0f - 0.9f);
}

TEST(OptimAdam, EpsilonIsOutsideSqrtAndNotBiasCorrected) {
  // Tiny gradient g = 1e-8, one step from 0, lr = 1e-3.
  // Keras: m = 1e-9, v = 1e-19, alpha = lr*sqrt(1-b2)/(1-b1), dw = -alpha*m/(sqrt(v)+eps).
  // Paper (Algorithm 1): m_hat = 1e-8, v_hat = 1e-16, dw = -lr*m_hat/(sqrt(v_hat)+eps).
  auto opt = Adam();
  opt->build({{0, 1, "w"}});
  float w = 0.0f, g = 1e-8f;
  opt->apply(&w, &g);
  const double gd = g;
  const double m = 0.1 * gd, v = 0.001 * gd * gd;
  const double alpha = 1e-3 * std::sqrt(1 - 0.999) / (1 - 0.9);
  const double keras = -alpha * m / (std::sqrt(v) + 1e-7);
  const double paper = -1e-3 * (m / 0.1) / (std::sqrt(v / 0.001) + 1e-7);
  EXPECT_NEAR(w, keras, 1e-5 * std::abs(keras));
  EXPECT_GT(std::abs(paper / keras), 25.0);  // 9.1e-5 vs 3.2e-6: clearly different
}

TEST(OptimAdam, AmsgradKeepsTheMaximumVelocity) {
  // A large gradient then small ones: v shrinks (fast, with beta_2 = 0.9), v_hat keeps its peak.
  auto opt = Adam({.learning_rate = 0.01f, .beta_2 = 0.9f, .amsgrad = true});
  auto plain = Adam({.learning_rate = 0.01f, .beta_2 = 0.9f});
  const std::vector<VariableSlice> one = {{0, 1, "w"}};
  opt->build(one);
  plain->build(one);
  AdamTwin twin;
  twin.lr = 0.01;
  twin.b2 = 0.9;
  twin.amsgrad = true;
  std::vector<double> want = {0.0};
  float w = 0.0f, wp = 0.0f;
  for (float gv : {1.0f, 0.01f, 0.01f, 0.01f}) {
    float g = gv, gp = gv;
    opt->apply(&w, &g);
    plain->apply(&wp, &gp);
    twin.m.resize(1);
    twin.v.resize(1);
    twin.vhat.resize(1);
    twin.step(want, {gv});
  }
  EXPECT_NEAR(w, want[0], 1e-6);
  EXPECT_GT(opt->state("velocity_hat")[0], opt->state("velocity")[0]);
  EXPECT_NEAR(opt->state("velocity_hat")[0], twin.vhat[0], 1e-7);
  EXPECT_GT(std::abs(w - wp), 1e-3);
}

TEST(OptimAdam, IterationsDriveBiasCorrection) {
  auto opt = Adam();
  opt->build(kVars);
  opt->set_iterations(9);
  std::vector<float> w = kW0, g = kGrads[0];
  opt->apply(w.data(), g.data());
  EXPECT_EQ(opt->iterations(), 10);
  AdamTwin twin;
  twin.t = 9;
  auto want = to_double(kW0);
  twin.step(want, kGrads[0]);
  expect_close(w, want);
}

// Keras checks no value; a NaN or infinite rate would only turn every weight into NaN.
TEST(Optimizers, NonFiniteLearningRateIsRefused) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  EXPECT_THROW(Adam({.learning_rate = nan}), std::invalid_argument);
  EXPECT_THROW(SGD({.learning_rate = inf}), std::invalid_argument);
  EXPECT_THROW(RMSprop({.learning_rate = -inf}), std::invalid_argument);
  auto opt = Adam();
  EXPECT_THROW(opt->set_learning_rate(nan), std::invalid_argument);
  EXPECT_FLOAT_EQ(opt->learning_rate(), 0.001f);
  opt->set_learning_rate(-0.5f);  // allowed, as in Keras (gradient ascent)
  EXPECT_FLOAT_EQ(opt->learning_rate(), -0.5f);
}

TEST(OptimAdam, ApplyBeforeBuildThrows) {
  auto opt = Adam();
  float w = 0, g = 0;
  EXPECT_THROW(opt->apply(&w, &g), std::logic_error);
}

// ---- AdamW ----

TEST(OptimAdamW, DecayIsAppliedBeforeTheAdamStep) {
  // Zero gradient: the Adam step is 0 (m = 0), so only w - w*wd*lr remains.
  auto opt = AdamW({.learning_rate = 0.01f, .weight_decay = 0.1f});
  opt->build(kVars);
  std::vector<float> w = kW0, g(5, 0.0f);
  opt->apply(w.data(), g.data());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(w[i], kW0[i] - kW0[i] * 0.1f * 0.01f);

  auto opt2 = AdamW({.learning_rate = 0.01f, .weight_decay = 0.1f});
  auto w2 = run(*opt2, 3);
  AdamTwin twin;
  twin.lr = 0.01;
  twin.wd = 0.1;
  auto want = to_double(kW0);
  for (int s = 0; s < 3; ++s) twin.step(want, kGrads[s]);
  expect_close(w2, want, 1e-6);
}

TEST(OptimAdamW, DefaultsAndConfig) {
  auto opt = AdamW();
  EXPECT_EQ(opt->class_name(), "AdamW");
  auto c = opt->get_config();
  EXPECT_EQ(c["name"], "adamw");
  EXPECT_EQ(c["weight_decay"].get<double>(), 0.004);
  EXPECT_EQ(Adam()->get_config()["weight_decay"], nullptr);
}

// ---- SGD ----

TEST(OptimSGD, PlainMomentumAndNesterov) {
  const double lr = 0.1, mu = 0.9;
  {
    auto opt = SGD({.learning_rate = 0.1f});
    EXPECT_TRUE(opt->state_slots().empty());
    auto w = run(*opt, 2);
    auto want = to_double(kW0);
    for (int s = 0; s < 2; ++s)
      for (int i = 0; i < 5; ++i) want[i] -= lr * kGrads[s][i];
    expect_close(w, want);
  }
  for (bool nesterov : {false, true}) {
    SCOPED_TRACE(nesterov ? "nesterov" : "momentum");
    auto opt = SGD({.learning_rate = 0.1f, .momentum = 0.9f, .nesterov = nesterov});
    EXPECT_EQ(opt->state_slots(), std::vector<std::string>{"momentum"});
    auto w = run(*opt, 3);
    auto want = to_double(kW0);
    std::vector<double> m(5, 0.0);
    for (int s = 0; s < 3; ++s) {
      for (int i = 0; i < 5; ++i) {
        m[i] = mu * m[i] - lr * kGrads[s][i];
        want[i] += nesterov ? mu * m[i] - lr * kGrads[s][i] : m[i];
      }
    }
    expect_close(w, want, 1e-6);
    for (int i = 0; i < 5; ++i) EXPECT_NEAR(opt->state("momentum")[i], m[i], 1e-6);
  }
  EXPECT_THROW(SGD({.momentum = 1.5f}), std::invalid_argument);
}

// ---- RMSprop ----

TEST(OptimRMSprop, KerasDocExample) {
  // rmsprop.py docstring: var = 10, loss = var^2 / 2, lr = 0.1, one minimize -> 9.683772.
  auto opt = RMSprop({.learning_rate = 0.1f});
  opt->build({{0, 1, "var1"}});
  float w = 10.0f, g = 10.0f;
  opt->apply(&w, &g);
  EXPECT_NEAR(w, 9.683772f, 1e-6);
}

TEST(OptimRMSprop, PlainCenteredAndMomentum) {
  const double lr = 0.01, rho = 0.9, eps = 1e-7;
  for (bool centered : {false, true}) {
    for (float mu : {0.0f, 0.5f}) {
      SCOPED_TRACE(std::string(centered ? "centered" : "plain") + " momentum=" + std::to_string(mu));
      auto opt = RMSprop({.learning_rate = 0.01f, .momentum = mu, .centered = centered});
      auto w = run(*opt, 3);
      auto want = to_double(kW0);
      std::vector<double> v(5, 0.0), mg(5, 0.0), mom(5, 0.0);
      for (int s = 0; s < 3; ++s) {
        for (int i = 0; i < 5; ++i) {
          const double g = kGrads[s][i];
          v[i] = rho * v[i] + (1 - rho) * g * g;
          double denom = v[i] + eps;  // epsilon inside the sqrt
          if (centered) {
            mg[i] = rho * mg[i] + (1 - rho) * g;
            denom = v[i] - mg[i] * mg[i] + eps;
          }
          const double inc = lr * g / std::sqrt(denom);
          if (mu > 0) {
            mom[i] = double(mu) * mom[i] + inc;
            want[i] -= mom[i];
          } else {
            want[i] -= inc;
          }
        }
      }
      expect_close(w, want, 2e-6);
      std::vector<std::string> slots = {"velocity"};
      if (mu > 0) slots.push_back("momentum");
      if (centered) slots.push_back("average_gradient");
      EXPECT_EQ(opt->state_slots(), slots);
      if (centered) {
        for (int i = 0; i < 5; ++i) EXPECT_NEAR(opt->state("average_gradient")[i], mg[i], 1e-7);
      }
    }
  }
}

// ---- Clipping (base_optimizer._clip_gradients) ----

TEST(OptimClip, ClipnormIsPerVariable) {
  auto opt = SGD({.learning_rate = 1.0f, .clip = clip_norm(1.0f)});
  opt->build({{0, 2, "a"}, {2, 2, "b"}});
  std::vector<float> w(4, 0.0f), g = {3.0f, 4.0f, 0.3f, 0.4f};  // norms 5 and 0.5
  opt->apply(w.data(), g.data());
  EXPECT_FLOAT_EQ(g[0], 0.6f);
  EXPECT_FLOAT_EQ(g[1], 0.8f);
  EXPECT_FLOAT_EQ(g[2], 0.3f);  // below the norm: untouched
  EXPECT_FLOAT_EQ(g[3], 0.4f);
  EXPECT_FLOAT_EQ(w[0], -0.6f);
  EXPECT_FLOAT_EQ(w[3], -0.4f);
}

TEST(OptimClip, GlobalClipnormUsesAllVariables) {
  auto opt = SGD({.learning_rate = 1.0f, .clip = clip_global(1.0f)});
  opt->build({{0, 2, "a"}, {2, 2, "b"}});
  std::vector<float> w(4, 0.0f), g = {3.0f, 4.0f, 0.3f, 0.4f};
  opt->apply(w.data(), g.data());
  const double norm = std::sqrt(25.0 + 0.25);
  EXPECT_NEAR(g[0], 3.0 / norm, 1e-6);
  EXPECT_NEAR(g[2], 0.3 / norm, 1e-7);
  // A small total norm leaves gradients alone; a zero gradient stays zero.
  std::vector<float> small = {0.1f, 0.0f, 0.0f, 0.2f}, zero(4, 0.0f);
  opt->apply(w.data(), small.data());
  EXPECT_FLOAT_EQ(small[0], 0.1f);
  EXPECT_FLOAT_EQ(small[3], 0.2f);
  opt->apply(w.data(), zero.data());
  for (float x : zero) EXPECT_EQ(x, 0.0f);
  // A non-finite norm poisons every gradient rather than passing it through.
  std::vector<float> bad = {INFINITY, 1.0f, 1.0f, 1.0f};
  opt->apply(w.data(), bad.data());
  EXPECT_TRUE(std::isnan(bad[1]));
}

TEST(OptimClip, ClipvalueIsElementwise) {
  auto opt = Adam({.clip = clip_value(0.5f)});
  opt->build({{0, 3, "a"}});
  std::vector<float> w(3, 0.0f), g = {2.0f, -0.25f, -7.0f};
  opt->apply(w.data(), g.data());
  EXPECT_EQ(g, (std::vector<float>{0.5f, -0.25f, -0.5f}));
  EXPECT_FLOAT_EQ(opt->state("momentum")[0], 0.05f);  // the step saw the clipped gradient
}

TEST(OptimClip, OnlyOneOptionAllowed) {
  ClipOptions two = clip_norm(1.0f);
  two.clipvalue = 1.0f;
  EXPECT_THROW(Adam({.clip = two}), std::invalid_argument);
  two = clip_global(1.0f);
  two.clipnorm = 1.0f;
  EXPECT_THROW(SGD({.clip = two}), std::invalid_argument);
}

// ---- Slots, configs and JSON ----

TEST(OptimState, SlotsAreZeroAndLaidOutLikeParameters) {
  auto opt = Adam({.amsgrad = true});
  EXPECT_EQ(opt->state_slots(), (std::vector<std::string>{"momentum", "velocity", "velocity_hat"}));
  EXPECT_EQ(Adam()->state_slots(), (std::vector<std::string>{"momentum", "velocity"}));
  opt->build(kVars);
  for (const auto& s : opt->state_slots())
    for (int i = 0; i < 5; ++i) EXPECT_EQ(opt->state(s)[i], 0.0f);
  std::vector<float> w = kW0, g = kGrads[0];
  opt->apply(w.data(), g.data());
  for (int i = 0; i < 5; ++i) EXPECT_FLOAT_EQ(opt->state("momentum")[i], kGrads[0][i] * 0.1f);
  EXPECT_THROW(opt->state("m"), std::invalid_argument);
}

TEST(OptimConfig, AdamMatchesKeras3) {
  auto expected = nlohmann::json::parse(R"({
    "name": "adam", "learning_rate": 0.0010000000474974513, "weight_decay": null, "clipnorm": null,
    "global_clipnorm": null, "clipvalue": null, "use_ema": false, "ema_momentum": 0.99,
    "ema_overwrite_frequency": null, "loss_scale_factor": null, "gradient_accumulation_steps": null,
    "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": false})");
  EXPECT_EQ(Adam()->get_config(), expected);
  auto sgd = SGD({.momentum = 0.9f, .nesterov = true, .clip = clip_norm(1.0f)})->get_config();
  EXPECT_EQ(sgd["name"], "SGD");
  EXPECT_EQ(sgd["momentum"].get<double>(), 0.9);
  EXPECT_EQ(sgd["nesterov"], true);
  EXPECT_EQ(sgd["clipnorm"].get<double>(), 1.0);
  auto rms = RMSprop({.centered = true})->get_config();
  EXPECT_EQ(rms["name"], "rmsprop");
  EXPECT_EQ(rms["rho"].get<double>(), 0.9);
  EXPECT_EQ(rms["centered"], true);
}

TEST(OptimConfig, FromJson) {
  EXPECT_EQ(optimizer_from_json("adam")->class_name(), "Adam");
  EXPECT_EQ(optimizer_from_json("sgd")->learning_rate(), 0.01f);
  EXPECT_EQ(optimizer_from_json("rmsprop")->class_name(), "RMSprop");
  EXPECT_EQ(optimizer_from_json("adamw")->get_config()["weight_decay"].get<double>(), 0.004);

  auto j = nlohmann::json::parse(R"({"module": "keras.optimizers", "class_name": "Adam", "config": {
    "name": "adam", "learning_rate": 0.0020000000949949026, "weight_decay": null, "clipnorm": null,
    "global_clipnorm": null, "clipvalue": 0.5, "use_ema": false, "ema_momentum": 0.99,
    "ema_overwrite_frequency": null, "loss_scale_factor": null, "gradient_accumulation_steps": null,
    "beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-08, "amsgrad": true}, "registered_name": null})");
  auto opt = optimizer_from_json(j);
  EXPECT_EQ(opt->learning_rate(), 0.002f);
  EXPECT_EQ(opt->state_slots().size(), 3u);
  EXPECT_EQ(opt->get_config(), j["config"]);

  // Round trip for each optimizer.
  for (auto o : {Adam(), AdamW({.amsgrad = true}), SGD({.momentum = 0.5f}), RMSprop({.momentum = 0.1f})}) {
    auto back = optimizer_from_json({{"class_name", o->class_name()}, {"config", o->get_config()}});
    EXPECT_EQ(back->get_config(), o->get_config()) << o->class_name();
    EXPECT_EQ(back->class_name(), o->class_name());
  }
}

TEST(OptimConfig, RejectsUnknownAndUnsupported) {
  try {
    optimizer_from_json("adagrad");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("adagrad"), std::string::npos);
  }
  EXPECT_THROW(optimizer_from_json(nlohmann::json::parse(R"({"class_name": "Nadam", "config": {}})")),
               std::invalid_argument);
  EXPECT_THROW(optimizer_from_json(nlohmann::json::parse(R"({"class_name": "Adam", "config": {"beta_3": 1}})")),
               std::invalid_argument);
  EXPECT_THROW(optimizer_from_json(nlohmann::json::parse(
                   R"({"class_name": "AdamW", "config": {"weight_decay": null}})")),
               std::invalid_argument);
  EXPECT_THROW(optimizer_from_json(nlohmann::json::parse(
                   R"({"class_name": "SGD", "config": {"learning_rate": {"class_name": "ExponentialDecay"}}})")),
               std::invalid_argument);
  EXPECT_THROW(optimizer_from_json(nlohmann::json::parse(R"({"class_name": "Adam", "config": {"use_ema": true}})")),
               std::invalid_argument);
}

TEST(OptimConfig, WeightDecayFromJsonWorksForAnyOptimizer) {
  // Keras 3's base optimizer applies weight_decay for every optimizer, not only AdamW.
  auto opt = optimizer_from_json(nlohmann::json::parse(
      R"({"class_name": "SGD", "config": {"learning_rate": 0.1, "weight_decay": 0.5}})"));
  opt->build({{0, 1, "w"}});
  float w = 2.0f, g = 0.0f;
  opt->apply(&w, &g);
  EXPECT_FLOAT_EQ(w, 2.0f - 2.0f * 0.5f * 0.1f);
}

}  // namespace
}  // namespace attn::optimizers
