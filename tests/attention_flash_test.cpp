// Edge cases of the flash attention kernel's block products (register tiles of 6 rows x 4
// vectors with 32 vector registers, x 2 otherwise, with 1..5-row remainders, 2-vector, 1-vector
// and scalar column strips, outputs narrower than a vector, transposed-A products for dV and dK,
// blocks whose live width is less than the block), on every SIMD target the CPU runs:
// the fast kernel against the scalar reference at lengths around the block size and feature
// sizes around multiples of the vector width, with masks, causal, dropout and dv != d.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention.hpp"
#include "simd_targets.hpp"

namespace attn::kernels {
namespace {

using Vec = std::vector<float>;

Vec uniform(std::mt19937& rng, int64_t n) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Vec x(static_cast<size_t>(n));
  for (auto& e : x) e = u(rng);
  return x;
}

// |got - want| <= tol * (max |want| + |want|) elementwise, first failure reported. max |want| is
// floored at 1e-2: a gradient that is exactly 0 in the reference (one key: softmax is flat) comes
// out as float rounding (up to ~2e-7 at d = 65) in the fast kernel.
void expect_close(const Vec& got, const Vec& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 1e-2;
  for (float w : want) scale = std::max(scale, static_cast<double>(std::fabs(w)));
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(err <= tol * (scale + std::fabs(want[i])))) {
      ADD_FAILURE() << what << "[" << i << "] fast " << got[i] << " reference " << want[i];
      return;
    }
  }
}

struct Opts {
  bool qmask = false, vmask = false, causal = false, dropout = false;
};

void check(int64_t batch, int64_t tq, int64_t tv, int64_t d, int64_t dv, Opts o, uint32_t seed) {
  SCOPED_TRACE("tq " + std::to_string(tq) + " tv " + std::to_string(tv) + " d " + std::to_string(d) + " dv " +
               std::to_string(dv) + (o.qmask ? " qmask" : "") + (o.vmask ? " vmask" : "") +
               (o.causal ? " causal" : "") + (o.dropout ? " dropout" : ""));
  std::mt19937 rng(seed);
  AttentionConfig cfg;
  cfg.batch = batch;
  cfg.tq = tq;
  cfg.tv = tv;
  cfg.d = d;
  cfg.dv = dv;
  cfg.scale = 0.6f;
  cfg.causal = o.causal;
  std::vector<uint8_t> qm(static_cast<size_t>(batch * tq)), vm(static_cast<size_t>(batch * tv));
  std::bernoulli_distribution keep(0.75);
  for (auto& m : qm) m = keep(rng) ? 1 : 0;
  for (auto& m : vm) m = keep(rng) ? 1 : 0;
  if (o.qmask) cfg.query_mask = qm.data();
  if (o.vmask) cfg.value_mask = vm.data();
  if (o.dropout) {
    cfg.dropout = 0.25f;
    cfg.dropout_seed = 5;
    cfg.sample_offset = 3;
  }
  const Vec q = uniform(rng, batch * tq * d), k = uniform(rng, batch * tv * d), v = uniform(rng, batch * tv * dv);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const int64_t no = batch * tq * dv;
  Vec out_ref(no), out(no, nan);
  attention_forward_reference(cfg, q.data(), k.data(), v.data(), out_ref.data(), nullptr);
  // Poisoned saved and scratch (the kernel must write what it reads), with a guard past the end
  // of scratch that must stay untouched.
  constexpr int64_t kGuard = 256;
  const int64_t ns = attention_scratch_floats(cfg);
  Vec saved(batch * attention_saved_floats(cfg), nan), scratch(ns + kGuard, nan);
  std::fill(scratch.begin() + ns, scratch.end(), 12345.0f);
  attention_forward(cfg, q.data(), k.data(), v.data(), out.data(), saved.data(), nullptr, scratch.data());
  expect_close(out, out_ref, 2e-5, "out");

  const Vec dout = uniform(rng, no);
  Vec dq_r = uniform(rng, batch * tq * d), dk_r = uniform(rng, batch * tv * d), dv_r = uniform(rng, batch * tv * dv);
  Vec dq = dq_r, dk = dk_r, dvv = dv_r;  // ADD semantics: start from the same nonzero values
  float ds_r = 0.5f, ds = 0.5f;
  attention_backward_reference(cfg, q.data(), k.data(), v.data(), dout.data(), dq_r.data(), dk_r.data(), dv_r.data(),
                               &ds_r, nullptr);
  attention_backward(cfg, q.data(), k.data(), v.data(), out.data(), dout.data(), saved.data(), dq.data(), dk.data(),
                     dvv.data(), &ds, nullptr, scratch.data());
  expect_close(dq, dq_r, 1e-4, "dq");
  expect_close(dk, dk_r, 1e-4, "dk");
  expect_close(dvv, dv_r, 1e-4, "dv");
  const double mag = std::sqrt(static_cast<double>(batch * tq));
  EXPECT_NEAR(ds, ds_r, 1e-4 * (mag + std::fabs(ds_r))) << "dscale";
  for (int64_t i = ns; i < ns + kGuard; ++i) ASSERT_EQ(scratch[static_cast<size_t>(i)], 12345.0f) << "scratch overrun";

  // dv alone and dk alone take the same products with the other gradients absent.
  Vec dv_only(dvv.size(), 0.0f), dv_only_r(dvv.size(), 0.0f), dk_only(dk.size(), 0.0f), dk_only_r(dk.size(), 0.0f);
  attention_backward_reference(cfg, q.data(), k.data(), v.data(), dout.data(), nullptr, dk_only_r.data(),
                               dv_only_r.data(), nullptr, nullptr);
  attention_backward(cfg, q.data(), k.data(), v.data(), out.data(), dout.data(), saved.data(), nullptr, dk_only.data(),
                     dv_only.data(), nullptr, nullptr, scratch.data());
  expect_close(dk_only, dk_only_r, 1e-4, "dk only");
  expect_close(dv_only, dv_only_r, 1e-4, "dv only");
}

