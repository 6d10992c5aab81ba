// Training curves as SVG: text, so it needs no library and any browser shows it.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "attn/plots.hpp"

namespace attn::plots {
namespace {

constexpr double kPanelWidth = 420, kPanelHeight = 290;
constexpr double kLeft = 64, kRight = 16, kTop = 40, kBottom = 48;  // margins around the plot area
constexpr const char* kTrainColour = "#1f77b4";
constexpr const char* kValColour = "#e6550d";

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", std::fabs(v) < 1e-12 ? 0.0 : v);
  return buf;
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else out += c;
  }
  return out;
}

// A step of 1, 2 or 5 times a power of ten giving about `ticks` intervals over span.
double nice_step(double span, int ticks) {
  const double raw = span / ticks;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0})
    if (m * p >= raw) return m * p;
  return 10.0 * p;
}

struct Series {
  std::string name;
  const std::vector<double>* values;
  const char* colour;
};

// A value the axis can hold: finite, and small enough that the span of two of them is too.
bool drawable(double v) { return std::isfinite(v) && std::fabs(v) < 1e300; }

std::string panel(const std::string& title, const std::vector<Series>& series, size_t epochs, int first_epoch,
                  double x0) {
  double lo = INFINITY, hi = -INFINITY;
  for (const Series& s : series)
    for (double v : *s.values)
      if (drawable(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (!std::isfinite(lo)) lo = 0, hi = 1;  // nothing finite to draw: an empty frame
  if (hi - lo < 1e-12 * std::max(1.0, std::fabs(hi))) {
    const double pad = std::max(0.5 * std::fabs(hi), 0.5);
    lo -= pad, hi += pad;
  }
  const double step = nice_step(hi - lo, 4);
  lo = std::floor(lo / step) * step;
  hi = std::ceil(hi / step) * step;
  const double w = kPanelWidth - kLeft - kRight, h = kPanelHeight - kTop - kBottom;
  const double left = x0 + kLeft;
  auto x_of = [&](size_t epoch) { return left + (epochs > 1 ? w * double(epoch) / double(epochs - 1) : w / 2); };
  auto y_of = [&](double v) { return kTop + h * (hi - v) / (hi - lo); };

  std::string svg;
  svg += "<g>\n<text x=\"" + number(left + w / 2) + "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">" +
         escape(title) + "</text>\n";
  svg += "<rect x=\"" + number(left) + "\" y=\"" + number(kTop) + "\" width=\"" + number(w) + "\" height=\"" +
         number(h) + "\" fill=\"none\" stroke=\"#444\"/>\n";
  for (double v = lo; v <= hi + step / 2; v += step) {
    const double y = y_of(v);
    svg += "<line x1=\"" + number(left) + "\" y1=\"" + number(y) + "\" x2=\"" + number(left + w) + "\" y2=\"" +
           number(y) + "\" stroke=\"#ddd\"/>\n";
    svg += "<text x=\"" + number(left - 6) + "\" y=\"" + number(y + 4) + "\" text-anchor=\"end\" font-size=\"11\">" +
           number(v) + "</text>\n";
  }
  const size_t every = std::max<size_t>(1, (epochs + 9) / 10);
  for (size_t e = 0; e < epochs; e += every)
    svg += "<text x=\"" + number(x_of(e)) + "\" y=\"" + number(kTop + h + 16) +
           "\" text-anchor=\"middle\" font-size=\"11\">" + std::to_string(static_cast<int64_t>(e) + first_epoch) +
           "</text>\n";
  svg += "<text x=\"" + number(left + w / 2) + "\" y=\"" + number(kTop + h + 36) +
         "\" text-anchor=\"middle\" font-size=\"12\">epoch</text>\n";
  double legend_y = kTop + 14;
  for (const Series& s : series) {
    std::string points;
    for (size_t e = 0; e < s.values->size(); ++e) {
      const double v = (*s.values)[e];
      if (!drawable(v)) continue;  // a NaN epoch (TerminateOnNaN) is left out
      if (!points.empty()) points += ' ';
      points += number(x_of(e));
      points += ',';
      points += number(y_of(v));
      svg += "<circle cx=\"" + number(x_of(e)) + "\" cy=\"" + number(y_of(v)) + "\" r=\"2.5\" fill=\"" + s.colour +
             "\"/>\n";
    }
    svg += "<polyline class=\"" + escape(s.name) + "\" fill=\"none\" stroke=\"" + s.colour +
           "\" stroke-width=\"2\" points=\"" + points + "\"/>\n";
    svg += "<text x=\"" + number(left + w - 8) + "\" y=\"" + number(legend_y) + "\" text-anchor=\"end\" font-size=\"12\" fill=\"" +
           s.colour + "\">" + escape(s.name) + "</text>\n";
    legend_y += 16;
  }
  return svg + "</g>\n";
}

}  // namespace

std::map<std::string, std::vector<double>> history_from_json(const std::string& text, const std::string& what,
                                                             int* first_epoch) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw std::invalid_argument(what + ": not valid JSON: " + e.what());
  }
  if (!j.is_object() || !j.contains("epochs") || !j["epochs"].is_array())
    throw std::invalid_argument(what + ": no \"epochs\" list (attn train --history writes one)");
  std::map<std::string, std::vector<double>> history;
  const auto& epochs = j["epochs"];
  if (first_epoch) {
    *first_epoch = 1;
    if (!epochs.empty() && epochs[0].is_object() && epochs[0].contains("epoch")) {
      const auto& e = epochs[0]["epoch"];
      if (!e.is_number_integer() || e.get<int64_t>() < 1 || e.get<int64_t>() > 1000000000)
        throw std::invalid_argument(what + ": the first epoch number is not a whole number >= 1");
      *first_epoch = static_cast<int>(e.get<int64_t>());
    }
  }
  for (size_t e = 0; e < epochs.size(); ++e) {
    if (!epochs[e].is_object()) throw std::invalid_argument(what + ": epoch " + std::to_string(e + 1) + " is not an object");
    for (const auto& [name, value] : epochs[e].items()) {
      if (name == "epoch" || name == "seconds") continue;
      if (!value.is_number() && !value.is_null())
        throw std::invalid_argument(what + ": epoch " + std::to_string(e + 1) + ": '" + name + "' is not a number");
      auto& series = history[name];
      if (series.size() != e)
        throw std::invalid_argument(what + ": '" + name + "' is missing from some epochs before epoch " +
                                    std::to_string(e + 1));
      series.push_back(value.is_null() ? NAN : value.get<double>());
    }
  }
  for (const auto& [name, series] : history)
    if (series.size() != epochs.size())
      throw std::invalid_argument(what + ": '" + name + "' is missing from some epochs");
  return history;
}

