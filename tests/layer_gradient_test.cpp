// Every layer's backward against finite differences through the one harness in
// gradient_check.hpp: Dense (each activation, 2-D and 3-D input, with/without bias),
// Flatten, Reshape, Dropout (training mask and inference identity), Activation, and
// Attention over its options (dot/concat, scale, causal, masks incl. a fully masked row,
// separate key, Tq != Tv, D != Dv, dropout, the same node as query and value).
#include <gtest/gtest.h>

#include <cmath>

#include "attn/attn.hpp"
#include "gradient_check.hpp"

namespace {

using attn::CallOptions;
using attn::Shape;
using attn::testing::check_layer_gradients;
using attn::testing::GradCheck;
namespace L = attn::layers;

class LayerGradient : public ::testing::Test {
 protected:
  void SetUp() override {
    attn::clear_session();
    attn::set_random_seed(42);
  }
};

class LayerGradientDense : public ::testing::TestWithParam<const char*> {};

TEST_P(LayerGradientDense, ThreeDimensionalInput) {
  GradCheck g;
  g.layer = std::make_shared<L::DenseLayer>(5, L::DenseOptions{.activation = GetParam()});
  g.input_shapes = {{3, 4}};
  check_layer_gradients(g);
}

TEST_P(LayerGradientDense, TwoDimensionalInputNoBias) {
  GradCheck g;
  g.layer = std::make_shared<L::DenseLayer>(4, L::DenseOptions{.activation = GetParam(), .use_bias = false});
  g.input_shapes = {{6}};
  g.batch = 3;
  check_layer_gradients(g);
  EXPECT_EQ(g.layer->weights().size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Activations, LayerGradientDense,
                         ::testing::Values("linear", "relu", "sigmoid", "tanh", "softmax", "gelu", "elu", "selu",
                                           "softplus", "softsign", "silu", "leaky_relu", "relu6", "hard_sigmoid",
                                           "hard_silu", "exponential", "mish", "log_softmax"));

TEST_F(LayerGradient, DenseContractsOnlyTheLastAxis) {
  // A (batch, T, F) input is T independent rows: row t of the output depends on row t only.
  auto dense = std::make_shared<L::DenseLayer>(2, L::DenseOptions{});
  GradCheck g;
  g.layer = dense;
  g.input_shapes = {{3, 4}};
  g.batch = 1;
  auto res = check_layer_gradients(g);
  const float* k = dense->weights()[0].value.data();
  const float* b = dense->weights()[1].value.data();
  for (int t = 0; t < 3; ++t)
    for (int j = 0; j < 2; ++j) {
      double z = b[j];
      for (int f = 0; f < 4; ++f) z += double(res.inputs[0][t * 4 + f]) * k[f * 2 + j];
      EXPECT_NEAR(res.output[t * 2 + j], z, 1e-5);
    }
}

TEST_F(LayerGradient, Flatten) {
  GradCheck g;
  g.layer = std::make_shared<L::FlattenLayer>();
  g.input_shapes = {{3, 4}};
  auto res = check_layer_gradients(g);
  EXPECT_EQ(res.output, res.inputs[0]);  // row-major: a copy
}

TEST_F(LayerGradient, Reshape) {
  auto layer = std::make_shared<L::ReshapeLayer>(Shape{2, -1});
  EXPECT_EQ(layer->build({{3, 4}}, {}), (std::vector<Shape>{{2, 6}}));
  GradCheck g;
  g.layer = std::make_shared<L::ReshapeLayer>(Shape{2, -1});
  g.input_shapes = {{3, 4}};
  check_layer_gradients(g);
}

TEST_F(LayerGradient, DropoutTrainingUsesTheSameMaskInBackward) {
  GradCheck g;
  g.layer = std::make_shared<L::DropoutLayer>(0.3f, L::DropoutOptions{});
  g.input_shapes = {{50}};
  g.batch = 4;
  g.training = true;
  g.seed = 99;
  auto res = check_layer_gradients(g);
  int dropped = 0;
  for (size_t i = 0; i < res.output.size(); ++i) {
    if (res.output[i] == 0.0f) {
      ++dropped;
    } else {
      EXPECT_NEAR(res.output[i], res.inputs[0][i] / 0.7f, 1e-6) << "kept values are scaled by 1/(1-rate)";
    }
  }
  // 200 draws at rate 0.3: 60 expected; far outside [30, 90] means the rate is wrong.
  EXPECT_GT(dropped, 30);
  EXPECT_LT(dropped, 90);
}

TEST_F(LayerGradient, DropoutInferenceIsIdentity) {
  GradCheck g;
  g.layer = std::make_shared<L::DropoutLayer>(0.5f, L::DropoutOptions{});
  g.input_shapes = {{3, 4}};
  g.training = false;
  auto res = check_layer_gradients(g);
  EXPECT_EQ(res.output, res.inputs[0]);
}

class LayerGradientActivation : public ::testing::TestWithParam<const char*> {};

TEST_P(LayerGradientActivation, MatchesFiniteDifferences) {
  GradCheck g;
  g.layer = std::make_shared<L::ActivationLayer>(GetParam());
  g.input_shapes = {{3, 4}};
  g.min_abs_input = 0.05f;  // keep relu's kink out of the FD step
  check_layer_gradients(g);
}

INSTANTIATE_TEST_SUITE_P(Each, LayerGradientActivation,
                         ::testing::Values("linear", "relu", "sigmoid", "tanh", "softmax", "gelu", "elu", "selu",
                                           "softplus", "softsign", "silu", "leaky_relu", "relu6", "hard_sigmoid",
                                           "hard_silu", "exponential", "mish", "log_softmax"));

// ---- Attention ----

struct AttentionCase {
  L::AttentionOptions options;
  std::vector<Shape> shapes;
  CallOptions call = {};
  bool training = false;
  std::vector<int> source = {};
  std::vector<float> query_mask = {};
  std::vector<float> value_mask = {};
};

// Keras' autodiff through fully masked rows, written from the formulas in double. Keras 3
// (attention.py _apply_scores) computes `scores -= 1e9 * cast(~mask)` in float32: with |S| < 32
// every score of a fully masked row becomes exactly -1e9, so the row is uniform and the forward
// does not move when q, k, scale or concat_score_weight move a little (finite differences: 0).
// Autodiff still differentiates the subtraction as the identity and the softmax at the P it
// computed, so q, k and the scalars receive dS = P (dP - sum_j P dP) from that row. Only those
// rows are handled here; everything else is left to finite differences.
void add_fully_masked_row_terms(const AttentionCase& c, const std::vector<std::vector<float>>& data,
                                const attn::Layer& layer, const std::vector<float>& r,
                                std::vector<std::vector<double>>& ein, std::vector<std::vector<double>>& ew) {
  const int64_t B = 2, tq = c.shapes[0][0], d = c.shapes[0][1], tv = c.shapes[1][0], dv = c.shapes[1][1];
  const std::vector<int> src = c.source.empty() ? std::vector<int>{0, 1, 2} : c.source;
  const int qi = src[0], vi = src[1], ki = c.shapes.size() > 2 ? src[2] : src[1];
  const bool concat = c.options.score_mode == "concat";
  int w = 0, w_scale = -1, w_cw = -1;
  float scale = 1.0f, cw = 1.0f;
  if (c.options.use_scale) scale = layer.weights()[w_scale = w++].value[0];
  if (concat) cw = layer.weights()[w_cw = w++].value[0];
  const std::vector<float>&q = data[qi], &k = data[ki], &v = data[vi];
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < tq; ++i) {
      if (!c.query_mask.empty() && c.query_mask[b * tq + i] == 0) continue;  // output zeroed: no gradient
      bool all_masked = true;
      for (int64_t j = 0; j < tv; ++j) {
        const bool masked = (!c.value_mask.empty() && c.value_mask[b * tv + j] == 0) ||
                            (c.call.use_causal_mask && j > i);
        all_masked = all_masked && masked;
      }
      if (!all_masked) continue;
      ASSERT_FALSE(c.training && c.options.dropout > 0) << "dropout on a fully masked row is not modelled here";
      std::vector<double> raw(tv), p(tv), dp(tv);
      double mx = -1e300;
      for (int64_t j = 0; j < tv; ++j) {
        double acc = 0;
        for (int64_t f = 0; f < d; ++f) {
          const double a = q[(b * tq + i) * d + f], e = k[(b * tv + j) * d + f];
          acc += concat ? std::tanh(double(scale) * (a + e)) : a * e;
        }
        raw[j] = acc;
        const float s32 = static_cast<float>(acc) * (concat ? cw : scale);
        p[j] = static_cast<double>(s32 - 1e9f);  // the float32 offset Keras applies
        mx = std::max(mx, p[j]);
      }
      double sum = 0;
      for (double& x : p) sum += (x = std::exp(x - mx));
      double pdp = 0;
      for (int64_t j = 0; j < tv; ++j) {
        p[j] /= sum;
        dp[j] = 0;
        for (int64_t e = 0; e < dv; ++e) dp[j] += double(r[(b * tq + i) * dv + e]) * v[(b * tv + j) * dv + e];
        pdp += p[j] * dp[j];
      }
      for (int64_t j = 0; j < tv; ++j) {
        const double ds = p[j] * (dp[j] - pdp);
        if (!concat) {  // S = scale * (q . k)
          if (w_scale >= 0) ew[w_scale][0] += ds * raw[j];
          for (int64_t f = 0; f < d; ++f) {
            ein[qi][(b * tq + i) * d + f] += ds * scale * k[(b * tv + j) * d + f];
            ein[ki][(b * tv + j) * d + f] += ds * scale * q[(b * tq + i) * d + f];
          }
        } else {  // S = cw * sum_f tanh(scale (q_f + k_f))
          ew[w_cw][0] += ds * raw[j];
          for (int64_t f = 0; f < d; ++f) {
            const double x = double(q[(b * tq + i) * d + f]) + k[(b * tv + j) * d + f];
            const double t = std::tanh(double(scale) * x);
            const double g = ds * cw * (1 - t * t);
            if (w_scale >= 0) ew[w_scale][0] += g * x;
            ein[qi][(b * tq + i) * d + f] += g * scale;
            ein[ki][(b * tv + j) * d + f] += g * scale;
          }
        }
      }
    }
}

attn::testing::GradCheckResult check_attention(AttentionCase c) {
  GradCheck g;
  g.autodiff_only_terms = [c](const std::vector<std::vector<float>>& data, const attn::Layer& layer,
                              const std::vector<float>& r, std::vector<std::vector<double>>& ein,
                              std::vector<std::vector<double>>& ew) {
    add_fully_masked_row_terms(c, data, layer, r, ein, ew);
  };
  g.layer = std::make_shared<L::AttentionLayer>(c.options);
  g.input_shapes = c.shapes;
  g.options = c.call;
  g.training = c.training;
  g.input_source = c.source;
  g.query_mask = c.query_mask;
  g.value_mask = c.value_mask;
  g.batch = 2;
  return check_layer_gradients(g);
}

const std::vector<Shape> kQV = {{3, 4}, {5, 4}};             // Tq != Tv, key = value
const std::vector<Shape> kQVK = {{3, 4}, {5, 2}, {5, 4}};     // separate key, D != Dv

TEST_F(LayerGradient, AttentionDot) { check_attention({.options = {}, .shapes = kQV}); }
TEST_F(LayerGradient, AttentionDotScale) { check_attention({.options = {.use_scale = true}, .shapes = kQV}); }
TEST_F(LayerGradient, AttentionConcat) {
  check_attention({.options = {.score_mode = "concat"}, .shapes = kQV});
}
TEST_F(LayerGradient, AttentionConcatScale) {
  check_attention({.options = {.use_scale = true, .score_mode = "concat"}, .shapes = kQV});
}
TEST_F(LayerGradient, AttentionSeparateKey) {
  check_attention({.options = {.use_scale = true}, .shapes = kQVK});
}
TEST_F(LayerGradient, AttentionSeparateKeyConcat) {
  check_attention({.options = {.use_scale = true, .score_mode = "concat"}, .shapes = kQVK});
}
TEST_F(LayerGradient, AttentionCausal) {
  check_attention({.options = {.use_scale = true}, .shapes = kQVK, .call = {.use_causal_mask = true}});
}
TEST_F(LayerGradient, AttentionCausalConcat) {
  check_attention({.options = {.score_mode = "concat"}, .shapes = kQV, .call = {.use_causal_mask = true}});
}
TEST_F(LayerGradient, AttentionCausalValuesTopLeftAligned) {
  // Tq=3 < Tv=5: query row 0 sees value 0 only, so its output is v[0] exactly.
  auto res = check_attention({.options = {}, .shapes = kQVK, .call = {.use_causal_mask = true}});
  for (int b = 0; b < 2; ++b)
    for (int j = 0; j < 2; ++j) EXPECT_NEAR(res.output[b * 3 * 2 + j], res.inputs[1][b * 5 * 2 + j], 1e-6);
}

TEST_F(LayerGradient, AttentionQueryMask) {
  auto res = check_attention({.options = {.use_scale = true}, .shapes = kQVK,
                              .query_mask = {1, 0, 1, 0, 1, 1}});
  // Masked query rows output exactly zero.
  for (int j = 0; j < 2; ++j) {
    EXPECT_EQ(res.output[1 * 2 + j], 0.0f);
    EXPECT_EQ(res.output[(3 + 0) * 2 + j], 0.0f);
  }
}

TEST_F(LayerGradient, AttentionValueMaskWithFullyMaskedSample) {
  // Sample 1 has every value masked: each of its rows is the uniform mean of v.
  auto res = check_attention({.options = {.use_scale = true}, .shapes = kQVK,
                              .value_mask = {1, 0, 1, 1, 0, 0, 0, 0, 0, 0}});
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j) {
      double mean = 0;
      for (int t = 0; t < 5; ++t) mean += res.inputs[1][5 * 2 + t * 2 + j];
      EXPECT_NEAR(res.output[3 * 2 + i * 2 + j], mean / 5, 1e-5);
    }
}

