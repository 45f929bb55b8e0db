// Convolution kernels for float32 NHWC tensors, built for x86-64 twice: with AVX2 and
// FMA, and with AVX-512. Callers must check that the CPU has AVX2 and FMA (see addon.cc)
// before calling any of them. The entry points below use AVX-512 only where the CPU has it.
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

// The kernels of one build: namespace avx2 or avx512.
#define COVNET_CONV_KERNELS                                                                                               \
  void conv2dForward(const ConvShape& s, const float* x, const float* w, const float* bias, Activation act, float* y); \
  void conv2dBackpropInput(const ConvShape& s, const float* dy, const float* w, float* dx);                           \
  void conv2dBackpropFilter(const ConvShape& s, const float* x, const float* dy, float* dw);                          \
  void sgemm(int m, int n, int k, const float* a, long rsa, long csa, const float* b, long rsb, long csb, float* c, long ldc, bool accumulate);

namespace avx2 {
COVNET_CONV_KERNELS
}
namespace avx512 {
COVNET_CONV_KERNELS
}

// Whether this CPU and its operating system run AVX-512 (AVX512F) instructions.
bool cpuHasAvx512();
// Makes the entry points below use the AVX-512 build (true) or the AVX2 build (false) in
// every thread of the process. Returns false, changing nothing, when AVX-512 is asked
// for on a CPU without it. At load the AVX-512 build is chosen where the CPU has it.
bool useAvx512(bool enabled);
bool usingAvx512();

// y = activation(conv(x, w) + bias), where bias may be null.
void conv2dForward(const ConvShape& s, const float* x, const float* w, const float* bias, Activation act, float* y);
// dx = the gradient of conv(x, w) with respect to x, for output gradient dy.
void conv2dBackpropInput(const ConvShape& s, const float* dy, const float* w, float* dx);
// dw = the gradient of conv(x, w) with respect to w, for output gradient dy.
void conv2dBackpropFilter(const ConvShape& s, const float* x, const float* dy, float* dw);

}  // namespace covnet
