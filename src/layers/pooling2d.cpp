// MaxPooling2D and AveragePooling2D: each output cell reduces its window channel by channel.
// GlobalAveragePooling2D and GlobalMaxPooling2D: the reductions of kernels/global_pooling over
// every cell, as the 1D global poolings run them over the steps.
#include "attn/layers/pooling2d.hpp"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <limits>

#include "kernels/global_pooling.hpp"

namespace attn::layers {

namespace {
// Appended piece by piece: GCC 12's -Wrestrict misfires on "(" + std::to_string(...).
std::string pair_to_string(std::array<int64_t, 2> p) {
  std::string s = "(";
  s += std::to_string(p[0]);
  s += ", ";
  s += std::to_string(p[1]);
  s += ")";
  return s;
}
// One cell's channels against the running maxima: a value replaces a maximum only when
// strictly greater, so ties keep the first cell, and the first NaN met stays (v != v takes it;
// nothing is greater than NaN after it). Written without branches (an int condition, the
// position's bits as an int) so that GCC vectorizes it.
void take_larger(const float* __restrict v, int32_t cell, int64_t channels, float* __restrict max,
                 float* __restrict from) {
  for (int64_t c = 0; c < channels; ++c) {
    const float a = v[c], m = max[c];
    const int take = (a > m) | ((a != a) & (m == m));
    max[c] = take ? a : m;
    const int32_t kept = std::bit_cast<int32_t>(from[c]);
    from[c] = std::bit_cast<float>(take ? cell + static_cast<int32_t>(c) : kept);
  }
}
}  // namespace

Pooling2DLayer::Pooling2DLayer(std::string class_name, std::string prefix, std::array<int64_t, 2> pool_size,
                               Pooling2DOptions options)
    : Layer(std::move(prefix), options.name),
      class_name_(std::move(class_name)),
      pool_size_(pool_size),
      options_(std::move(options)) {
  if (pool_size_[0] <= 0 || pool_size_[1] <= 0) fail("pool_size must be positive, got " + pair_to_string(pool_size_));
  if (options_.strides == std::array<int64_t, 2>{0, 0}) options_.strides = pool_size_;
  if (options_.strides[0] <= 0 || options_.strides[1] <= 0)
    fail("strides must be positive, got " + pair_to_string(options_.strides));
  if (options_.padding != "valid" && options_.padding != "same")
    fail("padding must be \"valid\" or \"same\", got \"" + options_.padding + "\"");
}

std::vector<Shape> Pooling2DLayer::compute_build(const std::vector<Shape>& in, const CallOptions& call) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  if (in[0].size() != 3) fail("input must be (batch, height, width, channels), got " + batch_shape_to_string(in[0]));
  for (const Node* m : call.masks())
    if (*m) fail("takes no mask");
  const bool same = options_.padding == "same";
  for (int a = 0; a < 2; ++a) {
    Axis& axis = a == 0 ? rows_ : cols_;
    axis.in = in[0][a];
    axis.pool = pool_size_[a];
    axis.stride = options_.strides[a];
    if (same) {
      axis.out = (axis.in - 1) / axis.stride + 1;
      axis.pad_before = std::max<int64_t>(0, (axis.out - 1) * axis.stride + axis.pool - axis.in) / 2;
    } else {
      axis.out = axis.in >= axis.pool ? (axis.in - axis.pool) / axis.stride + 1 : 0;
      axis.pad_before = 0;
    }
  }
  channels_ = in[0][2];
  if (rows_.in * cols_.in * channels_ > std::numeric_limits<int32_t>::max())
    fail("input of " + std::to_string(rows_.in * cols_.in * channels_) +
         " values per sample is more than the 2^31 - 1 a max's saved position can name");
  if (rows_.out <= 0 || cols_.out <= 0)
    fail("pool_size " + pair_to_string(pool_size_) + " is larger than the " + pair_to_string({rows_.in, cols_.in}) +
         " input (height, width) with \"valid\" padding");
  return {{rows_.out, cols_.out, channels_}};
}

