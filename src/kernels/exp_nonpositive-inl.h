// exp(x) for the attention kernels (softmax terms), as a Highway per-target inline (included from a file that
// is compiled once per SIMD target; the guard below toggles per target, Highway's -inl.h idiom).
#if defined(ATTN_KERNELS_EXP_NONPOSITIVE_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_KERNELS_EXP_NONPOSITIVE_INL_H_
#undef ATTN_KERNELS_EXP_NONPOSITIVE_INL_H_
#else
#define ATTN_KERNELS_EXP_NONPOSITIVE_INL_H_
#endif

#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace attn::kernels {
namespace HWY_NAMESPACE {

// exp(x) for x <= 1 (the arguments are scores minus their row maximum, or up to 1/2 above it).
// x = n ln2 + r with |r| <= ln2 / 2; e^r by its Taylor series to r^7 (truncation below 2e-8
// relative); 2^n built in the exponent bits. Arguments below -87 are clamped there: the term is
// then ~1e-38 instead of 0 or a denormal, negligible against a row sum that holds exp(0) = 1.
template <class D, class V>
HWY_INLINE V ExpNonPositive(D df, V x) {
  namespace hn = hwy::HWY_NAMESPACE;
  const hn::RebindToSigned<D> di;
  x = hn::Max(x, hn::Set(df, -87.0f));
  const V n = hn::Round(hn::Mul(x, hn::Set(df, 1.44269504088896341f)));
  V r = hn::MulAdd(n, hn::Set(df, -0.693145751953125f), x);     // ln2 split in a high part with
  r = hn::MulAdd(n, hn::Set(df, -1.4286068202862268e-06f), r);  // few bits, and the rest
  V p = hn::Set(df, 1.0f / 5040.0f);
  p = hn::MulAdd(p, r, hn::Set(df, 1.0f / 720.0f));
  p = hn::MulAdd(p, r, hn::Set(df, 1.0f / 120.0f));
  p = hn::MulAdd(p, r, hn::Set(df, 1.0f / 24.0f));
  p = hn::MulAdd(p, r, hn::Set(df, 1.0f / 6.0f));
  p = hn::MulAdd(p, r, hn::Set(df, 0.5f));
  p = hn::MulAdd(p, r, hn::Set(df, 1.0f));
  p = hn::MulAdd(p, r, hn::Set(df, 1.0f));
  const auto bits = hn::ShiftLeft<23>(hn::Add(hn::ConvertTo(di, n), hn::Set(di, 127)));
  return hn::Mul(p, hn::BitCast(df, bits));
}

}  // namespace HWY_NAMESPACE
}  // namespace attn::kernels
HWY_AFTER_NAMESPACE();

#endif  // ATTN_KERNELS_EXP_NONPOSITIVE_INL_H_
