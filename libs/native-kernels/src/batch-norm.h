// Batch normalisation over the leading axes of a channels-last tensor, in training mode:
// the statistics are those of the batch. Built with AVX2 and FMA like conv-avx2.cc.
#pragma once

namespace covnet {

// y = (x - mean) / sqrt(variance + epsilon) * gamma + beta per channel, where mean and
// variance (biased, as in training) are those of x over its rows. Both are written out.
void batchNormTraining(long rows, int channels, const float* x, const float* gamma, const float* beta, float epsilon, float* y, float* mean, float* variance);

// Gradients of batchNormTraining with respect to x, gamma and beta, for output gradient
// dy, given the mean and variance it returned.
void batchNormTrainingGrad(long rows, int channels, const float* dy, const float* x, const float* gamma, const float* mean, const float* variance, float epsilon, float* dx, float* dgamma, float* dbeta);

}  // namespace covnet

namespace covnet {

// y = (x - mean) / sqrt(variance + epsilon) * scale + offset per channel, with fixed
// statistics (inference). Offset and scale may be null (0 and 1).
void batchNormInference(long rows, int channels, const float* x, const float* mean, const float* variance, const float* offset, const float* scale, float epsilon, float* y);

// Geometry of a 2-D max pool: input [n, ih, iw, c], output [n, oh, ow, c], window fh x fw.
struct PoolShape {
  int n, ih, iw, c;
  int oh, ow;
  int fh, fw;
  int strideH, strideW;
  int padTop, padLeft;
};

// dx = the gradient of a max pool of x for output gradient dy: each output's gradient goes
// to the first largest input of its window in row-major order, as tfjs's kernels do.
void maxPoolGrad(const PoolShape& s, const float* dy, const float* x, float* dx);

}  // namespace covnet
