// Tests of the attention kernels: the fast kernel against the scalar reference over many
// shapes and options (forward outputs, weights and every gradient), the reference against
// central finite differences of a double-precision copy of the formula, and hand-derived
// values (fully masked rows, zero queries, a two-key softmax). Speed is bench/'s job.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention.hpp"
#include "kernels/attention_d1.hpp"
#include "kernels/attention_d1_series.hpp"
#include "kernels/attention_layout.hpp"
#include "kernels/dropout_hash.hpp"
#include "simd_targets.hpp"

namespace attn::kernels {
namespace {

using Vec = std::vector<float>;

struct Inputs {
  Vec q, k, v;          // separate storage; aliased cases point all three at x
  Vec x;                // [batch, t, d] when q = k = v
  bool alias = false;
  std::vector<uint8_t> qmask, vmask;
  const float* qp() const { return alias ? x.data() : q.data(); }
  const float* kp() const { return alias ? x.data() : k.data(); }
  const float* vp() const { return alias ? x.data() : v.data(); }
};

// Uniform in [-1, 1]; with zero_frac, that fraction of entries is exactly 0, the rest in
// (0, 1] quantised to /255 like MNIST pixels (so equal values occur).
Vec random_vec(std::mt19937& rng, int64_t n, double zero_frac, bool pixels) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::uniform_real_distribution<double> z(0.0, 1.0);
  std::uniform_int_distribution<int> px(1, 255);
  Vec out(static_cast<size_t>(n));
  for (auto& x : out) {
    if (z(rng) < zero_frac)
      x = 0.0f;
    else
      x = pixels ? static_cast<float>(px(rng)) / 255.0f : u(rng);
  }
  return out;
}

double max_abs(const Vec& a) {
  double m = 0.0;
  for (float x : a) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}

// |got - want| <= tol * (max|want| + |want|) elementwise, reported with the first bad index.
void expect_close(const Vec& got, const Vec& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const double scale = max_abs(want) + 1e-6;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(err <= tol * (scale + std::fabs(want[i])))) {
      ADD_FAILURE() << what << "[" << i << "]: fast " << got[i] << " vs reference " << want[i] << " (scale " << scale
                    << ")";
      return;
    }
  }
}

struct Case {
  AttentionConfig cfg;
  bool alias = false;
  double zero_frac = 0.0;
  bool pixels = false;
  bool want_weights = true;
  unsigned grads = 31;  // bits: dq, dk, dv, dscale, dconcat
  bool full_mask_row = false;
  bool d1_direct = false;  // through attention_d1_forward/backward with `method`, not the dispatcher
  D1Method method = D1Method::kSeries;
  std::string name;
};

Inputs make_inputs(const Case& c, std::mt19937& rng) {
  const auto& g = c.cfg;
  Inputs in;
  in.alias = c.alias;
  if (c.alias) {
    in.x = random_vec(rng, g.batch * g.tq * g.d, c.zero_frac, c.pixels);
  } else {
    in.q = random_vec(rng, g.batch * g.tq * g.d, c.zero_frac, c.pixels);
    in.k = random_vec(rng, g.batch * g.tv * g.d, c.zero_frac, c.pixels);
    in.v = random_vec(rng, g.batch * g.tv * g.dv, c.zero_frac, c.pixels);
  }
  return in;
}

void run_case(const Case& c, uint32_t seed) {
  SCOPED_TRACE(c.name);
  std::mt19937 rng(seed);
  AttentionConfig cfg = c.cfg;
  Inputs in = make_inputs(c, rng);
  std::bernoulli_distribution keep(0.7);
  if (cfg.query_mask != nullptr || cfg.value_mask != nullptr) {
    // Caller passes a non-null sentinel to ask for masks; build real ones here.
    const bool want_q = cfg.query_mask != nullptr, want_v = cfg.value_mask != nullptr;
    in.qmask.resize(static_cast<size_t>(cfg.batch * cfg.tq));
    in.vmask.resize(static_cast<size_t>(cfg.batch * cfg.tv));
    for (auto& m : in.qmask) m = keep(rng) ? 1 : 0;
    for (auto& m : in.vmask) m = keep(rng) ? 1 : 0;
    if (c.full_mask_row) std::fill(in.vmask.begin(), in.vmask.begin() + cfg.tv, 0);  // sample 0 fully masked
    cfg.query_mask = want_q ? in.qmask.data() : nullptr;
    cfg.value_mask = want_v ? in.vmask.data() : nullptr;
  }
  const int64_t no = cfg.batch * cfg.tq * cfg.dv;
  Vec out_ref(no), out_fast(no, std::numeric_limits<float>::quiet_NaN());
  Vec w_ref(c.want_weights ? cfg.batch * cfg.tq * cfg.tv : 0), w_fast(w_ref.size(), -1.0f);
  attention_forward_reference(cfg, in.qp(), in.kp(), in.vp(), out_ref.data(), c.want_weights ? w_ref.data() : nullptr);
  // Poisoned saved and scratch: the kernel must write everything it reads.
  Vec saved(cfg.batch * attention_saved_floats(cfg), std::numeric_limits<float>::quiet_NaN());
  Vec scratch(attention_scratch_floats(cfg), std::numeric_limits<float>::quiet_NaN());
  if (c.d1_direct) {
    ASSERT_TRUE(layout::grouped_eligible(cfg));
    attention_d1_forward(cfg, in.qp(), in.kp(), in.vp(), out_fast.data(), saved.data(),
                         c.want_weights ? w_fast.data() : nullptr, scratch.data(), c.method);
  } else {
    attention_forward(cfg, in.qp(), in.kp(), in.vp(), out_fast.data(), saved.data(),
                      c.want_weights ? w_fast.data() : nullptr, scratch.data());
  }
  expect_close(out_fast, out_ref, 2e-5, "out");
  if (c.want_weights) expect_close(w_fast, w_ref, 2e-5, "weights");

  const Vec dout = random_vec(rng, no, 0.0, false);
  const Vec dq0 = random_vec(rng, cfg.batch * cfg.tq * cfg.d, 0.0, false);
  const Vec dk0 = random_vec(rng, cfg.batch * cfg.tv * cfg.d, 0.0, false);
  const Vec dv0 = random_vec(rng, cfg.batch * cfg.tv * cfg.dv, 0.0, false);
  Vec dq_r = dq0, dk_r = dk0, dv_r = dv0, dq_f = dq0, dk_f = dk0, dv_f = dv0;
  float ds_r = 0.25f, ds_f = 0.25f, dc_r = -0.5f, dc_f = -0.5f;  // ADD semantics: start nonzero
  const auto pick = [&](unsigned bit, auto* p) { return (c.grads & bit) ? p : nullptr; };
  attention_backward_reference(cfg, in.qp(), in.kp(), in.vp(), dout.data(), pick(1, dq_r.data()), pick(2, dk_r.data()),
                               pick(4, dv_r.data()), pick(8, &ds_r), pick(16, &dc_r));
  if (c.d1_direct) {
    attention_d1_backward(cfg, in.qp(), in.kp(), in.vp(), out_fast.data(), dout.data(), saved.data(),
                          pick(1, dq_f.data()), pick(2, dk_f.data()), pick(4, dv_f.data()), pick(8, &ds_f),
                          scratch.data(), c.method);
  } else {
    attention_backward(cfg, in.qp(), in.kp(), in.vp(), out_fast.data(), dout.data(), saved.data(), pick(1, dq_f.data()),
                       pick(2, dk_f.data()), pick(4, dv_f.data()), pick(8, &ds_f), pick(16, &dc_f), scratch.data());
  }
  expect_close(dq_f, dq_r, 1e-4, "dq");
  expect_close(dk_f, dk_r, 1e-4, "dk");
  expect_close(dv_f, dv_r, 1e-4, "dv");
  // Scalars sum batch * tq * tv terms of either sign: compare against the sum's natural size.
  const double mag = std::sqrt(static_cast<double>(cfg.batch * cfg.tq)) * (max_abs(dout) + 1e-3);
  EXPECT_NEAR(ds_f, ds_r, 1e-4 * (mag + std::fabs(ds_r))) << "dscale";
  EXPECT_NEAR(dc_f, dc_r, 1e-4 * (mag + std::fabs(dc_r))) << "dconcat_weight";
  if (!(c.grads & 16) || cfg.mode == ScoreMode::kDot) {
    EXPECT_EQ(dc_f, -0.5f);
  }
}

