// Conv2D as matrix products: the patch matrices (a row per output position) of a few samples
// at a time times the kernel, seen as a (kh * kw * channels, filters) matrix, through the same
// small-row kernels or sgemm as Dense. Backward gathers the patches again rather than keeping
// them: a gather costs far less than the products, and saved patches would be kh * kw times the
// input.
#include "attn/layers/conv2d.hpp"

#include <algorithm>
#include <cstring>

#include "kernels/activations.hpp"
#include "layers/conv_config.hpp"
#include "kernels/matmul.hpp"

namespace attn::layers {

using kernels::Activation;

Conv2DLayer::Conv2DLayer(int64_t filters, std::array<int64_t, 2> kernel_size, Conv2DOptions options)
    : Layer("conv2d", options.name), filters_(filters), kernel_size_(kernel_size), options_(std::move(options)) {
  const auto pair = [](std::array<int64_t, 2> v) {
    std::string s = "(";  // appended, not "(" + ...: GCC 12 warns falsely (-Wrestrict) on that
    return s.append(std::to_string(v[0])).append(", ").append(std::to_string(v[1])).append(")");
  };
  if (filters_ <= 0) fail("filters must be positive, got " + std::to_string(filters_));
  if (kernel_size_[0] <= 0 || kernel_size_[1] <= 0) fail("kernel_size must be positive, got " + pair(kernel_size_));
  if (options_.strides[0] <= 0 || options_.strides[1] <= 0)
    fail("strides must be positive, got " + pair(options_.strides));
  if (options_.dilation_rate[0] <= 0 || options_.dilation_rate[1] <= 0)
    fail("dilation_rate must be positive, got " + pair(options_.dilation_rate));
  if (std::max(options_.strides[0], options_.strides[1]) > 1 &&
      std::max(options_.dilation_rate[0], options_.dilation_rate[1]) > 1)
    fail("strides > 1 with dilation_rate > 1 is not supported (as in Keras), got strides " + pair(options_.strides) +
         " and dilation_rate " + pair(options_.dilation_rate));
  if (options_.padding != "valid" && options_.padding != "same")
    fail("padding must be \"valid\" or \"same\", got \"" + options_.padding + "\"");
  activation_ = static_cast<int>(kernels::activation_from_string(options_.activation));
  activation_name_ = kernels::to_string(static_cast<Activation>(activation_));
}

std::vector<Shape> Conv2DLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  if (in[0].size() != 3 || in[0][0] <= 0 || in[0][1] <= 0 || in[0][2] <= 0)
    fail("input must be (batch, rows, columns, channels) with known sizes, got " + batch_shape_to_string(in[0]));
  const bool same = options_.padding == "same";
  const auto axis = [&](int i) {
    Axis a;
    a.in = in[0][i];
    a.kernel = kernel_size_[i];
    a.stride = options_.strides[i];
    a.dilation = options_.dilation_rate[i];
    const int64_t span = (a.kernel - 1) * a.dilation + 1;
    if (same) {
      a.out = (a.in - 1) / a.stride + 1;
      a.pad_before = std::max<int64_t>(0, (a.out - 1) * a.stride + span - a.in) / 2;
    } else {
      a.out = a.in >= span ? (a.in - span) / a.stride + 1 : 0;
    }
    if (a.out <= 0)
      fail(std::string("kernel of ") + std::to_string(a.kernel) + " taps (dilation " + std::to_string(a.dilation) +
           ") spans more than the " + std::to_string(a.in) + " input " + (i == 0 ? "rows" : "columns") +
           " with \"valid\" padding");
    return a;
  };
  rows_ = axis(0);
  cols_ = axis(1);
  channels_ = in[0][2];
  if (!built_) {
    add_weight("kernel", {kernel_size_[0], kernel_size_[1], channels_, filters_}, options_.kernel_initializer);
    if (options_.use_bias) add_weight("bias", {filters_}, options_.bias_initializer);
  }
  return {{rows_.out, cols_.out, filters_}};
}

bool Conv2DLayer::pointwise() const {
  return kernel_size_[0] == 1 && kernel_size_[1] == 1 && options_.strides[0] == 1 && options_.strides[1] == 1;
}

