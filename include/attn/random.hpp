// Seeding: one seed fixes initial weights, shuffling and dropout (like
// keras.utils.set_random_seed). Weight initialisers draw from a global generator at
// build time; fit() derives its shuffle and dropout streams from the same seed.
#pragma once

#include <cstdint>
#include <random>

namespace attn {

void set_random_seed(uint64_t seed);
uint64_t random_seed();
// The generator weight initialisers draw from (reseeded by set_random_seed).
std::mt19937_64& global_generator();

// A counter-based hash: the same (key, a, b, c) always gives the same 64 bits,
// whichever thread asks. Used for dropout masks.
inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
// hash_combine in two parts, for loops over b with (key, a) fixed: the prefix once, then
// hash_combine_from(prefix, b, c) per element gives hash_combine(key, a, b, c) bit for bit.
inline uint64_t hash_prefix(uint64_t key, uint64_t a) { return mix64(key ^ mix64(a)); }
inline uint64_t hash_combine_from(uint64_t prefix, uint64_t b, uint64_t c = 0) {
  return mix64(mix64(prefix ^ b) ^ c);
}
inline uint64_t hash_combine(uint64_t key, uint64_t a, uint64_t b = 0, uint64_t c = 0) {
  return hash_combine_from(hash_prefix(key, a), b, c);
}
// Uniform in [0, 1) from 24 bits of a hash.
inline float hash_uniform(uint64_t h) { return static_cast<float>(h >> 40) * (1.0f / 16777216.0f); }

}  // namespace attn
