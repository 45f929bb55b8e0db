// One Adam step over a parameter tensor, built with AVX2 and FMA like conv-avx2.cc.
#pragma once

namespace covnet {

// Writes the new first and second moments and the new weights of one Adam step:
// m' = beta1 m + (1 - beta1) g, v' = beta2 v + (1 - beta2) g^2 and
// w' = w - rate (m' / correction1) / (sqrt(v' / correction2) + epsilon), where the
// corrections are 1 - beta^t for step t. An output may be the very array it replaces
// (wOut = w), because each value is read before it is written, but may not overlap any
// other argument.
void adamStep(long count, const float* w, const float* m, const float* v, const float* g, float rate, float beta1, float beta2, float epsilon, float correction1, float correction2, float* wOut, float* mOut, float* vOut);

// adamStep with the gradient g = float32(parts[0] + ... + parts[partCount - 1]) / divisor,
// each addition and the division rounded to float32 in that order, and the work split
// over `threads` threads. Each part has `count` values.
void adamStepMean(long count, const float* w, const float* m, const float* v, const float* const* parts, int partCount, float divisor, float rate, float beta1, float beta2, float epsilon,
                  float correction1, float correction2, float* wOut, float* mOut, float* vOut, int threads);

}  // namespace covnet
