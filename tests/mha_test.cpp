// MultiHeadAttention against Keras' semantics (keras/src/layers/attention/multi_head_attention.py,
// keras-semantics.md section 2):
// - weights: names, shapes and order as Keras creates them and as the tf.keras .h5 fixtures hold
//   them (query/key/value kernel (F, H, key_dim) + bias (H, key_dim), attention_output kernel
//   (H, value_dim, out) + bias (out,));
// - forward: a double-precision implementation written here from the formulas (project, scale the
//   query by 1/sqrt(key_dim) after its bias, softmax over keys with Keras 3's masked softmax, combine,
//   project back) compared with the layer, outputs and the returned (B, H, Tq, Tv) scores;
// - backward: the finite-difference harness for every option (bias or not, separate key, masks,
//   causal, Tq != Tv, heads, value_dim, output_shape, dropout, returned scores, one node as q and v);
// - get_config: Keras 3's keys and values.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "attn/attn.hpp"
#include "gradient_check.hpp"

namespace {

using attn::CallOptions;
using attn::Shape;
using attn::testing::check_layer_gradients;
using attn::testing::GradCheck;
namespace L = attn::layers;

class Mha : public ::testing::Test {
 protected:
  void SetUp() override {
    attn::clear_session();
    attn::set_random_seed(42);
  }
};

// ---------------------------------------------------------------- double-precision oracle

struct Oracle {
  std::vector<double> out;     // [B, Tq, out_dim]
  std::vector<double> scores;  // [B, H, Tq, Tv], before dropout
};

// x[B, T, F] times kernel[F, H, E] plus bias[H, E] -> [B, T, H, E].
std::vector<double> einsum_dense_in(const std::vector<float>& x, int64_t bt, int64_t f, const float* kernel,
                                    const float* bias, int64_t he) {
  std::vector<double> y(bt * he, 0.0);
  for (int64_t r = 0; r < bt; ++r)
    for (int64_t o = 0; o < he; ++o) {
      double acc = bias ? bias[o] : 0.0;
      for (int64_t c = 0; c < f; ++c) acc += double(x[r * f + c]) * kernel[c * he + o];
      y[r * he + o] = acc;
    }
  return y;
}

// Keras 3, explicit-scores path: Q = (xq Wq + bq) / sqrt(key_dim); S[b,h,t,s] = Q[b,t,h,:] . K[b,s,h,:];
// mask = qm[t] & vm[s] & km[s] (only with a separate key) & am[t,s] & (s <= t if causal); P = softmax over unmasked s (masked and fully masked
// rows: 0, Softmax's where(mask, out, 0)); C[b,t,h,:] = sum_s P V[b,s,h,:]; out = C Wo + bo.
Oracle mha_oracle(const L::MultiHeadAttentionLayer& layer, int64_t B, int64_t tq, int64_t tv,
                  const std::vector<float>& xq, const std::vector<float>& xv, const std::vector<float>* xk,
                  const std::vector<float>& qm, const std::vector<float>& vm, bool causal,
                  const std::vector<float>& km = {}, const std::vector<float>& am = {}) {
  std::map<std::string, const float*> w;
  for (const attn::Weight& wt : layer.weights()) w[wt.name] = wt.value.data();
  const auto get = [&](const std::string& n) { return w.count(n) ? w.at(n) : nullptr; };
  const int64_t H = layer.num_heads(), dk = layer.key_dim(), dv = layer.value_dim(), dout = layer.output_dim();
  const int64_t fq = static_cast<int64_t>(xq.size()) / (B * tq);
  const int64_t fv = static_cast<int64_t>(xv.size()) / (B * tv);
  const std::vector<float>& keys = xk ? *xk : xv;
  const int64_t fk = static_cast<int64_t>(keys.size()) / (B * tv);
  std::vector<double> Q = einsum_dense_in(xq, B * tq, fq, get("query/kernel"), get("query/bias"), H * dk);
  const std::vector<double> K = einsum_dense_in(keys, B * tv, fk, get("key/kernel"), get("key/bias"), H * dk);
  const std::vector<double> V = einsum_dense_in(xv, B * tv, fv, get("value/kernel"), get("value/bias"), H * dv);
  for (double& x : Q) x *= 1.0 / std::sqrt(double(dk));
  Oracle o;
  o.scores.assign(B * H * tq * tv, 0.0);
  std::vector<double> C(B * tq * H * dv, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < tq; ++t) {
        std::vector<double> s(tv);
        std::vector<bool> on(tv);
        double mx = -1e300;
        bool any = false;
        for (int64_t j = 0; j < tv; ++j) {
          on[j] = (qm.empty() || qm[b * tq + t] != 0) && (vm.empty() || vm[b * tv + j] != 0) && (!causal || j <= t) &&
                  (km.empty() || !xk || km[b * tv + j] != 0) && (am.empty() || am[(b * tq + t) * tv + j] != 0);
          s[j] = 0;
          for (int64_t e = 0; e < dk; ++e) s[j] += Q[((b * tq + t) * H + h) * dk + e] * K[((b * tv + j) * H + h) * dk + e];
          if (on[j]) {
            mx = std::max(mx, s[j]);
            any = true;
          }
        }
        if (!any) continue;  // scores and context stay 0
        double sum = 0;
        for (int64_t j = 0; j < tv; ++j) sum += on[j] ? std::exp(s[j] - mx) : 0.0;
        for (int64_t j = 0; j < tv; ++j) {
          const double p = on[j] ? std::exp(s[j] - mx) / sum : 0.0;
          o.scores[((b * H + h) * tq + t) * tv + j] = p;
          for (int64_t e = 0; e < dv; ++e) C[((b * tq + t) * H + h) * dv + e] += p * V[((b * tv + j) * H + h) * dv + e];
        }
      }
  const float* wo = get("attention_output/kernel");
  const float* bo = get("attention_output/bias");
  o.out.assign(B * tq * dout, 0.0);
  for (int64_t r = 0; r < B * tq; ++r)
    for (int64_t c = 0; c < dout; ++c) {
      double acc = bo ? bo[c] : 0.0;
      for (int64_t he = 0; he < H * dv; ++he) acc += C[r * H * dv + he] * wo[he * dout + c];
      o.out[r * dout + c] = acc;
    }
  return o;
}

// Runs the layer's forward directly (inference), returning output 0 and, if requested, the scores.
struct FwdRun {
  std::vector<float> out, scores;
};
FwdRun run_forward(L::MultiHeadAttentionLayer& layer, const CallOptions& call, int64_t B,
                const std::vector<const std::vector<float>*>& inputs, const std::vector<float>& qm,
                const std::vector<float>& vm, const std::vector<Shape>& out_shapes, const std::vector<float>& km = {},
                const std::vector<float>& am = {}) {
  FwdRun r;
  r.out.assign(B * attn::shape_size(out_shapes[0]), std::nanf(""));
  if (out_shapes.size() > 1) r.scores.assign(B * attn::shape_size(out_shapes[1]), std::nanf(""));
  std::vector<float> saved(std::max<int64_t>(1, B * layer.saved_floats_per_sample(call)), std::nanf(""));
  std::vector<float> scratch(std::max<int64_t>(1, layer.scratch_floats(B, call)), std::nanf(""));
  attn::ForwardContext f;
  f.batch = B;
  f.call = &call;
  for (auto* in : inputs) f.inputs.push_back(in->data());
  f.outputs.push_back(r.out.data());
  if (!r.scores.empty()) f.outputs.push_back(r.scores.data());
  f.query_mask = qm.empty() ? nullptr : qm.data();
  f.value_mask = vm.empty() ? nullptr : vm.data();
  f.key_mask = km.empty() ? nullptr : km.data();
  f.attention_mask = am.empty() ? nullptr : am.data();
  f.saved = saved.data();
  f.scratch = scratch.data();
  layer.forward(f);
  return r;
}

void expect_near_all(const std::vector<float>& got, const std::vector<double>& want, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= tol * (1.0 + std::fabs(want[i])))) {
      ADD_FAILURE() << what << "[" << i << "]: layer " << got[i] << " vs double " << want[i];
      return;
    }
}

