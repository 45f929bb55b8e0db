// Node-API entry points of the native kernels. This file is built without
// AVX2 flags, so it can run on any x86-64 CPU and report why the kernels are unusable
// instead of crashing on an illegal instruction.
#include <node_api.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "adam.h"
#include "relu.h"
#include "batch-norm.h"
#include "conv-avx2.h"
#include "fedavg-fold.h"

namespace {

// F16C converts float16 updates in the FedAvg fold. The AVX2 CPUs of Intel and AMD all have it.
bool cpuSupportsKernels() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

struct Floats {
  float* data = nullptr;
  size_t length = 0;
};

// Reads a Float32Array argument, or throws a JS TypeError naming `name`.
bool getFloats(napi_env env, napi_value value, const char* name, Floats& out) {
  bool isTyped = false;
  napi_is_typedarray(env, value, &isTyped);
  napi_typedarray_type type;
  void* data = nullptr;
  if (isTyped && napi_get_typedarray_info(env, value, &type, &out.length, &data, nullptr, nullptr) == napi_ok && type == napi_float32_array) {
    out.data = static_cast<float*>(data);
    return true;
  }
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", (std::string(name) + " must be a Float32Array").c_str());
  return false;
}

// Whether the product of `count` positive values is at most 2^31 - 1.
bool fitsInt32(const int32_t* values, int count) {
  int64_t product = 1;
  for (int i = 0; i < count; i++) {
    product *= values[i];
    if (product > INT32_MAX) return false;
  }
  return true;
}

// Reads a shape of `count` Int32 values whose last two are padding: those may be 0, and
// every extent and stride before them must be positive.
bool getGeometry(napi_env env, napi_value value, size_t count, const int32_t*& out) {
  bool isTyped = false;
  napi_is_typedarray(env, value, &isTyped);
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (!isTyped || napi_get_typedarray_info(env, value, &type, &length, &data, nullptr, nullptr) != napi_ok || type != napi_int32_array || length != count) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", ("shape must be an Int32Array of " + std::to_string(count) + " values").c_str());
    return false;
  }
  out = static_cast<const int32_t*>(data);
  for (size_t i = 0; i < count; i++) {
    if (i + 2 >= count ? out[i] < 0 : out[i] <= 0) {
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", ("shape value " + std::to_string(i) + " is " + std::to_string(out[i])).c_str());
      return false;
    }
  }
  return true;
}

// Reads exactly N arguments, or throws a TypeError that shows `usage`.
template <size_t N>
bool getArguments(napi_env env, napi_callback_info info, napi_value (&argv)[N], const char* usage) {
  size_t argc = N;
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc == N) return true;
  napi_throw_type_error(env, nullptr, (std::string(usage) + " takes " + std::to_string(N) + " arguments, not " + std::to_string(argc)).c_str());
  return false;
}

// Reads an integer from `min` to `max`, both within int64_t. napi_get_value_int32 would take
// 1.9 as 1 and 2^32 + 2 as 2, and napi_get_value_int64 would take 1.9 as 1.
template <typename T>
bool getInteger(napi_env env, napi_value value, T min, T max, T& out) {
  double number = 0;
  if (napi_get_value_double(env, value, &number) != napi_ok || !(number >= static_cast<double>(min) && number <= static_cast<double>(max)) || std::floor(number) != number) return false;
  out = static_cast<T>(number);
  return true;
}

// Reads an integer from 1 to `max`.
bool getCount(napi_env env, napi_value value, int32_t max, int32_t& out) { return getInteger<int32_t>(env, value, 1, max, out); }

bool getShape(napi_env env, napi_value value, covnet::ConvShape& s) {
  const int32_t* v = nullptr;
  if (!getGeometry(env, value, 13, v)) return false;
  s = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12]};
  // The kernels index with 32-bit counts, and a product that wrapped around would let a
  // short array pass the length checks.
  const int32_t input[] = {s.n, s.ih, s.iw, s.ic};
  const int32_t output[] = {s.n, s.oh, s.ow, s.oc};
  const int32_t filter[] = {s.kh, s.kw, s.ic, s.oc};
  if (!fitsInt32(input, 4) || !fitsInt32(output, 4) || !fitsInt32(filter, 4)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "the input, output or filter of this convolution has more than 2^31 - 1 values");
    return false;
  }
  return true;
}

