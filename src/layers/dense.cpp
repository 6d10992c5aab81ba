// Dense forward/backward on the batch slice: the small-m kernels (kernels/dense_gemm.hpp) for
// a few rows, where BLAS would spend its time packing W; BLAS sgemm for many rows.
#include "attn/layers/dense.hpp"

#include <cblas.h>

#include <cstring>

#include "kernels/activations.hpp"
#include "kernels/dense_gemm.hpp"

namespace attn::layers {

using kernels::Activation;

DenseLayer::DenseLayer(int64_t units, DenseOptions options)
    : Layer("dense", options.name), units_(units), options_(std::move(options)) {
  if (units_ <= 0) fail("units must be a positive integer, got " + std::to_string(units_));
  activation_ = static_cast<int>(kernels::activation_from_string(options_.activation));
  activation_name_ = kernels::to_string(static_cast<Activation>(activation_));
}

std::vector<Shape> DenseLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  if (in[0].empty()) fail("input must have at least one axis besides the batch");
  in_features_ = in[0].back();
  rows_per_sample_ = 1;
  for (size_t i = 0; i + 1 < in[0].size(); ++i) rows_per_sample_ *= in[0][i];
  if (!built_) {
    add_weight("kernel", {in_features_, units_}, options_.kernel_initializer);
    if (options_.use_bias) add_weight("bias", {units_}, options_.bias_initializer);
  }
  Shape out = in[0];
  out.back() = units_;
  return {out};
}

bool DenseLayer::has_keras_logits() const {
  auto a = static_cast<Activation>(activation_);
  return a == Activation::kSigmoid || a == Activation::kSoftmax;
}

int64_t DenseLayer::saved_floats_per_sample(const CallOptions&) const {
  // The pre-activation, needed by the activation's derivative (none for linear).
  return static_cast<Activation>(activation_) == Activation::kLinear ? 0 : rows_per_sample_ * units_;
}

int64_t DenseLayer::scratch_floats(int64_t batch, const CallOptions&) const {
  return batch * rows_per_sample_ * units_;  // d(pre-activation)
}

void DenseLayer::forward(ForwardContext& ctx) {
  const auto act = static_cast<Activation>(activation_);
  const int64_t rows = ctx.batch * rows_per_sample_;
  const float* x = ctx.inputs[0];
  float* y = ctx.outputs[0];
  float* z = act == Activation::kLinear ? y : ctx.saved;  // pre-activation
  const float* kernel = weights_[0].value.data();
  if (rows <= kernels::kDenseSmallRows) {
    kernels::dense_forward(x, kernel, options_.use_bias ? weights_[1].value.data() : nullptr, z, rows, in_features_,
                           units_);
  } else {
    if (options_.use_bias) {
      const float* bias = weights_[1].value.data();
      for (int64_t r = 0; r < rows; ++r) std::memcpy(z + r * units_, bias, units_ * sizeof(float));
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), static_cast<int>(units_),
                static_cast<int>(in_features_), 1.0f, x, static_cast<int>(in_features_), kernel,
                static_cast<int>(units_), options_.use_bias ? 1.0f : 0.0f, z, static_cast<int>(units_));
  }
  if (act != Activation::kLinear) {
    if (ctx.logits) std::memcpy(ctx.logits, z, rows * units_ * sizeof(float));
    kernels::activation_forward(act, z, y, act == Activation::kSoftmax ? rows : 1,
                                act == Activation::kSoftmax ? units_ : rows * units_);
  } else if (ctx.logits) {
    std::memcpy(ctx.logits, y, rows * units_ * sizeof(float));
  }
}

void DenseLayer::backward(BackwardContext& ctx) {
  const auto act = static_cast<Activation>(activation_);
  const int64_t rows = ctx.batch * rows_per_sample_;
  if (rows == 0 || !ctx.output_grads[0]) return;
  const float* dy = ctx.output_grads[0];
  const float* dz = dy;
  if (act != Activation::kLinear && !ctx.output_grad_is_logits) {
    float* buf = ctx.scratch;
    std::memset(buf, 0, rows * units_ * sizeof(float));
    kernels::activation_backward(act, ctx.saved, ctx.outputs[0], dy, buf, act == Activation::kSoftmax ? rows : 1,
                                 act == Activation::kSoftmax ? units_ : rows * units_);
    dz = buf;
  }
  const float* x = ctx.inputs[0];
  const int m = static_cast<int>(rows), n = static_cast<int>(units_), k = static_cast<int>(in_features_);
  const bool small = rows <= kernels::kDenseSmallRows;
  if (ctx.param_grads && trainable_) {
    float* dkernel = ctx.param_grads + weights_[0].offset;
    if (small)
      kernels::dense_grad_weight(x, dz, dkernel, m, k, n);
    else
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, n, m, 1.0f, x, k, dz, n, 1.0f, dkernel, n);
    if (options_.use_bias) {
      float* dbias = ctx.param_grads + weights_[1].offset;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < units_; ++j) dbias[j] += dz[r * units_ + j];
    }
  }
  if (ctx.input_grads[0] && small)
    kernels::dense_grad_input(dz, weights_[0].value.data(), ctx.input_grads[0], m, k, n);
  else if (ctx.input_grads[0])
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, k, n, 1.0f, dz, n, weights_[0].value.data(), n, 1.0f,
                ctx.input_grads[0], k);
}

nlohmann::json DenseLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  auto initializer = [](const std::string& name) {
    std::string cls = name == "glorot_uniform" ? "GlorotUniform" : name == "zeros" ? "Zeros" : "Ones";
    nlohmann::json cfg = nlohmann::json::object();
    if (cls == "GlorotUniform") cfg["seed"] = nullptr;
    return nlohmann::json{{"module", "keras.initializers"}, {"class_name", cls}, {"config", cfg},
                          {"registered_name", nullptr}};
  };
  c["units"] = units_;
  c["activation"] = activation_name_;
  c["use_bias"] = options_.use_bias;
  c["kernel_initializer"] = initializer(options_.kernel_initializer);
  c["bias_initializer"] = initializer(options_.bias_initializer);
  c["kernel_regularizer"] = nullptr;
  c["bias_regularizer"] = nullptr;
  c["kernel_constraint"] = nullptr;
  c["bias_constraint"] = nullptr;
  return c;
}

}  // namespace attn::layers
