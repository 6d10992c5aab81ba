// load_grey_image: PGM (P2/P5, 8 and 16 bit) and PNG (grey, RGB, alpha) decode to the
// expected 0..255 values, other sizes are area-resampled, ink on paper is inverted, and
// damaged files fail with the file named.
#include <gtest/gtest.h>
#include <png.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "attn/data.hpp"

namespace {

namespace fs = std::filesystem;
using attn::data::DataError;
using attn::data::ImageOptions;
using attn::data::load_grey_image;

class ImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("attn_image_test_" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }
  void write(const std::string& path, const std::string& bytes) const {
    std::ofstream(path, std::ios::binary) << bytes;
  }
  fs::path dir_;
};

std::string expect_error(const std::string& path) {
  try {
    load_grey_image(path);
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error for " << path;
  return "";
}

TEST_F(ImageTest, BinaryPgmAtSizeIsReadAsIs) {
  std::string pixels;
  for (int i = 0; i < 28 * 28; ++i) pixels.push_back(static_cast<char>(i % 7 == 0 ? 200 : 0));
  write(file("a.pgm"), "P5\n# a comment\n28 28\n255\n" + pixels);
  attn::Tensor t = load_grey_image(file("a.pgm"));
  ASSERT_EQ(t.shape(), (attn::Shape{28, 28}));
  for (int i = 0; i < 28 * 28; ++i) ASSERT_EQ(t[i], i % 7 == 0 ? 200.0f : 0.0f) << i;
}

TEST_F(ImageTest, AsciiPgmWithSmallMaxvalIsScaledTo255AndResampled) {
  // 2x2 image, maxval 3: area resampling to 4x4 repeats each pixel in a 2x2 block.
  write(file("b.pgm"), "P2 2 2 3\n0 3\n1 2\n");
  attn::Tensor t = load_grey_image(file("b.pgm"), ImageOptions{.rows = 4, .cols = 4, .auto_invert = false});
  const float expect[4] = {0, 255, 85, 170};
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) EXPECT_FLOAT_EQ(t[r * 4 + c], expect[(r / 2) * 2 + c / 2]) << r << "," << c;
}

TEST_F(ImageTest, SixteenBitPgmAndAreaDownsampling) {
  // 4x2 image shrunk to 2x1: each output is the mean of a 2x2 block.
  std::string raw;
  const int values[8] = {0, 65535, 65535, 65535, 0, 0, 0, 65535};
  for (int v : values) {
    raw.push_back(static_cast<char>(v >> 8));
    raw.push_back(static_cast<char>(v & 255));
  }
  write(file("c.pgm"), "P5 4 2 65535\n" + raw);
  attn::Tensor t = load_grey_image(file("c.pgm"), ImageOptions{.rows = 1, .cols = 2, .auto_invert = false});
  EXPECT_FLOAT_EQ(t[0], 255.0f / 4);
  EXPECT_FLOAT_EQ(t[1], 255.0f * 3 / 4);
}

TEST_F(ImageTest, DarkInkOnPaperIsInverted) {
  std::string pixels(28 * 28, static_cast<char>(255));
  pixels[14 * 28 + 14] = 0;
  write(file("paper.pgm"), "P5 28 28 255\n" + pixels);
  attn::Tensor t = load_grey_image(file("paper.pgm"));
  EXPECT_EQ(t[0], 0.0f);
  EXPECT_EQ(t[14 * 28 + 14], 255.0f);
  attn::Tensor kept = load_grey_image(file("paper.pgm"), ImageOptions{.auto_invert = false});
  EXPECT_EQ(kept[0], 255.0f);
}

void write_png(const std::string& path, int width, int height, uint32_t format, const std::vector<unsigned char>& data) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = width;
  image.height = height;
  image.format = format;
  ASSERT_TRUE(png_image_write_to_file(&image, path.c_str(), 0, data.data(), 0, nullptr)) << image.message;
}

TEST_F(ImageTest, GreyPngAtSize) {
  std::vector<unsigned char> data(28 * 28);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<unsigned char>((i * 37) % 120);
  write_png(file("g.png"), 28, 28, PNG_FORMAT_GRAY, data);
  attn::Tensor t = load_grey_image(file("g.png"));
  for (size_t i = 0; i < data.size(); ++i) ASSERT_EQ(t[i], data[i]) << i;
}

TEST_F(ImageTest, RgbaPngCompositesTransparencyOnWhiteThenInverts) {
  // A fully transparent 56x56 picture with one opaque black 2x2 block: transparent reads as
  // white paper, so after inversion the background is 0 and the block's output pixel 255.
  std::vector<unsigned char> data(56 * 56 * 4, 0);
  for (int y = 20; y < 22; ++y)
    for (int x = 30; x < 32; ++x) data[(y * 56 + x) * 4 + 3] = 255;
  write_png(file("rgba.png"), 56, 56, PNG_FORMAT_RGBA, data);
  attn::Tensor t = load_grey_image(file("rgba.png"));
  EXPECT_EQ(t[0], 0.0f);
  EXPECT_NEAR(t[10 * 28 + 15], 255.0f, 0.5f);
  EXPECT_NEAR(t[10 * 28 + 14], 0.0f, 0.5f);
}

TEST_F(ImageTest, DamagedFilesNameTheFile) {
  write(file("trunc.pgm"), "P5 28 28 255\n" + std::string(100, 'x'));
  EXPECT_NE(expect_error(file("trunc.pgm")).find("truncated"), std::string::npos);
  write(file("jpeg.jpg"), "\xff\xd8\xff\xe0 not a pgm");
  EXPECT_NE(expect_error(file("jpeg.jpg")).find("not a PNG or PGM"), std::string::npos);
  write(file("bad.pgm"), "P5 28 x 255\n");
  EXPECT_NE(expect_error(file("bad.pgm")).find("height"), std::string::npos);
  std::string png_head = "\x89PNG\r\n\x1a\n";
  write(file("cut.png"), png_head + "\0\0\0\rIHDR");
  expect_error(file("cut.png"));
  expect_error(file("missing.png"));
  write(file("empty.png"), "");
  EXPECT_NE(expect_error(file("empty.png")).find("empty file"), std::string::npos);
}

// A small PNG whose header claims 100000 x 100000 pixels is refused from the header, before
// anything is decoded (it would need 10 GB), as is a PGM of that size.
TEST_F(ImageTest, HugeHeaderIsRefusedBeforeDecoding) {
  write_png(file("small.png"), 28, 28, PNG_FORMAT_GRAY, std::vector<unsigned char>(28 * 28, 9));
  std::ifstream in(file("small.png"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(bytes.substr(12, 4), "IHDR");
  const auto put_be32 = [&](size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) bytes[at + i] = static_cast<char>((v >> (24 - 8 * i)) & 255);
  };
  put_be32(16, 100000);  // width
  put_be32(20, 100000);  // height
  put_be32(29, static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(bytes.data() + 12), 17)));
  write(file("huge.png"), bytes);
  EXPECT_NE(expect_error(file("huge.png")).find("PNG size 100000x100000 is larger than attn reads"), std::string::npos);
  write(file("huge.pgm"), "P5 100000 100000 255\n");
  EXPECT_NE(expect_error(file("huge.pgm")).find("PGM size 100000x100000 is not usable"), std::string::npos);
}

}  // namespace
