// Vectorised exp-, log- and erf-based activations (Highway: one copy per SIMD target, chosen at
// run time). exp, expm1, log1p and tanh are Highway's contrib math; the normal distribution
// function behind gelu is ours (Highway has no erf), fitted by scripts/fit_gelu_tail.py.
#include "kernels/transcendental_activations.hpp"

#include <algorithm>
#include <limits>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/transcendental_activations.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace attn::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using D = hn::ScalableTag<float>;
using V = decltype(hn::Zero(D()));

constexpr double kInvSqrt2Pi = 0.39894228040143267794;  // the normal density's factor

// Upper bound on the lanes of any target: the tail goes through a buffer of this many floats.
constexpr size_t kMaxLanes = HWY_MAX_BYTES / sizeof(float);

// y[i] = rule(x[i]) a vector at a time; the last partial vector is padded with zeros in a
// buffer, so nothing is read or written past n.
template <class Rule>
HWY_INLINE void MapVectors(const float* x, float* y, int64_t n, const Rule& rule) {
  const D d;
  const auto lanes = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(rule(hn::LoadU(d, x + i)), d, y + i);
  if (i == n) return;
  alignas(64) float tail[kMaxLanes] = {};
  std::copy(x + i, x + n, tail);
  hn::Store(rule(hn::Load(d, tail)), d, tail);
  std::copy(tail, tail + (n - i), y + i);
}

// dx[i] += dy[i] * derivative(x[i]), with the same tail handling.
template <class Rule>
HWY_INLINE void AddDerivativeProducts(const float* x, const float* dy, float* dx,
                                      int64_t n, const Rule& derivative) {
  const D d;
  const auto lanes = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes)
    hn::StoreU(hn::MulAdd(hn::LoadU(d, dy + i), derivative(hn::LoadU(d, x + i)), hn::LoadU(d, dx + i)), d, dx + i);
  if (i == n) return;
  alignas(64) float tail_x[kMaxLanes] = {}, tail_dy[kMaxLanes] = {}, tail_dx[kMaxLanes] = {};
  std::copy(x + i, x + n, tail_x);
  std::copy(dy + i, dy + n, tail_dy);
  std::copy(dx + i, dx + n, tail_dx);
  hn::Store(hn::MulAdd(hn::Load(d, tail_dy), derivative(hn::Load(d, tail_x)), hn::Load(d, tail_dx)), d, tail_dx);
  std::copy(tail_dx, tail_dx + (n - i), dx + i);
}

// Highway's math functions may turn NaN into numbers (their range checks compare false); the
// activations must not: a diverged run has to show NaN.
HWY_INLINE V KeepNaN(V x, V result) { return hn::IfThenElse(hn::IsNaN(x), x, result); }

// The logistic function through e = exp(-|x|), which never overflows: sigmoid(x) is 1 / (1 + e)
// for x >= 0 and e / (1 + e) below, and 1 - sigmoid(x) = sigmoid(-x) the other way round (not
// 1 minus the rounded sigmoid, all rounding error from x ~ 8 on). e is kept for softplus,
// log(1 + exp(x)) = max(x, 0) + log1p(e).
struct Logistic {
  V e;
  V sigmoid;
  V complement;  // 1 - sigmoid
};
HWY_INLINE Logistic LogisticOf(V x) {
  const D d;
  const V e = hn::Exp(d, hn::Neg(hn::Abs(x)));
  const V larger = hn::Div(hn::Set(d, 1.0f), hn::Add(hn::Set(d, 1.0f), e));
  const V smaller = hn::Mul(e, larger);
  const auto negative = hn::Lt(x, hn::Zero(d));
  return {e, hn::IfThenElse(negative, smaller, larger), hn::IfThenElse(negative, larger, smaller)};
}
HWY_INLINE V SoftplusFrom(V x, V e) {
  const D d;
  return hn::Add(hn::Max(x, hn::Zero(d)), hn::Log1p(d, e));
}

