// Activation kernels. Plain loops: at the reference model's sizes (20 x 100) the
// compiler's auto-vectorisation is enough; the expensive exp lives in attention. The less common
// activations call libm per element: correct first, fast where a model needs it.
#include "kernels/activations.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace attn::kernels {

namespace {
// Keras 3's names, each with the activation it serializes as (its aliases map to the same).
struct NamedActivation {
  const char* name;
  Activation activation;
};
constexpr NamedActivation kNames[] = {
    {"linear", Activation::kLinear},       {"relu", Activation::kRelu},
    {"sigmoid", Activation::kSigmoid},     {"tanh", Activation::kTanh},
    {"softmax", Activation::kSoftmax},     {"gelu", Activation::kGelu},
    {"elu", Activation::kElu},             {"selu", Activation::kSelu},
    {"softplus", Activation::kSoftplus},   {"softsign", Activation::kSoftsign},
    {"silu", Activation::kSilu},           {"leaky_relu", Activation::kLeakyRelu},
    {"relu6", Activation::kRelu6},         {"hard_sigmoid", Activation::kHardSigmoid},
    {"hard_silu", Activation::kHardSilu},  {"exponential", Activation::kExponential},
    {"mish", Activation::kMish},           {"log_softmax", Activation::kLogSoftmax},
};
}  // namespace

Activation activation_from_string(const std::string& name) {
  if (name.empty() || name == "None") return Activation::kLinear;
  if (name == "swish") return Activation::kSilu;  // Keras exports silu under both names
  if (name == "hard_swish") return Activation::kHardSilu;
  std::string known;
  for (const NamedActivation& n : kNames) {
    if (name == n.name) return n.activation;
    known += (known.empty() ? "" : ", ") + std::string(n.name);
  }
  throw std::invalid_argument("unsupported activation '" + name + "' (supported: " + known + ", swish, hard_swish)");
}

std::string to_string(Activation a) {
  for (const NamedActivation& n : kNames)
    if (n.activation == a) return n.name;
  return "linear";
}

namespace {
constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr float kLeakySlope = 0.2f;                  // Keras' leaky_relu default negative_slope
constexpr float kSeluAlpha = 1.67326324235437728481f;  // Klambauer et al., as Keras and TensorFlow
constexpr float kSeluScale = 1.05070098735548049342f;

// log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|)).
float softplus(float x) { return std::max(x, 0.0f) + std::log1p(std::exp(-std::fabs(x))); }
float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
float hard_sigmoid(float x) { return std::clamp(x / 6.0f + 0.5f, 0.0f, 1.0f); }

// One row of log_softmax: x - max - log(sum exp(x - max)).
void log_softmax_row(const float* x, float* y, int64_t width) {
  const float m = *std::max_element(x, x + width);
  double s = 0.0;
  for (int64_t j = 0; j < width; ++j) s += std::exp(static_cast<double>(x[j] - m));
  const auto log_sum = static_cast<float>(std::log(s));
  for (int64_t j = 0; j < width; ++j) y[j] = x[j] - m - log_sum;
}
}  // namespace

void activation_forward(Activation a, const float* x, float* y, int64_t rows, int64_t width) {
  const int64_t n = rows * width;
  switch (a) {
    case Activation::kLinear:
      if (x != y) std::copy(x, x + n, y);
      return;
    case Activation::kRelu:
      // NaN stays NaN, as in TensorFlow and JAX: a run whose weights diverged must not look healthy.
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.0f ? 0.0f : x[i];
      return;
    case Activation::kSigmoid:
      for (int64_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + std::exp(-x[i]));
      return;
    case Activation::kTanh:
      for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
      return;
    case Activation::kGelu:
      for (int64_t i = 0; i < n; ++i)
        y[i] = static_cast<float>(0.5 * x[i] * (1.0 + std::erf(x[i] * kInvSqrt2)));
      return;
    case Activation::kSoftmax:
      for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * width;
        float* yr = y + r * width;
        float m = *std::max_element(xr, xr + width);
        float s = 0.0f;
        for (int64_t j = 0; j < width; ++j) s += (yr[j] = std::exp(xr[j] - m));
        for (int64_t j = 0; j < width; ++j) yr[j] /= s;
      }
      return;
    case Activation::kLogSoftmax:
      for (int64_t r = 0; r < rows; ++r) log_softmax_row(x + r * width, y + r * width, width);
      return;
    // The comparisons below are written so that NaN takes the branch that keeps it.
    case Activation::kElu:
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : std::expm1(x[i]);
      return;
    case Activation::kSelu:
      for (int64_t i = 0; i < n; ++i) y[i] = kSeluScale * (x[i] > 0.0f ? x[i] : kSeluAlpha * std::expm1(x[i]));
      return;
    case Activation::kSoftplus:
      for (int64_t i = 0; i < n; ++i) y[i] = softplus(x[i]);
      return;
    case Activation::kSoftsign:
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] / (std::fabs(x[i]) + 1.0f);
      return;
    case Activation::kSilu:
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] * sigmoid(x[i]);
      return;
    case Activation::kLeakyRelu:
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.0f ? kLeakySlope * x[i] : x[i];
      return;
    case Activation::kRelu6:
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.0f ? 0.0f : (x[i] > 6.0f ? 6.0f : x[i]);
      return;
    case Activation::kHardSigmoid:
      for (int64_t i = 0; i < n; ++i) y[i] = std::isnan(x[i]) ? x[i] : hard_sigmoid(x[i]);
      return;
    case Activation::kHardSilu:
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] * hard_sigmoid(x[i]);
      return;
    case Activation::kExponential:
      for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
      return;
    case Activation::kMish:
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] * std::tanh(softplus(x[i]));
      return;
  }
}

