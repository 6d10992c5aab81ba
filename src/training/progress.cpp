// Progbar: the line layout of Keras 3 verbose 1 and 2.
#include "training/progress.hpp"

#include <algorithm>

#include <unistd.h>

#include <cmath>
#include <string>

namespace attn {

namespace {
const char* kBar = "\xe2\x94\x81";  // U+2501, the heavy horizontal Keras 3 draws with
constexpr int kWidth = 20;
std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}
}  // namespace

Progbar::Progbar(int64_t target, int verbose, std::FILE* out)
    : target_(target), verbose_(verbose), out_(out), dynamic_(isatty(fileno(out)) != 0) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

std::string Progbar::format_value(double v) {
  return std::fabs(v) > 1e-3 ? fmt("%.4f", v) : fmt("%.4e", v);
}

std::string Progbar::format_eta(double eta) {
  char buf[32];
  if (eta > 3600)
    std::snprintf(buf, sizeof buf, "%d:%02d:%02d", int(eta) / 3600, (int(eta) % 3600) / 60, int(eta) % 60);
  else if (eta > 60)
    std::snprintf(buf, sizeof buf, "%d:%02d", int(eta) / 60, int(eta) % 60);
  else
    std::snprintf(buf, sizeof buf, "%ds", int(eta));
  return buf;
}

void Progbar::update(int64_t current, const std::map<std::string, double>& values, bool finalize) {
  using clock = std::chrono::steady_clock;
  auto now = clock::now();
  if (!first_step_seen_ && current >= 1) {
    first_step_seen_ = true;
    first_step_done_ = now;
  }
  if (verbose_ == 0) return;
  // New keys join the order: validation ones before the others (dict order in Keras' epoch logs).
  const size_t known = order_.size();
  for (const bool validation : {true, false})
    for (const auto& entry : values) {
      const std::string& key = entry.first;
      if (key.starts_with("val_") == validation && std::find(order_.begin(), order_.begin() + known, key) ==
                                                       order_.begin() + known)
        order_.push_back(key);
    }
  if (verbose_ == 2 && !finalize) return;
  if (verbose_ == 1 && !finalize) {
    if (!dynamic_) return;
    if (std::chrono::duration<double>(now - last_draw_).count() < 0.05) return;
  }
  last_draw_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  // Keras leaves the first step (graph tracing there) out of the per-step time.
  double per_step = 0.0;
  if (current > 1) per_step = std::chrono::duration<double>(now - first_step_done_).count() / double(current - 1);
  else if (current == 1) per_step = elapsed;
  std::string step_time;
  if (per_step >= 1) step_time = fmt("%.0f", per_step) + "s/step";
  else if (per_step >= 1e-3) step_time = fmt("%.0f", per_step * 1e3) + "ms/step";
  else step_time = fmt("%.0f", per_step * 1e6) + "us/step";
  std::string metrics;
  for (const std::string& k : order_)
    if (const auto it = values.find(k); it != values.end()) metrics += " - " + k + ": " + format_value(it->second);

  std::string line;
  if (verbose_ == 2) {
    line = std::to_string(current) + "/" + std::to_string(target_) + " - " + fmt("%.0f", elapsed) + "s - " +
           step_time + metrics + "\n";
    std::fputs(line.c_str(), out_);
    std::fflush(out_);
    return;
  }
  const std::string tgt = std::to_string(target_);
  std::string cur = std::to_string(current);
  if (cur.size() < tgt.size()) cur = std::string(tgt.size() - cur.size(), ' ') + cur;
  const int done = target_ > 0 ? static_cast<int>(kWidth * double(current) / double(target_)) : kWidth;
  std::string green, grey;
  for (int i = 0; i < done; ++i) green += kBar;
  for (int i = done; i < kWidth; ++i) grey += kBar;
  std::string time_part;
  if (finalize) {
    time_part = fmt("%.0f", elapsed) + "s";
  } else {
    double eta = per_step * double(target_ - current);
    time_part = format_eta(eta);
  }
  if (dynamic_) {
    line = "\x1b[1m" + cur + "/" + tgt + "\x1b[0m ";
    if (!green.empty()) line += "\x1b[32m" + green + "\x1b[0m";
    if (!grey.empty()) line += "\x1b[37m" + grey + "\x1b[0m";
    line += " \x1b[1m" + time_part + "\x1b[0m " + step_time + metrics;
  } else {
    line = cur + "/" + tgt + " " + green + grey + " " + time_part + " " + step_time + metrics;
  }
  if (dynamic_) {
    std::string erase = "\r";
    if (line.size() < previous_width_) line += std::string(previous_width_ - line.size(), ' ');
    previous_width_ = line.size();
    std::fputs((erase + line).c_str(), out_);
    if (finalize) std::fputs("\n", out_);
  } else {
    std::fputs((line + "\n").c_str(), out_);
  }
  std::fflush(out_);
}

}  // namespace attn