TEST(AttentionFlash, LengthsAroundBlockEdges) {
  attn::testing::on_every_simd_target([] {
    uint32_t seed = 1;
    for (int64_t t : {1, 2, 5, 7, 33, 63, 64, 65, 100, 129})
      for (int64_t d : {8, 64}) check(2, t, t, d, d, {}, seed++);
    check(1, 785, 785, 64, 64, {}, seed++);
    check(1, 785, 7, 24, 8, {}, seed++);
    check(1, 7, 785, 8, 24, {}, seed++);
  });
}

TEST(AttentionFlash, FeatureSizesAroundVectorWidths) {
  attn::testing::on_every_simd_target([] {
    uint32_t seed = 100;
    // 48 and 115: 4-, 2- and 1-vector strips and a scalar tail together at 16 lanes.
    for (int64_t d : {1, 3, 7, 8, 9, 15, 16, 17, 24, 31, 33, 48, 64, 65, 72, 115})
      for (int64_t t : {7, 100}) {
        check(1, t, t + 3, d, d, {}, seed++);
        check(1, t + 3, t, d, d == 64 ? 24 : 64, {}, seed++);  // dv != d
      }
  });
}

TEST(AttentionFlash, MasksCausalDropout) {
  uint32_t seed = 200;
  const Opts opts[] = {{true, false, false, false}, {false, true, false, false}, {true, true, false, false},
                       {false, false, true, false}, {true, true, true, false},   {false, false, false, true},
                       {true, true, true, true}};
  for (const Opts& o : opts)
    for (int64_t d : {8, 24, 65})
      for (int64_t t : {1, 33, 100}) check(2, t, t, d, d == 8 ? 24 : d, o, seed++);
  check(1, 785, 785, 64, 64, {true, true, false, false}, seed++);
  check(1, 200, 200, 64, 64, {false, false, true, false}, seed++);
}

}  // namespace
}  // namespace attn::kernels
