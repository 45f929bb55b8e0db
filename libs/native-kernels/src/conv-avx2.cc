// Float32 convolutions as matrix products, with a register-blocked FMA kernel.
//
// The matrix product follows the usual blocked layout. A KC x NC panel of b and an
// MC x KC block of a are copied ("packed") into contiguous buffers, so that the inner
// kernel streams both from cache. The inner kernel keeps a 6 x 16 block of c in twelve
// 256-bit registers, or a 6 x 32 block in twelve 512-bit ones in the AVX-512 build. A
// convolution becomes a product by copying each output pixel's receptive field into one
// row ("im2col"), a chunk of rows at a time, so the scratch stays a few megabytes
// whatever the batch.
#include "conv-avx2.h"

// build.cjs compiles this file twice: for AVX2 and FMA, and with COVNET_AVX512 for AVX-512.
#if defined(COVNET_AVX512)
#define COVNET_ISA avx512
#else
#define COVNET_ISA avx2
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

namespace covnet {
namespace COVNET_ISA {
namespace {

// The vector operations of the inner kernel, in 256-bit AVX2 registers or 512-bit
// AVX-512 ones. NR is two vectors wide.
#if defined(COVNET_AVX512)
using Vec = __m512;
constexpr int W = 16;
inline Vec vZero() { return _mm512_setzero_ps(); }
inline Vec vLoadAligned(const float* p) { return _mm512_load_ps(p); }
inline Vec vLoad(const float* p) { return _mm512_loadu_ps(p); }
inline void vStore(float* p, Vec v) { _mm512_storeu_ps(p, v); }
inline Vec vBroadcast(const float* p) { return _mm512_set1_ps(*p); }
inline Vec vFma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline Vec vAdd(Vec a, Vec b) { return _mm512_add_ps(a, b); }
#else
using Vec = __m256;
constexpr int W = 8;
inline Vec vZero() { return _mm256_setzero_ps(); }
inline Vec vLoadAligned(const float* p) { return _mm256_load_ps(p); }
inline Vec vLoad(const float* p) { return _mm256_loadu_ps(p); }
inline void vStore(float* p, Vec v) { _mm256_storeu_ps(p, v); }
inline Vec vBroadcast(const float* p) { return _mm256_broadcast_ss(p); }
inline Vec vFma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline Vec vAdd(Vec a, Vec b) { return _mm256_add_ps(a, b); }
#endif

constexpr int MR = 6;
constexpr int NR = 2 * W;
constexpr int MC = 96;
constexpr int KC = 256;
constexpr int NC = 2048;
// Columns of b packed at once when a is read in place: 256 x 256 floats, 256 KB, in L2.
constexpr int NC_DIRECT = 256;
// Rows of receptive fields copied at once: about 4 MB of scratch per thread.
constexpr long kChunkFloats = 1L << 20;

struct AlignedFree {
  void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float, AlignedFree>;

float* alignedFloats(size_t count) {
  void* p = std::aligned_alloc(64, ((count * sizeof(float) + 63) / 64) * 64);
  if (p == nullptr) throw std::bad_alloc();
  return static_cast<float*>(p);
}

// Per-thread scratch: the site agent runs one backend per worker thread.
struct Scratch {
  Buffer packedA{alignedFloats(MC * KC)};
  Buffer packedB{alignedFloats(static_cast<size_t>(KC) * NC)};
  std::vector<float> rows;
};
Scratch& scratch() {
  static thread_local Scratch s;
  return s;
}

// The inner kernel: c[0..m, 0..n) (+)= a * b over kc steps, with b packed (NR values per
// step) and a either packed (MR values per step) or read straight from MR rows of a
// row-major matrix. A full tile is stored from the registers, and a partial one through a
// small buffer, so the kernel never writes outside c. Each value of c is summed over k in
// the same order with the same fused multiply-adds in both builds, so the AVX-512 build
// gives the AVX2 build's results bit for bit.
template <bool kPackedA>
inline void microKernel(int kc, const float* __restrict a, long rsa, const float* __restrict b, float* c, long ldc, int m, int n, bool accumulate) {
  // Rows past m repeat the last row: the loads stay inside a, and their sums are dropped.
  const float* r0 = a;
  const float* r1 = a + (m > 1 ? 1 : 0) * rsa;
  const float* r2 = a + (m > 2 ? 2 : m - 1) * rsa;
  const float* r3 = a + (m > 3 ? 3 : m - 1) * rsa;
  const float* r4 = a + (m > 4 ? 4 : m - 1) * rsa;
  const float* r5 = a + (m > 5 ? 5 : m - 1) * rsa;

  Vec c00 = vZero(), c01 = vZero();
  Vec c10 = vZero(), c11 = vZero();
  Vec c20 = vZero(), c21 = vZero();
  Vec c30 = vZero(), c31 = vZero();
  Vec c40 = vZero(), c41 = vZero();
  Vec c50 = vZero(), c51 = vZero();

  for (int k = 0; k < kc; k++) {
    const Vec b0 = vLoadAligned(b);
    const Vec b1 = vLoadAligned(b + W);
    Vec av = vBroadcast(kPackedA ? a : r0 + k);
    c00 = vFma(av, b0, c00);
    c01 = vFma(av, b1, c01);
    av = vBroadcast(kPackedA ? a + 1 : r1 + k);
    c10 = vFma(av, b0, c10);
    c11 = vFma(av, b1, c11);
    av = vBroadcast(kPackedA ? a + 2 : r2 + k);
    c20 = vFma(av, b0, c20);
    c21 = vFma(av, b1, c21);
    av = vBroadcast(kPackedA ? a + 3 : r3 + k);
    c30 = vFma(av, b0, c30);
    c31 = vFma(av, b1, c31);
    av = vBroadcast(kPackedA ? a + 4 : r4 + k);
    c40 = vFma(av, b0, c40);
    c41 = vFma(av, b1, c41);
    av = vBroadcast(kPackedA ? a + 5 : r5 + k);
    c50 = vFma(av, b0, c50);
    c51 = vFma(av, b1, c51);
    if (kPackedA) a += MR;
    b += NR;
  }

  if (m == MR && n == NR) {
    const Vec rows[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int i = 0; i < MR; i++) {
      float* row = c + i * ldc;
      Vec lo = rows[i][0];
      Vec hi = rows[i][1];
      if (accumulate) {
        lo = vAdd(lo, vLoad(row));
        hi = vAdd(hi, vLoad(row + W));
      }
      vStore(row, lo);
      vStore(row + W, hi);
    }
    return;
  }

  alignas(64) float t[MR * NR];
  const Vec tiles[MR * 2] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};
  for (int i = 0; i < MR * 2; i++) vStore(t + i * W, tiles[i]);
  for (int i = 0; i < m; i++) {
    for (int j = 0; j < n; j++) {
      float* p = c + i * ldc + j;
      *p = accumulate ? *p + t[i * NR + j] : t[i * NR + j];
    }
  }
}

// Copies rows [0, mc) and columns [0, kc) of a into slivers of MR rows, k-major within
// a sliver. Rows past mc are zero, so the kernel never reads past the block.
void packA(int mc, int kc, const float* a, long rsa, long csa, float* out) {
  for (int i0 = 0; i0 < mc; i0 += MR) {
    const int m = std::min(MR, mc - i0);
    if (csa == 1 && m == MR) {
      const float* r[MR];
      for (int r0 = 0; r0 < MR; r0++) r[r0] = a + (i0 + r0) * rsa;
      for (int k = 0; k < kc; k++) {
        for (int r0 = 0; r0 < MR; r0++) out[r0] = r[r0][k];
        out += MR;
      }
      continue;
    }
    for (int k = 0; k < kc; k++) {
      const float* col = a + i0 * rsa + k * csa;
      int r0 = 0;
      for (; r0 < m; r0++) out[r0] = col[r0 * rsa];
      for (; r0 < MR; r0++) out[r0] = 0.0f;
      out += MR;
    }
  }
}

// Copies rows [0, kc) and columns [0, nc) of b into slivers of NR columns, k-major.
void packB(int kc, int nc, const float* b, long rsb, long csb, float* out) {
  for (int j0 = 0; j0 < nc; j0 += NR) {
    const int n = std::min(NR, nc - j0);
    for (int k = 0; k < kc; k++) {
      const float* src = b + k * rsb + j0 * csb;
      if (csb == 1 && n == NR) {
        std::memcpy(out, src, NR * sizeof(float));
      } else {
        int j = 0;
        for (; j < n; j++) out[j] = src[j * csb];
        for (; j < NR; j++) out[j] = 0.0f;
      }
      out += NR;
    }
  }
}

// Copies the receptive fields of output pixels [first, first + count) into rows of
// kh * kw * ic values, ordered (kh, kw, ic) as the filter's rows are. Padding reads 0.
void receptiveFields(const ConvShape& s, const float* x, long first, long count, float* rows) {
  const long K = static_cast<long>(s.kh) * s.kw * s.ic;
  const long perImage = static_cast<long>(s.oh) * s.ow;
  for (long r = 0; r < count; r++) {
    const long m = first + r;
    const long n = m / perImage;
    const int oy = static_cast<int>((m % perImage) / s.ow);
    const int ox = static_cast<int>(m % s.ow);
    float* out = rows + r * K;
    for (int ky = 0; ky < s.kh; ky++) {
      // In long: a stride near 2^31 times a row index overflows int.
      const long iy = static_cast<long>(oy) * s.strideH - s.padTop + ky;
      for (int kx = 0; kx < s.kw; kx++, out += s.ic) {
        const long ix = static_cast<long>(ox) * s.strideW - s.padLeft + kx;
        if (iy < 0 || iy >= s.ih || ix < 0 || ix >= s.iw) {
          std::memset(out, 0, s.ic * sizeof(float));
        } else {
          std::memcpy(out, x + ((n * s.ih + iy) * s.iw + ix) * s.ic, s.ic * sizeof(float));
        }
      }
    }
  }
}

// Adds rows of receptive-field gradients back onto the input pixels they came from.
void addReceptiveFields(const ConvShape& s, const float* rows, long first, long count, float* dx) {
  const long K = static_cast<long>(s.kh) * s.kw * s.ic;
  const long perImage = static_cast<long>(s.oh) * s.ow;
  for (long r = 0; r < count; r++) {
    const long m = first + r;
    const long n = m / perImage;
    const int oy = static_cast<int>((m % perImage) / s.ow);
    const int ox = static_cast<int>(m % s.ow);
    const float* in = rows + r * K;
    for (int ky = 0; ky < s.kh; ky++) {
      // In long: a stride near 2^31 times a row index overflows int.
      const long iy = static_cast<long>(oy) * s.strideH - s.padTop + ky;
      for (int kx = 0; kx < s.kw; kx++, in += s.ic) {
        const long ix = static_cast<long>(ox) * s.strideW - s.padLeft + kx;
        if (iy < 0 || iy >= s.ih || ix < 0 || ix >= s.iw) continue;
        float* target = dx + ((n * s.ih + iy) * s.iw + ix) * s.ic;
        for (int c = 0; c < s.ic; c++) target[c] += in[c];
      }
    }
  }
}

bool isPointwise(const ConvShape& s) {
  return s.kh == 1 && s.kw == 1 && s.strideH == 1 && s.strideW == 1 && s.padTop == 0 && s.padLeft == 0 && s.oh == s.ih && s.ow == s.iw;
}

long chunkRows(long K) { return std::max<long>(MC, kChunkFloats / std::max<long>(K, 1)); }

}  // namespace

void sgemm(int M, int N, int K, const float* a, long rsa, long csa, const float* b, long rsb, long csb, float* c, long ldc, bool accumulate) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (!accumulate) {
      for (int i = 0; i < M; i++) std::memset(c + i * ldc, 0, N * sizeof(float));
    }
    return;
  }
  Scratch& sc = scratch();
  float* bufA = sc.packedA.get();
  float* bufB = sc.packedB.get();
  if (csa == 1) {
    // Rows of a are contiguous (activations and receptive fields): the kernel reads them in
    // place, six rows at a time, and the packed panel of b is kept small enough for L2.
    for (int jc = 0; jc < N; jc += NC_DIRECT) {
      const int nc = std::min(NC_DIRECT, N - jc);
      for (int pc = 0; pc < K; pc += KC) {
        const int kc = std::min(KC, K - pc);
        const bool acc = accumulate || pc > 0;
        packB(kc, nc, b + pc * rsb + jc * csb, rsb, csb, bufB);
        for (int ir = 0; ir < M; ir += MR) {
          const int m = std::min(MR, M - ir);
          for (int jr = 0; jr < nc; jr += NR) {
            microKernel<false>(kc, a + ir * rsa + pc, rsa, bufB + jr * kc, c + ir * ldc + jc + jr, ldc, m, std::min(NR, nc - jr), acc);
          }
        }
      }
    }
    return;
  }
  for (int jc = 0; jc < N; jc += NC) {
    const int nc = std::min(NC, N - jc);
    for (int pc = 0; pc < K; pc += KC) {
      const int kc = std::min(KC, K - pc);
      const bool acc = accumulate || pc > 0;
      packB(kc, nc, b + pc * rsb + jc * csb, rsb, csb, bufB);
      for (int ic = 0; ic < M; ic += MC) {
        const int mc = std::min(MC, M - ic);
        packA(mc, kc, a + ic * rsa + pc * csa, rsa, csa, bufA);
        for (int jr = 0; jr < nc; jr += NR) {
          for (int ir = 0; ir < mc; ir += MR) {
            microKernel<true>(kc, bufA + ir * kc, MR, bufB + jr * kc, c + (ic + ir) * ldc + jc + jr, ldc, std::min(MR, mc - ir), std::min(NR, nc - jr), acc);
          }
        }
      }
    }
  }
}

