#include "fedavg-fold.h"

#include <immintrin.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <thread>

// The fold promises the roundings of a separate multiply and add, which a fused multiply-add
// would break. Without -mfma no FMA instruction exists to contract into, and build.cjs also
// passes -ffp-contract=off.
#if defined(__FMA__)
#error "fedavg-fold.cc must be built without -mfma: the FedAvg sum rounds each product before adding it"
#endif

namespace covnet {
namespace {

// Values of one update in a tile. The float32 tiles of a batch of six take 384 KiB per
// thread, so they stay in a 1 MiB L2 cache (AMD EPYC of bench/README.md) between being read
// in and being folded. Tiles of 8 K and 32 K values were not clearly faster or slower there.
constexpr size_t kTileValues = 16384;

// Adds the m sources to n values of the sum as fedAvgFold describes, and writes the sums or,
// when `out` is set, their quotients. Each vector lane does the operations of the scalar tail.
void foldValues(double* sum, const float* const* sources, const double* weights, size_t m, size_t n, bool overwrite, float* out, double divisor) {
  const __m256d divisors = _mm256_set1_pd(divisor);
  size_t i = 0;
  // Sixteen values per step in four independent sums, so that the additions of consecutive
  // sources overlap in the pipeline.
  for (; i + 16 <= n; i += 16) {
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
    if (!overwrite) {
      s0 = _mm256_loadu_pd(sum + i);
      s1 = _mm256_loadu_pd(sum + i + 4);
      s2 = _mm256_loadu_pd(sum + i + 8);
      s3 = _mm256_loadu_pd(sum + i + 12);
    }
    for (size_t j = 0; j < m; j++) {
      const __m256d w = _mm256_set1_pd(weights[j]);
      const __m256 a = _mm256_loadu_ps(sources[j] + i);
      const __m256 b = _mm256_loadu_ps(sources[j] + i + 8);
      s0 = _mm256_add_pd(s0, _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(a)), w));
      s1 = _mm256_add_pd(s1, _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)), w));
      s2 = _mm256_add_pd(s2, _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(b)), w));
      s3 = _mm256_add_pd(s3, _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(b, 1)), w));
    }
    if (out != nullptr) {
      _mm_storeu_ps(out + i, _mm256_cvtpd_ps(_mm256_div_pd(s0, divisors)));
      _mm_storeu_ps(out + i + 4, _mm256_cvtpd_ps(_mm256_div_pd(s1, divisors)));
      _mm_storeu_ps(out + i + 8, _mm256_cvtpd_ps(_mm256_div_pd(s2, divisors)));
      _mm_storeu_ps(out + i + 12, _mm256_cvtpd_ps(_mm256_div_pd(s3, divisors)));
    } else {
      _mm256_storeu_pd(sum + i, s0);
      _mm256_storeu_pd(sum + i + 4, s1);
      _mm256_storeu_pd(sum + i + 8, s2);
      _mm256_storeu_pd(sum + i + 12, s3);
    }
  }
  for (; i < n; i++) {
    // Starting from 0 and adding keeps the sign rule of the other paths: 0 + (-0) is +0.
    double s = overwrite ? 0.0 : sum[i];
    for (size_t j = 0; j < m; j++) s = s + weights[j] * static_cast<double>(sources[j][i]);
    if (out != nullptr) {
      out[i] = static_cast<float>(s / divisor);
    } else {
      sum[i] = s;
    }
  }
}

// F16C's conversion is exact for every float16 value, subnormals included.
void halvesToFloats(const uint16_t* halves, float* out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(halves + i))));
  }
  for (; i < n; i++) out[i] = _cvtsh_ss(halves[i]);
}

void readExactly(const FoldSource& source, void* into, size_t bytes, int64_t position) {
  char* target = static_cast<char*>(into);
  size_t done = 0;
  while (done < bytes) {
    const ssize_t read = pread(source.descriptor, target + done, bytes - done, static_cast<off_t>(position + done));
    if (read > 0) {
      done += static_cast<size_t>(read);
      continue;
    }
    const int64_t at = position + static_cast<int64_t>(done);
    if (read == 0) {
      throw std::runtime_error("stored update " + source.path + " is truncated: it ends before byte " + std::to_string(at) + ", where values of the global model are expected");
    }
    if (errno == EINTR) continue;
    throw std::runtime_error("stored update " + source.path + " could not be read at byte " + std::to_string(at) + ": " + std::system_category().message(errno));
  }
}

// Per-thread memory: a float32 tile per source and a float16 tile for reading float16 files.
struct TileBuffers {
  std::vector<float> values;
  std::vector<uint16_t> halves;
  std::vector<const float*> pointers;
};

