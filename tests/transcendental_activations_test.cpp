// The vectorised exp/log/erf activations against their definitions worked out in double
// (libm's erfc, exp, log1p, tanh), on every SIMD target this binary dispatches to: random values
// over the range each function is sensitive in and far into its tails, every length from 0 to 70
// and a long one (vector tails), the special values (signed zeros, subnormals, infinities, NaN),
// in place and not, and nothing written past the end. Forward values are held to a few float
// ulp; derivatives to a few ulp of the sum of their terms' magnitudes (they cross zero, where a
// relative bound means nothing).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/transcendental_activations.hpp"
#include "simd_targets.hpp"

namespace {
namespace k = attn::kernels;
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;

double sigmoid(double x) { return x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x)); }
double softplus(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::fabs(x))); }
double phi(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }
double density(double x) { return std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI); }

// The distance from y to the exact value in units of float's spacing at the exact value.
double ulps(float y, double exact) {
  if (std::isnan(exact)) return std::isnan(y) ? 0.0 : INFINITY;
  if (std::isinf(exact)) return y == exact ? 0.0 : INFINITY;
  const auto rounded = static_cast<float>(exact);
  if (std::isinf(rounded)) return y == rounded ? 0.0 : INFINITY;  // beyond float's range
  const float spacing = std::nextafter(std::fabs(rounded), kInf) - std::fabs(rounded);
  return std::fabs(static_cast<double>(y) - exact) / spacing;
}

struct Forward {
  std::string name;
  std::function<void(const float*, float*, int64_t)> kernel;
  std::function<double(double)> exact;
  double max_ulps;
};

struct Backward {
  std::string name;
  std::function<void(const float*, const float*, float*, int64_t)> kernel;
  std::function<double(double)> derivative;
  // The sum of the magnitudes of the derivative's terms: the size of the rounding errors.
  std::function<double(double)> magnitude;
};

const std::vector<Forward>& forwards() {
  static const std::vector<Forward> f = {
      {"sigmoid", k::sigmoid_forward, sigmoid, 4},
      {"tanh", k::tanh_forward, [](double x) { return std::tanh(x); }, 4},
      {"gelu", k::gelu_forward, [](double x) { return x * phi(x); }, 7},
      {"elu", [](const float* x, float* y, int64_t n) { k::elu_forward(x, y, n, 1.0f, 1.0f); },
       [](double x) { return x > 0 ? x : std::expm1(x); }, 4},
      {"elu(alpha 0.3)", [](const float* x, float* y, int64_t n) { k::elu_forward(x, y, n, 0.3f, 1.0f); },
       [](double x) { return x > 0 ? x : static_cast<double>(0.3f) * std::expm1(x); }, 4},
      {"selu",
       [](const float* x, float* y, int64_t n) {
         k::elu_forward(x, y, n, static_cast<float>(kSeluAlpha), static_cast<float>(kSeluScale));
       },
       [](double x) {
         return static_cast<double>(static_cast<float>(kSeluScale)) *
                (x > 0 ? x : static_cast<double>(static_cast<float>(kSeluAlpha)) * std::expm1(x));
       },
       4},
      {"softplus", k::softplus_forward, softplus, 4},
      {"silu", k::silu_forward, [](double x) { return x * sigmoid(x); }, 5},
      {"mish", k::mish_forward, [](double x) { return x * std::tanh(softplus(x)); }, 6},
      {"exponential", k::exp_forward, [](double x) { return std::exp(x); }, 2},
  };
  return f;
}