const uint8_t kWantMask = 1;  // sentinel, replaced by real masks in run_case

TEST(AttentionKernel, MatchesReferenceOverShapesAndOptions) {
  const int64_t shapes[][4] = {{1, 1, 1, 1},  {3, 17, 2, 5},  {17, 3, 5, 2},  {64, 64, 16, 16}, {100, 17, 64, 3},
                               {17, 100, 1, 1}, {64, 100, 5, 64}, {3, 1, 16, 2}, {100, 64, 2, 17}, {33, 65, 64, 64},
                               {1, 100, 3, 1}, {100, 1, 1, 9}};
  std::mt19937 pick(1234);
  int n = 0;
  for (const auto& s : shapes) {
    for (int variant = 0; variant < 6; ++variant) {
      Case c;
      c.cfg.batch = 1 + static_cast<int64_t>(pick() % 3);
      c.cfg.tq = s[0];
      c.cfg.tv = s[1];
      c.cfg.d = s[2];
      c.cfg.dv = s[3];
      c.cfg.scale = variant % 2 ? 0.7f : 1.3f;
      c.cfg.mode = variant == 5 ? ScoreMode::kConcat : ScoreMode::kDot;
      c.cfg.concat_weight = 0.8f;
      c.cfg.causal = variant == 2 || variant == 4;
      if (variant == 1 || variant == 2) c.cfg.value_mask = &kWantMask;
      if (variant == 1 || variant == 4) c.cfg.query_mask = &kWantMask;
      if (variant == 3 || variant == 4) {
        c.cfg.dropout = 0.3f;
        c.cfg.dropout_seed = 99;
        c.cfg.sample_offset = 7;
      }
      c.zero_frac = variant == 0 ? 0.8 : 0.0;
      c.want_weights = variant % 3 != 0;
      c.grads = static_cast<unsigned>(pick() % 32);
      if (variant < 2) c.grads = 31;
      c.name = "shape " + std::to_string(s[0]) + "x" + std::to_string(s[1]) + " d" + std::to_string(s[2]) + " dv" +
               std::to_string(s[3]) + " variant " + std::to_string(variant) + " grads " + std::to_string(c.grads);
      run_case(c, 100 + static_cast<uint32_t>(n++));
    }
  }
}

TEST(AttentionKernel, AliasedZeroHeavyAndFullyMasked) {
  for (int64_t t : {1, 17, 100}) {
    for (int64_t d : {1, 2, 16}) {
      Case c;
      c.cfg.batch = 2;
      c.cfg.tq = c.cfg.tv = t;
      c.cfg.d = c.cfg.dv = d;
      c.cfg.scale = 0.9f;
      c.alias = true;
      c.zero_frac = 0.8;
      c.pixels = true;
      c.name = "alias t" + std::to_string(t) + " d" + std::to_string(d);
      run_case(c, 7);
      c.cfg.value_mask = &kWantMask;
      c.cfg.query_mask = &kWantMask;
      c.full_mask_row = true;
      c.name += " fully masked sample 0";
      run_case(c, 8);
      c.cfg.mode = ScoreMode::kConcat;
      c.name += " concat";
      run_case(c, 9);
    }
  }
}

// The reference model: q = k = v = x [batch, 784, 1], MNIST-like pixels, trainable scale,
// only dscale requested; also with all gradients and weights (same saved layout).
TEST(AttentionKernel, ReferenceModelConfiguration) {
  Case c;
  c.cfg.batch = 2;
  c.cfg.tq = c.cfg.tv = 784;
  c.cfg.scale = 1.0f;
  c.alias = true;
  c.zero_frac = 0.81;
  c.pixels = true;
  c.want_weights = false;
  c.grads = 8;
  c.name = "reference model, dscale only";
  run_case(c, 11);
  c.cfg.scale = 2.5f;
  c.grads = 31;
  c.want_weights = true;
  c.name = "reference model, scale 2.5, all gradients and weights";
  run_case(c, 12);
  c.alias = false;  // separate q, k, v through the grouped path
  c.cfg.tq = 100;
  c.cfg.scale = -0.6f;
  c.name = "grouped, q != k, tq != tv, negative scale";
  run_case(c, 13);
  c.zero_frac = 0.0;
  c.pixels = false;
  c.cfg.tq = 784;
  c.grads = 8;
  c.name = "grouped, dense random values";
  run_case(c, 14);
  c.grads = 31;
  c.name = "grouped, dense random values, all gradients";
  run_case(c, 15);
}

