// Pictures of a model and its training, for people: training curves (SVG) and attention maps
// (PNG).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "attn/model.hpp"
#include "attn/tensor.hpp"

namespace attn::plots {

// One SVG panel per metric (loss, accuracy, ...), epochs along x, with the metric's val_ twin
// drawn beside it when the history has one. history: name -> one value per epoch (History::history,
// or the per-epoch objects of `attn train --history`). Throws std::invalid_argument for an empty
// history or series of different lengths. first_epoch numbers the first value (1-based, as
// Keras prints epochs): a resumed run's history starts later (History::epoch[0] + 1).
std::string training_curves_svg(const std::map<std::string, std::vector<double>>& history, int first_epoch = 1);

// The per-epoch metrics of a history file as `attn train --history` writes it
// ({"epochs": [{"epoch": 1, "seconds": ..., "loss": ..., ...}, ...]}; null reads as NaN).
// Throws std::invalid_argument naming `what` (the file) when the text is not such a history.
// first_epoch, when given, receives the first entry's "epoch" (1 when it has none).
std::map<std::string, std::vector<double>> history_from_json(const std::string& text, const std::string& what,
                                                             int* first_epoch = nullptr);

// The attention weights [tq, tv] of one sample, from the model's first Attention or
// MultiHeadAttention layer (or the one named), wherever it sits in the model: the model is run on
// the sample up to that layer (its masks included), then the layer once more with
// return_attention_scores. For MultiHeadAttention, head picks one head's weights and -1 averages
// the heads; an Attention layer has the one head 0. sample: [1, input shape...] of a
// single-input model. Throws std::invalid_argument naming the layer or the sample.
Tensor attention_weights(Model& model, const Tensor& sample, const std::string& layer_name = "", int head = -1);

struct RgbImage {
  int64_t width = 0, height = 0;
  std::vector<uint8_t> rgb;  // row-major, 3 bytes per pixel
};

// Three panels of side x side pixels (tq = tv = side^2), each shown `zoom` times larger: the
// input image (grey, the query pixel marked red), the weights the query pixel gives every key,
// and the mean weight every key receives over all queries (both as heat maps, dark to bright).
// image: [side^2] in [0, 1]; weights: [side^2, side^2].
RgbImage attention_map_image(const float* image, const float* weights, int64_t side, int64_t query, int zoom = 8);

// For attention over positions that are not the image's pixels (tokens made by earlier layers):
// the input image (side x side, none when side is 0) and the whole [tq, tv] weight matrix (a row
// per query, a column per key, as a heat map scaled to its largest weight), each panel about
// panel_pixels on its longer side.
RgbImage attention_matrix_image(const float* image, int64_t side, const float* weights, int64_t tq, int64_t tv,
                                int64_t panel_pixels = 224);

// Writes the image as PNG through a temporary file and a rename; errors name the path.
void write_png(const RgbImage& image, const std::string& path);

}  // namespace attn::plots