void activation_backward(Activation a, const float* x, const float* y, const float* dy, float* dx,
                         int64_t rows, int64_t width) {
  const int64_t n = rows * width;
  switch (a) {
    case Activation::kLinear:
      for (int64_t i = 0; i < n; ++i) dx[i] += dy[i];
      return;
    case Activation::kRelu:
      for (int64_t i = 0; i < n; ++i) {
        const float g = dy[i];  // read before the test: the loop then has no branch and vectorizes
        dx[i] += x[i] > 0.0f ? g : 0.0f;
      }
      return;
    case Activation::kSigmoid:
      for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * y[i] * (1.0f - y[i]);
      return;
    case Activation::kTanh:
      for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
      return;
    case Activation::kGelu:
      for (int64_t i = 0; i < n; ++i) {
        double v = x[i];
        double cdf = 0.5 * (1.0 + std::erf(v * kInvSqrt2));
        double pdf = kInvSqrt2Pi * std::exp(-0.5 * v * v);
        dx[i] += static_cast<float>(dy[i] * (cdf + v * pdf));
      }
      return;
    case Activation::kSoftmax:
      for (int64_t r = 0; r < rows; ++r) {
        const float* yr = y + r * width;
        const float* dyr = dy + r * width;
        float* dxr = dx + r * width;
        float dot = 0.0f;
        for (int64_t j = 0; j < width; ++j) dot += dyr[j] * yr[j];
        for (int64_t j = 0; j < width; ++j) dxr[j] += yr[j] * (dyr[j] - dot);
      }
      return;
    case Activation::kLogSoftmax:  // dx = dy - softmax * sum(dy), softmax = exp(y)
      for (int64_t r = 0; r < rows; ++r) {
        const float* yr = y + r * width;
        const float* dyr = dy + r * width;
        float* dxr = dx + r * width;
        float sum = 0.0f;
        for (int64_t j = 0; j < width; ++j) sum += dyr[j];
        for (int64_t j = 0; j < width; ++j) dxr[j] += dyr[j] - std::exp(yr[j]) * sum;
      }
      return;
    case Activation::kElu:  // exp(x) = y + 1 below zero
      for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * (x[i] > 0.0f ? 1.0f : y[i] + 1.0f);
      return;
    case Activation::kSelu:  // scale * alpha * exp(x) = y + scale * alpha below zero
      for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * (x[i] > 0.0f ? kSeluScale : y[i] + kSeluScale * kSeluAlpha);
      return;
    case Activation::kSoftplus:
      for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * sigmoid(x[i]);
      return;
    case Activation::kSoftsign:
      for (int64_t i = 0; i < n; ++i) {
        const float d = std::fabs(x[i]) + 1.0f;
        dx[i] += dy[i] / (d * d);
      }
      return;
    case Activation::kSilu:
      for (int64_t i = 0; i < n; ++i) {
        const float s = sigmoid(x[i]);
        dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
      }
      return;
    case Activation::kLeakyRelu:
      for (int64_t i = 0; i < n; ++i) {
        const float g = dy[i];
        dx[i] += x[i] < 0.0f ? kLeakySlope * g : g;
      }
      return;
    case Activation::kRelu6:
      for (int64_t i = 0; i < n; ++i) {
        const float g = dy[i];
        dx[i] += x[i] > 0.0f && x[i] < 6.0f ? g : 0.0f;
      }
      return;
    case Activation::kHardSigmoid:
      for (int64_t i = 0; i < n; ++i) {
        const float g = dy[i];
        dx[i] += x[i] > -3.0f && x[i] < 3.0f ? g / 6.0f : 0.0f;
      }
      return;
    case Activation::kHardSilu:  // hard_sigmoid(x) + x hard_sigmoid'(x)
      for (int64_t i = 0; i < n; ++i) {
        const float g = dy[i];
        dx[i] += g * (hard_sigmoid(x[i]) + (x[i] > -3.0f && x[i] < 3.0f ? x[i] / 6.0f : 0.0f));
      }
      return;
    case Activation::kExponential:
      for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * y[i];
      return;
    case Activation::kMish:  // tanh(sp) + x (1 - tanh(sp)^2) sigmoid(x), sp = softplus(x)
      for (int64_t i = 0; i < n; ++i) {
        const float t = std::tanh(softplus(x[i]));
        dx[i] += dy[i] * (t + x[i] * (1.0f - t * t) * sigmoid(x[i]));
      }
      return;
  }
}

}  // namespace attn::kernels
