// Single-image input for `attn predict --image`: PNG through libpng's simplified API,
// PGM (P2 ascii, P5 binary, 8 or 16 bit) parsed here, both reduced to MNIST's form.
#include <png.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "attn/data.hpp"

namespace attn::data {
namespace {

struct GreyImage {
  int64_t width = 0, height = 0;
  std::vector<float> pixels;  // row-major, 0..255
};

bool has_png_signature(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char sig[8] = {};
  in.read(reinterpret_cast<char*>(sig), 8);
  return in.gcount() == 8 && png_sig_cmp(sig, 0, 8) == 0;
}

// A digit picture needs far less; 8192 x 8192 keeps a decoded image under 320 MB.
constexpr int64_t kMaxPixels = int64_t(1) << 26;

GreyImage read_png(const std::string& path) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&image, path.c_str()))
    throw DataError(path + ": not a readable PNG (" + image.message + ")");
  // The header's size is checked before the pixels are decoded: a small file can claim billions.
  if (static_cast<int64_t>(image.width) * image.height > kMaxPixels) {
    png_image_free(&image);
    throw DataError(path + ": PNG size " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                    " is larger than attn reads (" + std::to_string(kMaxPixels) + " pixels)");
  }
  // Transparent pixels become white paper, so a dark digit on a clear background reads
  // like one drawn on paper.
  image.format = PNG_FORMAT_GRAY;
  png_color white{255, 255, 255};
  std::vector<unsigned char> buffer(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, &white, buffer.data(), 0, nullptr)) {
    std::string message = image.message;
    png_image_free(&image);
    throw DataError(path + ": damaged PNG (" + message + ")");
  }
  GreyImage g{image.width, image.height, std::vector<float>(buffer.begin(), buffer.end())};
  return g;
}

// Next PGM header token, skipping whitespace and '#' comments.
std::string pgm_token(std::istream& in, const std::string& path) {
  std::string token;
  int c;
  while ((c = in.get()) != EOF) {
    if (c == '#') {
      while ((c = in.get()) != EOF && c != '\n') {
      }
    } else if (!std::isspace(c)) {
      token.push_back(static_cast<char>(c));
      break;
    }
  }
  while ((c = in.peek()) != EOF && !std::isspace(c) && c != '#') token.push_back(static_cast<char>(in.get()));
  if (token.empty()) throw DataError(path + ": truncated PGM header");
  return token;
}

int64_t pgm_number(std::istream& in, const std::string& path, const char* field) {
  std::string t = pgm_token(in, path);
  if (!std::all_of(t.begin(), t.end(), [](char ch) { return std::isdigit(static_cast<unsigned char>(ch)); }) ||
      t.size() > 9)
    throw DataError(path + ": PGM " + field + " is not a number: " + t);
  return std::stoll(t);
}

