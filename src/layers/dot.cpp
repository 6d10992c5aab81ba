// Dot: out[m, n] = sum over k of x[m, k] y[n, k], each input read through strides so that either
// of its axes can be the contracted one; backward is the two products with the output gradient.
// With normalize, out[m, n] = a[m] b[n] (x[m, :] . y[n, :]) for the rows' inverse norms a and b,
// which are recomputed in backward rather than saved (a pass over the inputs, as cheap as reading
// them back).
#include "attn/layers/dot.hpp"

#include <algorithm>
#include <cmath>

namespace attn::layers {

DotLayer::DotLayer(std::vector<int64_t> axes, DotOptions options)
    : Layer("dot", std::move(options.name)), axes_(std::move(axes)), normalize_(options.normalize) {
  if (axes_.size() != 1 && axes_.size() != 2)
    fail("axes must be one integer or two, got " + std::to_string(axes_.size()));
}

std::vector<Shape> DotLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.size() != 2) fail("expects exactly 2 inputs, got " + std::to_string(in.size()));
  Shape out;
  for (size_t i = 0; i < 2; ++i) {
    const Shape& s = in[i];
    const auto rank = static_cast<int64_t>(s.size()) + 1;  // with the batch axis, as Keras counts
    if (rank != 2 && rank != 3)
      fail("input " + std::to_string(i) + " has shape " + batch_shape_to_string(s) +
           "; only inputs with 1 or 2 axes besides the batch are supported");
    const int64_t given = axes_[axes_.size() == 1 ? 0 : i];
    const int64_t axis = given < 0 ? ((given % rank) + rank) % rank : given;  // Python's modulo
    if (axis == 0 || axis >= rank)
      fail("axis " + std::to_string(given) + " of input " + std::to_string(i) + " (shape " +
           batch_shape_to_string(s) + ") cannot be contracted (the batch axis, or out of range)");
    Operand& o = operand_[i];
    o.size = shape_size(s);
    o.depth = s[axis - 1];
    if (rank == 2) {
      o.rows = 1;
      o.depth_stride = 1;
      o.row_stride = 0;
    } else if (axis == 2) {  // [rows, depth]
      o.rows = s[0];
      o.row_stride = o.depth;
      o.depth_stride = 1;
    } else {  // [depth, rows]
      o.rows = s[1];
      o.row_stride = 1;
      o.depth_stride = o.rows;
    }
    if (rank == 3) out.push_back(o.rows);
  }
  if (operand_[0].depth != operand_[1].depth)
    fail("the contracted axes differ in size: " + std::to_string(operand_[0].depth) + " in " +
         batch_shape_to_string(in[0]) + " and " + std::to_string(operand_[1].depth) + " in " +
         batch_shape_to_string(in[1]));
  if (out.empty()) out.push_back(1);
  return {out};
}

int64_t DotLayer::scratch_floats(int64_t /*batch*/, const CallOptions&) const {
  return normalize_ ? 2 * (operand_[0].rows + operand_[1].rows) : 0;
}

// Keras 3's ops.normalize: x * min(rsqrt(sum x^2), 1 / epsilon), epsilon = 1e-7.
void DotLayer::inverse_norms(const float* v, const Operand& o, float* inverse, float* through_norm) const {
  constexpr float kMaxInverse = 1.0f / 1e-7f;
  for (int64_t r = 0; r < o.rows; ++r) {
    float squares = 0.0f;
    for (int64_t k = 0; k < o.depth; ++k) {
      const float e = v[r * o.row_stride + k * o.depth_stride];
      squares += e * e;
    }
    const float inv = 1.0f / std::sqrt(squares);  // inf for a zero row, then clamped
    inverse[r] = std::min(inv, kMaxInverse);
    through_norm[r] = inv < kMaxInverse ? inv * inv : 0.0f;
  }
}