nlohmann::json Pooling2DLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["pool_size"] = nlohmann::json::array({pool_size_[0], pool_size_[1]});
  c["padding"] = options_.padding;
  c["strides"] = nlohmann::json::array({options_.strides[0], options_.strides[1]});
  c["data_format"] = "channels_last";
  return c;
}

int64_t MaxPooling2DLayer::saved_floats_per_sample(const CallOptions&) const {
  return rows_.out * cols_.out * channels_;
}

// Each window's cells in order, rows then columns, channels innermost (contiguous). The
// winner's input offset is kept in `saved` as an int32's bits.
void MaxPooling2DLayer::forward(ForwardContext& ctx) {
  const int64_t C = channels_, W = cols_.in, in_floats = rows_.in * W * C, out_floats = rows_.out * cols_.out * C;
  for (int64_t b = 0; b < ctx.batch; ++b) {
    const float* x = ctx.inputs[0] + b * in_floats;
    float* y = ctx.outputs[0] + b * out_floats;
    float* from = ctx.saved + b * out_floats;
    for (int64_t i = 0; i < rows_.out; ++i) {
      const auto [r0, r1] = rows_.window(i);
      for (int64_t j = 0; j < cols_.out; ++j) {
        const auto [c0, c1] = cols_.window(j);
        float* __restrict out = y + (i * cols_.out + j) * C;
        float* __restrict at = from + (i * cols_.out + j) * C;
        const int32_t first = static_cast<int32_t>((r0 * W + c0) * C);
        for (int64_t c = 0; c < C; ++c) {
          out[c] = x[first + c];
          at[c] = std::bit_cast<float>(static_cast<int32_t>(first + c));
        }
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t q = r == r0 ? c0 + 1 : c0; q < c1; ++q) {
            const int32_t cell = static_cast<int32_t>((r * W + q) * C);
            take_larger(x + cell, cell, C, out, at);
          }
      }
    }
  }
}

void MaxPooling2DLayer::backward(BackwardContext& ctx) {
  float* dx_all = ctx.input_grads[0];
  const float* dy_all = ctx.output_grads[0];
  if (!dx_all || !dy_all) return;
  const int64_t in_floats = rows_.in * cols_.in * channels_, out_floats = rows_.out * cols_.out * channels_;
  for (int64_t b = 0; b < ctx.batch; ++b) {
    const float* from = ctx.saved + b * out_floats;
    const float* dy = dy_all + b * out_floats;
    float* dx = dx_all + b * in_floats;
    for (int64_t o = 0; o < out_floats; ++o) dx[std::bit_cast<int32_t>(from[o])] += dy[o];
  }
}

void AveragePooling2DLayer::forward(ForwardContext& ctx) {
  const int64_t C = channels_, W = cols_.in;
  for (int64_t b = 0; b < ctx.batch; ++b) {
    const float* x = ctx.inputs[0] + b * rows_.in * W * C;
    float* y = ctx.outputs[0] + b * rows_.out * cols_.out * C;
    for (int64_t i = 0; i < rows_.out; ++i) {
      const auto [r0, r1] = rows_.window(i);
      for (int64_t j = 0; j < cols_.out; ++j) {
        const auto [c0, c1] = cols_.window(j);
        float* out = y + (i * cols_.out + j) * C;
        for (int64_t c = 0; c < C; ++c) out[c] = 0.0f;
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t q = c0; q < c1; ++q) {
            const float* cell = x + (r * W + q) * C;
            for (int64_t c = 0; c < C; ++c) out[c] += cell[c];
          }
        const auto count = static_cast<float>((r1 - r0) * (c1 - c0));  // the real cells only
        for (int64_t c = 0; c < C; ++c) out[c] /= count;
      }
    }
  }
}