const std::vector<Backward>& backwards() {
  static const std::vector<Backward> b = {
      {"gelu", k::gelu_backward, [](double x) { return phi(x) + x * density(x); },
       [](double x) { return phi(x) + std::fabs(x) * density(x); }},
      {"elu(alpha 0.3)",
       [](const float* x, const float* dy, float* dx, int64_t n) { k::elu_backward(x, dy, dx, n, 0.3f, 1.0f); },
       [](double x) { return x > 0 ? 1.0 : static_cast<double>(0.3f) * std::exp(x); },
       [](double x) { return x > 0 ? 1.0 : static_cast<double>(0.3f) * std::exp(x); }},
      {"softplus", k::softplus_backward, sigmoid, sigmoid},
      {"silu", k::silu_backward, [](double x) { return sigmoid(x) * (1.0 + x * (1.0 - sigmoid(x))); },
       [](double x) { return sigmoid(x) * (1.0 + std::fabs(x) * (1.0 - sigmoid(x))); }},
      {"mish",
       [](const float* x, const float* dy, float* dx, int64_t n) { k::mish_backward(x, dy, dx, n); },
       [](double x) {
         const double t = std::tanh(softplus(x));
         return t + x * (1.0 - t * t) * sigmoid(x);
       },
       [](double x) {
         const double t = std::tanh(softplus(x));
         return std::fabs(t) + std::fabs(x) * (1.0 - t * t) * sigmoid(x);
       }},
  };
  return b;
}

// Values where the functions bend (|x| < 3), their tails (to +-20), small magnitudes (1e-7 to
// 0.1, where relative accuracy is hardest for the odd ones) and the extremes of exp's range.
std::vector<float> random_inputs(std::mt19937& gen, int64_t n) {
  std::uniform_real_distribution<float> bend(-3.0f, 3.0f), tail(-20.0f, 20.0f), extreme(-110.0f, 110.0f);
  std::uniform_real_distribution<float> log_magnitude(-7.0f, -1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) {
    switch (gen() % 4) {
      case 0: v = bend(gen); break;
      case 1: v = tail(gen); break;
      case 2: v = std::pow(10.0f, log_magnitude(gen)) * (gen() % 2 ? 1.0f : -1.0f); break;
      default: v = extreme(gen); break;
    }
  }
  return x;
}

const std::vector<float> kSpecials = {0.0f, -0.0f, 1e-40f, -1e-40f, 1e-30f, -1e-30f, 88.5f, 88.8f, -87.5f,
                                      -103.5f, -104.5f, 13.9f, -13.9f, 14.6f, -14.6f, 17.0f, -17.0f, 1.0f, -1.0f};

void check_forward(const Forward& f, const std::vector<float>& x) {
  const auto n = static_cast<int64_t>(x.size());
  constexpr float kGuard = 12345.0f;
  std::vector<float> y(x.size() + 3, kGuard);
  f.kernel(x.data(), y.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    const double exact = f.exact(x[i]);
    // Below float's normal range, precision is absolute (subnormal spacing, 1.4e-45), and a
    // subnormal intermediate times x (silu, mish at x < -87) carries |x| of those spacings.
    if (std::fabs(exact) < (1 + std::fabs(x[i])) * std::numeric_limits<float>::min()) {
      const double bound = 2 * (1 + std::fabs(x[i])) * std::numeric_limits<float>::denorm_min();
      ASSERT_NEAR(y[i], exact, bound) << f.name << "(" << x[i] << ") (length " << n << ", element " << i << ")";
      continue;
    }
    ASSERT_LE(ulps(y[i], exact), f.max_ulps) << f.name << "(" << x[i] << ") = " << y[i] << ", exact " << exact
                                              << " (length " << n << ", element " << i << ")";
  }
  for (size_t i = x.size(); i < y.size(); ++i) ASSERT_EQ(y[i], kGuard) << f.name << " wrote past " << n;
  std::vector<float> in_place = x;
  f.kernel(in_place.data(), in_place.data(), n);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(in_place[i], y[i]) << f.name << " in place, element " << i;
}

void check_backward(const Backward& b, const std::vector<float>& x, std::mt19937& gen) {
  const auto n = static_cast<int64_t>(x.size());
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> dy(x.size()), dx(x.size() + 3);
  for (float& v : dy) v = normal(gen);
  for (float& v : dx) v = normal(gen);
  const std::vector<float> before = dx;
  b.kernel(x.data(), dy.data(), dx.data(), n);
  constexpr double kEps = 1.0 / (1 << 24);
  for (int64_t i = 0; i < n; ++i) {
    const double want = before[i] + dy[i] * b.derivative(x[i]);
    const double tolerance = 8 * kEps * std::fabs(dy[i]) * b.magnitude(x[i]) + kEps * std::fabs(want);
    ASSERT_NEAR(dx[i], want, tolerance) << b.name << "'(" << x[i] << ") with dy " << dy[i] << " (length " << n << ")";
  }
  for (size_t i = x.size(); i < dx.size(); ++i) ASSERT_EQ(dx[i], before[i]) << b.name << " wrote past " << n;
}

