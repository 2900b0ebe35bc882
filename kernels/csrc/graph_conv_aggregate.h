// Aggregation over joints for ONE instruction-set variant of the CPU graph convolution:
//
//   out[r, :V] (+)= sum_v in[r, v] * B[v, :V]      for every row r of a strided set of rows
//
// B is V x VP row-major, zero-padded beyond V (VP a whole number of 64-byte vectors, so of this
// variant's vectors too). graph_conv_cpu.cpp includes this file once per variant, inside the
// variant's namespace, after defining
//   SSCL_ISA_TARGET  the function attribute selecting the instruction set (empty: the build's)
//   SSCL_ISA_VBYTES  bytes per vector register (16: SSE2/NEON, 32: AVX2, 64: AVX-512)
//   SSCL_ISA_NREGS   vector registers the block may use (16: SSE2/AVX2, 32: AVX-512/NEON)
// No include guard: it is meant to be included several times.
//
// Register blocking (per variant, at compile time): a block of RB rows x JB output vectors keeps
// RB * JB accumulators, JB vectors of B and one broadcast input in registers, so
// RB * JB + JB + 1 <= SSCL_ISA_NREGS. Wider graphs take several column passes. With 64-byte vectors on an AVX2 machine (the earlier
// kernel) the block needed twice the 16 YMM registers and the accumulators spilled.
// Each B vector then feeds RB FMAs and each broadcast JB FMAs. Rows are flattened across the
// outer index so that only the last block of a call is short.

namespace detail {

template <typename T>
struct VecT {
  typedef T type __attribute__((vector_size(SSCL_ISA_VBYTES)));
  static constexpr int lanes = SSCL_ISA_VBYTES / sizeof(T);
};

// Output vectors per block and rows per block, as the register file allows. With 32 registers
// the rows stop at 4 (the earlier AVX-512 kernel's block; 8 rows measured no faster there).
// With 16 registers, 2 vectors x 6 rows: 12 accumulators + 2 B vectors + 1 broadcast.
constexpr int kMaxCols = SSCL_ISA_NREGS >= 32 ? 4 : 2;
constexpr int kMaxRows = SSCL_ISA_NREGS >= 32 ? 4 : 6;

constexpr int block_rows(int jb) {
  return (SSCL_ISA_NREGS - 1 - jb) / jb < kMaxRows ? (SSCL_ISA_NREGS - 1 - jb) / jb : kMaxRows;
}

template <typename T>
SSCL_ISA_TARGET __attribute__((always_inline)) inline typename VecT<T>::type vload(const T* p) {
  typename VecT<T>::type v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

// Writes (or adds) the lanes of output vector j that lie below V: a whole-vector store while
// it fits, lane by lane for the last, partial one.
template <typename T>
SSCL_ISA_TARGET __attribute__((always_inline)) inline void store_vec(
    T* o, typename VecT<T>::type acc, int64_t j, int64_t V, bool accumulate) {
  constexpr int L = VecT<T>::lanes;
  if ((j + 1) * L <= V) {
    if (accumulate) acc += vload<T>(o + j * L);
    __builtin_memcpy(o + j * L, &acc, sizeof(acc));
  } else {
    for (int64_t w = j * L; w < V; ++w) {
      o[w] = accumulate ? o[w] + acc[w - j * L] : acc[w - j * L];
    }
  }
}

// Rows q0 .. q0 + RB - 1 of the flattened (outer, inner) index, output vectors j0 .. j0 + JB - 1.
template <typename T, int JB, int RB>
SSCL_ISA_TARGET __attribute__((always_inline)) inline void block(
    const T* const* src, T* const* dst, int64_t V, int64_t VP, const T* B, int64_t j0,
    bool accumulate) {
  using vec = typename VecT<T>::type;
  constexpr int L = VecT<T>::lanes;
  vec acc[RB][JB];
  for (int r = 0; r < RB; ++r)
    for (int j = 0; j < JB; ++j) acc[r][j] = vec{};
  const T* b_row = B + j0 * L;
  for (int64_t v = 0; v < V; ++v, b_row += VP) {
    vec b[JB];
    for (int j = 0; j < JB; ++j) b[j] = vload<T>(b_row + j * L);
    for (int r = 0; r < RB; ++r) {
      const T s = src[r][v];
      for (int j = 0; j < JB; ++j) acc[r][j] += s * b[j];
    }
  }
  for (int r = 0; r < RB; ++r)
    for (int j = 0; j < JB; ++j) store_vec<T>(dst[r], acc[r][j], j0 + j, V, accumulate);
}

// All rows, output vectors j0 .. j0 + JB - 1.
template <typename T, int JB>
SSCL_ISA_TARGET void columns(const T* in, int64_t in_so, int64_t in_si, T* out, int64_t out_so,
                             int64_t out_si, int64_t n_outer, int64_t n_inner, int64_t V,
                             int64_t VP, const T* B, int64_t j0, bool accumulate) {
  constexpr int RB = block_rows(JB);
  const int64_t rows = n_outer * n_inner;
  const T* src[RB];
  T* dst[RB];
  int64_t a = 0, i = 0;  // (outer, inner) of row q
  int64_t q = 0;
  for (; q + RB <= rows; q += RB) {
    for (int r = 0; r < RB; ++r) {
      src[r] = in + a * in_so + i * in_si;
      dst[r] = out + a * out_so + i * out_si;
      if (++i == n_inner) i = 0, ++a;
    }
    block<T, JB, RB>(src, dst, V, VP, B, j0, accumulate);
  }
  for (; q < rows; ++q) {
    const T* s = in + a * in_so + i * in_si;
    T* d = out + a * out_so + i * out_si;
    block<T, JB, 1>(&s, &d, V, VP, B, j0, accumulate);
    if (++i == n_inner) i = 0, ++a;
  }
}

}  // namespace detail

// out[(a, i), :V] (+)= in[(a, i), :V] @ B for a < n_outer, i < n_inner; row (a, i) of `in` at
// in + a * in_so + i * in_si (likewise `out`). B: V x VP, zero beyond column V.
template <typename T>
SSCL_ISA_TARGET void aggregate(const T* in, int64_t in_so, int64_t in_si, T* out, int64_t out_so,
                               int64_t out_si, int64_t n_outer, int64_t n_inner, int64_t V,
                               int64_t VP, const T* B, bool accumulate) {
  constexpr int L = detail::VecT<T>::lanes;
  constexpr int JB = detail::kMaxCols;
  const int64_t NV = (V + L - 1) / L;
  int64_t j0 = 0;
  for (; j0 + JB <= NV; j0 += JB) {
    detail::columns<T, JB>(in, in_so, in_si, out, out_so, out_si, n_outer, n_inner, V, VP, B, j0,
                           accumulate);
  }
  // the remaining (fewer than JB) output vectors
  const int64_t rem = NV - j0;
  if constexpr (JB > 3) {
    if (rem == 3) {
      return detail::columns<T, 3>(in, in_so, in_si, out, out_so, out_si, n_outer, n_inner, V,
                                   VP, B, j0, accumulate);
    }
  }
  if constexpr (JB > 2) {
    if (rem == 2) {
      return detail::columns<T, 2>(in, in_so, in_si, out, out_so, out_si, n_outer, n_inner, V,
                                   VP, B, j0, accumulate);
    }
  }
  if (rem == 1) {
    detail::columns<T, 1>(in, in_so, in_si, out, out_so, out_si, n_outer, n_inner, V, VP, B, j0,
                          accumulate);
  }
}
