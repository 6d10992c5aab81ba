// Keras 3's progress bar (keras/src/utils/progbar.py): verbose 1 redraws a bar on a
// terminal and prints one plain line per epoch otherwise; verbose 2 prints one line
// at the end of each epoch. Values as .4f (or .4e when tiny). Keys in the order Keras shows
// them: as first seen (Keras keeps the order of its logs dict), the step's metrics sorted, then
// the validation ones, then what callbacks added at the epoch's end ("learning_rate").
#pragma once

#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

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
  std::vector<std::string> order_;  // keys as first seen
};

}  // namespace attn