// The d = 1 path on its own (attention_d1_forward/backward, so a silent fallback to the general
// kernel cannot pass), by grouping and by series: every subset of dq, dk, dv, dscale, into
// nonzero gradients, over odd lengths with tq != tv, dense random values (every key its own
// group), MNIST-like zero-heavy values (few large groups), q, k, v distinct or aliased, positive
// and negative scale.
TEST(AttentionKernel, GroupedBackwardAllGradientSubsets) {
  const int64_t lens[][2] = {{1, 1}, {3, 17}, {17, 3}, {100, 1}, {1, 100}, {17, 100}, {100, 784}, {784, 17}, {784, 784}};
  unsigned grads = 1;
  int n = 0;
  for (const D1Method method : {D1Method::kGrouped, D1Method::kSeries}) {
  for (const auto& len : lens) {
    // 0 dense, 1 zero-heavy pixels, 2 aliased zero-heavy (tq = tv only), 3 all zeros (short only)
    for (int data = 0; data < 4; ++data) {
      if (data == 2 && len[0] != len[1]) continue;
      if (data == 3 && len[0] * len[1] > 2000) continue;
      for (float scale : {1.3f, -0.7f}) {
        Case c;
        c.cfg.batch = len[0] * len[1] > 100000 ? 1 : 2;
        c.cfg.tq = len[0];
        c.cfg.tv = len[1];
        c.cfg.scale = scale;
        c.alias = data == 2;
        c.zero_frac = data == 0 ? 0.0 : data == 3 ? 1.0 : 0.8;
        c.pixels = data != 0;
        c.want_weights = n % 4 == 0;
        c.grads = grads;
        grads = grads % 15 + 1;  // cycles through the 15 nonempty subsets of dq, dk, dv, dscale
        c.d1_direct = true;
        c.method = method;
        c.name = std::string(method == D1Method::kGrouped ? "grouped " : "series ") + std::to_string(len[0]) + "x" + std::to_string(len[1]) + " data " + std::to_string(data) +
                 " scale " + std::to_string(scale) + " grads " + std::to_string(c.grads);
        run_case(c, 500 + static_cast<uint32_t>(n++));
        if (len[0] * len[1] <= 2000) {  // and all four at once
          c.grads = 15;
          c.name += " -> all";
          run_case(c, 500 + static_cast<uint32_t>(n++));
        }
      }
    }
  }
  }
}

// The series path itself (attention_d1_series_*, which say whether they ran, so this cannot pass
// by falling back): against the reference from one key bucket to dozens (the spread
// max|scale q| (max k - min k) sets their number), odd lengths, tq != tv, all keys equal, all
// queries zero, MNIST-like pixels; every gradient, added into nonzero buffers.
TEST(AttentionKernel, SeriesPathOverScoreSpreads) {
  struct Spread {
    int64_t tq, tv;
    float scale;
    int data;  // 0 dense in [-1, 1], 1 zero-heavy pixels, 2 keys all equal, 3 queries all zero,
               // 4 keys 1e-38 apart (a bucket too narrow to scale by), 5 keys one float apart
  };
  const Spread cases[] = {{784, 784, 0.5f, 0}, {784, 784, 20.0f, 0}, {784, 784, -3.0f, 1}, {100, 100, 5.0f, 0},
                          {17, 100, -4.0f, 0}, {100, 17, 1.5f, 0},   {23, 17, 1.9f, 1},   {3, 3, 0.4f, 0},
                          {1, 1, 7.0f, 0},     {5, 1, -2.0f, 0},     {33, 65, 9.0f, 2},   {65, 33, 9.0f, 3},
                          {40, 50, 3.0f, 4},   {50, 40, 3.0f, 5}};
  uint32_t seed = 900;
  for (const Spread& sp : cases) {
    AttentionConfig cfg;
    cfg.batch = 2;
    cfg.tq = sp.tq;
    cfg.tv = sp.tv;
    cfg.scale = sp.scale;
    SCOPED_TRACE("series " + std::to_string(sp.tq) + "x" + std::to_string(sp.tv) + " scale " +
                 std::to_string(sp.scale) + " data " + std::to_string(sp.data));
    std::mt19937 rng(seed++);
    const bool pixels = sp.data == 1;
    Vec q = random_vec(rng, cfg.batch * cfg.tq, pixels ? 0.8 : 0.0, pixels);
    Vec k = random_vec(rng, cfg.batch * cfg.tv, pixels ? 0.8 : 0.0, pixels);
    const Vec v = random_vec(rng, cfg.batch * cfg.tv, 0.0, false);
    const Vec dout = random_vec(rng, cfg.batch * cfg.tq, 0.0, false);
    if (sp.data == 2) std::fill(k.begin(), k.end(), 0.3f);
    if (sp.data == 3) std::fill(q.begin(), q.end(), 0.0f);
    for (size_t j = 0; j < k.size() && sp.data >= 4; ++j)
      k[j] = sp.data == 4 ? (j % 2 == 0 ? 2e-38f : 3e-38f) : (j % 2 == 0 ? 0.5f : std::nextafter(0.5f, 1.0f));
    const int64_t sf = attention_saved_floats(cfg);
    Vec out_ref(q.size()), out(q.size(), std::numeric_limits<float>::quiet_NaN());
    Vec saved(cfg.batch * sf, std::numeric_limits<float>::quiet_NaN());
    Vec scratch(attention_scratch_floats(cfg), std::numeric_limits<float>::quiet_NaN());
    attention_forward_reference(cfg, q.data(), k.data(), v.data(), out_ref.data(), nullptr);
    for (int64_t b = 0; b < cfg.batch; ++b)
      ASSERT_TRUE(attention_d1_series_forward(cfg, q.data() + b * cfg.tq, k.data() + b * cfg.tv,
                                              v.data() + b * cfg.tv, out.data() + b * cfg.tq, saved.data() + b * sf,
                                              scratch.data()));
    expect_close(out, out_ref, 2e-5, "out");
    Vec dq_r(q.size(), 0.5f), dk_r(k.size(), -0.25f), dv_r(v.size(), 0.75f);
    Vec dq = dq_r, dk = dk_r, dv = dv_r;
    float ds_r = 0.125f, ds = 0.125f;
    attention_backward_reference(cfg, q.data(), k.data(), v.data(), dout.data(), dq_r.data(), dk_r.data(), dv_r.data(),
                                 &ds_r, nullptr);
    for (int64_t b = 0; b < cfg.batch; ++b)
      ASSERT_TRUE(attention_d1_series_backward(cfg, q.data() + b * cfg.tq, k.data() + b * cfg.tv,
                                               v.data() + b * cfg.tv, out.data() + b * cfg.tq,
                                               dout.data() + b * cfg.tq, saved.data() + b * sf, dk.data() + b * cfg.tv,
                                               dv.data() + b * cfg.tv, scratch.data()));
    // dq and dscale come from the saved statistics alone (no column sums).
    attention_d1_backward(cfg, q.data(), k.data(), v.data(), out.data(), dout.data(), saved.data(), dq.data(), nullptr,
                          nullptr, &ds, scratch.data(), D1Method::kSeries);
    expect_close(dq, dq_r, 1e-4, "dq");
    expect_close(dk, dk_r, 1e-4, "dk");
    expect_close(dv, dv_r, 1e-4, "dv");
    const double mag = std::sqrt(static_cast<double>(cfg.batch * cfg.tq)) * (max_abs(dout) + 1e-3);
    EXPECT_NEAR(ds, ds_r, 1e-4 * (mag + std::fabs(ds_r))) << "dscale";
  }
}

