// Learning-rate schedules against Keras' formulas (keras/src/optimizers/schedules), at
// hand-derived points (interval ends, staircase floors, warmup, clamping, cycles) and against the
// formulas in double precision elsewhere; their Keras serialisation both ways; and inside an
// optimizer (the step's rate is the schedule at the iteration count before the step), a model
// file and continued training.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "attn/attn.hpp"
#include "attn/io.hpp"
#include "attn/schedules.hpp"
#include "temp_dir.hpp"

namespace {

namespace S = attn::optimizers::schedules;
namespace O = attn::optimizers;
namespace L = attn::layers;

TEST(Schedules, ExponentialDecay) {
  auto s = S::ExponentialDecay({.initial_learning_rate = 0.1, .decay_steps = 10, .decay_rate = 0.5});
  EXPECT_EQ((*s)(0), 0.1f);
  EXPECT_EQ((*s)(10), 0.05f);
  EXPECT_EQ((*s)(20), 0.025f);
  for (int step : {1, 5, 13, 99, 1000})
    EXPECT_NEAR((*s)(step), 0.1 * std::pow(0.5, step / 10.0), 2e-7 * 0.1) << step;
  auto stairs = S::ExponentialDecay({.initial_learning_rate = 0.1, .decay_steps = 10, .decay_rate = 0.5, .staircase = true});
  EXPECT_EQ((*stairs)(9), 0.1f);
  EXPECT_EQ((*stairs)(15), 0.05f);
  EXPECT_THROW(S::ExponentialDecay({.initial_learning_rate = 0.1, .decay_steps = 0, .decay_rate = 0.5}),
               std::invalid_argument);
}

TEST(Schedules, PiecewiseConstantDecayIncludesEachBoundaryInTheIntervalBelow) {
  auto s = S::PiecewiseConstantDecay({.boundaries = {10, 20}, .values = {1.0, 0.5, 0.1}});
  EXPECT_EQ((*s)(0), 1.0f);
  EXPECT_EQ((*s)(10), 1.0f);
  EXPECT_EQ((*s)(11), 0.5f);
  EXPECT_EQ((*s)(20), 0.5f);
  EXPECT_EQ((*s)(21), 0.1f);
  EXPECT_THROW(S::PiecewiseConstantDecay({.boundaries = {10, 20}, .values = {1.0, 0.5}}), std::invalid_argument);
}

TEST(Schedules, InverseTimeDecay) {
  auto s = S::InverseTimeDecay({.initial_learning_rate = 0.1, .decay_steps = 1.0, .decay_rate = 0.5});
  EXPECT_EQ((*s)(0), 0.1f);
  EXPECT_EQ((*s)(2), 0.05f);  // 0.1 / (1 + 0.5 * 2)
  for (int step : {1, 3, 7, 100}) EXPECT_NEAR((*s)(step), 0.1 / (1 + 0.5 * step), 1e-8) << step;
  auto stairs = S::InverseTimeDecay({.initial_learning_rate = 0.1, .decay_steps = 4.0, .decay_rate = 1.0, .staircase = true});
  EXPECT_EQ((*stairs)(3), 0.1f);
  EXPECT_EQ((*stairs)(4), 0.05f);
}

TEST(Schedules, CosineDecayWithAndWithoutWarmup) {
  auto s = S::CosineDecay({.initial_learning_rate = 1.0, .decay_steps = 100, .alpha = 0.1});
  EXPECT_EQ((*s)(0), 1.0f);
  EXPECT_NEAR((*s)(50), 0.55, 1e-7);   // 0.9 * 0.5 + 0.1
  EXPECT_NEAR((*s)(100), 0.1, 1e-7);
  EXPECT_EQ((*s)(500), (*s)(100));     // the step is clamped at decay_steps
  for (int step : {7, 33, 71})
    EXPECT_NEAR((*s)(step), 0.9 * 0.5 * (1 + std::cos(std::numbers::pi * step / 100)) + 0.1, 3e-7) << step;
  auto warm = S::CosineDecay({.initial_learning_rate = 0.0, .decay_steps = 100, .warmup_target = 1.0, .warmup_steps = 10});
  EXPECT_EQ((*warm)(0), 0.0f);
  EXPECT_EQ((*warm)(5), 0.5f);
  EXPECT_EQ((*warm)(10), 1.0f);
  EXPECT_NEAR((*warm)(60), 0.5, 1e-7);
  EXPECT_NEAR((*warm)(110), 0.0, 1e-7);
  EXPECT_EQ((*warm)(1000), (*warm)(110));
}

// SGDR with first period 10: t_mul 2 gives periods [0, 10), [10, 30), [30, 70); m_mul scales
// each period's start. Elsewhere, Keras' formula in double precision.
double sgdr(double initial, double first, double t_mul, double m_mul, double alpha, int step) {
  double fraction = step / first, restart = 0.0;
  if (t_mul == 1.0) {
    restart = std::floor(fraction);
    fraction -= restart;
  } else {
    restart = std::floor(std::log(1.0 - fraction * (1.0 - t_mul)) / std::log(t_mul));
    fraction = (fraction - (1.0 - std::pow(t_mul, restart)) / (1.0 - t_mul)) / std::pow(t_mul, restart);
  }
  const double cosine = 0.5 * std::pow(m_mul, restart) * (1.0 + std::cos(std::numbers::pi * fraction));
  return initial * ((1.0 - alpha) * cosine + alpha);
}

TEST(Schedules, CosineDecayRestartsPeriodsAndRestarts) {
  auto s = S::CosineDecayRestarts({.initial_learning_rate = 1.0, .first_decay_steps = 10, .m_mul = 0.5});
  EXPECT_EQ((*s)(0), 1.0f);
  EXPECT_NEAR((*s)(5), 0.5, 1e-7);    // half way down the first period
  EXPECT_NEAR((*s)(10), 0.5, 1e-7);   // restart 1 at m_mul
  EXPECT_NEAR((*s)(20), 0.25, 1e-7);  // half way through the 20-step second period
  EXPECT_NEAR((*s)(30), 0.25, 1e-7);  // restart 2 at m_mul^2
  EXPECT_NEAR((*s)(29), 0.5 * 0.5 * (1 + std::cos(std::numbers::pi * 19.0 / 20.0)), 1e-7);
  auto flat = S::CosineDecayRestarts({.initial_learning_rate = 0.1, .first_decay_steps = 8, .t_mul = 1.0, .alpha = 0.2});
  EXPECT_NEAR((*flat)(8), 0.1, 1e-8);    // every period 8 steps, each from the top
  EXPECT_NEAR((*flat)(12), 0.06, 1e-8);  // 0.1 * (0.8 * 0.5 + 0.2)
  for (int step : {1, 3, 9, 17, 31, 45, 69, 71, 200}) {
    EXPECT_NEAR((*s)(step), sgdr(1.0, 10, 2.0, 0.5, 0.0, step), 1e-6) << step;
    EXPECT_NEAR((*flat)(step), sgdr(0.1, 8, 1.0, 1.0, 0.2, step), 1e-7) << step;
  }
  EXPECT_THROW(S::CosineDecayRestarts({.initial_learning_rate = 0.1, .first_decay_steps = 0}), std::invalid_argument);
}

TEST(Schedules, PolynomialDecayClampsOrCycles) {
  auto s = S::PolynomialDecay({.initial_learning_rate = 1.0, .decay_steps = 10, .end_learning_rate = 0.1, .power = 2.0});
  EXPECT_EQ((*s)(0), 1.0f);
  EXPECT_NEAR((*s)(5), 0.325, 1e-7);  // 0.9 * 0.5^2 + 0.1
  EXPECT_NEAR((*s)(10), 0.1, 1e-7);
  EXPECT_EQ((*s)(30), (*s)(10));
  auto cyc = S::PolynomialDecay(
      {.initial_learning_rate = 1.0, .decay_steps = 10, .end_learning_rate = 0.1, .power = 2.0, .cycle = true});
  EXPECT_EQ((*cyc)(0), 1.0f);
  EXPECT_NEAR((*cyc)(15), 0.15625, 1e-7);  // decay over 20 steps: 0.9 * 0.25^2 + 0.1
  EXPECT_NEAR((*cyc)(20), 0.1, 1e-7);
}

// What Keras writes into an optimizer's config, and back.
TEST(Schedules, KerasSerialisationBothWays) {
  const auto keras = nlohmann::json::parse(R"({"module": "keras.optimizers.schedules", "class_name": "ExponentialDecay",
      "config": {"initial_learning_rate": 0.01, "decay_steps": 1000, "decay_rate": 0.9, "staircase": true,
                 "name": "ExponentialDecay"}, "registered_name": null})");
  auto s = S::schedule_from_json(keras);
  EXPECT_EQ(S::schedule_to_json(*s), keras);
  EXPECT_EQ((*s)(999), 0.01f);
  EXPECT_EQ((*s)(1000), static_cast<float>(0.01f * 0.9f));
  std::vector<std::shared_ptr<S::LearningRateSchedule>> all = {
      S::PiecewiseConstantDecay({.boundaries = {5}, .values = {0.1, 0.01}}),
      S::InverseTimeDecay({.initial_learning_rate = 0.1, .decay_steps = 2.5, .decay_rate = 0.3}),
      S::CosineDecay({.initial_learning_rate = 0.1, .decay_steps = 50, .warmup_target = 0.2, .warmup_steps = 5}),
      S::CosineDecayRestarts({.initial_learning_rate = 0.1, .first_decay_steps = 4, .t_mul = 1.5, .alpha = 0.1}),
      S::PolynomialDecay({.initial_learning_rate = 0.1, .decay_steps = 50, .cycle = true})};
  for (const auto& one : all) {
    const auto again = S::schedule_from_json(S::schedule_to_json(*one));
    EXPECT_EQ(again->get_config(), one->get_config()) << one->class_name();
    for (int step : {0, 3, 7, 60}) EXPECT_EQ((*again)(step), (*one)(step)) << one->class_name() << " " << step;
  }
  EXPECT_THROW(S::schedule_from_json(nlohmann::json::parse(R"({"class_name": "CosineDecayRestarts", "config": {}})")),
               std::invalid_argument);  // no initial_learning_rate
  EXPECT_THROW(S::schedule_from_json(nlohmann::json::parse(R"({"class_name": "OneCycle", "config": {}})")),
               std::invalid_argument);
  // Keras' form of CosineDecayRestarts (its default name is "SGDRDecay").
  const auto sgdr_json = nlohmann::json::parse(R"({"module": "keras.optimizers.schedules",
      "class_name": "CosineDecayRestarts", "config": {"initial_learning_rate": 0.5, "first_decay_steps": 100,
      "t_mul": 2.0, "m_mul": 1.0, "alpha": 0.0, "name": "SGDRDecay"}, "registered_name": null})");
  EXPECT_EQ(S::schedule_to_json(*S::schedule_from_json(sgdr_json)), sgdr_json);
  EXPECT_THROW(S::schedule_from_json(nlohmann::json::parse(
                   R"({"class_name": "ExponentialDecay", "config": {"initial_learning_rate": 0.1, "decay_steps": 10,
                       "decay_rate": 0.5, "warp": 1}})")),
               std::invalid_argument);
  EXPECT_THROW(S::schedule_from_json(nlohmann::json::parse(
                   R"({"class_name": "ExponentialDecay", "config": {"initial_learning_rate": 0.1, "decay_steps": 2.5,
                       "decay_rate": 0.5}})")),
               std::invalid_argument);  // decay_steps must be whole here
}