bool needs(napi_env env, const Floats& f, const char* name, size_t count) {
  if (f.length >= count) return true;
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", (std::string(name) + " holds " + std::to_string(f.length) + " values, the convolution needs " + std::to_string(count)).c_str());
  return false;
}

size_t inputSize(const covnet::ConvShape& s) { return static_cast<size_t>(s.n) * s.ih * s.iw * s.ic; }
size_t outputSize(const covnet::ConvShape& s) { return static_cast<size_t>(s.n) * s.oh * s.ow * s.oc; }
size_t filterSize(const covnet::ConvShape& s) { return static_cast<size_t>(s.kh) * s.kw * s.ic * s.oc; }

template <typename Body>
napi_value guarded(napi_env env, Body body) {
  try {
    body();
  } catch (const std::exception& e) {
    napi_throw_error(env, "ERR_NATIVE_KERNEL", e.what());
  }
  return nullptr;
}

napi_value Conv2dForward(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (!getArguments(env, info, argv, "conv2dForward(x, filter, bias, y, shape, activation)")) return nullptr;
  covnet::ConvShape s;
  Floats x, w, y, bias;
  if (!getFloats(env, argv[0], "x", x) || !getFloats(env, argv[1], "filter", w) || !getFloats(env, argv[3], "y", y) || !getShape(env, argv[4], s)) return nullptr;
  napi_valuetype biasType;
  napi_typeof(env, argv[2], &biasType);
  if (biasType != napi_null && (!getFloats(env, argv[2], "bias", bias) || !needs(env, bias, "bias", s.oc))) return nullptr;
  int32_t act = 0;
  if (!getInteger<int32_t>(env, argv[5], 0, 1, act)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "activation must be 0 (linear) or 1 (relu)");
    return nullptr;
  }
  if (!needs(env, x, "x", inputSize(s)) || !needs(env, w, "filter", filterSize(s)) || !needs(env, y, "y", outputSize(s))) return nullptr;
  return guarded(env, [&] { covnet::conv2dForward(s, x.data, w.data, bias.data, static_cast<covnet::Activation>(act), y.data); });
}

napi_value Conv2dBackpropInput(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!getArguments(env, info, argv, "conv2dBackpropInput(dy, filter, dx, shape)")) return nullptr;
  covnet::ConvShape s;
  Floats dy, w, dx;
  if (!getFloats(env, argv[0], "dy", dy) || !getFloats(env, argv[1], "filter", w) || !getFloats(env, argv[2], "dx", dx) || !getShape(env, argv[3], s)) return nullptr;
  if (!needs(env, dy, "dy", outputSize(s)) || !needs(env, w, "filter", filterSize(s)) || !needs(env, dx, "dx", inputSize(s))) return nullptr;
  return guarded(env, [&] { covnet::conv2dBackpropInput(s, dy.data, w.data, dx.data); });
}

napi_value Conv2dBackpropFilter(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!getArguments(env, info, argv, "conv2dBackpropFilter(x, dy, dw, shape)")) return nullptr;
  covnet::ConvShape s;
  Floats x, dy, dw;
  if (!getFloats(env, argv[0], "x", x) || !getFloats(env, argv[1], "dy", dy) || !getFloats(env, argv[2], "dw", dw) || !getShape(env, argv[3], s)) return nullptr;
  if (!needs(env, x, "x", inputSize(s)) || !needs(env, dy, "dy", outputSize(s)) || !needs(env, dw, "dw", filterSize(s))) return nullptr;
  return guarded(env, [&] { covnet::conv2dBackpropFilter(s, x.data, dy.data, dw.data); });
}

// Reads rows and channels (positive integers) and epsilon from argv[0], argv[1] and argv[2].
bool getLayout(napi_env env, napi_value* argv, long& rows, int& channels, float& epsilon) {
  int64_t r = 0;
  int32_t c = 0;
  double e = 0;
  if (!getInteger<int64_t>(env, argv[0], 1, int64_t{1} << 53, r) || !getInteger<int32_t>(env, argv[1], 1, INT32_MAX, c) || napi_get_value_double(env, argv[2], &e) != napi_ok ||
      !(static_cast<float>(e) > 0) || !std::isfinite(static_cast<float>(e))) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "rows and channels must be positive integers and epsilon a positive number, finite in float32");
    return false;
  }
  if (r > INT32_MAX / c) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "rows times channels is more than 2^31 - 1 values");
    return false;
  }
  rows = static_cast<long>(r);
  channels = c;
  epsilon = static_cast<float>(e);
  return true;
}