// The series refuses, writing nothing, a spread that needs more buckets than the layout holds
// (tv / 4 here) and non-finite input; the dispatcher then groups and still matches.
TEST(AttentionKernel, SeriesPathRefusesWideSpreadAndNonFinite) {
  AttentionConfig cfg;
  cfg.tq = 9;
  cfg.tv = 17;  // at most 4 buckets: |scale| max|q| (max k - min k) must stay under 4
  cfg.scale = 10.0f;
  std::mt19937 rng(41);
  Vec q = random_vec(rng, cfg.tq, 0.0, false), k = random_vec(rng, cfg.tv, 0.0, false);
  const Vec v = random_vec(rng, cfg.tv, 0.0, false), dout = random_vec(rng, cfg.tq, 0.0, false);
  Vec out(cfg.tq, -7.0f), saved(attention_saved_floats(cfg), -7.0f), scratch(attention_scratch_floats(cfg));
  Vec dk(cfg.tv, -7.0f), dv(cfg.tv, -7.0f);
  EXPECT_FALSE(attention_d1_series_forward(cfg, q.data(), k.data(), v.data(), out.data(), saved.data(), scratch.data()));
  EXPECT_FALSE(attention_d1_series_backward(cfg, q.data(), k.data(), v.data(), out.data(), dout.data(), saved.data(),
                                            dk.data(), dv.data(), scratch.data()));
  for (const Vec* a : {&out, &saved, &dk, &dv})
    for (float x : *a) ASSERT_EQ(x, -7.0f);
  Case c;
  c.cfg = cfg;
  c.d1_direct = true;
  c.method = D1Method::kSeries;
  c.name = "wide spread, series asked for, grouped used";
  run_case(c, 42);
  cfg.scale = 0.5f;  // a narrow spread, but one value is not a number
  q[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(attention_d1_series_forward(cfg, q.data(), k.data(), v.data(), out.data(), saved.data(), scratch.data()));
  q[3] = 0.5f;
  k[16] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(attention_d1_series_forward(cfg, q.data(), k.data(), v.data(), out.data(), saved.data(), scratch.data()));
  for (float x : out) ASSERT_EQ(x, -7.0f);
}

// The d = 1 paths' own exponential (its arguments are scores minus the row max, so <= 0, or
// for the series up to 1/2 above): within 2 ulp of exp in double over [-87, 1], including the
// ends, multiples of ln 2 (where the reduction switches) and an odd count (the scalar tail);
// below -87 a clamped tiny value.
TEST(AttentionKernel, D1ExponentialWithinTwoUlp) {
  std::vector<float> x;
  for (int i = 0; i <= 200001; ++i) x.push_back(static_cast<float>(-87.0 * i / 200001.0));
  for (int k = 0; k <= 125; ++k)
    for (float d : {-1e-6f, 0.0f, 1e-6f}) x.push_back(std::min(0.0f, -static_cast<float>(k) * 0.6931472f + d));
  x.push_back(-0.0f);
  x.push_back(-1e-30f);
  // The series path's bucket terms exp(alpha c - m) reach slightly above 0 (at most 1/2).
  for (int i = 1; i <= 2001; ++i) x.push_back(static_cast<float>(i) / 2001.0f);
  if (x.size() % 2 == 0) x.push_back(-3.0f);
  ASSERT_EQ(x.size() % 2, 1u);
  std::vector<float> y(x.size());
  attention_d1_exp(x.data(), y.data(), static_cast<int64_t>(x.size()));
  double worst = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = std::exp(static_cast<double>(x[i]));
    const double ulps = std::fabs(y[i] - want) / (want * std::ldexp(1.0, -23));
    worst = std::max(worst, ulps);
    ASSERT_LE(ulps, 2.0) << "exp(" << x[i] << ") = " << y[i] << ", want " << want;
  }
  EXPECT_GT(worst, 0.0);  // the comparison saw rounding, so it compared real values
  const float tiny[] = {-87.5f, -100.0f, -1e9f, -std::numeric_limits<float>::infinity(), -88.0f};
  float out[5];
  attention_d1_exp(tiny, out, 5);
  for (float o : out) {
    EXPECT_GE(o, 0.0f);
    EXPECT_LE(o, 2e-38f);
  }
}

// Gradients land only where asked and ADD: a second backward doubles each requested gradient's
// increment and leaves the others untouched.
TEST(AttentionKernel, GroupedBackwardAddsIntoRequestedGradientsOnly) {
  AttentionConfig cfg;
  cfg.batch = 2;
  cfg.tq = 17;
  cfg.tv = 33;
  cfg.scale = 0.9f;
  std::mt19937 rng(77);
  const Vec q = random_vec(rng, cfg.batch * cfg.tq, 0.5, true), k = random_vec(rng, cfg.batch * cfg.tv, 0.5, true),
            v = random_vec(rng, cfg.batch * cfg.tv, 0.0, false), dout = random_vec(rng, cfg.batch * cfg.tq, 0.0, false);
  Vec out(cfg.batch * cfg.tq), saved(cfg.batch * attention_saved_floats(cfg)), scratch(attention_scratch_floats(cfg));
  attention_forward(cfg, q.data(), k.data(), v.data(), out.data(), saved.data(), nullptr, scratch.data());
  for (unsigned grads = 1; grads < 16; ++grads) {
    SCOPED_TRACE("grads " + std::to_string(grads));
    Vec dq(q.size(), 1.0f), dk(k.size(), 2.0f), dv(v.size(), 3.0f);
    float ds = 4.0f;
    const auto pick = [&](unsigned bit, auto* p) { return (grads & bit) ? p : nullptr; };
    const auto step = [&] {
      attention_backward(cfg, q.data(), k.data(), v.data(), out.data(), dout.data(), saved.data(), pick(1, dq.data()),
                         pick(2, dk.data()), pick(4, dv.data()), pick(8, &ds), nullptr, scratch.data());
    };
    step();
    const Vec dq1 = dq, dk1 = dk, dv1 = dv;
    const float ds1 = ds;
    step();
    const auto check = [&](unsigned bit, const Vec& once, const Vec& twice, float init, const char* what) {
      for (size_t i = 0; i < once.size(); ++i) {
        if (grads & bit) {
          EXPECT_NEAR(twice[i] - init, 2.0f * (once[i] - init), 1e-5f) << what << "[" << i << "]";
        } else {
          EXPECT_EQ(twice[i], init) << what << "[" << i << "]";
        }
      }
    };
    check(1, dq1, dq, 1.0f, "dq");
    check(2, dk1, dk, 2.0f, "dk");
    check(4, dv1, dv, 3.0f, "dv");
    if (grads & 8) {
      EXPECT_NEAR(ds - 4.0f, 2.0f * (ds1 - 4.0f), 1e-5f);
    } else {
      EXPECT_EQ(ds, 4.0f);
    }
  }
}

