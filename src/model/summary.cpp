// Model.summary(): Keras 3's table (keras/src/utils/summary_utils.py) as the `rich`
// library lays it out when Python's console is not a terminal (80 columns, so Keras'
// line_length is min(default, 80 - 4) = 76):
//  - column widths: int(position * line_length) differences, plus one space of padding
//    each side, then shrunk evenly (Python's round-half-even) until the table with its
//    borders is line_length wide;
//  - cells wrap at spaces; a word longer than its column is cut to width-1 columns and
//    ends in an ellipsis (rich's default overflow), it is never folded;
//  - "sequential-like" models (a Sequential, or a functional chain of single-input
//    layers) have no "Connected to" column; a functional model also lists its InputLayer;
//  - each layer is listed once; a shared layer's row names the inputs of all its calls;
//  - the totals include the optimizer's variables once it is built (iteration as int64,
//    learning_rate as float32, then its slots).
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "attn/layers/input.hpp"
#include "attn/model.hpp"

namespace attn {

namespace {

constexpr int kLineLength = 76;  // min(88 or 108, 80 - 4): Keras on a non-terminal console
const char* const kEllipsis = "\xe2\x80\xa6";

std::string with_commas(int64_t n) {
  const std::string digits = std::to_string(n);
  std::string s;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0 && digits[i - 1] != '-') s += ',';
    s += digits[i];
  }
  return s;
}

// Keras' readable_memory_size: divide by 1024 while the result stays >= 1.
std::string readable_size(double bytes) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB", "PB"};
  int u = 0;
  while (u < 5 && bytes / 1024 >= 1) {
    bytes /= 1024;
    ++u;
  }
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.2f %s", bytes, units[u]);
  return buf;
}

// Display width of UTF-8 text (every code point counts as one column here).
size_t columns(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// The first n code points of s.
std::string take_columns(const std::string& s, size_t n) {
  size_t i = 0, seen = 0;
  while (i < s.size()) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (seen == n) break;
      ++seen;
    }
    ++i;
  }
  return s.substr(0, i);
}

std::string repeat(const char* piece, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s += piece;
  return s;
}

std::string rstrip(std::string s) {
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

// rich's ratio_reduce with equal ratios: takes `total` columns off the widths, spread evenly.
std::vector<int> ratio_reduce(int total, std::vector<int> widths) {
  int remaining_ratio = static_cast<int>(widths.size());
  int remaining = total;
  for (int& w : widths) {
    const int distributed =
        std::min(w, static_cast<int>(std::nearbyint(double(remaining) / double(remaining_ratio))));
    w -= distributed;
    remaining -= distributed;
    --remaining_ratio;
  }
  return widths;
}

// Content widths (padding excluded) for these relative column positions.
std::vector<size_t> column_widths(const std::vector<double>& positions, int line_length) {
  std::vector<int> padded;
  int current = 0;
  for (double p : positions) {
    const int width = static_cast<int>(p * line_length) - current;
    padded.push_back(width + 2);
    current += width;
  }
  const int max_width = line_length - static_cast<int>(positions.size()) - 1;  // borders
  int sum = 0;
  for (int w : padded) sum += w;
  if (sum > max_width) padded = ratio_reduce(sum - max_width, padded);
  std::vector<size_t> out;
  for (int w : padded) out.push_back(static_cast<size_t>(std::max(0, w - 2)));
  return out;
}

// rich's Text.wrap for one cell with overflow "ellipsis": greedy breaks at spaces; a
// word wider than the column sits on its own line and is cut with an ellipsis.
std::vector<std::string> wrap_cell(const std::string& text, size_t width, bool right) {
  // Words are runs of non-spaces with their trailing spaces (rich's \s*\S+\s*).
  std::vector<std::string> words;
  for (size_t i = 0; i < text.size();) {
    size_t j = text.find(' ', i);
    if (j == std::string::npos) j = text.size();
    while (j < text.size() && text[j] == ' ') ++j;
    words.push_back(text.substr(i, j - i));
    i = j;
  }
  std::vector<std::string> lines;
  std::string line;
  size_t offset = 0;
  for (size_t k = 0; k < words.size(); ++k) {
    const std::string& word = words[k];
    const size_t word_length = columns(rstrip(word));
    const bool fits = offset <= width && width - offset >= word_length;
    if (fits) {
      line += word;
      offset += columns(word);
    } else if (word_length > width || (offset && k)) {
      if (k) lines.push_back(line);
      line = word;
      offset = columns(word);
    } else {
      line += word;
      offset += columns(word);
    }
  }
  lines.push_back(line);
  for (std::string& l : lines) {
    if (right || columns(l) > width) l = rstrip(l);
    if (columns(l) > width) l = take_columns(l, width ? width - 1 : 0) + kEllipsis;
    const size_t pad = width - columns(l);
    l = right ? std::string(pad, ' ') + l : l + std::string(pad, ' ');
  }
  return lines;
}

// Keras' format_shape: "(None, 784, 1)"; several outputs as a tuple of shapes.
std::string format_shapes(const std::vector<Shape>& shapes) {
  auto one = [](const Shape& s) {
    std::string t = "(None";
    for (int64_t d : s) t += ", " + (d < 0 ? std::string("None") : std::to_string(d));
    return t + ")";
  };
  if (shapes.size() == 1) return one(shapes[0]);
  std::string t = "(";
  for (size_t i = 0; i < shapes.size(); ++i) t += (i ? ", " : "") + one(shapes[i]);
  return t + ")";
}

}  // namespace

