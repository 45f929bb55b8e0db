// Batch normalisation in training mode as three passes over the activations forward and
// two backward. tfjs's layer computes the same with about ten separate element-wise
// kernels and reductions each way, each a full pass over memory. Sums are accumulated in
// double, so the statistics do not depend on the batch size's rounding.
#include "batch-norm.h"

#include <cmath>
#include <vector>

namespace covnet {

void batchNormTraining(long rows, int channels, const float* x, const float* gamma, const float* beta, float epsilon, float* y, float* mean, float* variance) {
  std::vector<double> sum(channels, 0.0);
  for (long r = 0; r < rows; r++) {
    const float* row = x + r * channels;
    for (int c = 0; c < channels; c++) sum[c] += row[c];
  }
  std::vector<float> m(channels);
  for (int c = 0; c < channels; c++) m[c] = static_cast<float>(sum[c] / rows);
  // The second pass sums squared deviations from the mean, which stays accurate when the
  // mean is large against the spread.
  std::vector<double> squares(channels, 0.0);
  for (long r = 0; r < rows; r++) {
    const float* row = x + r * channels;
    for (int c = 0; c < channels; c++) {
      const double d = static_cast<double>(row[c]) - m[c];
      squares[c] += d * d;
    }
  }
  std::vector<float> scale(channels);
  for (int c = 0; c < channels; c++) {
    mean[c] = m[c];
    variance[c] = static_cast<float>(squares[c] / rows);
    scale[c] = static_cast<float>(gamma[c] / std::sqrt(static_cast<double>(variance[c]) + epsilon));
  }
  // (x - mean) * scale + beta, not x * scale + (beta - mean * scale): with a mean large
  // against the spread, the second form cancels two large terms and loses digits.
  for (long r = 0; r < rows; r++) {
    const float* in = x + r * channels;
    float* out = y + r * channels;
    for (int c = 0; c < channels; c++) out[c] = (in[c] - m[c]) * scale[c] + beta[c];
  }
}

void batchNormTrainingGrad(long rows, int channels, const float* dy, const float* x, const float* gamma, const float* mean, const float* variance, float epsilon, float* dx, float* dgamma, float* dbeta) {
  std::vector<double> sumDy(channels, 0.0), sumDyCentered(channels, 0.0);
  for (long r = 0; r < rows; r++) {
    const float* g = dy + r * channels;
    const float* in = x + r * channels;
    for (int c = 0; c < channels; c++) {
      sumDy[c] += g[c];
      sumDyCentered[c] += static_cast<double>(g[c]) * (in[c] - mean[c]);
    }
  }
  // dx = gamma * invStd * (dy - mean(dy) - xHat * mean(dy * xHat)), written as
  // dx = a * dy + b * (x - mean) + k per channel (centred for the reason given above).
  std::vector<float> a(channels), b(channels), k(channels);
  for (int c = 0; c < channels; c++) {
    const double invStd = 1.0 / std::sqrt(static_cast<double>(variance[c]) + epsilon);
    dbeta[c] = static_cast<float>(sumDy[c]);
    dgamma[c] = static_cast<float>(sumDyCentered[c] * invStd);
    const double meanDy = sumDy[c] / rows;
    const double slope = sumDyCentered[c] * invStd * invStd / rows;
    a[c] = static_cast<float>(gamma[c] * invStd);
    b[c] = static_cast<float>(-gamma[c] * invStd * slope);
    k[c] = static_cast<float>(-gamma[c] * invStd * meanDy);
  }
  for (long r = 0; r < rows; r++) {
    const float* g = dy + r * channels;
    const float* in = x + r * channels;
    float* out = dx + r * channels;
    for (int c = 0; c < channels; c++) out[c] = a[c] * g[c] + b[c] * (in[c] - mean[c]) + k[c];
  }
}

}  // namespace covnet