napi_value BatchNormTraining(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  if (!getArguments(env, info, argv, "batchNormTraining(rows, channels, epsilon, x, gamma, beta, y, mean, variance)")) return nullptr;
  long rows;
  int channels;
  float epsilon;
  Floats x, gamma, beta, y, mean, variance;
  if (!getLayout(env, argv, rows, channels, epsilon) || !getFloats(env, argv[3], "x", x) || !getFloats(env, argv[4], "gamma", gamma) || !getFloats(env, argv[5], "beta", beta) ||
      !getFloats(env, argv[6], "y", y) || !getFloats(env, argv[7], "mean", mean) || !getFloats(env, argv[8], "variance", variance)) {
    return nullptr;
  }
  const size_t size = static_cast<size_t>(rows) * channels;
  if (!needs(env, x, "x", size) || !needs(env, y, "y", size) || !needs(env, gamma, "gamma", channels) || !needs(env, beta, "beta", channels) || !needs(env, mean, "mean", channels) ||
      !needs(env, variance, "variance", channels)) {
    return nullptr;
  }
  return guarded(env, [&] { covnet::batchNormTraining(rows, channels, x.data, gamma.data, beta.data, epsilon, y.data, mean.data, variance.data); });
}

napi_value BatchNormTrainingGrad(napi_env env, napi_callback_info info) {
  napi_value argv[11];
  if (!getArguments(env, info, argv, "batchNormTrainingGrad(rows, channels, epsilon, dy, x, gamma, mean, variance, dx, dgamma, dbeta)")) return nullptr;
  long rows;
  int channels;
  float epsilon;
  Floats dy, x, gamma, mean, variance, dx, dgamma, dbeta;
  if (!getLayout(env, argv, rows, channels, epsilon) || !getFloats(env, argv[3], "dy", dy) || !getFloats(env, argv[4], "x", x) || !getFloats(env, argv[5], "gamma", gamma) ||
      !getFloats(env, argv[6], "mean", mean) || !getFloats(env, argv[7], "variance", variance) || !getFloats(env, argv[8], "dx", dx) || !getFloats(env, argv[9], "dgamma", dgamma) ||
      !getFloats(env, argv[10], "dbeta", dbeta)) {
    return nullptr;
  }
  const size_t size = static_cast<size_t>(rows) * channels;
  if (!needs(env, dy, "dy", size) || !needs(env, x, "x", size) || !needs(env, dx, "dx", size) || !needs(env, gamma, "gamma", channels) || !needs(env, mean, "mean", channels) ||
      !needs(env, variance, "variance", channels) || !needs(env, dgamma, "dgamma", channels) || !needs(env, dbeta, "dbeta", channels)) {
    return nullptr;
  }
  return guarded(env, [&] { covnet::batchNormTrainingGrad(rows, channels, dy.data, x.data, gamma.data, mean.data, variance.data, epsilon, dx.data, dgamma.data, dbeta.data); });
}

napi_value BatchNormInference(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  if (!getArguments(env, info, argv, "batchNormInference(rows, channels, epsilon, x, mean, variance, offset, scale, y)")) return nullptr;
  long rows;
  int channels;
  float epsilon;
  Floats x, mean, variance, offset, scale, y;
  if (!getLayout(env, argv, rows, channels, epsilon) || !getFloats(env, argv[3], "x", x) || !getFloats(env, argv[4], "mean", mean) || !getFloats(env, argv[5], "variance", variance) ||
      !getFloats(env, argv[8], "y", y)) {
    return nullptr;
  }
  napi_valuetype type;
  napi_typeof(env, argv[6], &type);
  if (type != napi_null && (!getFloats(env, argv[6], "offset", offset) || !needs(env, offset, "offset", channels))) return nullptr;
  napi_typeof(env, argv[7], &type);
  if (type != napi_null && (!getFloats(env, argv[7], "scale", scale) || !needs(env, scale, "scale", channels))) return nullptr;
  const size_t size = static_cast<size_t>(rows) * channels;
  if (!needs(env, x, "x", size) || !needs(env, y, "y", size) || !needs(env, mean, "mean", channels) || !needs(env, variance, "variance", channels)) return nullptr;
  return guarded(env, [&] { covnet::batchNormInference(rows, channels, x.data, mean.data, variance.data, offset.data, scale.data, epsilon, y.data); });
}