void Model::summary(std::ostream& out) const {
  check_not_moved_from("summary");
  // Keras' sequential_like: a Sequential, or one input and a chain of calls that each
  // take one tensor (masks count), with no layer called twice.
  bool sequential_like = class_name() == "Sequential";
  if (!sequential_like) {
    sequential_like = inputs_.size() == 1;
    std::set<const Layer*> seen;
    for (const auto& site : sites_) {
      size_t n = site->inputs.size();
      const auto masks = site->options.masks();
      for (size_t m = 0; m < masks.size(); ++m) n += *masks[m] && !site->options.is_implicit(m) ? 1 : 0;
      if (n > 1 || !seen.insert(site->layer.get()).second) sequential_like = false;
    }
  }
  const bool skip_input_layer = class_name() == "Sequential";
  const std::vector<double> positions =
      sequential_like ? std::vector<double>{0.45, 0.80, 1.0} : std::vector<double>{0.3, 0.56, 0.74, 1.0};
  const std::vector<size_t> widths = column_widths(positions, kLineLength);
  std::vector<std::string> headers = {"Layer (type)", "Output Shape", "Param #"};
  if (!sequential_like) headers.push_back("Connected to");
  const std::vector<bool> right = {false, false, true, false};

  auto rule = [&](const char* left, const char* fill, const char* mid, const char* rightc) {
    out << left;
    for (size_t i = 0; i < widths.size(); ++i)
      out << repeat(fill, widths[i] + 2) << (i + 1 < widths.size() ? mid : rightc);
    out << "\n";
  };
  auto row = [&](const std::vector<std::string>& texts, const char* bar) {
    std::vector<std::vector<std::string>> cells;
    size_t height = 0;
    for (size_t i = 0; i < texts.size(); ++i) {
      cells.push_back(wrap_cell(texts[i], widths[i], right[i]));
      height = std::max(height, cells.back().size());
    }
    for (size_t line = 0; line < height; ++line) {
      out << bar;
      for (size_t i = 0; i < widths.size(); ++i)
        out << " " << (line < cells[i].size() ? cells[i][line] : std::string(widths[i], ' ')) << " " << bar;
      out << "\n";
    }
  };

  // Each layer once, in model.layers order, with every call it has in this model.
  std::vector<const Layer*> order;
  std::map<const Layer*, std::vector<const CallSite*>> calls;
  for (const auto& site : sites_) {
    const Layer* layer = site->layer.get();
    if (!calls.count(layer)) order.push_back(layer);
    calls[layer].push_back(site.get());
  }

  out << "Model: \"" << name_ << "\"\n";
  rule("\xe2\x94\x8f", "\xe2\x94\x81", "\xe2\x94\xb3", "\xe2\x94\x93");
  row(headers, "\xe2\x94\x83");
  rule("\xe2\x94\xa1", "\xe2\x94\x81", "\xe2\x95\x87", "\xe2\x94\xa9");
  bool first = true;
  for (const Layer* layer : order) {
    if (skip_input_layer && dynamic_cast<const InputLayer*>(layer)) continue;
    if (!first) rule("\xe2\x94\x9c", "\xe2\x94\x80", "\xe2\x94\xbc", "\xe2\x94\xa4");
    first = false;
    const auto& sites = calls[layer];
    // Keras shows the output shape of the layer's last call.
    std::vector<Shape> shapes;
    for (const auto& weak : sites.back()->outputs)
      if (auto node = weak.lock()) shapes.push_back(node->shape);
    std::vector<std::string> texts = {layer->name() + " (" + layer->class_name() + ")", format_shapes(shapes),
                                      with_commas(layer->count_params())};
    if (!sequential_like) {
      std::string connections;
      auto add = [&](const Node& n) {
        if (!n) return;
        if (!connections.empty()) connections += ", ";
        connections += n->site->layer->name() + "[" + std::to_string(n->site->index_in_layer) + "][" +
                       std::to_string(n->index) + "]";
      };
      for (const CallSite* site : sites) {
        for (const Node& n : site->inputs) add(n);
        const auto masks = site->options.masks();
        for (size_t m = 0; m < masks.size(); ++m)
          if (!site->options.is_implicit(m)) add(*masks[m]);
      }
      texts.push_back(connections.empty() ? "-" : connections);
    }
    row(texts, "\xe2\x94\x82");
  }
  rule("\xe2\x94\x94", "\xe2\x94\x80", "\xe2\x94\xb4", "\xe2\x94\x98");

  const int64_t params = count_params(), trainable = count_trainable_params();
  int64_t optimizer_count = 0;
  double optimizer_bytes = 0;
  const bool optimizer_shown = optimizer_ && optimizer_built_;
  if (optimizer_shown) {
    const int64_t slots = static_cast<int64_t>(optimizer_->state_slots().size());
    int64_t variables = 0;  // what the optimizer was built for (at compile), not the flags now
    for (const auto& v : trainable_slices_) variables += v.size;
    optimizer_count = 2 + slots * variables;  // iteration, learning_rate, slots
    optimizer_bytes = 8.0 + 4.0 + 4.0 * double(slots * variables);
  }
  const int64_t total = params + optimizer_count;
  out << " Total params: " << with_commas(total) << " (" << readable_size(params * 4.0 + optimizer_bytes) << ")\n";
  out << " Trainable params: " << with_commas(trainable) << " (" << readable_size(trainable * 4.0) << ")\n";
  out << " Non-trainable params: " << with_commas(params - trainable) << " ("
      << readable_size((params - trainable) * 4.0) << ")\n";
  if (optimizer_shown)
    out << " Optimizer params: " << with_commas(optimizer_count) << " (" << readable_size(optimizer_bytes) << ")\n";
}

std::string Model::summary() const {
  std::ostringstream s;
  summary(s);
  return s.str();
}

}  // namespace attn
