// Batch normalisation over the leading axes of a channels-last tensor, in training mode:
// the statistics are those of the batch. Built with AVX2 and FMA like conv-avx2.cc.
#pragma once

namespace covnet {

// y = (x - mean) / sqrt(variance + epsilon) * gamma + beta per channel, where mean and
// variance (biased, as in training) are those of x over its rows; both are written out.
void batchNormTraining(long rows, int channels, const float* x, const float* gamma, const float* beta, float epsilon, float* y, float* mean, float* variance);

// Gradients of batchNormTraining with respect to x, gamma and beta, for output gradient
// dy, given the mean and variance it returned.
void batchNormTrainingGrad(long rows, int channels, const float* dy, const float* x, const float* gamma, const float* mean, const float* variance, float epsilon, float* dx, float* dgamma, float* dbeta);

}  // namespace covnet
