// Tensor storage, views, reshape and row slices.
#include <gtest/gtest.h>

#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>

#include "attn/tensor.hpp"

namespace attn {
namespace {

TEST(Tensor, ZeroFilledAndAligned) {
  Tensor t({3, 5});
  EXPECT_EQ(t.size(), 15);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % 64, 0u);
  for (int64_t i = 0; i < t.size(); ++i) EXPECT_EQ(t[i], 0.0f);
}

TEST(Tensor, RowsShareStorage) {
  Tensor t({4, 2}, {0, 1, 2, 3, 4, 5, 6, 7});
  Tensor r = t.rows(1, 3);
  EXPECT_EQ(r.shape(), (Shape{2, 2}));
  EXPECT_EQ(r[0], 2.0f);
  r[0] = 42.0f;
  EXPECT_EQ(t[2], 42.0f);
  EXPECT_THROW(t.rows(3, 5), std::out_of_range);
}

TEST(Tensor, ReshapeChecksCount) {
  Tensor t({2, 6});
  EXPECT_EQ(t.reshaped({3, 4}).shape(), (Shape{3, 4}));
  EXPECT_THROW(t.reshaped({5}), std::invalid_argument);
  EXPECT_EQ(shape_to_string({-1, 784, 1}), "(None, 784, 1)");
  EXPECT_EQ(shape_to_string({10}), "(10,)");
}

TEST(Tensor, CloneIsDeep) {
  Tensor t({2}, {1, 2});
  Tensor c = t.clone();
  c[0] = 9;
  EXPECT_EQ(t[0], 1.0f);
}

// A default tensor holds nothing: size 0, and copying it copies nothing (it read a null pointer).
TEST(Tensor, DefaultHoldsNothing) {
  const Tensor t;
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(t.size(), 0);
  EXPECT_TRUE(t.clone().empty());
  EXPECT_TRUE(t.to_vector().empty());
  EXPECT_THROW(Tensor::view(nullptr, {3}), std::invalid_argument);
}

// Shapes whose element count does not fit 64 bits, or with negative sizes, are refused by name
// (2^32 x 2^32 wrapped to 0 elements).
TEST(Tensor, ImpossibleShapesAreRefused) {
  const auto message = [](const Shape& s) {
    try {
      Tensor t(s);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({int64_t{1} << 32, int64_t{1} << 32}).find("more elements than fit 64 bits"), std::string::npos);
  EXPECT_NE(message({3037000500, 3037000500}).find("more elements than fit 64 bits"), std::string::npos);
  EXPECT_NE(message({-2, 3}).find("dimension -2"), std::string::npos);
  EXPECT_THROW(Tensor({int64_t{1} << 62}), std::bad_alloc);  // 2^64 bytes: refused, not wrapped
}

}  // namespace
}  // namespace attn
