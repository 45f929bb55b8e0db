// Adam in one pass over weights, moments and gradient. tfjs's optimizer runs about ten
// element-wise kernels per tensor, each a pass over memory, and on wasm that was a tenth
// of a ResNet-50 training step, taken on the main thread while the gradient workers wait.
#include "adam.h"

#include <cmath>

namespace covnet {

void adamStep(long count, const float* w, const float* m, const float* v, const float* g, float rate, float beta1, float beta2, float epsilon, float correction1, float correction2, float* wOut, float* mOut, float* vOut) {
  const float keep1 = 1.0f - beta1;
  const float keep2 = 1.0f - beta2;
  for (long i = 0; i < count; i++) {
    const float first = beta1 * m[i] + keep1 * g[i];
    const float second = beta2 * v[i] + keep2 * g[i] * g[i];
    mOut[i] = first;
    vOut[i] = second;
    wOut[i] = w[i] - rate * ((first / correction1) / (std::sqrt(second / correction2) + epsilon));
  }
}

}  // namespace covnet