TEST_F(LayerGradient, AttentionBothMasksCausalConcat) {
  check_attention({.options = {.use_scale = true, .score_mode = "concat"}, .shapes = kQVK,
                   .call = {.use_causal_mask = true},
                   .query_mask = {1, 1, 0, 1, 0, 1},
                   .value_mask = {1, 1, 0, 1, 1, 0, 1, 1, 1, 0}});
}

TEST_F(LayerGradient, AttentionDropoutTraining) {
  check_attention({.options = {.use_scale = true, .dropout = 0.3f}, .shapes = kQVK, .training = true});
}

TEST_F(LayerGradient, AttentionDropoutInferenceIsIgnored) {
  auto with = check_attention({.options = {.dropout = 0.5f}, .shapes = kQVK, .training = false});
  attn::set_random_seed(42);
  auto without = check_attention({.options = {}, .shapes = kQVK, .training = false});
  EXPECT_EQ(with.output, without.output);
}

TEST_F(LayerGradient, AttentionSameNodeAsQueryAndValue) {
  // [x, x]: query, key and value are one buffer and so is their gradient; contributions add.
  check_attention({.options = {.use_scale = true}, .shapes = {{4, 3}, {4, 3}}, .source = {0, 0}});
}

TEST_F(LayerGradient, AttentionSameNodeThreeTimesConcat) {
  check_attention({.options = {.use_scale = true, .score_mode = "concat"}, .shapes = {{4, 3}, {4, 3}, {4, 3}},
                   .source = {0, 0, 0}});
}

TEST_F(LayerGradient, AttentionReturnScoresKeepsOutputGradient) {
  check_attention({.options = {.use_scale = true}, .shapes = kQVK, .call = {.return_attention_scores = true}});
}

}  // namespace
