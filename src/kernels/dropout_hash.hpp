// Deterministic dropout mask for the attention weights: keep(seed, sample, i, j) is a pure
// function, so the fast and reference kernels, and forward and backward, agree bit for bit
// without storing a tq x tv mask. Not a cryptographic or Keras-identical RNG (Keras' stream
// cannot be reproduced outside the framework anyway).
#pragma once

#include <cstdint>

namespace attn::kernels {

// splitmix64 finaliser: a cheap bijective mixer with good avalanche.
inline uint64_t dropout_mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in [0, 1) with 24 bits, from (seed, global sample index, query row i, key column j).
inline float dropout_uniform(uint64_t seed, int64_t sample, int64_t i, int64_t j) {
  uint64_t h = dropout_mix64(seed ^ dropout_mix64(static_cast<uint64_t>(sample)));
  h = dropout_mix64(h ^ (static_cast<uint64_t>(i) << 32) ^ static_cast<uint64_t>(j));
  return static_cast<float>(h >> 40) * (1.0f / 16777216.0f);
}

// Multiplier of weight (i, j): 0 when dropped, 1 / (1 - rate) when kept (inverted dropout).
inline float dropout_factor(float rate, uint64_t seed, int64_t sample, int64_t i, int64_t j) {
  if (rate <= 0.0f) return 1.0f;
  if (rate >= 1.0f) return 0.0f;
  return dropout_uniform(seed, sample, i, j) >= rate ? 1.0f / (1.0f - rate) : 0.0f;
}

}  // namespace attn::kernels
