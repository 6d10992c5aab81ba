// Keras 3's progress bar (keras/src/utils/progbar.py): verbose 1 redraws a bar on a
// terminal and prints one plain line per epoch otherwise; verbose 2 prints one line
// at the end of each epoch. Keys are shown sorted, values as .4f (or .4e when tiny).
#pragma once

#include <chrono>
#include <cstdio>
#include <map>
#include <string>

namespace attn {

class Progbar {
 public:
  Progbar(int64_t target, int verbose, std::FILE* out = stdout);
  // Shows the state after `current` steps; finalize prints the epoch's last line.
  void update(int64_t current, const std::map<std::string, double>& values, bool finalize = false);

  static std::string format_value(double v);
  static std::string format_eta(double seconds);

 private:
  int64_t target_;
  int verbose_;
  std::FILE* out_;
  bool dynamic_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point first_step_done_;
  std::chrono::steady_clock::time_point last_draw_;
  bool first_step_seen_ = false;
  size_t previous_width_ = 0;
};

}  // namespace attn
