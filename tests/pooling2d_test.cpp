// MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D and GlobalMaxPooling2D
// (keras/src/layers/pooling): windows worked out by hand for valid and same padding (padded cells
// left out of maxima and averages), the max gradient to the first tied cell in row-major order
// (TensorFlow's MaxPoolGrad), global max ties sharing the gradient, a direct double-precision
// reference over many shapes, finite-difference gradients, Keras configs and files, refusals, and
// a small model that finds which quadrant of an image holds a bright blob.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "attn/attn.hpp"
#include "gradient_check.hpp"
#include "layer_once.hpp"
#include "reload_check.hpp"

namespace {

namespace L = attn::layers;
using attn::Shape;
using attn::Tensor;
using Pair = std::array<int64_t, 2>;

class Pooling2DTest : public ::testing::Test {
 protected:
  void SetUp() override {
    attn::clear_session();
    attn::set_random_seed(11);
  }
};

std::vector<float> pool(const std::shared_ptr<attn::Layer>& layer, const Tensor& x) {
  auto in = attn::Input({x.dim(1), x.dim(2), x.dim(3)});
  attn::Model model(in, layer->call({in})[0]);
  return model.predict(x).to_vector();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

// The reference: TensorFlow's output sizes and padding, each window walked cell by cell over the
// padded grid, cells outside the input skipped; sums and gradients in double.
struct RefAxis {
  int64_t in, pool, stride, out, pad_before;
  RefAxis(int64_t in_, int64_t pool_, int64_t stride_, bool same) : in(in_), pool(pool_), stride(stride_) {
    out = same ? (in + stride - 1) / stride : (in - pool) / stride + 1;
    pad_before = std::max<int64_t>((out - 1) * stride + pool - in, 0) / 2;
  }
  // The input index of offset k in window t, or -1 in the padding.
  int64_t at(int64_t t, int64_t k) const {
    const int64_t i = t * stride + k - pad_before;
    return i >= 0 && i < in ? i : -1;
  }
};

struct RefCase {
  int64_t batch, h, w, c;
  Pair pool, strides;
  bool same;
};

// Output [batch, out_h, out_w, c] and input gradient for dy of the same shape.
void reference_pool(const RefCase& k, bool max, const std::vector<float>& x, const std::vector<float>& dy,
                    std::vector<double>& y, std::vector<double>& dx) {
  const RefAxis R(k.h, k.pool[0], k.strides[0], k.same), C(k.w, k.pool[1], k.strides[1], k.same);
  y.assign(k.batch * R.out * C.out * k.c, 0.0);
  dx.assign(x.size(), 0.0);
  for (int64_t b = 0; b < k.batch; ++b)
    for (int64_t i = 0; i < R.out; ++i)
      for (int64_t j = 0; j < C.out; ++j)
        for (int64_t ch = 0; ch < k.c; ++ch) {
          const int64_t o = ((b * R.out + i) * C.out + j) * k.c + ch;
          double best = -std::numeric_limits<double>::infinity(), sum = 0;
          int64_t best_at = -1, count = 0;
          for (int64_t u = 0; u < k.pool[0]; ++u)
            for (int64_t v = 0; v < k.pool[1]; ++v) {
              const int64_t r = R.at(i, u), q = C.at(j, v);
              if (r < 0 || q < 0) continue;
              const int64_t a = ((b * k.h + r) * k.w + q) * k.c + ch;
              sum += x[a];
              ++count;
              if (x[a] > best) {  // strictly greater: the first cell of a tie keeps it
                best = x[a];
                best_at = a;
              }
            }
          y[o] = max ? best : sum / static_cast<double>(count);
          if (max) {
            dx[best_at] += dy[o];
          } else {
            for (int64_t u = 0; u < k.pool[0]; ++u)
              for (int64_t v = 0; v < k.pool[1]; ++v) {
                const int64_t r = R.at(i, u), q = C.at(j, v);
                if (r >= 0 && q >= 0) dx[((b * k.h + r) * k.w + q) * k.c + ch] += dy[o] / static_cast<double>(count);
              }
          }
        }
}

// The smallest gap between the largest and second largest value of any window: finite
// differences of a max see a kink when a step moves one across the other.
double smallest_top_two_gap(const RefCase& k, const std::vector<float>& x) {
  const RefAxis R(k.h, k.pool[0], k.strides[0], k.same), C(k.w, k.pool[1], k.strides[1], k.same);
  double smallest = std::numeric_limits<double>::infinity();
  for (int64_t b = 0; b < k.batch; ++b)
    for (int64_t i = 0; i < R.out; ++i)
      for (int64_t j = 0; j < C.out; ++j)
        for (int64_t ch = 0; ch < k.c; ++ch) {
          double first = -std::numeric_limits<double>::infinity(), second = first;
          for (int64_t u = 0; u < k.pool[0]; ++u)
            for (int64_t v = 0; v < k.pool[1]; ++v) {
              const int64_t r = R.at(i, u), q = C.at(j, v);
              if (r < 0 || q < 0) continue;
              const double val = x[((b * k.h + r) * k.w + q) * k.c + ch];
              if (val > first) {
                second = first;
                first = val;
              } else if (val > second) {
                second = val;
              }
            }
          smallest = std::min(smallest, first - second);
        }
  return smallest;
}

// A 3 x 5 single-channel image, no two neighbours alike.
const Tensor kImage({1, 3, 5, 1}, {1, 9, 2, 7, 3,  //
                                   8, 4, 6, 5, 0,  //
                                   2, 3, 9, 1, 4});

TEST_F(Pooling2DTest, WindowsByHand) {
  using Max = L::MaxPooling2DLayer;
  using Avg = L::AveragePooling2DLayer;
  // valid, pool (2, 2), strides pool_size: windows rows 0-1 x columns 0-1 and 2-3.
  EXPECT_EQ(pool(std::make_shared<Max>(), kImage), (std::vector<float>{9, 7}));
  EXPECT_EQ(pool(std::make_shared<Avg>(2), kImage), (std::vector<float>{5.5f, 5}));
  // same, pool (2, 2): 2 x 3 windows, one padded row after and one padded column after.
  const L::Pooling2DOptions same{.padding = "same"};
  EXPECT_EQ(pool(std::make_shared<Max>(Pair{2, 2}, same), kImage), (std::vector<float>{9, 7, 3, 3, 9, 4}));
  EXPECT_EQ(pool(std::make_shared<Avg>(Pair{2, 2}, same), kImage), (std::vector<float>{5.5f, 5, 1.5f, 2.5f, 5, 4}));
  // valid, pool (2, 3), strides (1, 2): rows 0-1 and 1-2 x columns 0-2 and 2-4.
  const L::Pooling2DOptions tall{.strides = {1, 2}};
  EXPECT_EQ(pool(std::make_shared<Max>(Pair{2, 3}, tall), kImage), (std::vector<float>{9, 7, 9, 9}));
  EXPECT_EQ(pool(std::make_shared<Avg>(Pair{2, 3}, tall), kImage),
            (std::vector<float>{5, 23.0f / 6, 32.0f / 6, 25.0f / 6}));
  // valid, strides larger than the pool: pool (1, 2), strides (2, 3) read rows 0 and 2, columns
  // 0-1 and 3-4; the rest is skipped.
  EXPECT_EQ(pool(std::make_shared<Max>(Pair{1, 2}, L::Pooling2DOptions{.strides = {2, 3}}), kImage),
            (std::vector<float>{9, 7, 3, 4}));
  // same, pool (3, 3), strides 1: one padded row and column on every side; the average divides by
  // the real cells only (4 at the corners, 6 on the edges, 9 inside).
  const L::Pooling2DOptions one{.strides = {1, 1}, .padding = "same"};
  EXPECT_EQ(pool(std::make_shared<Max>(3, one), kImage), (std::vector<float>{9, 9, 9, 7, 7,  //
                                                                             9, 9, 9, 9, 7,  //
                                                                             8, 9, 9, 9, 5}));
  EXPECT_EQ(pool(std::make_shared<Avg>(3, one), kImage),
            (std::vector<float>{22.0f / 4, 30.0f / 6, 33.0f / 6, 23.0f / 6, 15.0f / 4,  //
                                27.0f / 6, 44.0f / 9, 46.0f / 9, 37.0f / 9, 20.0f / 6,  //
                                17.0f / 4, 32.0f / 6, 28.0f / 6, 25.0f / 6, 10.0f / 4}));
  // Channels pool separately: the second channel is the first negated, so its max is -min.
  Tensor two({1, 3, 5, 2});
  for (int64_t i = 0; i < 15; ++i) {
    two[2 * i] = kImage[i];
    two[2 * i + 1] = -kImage[i];
  }
  EXPECT_EQ(pool(std::make_shared<Max>(), two), (std::vector<float>{9, -1, 7, -2}));

  EXPECT_EQ(L::MaxPooling2D(2, same)(attn::Input({3, 5, 4}))->shape, (Shape{2, 3, 4}));
  EXPECT_EQ(L::AveragePooling2D({2, 3}, tall)(attn::Input({3, 5, 4}))->shape, (Shape{2, 2, 4}));
  EXPECT_EQ(L::MaxPooling2D({3, 3}, {.strides = {2, 2}, .padding = "same"})(attn::Input({7, 8, 1}))->shape,
            (Shape{4, 4, 1}));
}

TEST_F(Pooling2DTest, MaxGradientGoesToTheFirstTiedCellRowMajor) {
  // (0, 1) and (1, 0) tie: rows then columns makes (0, 1) first (column-major would pick (1, 0)).
  auto layer = std::make_shared<L::MaxPooling2DLayer>();
  layer->call({attn::Input({2, 2, 1})});
  const auto once = attn::testing::run_layer_once(*layer, {0.3f, 0.6f, 0.6f, 0.6f}, 1, 1, {1.0f});
  EXPECT_EQ(once.y, (std::vector<float>{0.6f}));
  EXPECT_EQ(once.dx, (std::vector<float>{0, 1, 0, 0}));

  // Overlapping windows (pool 2, strides 1) over 5 5 1 / 5 5 5: the first window's first 5 is
  // (0, 0); the second window (columns 1-2) starts at (0, 1). Two channels, the second reversed
  // left to right, so its ties fall elsewhere: 1 5 5 / 5 5 5 gives (0, 1) and (0, 1) again.
  auto overlap = std::make_shared<L::MaxPooling2DLayer>(2, L::Pooling2DOptions{.strides = {1, 1}});
  overlap->call({attn::Input({2, 3, 2})});
  const auto both = attn::testing::run_layer_once(*overlap,
                                                  {5, 1, 5, 5, 1, 5,  //
                                                   5, 5, 5, 5, 5, 5},
                                                  1, 4, {1.0f, 100.0f, 10.0f, 1000.0f});
  EXPECT_EQ(both.y, (std::vector<float>{5, 5, 5, 5}));
  EXPECT_EQ(both.dx, (std::vector<float>{1, 0, 10, 1100, 0, 0,  //
                                         0, 0, 0, 0, 0, 0}));

  // A NaN in the window makes the maximum NaN (a layer before may make one), and the gradient
  // goes to the first NaN.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const auto with_nan = attn::testing::run_layer_once(*layer, {1, nan, 3, nan}, 1, 1, {2.0f});
  EXPECT_TRUE(std::isnan(with_nan.y[0]));
  EXPECT_EQ(with_nan.dx, (std::vector<float>{0, 2, 0, 0}));
}

TEST_F(Pooling2DTest, GlobalPoolingByHandAndTiesShared) {
  // 2 x 2 cells, 2 channels: channel 0 is 1 4 / 4 2 (max 4 twice), channel 1 is 3 -1 / 0 3 (max 3
  // twice, at the corners).
  const std::vector<float> last = {1, 3, 4, -1, 4, 0, 2, 3};
  const std::vector<float> first = {1, 4, 4, 2, 3, -1, 0, 3};  // the same, channels_first
  for (const std::string format : {"channels_last", "channels_first"}) {
    SCOPED_TRACE(format);
    const bool cf = format == "channels_first";
    const auto& x = cf ? first : last;
    auto max = std::make_shared<L::GlobalMaxPooling2DLayer>(L::GlobalPooling2DOptions{.data_format = format});
    auto avg = std::make_shared<L::GlobalAveragePooling2DLayer>(L::GlobalPooling2DOptions{.data_format = format});
    max->call({attn::Input({2, 2, 2})});
    avg->call({attn::Input({2, 2, 2})});
    const auto m = attn::testing::run_layer_once(*max, x, 1, 2, {2.0f, -6.0f});
    EXPECT_EQ(m.y, (std::vector<float>{4, 3}));
    // Each tie gets half.
    EXPECT_EQ(m.dx,
              cf ? (std::vector<float>{0, 1, 1, 0, -3, 0, 0, -3}) : (std::vector<float>{0, -3, 1, 0, 1, 0, 0, -3}));
    const auto a = attn::testing::run_layer_once(*avg, x, 1, 2, {4.0f, 8.0f});
    EXPECT_EQ(a.y, (std::vector<float>{2.75f, 1.25f}));
    EXPECT_EQ(a.dx, cf ? (std::vector<float>{1, 1, 1, 1, 2, 2, 2, 2}) : (std::vector<float>{1, 2, 1, 2, 1, 2, 1, 2}));
  }
  auto max = std::make_shared<L::GlobalMaxPooling2DLayer>();
  max->call({attn::Input({2, 2, 1})});
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(attn::testing::run_layer_once(*max, {1, nan, 3, 2}, 1, 1).y[0]));

  EXPECT_EQ(L::GlobalMaxPooling2D()(attn::Input({4, 5, 3}))->shape, (Shape{3}));
  EXPECT_EQ(L::GlobalAveragePooling2D({.keepdims = true})(attn::Input({4, 5, 3}))->shape, (Shape{1, 1, 3}));
  EXPECT_EQ(L::GlobalMaxPooling2D({.keepdims = true, .data_format = "channels_first"})(attn::Input({3, 4, 5}))->shape,
            (Shape{3, 1, 1}));
  // keepdims changes the shape only.
  auto in = attn::Input({3, 4, 2});
  attn::Model flat(in, L::GlobalAveragePooling2D()(in)), kept(in, L::GlobalAveragePooling2D({.keepdims = true})(in));
  Tensor x({2, 3, 4, 2});
  for (int64_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 5) % 7);
  EXPECT_EQ(flat.predict(x).to_vector(), kept.predict(x).to_vector());
}