void conv2dForward(const ConvShape& s, const float* x, const float* w, const float* bias, Activation act, float* y) {
  const long M = static_cast<long>(s.n) * s.oh * s.ow;
  const long K = static_cast<long>(s.kh) * s.kw * s.ic;
  if (isPointwise(s)) {
    sgemm(static_cast<int>(M), s.oc, static_cast<int>(K), x, K, 1, w, s.oc, 1, y, s.oc, false);
  } else {
    std::vector<float>& rows = scratch().rows;
    const long chunk = std::min(M, chunkRows(K));
    rows.resize(chunk * K);
    for (long first = 0; first < M; first += chunk) {
      const long count = std::min(chunk, M - first);
      receptiveFields(s, x, first, count, rows.data());
      sgemm(static_cast<int>(count), s.oc, static_cast<int>(K), rows.data(), K, 1, w, s.oc, 1, y + first * s.oc, s.oc, false);
    }
  }
  if (bias == nullptr && act == Activation::Linear) return;
  for (long m = 0; m < M; m++) {
    float* row = y + m * s.oc;
    if (bias != nullptr) {
      for (int c = 0; c < s.oc; c++) row[c] += bias[c];
    }
    if (act == Activation::Relu) {
      // NaN stays NaN, as in tfjs's relu, so a diverging model shows up in its loss.
      for (int c = 0; c < s.oc; c++) row[c] = row[c] < 0.0f ? 0.0f : row[c];
    }
  }
}