napi_value MaxPoolGrad(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!getArguments(env, info, argv, "maxPoolGrad(dy, x, dx, shape)")) return nullptr;
  Floats dy, x, dx;
  if (!getFloats(env, argv[0], "dy", dy) || !getFloats(env, argv[1], "x", x) || !getFloats(env, argv[2], "dx", dx)) return nullptr;

  const int32_t* v = nullptr;
  if (!getGeometry(env, argv[3], 12, v)) return nullptr;
  const covnet::PoolShape s{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11]};
  const int32_t input[] = {s.n, s.ih, s.iw, s.c};
  const int32_t output[] = {s.n, s.oh, s.ow, s.c};
  if (!fitsInt32(input, 4) || !fitsInt32(output, 4)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "the input or output of this max pool has more than 2^31 - 1 values");
    return nullptr;
  }

  const size_t inputSize = static_cast<size_t>(s.n) * s.ih * s.iw * s.c;
  const size_t outputSize = static_cast<size_t>(s.n) * s.oh * s.ow * s.c;
  if (!needs(env, dy, "dy", outputSize) || !needs(env, x, "x", inputSize) || !needs(env, dx, "dx", inputSize)) return nullptr;
  return guarded(env, [&] { covnet::maxPoolGrad(s, dy.data, x.data, dx.data); });
}

// Reads Float32Array arguments that must all hold as many values as the first one, or
// throws a JS error naming the argument that does not.
bool getSameLengthFloats(napi_env env, const napi_value* values, const char* const* names, int count, Floats* out) {
  for (int i = 0; i < count; i++) {
    if (!getFloats(env, values[i], names[i], out[i])) return false;
    if (out[i].length != out[0].length) {
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", (std::string(names[i]) + " holds " + std::to_string(out[i].length) + " values, " + names[0] + " holds " + std::to_string(out[0].length)).c_str());
      return false;
    }
  }
  return true;
}

// An argument of an element-wise kernel: its values, its name in errors, and for an output
// the index of the one argument that it may replace in place, or -1.
struct Operand {
  Floats floats;
  std::string name;
  bool output = false;
  int replaces = -1;
};

bool shareMemory(const Floats& a, const Floats& b) {
  const uintptr_t aStart = reinterpret_cast<uintptr_t>(a.data);
  const uintptr_t bStart = reinterpret_cast<uintptr_t>(b.data);
  return a.length > 0 && b.length > 0 && aStart < bStart + b.length * sizeof(float) && bStart < aStart + a.length * sizeof(float);
}

// Throws a RangeError when an output shares memory with another argument, unless it is
// exactly the argument that it replaces. The kernels read some inputs after writing an
// output (Adam reads w after writing mOut), and threads write their ranges concurrently,
// so any other overlap gives wrong values without an error.
bool checkOutputsApart(napi_env env, const std::vector<Operand>& operands) {
  for (size_t o = 0; o < operands.size(); o++) {
    if (!operands[o].output) continue;
    for (size_t a = 0; a < operands.size(); a++) {
      if (a == o || !shareMemory(operands[o].floats, operands[a].floats)) continue;
      const bool inPlace = static_cast<int>(a) == operands[o].replaces && operands[a].floats.data == operands[o].floats.data;
      if (inPlace) continue;
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE",
                             (operands[o].name + " shares memory with " + operands[a].name + ": an output may only be the very array that it replaces, or apart from every other argument").c_str());
      return false;
    }
  }
  return true;
}

// Reads rate, beta1, beta2, epsilon and the two bias corrections of an Adam step.
bool getAdamNumbers(napi_env env, const napi_value* values, float (&out)[6]) {
  double number = 0;
  for (int i = 0; i < 6; i++) {
    // The step computes in float32, where 1e39 is infinite and 1e-46 is 0, so the checks apply to the float32 values.
    if (napi_get_value_double(env, values[i], &number) != napi_ok || !std::isfinite(static_cast<float>(number))) {
      napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "rate, beta1, beta2, epsilon and the corrections must be finite numbers in float32");
      return false;
    }
    out[i] = static_cast<float>(number);
  }
  if (!(out[5] > 0) || !(out[4] > 0)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "the bias corrections must be positive");
    return false;
  }
  return true;
}

