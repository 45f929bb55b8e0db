// Batch normalisation in training mode as three passes over the activations forward and
// two backward. tfjs's layer computes the same with about ten separate element-wise
// kernels and reductions each way, each a full pass over memory. Sums are accumulated in
// double, so the statistics do not depend on the batch size's rounding.
#include "batch-norm.h"

#include <algorithm>
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

namespace covnet {

void batchNormInference(long rows, int channels, const float* x, const float* mean, const float* variance, const float* offset, const float* scale, float epsilon, float* y) {
  std::vector<float> factor(channels), shift(channels);
  for (int c = 0; c < channels; c++) {
    factor[c] = static_cast<float>((scale == nullptr ? 1.0 : scale[c]) / std::sqrt(static_cast<double>(variance[c]) + epsilon));
    shift[c] = offset == nullptr ? 0.0f : offset[c];
  }
  for (long r = 0; r < rows; r++) {
    const float* in = x + r * channels;
    float* out = y + r * channels;
    for (int c = 0; c < channels; c++) out[c] = (in[c] - mean[c]) * factor[c] + shift[c];
  }
}

void maxPoolGrad(const PoolShape& s, const float* dy, const float* x, float* dx) {
  const size_t inputSize = static_cast<size_t>(s.n) * s.ih * s.iw * s.c;
  std::fill(dx, dx + inputSize, 0.0f);
  std::vector<float> best(s.c);
  std::vector<long> where(s.c);
  for (int n = 0; n < s.n; n++) {
    for (int oy = 0; oy < s.oh; oy++) {
      for (int ox = 0; ox < s.ow; ox++) {
        std::fill(best.begin(), best.end(), -INFINITY);
        std::fill(where.begin(), where.end(), -1L);
        for (int ky = 0; ky < s.fh; ky++) {
          // In long: a stride near 2^31 times a row index overflows int.
          const long iy = static_cast<long>(oy) * s.strideH - s.padTop + ky;
          if (iy < 0 || iy >= s.ih) continue;
          for (int kx = 0; kx < s.fw; kx++) {
            const long ix = static_cast<long>(ox) * s.strideW - s.padLeft + kx;
            if (ix < 0 || ix >= s.iw) continue;
            const long base = ((static_cast<long>(n) * s.ih + iy) * s.iw + ix) * s.c;
            const float* in = x + base;
            for (int c = 0; c < s.c; c++) {
              // Strictly greater: the first maximum wins, and NaN never does.
              if (in[c] > best[c]) {
                best[c] = in[c];
                where[c] = base + c;
              }
            }
          }
        }
        const float* g = dy + ((static_cast<long>(n) * s.oh + oy) * s.ow + ox) * s.c;
        for (int c = 0; c < s.c; c++) {
          if (where[c] >= 0) dx[where[c]] += g[c];
        }
      }
    }
  }
}

}  // namespace covnet