// The standard normal distribution: Phi(x) and the density exp(-x^2 / 2) (without its
// 1 / sqrt(2 pi)). The upper tail Q(u) = 1 - Phi(u), u = |x|, is exp(-u^2 / 2) t P(t) with
// t = 4 / (4 + u) and P of degree 9 (relative error 1e-8 in exact arithmetic over the whole
// range); Phi(x) is Q(|x|) below 0 and 1 - Q(x) above, so neither side loses digits to
// cancellation. u^2 is carried as h + l, l the rounding error of u * u, because exp(-u^2 / 2)
// magnifies an error in u^2 by u^2 / 2 (about 100 ulp at u = 14). l comes from Dekker's exact
// product (u split in two 12-bit halves, every partial product exact) rather than an fma, so
// targets without fma (SSE4) get it exactly too.
struct Normal {
  V phi;
  V density;  // exp(-x^2 / 2)
};
HWY_INLINE Normal NormalOf(V x) {
  const D d;
  // Beyond 16, exp(-u^2 / 2) is below float's smallest subnormal; the clamp keeps h finite.
  const V u = hn::Min(hn::Abs(x), hn::Set(d, 16.0f));
  const V h = hn::Mul(u, u);
  const V u_high = hn::And(u, hn::BitCast(d, hn::Set(hn::RebindToSigned<D>(), static_cast<int32_t>(0xFFFFF000u))));
  const V u_low = hn::Sub(u, u_high);
  const V high_part = hn::Add(hn::Sub(hn::Mul(u_high, u_high), h), hn::Mul(hn::Add(u_high, u_high), u_low));
  const V l = hn::Add(high_part, hn::Mul(u_low, u_low));
  const V e = hn::Exp(d, hn::Mul(h, hn::Set(d, -0.5f)));
  const V density = hn::NegMulAdd(hn::Mul(e, hn::Set(d, 0.5f)), l, e);  // e (1 - l / 2)
  const V t = hn::Div(hn::Set(d, 4.0f), hn::Add(hn::Set(d, 4.0f), u));
  V p = hn::Set(d, 1.718990318e-02f);
  p = hn::MulAdd(p, t, hn::Set(d, -6.614414603e-02f));
  p = hn::MulAdd(p, t, hn::Set(d, 5.963523313e-02f));
  p = hn::MulAdd(p, t, hn::Set(d, 1.763650961e-02f));
  p = hn::MulAdd(p, t, hn::Set(d, 2.184056118e-02f));
  p = hn::MulAdd(p, t, hn::Set(d, 8.166565001e-02f));
  p = hn::MulAdd(p, t, hn::Set(d, 7.376163453e-02f));
  p = hn::MulAdd(p, t, hn::Set(d, 9.512887895e-02f));
  p = hn::MulAdd(p, t, hn::Set(d, 9.954041243e-02f));
  p = hn::MulAdd(p, t, hn::Set(d, 9.974536300e-02f));
  const V q = hn::Mul(density, hn::Mul(t, p));
  const V from_tail = hn::IfThenElse(hn::Lt(x, hn::Zero(d)), q, hn::Sub(hn::Set(d, 1.0f), q));
  // Near 0 the tail's few ulp of rounding would sit on top of Phi ~ 1/2; there Phi is
  // 1/2 + x R(x^2), R the Taylor series of the integral of the density, its terms
  // (-1)^n x^2n / (2^n n! (2n + 1)) / sqrt(2 pi); to n = 7, truncation below 3e-11 for |x| < 3/4.
  const V x2 = hn::Mul(x, x);
  V r = hn::Set(d, static_cast<float>(-kInvSqrt2Pi / (128.0 * 5040.0 * 15.0)));
  r = hn::MulAdd(r, x2, hn::Set(d, static_cast<float>(kInvSqrt2Pi / (64.0 * 720.0 * 13.0))));
  r = hn::MulAdd(r, x2, hn::Set(d, static_cast<float>(-kInvSqrt2Pi / (32.0 * 120.0 * 11.0))));
  r = hn::MulAdd(r, x2, hn::Set(d, static_cast<float>(kInvSqrt2Pi / (16.0 * 24.0 * 9.0))));
  r = hn::MulAdd(r, x2, hn::Set(d, static_cast<float>(-kInvSqrt2Pi / (8.0 * 6.0 * 7.0))));
  r = hn::MulAdd(r, x2, hn::Set(d, static_cast<float>(kInvSqrt2Pi / (4.0 * 2.0 * 5.0))));
  r = hn::MulAdd(r, x2, hn::Set(d, static_cast<float>(-kInvSqrt2Pi / (2.0 * 3.0))));
  r = hn::MulAdd(r, x2, hn::Set(d, static_cast<float>(kInvSqrt2Pi)));
  const V near_zero = hn::MulAdd(x, r, hn::Set(d, 0.5f));
  return {hn::IfThenElse(hn::Lt(hn::Abs(x), hn::Set(d, 0.75f)), near_zero, from_tail), density};
}

