// The gradient of relu, built with AVX2 like the other kernels.
#pragma once

namespace covnet {

// dx = dy * step(x), where step is 1 above 0, 0 at or below 0 and NaN at NaN, as
// TensorFlow.js's own relu gradient computes it, product by product.
void reluGrad(long count, const float* dy, const float* x, float* dx);

}  // namespace covnet