TEST(AttentionKernel, Dense784) {
  Case c;
  c.cfg.batch = 1;
  c.cfg.tq = c.cfg.tv = 784;
  c.cfg.d = 16;
  c.cfg.dv = 16;
  c.cfg.scale = 0.5f;
  c.cfg.causal = true;
  c.want_weights = false;
  c.name = "dense 784 d16 causal";
  run_case(c, 21);
}

// Memory stays linear in length; the kernel runs at 16384 without a tq x tv buffer.
TEST(AttentionKernel, LongSequenceBuffersAreLinear) {
  AttentionConfig cfg;
  cfg.tq = cfg.tv = 16384;
  cfg.d = cfg.dv = 64;
  EXPECT_LT(attention_scratch_floats(cfg), 8 * 16384 * 64);
  EXPECT_EQ(attention_saved_floats(cfg), 2 * 16384);
  cfg.d = cfg.dv = 4;
  cfg.tq = cfg.tv = 4096;
  std::mt19937 rng(3);
  const Vec q = random_vec(rng, cfg.tq * cfg.d, 0.0, false);
  Vec out(cfg.tq * cfg.dv), saved(attention_saved_floats(cfg)), scratch(attention_scratch_floats(cfg));
  attention_forward(cfg, q.data(), q.data(), q.data(), out.data(), saved.data(), nullptr, scratch.data());
  // Spot-check a few rows against the reference on a truncated problem: row i only depends on
  // all keys, so compare rows with a direct double computation.
  for (int64_t i : {0L, 1234L, 4095L}) {
    double m = -1e30, l = 0.0, o[4] = {0, 0, 0, 0};
    for (int64_t j = 0; j < cfg.tv; ++j) {
      double s = 0.0;
      for (int64_t f = 0; f < 4; ++f) s += static_cast<double>(q[i * 4 + f]) * q[j * 4 + f];
      m = std::max(m, s);
    }
    for (int64_t j = 0; j < cfg.tv; ++j) {
      double s = 0.0;
      for (int64_t f = 0; f < 4; ++f) s += static_cast<double>(q[i * 4 + f]) * q[j * 4 + f];
      const double e = std::exp(s - m);
      l += e;
      for (int64_t f = 0; f < 4; ++f) o[f] += e * q[j * 4 + f];
    }
    for (int64_t f = 0; f < 4; ++f) EXPECT_NEAR(out[i * 4 + f], o[f] / l, 1e-5);
  }
}

// Every SIMD target this binary dispatches to (SSE4 / AVX2 / AVX-512 where the CPU has them)
// gets a few mixed cases: tails and tile remainders differ with the vector width.
TEST(AttentionKernel, EverySupportedSimdTarget) {
  attn::testing::on_every_simd_target([] {
    Case c;
    c.cfg.batch = 2;
    c.cfg.tq = 17;
    c.cfg.tv = 70;
    c.cfg.d = 5;
    c.cfg.dv = 11;
    c.cfg.scale = 0.8f;
    c.cfg.value_mask = &kWantMask;
    c.cfg.query_mask = &kWantMask;
    c.cfg.causal = true;
    c.name = "masked causal";
    run_case(c, 31);
    c.cfg.value_mask = c.cfg.query_mask = nullptr;
    c.cfg.causal = false;
    c.cfg.d = c.cfg.dv = 1;
    c.zero_frac = 0.8;
    c.pixels = true;
    c.d1_direct = true;
    for (const D1Method method : {D1Method::kGrouped, D1Method::kSeries}) {
      c.method = method;
      c.grads = 8;
      c.zero_frac = 0.8;
      c.pixels = true;
      c.cfg.tq = 17;
      const std::string how = method == D1Method::kGrouped ? " (grouped)" : " (series)";
      c.name = "d = 1" + how;
      run_case(c, 32);
      c.grads = 31;
      c.cfg.tq = 70;
      c.alias = true;
      c.name = "d = 1 aliased, all gradients" + how;
      run_case(c, 33);
      c.alias = false;
      c.zero_frac = 0.0;
      c.pixels = false;
      c.cfg.tq = 23;
      c.name = "d = 1 dense, all gradients" + how;
      run_case(c, 34);
    }
    c.d1_direct = false;
  });
}

// ---------------------------------------------------------------- hand-derived values

TEST(AttentionKernel, TwoKeySoftmaxByHand) {
  AttentionConfig cfg;
  cfg.tq = 1;
  cfg.tv = 2;
  const float q[] = {1.0f}, k[] = {0.0f, std::log(3.0f)}, v[] = {2.0f, 6.0f};
  float out = 0, w[2] = {0, 0};
  Vec saved(attention_saved_floats(cfg)), scratch(attention_scratch_floats(cfg));
  attention_forward(cfg, q, k, v, &out, saved.data(), w, scratch.data());
  EXPECT_NEAR(w[0], 0.25f, 1e-6);
  EXPECT_NEAR(w[1], 0.75f, 1e-6);
  EXPECT_NEAR(out, 0.25f * 2 + 0.75f * 6, 1e-5);
  float out_ref = 0;
  attention_forward_reference(cfg, q, k, v, &out_ref, nullptr);
  EXPECT_NEAR(out_ref, 5.0f, 1e-6);
}