class Folder {
 public:
  explicit Folder(const FoldJob& job) : job_(job), length_(job.starts.back()), tiles_((length_ + kTileValues - 1) / kTileValues) {
    for (const FoldSource& source : job.sources) weights_.push_back(source.weight);
  }

  void run() {
    const size_t threads = std::max<size_t>(1, std::min<size_t>(static_cast<size_t>(job_.threads), tiles_));
    // Allocated before any thread starts, so an allocation failure leaves the sum untouched.
    std::vector<TileBuffers> buffers(threads);
    for (TileBuffers& buffer : buffers) {
      buffer.values.resize(job_.sources.size() * kTileValues);
      buffer.halves.resize(kTileValues);
      buffer.pointers.resize(job_.sources.size());
    }
    std::vector<std::thread> helpers;
    for (size_t t = 1; t < threads; t++) {
      try {
        helpers.emplace_back([this, &buffers, t] { work(buffers[t]); });
      } catch (const std::system_error&) {
        // The threads that did start take all tiles, so the result is the same, only later.
        break;
      }
    }
    work(buffers[0]);
    for (std::thread& helper : helpers) helper.join();
    if (failed_.load()) throw std::runtime_error(failure_);
  }

 private:
  void work(TileBuffers& buffers) {
    while (!failed_.load(std::memory_order_relaxed)) {
      const size_t tile = next_.fetch_add(1);
      if (tile >= tiles_) return;
      try {
        foldTile(tile, buffers);
      } catch (const std::exception& error) {
        fail(tile, error.what());
        return;
      }
    }
  }

  // Keeps the failure of the lowest tile, which is where a truncated file ends when the
  // threads got that far.
  void fail(size_t tile, const char* message) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (tile < failedTile_) {
      failedTile_ = tile;
      failure_ = message;
    }
    failed_.store(true);
  }

  // Index of the tensor that contains value `position` (< length_), skipping empty tensors.
  size_t tensorAt(size_t position) const { return static_cast<size_t>(std::upper_bound(job_.starts.begin(), job_.starts.end(), position) - job_.starts.begin()) - 1; }

  // Calls visit(k, from, to, at) for each tensor k that the values [start, end) cover: its
  // values [from, to) are at position `at` of the tile.
  template <typename Visit>
  void forEachPiece(size_t start, size_t end, Visit visit) const {
    for (size_t k = tensorAt(start), position = start; position < end; k++) {
      const size_t pieceEnd = std::min(end, job_.starts[k + 1]);
      if (pieceEnd > position) visit(k, position - job_.starts[k], pieceEnd - job_.starts[k], position - start);
      position = std::max(position, pieceEnd);
    }
  }

  void foldTile(size_t tile, TileBuffers& buffers) {
    const size_t start = tile * kTileValues;
    const size_t end = std::min(length_, start + kTileValues);
    const size_t m = job_.sources.size();
    // A tile may cover several tensors, which lie apart and in any order in a file, so each
    // stored update is read piece by piece.
    forEachPiece(start, end, [&](size_t k, size_t from, size_t to, size_t at) {
      for (size_t j = 0; j < m; j++) {
        const FoldSource& source = job_.sources[j];
        if (!source.tensors.empty()) continue;
        float* target = buffers.values.data() + j * kTileValues + at;
        const int64_t position = source.byteOffsets[k] + static_cast<int64_t>(from) * source.bytesPerValue;
        if (source.bytesPerValue == 4) {
          readExactly(source, target, (to - from) * 4, position);
        } else {
          readExactly(source, buffers.halves.data(), (to - from) * 2, position);
          halvesToFloats(buffers.halves.data(), target, to - from);
        }
      }
    });
    forEachPiece(start, end, [&](size_t k, size_t from, size_t to, size_t at) {
      for (size_t j = 0; j < m; j++) {
        const FoldSource& source = job_.sources[j];
        buffers.pointers[j] = source.tensors.empty() ? buffers.values.data() + j * kTileValues + at : source.tensors[k] + from;
      }
      float* out = job_.outputs.empty() ? nullptr : job_.outputs[k] + from;
      foldValues(job_.sum + start + at, buffers.pointers.data(), weights_.data(), m, to - from, job_.overwrite, out, job_.divisor);
    });
  }

  const FoldJob& job_;
  const size_t length_;
  const size_t tiles_;
  std::vector<double> weights_;
  std::atomic<size_t> next_{0};
  std::atomic<bool> failed_{false};
  std::mutex mutex_;
  size_t failedTile_ = SIZE_MAX;
  std::string failure_;
};

}  // namespace

void fedAvgFold(const FoldJob& job) {
  if (job.starts.empty() || job.starts.back() == 0) return;
  Folder(job).run();
}

}  // namespace covnet