// Pooling and its gradient against the reference over random shapes: odd sizes, pools larger
// than strides and smaller, both paddings, integer data (many ties) and real data.
TEST_F(Pooling2DTest, MatchesADirectReference) {
  std::mt19937 gen(3);
  std::uniform_int_distribution<int64_t> size(1, 7), channels(1, 3), window(1, 4);
  std::uniform_real_distribution<float> real(-1.0f, 1.0f);
  std::uniform_int_distribution<int> small(-2, 2);
  int checked = 0;
  for (int n = 0; n < 300; ++n) {
    const RefCase k{
        2, size(gen), size(gen), channels(gen), {window(gen), window(gen)}, {window(gen), window(gen)}, n % 2 == 0};
    const bool max = n % 4 < 2, ties = n % 8 < 4;
    SCOPED_TRACE(std::string(max ? "max" : "average") + " input " + std::to_string(k.h) + "x" + std::to_string(k.w) +
                 "x" + std::to_string(k.c) + " pool " + std::to_string(k.pool[0]) + "x" + std::to_string(k.pool[1]) +
                 " strides " + std::to_string(k.strides[0]) + "x" + std::to_string(k.strides[1]) +
                 (k.same ? " same" : " valid") + (ties ? " ties" : ""));
    const L::Pooling2DOptions o{.strides = k.strides, .padding = k.same ? "same" : "valid"};
    std::shared_ptr<attn::Layer> layer =
        max ? std::shared_ptr<attn::Layer>(std::make_shared<L::MaxPooling2DLayer>(k.pool, o))
            : std::make_shared<L::AveragePooling2DLayer>(k.pool, o);
    if (!k.same && (k.pool[0] > k.h || k.pool[1] > k.w)) {
      EXPECT_THROW(layer->call({attn::Input({k.h, k.w, k.c})}), std::invalid_argument);
      continue;
    }
    const auto out = layer->call({attn::Input({k.h, k.w, k.c})});
    std::vector<float> x(k.batch * k.h * k.w * k.c);
    for (float& v : x) v = ties ? static_cast<float>(small(gen)) : real(gen);
    std::vector<double> want_y, want_dx;
    const RefAxis R(k.h, k.pool[0], k.strides[0], k.same), C(k.w, k.pool[1], k.strides[1], k.same);
    ASSERT_EQ(out[0]->shape, (Shape{R.out, C.out, k.c}));
    std::vector<float> dy(k.batch * R.out * C.out * k.c);
    for (float& v : dy) v = real(gen);
    reference_pool(k, max, x, dy, want_y, want_dx);
    const auto got = attn::testing::run_layer_once(*layer, x, k.batch, dy.size(), dy);
    for (size_t i = 0; i < want_y.size(); ++i) {
      if (max) {
        ASSERT_EQ(got.y[i], static_cast<float>(want_y[i])) << "output " << i;
      } else {
        ASSERT_NEAR(got.y[i], want_y[i], 1e-6) << "output " << i;
      }
    }
    for (size_t i = 0; i < want_dx.size(); ++i) ASSERT_NEAR(got.dx[i], want_dx[i], 1e-5) << "input gradient " << i;
    ++checked;
  }
  EXPECT_GT(checked, 150);  // most random cases fit a valid window

  // The global poolings: the mean and the maximum over every cell, ties sharing the gradient.
  for (int n = 0; n < 60; ++n) {
    const int64_t h = size(gen), w = size(gen), c = channels(gen), batch = 2;
    const bool cf = n % 2 == 1, ties = n % 4 < 2;
    SCOPED_TRACE("global " + std::to_string(h) + "x" + std::to_string(w) + "x" + std::to_string(c) +
                 (cf ? " channels_first" : "") + (ties ? " ties" : ""));
    const L::GlobalPooling2DOptions o{.data_format = cf ? "channels_first" : "channels_last"};
    auto max = std::make_shared<L::GlobalMaxPooling2DLayer>(o);
    auto avg = std::make_shared<L::GlobalAveragePooling2DLayer>(o);
    const Shape shape = cf ? Shape{c, h, w} : Shape{h, w, c};
    max->call({attn::Input(shape)});
    avg->call({attn::Input(shape)});
    std::vector<float> x(batch * h * w * c), dy(batch * c);
    for (float& v : x) v = ties ? static_cast<float>(small(gen)) : real(gen);
    for (float& v : dy) v = real(gen);
    const auto at = [&](int64_t b, int64_t p, int64_t ch) {
      return b * h * w * c + (cf ? ch * h * w + p : p * c + ch);
    };
    std::vector<double> max_y(batch * c), avg_y(batch * c), max_dx(x.size()), avg_dx(x.size());
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t ch = 0; ch < c; ++ch) {
        double best = -std::numeric_limits<double>::infinity(), sum = 0;
        int64_t tied = 0;
        for (int64_t p = 0; p < h * w; ++p) {
          best = std::max<double>(best, x[at(b, p, ch)]);
          sum += x[at(b, p, ch)];
        }
        for (int64_t p = 0; p < h * w; ++p) tied += x[at(b, p, ch)] == best;
        max_y[b * c + ch] = best;
        avg_y[b * c + ch] = sum / static_cast<double>(h * w);
        for (int64_t p = 0; p < h * w; ++p) {
          if (x[at(b, p, ch)] == best) max_dx[at(b, p, ch)] = dy[b * c + ch] / static_cast<double>(tied);
          avg_dx[at(b, p, ch)] = dy[b * c + ch] / static_cast<double>(h * w);
        }
      }
    const auto m = attn::testing::run_layer_once(*max, x, batch, dy.size(), dy);
    const auto a = attn::testing::run_layer_once(*avg, x, batch, dy.size(), dy);
    for (size_t i = 0; i < dy.size(); ++i) {
      ASSERT_EQ(m.y[i], static_cast<float>(max_y[i])) << i;
      ASSERT_NEAR(a.y[i], avg_y[i], 1e-6) << i;
    }
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_NEAR(m.dx[i], max_dx[i], 1e-6) << i;
      ASSERT_NEAR(a.dx[i], avg_dx[i], 1e-6) << i;
    }
  }
}

