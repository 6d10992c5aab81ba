// Activation kernels. The piecewise-linear ones are plain loops the compiler vectorises; those
// that need exp, log or erf run in transcendental_activations.cpp (Highway); softmax and
// log_softmax, row by row, stay here.
#include "kernels/activations.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "kernels/transcendental_activations.hpp"

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
constexpr float kLeakySlope = 0.2f;                  // Keras' leaky_relu default negative_slope
constexpr float kSeluAlpha = 1.67326324235437728481f;  // Klambauer et al., as Keras and TensorFlow
constexpr float kSeluScale = 1.05070098735548049342f;

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
      sigmoid_forward(x, y, n);
      return;
    case Activation::kTanh:
      tanh_forward(x, y, n);
      return;
    case Activation::kGelu:
      gelu_forward(x, y, n);
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
    case Activation::kElu:
      elu_forward(x, y, n, 1.0f, 1.0f);
      return;
    case Activation::kSelu:
      elu_forward(x, y, n, kSeluAlpha, kSeluScale);
      return;
    case Activation::kSoftplus:
      softplus_forward(x, y, n);
      return;
    // The comparisons below are written so that NaN takes the branch that keeps it.
    case Activation::kSoftsign:
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] / (std::fabs(x[i]) + 1.0f);
      return;
    case Activation::kSilu:
      silu_forward(x, y, n);
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
      exp_forward(x, y, n);
      return;
    case Activation::kMish:
      mish_forward(x, y, n);
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
      gelu_backward(x, dy, dx, n);
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
    case Activation::kElu:
      elu_backward(x, dy, dx, n, 1.0f, 1.0f);
      return;
    case Activation::kSelu:
      elu_backward(x, dy, dx, n, kSeluAlpha, kSeluScale);
      return;
    case Activation::kSoftplus:
      softplus_backward(x, dy, dx, n);
      return;
    case Activation::kSoftsign:
      for (int64_t i = 0; i < n; ++i) {
        const float d = std::fabs(x[i]) + 1.0f;
        dx[i] += dy[i] / (d * d);
      }
      return;
    case Activation::kSilu:
      silu_backward(x, dy, dx, n);
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
    case Activation::kMish:
      mish_backward(x, dy, dx, n);
      return;
  }
}

}  // namespace attn::kernels
