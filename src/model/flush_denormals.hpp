// Floating-point mode of the threads that compute: subnormal results and inputs read as zero,
// as TensorFlow sets on every thread that runs its kernels (tensorflow/core/platform/denormal.h,
// used by its thread pools and around each kernel's Compute). Keras on TensorFlow therefore
// never computes with subnormals, and neither do we.
//
// It is also a matter of speed. Adam's moments decay geometrically wherever a gradient is
// exactly zero (a dead relu unit's weights): after about 900 steps m is below 1e-38, and on
// Intel cores every operation on a subnormal takes a microcode assist of ~100 cycles. On an
// Intel Xeon host the reference model's training step took 520-620 us on one thread with
// subnormals and 210 us without (build/bench_train_step); AMD hosts lose little.
//
// x86 only (MXCSR's FTZ and DAZ bits); elsewhere the guard does nothing.
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace attn {

class ScopedFlushDenormals {
 public:
#if defined(__x86_64__) || defined(__i386__)
  // MXCSR bit 15 flushes subnormal results to zero (FTZ), bit 6 reads subnormal inputs as zero
  // (DAZ).
  static constexpr unsigned kFlushBits = 0x8040u;
  ScopedFlushDenormals() : saved_(_mm_getcsr()) {
    if ((saved_ & kFlushBits) != kFlushBits) _mm_setcsr(saved_ | kFlushBits);
  }
  ~ScopedFlushDenormals() {
    if ((saved_ & kFlushBits) != kFlushBits) _mm_setcsr(saved_);
  }
  // Whether the calling thread flushes now.
  static bool active() { return (_mm_getcsr() & kFlushBits) == kFlushBits; }

 private:
  unsigned saved_;
#else
  ScopedFlushDenormals() = default;
  static bool active() { return false; }
#endif

 public:
  ScopedFlushDenormals(const ScopedFlushDenormals&) = delete;
  ScopedFlushDenormals& operator=(const ScopedFlushDenormals&) = delete;
};

}  // namespace attn
