// Adam in one pass over weights, moments and gradient. tfjs's optimizer runs about ten
// element-wise kernels per tensor, each a pass over memory, and on wasm that was a tenth
// of a ResNet-50 training step, taken on the main thread while the gradient workers wait.
#include "adam.h"

#include <algorithm>
#include <cmath>
#include <system_error>
#include <thread>
#include <vector>

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

namespace {

// Values of the mean gradient computed at once: 16 KB, which stays in the L1 cache
// between its computation and the Adam pass that reads it.
constexpr long kChunk = 4096;

void adamStepMeanRange(long begin, long end, const float* w, const float* m, const float* v, const float* const* parts, int partCount, float divisor, float rate, float beta1, float beta2,
                       float epsilon, float correction1, float correction2, float* wOut, float* mOut, float* vOut) {
  float g[kChunk];
  for (long start = begin; start < end; start += kChunk) {
    const long n = std::min(kChunk, end - start);
    for (long i = 0; i < n; i++) {
      float sum = parts[0][start + i];
      for (int p = 1; p < partCount; p++) sum = sum + parts[p][start + i];
      g[i] = sum / divisor;
    }
    adamStep(n, w + start, m + start, v + start, g, rate, beta1, beta2, epsilon, correction1, correction2, wOut + start, mOut + start, vOut + start);
  }
}

}  // namespace

void adamStepMean(long count, const float* w, const float* m, const float* v, const float* const* parts, int partCount, float divisor, float rate, float beta1, float beta2, float epsilon,
                  float correction1, float correction2, float* wOut, float* mOut, float* vOut, int threads) {
  // A step is bound by memory bandwidth, which one core does not use up. The gradient
  // workers are idle while it runs, so their cores take a share of each large tensor.
  const long perThread = std::max(kChunk, (count + threads - 1) / std::max(threads, 1));
  std::vector<std::thread> helpers;
  for (long begin = perThread; begin < count; begin += perThread) {
    const long end = std::min(count, begin + perThread);
    try {
      helpers.emplace_back(adamStepMeanRange, begin, end, w, m, v, parts, partCount, divisor, rate, beta1, beta2, epsilon, correction1, correction2, wOut, mOut, vOut);
    } catch (const std::system_error&) {
      // No thread to be had: this thread does the range, with the same result.
      adamStepMeanRange(begin, end, w, m, v, parts, partCount, divisor, rate, beta1, beta2, epsilon, correction1, correction2, wOut, mOut, vOut);
    }
  }
  adamStepMeanRange(0, std::min(count, perThread), w, m, v, parts, partCount, divisor, rate, beta1, beta2, epsilon, correction1, correction2, wOut, mOut, vOut);
  for (std::thread& helper : helpers) helper.join();
}

}  // namespace covnet
