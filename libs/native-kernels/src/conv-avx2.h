// Convolution kernels for float32 NHWC tensors, built for x86-64 with AVX2 and FMA.
// Callers must check that the CPU has both (see addon.cc) before calling any of them.
#pragma once

namespace covnet {

// Geometry of one 2-D convolution: input [n, ih, iw, ic], filter [kh, kw, ic, oc],
// output [n, oh, ow, oc]. padTop and padLeft are the zero rows and columns before the
// input (the others follow from the output size).
struct ConvShape {
  int n, ih, iw, ic;
  int oh, ow, oc;
  int kh, kw;
  int strideH, strideW;
  int padTop, padLeft;
};

enum class Activation { Linear = 0, Relu = 1 };

// y = activation(conv(x, w) + bias), where bias may be null.
void conv2dForward(const ConvShape& s, const float* x, const float* w, const float* bias, Activation act, float* y);
// dx = the gradient of conv(x, w) with respect to x, for output gradient dy.
void conv2dBackpropInput(const ConvShape& s, const float* dy, const float* w, float* dx);
// dw = the gradient of conv(x, w) with respect to w, for output gradient dy.
void conv2dBackpropFilter(const ConvShape& s, const float* x, const float* dy, float* dw);
// c[m, n] (+)= sum over k of a(i, k) * b(k, j), with a(i, k) = a[i * rsa + k * csa] and
// b(k, j) = b[k * rsb + j * csb], and c is row-major with row stride ldc.
void sgemm(int m, int n, int k, const float* a, long rsa, long csa, const float* b, long rsb, long csb, float* c, long ldc, bool accumulate);

}  // namespace covnet