GreyImage read_pgm(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path + ": cannot open");
  std::string magic = pgm_token(in, path);
  if (magic != "P5" && magic != "P2") throw DataError(path + ": not a PNG or PGM image (magic '" + magic + "')");
  GreyImage g;
  g.width = pgm_number(in, path, "width");
  g.height = pgm_number(in, path, "height");
  const int64_t maxval = pgm_number(in, path, "maxval");
  if (g.width <= 0 || g.height <= 0 || g.width > kMaxPixels || g.height > kMaxPixels ||
      g.width * g.height > kMaxPixels)
    throw DataError(path + ": PGM size " + std::to_string(g.width) + "x" + std::to_string(g.height) + " is not usable");
  if (maxval <= 0 || maxval > 65535) throw DataError(path + ": PGM maxval " + std::to_string(maxval) + " out of range");
  const int64_t n = g.width * g.height;
  g.pixels.resize(n);
  const float to_255 = 255.0f / static_cast<float>(maxval);
  if (magic == "P5") {
    in.get();  // the single whitespace after maxval
    const int bytes = maxval > 255 ? 2 : 1;
    std::vector<unsigned char> raw(n * bytes);
    in.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size()));
    if (in.gcount() != static_cast<std::streamsize>(raw.size()))
      throw DataError(path + ": truncated PGM (" + std::to_string(in.gcount()) + " of " + std::to_string(raw.size()) +
                      " pixel bytes)");
    for (int64_t i = 0; i < n; ++i) {
      const int v = bytes == 2 ? (raw[2 * i] << 8) | raw[2 * i + 1] : raw[i];
      g.pixels[i] = std::min(static_cast<float>(v), static_cast<float>(maxval)) * to_255;
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      std::string t;
      if (!(in >> t)) throw DataError(path + ": truncated PGM (" + std::to_string(i) + " of " + std::to_string(n) + " pixels)");
      int64_t v = -1;
      try {
        v = std::stoll(t);
      } catch (const std::exception&) {
      }
      if (v < 0 || v > maxval) throw DataError(path + ": PGM pixel " + std::to_string(i) + " is not 0.." + std::to_string(maxval));
      g.pixels[i] = static_cast<float>(v) * to_255;
    }
  }
  return g;
}

// Area resampling: each output pixel is the coverage-weighted mean of the source pixels
// under it, which keeps thin strokes when shrinking (nearest-neighbour would drop them).
std::vector<float> resample(const GreyImage& g, int64_t rows, int64_t cols) {
  std::vector<float> out(rows * cols);
  const double sy = static_cast<double>(g.height) / rows, sx = static_cast<double>(g.width) / cols;
  for (int64_t r = 0; r < rows; ++r) {
    const double y0 = r * sy, y1 = (r + 1) * sy;
    for (int64_t c = 0; c < cols; ++c) {
      const double x0 = c * sx, x1 = (c + 1) * sx;
      double sum = 0, area = 0;
      for (int64_t y = static_cast<int64_t>(y0); y < std::min<int64_t>(g.height, static_cast<int64_t>(std::ceil(y1))); ++y) {
        const double wy = std::min<double>(y + 1, y1) - std::max<double>(y, y0);
        for (int64_t x = static_cast<int64_t>(x0); x < std::min<int64_t>(g.width, static_cast<int64_t>(std::ceil(x1))); ++x) {
          const double w = wy * (std::min<double>(x + 1, x1) - std::max<double>(x, x0));
          sum += w * g.pixels[y * g.width + x];
          area += w;
        }
      }
      out[r * cols + c] = static_cast<float>(area > 0 ? sum / area : 0.0);
    }
  }
  return out;
}

}  // namespace

Tensor load_grey_image(const std::string& path, ImageOptions options) {
  std::ifstream probe(path, std::ios::binary);
  if (!probe) throw DataError(path + ": cannot open");
  if (probe.peek() == std::ifstream::traits_type::eof())
    throw DataError(path + ": empty file (expected a PNG or PGM image)");
  probe.close();
  GreyImage g = has_png_signature(path) ? read_png(path) : read_pgm(path);
  std::vector<float> pixels = (g.width == options.cols && g.height == options.rows)
                                  ? g.pixels
                                  : resample(g, options.rows, options.cols);
  if (options.auto_invert) {
    // MNIST digits are light on dark; a picture whose border is mostly light is ink on paper.
    double border = 0;
    int64_t count = 0;
    for (int64_t r = 0; r < options.rows; ++r)
      for (int64_t c = 0; c < options.cols; ++c)
        if (r == 0 || c == 0 || r == options.rows - 1 || c == options.cols - 1) {
          border += pixels[r * options.cols + c];
          ++count;
        }
    if (count && border / count > 127.5)
      for (float& p : pixels) p = 255.0f - p;
  }
  Tensor t({options.rows, options.cols});
  std::copy(pixels.begin(), pixels.end(), t.data());
  return t;
}

}  // namespace attn::data