std::vector<float> random_values(std::mt19937& gen, int64_t n) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(gen);
  return v;
}

struct ForwardCase {
  L::MultiHeadAttentionOptions options;
  Shape q, v, k = {};  // k empty: key = value
  CallOptions call = {};
  std::vector<float> query_mask = {}, value_mask = {}, key_mask = {}, attention_mask = {};
  int64_t batch = 2;
};

// Builds through the symbolic API, randomises the weights (biases too, so their placement
// matters), runs forward and compares with the double oracle, scores included.
void check_forward(const ForwardCase& c) {
  auto layer = std::make_shared<L::MultiHeadAttentionLayer>(c.options);
  std::vector<attn::Node> nodes = {attn::Input(c.q), attn::Input(c.v)};
  if (!c.k.empty()) nodes.push_back(attn::Input(c.k));
  CallOptions call = c.call;
  call.return_attention_scores = true;
  if (!c.query_mask.empty()) call.query_mask = attn::Input({c.q[0]});
  if (!c.value_mask.empty()) call.value_mask = attn::Input({c.v[0]});
  if (!c.key_mask.empty()) call.key_mask = attn::Input({c.v[0]});
  if (!c.attention_mask.empty()) call.attention_mask = attn::Input({c.q[0], c.v[0]});
  auto outs = layer->call(nodes, call);
  ASSERT_EQ(outs.size(), 2u);
  const int64_t out_dim = c.options.output_shape.value_or(c.q[1]);
  EXPECT_EQ(outs[0]->shape, (Shape{c.q[0], out_dim}));
  EXPECT_EQ(outs[1]->shape, (Shape{c.options.num_heads, c.q[0], c.v[0]}));
  std::mt19937 gen(11);
  for (attn::Weight& w : layer->weights())
    for (int64_t i = 0; i < w.value.size(); ++i) w.value[i] = std::uniform_real_distribution<float>(-0.8f, 0.8f)(gen);
  const int64_t B = c.batch;
  const auto xq = random_values(gen, B * attn::shape_size(c.q));
  const auto xv = random_values(gen, B * attn::shape_size(c.v));
  const auto xk = c.k.empty() ? std::vector<float>{} : random_values(gen, B * attn::shape_size(c.k));
  std::vector<const std::vector<float>*> ins = {&xq, &xv};
  if (!c.k.empty()) ins.push_back(&xk);
  FwdRun r = run_forward(*layer, call, B, ins, c.query_mask, c.value_mask, {outs[0]->shape, outs[1]->shape},
                         c.key_mask, c.attention_mask);
  const Oracle o = mha_oracle(*layer, B, c.q[0], c.v[0], xq, xv, c.k.empty() ? nullptr : &xk, c.query_mask,
                              c.value_mask, call.use_causal_mask, c.key_mask, c.attention_mask);
  expect_near_all(r.out, o.out, 2e-5, "output");
  expect_near_all(r.scores, o.scores, 2e-6, "scores");
  // Without returned scores or an attention_mask, and past 32 scores per head, the layer runs
  // the fused kernel instead of its loops: the same oracle holds.
  if (c.attention_mask.empty()) {
    CallOptions fused = call;
    fused.return_attention_scores = false;
    FwdRun rf = run_forward(*layer, fused, B, ins, c.query_mask, c.value_mask, {outs[0]->shape}, c.key_mask);
    expect_near_all(rf.out, o.out, 2e-5, "output (fused kernel)");
  }
}