int64_t Conv2DLayer::saved_floats_per_sample(const CallOptions&) const {
  // The pre-activation, for the activation's derivative (none for linear).
  return static_cast<Activation>(activation_) == Activation::kLinear ? 0 : rows_.out * cols_.out * filters_;
}

int64_t Conv2DLayer::samples_per_product(int64_t batch) const {
  // A pointwise layer's products read the input in place: the whole slice at once.
  if (pointwise()) return std::max<int64_t>(1, batch);
  return std::clamp<int64_t>(kProductRows / (rows_.out * cols_.out), 1, std::max<int64_t>(1, batch));
}

int64_t Conv2DLayer::scratch_floats(int64_t batch, const CallOptions&) const {
  // A product's worth of samples: their patches and the patches' gradients, and d(pre-activation).
  const int64_t positions = samples_per_product(batch) * rows_.out * cols_.out;
  const int64_t patch_floats = pointwise() ? 0 : positions * kernel_size_[0] * kernel_size_[1] * channels_;
  return 2 * patch_floats + positions * filters_;
}

namespace {
// n floats from src to dst, in blocks of 8 whose fixed-size copies the compiler inlines: a patch
// row's runs are a few dozen floats, for which a library call would cost more than the copy.
inline void copy_floats(float* __restrict dst, const float* __restrict src, int64_t n) {
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) std::memcpy(dst + k, src + k, 8 * sizeof(float));
  for (; k < n; ++k) dst[k] = src[k];
}
}  // namespace

void Conv2DLayer::gather_patches(const float* x, float* patches) const {
  const int64_t c = channels_, run = cols_.kernel * c;
  float* p = patches;
  for (int64_t i = 0; i < rows_.out; ++i)
    for (int64_t j = 0; j < cols_.out; ++j) {
      // With dilation 1 and no padded column, a kernel row's taps are one run of the input row.
      const int64_t first_col = cols_.input_of(j, 0), last_col = cols_.input_of(j, cols_.kernel - 1);
      const bool whole_run = cols_.dilation == 1 && first_col >= 0 && last_col < cols_.in;
      for (int64_t a = 0; a < rows_.kernel; ++a) {
        const int64_t r = rows_.input_of(i, a);
        if (r < 0 || r >= rows_.in) {
          std::fill_n(p, run, 0.0f);
          p += run;
          continue;
        }
        const float* row = x + r * cols_.in * c;
        if (whole_run) {
          copy_floats(p, row + first_col * c, run);
          p += run;
          continue;
        }
        for (int64_t b = 0; b < cols_.kernel; ++b, p += c) {
          const int64_t col = cols_.input_of(j, b);
          if (col < 0 || col >= cols_.in)
            std::fill_n(p, c, 0.0f);
          else
            copy_floats(p, row + col * c, c);
        }
      }
    }
}

void Conv2DLayer::scatter_patch_grads(const float* patch_grads, float* dx) const {
  const int64_t c = channels_;
  const float* g = patch_grads;
  for (int64_t i = 0; i < rows_.out; ++i)
    for (int64_t j = 0; j < cols_.out; ++j)
      for (int64_t a = 0; a < rows_.kernel; ++a) {
        const int64_t r = rows_.input_of(i, a);
        for (int64_t b = 0; b < cols_.kernel; ++b, g += c) {
          const int64_t col = cols_.input_of(j, b);
          if (r < 0 || r >= rows_.in || col < 0 || col >= cols_.in) continue;
          float* d = dx + (r * cols_.in + col) * c;
          for (int64_t k = 0; k < c; ++k) d[k] += g[k];
        }
      }
}

void Conv2DLayer::forward(ForwardContext& ctx) {
  const auto act = static_cast<Activation>(activation_);
  const float* kernel = weights_[0].value.data();
  const float* bias = options_.use_bias ? weights_[1].value.data() : nullptr;
  const int64_t positions = rows_.out * cols_.out, depth = kernel_size_[0] * kernel_size_[1] * channels_;
  const int64_t in_floats = rows_.in * cols_.in * channels_, out_floats = positions * filters_;
  const int64_t per_product = samples_per_product(ctx.batch);
  float* y = ctx.outputs[0];
  float* z = act == Activation::kLinear ? y : ctx.saved;  // pre-activation
  for (int64_t s0 = 0; s0 < ctx.batch; s0 += per_product) {
    const int64_t n = std::min(per_product, ctx.batch - s0);
    const float* patches = ctx.inputs[0] + s0 * in_floats;
    if (!pointwise()) {
      for (int64_t s = 0; s < n; ++s) gather_patches(patches + s * in_floats, ctx.scratch + s * positions * depth);
      patches = ctx.scratch;
    }
    kernels::matmul(patches, depth, kernel, bias, z + s0 * out_floats, n * positions, depth, filters_);
  }
  if (act == Activation::kLinear) return;
  const bool row_wise = kernels::is_row_wise(act);
  kernels::activation_forward(act, z, y, row_wise ? ctx.batch * positions : 1,
                              row_wise ? filters_ : ctx.batch * out_floats);
}