TEST(AttentionKernel, FullyMaskedRowAndZeroQueryGiveMeanOfValues) {
  AttentionConfig cfg;
  cfg.tq = 2;
  cfg.tv = 3;
  cfg.d = 2;
  cfg.scale = 1.7f;
  const float q[] = {0.0f, 0.0f, 0.3f, -0.8f};
  const float k[] = {0.5f, 1.0f, -2.0f, 0.25f, 3.0f, -1.0f};
  const float v[] = {1.0f, 2.0f, 6.0f};
  float out[2], out_ref[2];
  Vec saved_v(attention_saved_floats(cfg)), scratch_v(attention_scratch_floats(cfg));
  float* saved = saved_v.data();
  float* scratch = scratch_v.data();
  attention_forward(cfg, q, k, v, out, saved, nullptr, scratch);
  EXPECT_NEAR(out[0], 3.0f, 1e-6);  // zero query: uniform row
  const uint8_t none[] = {0, 0, 0};
  cfg.value_mask = none;  // every score is S - 1e9 == -1e9 exactly: uniform rows
  attention_forward(cfg, q, k, v, out, saved, nullptr, scratch);
  attention_forward_reference(cfg, q, k, v, out_ref, nullptr);
  for (int i = 0; i < 2; ++i) {
    EXPECT_NEAR(out[i], 3.0f, 1e-6);
    EXPECT_NEAR(out_ref[i], 3.0f, 1e-6);
  }
  const uint8_t qm[] = {1, 0};
  cfg.query_mask = qm;
  attention_forward(cfg, q, k, v, out, saved, nullptr, scratch);
  EXPECT_EQ(out[1], 0.0f);
  float dq[4] = {0, 0, 0, 0};
  const float dout[] = {1.0f, 1.0f};
  attention_backward(cfg, q, k, v, out, dout, saved, dq, nullptr, nullptr, nullptr, nullptr, scratch);
  EXPECT_EQ(dq[2], 0.0f);  // masked query row gets no gradient
  EXPECT_EQ(dq[3], 0.0f);
}

// ---------------------------------------------------------------- Keras oracle for masked rows

// Keras' layers.Attention forward and autodiff backward, in double from the formulas, except that
// a masked score is formed in float32 as Keras forms it: fl(fl(raw) * mult) - 1e9f
// (attention.py _apply_scores: scores -= 1e9 * cast(~mask)). A fully masked row is then exactly
// uniform (|S| < 32), and autodiff still sends dS = P (dP - sum P dP) at that P into q, k and the
// scalars: the -1e9 is a constant offset whose derivative is the identity.
struct KerasResult {
  std::vector<double> out, w, dq, dk, dv;
  double dscale = 0.0, dcw = 0.0;
};

KerasResult keras_attention(const AttentionConfig& cfg, const Vec& q, const Vec& k, const Vec& v, const Vec& dout) {
  const int64_t B = cfg.batch, tq = cfg.tq, tv = cfg.tv, d = cfg.d, dv = cfg.dv;
  const bool concat = cfg.mode == ScoreMode::kConcat;
  KerasResult r;
  r.out.assign(B * tq * dv, 0.0);
  r.w.assign(B * tq * tv, 0.0);
  r.dq.assign(q.size(), 0.0);
  r.dk.assign(k.size(), 0.0);
  r.dv.assign(v.size(), 0.0);
  std::vector<double> raw(tv), p(tv), drop(tv), dp(tv);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < tq; ++i) {
      double mx = -1e300;
      for (int64_t j = 0; j < tv; ++j) {
        double acc = 0.0;
        for (int64_t f = 0; f < d; ++f) {
          const double a = q[(b * tq + i) * d + f], c = k[(b * tv + j) * d + f];
          acc += concat ? std::tanh(static_cast<double>(cfg.scale) * (a + c)) : a * c;
        }
        raw[j] = acc;
        float s = static_cast<float>(acc) * (concat ? cfg.concat_weight : cfg.scale);
        const bool masked = (cfg.value_mask != nullptr && cfg.value_mask[b * tv + j] == 0) || (cfg.causal && j > i);
        if (masked) s = s - 1e9f;
        p[j] = s;
        mx = std::max(mx, p[j]);
      }
      double sum = 0.0;
      for (auto& x : p) sum += (x = std::exp(x - mx));
      for (int64_t j = 0; j < tv; ++j) {
        p[j] /= sum;
        drop[j] = dropout_factor(cfg.dropout, cfg.dropout_seed, cfg.sample_offset + b, i, j);
        r.w[(b * tq + i) * tv + j] = p[j] * drop[j];
      }
      if (cfg.query_mask != nullptr && cfg.query_mask[b * tq + i] == 0) continue;  // output and gradient 0
      std::vector<double> gi(dv);
      for (int64_t e = 0; e < dv; ++e) gi[e] = dout[(b * tq + i) * dv + e];
      const double* g = gi.data();
      double pdp = 0.0;
      for (int64_t j = 0; j < tv; ++j) {
        double dw = 0.0;
        for (int64_t e = 0; e < dv; ++e) {
          r.out[(b * tq + i) * dv + e] += p[j] * drop[j] * v[(b * tv + j) * dv + e];
          r.dv[(b * tv + j) * dv + e] += p[j] * drop[j] * g[e];
          dw += g[e] * v[(b * tv + j) * dv + e];
        }
        dp[j] = dw * drop[j];
        pdp += p[j] * dp[j];
      }
      for (int64_t j = 0; j < tv; ++j) {
        const double ds = p[j] * (dp[j] - pdp);
        for (int64_t f = 0; f < d; ++f) {
          const double a = q[(b * tq + i) * d + f], c = k[(b * tv + j) * d + f];
          if (!concat) {
            r.dq[(b * tq + i) * d + f] += ds * cfg.scale * c;
            r.dk[(b * tv + j) * d + f] += ds * cfg.scale * a;
          } else {
            const double t = std::tanh(static_cast<double>(cfg.scale) * (a + c));
            const double gt = ds * cfg.concat_weight * (1.0 - t * t);
            r.dscale += gt * (a + c);
            r.dq[(b * tq + i) * d + f] += gt * cfg.scale;
            r.dk[(b * tv + j) * d + f] += gt * cfg.scale;
          }
        }
        if (concat)
          r.dcw += ds * raw[j];
        else
          r.dscale += ds * raw[j];
      }
    }
  return r;
}

void expect_matches_keras(const Vec& got, const std::vector<double>& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 1e-6;
  for (double x : want) scale = std::max(scale, std::fabs(x));
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= tol * (scale + std::fabs(want[i])))) {
      ADD_FAILURE() << what << "[" << i << "]: " << got[i] << " vs Keras " << want[i];
      return;
    }
}

