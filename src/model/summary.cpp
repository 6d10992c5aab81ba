// Model.summary(): Keras 3's table (keras/src/utils/summary_utils.py), drawn with
// the same box characters; "Connected to" is shown for functional models only.
#include <sstream>

#include "attn/layers/input.hpp"
#include "attn/model.hpp"

namespace attn {

namespace {

std::string with_commas(int64_t n) {
  const std::string digits = std::to_string(n);
  std::string s;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0 && digits[i - 1] != '-') s += ',';
    s += digits[i];
  }
  return s;
}

std::string readable_size(double bytes) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %s", bytes, units[u]);
  return buf;
}

// Display width of UTF-8 text (every code point counts as one column here).
size_t columns(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string repeat(const char* piece, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s += piece;
  return s;
}

// Splits text into lines of at most width columns, breaking after ", " or anywhere.
std::vector<std::string> wrap(const std::string& text, size_t width) {
  std::vector<std::string> lines;
  std::string rest = text;
  while (columns(rest) > width) {
    size_t cut = rest.rfind(' ', width);
    if (cut == std::string::npos || cut == 0) cut = width;
    lines.push_back(rest.substr(0, cut));
    rest = rest.substr(cut == width ? cut : cut + 1);
  }
  lines.push_back(rest);
  return lines;
}

}  // namespace

void Model::summary(std::ostream& out) const {
  bool sequential = class_name() == "Sequential";
  std::vector<size_t> widths = sequential ? std::vector<size_t>{31, 24, 13} : std::vector<size_t>{21, 19, 12, 19};
  std::vector<std::string> headers = {"Layer (type)", "Output Shape", "Param #"};
  if (!sequential) headers.push_back("Connected to");
  std::vector<bool> right = {false, false, true, false};

  auto rule = [&](const char* left, const char* fill, const char* mid, const char* rightc) {
    out << left;
    for (size_t i = 0; i < widths.size(); ++i) out << repeat(fill, widths[i] + 2) << (i + 1 < widths.size() ? mid : rightc);
    out << "\n";
  };
  auto row = [&](const std::vector<std::vector<std::string>>& cells, const char* bar) {
    size_t height = 0;
    for (const auto& c : cells) height = std::max(height, c.size());
    for (size_t line = 0; line < height; ++line) {
      out << bar;
      for (size_t i = 0; i < widths.size(); ++i) {
        std::string text = line < cells[i].size() ? cells[i][line] : "";
        size_t pad = widths[i] > columns(text) ? widths[i] - columns(text) : 0;
        out << " " << (right[i] ? std::string(pad, ' ') + text : text + std::string(pad, ' ')) << " " << bar;
      }
      out << "\n";
    }
  };

  out << "Model: \"" << name_ << "\"\n";
  rule("\xe2\x94\x8f", "\xe2\x94\x81", "\xe2\x94\xb3", "\xe2\x94\x93");
  std::vector<std::vector<std::string>> head;
  for (const auto& h : headers) head.push_back({h});
  row(head, "\xe2\x94\x83");
  rule("\xe2\x94\xa1", "\xe2\x94\x81", "\xe2\x95\x87", "\xe2\x94\xa9");
  bool first = true;
  for (const auto& site : sites_) {
    const Layer& layer = *site->layer;
    if (sequential && dynamic_cast<const InputLayer*>(&layer)) continue;
    if (!first) rule("\xe2\x94\x9c", "\xe2\x94\x80", "\xe2\x94\xbc", "\xe2\x94\xa4");
    first = false;
    std::string label = layer.name() + " (" + layer.class_name() + ")";
    std::vector<std::string> name_lines = columns(label) <= widths[0]
                                              ? std::vector<std::string>{label}
                                              : std::vector<std::string>{layer.name(), "(" + layer.class_name() + ")"};
    std::vector<std::string> shape_lines;
    for (const auto& weak : site->outputs) {
      Shape s = weak.lock()->shape;
      s.insert(s.begin(), -1);
      shape_lines.push_back(shape_to_string(s));
    }
    std::vector<std::vector<std::string>> cells = {name_lines, shape_lines, {with_commas(layer.count_params())}};
    if (!sequential) {
      std::vector<std::string> conn;
      for (size_t i = 0; i < site->inputs.size(); ++i) {
        const Node& n = site->inputs[i];
        conn.push_back(n->site->layer->name() + "[" + std::to_string(n->site->index_in_layer) + "][" +
                       std::to_string(n->index) + "]" + (i + 1 < site->inputs.size() ? "," : ""));
      }
      if (conn.empty()) conn.push_back("-");
      std::vector<std::string> wrapped;
      for (const auto& c : conn)
        for (const auto& l : wrap(c, widths[3])) wrapped.push_back(l);
      cells.push_back(wrapped);
    }
    row(cells, "\xe2\x94\x82");
  }
  rule("\xe2\x94\x94", "\xe2\x94\x80", "\xe2\x94\xb4", "\xe2\x94\x98");
  const int64_t total = count_params(), trainable = count_trainable_params();
  out << " Total params: " << with_commas(total) << " (" << readable_size(total * 4.0) << ")\n";
  out << " Trainable params: " << with_commas(trainable) << " (" << readable_size(trainable * 4.0) << ")\n";
  out << " Non-trainable params: " << with_commas(total - trainable) << " (" << readable_size((total - trainable) * 4.0)
      << ")\n";
  if (optimizer_ && optimizer_built_) {
    int64_t state = 0;
    for (const auto& slot : optimizer_->state_slots()) (void)slot, state += trainable;
    out << " Optimizer params: " << with_commas(state) << " (" << readable_size(state * 4.0) << ")\n";
  }
}

std::string Model::summary() const {
  std::ostringstream s;
  summary(s);
  return s.str();
}

}  // namespace attn
