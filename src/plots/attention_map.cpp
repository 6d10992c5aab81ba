// Attention maps: the weights of one sample from one of the model's attention layers, drawn as
// heat maps next to the input, written with libpng's simplified API.
#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "attn/plots.hpp"

#include "attn/io.hpp"

namespace attn::plots {
namespace {

struct Rgb {
  uint8_t r, g, b;
};

// Dark to bright through purple and orange, so that small weights stay visible against zero.
Rgb heat(float t) {
  static constexpr float kStops[][4] = {
      {0.00f, 0, 0, 4}, {0.35f, 120, 28, 109}, {0.70f, 237, 105, 37}, {1.00f, 252, 255, 164}};
  t = std::clamp(std::isfinite(t) ? t : 0.0f, 0.0f, 1.0f);
  int i = 0;
  while (i < 2 && t > kStops[i + 1][0]) ++i;
  const float u = (t - kStops[i][0]) / (kStops[i + 1][0] - kStops[i][0]);
  auto mix = [&](int c) { return static_cast<uint8_t>(std::lround(kStops[i][c] + u * (kStops[i + 1][c] - kStops[i][c]))); };
  return {mix(1), mix(2), mix(3)};
}

}  // namespace

Tensor attention_weights(Model& model, const Tensor& sample, const std::string& layer_name, int head) {
  const CallSite* site = nullptr;
  for (const auto& s : model.call_sites()) {
    const std::string& cls = s->layer->class_name();
    if ((cls == "Attention" || cls == "MultiHeadAttention") && (layer_name.empty() || s->layer->name() == layer_name)) {
      site = s.get();
      break;
    }
  }
  if (site == nullptr)
    throw std::invalid_argument(layer_name.empty()
                                    ? "attention map: the model has no Attention or MultiHeadAttention layer"
                                    : "attention map: the model has no Attention or MultiHeadAttention layer named '" +
                                          layer_name + "'");
  const std::string& name = site->layer->name();
  if (model.inputs().size() != 1)
    throw std::invalid_argument("attention map: the model has " + std::to_string(model.inputs().size()) +
                                " inputs; only single-input models are drawn");
  Shape expected = model.inputs()[0]->shape;
  expected.insert(expected.begin(), 1);
  if (sample.shape() != expected)
    throw std::invalid_argument("attention map: the sample has shape " + shape_to_string(sample.shape()) +
                                ", the model input is " + shape_to_string(expected));

  CallOptions options = site->options;
  options.return_attention_scores = true;
  options.training = false;
  std::vector<Shape> input_shapes;
  for (const Node& n : site->inputs) input_shapes.push_back(n->shape);
  const std::vector<Shape> shapes = site->layer->build(input_shapes, options);
  const Shape& scores = shapes.at(1);  // (Tq, Tv) for Attention, (heads, Tq, Tv) for MultiHeadAttention
  const int64_t heads = scores.size() == 3 ? scores[0] : 1;
  const int64_t tq = scores[scores.size() - 2], tv = scores[scores.size() - 1];
  if (head < -1 || head >= heads)
    throw std::invalid_argument("attention map: layer '" + name + "' has " +
                                (heads == 1 ? std::string("one head (0)") : std::to_string(heads) + " heads (0.." +
                                                                                std::to_string(heads - 1) + ")") +
                                "; there is no head " + std::to_string(head));
  // The layer's inputs (and masks) for this sample, wherever in the model the layer sits.
  std::vector<Node> nodes = site->inputs;
  for (const Node* m : site->options.masks())
    if (*m) nodes.push_back(*m);
  PredictOptions one;
  one.batch_size = 1;
  const std::vector<Tensor> values = model.activations({sample}, nodes, one);

  Tensor out({shape_size(shapes[0])}), all({shape_size(scores)});
  std::vector<float> saved(static_cast<size_t>(std::max<int64_t>(1, site->layer->saved_floats_per_sample(options))));
  std::vector<float> scratch(static_cast<size_t>(std::max<int64_t>(1, site->layer->scratch_floats(1, options))));
  ForwardContext ctx;
  ctx.batch = 1;
  ctx.call = &options;
  size_t next = 0;
  for (; next < site->inputs.size(); ++next) ctx.inputs.push_back(values[next].data());
  for (size_t m = 0; m < ctx.masks().size(); ++m)  // the masks follow the inputs in `nodes`, in this order
    if (*site->options.masks()[m]) *ctx.masks()[m] = values[next++].data();
  ctx.outputs = {out.data(), all.data()};
  ctx.saved = saved.data();
  ctx.scratch = scratch.data();
  site->layer->forward(ctx);

  Tensor weights({tq, tv});
  const int64_t plane = tq * tv;
  for (int64_t h = 0; h < heads; ++h) {
    if (head >= 0 && h != head) continue;
    const float factor = head >= 0 ? 1.0f : 1.0f / static_cast<float>(heads);
    for (int64_t i = 0; i < plane; ++i) weights.data()[i] += factor * all.data()[h * plane + i];
  }
  return weights;
}

RgbImage attention_map_image(const float* image, const float* weights, int64_t side, int64_t query, int zoom) {
  const int64_t t = side * side;
  if (side <= 0 || zoom <= 0) throw std::invalid_argument("attention map: side and zoom must be positive");
  if (query < 0 || query >= t)
    throw std::invalid_argument("attention map: query " + std::to_string(query) + " is not a position in 0.." +
                                std::to_string(t - 1));
  // Panel 1: the input; 2: weights of the query row; 3: mean weight each key receives.
  std::vector<float> row(weights + query * t, weights + (query + 1) * t), received(t, 0.0f);
  for (int64_t i = 0; i < t; ++i)
    for (int64_t j = 0; j < t; ++j) received[j] += weights[i * t + j] / static_cast<float>(t);
  auto normalise = [](std::vector<float>& v) {
    const float top = *std::max_element(v.begin(), v.end());
    if (top > 0.0f)
      for (float& x : v) x /= top;
  };
  normalise(row);
  normalise(received);

  const int64_t cell = zoom, panel = side * cell, gap = 2 * cell;
  RgbImage img;
  img.width = 3 * panel + 4 * gap;
  img.height = panel + 2 * gap;
  img.rgb.assign(static_cast<size_t>(img.width * img.height * 3), 255);
  auto put = [&](int64_t x, int64_t y, Rgb c) {
    uint8_t* p = img.rgb.data() + (y * img.width + x) * 3;
    p[0] = c.r, p[1] = c.g, p[2] = c.b;
  };
  for (int p = 0; p < 3; ++p) {
    const int64_t x0 = gap + p * (panel + gap), y0 = gap;
    for (int64_t k = 0; k < t; ++k) {
      Rgb c;
      if (p == 0) {
        const auto g = static_cast<uint8_t>(std::lround(255.0f * std::clamp(image[k], 0.0f, 1.0f)));
        c = k == query ? Rgb{255, 0, 0} : Rgb{g, g, g};
      } else {
        c = heat(p == 1 ? row[k] : received[k]);
      }
      for (int64_t dy = 0; dy < cell; ++dy)
        for (int64_t dx = 0; dx < cell; ++dx) put(x0 + (k % side) * cell + dx, y0 + (k / side) * cell + dy, c);
    }
  }
  return img;
}

RgbImage attention_matrix_image(const float* image, int64_t side, const float* weights, int64_t tq, int64_t tv,
                                int64_t panel_pixels) {
  if (tq <= 0 || tv <= 0 || side < 0 || panel_pixels <= 0)
    throw std::invalid_argument("attention map: tq, tv and the panel size must be positive");
  // Square cells, as large as fit the panel (at least one pixel each).
  const int64_t cell = std::max<int64_t>(1, panel_pixels / std::max(tq, tv));
  const int64_t zoom = side > 0 ? std::max<int64_t>(1, panel_pixels / side) : 0;
  const int64_t gap = 16, image_panel = side * zoom;
  const float top = *std::max_element(weights, weights + tq * tv);
  RgbImage img;
  img.width = gap + (side > 0 ? image_panel + gap : 0) + tv * cell + gap;
  img.height = 2 * gap + std::max(image_panel, tq * cell);
  img.rgb.assign(static_cast<size_t>(img.width * img.height * 3), 255);
  auto fill = [&](int64_t x0, int64_t y0, int64_t size, Rgb c) {
    for (int64_t y = y0; y < y0 + size; ++y)
      for (int64_t x = x0; x < x0 + size; ++x) {
        uint8_t* p = img.rgb.data() + (y * img.width + x) * 3;
        p[0] = c.r, p[1] = c.g, p[2] = c.b;
      }
  };
  for (int64_t k = 0; k < side * side; ++k) {
    const auto g = static_cast<uint8_t>(std::lround(255.0f * std::clamp(image[k], 0.0f, 1.0f)));
    fill(gap + (k % side) * zoom, gap + (k / side) * zoom, zoom, Rgb{g, g, g});
  }
  const int64_t x0 = gap + (side > 0 ? image_panel + gap : 0);
  for (int64_t i = 0; i < tq; ++i)
    for (int64_t j = 0; j < tv; ++j)
      fill(x0 + j * cell, gap + i * cell, cell, heat(top > 0.0f ? weights[i * tv + j] / top : 0.0f));
  return img;
}

void write_png(const RgbImage& image, const std::string& path) {
  io::write_atomically(path, [&](const std::string& tmp) {
    png_image png{};
    png.version = PNG_IMAGE_VERSION;
    png.width = static_cast<png_uint_32>(image.width);
    png.height = static_cast<png_uint_32>(image.height);
    png.format = PNG_FORMAT_RGB;
    if (!png_image_write_to_file(&png, tmp.c_str(), 0, image.rgb.data(), 0, nullptr))
      throw std::runtime_error(path + ": cannot write PNG (" + png.message + ")");
  });
}

}  // namespace attn::plots