TEST(TranscendentalActivations, ForwardWithinAFewUlpOnEveryLengthAndTarget) {
  attn::testing::on_every_simd_target([] {
    std::mt19937 gen(5);
    for (const Forward& f : forwards()) {
      for (int64_t n = 0; n <= 70; ++n) check_forward(f, random_inputs(gen, n));
      check_forward(f, random_inputs(gen, 100000));
      check_forward(f, kSpecials);
    }
  });
}

TEST(TranscendentalActivations, DerivativesAddedWithinAFewUlpOnEveryLengthAndTarget) {
  attn::testing::on_every_simd_target([] {
    std::mt19937 gen(6);
    for (const Backward& b : backwards()) {
      for (int64_t n = 0; n <= 70; ++n) check_backward(b, random_inputs(gen, n), gen);
      check_backward(b, random_inputs(gen, 100000), gen);
      check_backward(b, kSpecials, gen);
    }
  });
}

// The limits at infinity, exactly; NaN stays NaN (a diverged run must not look healthy). Where
// the definition itself is inf * 0 (gelu, silu and mish at -inf, as in TensorFlow), NaN too.
TEST(TranscendentalActivations, InfinitiesAndNaN) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> x = {kInf, -kInf, nan};
  const auto forward = [&](const std::string& name) {
    for (const Forward& f : forwards())
      if (f.name == name) {
        std::vector<float> y(3);
        f.kernel(x.data(), y.data(), 3);
        return y;
      }
    ADD_FAILURE() << name;
    return std::vector<float>{};
  };
  const auto is = [](float got, float want) { return std::isnan(want) ? std::isnan(got) : got == want; };
  const std::vector<std::pair<std::string, std::vector<float>>> want = {
      {"sigmoid", {1.0f, 0.0f, nan}}, {"tanh", {1.0f, -1.0f, nan}},    {"gelu", {kInf, nan, nan}},
      {"elu", {kInf, -1.0f, nan}},    {"softplus", {kInf, 0.0f, nan}}, {"silu", {kInf, nan, nan}},
      {"mish", {kInf, nan, nan}},     {"exponential", {kInf, 0.0f, nan}},
  };
  attn::testing::on_every_simd_target([&] {
    for (const auto& [name, values] : want) {
      const std::vector<float> y = forward(name);
      for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(is(y[i], values[i])) << name << "(" << x[i] << ") = " << y[i];
    }
    for (const Backward& b : backwards()) {
      const std::vector<float> one = {1.0f};
      std::vector<float> dx = {0.0f};
      b.kernel(&x[2], one.data(), dx.data(), 1);
      EXPECT_TRUE(std::isnan(dx[0])) << b.name << "'(NaN) = " << dx[0];
    }
  });
}

// A few values worked out by hand from tables of the normal distribution: gelu(1) = Phi(1) =
// 0.841344746..., gelu(-1) = -(1 - Phi(1)), and far in the tail gelu(-10) = -10 Q(10) with
// Q(10) = 7.6198530e-24.
TEST(TranscendentalActivations, GeluAgainstTabulatedNormalValues) {
  const std::vector<float> x = {1.0f, -1.0f, -10.0f};
  std::vector<float> y(3);
  k::gelu_forward(x.data(), y.data(), 3);
  EXPECT_NEAR(y[0], 0.8413447461, 1e-7);
  EXPECT_NEAR(y[1], -0.1586552539, 2e-8);
  EXPECT_NEAR(y[2] / -7.6198530242e-23, 1.0, 5e-7);
}

}  // namespace