// SGD on w with a constant gradient 1: each step subtracts that step's rate.
TEST(Schedules, TheOptimizerUsesTheRateAtTheIterationCountBeforeTheStep) {
  auto opt = O::SGD({.learning_rate_schedule = S::PiecewiseConstantDecay({.boundaries = {1}, .values = {0.5, 0.25}})});
  opt->build({{0, 1, "w"}});
  float w = 1.0f;
  const std::vector<float> after = {0.5f, 0.0f, -0.25f, -0.5f};
  for (int step = 0; step < 4; ++step) {
    EXPECT_EQ(opt->learning_rate(), step <= 1 ? 0.5f : 0.25f);
    float g = 1.0f;
    opt->apply(&w, &g);
    EXPECT_EQ(w, after[step]) << step;
  }
  EXPECT_THROW(opt->set_learning_rate(0.1f), std::logic_error);
  const auto config = opt->get_config();
  EXPECT_EQ(config.at("learning_rate").at("class_name"), "PiecewiseConstantDecay");
  const auto again = O::optimizer_from_json({{"class_name", "SGD"}, {"config", config}});
  ASSERT_NE(again->learning_rate_schedule(), nullptr);
  EXPECT_EQ(again->get_config(), config);
}

// A model trained with a schedule, saved and loaded: the schedule and step count come back (and
// no learning_rate variable is written), so continued training matches the uninterrupted run.
TEST(Schedules, SurviveAModelFileAndContinuedTraining) {
  attn::testing::TempDir dir;
  attn::set_random_seed(21);
  auto in = attn::Input({3});
  attn::Model m(in, L::Dense(2)(L::Dense(4, {.activation = "tanh"})(in)));
  m.compile(O::Adam({.learning_rate_schedule =
                         S::ExponentialDecay({.initial_learning_rate = 0.05, .decay_steps = 3, .decay_rate = 0.5})}),
            attn::losses::MeanSquaredError());
  m.set_seed(4);
  attn::Tensor x({16, 3}), y({16, 2});
  for (int64_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.9f * static_cast<float>(i));
  for (int64_t i = 0; i < y.size(); ++i) y[i] = std::cos(0.4f * static_cast<float>(i));
  attn::FitOptions quiet;
  quiet.epochs = 2;
  quiet.batch_size = 4;
  quiet.verbose = 0;
  m.fit(x, y, quiet);
  attn::io::save_model(m, dir.file("s.keras"));
  attn::Model r = attn::io::load_model(dir.file("s.keras"));
  ASSERT_NE(r.optimizer()->learning_rate_schedule(), nullptr);
  EXPECT_EQ(r.optimizer()->iterations(), 8);
  EXPECT_EQ(r.optimizer()->learning_rate(), m.optimizer()->learning_rate());
  EXPECT_EQ(r.optimizer()->get_config(), m.optimizer()->get_config());
  m.fit(x, y, quiet);
  r.fit(x, y, quiet);
  EXPECT_EQ(r.get_weights_flat(), m.get_weights_flat());
}

}  // namespace