void Conv2DLayer::backward(BackwardContext& ctx) {
  if (ctx.batch == 0 || !ctx.output_grads[0]) return;
  const auto act = static_cast<Activation>(activation_);
  const bool row_wise = kernels::is_row_wise(act);
  const bool through_activation = act != Activation::kLinear && !ctx.output_grad_is_logits;
  const int64_t positions = rows_.out * cols_.out, depth = kernel_size_[0] * kernel_size_[1] * channels_;
  const int64_t in_floats = rows_.in * cols_.in * channels_, out_floats = positions * filters_;
  const int64_t per_product = samples_per_product(ctx.batch);
  const float* kernel = weights_[0].value.data();
  const bool weight_grads = ctx.param_grads && trainable_;
  float* dkernel = weight_grads ? ctx.param_grads + weights_[0].offset : nullptr;
  float* dbias = weight_grads && options_.use_bias ? ctx.param_grads + weights_[1].offset : nullptr;
  const int64_t patch_floats = pointwise() ? 0 : per_product * positions * depth;
  float* patches = ctx.scratch;
  float* patch_grads = ctx.scratch + patch_floats;
  float* dz_buffer = ctx.scratch + 2 * patch_floats;
  for (int64_t s0 = 0; s0 < ctx.batch; s0 += per_product) {
    const int64_t n = std::min(per_product, ctx.batch - s0), rows = n * positions;
    const float* dz = ctx.output_grads[0] + s0 * out_floats;
    if (through_activation) {
      std::memset(dz_buffer, 0, n * out_floats * sizeof(float));
      kernels::activation_backward(act, ctx.saved + s0 * out_floats, ctx.outputs[0] + s0 * out_floats, dz, dz_buffer,
                                   row_wise ? rows : 1, row_wise ? filters_ : n * out_floats);
      dz = dz_buffer;
    }
    const float* x = ctx.inputs[0] + s0 * in_floats;
    if (dbias)
      for (int64_t p = 0; p < rows; ++p)
        for (int64_t f = 0; f < filters_; ++f) dbias[f] += dz[p * filters_ + f];
    if (dkernel) {
      const float* p = x;
      if (!pointwise()) {
        for (int64_t s = 0; s < n; ++s) gather_patches(x + s * in_floats, patches + s * positions * depth);
        p = patches;
      }
      kernels::matmul_add_grad_weight(p, depth, dz, dkernel, rows, depth, filters_);
    }
    if (!ctx.input_grads[0]) continue;
    float* dx = ctx.input_grads[0] + s0 * in_floats;
    if (pointwise()) {
      kernels::matmul_add_grad_input(dz, kernel, dx, channels_, rows, channels_, filters_);
    } else {
      kernels::matmul_add_grad_input(dz, kernel, patch_grads, depth, rows, depth, filters_, true);
      for (int64_t s = 0; s < n; ++s) scatter_patch_grads(patch_grads + s * positions * depth, dx + s * in_floats);
    }
  }
}

nlohmann::json Conv2DLayer::get_config() const {
  const auto pair = [](std::array<int64_t, 2> v) { return nlohmann::json::array({v[0], v[1]}); };
  nlohmann::json c = Layer::get_config();
  c["filters"] = filters_;
  c["kernel_size"] = pair(kernel_size_);
  c["strides"] = pair(options_.strides);
  c["padding"] = options_.padding;
  c["data_format"] = "channels_last";
  c["dilation_rate"] = pair(options_.dilation_rate);
  c["groups"] = 1;
  add_conv_weight_config(c, activation_name_, options_);
  return c;
}

}  // namespace attn::layers
