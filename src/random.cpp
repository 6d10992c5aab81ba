// The global seed and the generator weight initialisers draw from.
#include "attn/random.hpp"

namespace attn {
namespace {
uint64_t g_seed = 1337;
std::mt19937_64& generator_instance() {
  static std::mt19937_64 gen(g_seed);
  return gen;
}
}  // namespace

void set_random_seed(uint64_t seed) {
  g_seed = seed;
  generator_instance().seed(seed);
}
uint64_t random_seed() { return g_seed; }
std::mt19937_64& global_generator() { return generator_instance(); }

}  // namespace attn
