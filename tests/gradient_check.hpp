// One generic gradient check for any attn::Layer: builds it on symbolic inputs, runs
// forward through a ForwardContext, takes L = sum(r * out) for a random r, runs backward
// and compares every input and weight gradient with central finite differences (FD
// accumulated in double, the float forward perturbed by a small step; non-trainable weights must
// get none, as Keras differentiates only trainable variables). It also checks the
// layer contract that backward ADDS: a second backward into the same buffers doubles them.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "attn/layer.hpp"
#include "attn/layers/input.hpp"

namespace attn::testing {

struct GradCheck {
  std::shared_ptr<Layer> layer;
  std::vector<Shape> input_shapes;  // without the batch axis
  // input_source[i] = the distinct data tensor input i reads (the same node passed twice,
  // as the model does it: both the data and the gradient buffer are shared). Empty: 0..n-1.
  std::vector<int> input_source;
  CallOptions options;  // query_mask / value_mask are filled by the harness when the masks are given
  std::vector<float> query_mask;  // [batch, Tq] 0/1, empty for none
  std::vector<float> value_mask;  // [batch, Tv]
  std::vector<float> key_mask;        // [batch, Tv] (MultiHeadAttention)
  std::vector<float> attention_mask;  // [batch, Tq, Tv] (MultiHeadAttention)
  int64_t batch = 2;
  bool training = false;
  uint64_t seed = 1234;
  uint32_t data_seed = 7;
  double step = 5e-3;  // FD step (absolute: inputs and weights are O(1))
  double tolerance = 1e-2;  // on ||analytic - fd|| / ||fd||, and per element against max|fd|
  // Called on each weight after its random fill, for weights that need other values (a moving
  // variance must be positive).
  std::function<void(Weight&)> set_weight;
  // Keeps random inputs at least this far from 0 (kinks of relu at the input).
  float min_abs_input = 0.0f;
  // Gradient terms that Keras' autodiff produces but finite differences of the float forward
  // cannot see, added to the FD estimate before comparing. The case: a fully masked Attention row.
  // Keras computes S - 1e9 in float32, which rounds to exactly -1e9 for |S| < 32, so the forward is
  // flat in q, k and the scalars there (FD = 0), while autodiff passes dS straight through the
  // constant offset: the softmax backward at the uniform P it computed. Called once with the
  // distinct inputs, the layer (its weights hold the checked values) and r = dL/d(output 0); adds
  // into expected_inputs[distinct input][element] and expected_weights[weight][element].
  std::function<void(const std::vector<std::vector<float>>& inputs, const Layer& layer, const std::vector<float>& r,
                     std::vector<std::vector<double>>& expected_inputs,
                     std::vector<std::vector<double>>& expected_weights)>
      autodiff_only_terms;
};

struct GradCheckResult {
  std::vector<float> output;               // forward output 0 at the unperturbed point
  std::vector<std::vector<float>> inputs;  // the distinct input tensors it was computed from
};

namespace detail {

inline void expect_close(const std::vector<double>& analytic, const std::vector<double>& fd, double tol,
                         const std::string& what) {
  ASSERT_EQ(analytic.size(), fd.size()) << what;
  double diff2 = 0, ref2 = 0, ref_max = 0;
  for (size_t i = 0; i < fd.size(); ++i) {
    diff2 += (analytic[i] - fd[i]) * (analytic[i] - fd[i]);
    ref2 += fd[i] * fd[i];
    ref_max = std::max(ref_max, std::fabs(fd[i]));
  }
  const double floor = 1e-4;  // float noise of the FD itself on near-zero gradients
  EXPECT_LE(std::sqrt(diff2), tol * std::sqrt(ref2) + floor * std::sqrt(double(fd.size())))
      << what << ": analytic gradient differs from finite differences (|fd| = " << std::sqrt(ref2) << ")";
  for (size_t i = 0; i < fd.size(); ++i) {
    if (std::fabs(analytic[i] - fd[i]) > 3 * tol * ref_max + 3 * floor) {
      ADD_FAILURE() << what << "[" << i << "]: analytic " << analytic[i] << " vs fd " << fd[i];
      break;  // one element is enough to locate the problem
    }
  }
}

}  // namespace detail

// Runs the full check; returns the forward output for callers that check values too.
inline GradCheckResult check_layer_gradients(GradCheck spec) {
  GradCheckResult result;
  Layer& layer = *spec.layer;
  const int n_in = static_cast<int>(spec.input_shapes.size());
  if (spec.input_source.empty())
    for (int i = 0; i < n_in; ++i) spec.input_source.push_back(i);
  int n_data = 0;
  for (int s : spec.input_source) n_data = std::max(n_data, s + 1);

  // Build through the symbolic API, exactly as a model would.
  std::vector<Node> data_nodes;
  for (int d = 0; d < n_data; ++d) {
    int first = static_cast<int>(std::find(spec.input_source.begin(), spec.input_source.end(), d) -
                                 spec.input_source.begin());
    data_nodes.push_back(Input(spec.input_shapes.at(first)));
  }
  std::vector<Node> inputs;
  for (int s : spec.input_source) inputs.push_back(data_nodes[s]);
  if (!spec.query_mask.empty()) spec.options.query_mask = Input({spec.input_shapes[0][0]});
  if (!spec.value_mask.empty()) spec.options.value_mask = Input({spec.input_shapes[1][0]});
  if (!spec.key_mask.empty()) spec.options.key_mask = Input({spec.input_shapes.back()[0]});
  if (!spec.attention_mask.empty())
    spec.options.attention_mask = Input({spec.input_shapes[0][0], spec.input_shapes[1][0]});
  std::vector<Node> outs = layer.call(inputs, spec.options);
  const CallOptions& call = spec.options;

  const int64_t B = spec.batch;
  std::mt19937 gen(spec.data_seed);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  auto draw = [&] {
    float v = uni(gen);
    if (spec.min_abs_input > 0 && std::fabs(v) < spec.min_abs_input) v = v < 0 ? -spec.min_abs_input : spec.min_abs_input;
    return v;
  };

  std::vector<std::vector<float>> data(n_data);
  for (int d = 0; d < n_data; ++d) {
    data[d].resize(B * shape_size(data_nodes[d]->shape));
    for (float& v : data[d]) v = draw();
  }
  // Weights: random values around their initial scale, offsets 0..n as a model would set.
  int64_t n_params = 0;
  for (Weight& w : layer.weights()) {
    w.offset = n_params;
    n_params += shape_size(w.shape);
    // Scalars (Attention's scale, concat_score_weight) stay positive and O(1).
    for (int64_t i = 0; i < w.value.size(); ++i) w.value[i] = w.value.size() == 1 ? 0.75f + 0.5f * uni(gen) : uni(gen);
    if (spec.set_weight) spec.set_weight(w);
  }

  std::vector<std::vector<float>> out_buf;
  for (const Node& o : outs) out_buf.emplace_back(B * shape_size(o->shape));
  std::vector<float> r(out_buf[0].size());
  for (float& v : r) v = uni(gen);
  std::vector<float> saved(std::max<int64_t>(1, B * layer.saved_floats_per_sample(call)));
  std::vector<float> scratch(std::max<int64_t>(1, layer.scratch_floats(B, call)));

  auto forward = [&]() -> double {
    ForwardContext f;
    f.batch = B;
    f.sample_offset = 0;
    f.training = spec.training;
    f.seed = spec.seed;
    f.call = &call;
    for (int s : spec.input_source) f.inputs.push_back(data[s].data());
    for (auto& o : out_buf) f.outputs.push_back(o.data());
    f.query_mask = spec.query_mask.empty() ? nullptr : spec.query_mask.data();
    f.value_mask = spec.value_mask.empty() ? nullptr : spec.value_mask.data();
    f.key_mask = spec.key_mask.empty() ? nullptr : spec.key_mask.data();
    f.attention_mask = spec.attention_mask.empty() ? nullptr : spec.attention_mask.data();
    f.saved = saved.data();
    f.scratch = scratch.data();
    layer.forward(f);
    double loss = 0;
    for (size_t i = 0; i < r.size(); ++i) loss += double(r[i]) * double(out_buf[0][i]);
    return loss;
  };

  forward();
  result.output = out_buf[0];
  result.inputs = data;
  for (float v : result.output) EXPECT_TRUE(std::isfinite(v)) << "non-finite forward output";

  std::vector<std::vector<float>> in_grad(n_data);
  for (int d = 0; d < n_data; ++d) in_grad[d].assign(data[d].size(), 0.0f);
  std::vector<float> param_grad(std::max<int64_t>(1, n_params), 0.0f);
  auto backward = [&] {
    BackwardContext b;
    b.batch = B;
    b.sample_offset = 0;
    b.training = spec.training;
    b.seed = spec.seed;
    b.call = &call;
    for (int s : spec.input_source) {
      b.inputs.push_back(data[s].data());
      b.input_grads.push_back(in_grad[s].data());
    }
    for (auto& o : out_buf) b.outputs.push_back(o.data());
    b.output_grads.push_back(r.data());
    for (size_t i = 1; i < out_buf.size(); ++i) b.output_grads.push_back(nullptr);
    b.query_mask = spec.query_mask.empty() ? nullptr : spec.query_mask.data();
    b.value_mask = spec.value_mask.empty() ? nullptr : spec.value_mask.data();
    b.key_mask = spec.key_mask.empty() ? nullptr : spec.key_mask.data();
    b.attention_mask = spec.attention_mask.empty() ? nullptr : spec.attention_mask.data();
    b.param_grads = param_grad.data();
    b.saved = saved.data();
    b.scratch = scratch.data();
    layer.backward(b);
  };
  backward();
  const auto in_grad_once = in_grad;
  const auto param_grad_once = param_grad;
  backward();  // must add the same amount again
  for (int d = 0; d < n_data; ++d)
    for (size_t i = 0; i < in_grad[d].size(); ++i)
      if (std::fabs(in_grad[d][i] - 2 * in_grad_once[d][i]) > 1e-5f * (1 + std::fabs(in_grad_once[d][i]))) {
        ADD_FAILURE() << "input " << d << " gradient is not accumulated (backward must ADD): second call gives "
                      << in_grad[d][i] << ", expected " << 2 * in_grad_once[d][i];
        break;
      }
  for (int64_t i = 0; i < n_params; ++i)
    if (std::fabs(param_grad[i] - 2 * param_grad_once[i]) > 1e-5f * (1 + std::fabs(param_grad_once[i]))) {
      ADD_FAILURE() << "parameter gradient " << i << " is not accumulated (backward must ADD)";
      break;
    }

  auto fd_of = [&](float* p, int64_t n) {
    std::vector<double> g(n);
    for (int64_t i = 0; i < n; ++i) {
      const float keep = p[i];
      p[i] = static_cast<float>(keep + spec.step);
      const double h_plus = double(p[i]) - double(keep);
      double lp = forward();
      p[i] = static_cast<float>(keep - spec.step);
      const double h_minus = double(keep) - double(p[i]);
      double lm = forward();
      p[i] = keep;
      g[i] = (lp - lm) / (h_plus + h_minus);
    }
    return g;
  };
  std::vector<std::vector<double>> extra_in(n_data), extra_w;
  for (int d = 0; d < n_data; ++d) extra_in[d].assign(data[d].size(), 0.0);
  for (const Weight& w : layer.weights()) extra_w.emplace_back(static_cast<size_t>(w.value.size()), 0.0);
  if (spec.autodiff_only_terms) spec.autodiff_only_terms(data, layer, r, extra_in, extra_w);
  for (int d = 0; d < n_data; ++d) {
    std::vector<double> fd = fd_of(data[d].data(), static_cast<int64_t>(data[d].size()));
    for (size_t i = 0; i < fd.size(); ++i) fd[i] += extra_in[d][i];
    std::vector<double> an(in_grad_once[d].begin(), in_grad_once[d].end());
    detail::expect_close(an, fd, spec.tolerance, "input " + std::to_string(d) + " gradient");
  }
  for (size_t wi = 0; wi < layer.weights().size(); ++wi) {
    Weight& w = layer.weights()[wi];
    if (!w.trainable) {  // Keras differentiates trainable variables only (moving statistics)
      for (int64_t i = 0; i < w.value.size(); ++i)
        if (param_grad_once[w.offset + i] != 0.0f) {
          ADD_FAILURE() << "non-trainable weight '" << w.name << "' got a gradient";
          break;
        }
      continue;
    }
    std::vector<double> fd = fd_of(w.value.data(), w.value.size());
    for (size_t i = 0; i < fd.size(); ++i) fd[i] += extra_w[wi][i];
    std::vector<double> an(param_grad_once.begin() + w.offset, param_grad_once.begin() + w.offset + w.value.size());
    detail::expect_close(an, fd, spec.tolerance, "weight '" + w.name + "' gradient");
  }
  return result;
}

}  // namespace attn::testing