napi_value AdamStep(napi_env env, napi_callback_info info) {
  napi_value argv[13];
  if (!getArguments(env, info, argv, "adamStep(w, m, v, g, wOut, mOut, vOut, rate, beta1, beta2, epsilon, correction1, correction2)")) return nullptr;
  Floats arrays[7];
  const char* names[7] = {"w", "m", "v", "g", "wOut", "mOut", "vOut"};
  float k[6];
  if (!getSameLengthFloats(env, argv, names, 7, arrays) || !getAdamNumbers(env, argv + 7, k)) return nullptr;
  std::vector<Operand> operands;
  for (int i = 0; i < 7; i++) operands.push_back({arrays[i], names[i], i >= 4, i >= 4 ? i - 4 : -1});
  if (!checkOutputsApart(env, operands)) return nullptr;
  return guarded(env, [&] {
    covnet::adamStep(static_cast<long>(arrays[0].length), arrays[0].data, arrays[1].data, arrays[2].data, arrays[3].data, k[0], k[1], k[2], k[3], k[4], k[5], arrays[4].data, arrays[5].data,
                     arrays[6].data);
  });
}

napi_value ReluGrad(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!getArguments(env, info, argv, "reluGrad(dy, x, dx)")) return nullptr;
  Floats arrays[3];
  const char* names[3] = {"dy", "x", "dx"};
  if (!getSameLengthFloats(env, argv, names, 3, arrays)) return nullptr;
  // dx[i] depends on dy[i] and x[i] only, so dx may replace either input in place.
  const int replaces = arrays[2].data == arrays[1].data ? 1 : 0;
  if (!checkOutputsApart(env, {{arrays[0], "dy"}, {arrays[1], "x"}, {arrays[2], "dx", true, replaces}})) return nullptr;
  return guarded(env, [&] { covnet::reluGrad(static_cast<long>(arrays[0].length), arrays[0].data, arrays[1].data, arrays[2].data); });
}

// At most this many gradient parts and threads: a part per gradient worker, a thread per core.
constexpr uint32_t kMaxParts = 256;

napi_value AdamStepMean(napi_env env, napi_callback_info info) {
  napi_value argv[15];
  if (!getArguments(env, info, argv, "adamStepMean(w, m, v, parts, divisor, wOut, mOut, vOut, rate, beta1, beta2, epsilon, correction1, correction2, threads)")) return nullptr;
  bool isArray = false;
  uint32_t partCount = 0;
  napi_is_array(env, argv[3], &isArray);
  if (!isArray || napi_get_array_length(env, argv[3], &partCount) != napi_ok || partCount == 0 || partCount > kMaxParts) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", ("parts must be an array of 1 to " + std::to_string(kMaxParts) + " Float32Arrays").c_str());
    return nullptr;
  }
  // Reading an element may run a getter, and a getter may detach or shrink any array, so
  // every element is read before the data pointer of any array is taken.
  std::vector<napi_value> partValues(partCount);
  for (uint32_t p = 0; p < partCount; p++) {
    if (napi_get_element(env, argv[3], p, &partValues[p]) != napi_ok) return nullptr;
  }

  Floats arrays[6];
  const napi_value stateValues[6] = {argv[0], argv[1], argv[2], argv[5], argv[6], argv[7]};
  const char* names[6] = {"w", "m", "v", "wOut", "mOut", "vOut"};
  float k[6];
  if (!getSameLengthFloats(env, stateValues, names, 6, arrays) || !getAdamNumbers(env, argv + 8, k)) return nullptr;

  std::vector<const float*> parts(partCount);
  std::vector<Floats> partFloats;
  for (uint32_t p = 0; p < partCount; p++) {
    Floats part;
    const std::string name = "parts[" + std::to_string(p) + "]";
    if (!getFloats(env, partValues[p], name.c_str(), part)) return nullptr;
    if (part.length != arrays[0].length) {
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", (name + " holds " + std::to_string(part.length) + " values, w holds " + std::to_string(arrays[0].length)).c_str());
      return nullptr;
    }
    parts[p] = part.data;
    partFloats.push_back(part);
  }
  std::vector<Operand> operands;
  for (int i = 0; i < 6; i++) operands.push_back({arrays[i], names[i], i >= 3, i >= 3 ? i - 3 : -1});
  for (uint32_t p = 0; p < partCount; p++) operands.push_back({partFloats[p], "parts[" + std::to_string(p) + "]"});
  if (!checkOutputsApart(env, operands)) return nullptr;
  double divisor = 0;
  int32_t threads = 0;
  // The mean is divided in float32, so the divisor must be positive and finite as a float32.
  if (napi_get_value_double(env, argv[4], &divisor) != napi_ok || !(static_cast<float>(divisor) > 0) || !std::isfinite(static_cast<float>(divisor))) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "divisor must be a positive finite number in float32");
    return nullptr;
  }
  if (!getCount(env, argv[14], static_cast<int32_t>(kMaxParts), threads)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", ("threads must be an integer from 1 to " + std::to_string(kMaxParts)).c_str());
    return nullptr;
  }
  return guarded(env, [&] {
    covnet::adamStepMean(static_cast<long>(arrays[0].length), arrays[0].data, arrays[1].data, arrays[2].data, parts.data(), static_cast<int>(partCount), static_cast<float>(divisor), k[0], k[1],
                         k[2], k[3], k[4], k[5], arrays[3].data, arrays[4].data, arrays[5].data, threads);
  });
}