// ---------------------------------------------------------------- weights

TEST_F(Mha, WeightsAsKerasCreatesThemAndTheH5FixturesHoldThem) {
  // self-attention-mnist-small.h5 (tf.keras 2.9): MultiHeadAttention(num_heads=2, key_dim=4) on
  // (None, 2, 8), its model_weights group lists exactly these, in this order.
  auto layer = std::make_shared<L::MultiHeadAttentionLayer>(L::MultiHeadAttentionOptions{.num_heads = 2, .key_dim = 4});
  auto x = attn::Input({2, 8});
  layer->call({x, x});
  const std::vector<std::pair<std::string, Shape>> want = {
      {"query/kernel", {8, 2, 4}}, {"query/bias", {2, 4}},
      {"key/kernel", {8, 2, 4}},   {"key/bias", {2, 4}},
      {"value/kernel", {8, 2, 4}}, {"value/bias", {2, 4}},
      {"attention_output/kernel", {2, 4, 8}}, {"attention_output/bias", {8}}};
  ASSERT_EQ(layer->weights().size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(layer->weights()[i].name, want[i].first);
    EXPECT_EQ(layer->weights()[i].shape, want[i].second) << want[i].first;
    EXPECT_TRUE(layer->weights()[i].trainable);
  }
  EXPECT_EQ(layer->weights()[0].initializer, "glorot_uniform");
  EXPECT_EQ(layer->weights()[1].initializer, "zeros");
  EXPECT_EQ(layer->count_params(), 3 * (8 * 8 + 8) + (8 * 8 + 8));
  EXPECT_EQ(layer->value_dim(), 4);  // value_dim defaults to key_dim
}

TEST_F(Mha, NoBiasSingleHeadMatchesTheNoBiasFixture) {
  // ...-pgd-small-single-head-no-bias.h5: num_heads=1, key_dim=4, use_bias=False on (None, 2, 8).
  auto layer = std::make_shared<L::MultiHeadAttentionLayer>(
      L::MultiHeadAttentionOptions{.num_heads = 1, .key_dim = 4, .use_bias = false});
  auto x = attn::Input({2, 8});
  layer->call({x, x});
  const std::vector<std::pair<std::string, Shape>> want = {{"query/kernel", {8, 1, 4}},
                                                           {"key/kernel", {8, 1, 4}},
                                                           {"value/kernel", {8, 1, 4}},
                                                           {"attention_output/kernel", {1, 4, 8}}};
  ASSERT_EQ(layer->weights().size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(layer->weights()[i].name, want[i].first);
    EXPECT_EQ(layer->weights()[i].shape, want[i].second);
  }
}