// With this seed the harness's data (-1..1, 5e-3 steps) keep every window's two largest values
// more than two steps apart, for each pooling below (checked on the data drawn).
constexpr uint32_t kPoolingDataSeed = 51;

TEST_F(Pooling2DTest, GradientsMatchFiniteDifferences) {
  for (const bool max : {true, false})
    for (const auto& [size, strides, padding] :
         std::vector<std::tuple<Pair, Pair, std::string>>{{{2, 2}, {0, 0}, "valid"},
                                                          {{2, 3}, {1, 2}, "valid"},
                                                          {{3, 3}, {1, 1}, "same"},
                                                          {{2, 2}, {3, 2}, "same"},
                                                          {{3, 2}, {2, 1}, "same"},
                                                          {{4, 3}, {2, 2}, "same"}}) {
      SCOPED_TRACE(std::string(max ? "max" : "average") + " pool " + std::to_string(size[0]) + "x" +
                   std::to_string(size[1]) + " strides " + std::to_string(strides[0]) + "x" +
                   std::to_string(strides[1]) + " " + padding);
      attn::testing::GradCheck g;
      const L::Pooling2DOptions o{.strides = strides, .padding = padding};
      g.layer = max ? std::shared_ptr<attn::Layer>(std::make_shared<L::MaxPooling2DLayer>(size, o))
                    : std::make_shared<L::AveragePooling2DLayer>(size, o);
      g.input_shapes = {{5, 7, 2}};
      // Finite differences straddle a kink where a window's two largest values lie within a step
      // of each other (the harness's default data_seed has such windows).
      g.data_seed = kPoolingDataSeed;
      const auto result = attn::testing::check_layer_gradients(g);
      if (max) {
        const RefCase k{g.batch, 5, 7, 2, size, strides == Pair{0, 0} ? size : strides, padding == "same"};
        EXPECT_GT(smallest_top_two_gap(k, result.inputs[0]), 2 * g.step) << "choose another data_seed";
      }
    }
  for (const std::string format : {"channels_last", "channels_first"})
    for (const bool max : {true, false}) {
      SCOPED_TRACE(std::string(max ? "global max " : "global average ") + format);
      attn::testing::GradCheck g;
      const L::GlobalPooling2DOptions o{.keepdims = max, .data_format = format};
      g.layer = max ? std::shared_ptr<attn::Layer>(std::make_shared<L::GlobalMaxPooling2DLayer>(o))
                    : std::make_shared<L::GlobalAveragePooling2DLayer>(o);
      g.input_shapes = {{3, 4, 3}};
      g.data_seed = kPoolingDataSeed;
      const auto result = attn::testing::check_layer_gradients(g);
      if (max) {  // the whole plane is one window: the same condition as above
        const bool cf = format == "channels_first";
        const RefCase k{g.batch, 1, 12, 3, {1, 12}, {1, 12}, false};
        std::vector<float> x = result.inputs[0];
        if (cf)  // to channels_last, which the gap helper reads
          for (int64_t b = 0; b < g.batch; ++b)
            for (int64_t p = 0; p < 12; ++p)
              for (int64_t c = 0; c < 3; ++c) x[b * 36 + p * 3 + c] = result.inputs[0][b * 36 + c * 12 + p];
        EXPECT_GT(smallest_top_two_gap(k, x), 2 * g.step) << "choose another data_seed";
      }
    }
}