napi_value ConvolutionInstructions(napi_env env, napi_callback_info) {
  napi_value name;
  napi_create_string_utf8(env, covnet::usingAvx512() ? "avx512" : "avx2", NAPI_AUTO_LENGTH, &name);
  return name;
}

napi_value UseConvolutionInstructions(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!getArguments(env, info, argv, "useConvolutionInstructions(name)")) return nullptr;
  char name[16] = {0};
  size_t length = 0;
  // The comparison includes the length, because a NUL inside the string ends a C string early.
  if (napi_get_value_string_utf8(env, argv[0], name, sizeof(name), &length) != napi_ok || (std::string(name, length) != "avx512" && std::string(name, length) != "avx2")) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "the instruction set must be 'avx512' or 'avx2'");
    return nullptr;
  }
  if (!covnet::useAvx512(std::string(name, length) == "avx512")) {
    napi_throw_error(env, "ERR_NATIVE_KERNEL", "this CPU lacks AVX-512 (AVX512F), so the convolutions stay on AVX2");
  }
  return nullptr;
}

// Reads a Float64Array argument, or throws a JS TypeError naming `name`.
bool getDoubles(napi_env env, napi_value value, const char* name, double*& data, size_t& length) {
  bool isTyped = false;
  napi_is_typedarray(env, value, &isTyped);
  napi_typedarray_type type;
  void* raw = nullptr;
  if (isTyped && napi_get_typedarray_info(env, value, &type, &length, &raw, nullptr, nullptr) == napi_ok && type == napi_float64_array) {
    data = static_cast<double*>(raw);
    return true;
  }
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", (std::string(name) + " must be a Float64Array").c_str());
  return false;
}

bool isNullOrUndefined(napi_env env, napi_value value) {
  napi_valuetype type;
  napi_typeof(env, value, &type);
  return type == napi_null || type == napi_undefined;
}

// Reads an array of Float32Arrays whose lengths are the tensor sizes of `starts`, and keeps
// each one in `values` for retakeData.
bool getTensorArrays(napi_env env, napi_value value, const std::string& name, const std::vector<size_t>& starts, std::vector<float*>& out, std::vector<napi_value>& values) {
  bool isArray = false;
  napi_is_array(env, value, &isArray);
  uint32_t count = 0;
  if (!isArray || napi_get_array_length(env, value, &count) != napi_ok || count + 1 != starts.size()) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", (name + " must be an array of " + std::to_string(starts.size() - 1) + " Float32Arrays, one per tensor").c_str());
    return false;
  }
  out.resize(count);
  values.resize(count);
  for (uint32_t k = 0; k < count; k++) {
    napi_value& element = values[k];
    Floats tensor;
    const std::string tensorName = name + "[" + std::to_string(k) + "]";
    if (napi_get_element(env, value, k, &element) != napi_ok || !getFloats(env, element, tensorName.c_str(), tensor)) return false;
    if (tensor.length != starts[k + 1] - starts[k]) {
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", (tensorName + " holds " + std::to_string(tensor.length) + " values, the tensor has " + std::to_string(starts[k + 1] - starts[k])).c_str());
      return false;
    }
    out[k] = tensor.data;
  }
  return true;
}

// Takes the data pointer of a typed array again, once no more JS code runs, and checks that
// its length is still `length`. A getter of a later argument may have detached or shrunk it.
template <typename T>
bool retakeData(napi_env env, napi_value value, const std::string& name, size_t length, T*& data) {
  napi_typedarray_type type;
  size_t now = 0;
  void* raw = nullptr;
  if (napi_get_typedarray_info(env, value, &type, &now, &raw, nullptr, nullptr) != napi_ok || now != length) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", (name + " changed while the other arguments were read: it holds " + std::to_string(now) + " values, it held " + std::to_string(length)).c_str());
    return false;
  }
  data = static_cast<T*>(raw);
  return true;
}