TEST_F(Mha, SeparateKeyValueDimAndOutputShapeGiveEachKernelItsOwnShape) {
  auto layer = std::make_shared<L::MultiHeadAttentionLayer>(L::MultiHeadAttentionOptions{
      .num_heads = 3, .key_dim = 2, .value_dim = 5, .output_shape = 7});
  auto outs = layer->call({attn::Input({4, 6}), attn::Input({9, 10}), attn::Input({9, 11})});
  const std::vector<Shape> want = {{6, 3, 2}, {3, 2}, {11, 3, 2}, {3, 2}, {10, 3, 5}, {3, 5}, {3, 5, 7}, {7}};
  ASSERT_EQ(layer->weights().size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(layer->weights()[i].shape, want[i]) << layer->weights()[i].name;
  ASSERT_EQ(outs.size(), 1u);
  EXPECT_EQ(outs[0]->shape, (Shape{4, 7}));
  EXPECT_EQ(layer->output_dim(), 7);
}

TEST_F(Mha, RejectsBadArgumentsAndShapes) {
  EXPECT_THROW(L::MultiHeadAttentionLayer(L::MultiHeadAttentionOptions{.num_heads = 0, .key_dim = 4}),
               std::invalid_argument);
  EXPECT_THROW(L::MultiHeadAttentionLayer(L::MultiHeadAttentionOptions{.num_heads = 2, .key_dim = 0}),
               std::invalid_argument);
  EXPECT_THROW(L::MultiHeadAttentionLayer(L::MultiHeadAttentionOptions{.num_heads = 2, .key_dim = 2, .dropout = 1.0f}),
               std::invalid_argument);
  auto layer = std::make_shared<L::MultiHeadAttentionLayer>(L::MultiHeadAttentionOptions{.num_heads = 2, .key_dim = 2});
  // Key and value must agree on every axis but the last.
  EXPECT_THROW(layer->call({attn::Input({3, 4}), attn::Input({5, 4}), attn::Input({6, 4})}), std::invalid_argument);
  EXPECT_THROW(layer->call({attn::Input({3, 4})}), std::invalid_argument);
  EXPECT_THROW(layer->call({attn::Input({3, 4, 2}), attn::Input({3, 4, 2})}), std::invalid_argument);
}

// ---------------------------------------------------------------- forward against the oracle

TEST_F(Mha, ForwardSelfAttention) {
  check_forward({.options = {.num_heads = 2, .key_dim = 4}, .q = {2, 8}, .v = {2, 8}});
}
TEST_F(Mha, ForwardCrossAttentionSeparateKeyTqNotTv) {
  check_forward({.options = {.num_heads = 3, .key_dim = 2, .value_dim = 5, .output_shape = 4},
                 .q = {3, 6}, .v = {5, 7}, .k = {5, 2}});
}
TEST_F(Mha, ForwardNoBias) {
  check_forward({.options = {.num_heads = 2, .key_dim = 3, .use_bias = false}, .q = {4, 5}, .v = {6, 5}});
}
TEST_F(Mha, ForwardMasksAndCausal) {
  // Sample 0: query 2 masked (its probabilities are 0, its output the output bias); sample 1:
  // value 0 masked, so causal row 0 is fully masked (all zero probabilities as Keras 3's Softmax).
  check_forward({.options = {.num_heads = 2, .key_dim = 3},
                 .q = {3, 4},
                 .v = {5, 4},
                 .call = {.use_causal_mask = true},
                 .query_mask = {1, 1, 0, 1, 1, 1},
                 .value_mask = {1, 0, 1, 1, 0, 0, 1, 1, 1, 1}});
}
// Sample 0: attention_mask blocks (0,1), (1,0), (2,2) and key 3 (key mask); sample 1: key 0 is
// masked, and query 1's attention row is all zeros (a fully masked row: zero probabilities).
TEST_F(Mha, ForwardKeyAndAttentionMasks) {
  check_forward({.options = {.num_heads = 2, .key_dim = 3},
                 .q = {3, 4},
                 .v = {4, 5},
                 .k = {4, 2},
                 .key_mask = {1, 1, 1, 0, 0, 1, 1, 1},
                 .attention_mask = {1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1,  //
                                    1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 1, 1}});
}
// A key mask without a separate key is ignored, as Keras ignores it when key is value.
TEST_F(Mha, ForwardKeyMaskIgnoredWithoutASeparateKey) {
  check_forward({.options = {.num_heads = 1, .key_dim = 2},
                 .q = {2, 3},
                 .v = {3, 3},
                 .key_mask = {0, 0, 0, 0, 0, 0},
                 .attention_mask = {1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0}});
}
TEST_F(Mha, ForwardEveryValueMasked) {
  check_forward({.options = {.num_heads = 1, .key_dim = 2}, .q = {2, 3}, .v = {3, 3}, .value_mask = {0, 0, 0, 1, 0, 1}});
}

// Long enough for the fused kernel (above, the loops): sample 0 masks key 0, so its causal row 0
// is empty; sample 1 masks every key; queries 3 and 10 are masked.
TEST_F(Mha, ForwardFusedKernelMasksAndCausal) {
  std::vector<float> qm(2 * 9, 1.0f), vm(2 * 12, 1.0f);
  qm[3] = qm[10] = 0.0f;
  vm[0] = vm[5] = 0.0f;
  std::fill(vm.begin() + 12, vm.end(), 0.0f);
  for (const bool causal : {false, true})
    check_forward({.options = {.num_heads = 2, .key_dim = 3, .value_dim = 5},
                   .q = {9, 4},
                   .v = {12, 6},
                   .k = {12, 2},
                   .call = {.use_causal_mask = causal},
                   .query_mask = qm,
                   .value_mask = vm,
                   .key_mask = std::vector<float>(2 * 12, 1.0f)});
}

TEST_F(Mha, KeyDefaultsToValue) {
  // [q, v] and [q, v, v] with the same weights give the same output.
  auto two = std::make_shared<L::MultiHeadAttentionLayer>(L::MultiHeadAttentionOptions{.num_heads = 2, .key_dim = 3});
  auto three = std::make_shared<L::MultiHeadAttentionLayer>(L::MultiHeadAttentionOptions{.num_heads = 2, .key_dim = 3});
  auto o2 = two->call({attn::Input({3, 4}), attn::Input({5, 4})});
  auto o3 = three->call({attn::Input({3, 4}), attn::Input({5, 4}), attn::Input({5, 4})});
  ASSERT_EQ(two->weights().size(), three->weights().size());
  std::mt19937 gen(5);
  for (size_t i = 0; i < two->weights().size(); ++i)
    for (int64_t e = 0; e < two->weights()[i].value.size(); ++e)
      two->weights()[i].value[e] = three->weights()[i].value[e] = std::uniform_real_distribution<float>(-1, 1)(gen);
  const auto q = random_values(gen, 2 * 12), v = random_values(gen, 2 * 20);
  CallOptions call;
  FwdRun a = run_forward(*two, call, 2, {&q, &v}, {}, {}, {o2[0]->shape});
  FwdRun b = run_forward(*three, call, 2, {&q, &v, &v}, {}, {}, {o3[0]->shape});
  EXPECT_EQ(a.out, b.out);
}

TEST_F(Mha, QueryIsScaledAfterItsBias) {
  // One head, key_dim 4, identity-like projections: with a query bias only, Keras' scores are
  // ((x Wq + bq) / 2) . k. Scaling before the bias would give a different softmax.
  auto layer = std::make_shared<L::MultiHeadAttentionLayer>(L::MultiHeadAttentionOptions{.num_heads = 1, .key_dim = 4});
  auto outs = layer->call({attn::Input({1, 4}), attn::Input({2, 4})}, {.return_attention_scores = true});
  for (attn::Weight& w : layer->weights()) std::fill(w.value.data(), w.value.data() + w.value.size(), 0.0f);
  auto& W = layer->weights();
  for (int i = 0; i < 4; ++i) {
    W[0].value[i * 4 + i] = 1.0f;  // query kernel = I
    W[2].value[i * 4 + i] = 1.0f;  // key kernel = I
    W[4].value[i * 4 + i] = 1.0f;  // value kernel = I
    W[6].value[i * 4 + i] = 1.0f;  // output kernel = I
  }
  W[1].value[0] = 2.0f;  // query bias (0, 0) = 2
  const std::vector<float> q = {1, 0, 0, 0}, v = {1, 0, 0, 0, 0, 0, 0, 0};
  CallOptions call{.return_attention_scores = true};
  FwdRun r = run_forward(*layer, call, 1, {&q, &v}, {}, {}, {outs[0]->shape, outs[1]->shape});
  // Q = (1 + 2) / sqrt(4) = 1.5 on feature 0; S = [1.5, 0]; P0 = 1 / (1 + e^-1.5).
  const double p0 = 1.0 / (1.0 + std::exp(-1.5));
  EXPECT_NEAR(r.scores[0], p0, 1e-6);
  EXPECT_NEAR(r.scores[1], 1.0 - p0, 1e-6);
  EXPECT_NEAR(r.out[0], p0, 1e-6);  // the value of key 0 is e0
}

// ---------------------------------------------------------------- gradients

struct GradCase {
  L::MultiHeadAttentionOptions options;
  std::vector<Shape> shapes;
  CallOptions call = {};
  bool training = false;
  std::vector<int> source = {};
  std::vector<float> query_mask = {}, value_mask = {}, key_mask = {}, attention_mask = {};
};

attn::testing::GradCheckResult check_mha(const GradCase& c) {
  GradCheck g;
  g.layer = std::make_shared<L::MultiHeadAttentionLayer>(c.options);
  g.input_shapes = c.shapes;
  g.options = c.call;
  g.training = c.training;
  g.input_source = c.source;
  g.query_mask = c.query_mask;
  g.value_mask = c.value_mask;
  g.key_mask = c.key_mask;
  g.attention_mask = c.attention_mask;
  g.batch = 2;
  return check_layer_gradients(g);
}

TEST_F(Mha, GradientSelfAttentionTwoHeads) {
  check_mha({.options = {.num_heads = 2, .key_dim = 4}, .shapes = {{2, 8}, {2, 8}}, .source = {0, 0}});
}
TEST_F(Mha, GradientCrossAttentionTqNotTv) {
  check_mha({.options = {.num_heads = 2, .key_dim = 3}, .shapes = {{3, 4}, {5, 4}}});
}
TEST_F(Mha, GradientSeparateKeyValueDimOutputShape) {
  check_mha({.options = {.num_heads = 3, .key_dim = 2, .value_dim = 4, .output_shape = 5},
             .shapes = {{3, 4}, {4, 3}, {4, 2}}});
}
TEST_F(Mha, GradientNoBias) {
  check_mha({.options = {.num_heads = 2, .key_dim = 3, .use_bias = false}, .shapes = {{3, 4}, {5, 2}, {5, 3}}});
}
TEST_F(Mha, GradientCausal) {
  check_mha({.options = {.num_heads = 2, .key_dim = 2}, .shapes = {{4, 3}, {4, 3}}, .call = {.use_causal_mask = true}});
}
TEST_F(Mha, GradientQueryAndValueMasksWithFullyMaskedRows) {
  // Sample 1 masks value 0, so with causal its row 0 is fully masked: Keras 3 gives it zero
  // probabilities, the forward is flat there and the gradient is 0 in both.
  check_mha({.options = {.num_heads = 2, .key_dim = 3},
             .shapes = {{3, 4}, {5, 4}, {5, 2}},
             .call = {.use_causal_mask = true},
             .query_mask = {1, 0, 1, 1, 1, 1},
             .value_mask = {1, 1, 0, 1, 0, 0, 1, 1, 0, 1}});
}
TEST_F(Mha, GradientKeyAndAttentionMasks) {
  check_mha({.options = {.num_heads = 2, .key_dim = 3},
             .shapes = {{3, 4}, {4, 3}, {4, 2}},
             .key_mask = {1, 0, 1, 1, 1, 1, 1, 0},
             .attention_mask = {1, 1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 0,  //
                                0, 0, 0, 0, 1, 0, 1, 1, 1, 1, 0, 1}});
}
TEST_F(Mha, GradientDropoutTraining) {
  auto res = check_mha({.options = {.num_heads = 2, .key_dim = 3, .dropout = 0.3f},
                        .shapes = {{3, 4}, {5, 4}},
                        .training = true});
  (void)res;
}
// The fused kernel's gradients (sequences past 32 scores per head): causal with query and value
// masks (sample 1's causal rows 0-1 have no key left), and dropout in training.
TEST_F(Mha, GradientFusedKernelCausalWithMasks) {
  std::vector<float> qm(2 * 7, 1.0f), vm(2 * 8, 1.0f);
  qm[2] = 0.0f;
  vm[3] = vm[8] = vm[9] = 0.0f;
  check_mha({.options = {.num_heads = 2, .key_dim = 2},
             .shapes = {{7, 3}, {8, 3}},
             .call = {.use_causal_mask = true},
             .query_mask = qm,
             .value_mask = vm});
}
TEST_F(Mha, GradientFusedKernelDropoutTraining) {
  check_mha({.options = {.num_heads = 2, .key_dim = 2, .dropout = 0.3f},
             .shapes = {{6, 3}, {7, 3}, {7, 2}},
             .training = true});
}
TEST_F(Mha, GradientReturnScoresKeepsOutputGradient) {
  check_mha({.options = {.num_heads = 2, .key_dim = 3},
             .shapes = {{3, 4}, {5, 4}},
             .call = {.return_attention_scores = true}});
}

// The returned scores are a differentiable output too (a loss on them reaches q, k and the
// query/key weights but not the value path): backward from a gradient on output 1 only.
TEST_F(Mha, GradientThroughReturnedScores) {
  auto layer = std::make_shared<L::MultiHeadAttentionLayer>(L::MultiHeadAttentionOptions{.num_heads = 2, .key_dim = 3});
  CallOptions call{.use_causal_mask = true, .return_attention_scores = true};
  auto outs = layer->call({attn::Input({3, 4}), attn::Input({4, 4})}, call);
  std::mt19937 gen(21);
  for (attn::Weight& w : layer->weights())
    for (int64_t i = 0; i < w.value.size(); ++i) w.value[i] = std::uniform_real_distribution<float>(-1, 1)(gen);
  const int64_t B = 2;
  auto q = random_values(gen, B * 12), v = random_values(gen, B * 16);
  const auto r = random_values(gen, B * 2 * 3 * 4);
  const auto loss = [&] {
    FwdRun f = run_forward(*layer, call, B, {&q, &v}, {}, {}, {outs[0]->shape, outs[1]->shape});
    double l = 0;
    for (size_t i = 0; i < r.size(); ++i) l += double(r[i]) * f.scores[i];
    return l;
  };
  // Analytic: forward into saved, then backward with only the scores' gradient.
  std::vector<float> out(B * 12), scores(r.size()), saved(B * layer->saved_floats_per_sample(call));
  std::vector<float> scratch(layer->scratch_floats(B, call) + 1);
  attn::ForwardContext f;
  f.batch = B;
  f.call = &call;
  f.inputs = {q.data(), v.data()};
  f.outputs = {out.data(), scores.data()};
  f.saved = saved.data();
  f.scratch = scratch.data();
  layer->forward(f);
  std::vector<float> dq(q.size(), 0.0f), dv(v.size(), 0.0f);
  int64_t n_params = 0;
  for (attn::Weight& w : layer->weights()) {
    w.offset = n_params;
    n_params += w.value.size();
  }
  std::vector<float> dw(n_params, 0.0f);
  attn::BackwardContext b;
  b.batch = B;
  b.call = &call;
  b.inputs = {q.data(), v.data()};
  b.outputs = {out.data(), scores.data()};
  b.output_grads = {nullptr, r.data()};
  b.input_grads = {dq.data(), dv.data()};
  b.param_grads = dw.data();
  b.saved = saved.data();
  b.scratch = scratch.data();
  layer->backward(b);
  const auto fd = [&](float& x) {
    const float keep = x;
    x = keep + 1e-3f;
    const double lp = loss();
    x = keep - 1e-3f;
    const double lm = loss();
    x = keep;
    return (lp - lm) / 2e-3;
  };
  for (size_t i = 0; i < q.size(); ++i) EXPECT_NEAR(dq[i], fd(q[i]), 2e-3) << "dq[" << i << "]";
  for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(dv[i], fd(v[i]), 2e-3) << "dv[" << i << "] (key = value)";
  for (attn::Weight& w : layer->weights())
    for (int64_t i = 0; i < w.value.size(); ++i) {
      const double want = fd(w.value[i]);
      EXPECT_NEAR(dw[w.offset + i], want, 2e-3) << w.name << "[" << i << "]";
      if (w.name.rfind("value/", 0) == 0 || w.name.rfind("attention_output/", 0) == 0) {
        EXPECT_EQ(want, 0.0) << w.name;
      }
    }
}

TEST_F(Mha, DropoutOnlyInTrainingAndScoresAreBeforeDropout) {
  auto layer = std::make_shared<L::MultiHeadAttentionLayer>(
      L::MultiHeadAttentionOptions{.num_heads = 2, .key_dim = 3, .dropout = 0.5f});
  CallOptions call{.return_attention_scores = true};
  auto outs = layer->call({attn::Input({6, 4}), attn::Input({8, 4})}, call);
  std::mt19937 gen(9);
  const auto q = random_values(gen, 2 * 24), v = random_values(gen, 2 * 32);
  FwdRun infer = run_forward(*layer, call, 2, {&q, &v}, {}, {}, {outs[0]->shape, outs[1]->shape});
  const Oracle o = mha_oracle(*layer, 2, 6, 8, q, v, nullptr, {}, {}, false);
  expect_near_all(infer.out, o.out, 2e-5, "inference output ignores dropout");
  // Training: same scores (taken before dropout), different output.
  std::vector<float> out(infer.out.size()), scores(infer.scores.size());
  std::vector<float> saved(2 * layer->saved_floats_per_sample(call)), scratch(layer->scratch_floats(2, call) + 1);
  attn::ForwardContext f;
  f.batch = 2;
  f.training = true;
  f.seed = 77;
  f.call = &call;
  f.inputs = {q.data(), v.data()};
  f.outputs = {out.data(), scores.data()};
  f.saved = saved.data();
  f.scratch = scratch.data();
  layer->forward(f);
  expect_near_all(scores, o.scores, 2e-6, "training scores (before dropout)");
  double diff = 0;
  for (size_t i = 0; i < out.size(); ++i) diff += std::fabs(out[i] - infer.out[i]);
  EXPECT_GT(diff, 1e-3) << "dropout 0.5 in training must change the output";
}

// One training forward and backward of the layer directly; the call's options pick the path
// (returned scores: the loops; none: the fused kernel).
struct TrainRun {
  std::vector<float> out, dq, dv, dw;
};
TrainRun train_step(L::MultiHeadAttentionLayer& layer, const CallOptions& call, int64_t B, int64_t tq, int64_t tv,
                    const std::vector<float>& q, const std::vector<float>& v, const std::vector<float>& dout,
                    const std::vector<float>& qm, const std::vector<float>& vm) {
  TrainRun r;
  const int64_t dim = layer.output_dim(), heads = layer.num_heads();
  r.out.assign(B * tq * dim, std::nanf(""));
  std::vector<float> scores(call.return_attention_scores ? B * heads * tq * tv : 0);
  std::vector<float> saved(B * layer.saved_floats_per_sample(call), std::nanf(""));
  std::vector<float> scratch(layer.scratch_floats(B, call), std::nanf(""));
  attn::ForwardContext f;
  f.batch = B;
  f.training = true;
  f.seed = 1234;
  f.sample_offset = 5;
  f.call = &call;
  f.inputs = {q.data(), v.data()};
  f.outputs = {r.out.data()};
  if (!scores.empty()) f.outputs.push_back(scores.data());
  f.query_mask = qm.empty() ? nullptr : qm.data();
  f.value_mask = vm.empty() ? nullptr : vm.data();
  f.saved = saved.data();
  f.scratch = scratch.data();
  layer.forward(f);
  int64_t n_params = 0;
  for (attn::Weight& w : layer.weights()) {
    w.offset = n_params;
    n_params += w.value.size();
  }
  r.dq.assign(q.size(), 0.0f);
  r.dv.assign(v.size(), 0.0f);
  r.dw.assign(n_params, 0.0f);
  attn::BackwardContext b;
  b.batch = B;
  b.training = true;
  b.seed = f.seed;
  b.sample_offset = f.sample_offset;
  b.call = &call;
  b.inputs = f.inputs;
  b.outputs = {r.out.data()};
  b.output_grads = {dout.data()};
  if (!scores.empty()) {
    b.outputs.push_back(scores.data());
    b.output_grads.push_back(nullptr);
  }
  b.input_grads = {r.dq.data(), r.dv.data()};
  b.query_mask = f.query_mask;
  b.value_mask = f.value_mask;
  b.param_grads = r.dw.data();
  b.saved = saved.data();
  b.scratch = scratch.data();
  layer.backward(b);
  return r;
}

void expect_close(const std::vector<float>& a, const std::vector<float>& b, double tol, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double err = std::fabs(double(a[i]) - b[i]) / (1.0 + std::fabs(double(b[i])));
    if (!(err <= worst)) {
      worst = err;
      at = i;
    }
  }
  EXPECT_LE(worst, tol) << what << "[" << at << "]: " << a[at] << " vs " << b[at];
}

