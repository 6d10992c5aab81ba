// Adam's elementwise update (keras/src/optimizers/adam.py, float32, the "epsilon hat"
// form: m and v uncorrected, alpha carries the bias correction, epsilon outside the sqrt):
//   m += (g - m) * (1 - beta_1);  v += (g*g - v) * (1 - beta_2);
//   v_hat = max(v_hat, v) (amsgrad only);  w -= (m * alpha) / (sqrt(v or v_hat) + epsilon)
// It runs over every parameter each step, so it is SIMD with run-time dispatch. Every
// operation is correctly rounded and none is fused, so all targets give the same bits
// as adam_update_reference().
#pragma once

#include <cstdint>

namespace attn::kernels {

struct AdamStep {
  float alpha;              // learning_rate * sqrt(1 - beta_2^t) / (1 - beta_1^t)
  float epsilon;
  float one_minus_beta_1;
  float one_minus_beta_2;
};

// v_hat may be null (no amsgrad).
void adam_update(const AdamStep& step, float* w, const float* g, float* m, float* v, float* v_hat, int64_t n);
void adam_update_reference(const AdamStep& step, float* w, const float* g, float* m, float* v, float* v_hat,
                           int64_t n);

}  // namespace attn::kernels