TEST_F(Pooling2DTest, KerasConfigsAndFiles) {
  auto in = attn::Input({8, 9, 2});
  auto h = L::MaxPooling2D({2, 3}, {.strides = {1, 2}, .name = "max"})(in);  // (7, 4, 2)
  h = L::AveragePooling2D(3, {.strides = {1, 1}, .padding = "same", .name = "avg"})(h);
  auto mean = L::GlobalAveragePooling2D({.name = "gap"})(h);
  auto peak = L::Flatten()(L::GlobalMaxPooling2D({.keepdims = true, .name = "gmp"})(h));
  auto first = L::GlobalMaxPooling2D({.name = "gmp_first", .data_format = "channels_first"})(h);  // over (4, 2)
  attn::Model model(in, L::Dense(2)(L::Concatenate()({L::Flatten()(h), mean, peak, first})));
  const auto config = attn::io::model_to_config(model);
  int seen = 0;
  for (const auto& l : config["config"]["layers"]) {
    const auto& c = l["config"];
    if (c["name"] == "max") {
      ++seen;
      EXPECT_EQ(l["class_name"], "MaxPooling2D");
      EXPECT_EQ(c["pool_size"], nlohmann::json::array({2, 3}));
      EXPECT_EQ(c["strides"], nlohmann::json::array({1, 2}));
      EXPECT_EQ(c["padding"], "valid");
      EXPECT_EQ(c["data_format"], "channels_last");
      EXPECT_EQ(c["trainable"], true);
    }
    if (c["name"] == "avg") {
      ++seen;
      EXPECT_EQ(l["class_name"], "AveragePooling2D");
      EXPECT_EQ(c["pool_size"], nlohmann::json::array({3, 3}));
      EXPECT_EQ(c["strides"], nlohmann::json::array({1, 1}));
      EXPECT_EQ(c["padding"], "same");
    }
    if (c["name"] == "gap") {
      ++seen;
      EXPECT_EQ(l["class_name"], "GlobalAveragePooling2D");
      EXPECT_EQ(c["keepdims"], false);
      EXPECT_EQ(c["data_format"], "channels_last");
    }
    if (c["name"] == "gmp") {
      ++seen;
      EXPECT_EQ(l["class_name"], "GlobalMaxPooling2D");
      EXPECT_EQ(c["keepdims"], true);
    }
    if (c["name"] == "gmp_first") {
      ++seen;
      EXPECT_EQ(c["data_format"], "channels_first");
    }
  }
  EXPECT_EQ(seen, 5);
  Tensor x({3, 8, 9, 2});
  for (int64_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 37) % 23) / 23.0f - 0.4f;
  attn::testing::expect_same_predictions_after_reload(model, x);

  // Keras writes strides null for "same as pool_size"; a bare integer means both axes.
  nlohmann::json c = config;
  for (auto& l : c["config"]["layers"])
    if (l["config"]["name"] == "max") {
      l["config"]["strides"] = nullptr;
      l["config"]["pool_size"] = 2;
    }
  const attn::Model back = attn::io::model_from_config(c);
  const nlohmann::json back_config = attn::io::model_to_config(back);  // kept: the loop reads inside it
  for (const auto& l : back_config["config"]["layers"])
    if (l["config"]["name"] == "max") {
      EXPECT_EQ(l["config"]["pool_size"], nlohmann::json::array({2, 2}));
      EXPECT_EQ(l["config"]["strides"], nlohmann::json::array({2, 2}));
    }
}