void SigmoidForward(const float* x, float* y, int64_t n) {
  MapVectors(x, y, n, [](V v) { return KeepNaN(v, LogisticOf(v).sigmoid); });
}

void TanhForward(const float* x, float* y, int64_t n) {
  MapVectors(x, y, n, [](V v) { return KeepNaN(v, hn::Tanh(D(), v)); });
}

void GeluForward(const float* x, float* y, int64_t n) {
  MapVectors(x, y, n, [](V v) { return hn::Mul(v, NormalOf(v).phi); });
}

void GeluBackward(const float* x, const float* dy, float* dx, int64_t n) {
  AddDerivativeProducts(x, dy, dx, n, [](V v) {
    const Normal normal = NormalOf(v);
    return hn::MulAdd(hn::Mul(v, hn::Set(D(), static_cast<float>(kInvSqrt2Pi))), normal.density, normal.phi);
  });
}

void EluForward(const float* x, float* y, int64_t n, float alpha, float scale) {
  MapVectors(x, y, n, [alpha, scale](V v) {
    const D d;
    const V below = hn::Mul(hn::Set(d, alpha), hn::Expm1(d, v));
    return KeepNaN(v, hn::Mul(hn::Set(d, scale), hn::IfThenElse(hn::Gt(v, hn::Zero(d)), v, below)));
  });
}

void EluBackward(const float* x, const float* dy, float* dx, int64_t n, float alpha, float scale) {
  AddDerivativeProducts(x, dy, dx, n, [alpha, scale](V v) {
    const D d;
    const V below = hn::Mul(hn::Set(d, alpha), hn::Exp(d, v));
    const V slope = hn::IfThenElse(hn::Gt(v, hn::Zero(d)), hn::Set(d, 1.0f), below);
    return KeepNaN(v, hn::Mul(hn::Set(d, scale), slope));
  });
}

void SoftplusForward(const float* x, float* y, int64_t n) {
  MapVectors(x, y, n, [](V v) { return KeepNaN(v, SoftplusFrom(v, LogisticOf(v).e)); });
}

void SoftplusBackward(const float* x, const float* dy, float* dx, int64_t n) {
  AddDerivativeProducts(x, dy, dx, n, [](V v) { return KeepNaN(v, LogisticOf(v).sigmoid); });
}

void SiluForward(const float* x, float* y, int64_t n) {
  MapVectors(x, y, n, [](V v) { return hn::Mul(v, LogisticOf(v).sigmoid); });
}

// silu'(x) = s (1 + x (1 - s)), s = sigmoid(x).
void SiluBackward(const float* x, const float* dy, float* dx, int64_t n) {
  AddDerivativeProducts(x, dy, dx, n, [](V v) {
    const D d;
    const Logistic logistic = LogisticOf(v);
    return hn::Mul(logistic.sigmoid, hn::MulAdd(v, logistic.complement, hn::Set(d, 1.0f)));
  });
}

void MishForward(const float* x, float* y, int64_t n) {
  MapVectors(x, y, n, [](V v) { return hn::Mul(v, hn::Tanh(D(), SoftplusFrom(v, LogisticOf(v).e))); });
}