// Whether `value` is an integer from 0 to 2^53.
bool isIndex(double value) { return value >= 0 && value <= 9007199254740992.0 && std::floor(value) == value; }

// Reads sources[j]: {weight, tensors} for an update in memory, or {weight, descriptor, path,
// bytesPerValue, byteOffsets} for a stored one.
bool getFoldSource(napi_env env, napi_value value, uint32_t j, const std::vector<size_t>& starts, covnet::FoldSource& out, std::vector<napi_value>& tensorValues) {
  const std::string name = "sources[" + std::to_string(j) + "]";
  napi_valuetype type;
  napi_typeof(env, value, &type);
  napi_value weight, tensors, descriptor, path, bytesPerValue, byteOffsets;
  if (type != napi_object || napi_get_named_property(env, value, "weight", &weight) != napi_ok || napi_get_value_double(env, weight, &out.weight) != napi_ok || !std::isfinite(out.weight) ||
      !(out.weight > 0)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", (name + " must be an object with a positive finite weight").c_str());
    return false;
  }
  napi_get_named_property(env, value, "tensors", &tensors);
  if (!isNullOrUndefined(env, tensors)) {
    std::vector<float*> data;
    if (!getTensorArrays(env, tensors, name + ".tensors", starts, data, tensorValues)) return false;
    out.tensors.assign(data.begin(), data.end());
    return true;
  }
  napi_get_named_property(env, value, "descriptor", &descriptor);
  napi_get_named_property(env, value, "path", &path);
  napi_get_named_property(env, value, "bytesPerValue", &bytesPerValue);
  napi_get_named_property(env, value, "byteOffsets", &byteOffsets);
  int32_t fd = -1;
  int32_t bytes = 0;
  size_t pathLength = 0;
  if (!getInteger<int32_t>(env, descriptor, 0, INT32_MAX, fd) || !getInteger<int32_t>(env, bytesPerValue, 2, 4, bytes) || bytes == 3 ||
      napi_get_value_string_utf8(env, path, nullptr, 0, &pathLength) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", (name + " must have tensors, or a descriptor, a path and bytesPerValue 2 or 4").c_str());
    return false;
  }
  out.descriptor = fd;
  out.bytesPerValue = bytes;
  out.path.resize(pathLength + 1);
  napi_get_value_string_utf8(env, path, out.path.data(), pathLength + 1, &pathLength);
  out.path.resize(pathLength);
  double* offsets = nullptr;
  size_t offsetCount = 0;
  if (!getDoubles(env, byteOffsets, (name + ".byteOffsets").c_str(), offsets, offsetCount)) return false;
  if (offsetCount + 1 != starts.size()) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", (name + ".byteOffsets holds " + std::to_string(offsetCount) + " offsets, expected one per tensor: " + std::to_string(starts.size() - 1)).c_str());
    return false;
  }
  for (size_t k = 0; k < offsetCount; k++) {
    if (!isIndex(offsets[k])) {
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", (name + ".byteOffsets[" + std::to_string(k) + "] is not a byte offset: " + std::to_string(offsets[k])).c_str());
      return false;
    }
    out.byteOffsets.push_back(static_cast<int64_t>(offsets[k]));
  }
  return true;
}