// The fused kernel and the loops agree in training: the same dropout mask (drawn per head from
// the same hash), masks with fully masked rows (Keras 3: zero probabilities), causal, odd sizes,
// and every gradient.
TEST_F(Mha, FusedKernelMatchesTheLoopsInTrainingWithDropoutMasksAndCausal) {
  for (const bool causal : {false, true}) {
    SCOPED_TRACE(causal ? "causal" : "not causal");
    attn::clear_session();
    auto layer = std::make_shared<L::MultiHeadAttentionLayer>(
        L::MultiHeadAttentionOptions{.num_heads = 3, .key_dim = 5, .value_dim = 7, .dropout = 0.3f});
    const int64_t B = 3, tq = 37, tv = 71, fq = 6, fv = 9;
    CallOptions loops{.use_causal_mask = causal, .return_attention_scores = true};
    CallOptions fused{.use_causal_mask = causal};
    loops.query_mask = fused.query_mask = attn::Input({tq});
    loops.value_mask = fused.value_mask = attn::Input({tv});
    layer->call({attn::Input({tq, fq}), attn::Input({tv, fv})}, loops);
    std::mt19937 gen(17);
    for (attn::Weight& w : layer->weights())
      for (int64_t i = 0; i < w.value.size(); ++i) w.value[i] = std::uniform_real_distribution<float>(-0.6f, 0.6f)(gen);
    const auto q = random_values(gen, B * tq * fq), v = random_values(gen, B * tv * fv);
    const auto dout = random_values(gen, B * tq * fq);
    std::vector<float> qm(B * tq, 1.0f), vm(B * tv, 1.0f);
    for (int64_t i = 0; i < B * tq; i += 5) qm[i] = 0.0f;
    for (int64_t j = 0; j < B * tv; j += 3) vm[j] = 0.0f;  // key 0 of sample 0 masked: causal row 0 is empty
    std::fill(vm.begin() + tv, vm.begin() + 2 * tv, 0.0f);  // sample 1: every key masked
    const TrainRun a = train_step(*layer, loops, B, tq, tv, q, v, dout, qm, vm);
    const TrainRun b = train_step(*layer, fused, B, tq, tv, q, v, dout, qm, vm);
    expect_close(b.out, a.out, 2e-5, "output");
    expect_close(b.dq, a.dq, 2e-5, "d query");
    expect_close(b.dv, a.dv, 2e-5, "d value");
    expect_close(b.dw, a.dw, 2e-5, "d weights");
    // Sample 1 has no key left: its context is 0, so its output is the output bias.
    const float* bias = layer->weights().back().value.data();
    for (int64_t i = 0; i < tq; ++i) EXPECT_EQ(b.out[(tq + i) * fq], bias[0]) << "row " << i;
  }
}

