// Adam's update with Highway (compiled once per SIMD target, chosen at run time).
// Built with -ffp-contract=off (CMakeLists.txt): a fused multiply-add would round
// differently from the scalar reference and from targets without FMA.
#include <algorithm>
#include <cmath>

#include "kernels/adam_update.hpp"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/adam_update.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace attn::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void adam_update_impl(const AdamStep& step, float* HWY_RESTRICT w, const float* HWY_RESTRICT g,
                      float* HWY_RESTRICT m, float* HWY_RESTRICT v, float* HWY_RESTRICT v_hat, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const auto alpha = hn::Set(d, step.alpha), eps = hn::Set(d, step.epsilon);
  const auto c1 = hn::Set(d, step.one_minus_beta_1), c2 = hn::Set(d, step.one_minus_beta_2);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto gi = hn::LoadU(d, g + i);
    auto mi = hn::LoadU(d, m + i);
    auto vi = hn::LoadU(d, v + i);
    mi = hn::Add(mi, hn::Mul(hn::Sub(gi, mi), c1));
    vi = hn::Add(vi, hn::Mul(hn::Sub(hn::Mul(gi, gi), vi), c2));
    hn::StoreU(mi, d, m + i);
    hn::StoreU(vi, d, v + i);
    auto denom_v = vi;
    if (v_hat) {
      denom_v = hn::Max(hn::LoadU(d, v_hat + i), vi);
      hn::StoreU(denom_v, d, v_hat + i);
    }
    const auto update = hn::Div(hn::Mul(mi, alpha), hn::Add(hn::Sqrt(denom_v), eps));
    hn::StoreU(hn::Sub(hn::LoadU(d, w + i), update), d, w + i);
  }
  // The tail with the reference's scalar operations (same rounding).
  for (; i < n; ++i) {
    m[i] += (g[i] - m[i]) * step.one_minus_beta_1;
    v[i] += (g[i] * g[i] - v[i]) * step.one_minus_beta_2;
    float denom_v = v[i];
    if (v_hat) denom_v = v_hat[i] = std::max(v_hat[i], v[i]);
    w[i] -= (m[i] * step.alpha) / (std::sqrt(denom_v) + step.epsilon);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace attn::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn::kernels {

HWY_EXPORT(adam_update_impl);

void adam_update(const AdamStep& step, float* w, const float* g, float* m, float* v, float* v_hat, int64_t n) {
  HWY_DYNAMIC_DISPATCH(adam_update_impl)(step, w, g, m, v, v_hat, n);
}

void adam_update_reference(const AdamStep& step, float* w, const float* g, float* m, float* v, float* v_hat,
                           int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    m[i] += (g[i] - m[i]) * step.one_minus_beta_1;
    v[i] += (g[i] * g[i] - v[i]) * step.one_minus_beta_2;
    float denom_v = v[i];
    if (v_hat) denom_v = v_hat[i] = std::max(v_hat[i], v[i]);
    w[i] -= (m[i] * step.alpha) / (std::sqrt(denom_v) + step.epsilon);
  }
}

}  // namespace attn::kernels
#endif  // HWY_ONCE