napi_value FedAvgFold(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!getArguments(env, info, argv, "fedAvgFold(sum, starts, sources, overwrite, divisor, outputs, threads)")) return nullptr;
  covnet::FoldJob job;
  size_t sumLength = 0;
  double* starts = nullptr;
  size_t startCount = 0;
  if (!getDoubles(env, argv[0], "sum", job.sum, sumLength) || !getDoubles(env, argv[1], "starts", starts, startCount)) return nullptr;
  for (size_t k = 0; k < startCount; k++) {
    if (!isIndex(starts[k]) || (k == 0 ? starts[k] != 0 : starts[k] < starts[k - 1])) {
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", ("starts must rise from 0, but starts[" + std::to_string(k) + "] is " + std::to_string(starts[k])).c_str());
      return nullptr;
    }
    job.starts.push_back(static_cast<size_t>(starts[k]));
  }
  if (startCount == 0 || job.starts.back() != sumLength) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", ("sum holds " + std::to_string(sumLength) + " values, but starts ends at " + (startCount == 0 ? std::string("nothing") : std::to_string(job.starts.back()))).c_str());
    return nullptr;
  }

  bool isArray = false;
  napi_is_array(env, argv[2], &isArray);
  uint32_t sourceCount = 0;
  if (!isArray || napi_get_array_length(env, argv[2], &sourceCount) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "sources must be an array");
    return nullptr;
  }
  job.sources.resize(sourceCount);
  std::vector<std::vector<napi_value>> sourceTensorValues(sourceCount);
  for (uint32_t j = 0; j < sourceCount; j++) {
    napi_value element;
    if (napi_get_element(env, argv[2], j, &element) != napi_ok || !getFoldSource(env, element, j, job.starts, job.sources[j], sourceTensorValues[j])) return nullptr;
  }

  int32_t threads = 0;
  if (napi_get_value_bool(env, argv[3], &job.overwrite) != napi_ok || napi_get_value_double(env, argv[4], &job.divisor) != napi_ok || !getCount(env, argv[6], 64, threads)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "overwrite must be a boolean, divisor a number and threads an integer from 1 to 64");
    return nullptr;
  }
  job.threads = threads;
  std::vector<napi_value> outputValues;
  if (!isNullOrUndefined(env, argv[5])) {
    if (!(job.divisor > 0) || !std::isfinite(job.divisor)) {
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "divisor must be a positive finite number when outputs are given");
      return nullptr;
    }
    if (!getTensorArrays(env, argv[5], "outputs", job.starts, job.outputs, outputValues)) return nullptr;
  }

  // Getters of sources and outputs may have run JS code that detached or shrank an array
  // read before them, so every data pointer is taken again now that no JS code runs.
  if (!retakeData(env, argv[0], "sum", sumLength, job.sum)) return nullptr;
  for (uint32_t j = 0; j < sourceCount; j++) {
    std::vector<const float*>& tensors = job.sources[j].tensors;
    for (size_t k = 0; k < tensors.size(); k++) {
      const std::string name = "sources[" + std::to_string(j) + "].tensors[" + std::to_string(k) + "]";
      if (!retakeData(env, sourceTensorValues[j][k], name, job.starts[k + 1] - job.starts[k], tensors[k])) return nullptr;
    }
  }
  for (size_t k = 0; k < job.outputs.size(); k++) {
    if (!retakeData(env, outputValues[k], "outputs[" + std::to_string(k) + "]", job.starts[k + 1] - job.starts[k], job.outputs[k])) return nullptr;
  }
  return guarded(env, [&] { covnet::fedAvgFold(job); });
}

napi_value Unsupported(napi_env env, napi_callback_info) {
  napi_throw_error(env, "ERR_NATIVE_KERNEL", "this CPU lacks AVX2, FMA or F16C");
  return nullptr;
}

napi_value Init(napi_env env, napi_value exports) {
  const bool ok = cpuSupportsKernels();
  napi_value reason;
  if (ok) {
    napi_get_null(env, &reason);
  } else {
    napi_create_string_utf8(env, "this CPU lacks AVX2, FMA or F16C, which the native kernels need", NAPI_AUTO_LENGTH, &reason);
  }
  napi_property_descriptor props[] = {
      {"unsupportedReason", nullptr, nullptr, nullptr, nullptr, reason, napi_enumerable, nullptr},
      {"conv2dForward", nullptr, ok ? Conv2dForward : Unsupported, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"conv2dBackpropInput", nullptr, ok ? Conv2dBackpropInput : Unsupported, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"conv2dBackpropFilter", nullptr, ok ? Conv2dBackpropFilter : Unsupported, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"batchNormTraining", nullptr, ok ? BatchNormTraining : Unsupported, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"batchNormTrainingGrad", nullptr, ok ? BatchNormTrainingGrad : Unsupported, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"batchNormInference", nullptr, ok ? BatchNormInference : Unsupported, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"maxPoolGrad", nullptr, ok ? MaxPoolGrad : Unsupported, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"adamStep", nullptr, ok ? AdamStep : Unsupported, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"reluGrad", nullptr, ok ? ReluGrad : Unsupported, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"adamStepMean", nullptr, ok ? AdamStepMean : Unsupported, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"convolutionInstructions", nullptr, ok ? ConvolutionInstructions : Unsupported, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"useConvolutionInstructions", nullptr, ok ? UseConvolutionInstructions : Unsupported, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"fedAvgFold", nullptr, ok ? FedAvgFold : Unsupported, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

}  // namespace

NAPI_MODULE_INIT() { return Init(env, exports); }
