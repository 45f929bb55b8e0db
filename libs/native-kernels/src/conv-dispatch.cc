// Chooses between the AVX2 and the AVX-512 builds of the convolution kernels. This file is
// built without either instruction set, like addon.cc.
#include <atomic>

#include "conv-avx2.h"

namespace covnet {
namespace {

std::atomic<bool> wide{cpuHasAvx512()};

}  // namespace

bool cpuHasAvx512() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

bool useAvx512(bool enabled) {
  if (enabled && !cpuHasAvx512()) return false;
  wide.store(enabled);
  return true;
}

bool usingAvx512() { return wide.load(); }

void conv2dForward(const ConvShape& s, const float* x, const float* w, const float* bias, Activation act, float* y) {
  if (wide.load()) {
    avx512::conv2dForward(s, x, w, bias, act, y);
  } else {
    avx2::conv2dForward(s, x, w, bias, act, y);
  }
}

void conv2dBackpropInput(const ConvShape& s, const float* dy, const float* w, float* dx) {
  if (wide.load()) {
    avx512::conv2dBackpropInput(s, dy, w, dx);
  } else {
    avx2::conv2dBackpropInput(s, dy, w, dx);
  }
}

void conv2dBackpropFilter(const ConvShape& s, const float* x, const float* dy, float* dw) {
  if (wide.load()) {
    avx512::conv2dBackpropFilter(s, x, dy, dw);
  } else {
    avx2::conv2dBackpropFilter(s, x, dy, dw);
  }
}

}  // namespace covnet