void DotLayer::forward(ForwardContext& ctx) {
  const Operand &a = operand_[0], &b = operand_[1];
  const int64_t out_size = a.rows * b.rows;
  float *inv_a = nullptr, *inv_b = nullptr, *norm_a = nullptr, *norm_b = nullptr;
  if (normalize_) {
    inv_a = ctx.scratch;
    inv_b = inv_a + a.rows;
    norm_a = inv_b + b.rows;
    norm_b = norm_a + a.rows;
  }
  for (int64_t s = 0; s < ctx.batch; ++s) {
    const float* x = ctx.inputs[0] + s * a.size;
    const float* y = ctx.inputs[1] + s * b.size;
    float* out = ctx.outputs[0] + s * out_size;
    if (normalize_) {
      inverse_norms(x, a, inv_a, norm_a);
      inverse_norms(y, b, inv_b, norm_b);
    }
    for (int64_t m = 0; m < a.rows; ++m)
      for (int64_t n = 0; n < b.rows; ++n) {
        float sum = 0.0f;
        for (int64_t k = 0; k < a.depth; ++k)
          sum += x[m * a.row_stride + k * a.depth_stride] * y[n * b.row_stride + k * b.depth_stride];
        out[m * b.rows + n] = normalize_ ? sum * inv_a[m] * inv_b[n] : sum;
      }
  }
}

void DotLayer::backward(BackwardContext& ctx) {
  const float* dout_all = ctx.output_grads[0];
  if (!dout_all) return;
  const Operand &a = operand_[0], &b = operand_[1];
  const int64_t out_size = a.rows * b.rows;
  float *inv_a = nullptr, *inv_b = nullptr, *norm_a = nullptr, *norm_b = nullptr;
  if (normalize_) {
    inv_a = ctx.scratch;
    inv_b = inv_a + a.rows;
    norm_a = inv_b + b.rows;
    norm_b = norm_a + a.rows;
  }
  const auto scale = [](const float* inv, int64_t r) { return inv ? inv[r] : 1.0f; };
  for (int64_t s = 0; s < ctx.batch; ++s) {
    const float* x = ctx.inputs[0] + s * a.size;
    const float* y = ctx.inputs[1] + s * b.size;
    const float* dout = dout_all + s * out_size;
    const float* out = normalize_ ? ctx.outputs[0] + s * out_size : nullptr;
    if (normalize_) {
      inverse_norms(x, a, inv_a, norm_a);
      inverse_norms(y, b, inv_b, norm_b);
    }
    // dx[m, k] += a[m] sum_n dout[m, n] b[n] y[n, k]; with normalize, the path through a[m] adds
    // -x[m, k] a[m]^2 sum_n dout[m, n] out[m, n] (d a[m] / d x[m, k] = -x[m, k] a[m]^3).
    if (float* dx = ctx.input_grads[0] ? ctx.input_grads[0] + s * a.size : nullptr)
      for (int64_t m = 0; m < a.rows; ++m) {
        float through = 0.0f;
        for (int64_t n = 0; n < b.rows; ++n) {
          const float g = dout[m * b.rows + n];
          if (out) through += g * out[m * b.rows + n];
          const float gs = g * scale(inv_a, m) * scale(inv_b, n);
          for (int64_t k = 0; k < a.depth; ++k)
            dx[m * a.row_stride + k * a.depth_stride] += gs * y[n * b.row_stride + k * b.depth_stride];
        }
        if (out && norm_a[m] != 0.0f)
          for (int64_t k = 0; k < a.depth; ++k)
            dx[m * a.row_stride + k * a.depth_stride] -= through * norm_a[m] * x[m * a.row_stride + k * a.depth_stride];
      }
    if (float* dy = ctx.input_grads[1] ? ctx.input_grads[1] + s * b.size : nullptr)
      for (int64_t n = 0; n < b.rows; ++n) {
        float through = 0.0f;
        for (int64_t m = 0; m < a.rows; ++m) {
          const float g = dout[m * b.rows + n];
          if (out) through += g * out[m * b.rows + n];
          const float gs = g * scale(inv_a, m) * scale(inv_b, n);
          for (int64_t k = 0; k < a.depth; ++k)
            dy[n * b.row_stride + k * b.depth_stride] += gs * x[m * a.row_stride + k * a.depth_stride];
        }
        if (out && norm_b[n] != 0.0f)
          for (int64_t k = 0; k < b.depth; ++k)
            dy[n * b.row_stride + k * b.depth_stride] -= through * norm_b[n] * y[n * b.row_stride + k * b.depth_stride];
      }
  }
}

nlohmann::json DotLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  if (axes_.size() == 1)
    c["axes"] = axes_[0];
  else
    c["axes"] = axes_;
  c["normalize"] = normalize_;
  return c;
}

}  // namespace attn::layers
