// Activation kernels. Plain loops: at the reference model's sizes (20 x 100) the
// compiler's auto-vectorisation is enough; the expensive exp lives in attention.
#include "kernels/activations.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace attn::kernels {

Activation activation_from_string(const std::string& name) {
  if (name.empty() || name == "linear" || name == "None") return Activation::kLinear;
  if (name == "relu") return Activation::kRelu;
  if (name == "sigmoid") return Activation::kSigmoid;
  if (name == "tanh") return Activation::kTanh;
  if (name == "softmax") return Activation::kSoftmax;
  if (name == "gelu") return Activation::kGelu;
  throw std::invalid_argument("unsupported activation '" + name +
                              "' (supported: linear, relu, sigmoid, tanh, softmax, gelu)");
}

std::string to_string(Activation a) {
  switch (a) {
    case Activation::kLinear: return "linear";
    case Activation::kRelu: return "relu";
    case Activation::kSigmoid: return "sigmoid";
    case Activation::kTanh: return "tanh";
    case Activation::kSoftmax: return "softmax";
    case Activation::kGelu: return "gelu";
  }
  return "linear";
}

namespace {
constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
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
  }
}

}  // namespace attn::kernels
