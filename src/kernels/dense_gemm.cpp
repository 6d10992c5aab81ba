// Register-blocked small-m products for Dense with Highway (one copy per SIMD target, chosen at
// run time). Column tails use narrower vectors (4 lanes, then 1 lane) rather than masked loads,
// so no target reads past the end of a row.
#include "kernels/dense_gemm.hpp"

#include <algorithm>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/dense_gemm.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace attn::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Rows per register tile: 4 rows x 3 vectors = 12 accumulators, 3 W vectors and a broadcast
// fit the 16 AVX2 registers.
constexpr int kRows = 4;
// The forward's row tiles go up to 8 rows where there are 32 vector registers (AVX-512: 24
// accumulators): each tile streams W once, so fewer, taller tiles do more multiply-adds per W
// load (a 10-row slice takes 2 passes over W instead of 3).
constexpr int kForwardRows = HWY_MAX_BYTES >= 64 ? 8 : kRows;

// ---- forward: y[R, NV*L] = init + x[R, kc] W[kc, NV*L], init = y when accumulating, else bias
// (or 0). x at (i0, p0) with row stride k; w at (p0, j0); bias, y at column j0.
template <int R, int NV, class D>
HWY_INLINE void ForwardTile(D d, const float* HWY_RESTRICT x, const float* HWY_RESTRICT w,
                            const float* HWY_RESTRICT bias, float* HWY_RESTRICT y, bool accumulate, int64_t kc,
                            int64_t k, int64_t n) {
  using V = decltype(hn::Zero(d));
  const size_t L = hn::Lanes(d);
  V acc[R][NV];
  for (int v = 0; v < NV; ++v) {
    const V b = bias ? hn::LoadU(d, bias + v * L) : hn::Zero(d);
    for (int r = 0; r < R; ++r) acc[r][v] = accumulate ? hn::LoadU(d, y + r * n + v * L) : b;
  }
  for (int64_t p = 0; p < kc; ++p) {
    const float* HWY_RESTRICT wp = w + p * n;
    V wv[NV];
    for (int v = 0; v < NV; ++v) wv[v] = hn::LoadU(d, wp + v * L);
    for (int r = 0; r < R; ++r) {
      const V xv = hn::Set(d, x[r * k + p]);
      for (int v = 0; v < NV; ++v) acc[r][v] = hn::MulAdd(xv, wv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) hn::StoreU(acc[r][v], d, y + r * n + v * L);
}

template <int R>
HWY_NOINLINE void ForwardRows(const float* HWY_RESTRICT x, const float* HWY_RESTRICT w,
                              const float* HWY_RESTRICT bias, float* HWY_RESTRICT y, bool accumulate, int64_t kc,
                              int64_t k, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  auto b = [bias, accumulate](int64_t j) { return bias && !accumulate ? bias + j : nullptr; };
  int64_t j = 0;
  for (; j + 3 * L <= n; j += 3 * L) ForwardTile<R, 3>(d, x, w + j, b(j), y + j, accumulate, kc, k, n);
  for (; j + L <= n; j += L) ForwardTile<R, 1>(d, x, w + j, b(j), y + j, accumulate, kc, k, n);
}

// The last n mod L columns (fewer than one vector): 4-lane, then 1-lane tiles of R rows. Such a
// tile has one accumulator per row, so it takes more rows than the full-width tiles (up to
// kTailRows): with 4 chains of dependent multiply-adds the FMA units would wait on latency, and
// the 4 columns left of Dense(100) cost a sixth of the product that way.
template <int R>
HWY_NOINLINE void ForwardTailCols(const float* HWY_RESTRICT x, const float* HWY_RESTRICT w,
                                  const float* HWY_RESTRICT bias, float* HWY_RESTRICT y, bool accumulate, int64_t kc,
                                  int64_t k, int64_t n, int64_t j) {
  const hn::CappedTag<float, 4> d4;
  const hn::CappedTag<float, 1> d1;
  const int64_t L = static_cast<int64_t>(hn::Lanes(hn::ScalableTag<float>()));
  auto b = [bias, accumulate](int64_t c) { return bias && !accumulate ? bias + c : nullptr; };
  for (; L > 4 && j + 4 <= n; j += 4) ForwardTile<R, 1>(d4, x, w + j, b(j), y + j, accumulate, kc, k, n);
  for (; j < n; ++j) ForwardTile<R, 1>(d1, x, w + j, b(j), y + j, accumulate, kc, k, n);
}

// W is walked in chunks of kChunk rows so that a chunk stays in L1 across all row blocks; the
// partial sums go through y. The order of summation depends only on the shapes.
constexpr int64_t kChunk = 64;

// Rows per tile for column tails narrower than a vector (one accumulator per row).
constexpr int kTailRows = 8;
// The next tail tile's rows when `left` remain: tiles of kTailRows, the last two evened out.
int64_t tail_rows(int64_t left) {
  return left <= kTailRows ? left : left < 2 * kTailRows ? (left + 1) / 2 : kTailRows;
}

using ForwardTailFn = void (*)(const float*, const float*, const float*, float*, bool, int64_t, int64_t, int64_t,
                               int64_t);
constexpr ForwardTailFn kForwardTail[kTailRows + 1] = {
    nullptr,           &ForwardTailCols<1>, &ForwardTailCols<2>, &ForwardTailCols<3>, &ForwardTailCols<4>,
    &ForwardTailCols<5>, &ForwardTailCols<6>, &ForwardTailCols<7>, &ForwardTailCols<8>};

void DenseForward(const float* HWY_RESTRICT x, const float* HWY_RESTRICT w, const float* HWY_RESTRICT bias,
                  float* HWY_RESTRICT y, int64_t m, int64_t k, int64_t n, int64_t ldx) {
  const int64_t L = static_cast<int64_t>(hn::Lanes(hn::ScalableTag<float>()));
  int64_t p = 0;
  do {  // at least once, so that k == 0 still writes the bias
    const int64_t kc = std::min(kChunk, k - p);
    const bool accumulate = p > 0;
    // As few row tiles as kForwardRows allows, of even heights (10 rows: 5 + 5 rather than
    // 8 + 2): each tile streams W once, and a short tile does few multiply-adds per W load.
    const int64_t tiles = (m + kForwardRows - 1) / kForwardRows;
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t i = m * t / tiles, rows = m * (t + 1) / tiles - i;
      const float* xi = x + i * ldx + p;
      const float* wp = w + p * n;
      float* yi = y + i * n;
      switch (rows) {
        case 8: ForwardRows<8>(xi, wp, bias, yi, accumulate, kc, ldx, n); break;
        case 7: ForwardRows<7>(xi, wp, bias, yi, accumulate, kc, ldx, n); break;
        case 6: ForwardRows<6>(xi, wp, bias, yi, accumulate, kc, ldx, n); break;
        case 5: ForwardRows<5>(xi, wp, bias, yi, accumulate, kc, ldx, n); break;
        case 4: ForwardRows<4>(xi, wp, bias, yi, accumulate, kc, ldx, n); break;
        case 3: ForwardRows<3>(xi, wp, bias, yi, accumulate, kc, ldx, n); break;
        case 2: ForwardRows<2>(xi, wp, bias, yi, accumulate, kc, ldx, n); break;
        default: ForwardRows<1>(xi, wp, bias, yi, accumulate, kc, ldx, n); break;
      }
    }
    const int64_t tail = n / L * L;
    for (int64_t i = 0, rows = 0; tail < n && i < m; i += rows) {
      rows = tail_rows(m - i);
      kForwardTail[rows](x + i * ldx + p, w + p * n, bias, y + i * n, accumulate, kc, ldx, n, tail);
    }
    p += kc;
  } while (p < k);
}

// ---- weight gradient: dW[R, NV*L] += x[m, R]^T dz[m, NV*L] (= with overwrite: the same sums
// from +0, so the same bits as adding to a cleared dW). x at column p0; dz at column j0; dw at
// (p0, j0).
template <int R, int NV, class D>
HWY_INLINE void GradWeightTile(D d, const float* HWY_RESTRICT x, const float* HWY_RESTRICT dz,
                               float* HWY_RESTRICT dw, int64_t m, int64_t k, int64_t n, bool overwrite) {
  using V = decltype(hn::Zero(d));
  const size_t L = hn::Lanes(d);
  V acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = overwrite ? hn::Zero(d) : hn::LoadU(d, dw + r * n + v * L);
  for (int64_t i = 0; i < m; ++i) {
    V g[NV];
    for (int v = 0; v < NV; ++v) g[v] = hn::LoadU(d, dz + i * n + v * L);
    for (int r = 0; r < R; ++r) {
      const V xv = hn::Set(d, x[i * k + r]);
      for (int v = 0; v < NV; ++v) acc[r][v] = hn::MulAdd(xv, g[v], acc[r][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) hn::StoreU(acc[r][v], d, dw + r * n + v * L);
}

template <int R>
HWY_NOINLINE void GradWeightRows(const float* HWY_RESTRICT x, const float* HWY_RESTRICT dz,
                                 float* HWY_RESTRICT dw, int64_t m, int64_t k, int64_t n, bool overwrite) {
  const hn::ScalableTag<float> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  int64_t j = 0;
  for (; j + 3 * L <= n; j += 3 * L) GradWeightTile<R, 3>(d, x, dz + j, dw + j, m, k, n, overwrite);
  for (; j + L <= n; j += L) GradWeightTile<R, 1>(d, x, dz + j, dw + j, m, k, n, overwrite);
}

// The last n mod L columns, as ForwardTailCols: up to kTailRows rows of dW per tile.
template <int R>
HWY_NOINLINE void GradWeightTailCols(const float* HWY_RESTRICT x, const float* HWY_RESTRICT dz,
                                     float* HWY_RESTRICT dw, int64_t m, int64_t k, int64_t n, int64_t j,
                                     bool overwrite) {
  const hn::CappedTag<float, 4> d4;
  const hn::CappedTag<float, 1> d1;
  const int64_t L = static_cast<int64_t>(hn::Lanes(hn::ScalableTag<float>()));
  for (; L > 4 && j + 4 <= n; j += 4) GradWeightTile<R, 1>(d4, x, dz + j, dw + j, m, k, n, overwrite);
  for (; j < n; ++j) GradWeightTile<R, 1>(d1, x, dz + j, dw + j, m, k, n, overwrite);
}

using GradWeightTailFn = void (*)(const float*, const float*, float*, int64_t, int64_t, int64_t, int64_t, bool);
constexpr GradWeightTailFn kGradWeightTail[kTailRows + 1] = {
    nullptr,
    &GradWeightTailCols<1>,
    &GradWeightTailCols<2>,
    &GradWeightTailCols<3>,
    &GradWeightTailCols<4>,
    &GradWeightTailCols<5>,
    &GradWeightTailCols<6>,
    &GradWeightTailCols<7>,
    &GradWeightTailCols<8>};

void DenseGradWeight(const float* HWY_RESTRICT x, const float* HWY_RESTRICT dz, float* HWY_RESTRICT dw, int64_t m,
                     int64_t k, int64_t n, int64_t ldx, bool overwrite) {
  for (int64_t p = 0; p < k; p += kRows) {
    switch (std::min<int64_t>(kRows, k - p)) {
      case 4: GradWeightRows<4>(x + p, dz, dw + p * n, m, ldx, n, overwrite); break;
      case 3: GradWeightRows<3>(x + p, dz, dw + p * n, m, ldx, n, overwrite); break;
      case 2: GradWeightRows<2>(x + p, dz, dw + p * n, m, ldx, n, overwrite); break;
      default: GradWeightRows<1>(x + p, dz, dw + p * n, m, ldx, n, overwrite); break;
    }
  }
  const int64_t L = static_cast<int64_t>(hn::Lanes(hn::ScalableTag<float>()));
  const int64_t tail = n / L * L;
  for (int64_t p = 0, rows = 0; tail < n && p < k; p += rows) {
    rows = tail_rows(k - p);
    kGradWeightTail[rows](x + p, dz, dw + p * n, m, ldx, n, tail, overwrite);
  }
}

// ---- input gradient: dx[R, C] += dz[R, n] W[C, n]^T, dot products along n. dz at row i0;
// w at row p0; dx at (i0, p0). With overwrite, dx = 0 + the same sums (the bits of adding to a
// cleared dx, -0 included, without reading dx).
template <int R, int C, class D>
HWY_INLINE int64_t GradInputSpan(D d, const float* HWY_RESTRICT dz, const float* HWY_RESTRICT w,
                                 float (&s)[R][C], int64_t j, int64_t n) {
  using V = decltype(hn::Zero(d));
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  if (j + L > n) return j;
  V acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = hn::Zero(d);
  for (; j + L <= n; j += L) {
    V wv[C];
    for (int c = 0; c < C; ++c) wv[c] = hn::LoadU(d, w + c * n + j);
    for (int r = 0; r < R; ++r) {
      const V g = hn::LoadU(d, dz + r * n + j);
      for (int c = 0; c < C; ++c) acc[r][c] = hn::MulAdd(g, wv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) s[r][c] += hn::GetLane(hn::SumOfLanes(d, acc[r][c]));
  return j;
}

template <int R, int C>
HWY_INLINE void GradInputTile(const float* HWY_RESTRICT dz, const float* HWY_RESTRICT w, float* HWY_RESTRICT dx,
                              int64_t k, int64_t n, bool overwrite) {
  const hn::ScalableTag<float> d;
  const hn::CappedTag<float, 4> d4;
  float s[R][C] = {};
  int64_t j = GradInputSpan<R, C>(d, dz, w, s, 0, n);
  if (hn::Lanes(d) > 4) j = GradInputSpan<R, C>(d4, dz, w, s, j, n);
  for (; j < n; ++j)
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < C; ++c) s[r][c] += dz[r * n + j] * w[c * n + j];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) dx[r * k + c] = (overwrite ? 0.0f : dx[r * k + c]) + s[r][c];
}

constexpr int kCols = 3;  // W rows per tile in the input gradient: 4 x 3 accumulators

template <int C>
HWY_NOINLINE void GradInputCols(const float* HWY_RESTRICT dz, const float* HWY_RESTRICT w, float* HWY_RESTRICT dx,
                                int64_t m, int64_t k, int64_t n, bool overwrite) {
  // The W rows stay in L1 across all row blocks of dz.
  for (int64_t i = 0; i < m; i += kRows) {
    const float* dzi = dz + i * n;
    float* dxi = dx + i * k;
    switch (std::min<int64_t>(kRows, m - i)) {
      case 4: GradInputTile<4, C>(dzi, w, dxi, k, n, overwrite); break;
      case 3: GradInputTile<3, C>(dzi, w, dxi, k, n, overwrite); break;
      case 2: GradInputTile<2, C>(dzi, w, dxi, k, n, overwrite); break;
      default: GradInputTile<1, C>(dzi, w, dxi, k, n, overwrite); break;
    }
  }
}

#if HWY_TARGET != HWY_SCALAR && !HWY_HAVE_SCALABLE
// Four W rows at a time: the 4 dot products of one dz row are folded to 4 lanes, then
// transposed and summed into one 4-lane vector that adds to dx[r, p..p+3] directly, which costs
// far fewer shuffles than reducing each accumulator on its own.
using D4 = hn::CappedTag<float, 4>;

template <class D>
HWY_INLINE decltype(hn::Zero(D4())) FoldTo4(D d, decltype(hn::Zero(d)) v) {
  if constexpr (hn::MaxLanes(D()) <= 4) {
    return v;
  } else {
    const hn::Half<D> dh;
    return FoldTo4(dh, hn::Add(hn::LowerHalf(dh, v), hn::UpperHalf(dh, v)));
  }
}

// [sum(a), sum(b), sum(c), sum(e)] for 4-lane vectors.
template <class V4>
HWY_INLINE V4 SumEach4(V4 a, V4 b, V4 c, V4 e) {
  const D4 d4;
  const V4 ab = hn::Add(hn::InterleaveLower(d4, a, b), hn::InterleaveUpper(d4, a, b));  // a02 b02 a13 b13
  const V4 ce = hn::Add(hn::InterleaveLower(d4, c, e), hn::InterleaveUpper(d4, c, e));
  return hn::Add(hn::ConcatLowerLower(d4, ce, ab), hn::ConcatUpperUpper(d4, ce, ab));
}

template <int R>
HWY_INLINE void GradInputTile4(const float* HWY_RESTRICT dz, const float* HWY_RESTRICT w, float* HWY_RESTRICT dx,
                               int64_t k, int64_t n, bool overwrite) {
  const hn::ScalableTag<float> d;
  const D4 d4;
  using V4 = decltype(hn::Zero(d4));
  V4 acc4[R][4];
  int64_t j = 0;
  if constexpr (hn::MaxLanes(decltype(d)()) > 4) {
    using V = decltype(hn::Zero(d));
    const int64_t L = static_cast<int64_t>(hn::Lanes(d));
    V acc[R][4];
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < 4; ++c) acc[r][c] = hn::Zero(d);
    for (; j + L <= n; j += L) {
      V wv[4];
      for (int c = 0; c < 4; ++c) wv[c] = hn::LoadU(d, w + c * n + j);
      for (int r = 0; r < R; ++r) {
        const V g = hn::LoadU(d, dz + r * n + j);
        for (int c = 0; c < 4; ++c) acc[r][c] = hn::MulAdd(g, wv[c], acc[r][c]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < 4; ++c) acc4[r][c] = FoldTo4(d, acc[r][c]);
  } else {
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < 4; ++c) acc4[r][c] = hn::Zero(d4);
  }
  for (; j + 4 <= n; j += 4) {
    V4 wv[4];
    for (int c = 0; c < 4; ++c) wv[c] = hn::LoadU(d4, w + c * n + j);
    for (int r = 0; r < R; ++r) {
      const V4 g = hn::LoadU(d4, dz + r * n + j);
      for (int c = 0; c < 4; ++c) acc4[r][c] = hn::MulAdd(g, wv[c], acc4[r][c]);
    }
  }
  if (j < n) {  // the last 1..3 columns, zero-padded to 4 lanes on the stack
    HWY_ALIGN float wt[4][4] = {};
    HWY_ALIGN float gt[R][4] = {};
    for (int64_t t = j; t < n; ++t) {
      for (int c = 0; c < 4; ++c) wt[c][t - j] = w[c * n + t];
      for (int r = 0; r < R; ++r) gt[r][t - j] = dz[r * n + t];
    }
    for (int r = 0; r < R; ++r) {
      const V4 g = hn::Load(d4, gt[r]);
      for (int c = 0; c < 4; ++c) acc4[r][c] = hn::MulAdd(g, hn::Load(d4, wt[c]), acc4[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    const V4 sum = SumEach4(acc4[r][0], acc4[r][1], acc4[r][2], acc4[r][3]);
    hn::StoreU(hn::Add(overwrite ? hn::Zero(d4) : hn::LoadU(d4, dx + r * k), sum), d4, dx + r * k);
  }
}

// dz rows x 4 W rows per tile: 3 x 4 = 12 accumulators with 16 registers, 5 x 4 = 20 with 32
// (fewer loads per multiply-add).
constexpr int kRows4 = HWY_MAX_BYTES >= 64 ? 5 : 3;

HWY_NOINLINE void GradInputCols4(const float* HWY_RESTRICT dz, const float* HWY_RESTRICT w, float* HWY_RESTRICT dx,
                                 int64_t m, int64_t k, int64_t n, bool overwrite) {
  const int64_t tiles = (m + kRows4 - 1) / kRows4;  // of even heights, as in the forward
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t i = m * t / tiles, rows = m * (t + 1) / tiles - i;
    const float* dzi = dz + i * n;
    float* dxi = dx + i * k;
    switch (rows) {
      case 5: GradInputTile4<5>(dzi, w, dxi, k, n, overwrite); break;
      case 4: GradInputTile4<4>(dzi, w, dxi, k, n, overwrite); break;
      case 3: GradInputTile4<3>(dzi, w, dxi, k, n, overwrite); break;
      case 2: GradInputTile4<2>(dzi, w, dxi, k, n, overwrite); break;
      default: GradInputTile4<1>(dzi, w, dxi, k, n, overwrite); break;
    }
  }
}
#endif

// Narrow W (few units, like a 10-class output layer): the dot products above would be n long,
// mostly reduction overhead. Instead one vector of lanes spans L rows of W at a time, whose n
// columns are transposed into wt on the stack; each dz row then costs n broadcast FMAs for L
// outputs, 4 dz rows at a time for independent chains.
constexpr int64_t kNarrowUnits = 16;  // at most this many units take the narrow path (measured)

template <int R>
HWY_INLINE void GradInputNarrowRows(const float* HWY_RESTRICT dz, const float* HWY_RESTRICT wt, float* HWY_RESTRICT dx,
                                    int64_t n, int64_t ldx, bool overwrite) {
  const hn::ScalableTag<float> d;
  const size_t L = hn::Lanes(d);
  using V = decltype(hn::Zero(d));
  V acc[R];
  for (int r = 0; r < R; ++r) acc[r] = hn::Zero(d);
  for (int64_t j = 0; j < n; ++j) {
    const V wj = hn::Load(d, wt + j * L);
    for (int r = 0; r < R; ++r) acc[r] = hn::MulAdd(hn::Set(d, dz[r * n + j]), wj, acc[r]);
  }
  for (int r = 0; r < R; ++r)
    hn::StoreU(hn::Add(overwrite ? hn::Zero(d) : hn::LoadU(d, dx + r * ldx), acc[r]), d, dx + r * ldx);
}

HWY_NOINLINE void GradInputNarrow(const float* HWY_RESTRICT dz, const float* HWY_RESTRICT w, float* HWY_RESTRICT dx,
                                  int64_t m, int64_t k, int64_t n, int64_t ldx, bool overwrite) {
  const hn::ScalableTag<float> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  HWY_ALIGN float wt[kNarrowUnits * hn::MaxLanes(hn::ScalableTag<float>())];
  int64_t p = 0;
  for (; p + L <= k; p += L) {
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < L; ++i) wt[j * L + i] = w[(p + i) * n + j];
    int64_t r = 0;
    for (; r + 4 <= m; r += 4) GradInputNarrowRows<4>(dz + r * n, wt, dx + r * ldx + p, n, ldx, overwrite);
    for (; r < m; ++r) GradInputNarrowRows<1>(dz + r * n, wt, dx + r * ldx + p, n, ldx, overwrite);
  }
  for (; p < k; ++p)  // the last rows of W, fewer than a vector
    for (int64_t r = 0; r < m; ++r) {
      float sum = 0.0f;
      for (int64_t j = 0; j < n; ++j) sum += dz[r * n + j] * w[p * n + j];
      dx[r * ldx + p] = (overwrite ? 0.0f : dx[r * ldx + p]) + sum;
    }
}

void DenseGradInput(const float* HWY_RESTRICT dz, const float* HWY_RESTRICT w, float* HWY_RESTRICT dx, int64_t m,
                    int64_t k, int64_t n, int64_t ldx, bool overwrite) {
  if (n <= kNarrowUnits) return GradInputNarrow(dz, w, dx, m, k, n, ldx, overwrite);
  int64_t p = 0;
#if HWY_TARGET != HWY_SCALAR && !HWY_HAVE_SCALABLE
  for (; p + 4 <= k; p += 4) GradInputCols4(dz, w + p * n, dx + p, m, ldx, n, overwrite);
#endif
  for (; p < k; p += kCols) {
    switch (std::min<int64_t>(kCols, k - p)) {
      case 3: GradInputCols<3>(dz, w + p * n, dx + p, m, ldx, n, overwrite); break;
      case 2: GradInputCols<2>(dz, w + p * n, dx + p, m, ldx, n, overwrite); break;
      default: GradInputCols<1>(dz, w + p * n, dx + p, m, ldx, n, overwrite); break;
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace attn::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn::kernels {

HWY_EXPORT(DenseForward);
HWY_EXPORT(DenseGradWeight);
HWY_EXPORT(DenseGradInput);

void dense_forward(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t k, int64_t n,
                   int64_t ldx) {
  HWY_DYNAMIC_DISPATCH(DenseForward)(x, w, bias, y, m, k, n, ldx > 0 ? ldx : k);
}

void dense_grad_weight(const float* x, const float* dz, float* dw, int64_t m, int64_t k, int64_t n, int64_t ldx,
                       bool overwrite) {
  HWY_DYNAMIC_DISPATCH(DenseGradWeight)(x, dz, dw, m, k, n, ldx > 0 ? ldx : k, overwrite);
}

void dense_grad_input(const float* dz, const float* w, float* dx, int64_t m, int64_t k, int64_t n, int64_t ldx,
                      bool overwrite) {
  HWY_DYNAMIC_DISPATCH(DenseGradInput)(dz, w, dx, m, k, n, ldx > 0 ? ldx : k, overwrite);
}

void dense_forward_reference(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t k,
                             int64_t n) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = bias ? bias[j] : 0.0;
      for (int64_t p = 0; p < k; ++p) s += static_cast<double>(x[i * k + p]) * w[p * n + j];
      y[i * n + j] = static_cast<float>(s);
    }
}

void dense_grad_weight_reference(const float* x, const float* dz, float* dw, int64_t m, int64_t k, int64_t n) {
  for (int64_t p = 0; p < k; ++p)
    for (int64_t j = 0; j < n; ++j) {
      double s = dw[p * n + j];
      for (int64_t i = 0; i < m; ++i) s += static_cast<double>(x[i * k + p]) * dz[i * n + j];
      dw[p * n + j] = static_cast<float>(s);
    }
}

void dense_grad_input_reference(const float* dz, const float* w, float* dx, int64_t m, int64_t k, int64_t n) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t p = 0; p < k; ++p) {
      double s = dx[i * k + p];
      for (int64_t j = 0; j < n; ++j) s += static_cast<double>(dz[i * n + j]) * w[p * n + j];
      dx[i * k + p] = static_cast<float>(s);
    }
}

}  // namespace attn::kernels
#endif  // HWY_ONCE