// Fully masked rows (a whole sample by its value mask, leading rows by causal + value mask, across
// several 32 x 64 blocks): the fast kernel and the reference both give Keras' uniform row forward
// and Keras' autodiff backward, which is NOT zero for q, k and the scalars.
TEST(AttentionKernel, FullyMaskedRowsFollowKerasForwardAndAutodiff) {
  struct Spec {
    int64_t batch, tq, tv, d, dv;
    ScoreMode mode;
    bool causal, qmask;
    float dropout;
    int64_t masked_prefix;  // value mask 0 on keys [0, masked_prefix) of every sample
    const char* name;
  };
  const Spec specs[] = {
      {2, 3, 5, 4, 3, ScoreMode::kDot, false, false, 0.0f, 0, "sample 1 fully masked, dot"},
      {2, 3, 5, 4, 3, ScoreMode::kConcat, false, true, 0.0f, 0, "sample 1 fully masked, concat, query mask"},
      {2, 70, 130, 3, 5, ScoreMode::kDot, true, true, 0.0f, 40, "causal rows 0..39 fully masked, blocks"},
      {2, 70, 130, 3, 5, ScoreMode::kConcat, true, false, 0.0f, 40, "causal rows 0..39 fully masked, concat"},
      {1, 70, 130, 16, 5, ScoreMode::kDot, true, true, 0.3f, 70, "causal rows 0..69 fully masked, dropout"},
      {2, 33, 200, 2, 2, ScoreMode::kDot, false, false, 0.0f, 200, "every key masked, 4 column blocks"},
  };
  uint32_t seed = 500;
  for (const Spec& sp : specs) {
    SCOPED_TRACE(sp.name);
    AttentionConfig cfg;
    cfg.batch = sp.batch;
    cfg.tq = sp.tq;
    cfg.tv = sp.tv;
    cfg.d = sp.d;
    cfg.dv = sp.dv;
    cfg.mode = sp.mode;
    cfg.scale = 1.3f;
    cfg.concat_weight = 0.8f;
    cfg.causal = sp.causal;
    cfg.dropout = sp.dropout;
    cfg.dropout_seed = 3;
    cfg.sample_offset = 5;
    std::mt19937 rng(seed++);
    const Vec q = random_vec(rng, cfg.batch * cfg.tq * cfg.d, 0.0, false);
    const Vec k = random_vec(rng, cfg.batch * cfg.tv * cfg.d, 0.0, false);
    const Vec v = random_vec(rng, cfg.batch * cfg.tv * cfg.dv, 0.0, false);
    const Vec dout = random_vec(rng, cfg.batch * cfg.tq * cfg.dv, 0.0, false);
    std::vector<uint8_t> vmask(cfg.batch * cfg.tv), qmask(cfg.batch * cfg.tq);
    std::bernoulli_distribution keep(0.8);
    for (int64_t b = 0; b < cfg.batch; ++b)
      for (int64_t j = 0; j < cfg.tv; ++j) vmask[b * cfg.tv + j] = j >= sp.masked_prefix && keep(rng);
    if (sp.masked_prefix == 0) std::fill(vmask.begin() + cfg.tv, vmask.begin() + 2 * cfg.tv, 0);  // sample 1
    for (auto& m : qmask) m = keep(rng);
    cfg.value_mask = vmask.data();
    cfg.query_mask = sp.qmask ? qmask.data() : nullptr;
    const KerasResult want = keras_attention(cfg, q, k, v, dout);

    // The oracle's fully masked rows do carry a q gradient (else this test could not tell).
    double flat_dq = 0.0;
    for (int64_t b = 0; b < cfg.batch; ++b)
      for (int64_t i = 0; i < cfg.tq; ++i) {
        bool all = true;
        for (int64_t j = 0; j < cfg.tv; ++j) all = all && (vmask[b * cfg.tv + j] == 0 || (cfg.causal && j > i));
        const bool kept = cfg.query_mask == nullptr || qmask[b * cfg.tq + i] != 0;
        if (all && kept)
          for (int64_t f = 0; f < cfg.d; ++f) flat_dq += std::fabs(want.dq[(b * cfg.tq + i) * cfg.d + f]);
      }
    EXPECT_GT(flat_dq, 1e-3) << "no fully masked row with a gradient in this case";

    Vec out(want.out.size()), w(want.w.size()), saved(cfg.batch * attention_saved_floats(cfg)),
        scratch(attention_scratch_floats(cfg));
    Vec dq(q.size()), dk(k.size()), dv(v.size());
    float ds = 0.0f, dc = 0.0f;
    attention_forward(cfg, q.data(), k.data(), v.data(), out.data(), saved.data(), w.data(), scratch.data());
    attention_backward(cfg, q.data(), k.data(), v.data(), out.data(), dout.data(), saved.data(), dq.data(), dk.data(),
                       dv.data(), &ds, &dc, scratch.data());
    expect_matches_keras(out, want.out, 1e-5, "fast out");
    expect_matches_keras(w, want.w, 1e-5, "fast weights");
    expect_matches_keras(dq, want.dq, 1e-4, "fast dq");
    expect_matches_keras(dk, want.dk, 1e-4, "fast dk");
    expect_matches_keras(dv, want.dv, 1e-4, "fast dv");
    EXPECT_NEAR(ds, want.dscale, 1e-4 * (1.0 + std::fabs(want.dscale))) << "fast dscale";
    if (sp.mode == ScoreMode::kConcat) {
      EXPECT_NEAR(dc, want.dcw, 1e-4 * (1.0 + std::fabs(want.dcw))) << "fast dcw";
    }

    Vec out_r(out.size()), w_r(w.size()), dq_r(q.size()), dk_r(k.size()), dv_r(v.size());
    float ds_r = 0.0f, dc_r = 0.0f;
    attention_forward_reference(cfg, q.data(), k.data(), v.data(), out_r.data(), w_r.data());
    attention_backward_reference(cfg, q.data(), k.data(), v.data(), dout.data(), dq_r.data(), dk_r.data(), dv_r.data(),
                                 &ds_r, &dc_r);
    expect_matches_keras(out_r, want.out, 1e-6, "reference out");
    expect_matches_keras(w_r, want.w, 1e-6, "reference weights");
    expect_matches_keras(dq_r, want.dq, 1e-5, "reference dq");
    expect_matches_keras(dk_r, want.dk, 1e-5, "reference dk");
    expect_matches_keras(dv_r, want.dv, 1e-5, "reference dv");
    EXPECT_NEAR(ds_r, want.dscale, 1e-5 * (1.0 + std::fabs(want.dscale))) << "reference dscale";
    if (sp.mode == ScoreMode::kConcat) {
      EXPECT_NEAR(dc_r, want.dcw, 1e-5 * (1.0 + std::fabs(want.dcw))) << "reference dcw";
    }
  }
}