std::string training_curves_svg(const std::map<std::string, std::vector<double>>& history, int first_epoch) {
  if (history.empty()) throw std::invalid_argument("training curves: the history has no metrics");
  const size_t epochs = history.begin()->second.size();
  for (const auto& [name, values] : history)
    if (values.size() != epochs)
      throw std::invalid_argument("training curves: '" + name + "' has " + std::to_string(values.size()) +
                                  " values, '" + history.begin()->first + "' has " + std::to_string(epochs));
  if (epochs == 0) throw std::invalid_argument("training curves: the history has no epochs");
  // One panel per base metric: loss first, then the others by name.
  std::vector<std::string> bases;
  for (const auto& [name, values] : history) {
    const std::string base = name.rfind("val_", 0) == 0 ? name.substr(4) : name;
    if (std::find(bases.begin(), bases.end(), base) == bases.end()) bases.push_back(base);
  }
  std::stable_sort(bases.begin(), bases.end(), [](const std::string& a, const std::string& b) {
    return (a == "loss") > (b == "loss");
  });
  const double width = kPanelWidth * static_cast<double>(bases.size());
  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + number(width) + "\" height=\"" +
                    number(kPanelHeight) + "\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  for (size_t i = 0; i < bases.size(); ++i) {
    std::vector<Series> series;
    if (auto it = history.find(bases[i]); it != history.end()) series.push_back({bases[i], &it->second, kTrainColour});
    if (auto it = history.find("val_" + bases[i]); it != history.end())
      series.push_back({"val_" + bases[i], &it->second, kValColour});
    svg += panel(bases[i], series, epochs, first_epoch, kPanelWidth * static_cast<double>(i));
  }
  return svg + "</svg>\n";
}

}  // namespace attn::plots