// The fused path keeps per head the projections, the context and two or four statistics per
// query: memory linear in the sequence length. The loops (returned scores) keep the
// probabilities: quadratic.
TEST_F(Mha, FusedPathMemoryIsLinearInSequenceLength) {
  const auto saved = [](int64_t t, bool scores) {
    attn::clear_session();
    auto layer = std::make_shared<L::MultiHeadAttentionLayer>(L::MultiHeadAttentionOptions{.num_heads = 2, .key_dim = 8});
    CallOptions call{.return_attention_scores = scores};
    layer->call({attn::Input({t, 16}), attn::Input({t, 16})}, call);
    return std::pair{layer->saved_floats_per_sample(call), layer->scratch_floats(4, call)};
  };
  for (const int64_t t : {256, 1024}) {
    EXPECT_EQ(saved(2 * t, false).first, 2 * saved(t, false).first) << t;
    EXPECT_LE(saved(2 * t, false).second, 2 * saved(t, false).second + 64) << t;
    EXPECT_GT(saved(2 * t, true).first, 3 * saved(t, true).first) << t;
  }
}

// ---------------------------------------------------------------- config

TEST_F(Mha, GetConfigHasKerasKeysAndValues) {
  auto layer = std::make_shared<L::MultiHeadAttentionLayer>(
      L::MultiHeadAttentionOptions{.num_heads = 2, .key_dim = 4, .dropout = 0.1f});
  nlohmann::json before = layer->get_config();
  EXPECT_TRUE(before["attention_axes"].is_null());  // resolved at build
  auto x = attn::Input({2, 8});
  layer->call({x, x});
  const nlohmann::json c = layer->get_config();
  std::set<std::string> keys;
  for (auto it = c.begin(); it != c.end(); ++it) keys.insert(it.key());
  const std::set<std::string> want = {"name",           "trainable",          "dtype",
                                      "num_heads",      "key_dim",            "value_dim",
                                      "dropout",        "use_bias",           "output_shape",
                                      "attention_axes", "kernel_initializer", "bias_initializer",
                                      "kernel_regularizer", "bias_regularizer", "activity_regularizer",
                                      "kernel_constraint",  "bias_constraint",  "seed"};
  EXPECT_EQ(keys, want);
  EXPECT_EQ(c["name"], "multi_head_attention");
  EXPECT_EQ(c["num_heads"], 2);
  EXPECT_EQ(c["key_dim"], 4);
  EXPECT_EQ(c["value_dim"], 4);  // Keras stores value_dim or key_dim
  EXPECT_EQ(c["dropout"].get<double>(), 0.1);  // the Python float 0.1, not float32's 0.10000000149
  EXPECT_EQ(c["use_bias"], true);
  EXPECT_TRUE(c["output_shape"].is_null());
  EXPECT_EQ(c["attention_axes"], nlohmann::json::array({1}));
  EXPECT_EQ(c["kernel_initializer"]["class_name"], "GlorotUniform");
  EXPECT_EQ(c["kernel_initializer"]["module"], "keras.initializers");
  EXPECT_TRUE(c["kernel_initializer"]["config"]["seed"].is_null());
  EXPECT_EQ(c["bias_initializer"]["class_name"], "Zeros");
  EXPECT_TRUE(c["kernel_regularizer"].is_null());
  EXPECT_TRUE(c["seed"].is_null());
  EXPECT_EQ(c["dtype"]["config"]["name"], "float32");

  attn::clear_session();
  auto other = std::make_shared<L::MultiHeadAttentionLayer>(L::MultiHeadAttentionOptions{
      .num_heads = 1, .key_dim = 2, .value_dim = 3, .use_bias = false, .output_shape = 5, .seed = 7});
  const nlohmann::json o = other->get_config();
  EXPECT_EQ(o["value_dim"], 3);
  EXPECT_EQ(o["use_bias"], false);
  EXPECT_EQ(o["output_shape"], nlohmann::json::array({5}));  // Keras normalises an int to a tuple
  EXPECT_EQ(o["seed"], 7);
  EXPECT_EQ(o["dropout"].get<double>(), 0.0);
}

}  // namespace