// mish'(x) = t + x (1 - t^2) sigmoid(x), t = tanh(softplus(x)). 1 - t^2 is not taken from t,
// which rounds to 1 from x ~ 8 on while x (1 - t^2) is still ~1e-6: with w = exp(softplus(x)) =
// 1 + exp(x), 1 - t^2 = 4 / (w + 1 / w)^2, and exp(x) is 1 / e above 0 (inf far out: then 0).
void MishBackward(const float* x, const float* dy, float* dx, int64_t n) {
  AddDerivativeProducts(x, dy, dx, n, [](V v) {
    const D d;
    const Logistic logistic = LogisticOf(v);
    const V t = hn::Tanh(d, SoftplusFrom(v, logistic.e));
    const V one = hn::Set(d, 1.0f);
    const V exp_x = hn::IfThenElse(hn::Lt(v, hn::Zero(d)), logistic.e, hn::Div(one, logistic.e));
    const V w = hn::Add(one, exp_x);
    const V s = hn::Add(w, hn::Div(one, w));
    const V sech2 = hn::Div(hn::Set(d, 4.0f), hn::Mul(s, s));
    return KeepNaN(v, hn::MulAdd(v, hn::Mul(sech2, logistic.sigmoid), t));
  });
}

void ExpForward(const float* x, float* y, int64_t n) {
  MapVectors(x, y, n, [](V v) {
    const D d;
    // Highway's exp is valid up to 104; past float's range (88.72) the result is infinite.
    const V inf = hn::Set(d, std::numeric_limits<float>::infinity());
    return KeepNaN(v, hn::IfThenElse(hn::Gt(v, hn::Set(d, 100.0f)), inf, hn::Exp(d, v)));
  });
}

}  // namespace HWY_NAMESPACE
}  // namespace attn::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn::kernels {

HWY_EXPORT(SigmoidForward);
HWY_EXPORT(TanhForward);
HWY_EXPORT(GeluForward);
HWY_EXPORT(GeluBackward);
HWY_EXPORT(EluForward);
HWY_EXPORT(EluBackward);
HWY_EXPORT(SoftplusForward);
HWY_EXPORT(SoftplusBackward);
HWY_EXPORT(SiluForward);
HWY_EXPORT(SiluBackward);
HWY_EXPORT(MishForward);
HWY_EXPORT(MishBackward);
HWY_EXPORT(ExpForward);

void sigmoid_forward(const float* x, float* y, int64_t n) { HWY_DYNAMIC_DISPATCH(SigmoidForward)(x, y, n); }
void tanh_forward(const float* x, float* y, int64_t n) { HWY_DYNAMIC_DISPATCH(TanhForward)(x, y, n); }
void gelu_forward(const float* x, float* y, int64_t n) { HWY_DYNAMIC_DISPATCH(GeluForward)(x, y, n); }
void gelu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  HWY_DYNAMIC_DISPATCH(GeluBackward)(x, dy, dx, n);
}
void elu_forward(const float* x, float* y, int64_t n, float alpha, float scale) {
  HWY_DYNAMIC_DISPATCH(EluForward)(x, y, n, alpha, scale);
}
void elu_backward(const float* x, const float* dy, float* dx, int64_t n, float alpha, float scale) {
  HWY_DYNAMIC_DISPATCH(EluBackward)(x, dy, dx, n, alpha, scale);
}
void softplus_forward(const float* x, float* y, int64_t n) { HWY_DYNAMIC_DISPATCH(SoftplusForward)(x, y, n); }
void softplus_backward(const float* x, const float* dy, float* dx, int64_t n) {
  HWY_DYNAMIC_DISPATCH(SoftplusBackward)(x, dy, dx, n);
}
void silu_forward(const float* x, float* y, int64_t n) { HWY_DYNAMIC_DISPATCH(SiluForward)(x, y, n); }
void silu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  HWY_DYNAMIC_DISPATCH(SiluBackward)(x, dy, dx, n);
}
void mish_forward(const float* x, float* y, int64_t n) { HWY_DYNAMIC_DISPATCH(MishForward)(x, y, n); }
void mish_backward(const float* x, const float* dy, float* dx, int64_t n) {
  HWY_DYNAMIC_DISPATCH(MishBackward)(x, dy, dx, n);
}
void exp_forward(const float* x, float* y, int64_t n) { HWY_DYNAMIC_DISPATCH(ExpForward)(x, y, n); }

}  // namespace attn::kernels
#endif  // HWY_ONCE
