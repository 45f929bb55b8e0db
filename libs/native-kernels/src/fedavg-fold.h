// The coordinator's FedAvg fold: float32 or float16 updates, read from their stored files or
// from memory, added to a float64 running sum on several threads. Built with AVX2 and F16C
// but without FMA and with -ffp-contract=off, because a fused multiply-add rounds once where
// the fold's contract is two roundings (multiply, then add).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace covnet {

// One update of a fold: its weight and where its values are.
struct FoldSource {
  double weight = 0;
  // A stored update: the values of tensor k start at byte byteOffsets[k] of the file open as
  // `descriptor`, bytesPerValue (4 for float32, 2 for float16) each. `path` names it in errors.
  int descriptor = -1;
  std::string path;
  int bytesPerValue = 4;
  std::vector<int64_t> byteOffsets;
  // An update in memory: the values of tensor k. Empty for a stored update.
  std::vector<const float*> tensors;
};

struct FoldJob {
  // The running sum of all tensors, one after another: starts.back() values.
  double* sum = nullptr;
  // First value of each tensor in the sum, followed by the total number of values.
  std::vector<size_t> starts;
  // Added in this order to every value.
  std::vector<FoldSource> sources;
  // Starts each value from zero instead of from the sum.
  bool overwrite = false;
  // When not empty, outputs[k] receives tensor k's float32(sum / divisor), and the sum is not written.
  std::vector<float*> outputs;
  double divisor = 1;
  // Threads that share the tiles, the calling thread included, at least 1.
  int threads = 1;
};

// Sets sum[i] = s, or outputs[k][i - starts[k]] = float32(s / divisor), where
// s = (overwrite ? 0 : sum[i]) + w_0 x_0[i] + w_1 x_1[i] + ... added left to right in double,
// each product rounded to double before its addition, x promoted from float32 or float16.
// Throws std::runtime_error naming the file and byte when a stored update cannot be read or
// ends early. The sum then contains some values with the sources added and some without.
void fedAvgFold(const FoldJob& job);

}  // namespace covnet