TEST(AttentionKernel, DropoutKeepsAboutOneMinusRateAndRescales) {
  AttentionConfig cfg;
  cfg.tq = 64;
  cfg.tv = 64;
  cfg.dropout = 0.25f;
  cfg.dropout_seed = 5;
  std::mt19937 rng(4);
  const Vec x = random_vec(rng, 64, 0.0, false);
  Vec out(64), w(64 * 64), w_nodrop(64 * 64), saved(attention_saved_floats(cfg)), scratch(attention_scratch_floats(cfg));
  attention_forward(cfg, x.data(), x.data(), x.data(), out.data(), saved.data(), w.data(), scratch.data());
  AttentionConfig plain = cfg;
  plain.dropout = 0.0f;
  attention_forward_reference(plain, x.data(), x.data(), x.data(), out.data(), w_nodrop.data());
  int kept = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    if (w[i] != 0.0f) {
      ++kept;
      EXPECT_NEAR(w[i], w_nodrop[i] / 0.75f, 1e-6);
    }
  }
  EXPECT_NEAR(kept / 4096.0, 0.75, 0.03);
  EXPECT_NE(dropout_factor(0.25f, 5, 0, 1, 2), dropout_factor(0.25f, 5, 0, 2, 1) + 1.0f);  // callable, deterministic
}

// ---------------------------------------------------------------- finite differences

// Double-precision copy of the formula: loss = sum(out * dout). Masked scores use S - 1e9
// (same as float for partially masked rows: those terms are 0 either way).
double loss_double(const AttentionConfig& cfg, const std::vector<double>& q, const std::vector<double>& k,
                   const std::vector<double>& v, double scale, double cw, const Vec& dout) {
  double loss = 0.0;
  for (int64_t b = 0; b < cfg.batch; ++b)
    for (int64_t i = 0; i < cfg.tq; ++i) {
      if (cfg.query_mask != nullptr && cfg.query_mask[b * cfg.tq + i] == 0) continue;
      std::vector<double> s(cfg.tv);
      double m = -1e300;
      for (int64_t j = 0; j < cfg.tv; ++j) {
        double acc = 0.0;
        for (int64_t f = 0; f < cfg.d; ++f) {
          const double a = q[(b * cfg.tq + i) * cfg.d + f], c = k[(b * cfg.tv + j) * cfg.d + f];
          acc += cfg.mode == ScoreMode::kDot ? a * c : std::tanh(scale * (a + c));
        }
        s[j] = cfg.mode == ScoreMode::kDot ? acc * scale : acc * cw;
        const bool masked = (cfg.value_mask != nullptr && cfg.value_mask[b * cfg.tv + j] == 0) || (cfg.causal && j > i);
        if (masked) s[j] -= 1e9;
        m = std::max(m, s[j]);
      }
      double l = 0.0;
      for (auto& x : s) l += (x = std::exp(x - m));
      for (int64_t j = 0; j < cfg.tv; ++j) {
        const double w = s[j] / l * dropout_factor(cfg.dropout, cfg.dropout_seed, cfg.sample_offset + b, i, j);
        for (int64_t e = 0; e < cfg.dv; ++e)
          loss += w * v[(b * cfg.tv + j) * cfg.dv + e] * dout[(b * cfg.tq + i) * cfg.dv + e];
      }
    }
  return loss;
}

void fd_check(AttentionConfig cfg, uint32_t seed) {
  SCOPED_TRACE("fd seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  const Vec q = random_vec(rng, cfg.batch * cfg.tq * cfg.d, 0.0, false);
  const Vec k = random_vec(rng, cfg.batch * cfg.tv * cfg.d, 0.0, false);
  const Vec v = random_vec(rng, cfg.batch * cfg.tv * cfg.dv, 0.0, false);
  const Vec dout = random_vec(rng, cfg.batch * cfg.tq * cfg.dv, 0.0, false);
  Vec dq(q.size()), dk(k.size()), dv(v.size());
  float ds = 0, dc = 0;
  attention_backward_reference(cfg, q.data(), k.data(), v.data(), dout.data(), dq.data(), dk.data(), dv.data(), &ds, &dc);
  std::vector<double> qd(q.begin(), q.end()), kd(k.begin(), k.end()), vd(v.begin(), v.end());
  const double h = 1e-6;
  const auto f = [&](double sc, double cw) { return loss_double(cfg, qd, kd, vd, sc, cw, dout); };
  const auto check = [&](std::vector<double>& x, const Vec& g, const char* what) {
    for (size_t i = 0; i < x.size(); ++i) {
      const double x0 = x[i];
      x[i] = x0 + h;
      const double lp = f(cfg.scale, cfg.concat_weight);
      x[i] = x0 - h;
      const double lm = f(cfg.scale, cfg.concat_weight);
      x[i] = x0;
      EXPECT_NEAR(g[i], (lp - lm) / (2 * h), 1e-4 * (1.0 + std::fabs(g[i]))) << what << "[" << i << "]";
    }
  };
  check(qd, dq, "dq");
  check(kd, dk, "dk");
  check(vd, dv, "dv");
  const double s0 = cfg.scale, c0 = cfg.concat_weight;
  EXPECT_NEAR(ds, (f(s0 + h, c0) - f(s0 - h, c0)) / (2 * h), 1e-4 * (1.0 + std::fabs(ds))) << "dscale";
  if (cfg.mode == ScoreMode::kConcat) {
    EXPECT_NEAR(dc, (f(s0, c0 + h) - f(s0, c0 - h)) / (2 * h), 1e-4 * (1.0 + std::fabs(dc))) << "dconcat";
  }
}

TEST(AttentionReference, MatchesFiniteDifferences) {
  AttentionConfig cfg;
  cfg.batch = 2;
  cfg.tq = 3;
  cfg.tv = 4;
  cfg.d = 2;
  cfg.dv = 3;
  cfg.scale = 0.8f;
  fd_check(cfg, 1);
  cfg.mode = ScoreMode::kConcat;
  cfg.concat_weight = 1.3f;
  fd_check(cfg, 2);
  const uint8_t qm[] = {1, 0, 1, 1, 1, 1}, vm[] = {1, 1, 0, 1, 1, 0, 1, 1};  // key 0 kept: no fully masked causal row
  cfg.query_mask = qm;
  cfg.value_mask = vm;
  cfg.causal = true;
  fd_check(cfg, 3);
  cfg.mode = ScoreMode::kDot;
  cfg.dropout = 0.4f;
  cfg.dropout_seed = 17;
  fd_check(cfg, 4);
}

}  // namespace
}  // namespace attn::kernels