void conv2dBackpropInput(const ConvShape& s, const float* dy, const float* w, float* dx) {
  const long M = static_cast<long>(s.n) * s.oh * s.ow;
  const long K = static_cast<long>(s.kh) * s.kw * s.ic;
  // dx's rows are dy's rows times the transposed filter: b(k = oc, j) = w[j * oc + k].
  if (isPointwise(s)) {
    sgemm(static_cast<int>(M), s.ic, s.oc, dy, s.oc, 1, w, 1, s.oc, dx, s.ic, false);
    return;
  }
  std::memset(dx, 0, static_cast<size_t>(s.n) * s.ih * s.iw * s.ic * sizeof(float));
  std::vector<float>& rows = scratch().rows;
  const long chunk = std::min(M, chunkRows(K));
  rows.resize(chunk * K);
  for (long first = 0; first < M; first += chunk) {
    const long count = std::min(chunk, M - first);
    sgemm(static_cast<int>(count), static_cast<int>(K), s.oc, dy + first * s.oc, s.oc, 1, w, 1, s.oc, rows.data(), K, false);
    addReceptiveFields(s, rows.data(), first, count, dx);
  }
}

void conv2dBackpropFilter(const ConvShape& s, const float* x, const float* dy, float* dw) {
  const long M = static_cast<long>(s.n) * s.oh * s.ow;
  const long K = static_cast<long>(s.kh) * s.kw * s.ic;
  // dw = fields^T dy: a(i = filter row, k = pixel) = fields[k * K + i].
  if (isPointwise(s)) {
    sgemm(s.ic, s.oc, static_cast<int>(M), x, 1, s.ic, dy, s.oc, 1, dw, s.oc, false);
    return;
  }
  std::vector<float>& rows = scratch().rows;
  const long chunk = std::min(M, chunkRows(K));
  rows.resize(chunk * K);
  for (long first = 0; first < M; first += chunk) {
    const long count = std::min(chunk, M - first);
    receptiveFields(s, x, first, count, rows.data());
    sgemm(static_cast<int>(K), s.oc, static_cast<int>(count), rows.data(), 1, K, dy + first * s.oc, s.oc, 1, dw, s.oc, first > 0);
  }
}

}  // namespace COVNET_ISA
}  // namespace covnet