TEST_F(Pooling2DTest, RefusalsNameTheOptionOrIssue) {
  const auto has = [](const std::string& message, const std::string& part) {
    EXPECT_NE(message.find(part), std::string::npos) << "\"" << part << "\" not in: " << message;
  };
  has(error_of([] { L::MaxPooling2DLayer(0); }), "pool_size must be positive, got (0, 0)");
  has(error_of([] { L::AveragePooling2DLayer(Pair{2, -1}); }), "pool_size must be positive");
  has(error_of([] { L::MaxPooling2DLayer(2, {.strides = {0, 2}}); }), "strides must be positive, got (0, 2)");
  has(error_of([] { L::MaxPooling2DLayer(2, {.padding = "causal"}); }), "padding must be \"valid\" or \"same\"");
  has(error_of([] { L::MaxPooling2D(2, {.padding = "causal"}); }), "(MaxPooling2D)");
  // Valid padding needs one whole window on each axis; same padding makes one.
  has(error_of([] {
        L::MaxPooling2D({2, 6})(attn::Input({4, 5, 1}));
      }),
      "pool_size (2, 6) is larger than the (4, 5) input (height, width) with \"valid\" padding");
  EXPECT_EQ(L::MaxPooling2D({2, 6}, {.padding = "same"})(attn::Input({4, 5, 1}))->shape, (Shape{2, 1, 1}));
  has(error_of([] { L::AveragePooling2D()(attn::Input({4, 5})); }), "input must be (batch, height, width, channels)");
  has(error_of([] { L::GlobalMaxPooling2D()(attn::Input({4, 5})); }), "input must be (batch, height, width, channels)");
  has(error_of([] {
        L::GlobalAveragePooling2D({.data_format = "channels_first"})(attn::Input({4, 5, 6, 7}));
      }),
      "input must be (batch, channels, height, width)");
  has(error_of([] { L::GlobalAveragePooling2D({.data_format = "channels_middle"}); }), "data_format must be");
  auto in = attn::Input({4, 4, 1});
  has(error_of([&] { L::MaxPooling2D()(in, {.mask = attn::Input({4})}); }), "takes no mask");

  // From Keras configs: the error names the option.
  auto x = attn::Input({6, 6, 1});
  attn::Model model(x, L::GlobalMaxPooling2D({.name = "g"})(L::MaxPooling2D(2, {.name = "p"})(x)));
  const auto config = attn::io::model_to_config(model);
  const auto edited = [&](const std::string& layer, const std::string& key, const nlohmann::json& value) {
    nlohmann::json c = config;
    for (auto& l : c["config"]["layers"])
      if (l["config"]["name"] == layer) l["config"][key] = value;
    return c;
  };
  for (const auto& [layer, key, value] : std::vector<std::tuple<std::string, std::string, nlohmann::json>>{
           {"p", "data_format", "channels_first"},
           {"p", "padding", "full"},
           {"p", "pool_size", 0},
           {"p", "pool_size", nlohmann::json::array({2, 0})},
           {"p", "pool_size", nlohmann::json::array({2, 2, 2})},
           {"p", "strides", nlohmann::json::array({0, 1})},
           {"p", "strides", "2"},
           {"g", "data_format", "channels_middle"},
           {"g", "keepdims", "yes"}}) {
    SCOPED_TRACE(layer + " " + key + " " + value.dump());
    has(error_of([&] { attn::io::model_from_config(edited(layer, key, value), "edited.json"); }),
        "option '" + key + "'");
  }
  has(error_of([&] { attn::io::model_from_config(edited("p", "pool_size", 7), "edited.json"); }),
      "is larger than the (6, 6) input");
}