void AveragePooling2DLayer::backward(BackwardContext& ctx) {
  float* dx_all = ctx.input_grads[0];
  const float* dy_all = ctx.output_grads[0];
  if (!dx_all || !dy_all) return;
  const int64_t C = channels_, W = cols_.in;
  for (int64_t b = 0; b < ctx.batch; ++b) {
    const float* dy = dy_all + b * rows_.out * cols_.out * C;
    float* dx = dx_all + b * rows_.in * W * C;
    for (int64_t i = 0; i < rows_.out; ++i) {
      const auto [r0, r1] = rows_.window(i);
      for (int64_t j = 0; j < cols_.out; ++j) {
        const auto [c0, c1] = cols_.window(j);
        const float inv = 1.0f / static_cast<float>((r1 - r0) * (c1 - c0));
        const float* g = dy + (i * cols_.out + j) * C;
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t q = c0; q < c1; ++q) {
            float* cell = dx + (r * W + q) * C;
            for (int64_t c = 0; c < C; ++c) cell[c] += g[c] * inv;
          }
      }
    }
  }
}

GlobalPooling2DLayer::GlobalPooling2DLayer(std::string class_name, std::string prefix, GlobalPooling2DOptions options)
    : Layer(std::move(prefix), options.name), class_name_(std::move(class_name)), options_(std::move(options)) {
  if (options_.data_format != "channels_last" && options_.data_format != "channels_first")
    fail("data_format must be \"channels_last\" or \"channels_first\", got \"" + options_.data_format + "\"");
}

std::vector<Shape> GlobalPooling2DLayer::compute_build(const std::vector<Shape>& in, const CallOptions& call) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  const bool first = options_.data_format == "channels_first";
  if (in[0].size() != 3)
    fail(std::string("input must be (batch, ") + (first ? "channels, height, width" : "height, width, channels") +
         "), got " + batch_shape_to_string(in[0]));
  for (const Node* m : call.masks())
    if (*m) fail("takes no mask");
  cells_ = first ? in[0][1] * in[0][2] : in[0][0] * in[0][1];
  channels_ = in[0][first ? 0 : 2];
  cell_stride_ = first ? 1 : channels_;
  channel_stride_ = first ? cells_ : 1;
  if (options_.keepdims) return {first ? Shape{channels_, 1, 1} : Shape{1, 1, channels_}};
  return {{channels_}};
}

nlohmann::json GlobalPooling2DLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["data_format"] = options_.data_format;
  c["keepdims"] = options_.keepdims;
  return c;
}

void GlobalAveragePooling2DLayer::forward(ForwardContext& ctx) {
  const kernels::PooledLayout layout{cells_, channels_, cell_stride_, channel_stride_};
  kernels::global_average_forward(layout, ctx.inputs[0], ctx.outputs[0], ctx.batch, nullptr);
}

void GlobalAveragePooling2DLayer::backward(BackwardContext& ctx) {
  if (!ctx.input_grads[0] || !ctx.output_grads[0]) return;
  const kernels::PooledLayout layout{cells_, channels_, cell_stride_, channel_stride_};
  kernels::global_average_backward(layout, ctx.output_grads[0], ctx.input_grads[0], ctx.batch, nullptr);
}

void GlobalMaxPooling2DLayer::forward(ForwardContext& ctx) {
  const kernels::PooledLayout layout{cells_, channels_, cell_stride_, channel_stride_};
  kernels::global_max_forward(layout, ctx.inputs[0], ctx.outputs[0], ctx.batch);
}

void GlobalMaxPooling2DLayer::backward(BackwardContext& ctx) {
  if (!ctx.input_grads[0] || !ctx.output_grads[0]) return;
  const kernels::PooledLayout layout{cells_, channels_, cell_stride_, channel_stride_};
  kernels::global_max_backward(layout, ctx.inputs[0], ctx.outputs[0], ctx.output_grads[0], ctx.input_grads[0],
                               ctx.batch);
}

}  // namespace attn::layers