// 8 x 8 images of dim noise with one bright 2 x 2 blob; the label is the quadrant holding it. A
// same-padded 2 x 2 average lights up fully only on the blob, a 4 x 4 max pool per quadrant
// picks it out, and a Dense reads which quadrant.
TEST_F(Pooling2DTest, ModelFindsTheQuadrantOfABlob) {
  const auto make = [](int64_t n, uint32_t seed, Tensor& x, Tensor& y) {
    x = Tensor({n, 8, 8, 1});
    y = Tensor({n});
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> noise(0.0f, 0.3f);
    std::uniform_int_distribution<int64_t> quadrant(0, 3), corner(0, 2);
    for (int64_t s = 0; s < n; ++s) {
      for (int64_t i = 0; i < 64; ++i) x[s * 64 + i] = noise(gen);
      const int64_t q = quadrant(gen), r = (q / 2) * 4 + corner(gen), c = (q % 2) * 4 + corner(gen);
      for (int64_t dr = 0; dr < 2; ++dr)
        for (int64_t dc = 0; dc < 2; ++dc) x[s * 64 + (r + dr) * 8 + c + dc] = 1.0f;
      y[s] = static_cast<float>(q);
    }
  };
  Tensor x, y, xv, yv;
  make(400, 1, x, y);
  make(200, 2, xv, yv);
  auto in = attn::Input({8, 8, 1});
  auto h = L::AveragePooling2D(2, {.strides = {1, 1}, .padding = "same"})(in);
  h = L::MaxPooling2D(4)(h);  // (2, 2, 1): one value per quadrant
  attn::Model model(in, L::Dense(4, {.activation = "softmax"})(L::Flatten()(h)));
  model.compile(attn::optimizers::Adam({.learning_rate = 5e-2f}), attn::losses::SparseCategoricalCrossentropy(),
                {"accuracy"});
  const double before = model.evaluate(xv, yv).at("accuracy");
  model.fit(x, y, {.epochs = 20, .batch_size = 20, .verbose = 0});
  const double after = model.evaluate(xv, yv).at("accuracy");
  EXPECT_GT(after, 0.9) << "accuracy before training " << before;
  attn::testing::expect_same_predictions_after_reload(model, xv.rows(0, 8));
}

}  // namespace
