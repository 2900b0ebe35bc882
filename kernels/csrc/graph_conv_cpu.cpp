// Fused spatial graph convolution on CPU: forward and backward, tiled over frames.
//
//   y[n,o,t,w] = sum_k sum_c sum_v W[k,o,c] x[n,c,t,v] A[k,v,w] + bias[o]   (A[n,k,v,w] per sample)
//
// The unfused formulations (1x1 conv to K*C' channels, then einsum with A) write and re-read an
// (N, K, C', T, V) intermediate, K times the output. Here one task handles a tile of Tb frames of
// one sample: the V x V aggregation (a register-blocked loop in one copy per instruction set,
// graph_conv_aggregate.h, V padded to whole 64-byte vectors) and the channel mixing (a GEMM on
// the cache-sized tile through ATen/BLAS) run back to back on a per-thread buffer of
// K * C * Tb * V elements, so the K-fold tensor never exists in memory.
// Backward, per tile and in one pass: M = W^T grad_y (one GEMM for all k) gives grad_x (M
// aggregated with A^T) and grad_A (x^T M_k); grad_W is grad_y (x aggregated with A)^T. Sums
// over (n, t) go to per-group partials (fixed groups of tiles), added once at the end.
// Threads: at::parallel_for, compiled with -fopenmp so that it is torch's OpenMP pool (honours
// torch.set_num_threads); workers carry the caller's dispatcher state.
// Precision: float32 and float64 natively; float16/bfloat16 are upcast to float32, computed with
// float32 accumulation, and the results cast back to the input dtype.
// Tile GEMMs: ATen's BLAS (MKL in the x86 wheels), or for float32 oneDNN's matmul (linked into
// torch) where that is faster: on AMD CPUs with AVX-512, MKL runs its AVX2 code (about 95
// GFLOP/s a core on a Zen 5 EPYC) while oneDNN runs AVX-512 (150-220 GFLOP/s at the tiles'
// shapes; at 16 channels its per-call cost loses). SSCL_GRAPH_CONV_GEMM = auto (that rule) | blas
// | onednn picks it; see gemm_backend().
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>  // amd_cpu()
#endif

#include "graph_conv_checks.h"

// The tile GEMMs run inside our parallel region; a BLAS that opened its own nested thread team
// per call would oversubscribe the cores. Each task pins MKL (linked into the x86 torch wheels)
// to one thread for its tiles. Weak: absent from non-MKL builds (OpenBLAS stays single-threaded
// inside an OpenMP region by itself).
extern "C" int MKL_Set_Num_Threads_Local(int) __attribute__((weak));

// ATen's oneDNN matmul (exported by libtorch_cpu, no public header): result = alpha * mat1 @ mat2
// + beta * result, any strides, float32 among its types. It runs single-threaded inside our
// OpenMP region (oneDNN does not open a nested team).
namespace at {
namespace native {
void mkldnn_matmul(const Tensor& mat1, const Tensor& mat2, const Tensor& result, float beta,
                   float alpha);
}  // namespace native
}  // namespace at

namespace {

// Single-threaded BLAS for the lifetime of the guard (restores the previous setting).
struct SerialBlas {
  int previous = 0;
  SerialBlas() {
    if (MKL_Set_Num_Threads_Local != nullptr) previous = MKL_Set_Num_Threads_Local(1);
  }
  ~SerialBlas() {
    if (MKL_Set_Num_Threads_Local != nullptr) MKL_Set_Num_Threads_Local(previous);
  }
  SerialBlas(const SerialBlas&) = delete;
  SerialBlas& operator=(const SerialBlas&) = delete;
};

// ---- Instruction-set variants of the aggregation kernel ----------------------------------------
// Each variant is graph_conv_aggregate.h compiled for one instruction set with its own vector
// width and register blocking: `generic` (16-byte vectors, the build's own target: SSE2 on
// x86-64, NEON on aarch64), `avx2` (x86-64-v3: AVX2 + FMA, 32-byte vectors, 16 registers) and
// `avx512` (x86-64-v4, 64-byte vectors, 32 registers). The x86 variants carry target attributes,
// so the build needs no -march flag and a -march=haswell build still holds the AVX-512 copy.
// SSCL_GRAPH_CONV_MAX_ISA_BUILD (set by build.py from SSCL_GRAPH_CONV_MAX_ISA) leaves out the
// variants above it. Which variant runs is a fixed rule, never a timing: the highest one that
// is compiled, supported by this CPU and allowed by SSCL_GRAPH_CONV_MAX_ISA at call time.
enum Isa : int { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };
constexpr const char* kIsaNames[] = {"generic", "avx2", "avx512"};

#if defined(__x86_64__) && defined(__GNUC__)
#define SSCL_X86 1
#else
#define SSCL_X86 0
#endif

#ifndef SSCL_GRAPH_CONV_MAX_ISA_BUILD
#define SSCL_GRAPH_CONV_MAX_ISA_BUILD 2
#endif
#if SSCL_X86
constexpr int kCompiledIsa = SSCL_GRAPH_CONV_MAX_ISA_BUILD;
#else
constexpr int kCompiledIsa = kGeneric;
#endif

namespace isa_generic {
#define SSCL_ISA_TARGET
#define SSCL_ISA_VBYTES 16
#if defined(__aarch64__)
#define SSCL_ISA_NREGS 32
#else
#define SSCL_ISA_NREGS 16
#endif
#include "graph_conv_aggregate.h"
#undef SSCL_ISA_TARGET
#undef SSCL_ISA_VBYTES
#undef SSCL_ISA_NREGS
}  // namespace isa_generic

#if SSCL_X86 && SSCL_GRAPH_CONV_MAX_ISA_BUILD >= 1
namespace isa_avx2 {
#define SSCL_ISA_TARGET __attribute__((target("arch=x86-64-v3")))
#define SSCL_ISA_VBYTES 32
#define SSCL_ISA_NREGS 16
#include "graph_conv_aggregate.h"
#undef SSCL_ISA_TARGET
#undef SSCL_ISA_VBYTES
#undef SSCL_ISA_NREGS
}  // namespace isa_avx2
#endif

#if SSCL_X86 && SSCL_GRAPH_CONV_MAX_ISA_BUILD >= 2
namespace isa_avx512 {
#define SSCL_ISA_TARGET __attribute__((target("arch=x86-64-v4")))
#define SSCL_ISA_VBYTES 64
#define SSCL_ISA_NREGS 32
#include "graph_conv_aggregate.h"
#undef SSCL_ISA_TARGET
#undef SSCL_ISA_VBYTES
#undef SSCL_ISA_NREGS
}  // namespace isa_avx512
#endif

// The highest variant this CPU runs (x86-64-v3: AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE;
// x86-64-v4: v3 plus AVX-512 F/BW/CD/DQ/VL).
int cpu_isa() {
#if SSCL_X86
  static const int isa = [] {
    __builtin_cpu_init();
#if !defined(__clang__) && __GNUC__ >= 12
    const bool v3 = __builtin_cpu_supports("x86-64-v3");
    const bool v4 = __builtin_cpu_supports("x86-64-v4");
#else
    const bool v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
    const bool v4 = v3 && __builtin_cpu_supports("avx512f") &&
                    __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512cd") &&
                    __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#endif
    return v4 ? kAvx512 : (v3 ? kAvx2 : kGeneric);
  }();
  return isa;
#else
  return kGeneric;
#endif
}

// SSCL_GRAPH_CONV_MAX_ISA at call time: "avx512" (or unset: no limit), "avx2", "generic".
int env_max_isa() {
  const char* env = std::getenv("SSCL_GRAPH_CONV_MAX_ISA");
  if (env == nullptr || *env == '\0') return kAvx512;
  for (int i = 0; i < 3; ++i) {
    const char* a = env;
    const char* b = kIsaNames[i];
    while (*a != '\0' && std::tolower(static_cast<unsigned char>(*a)) == *b) ++a, ++b;
    if (*a == '\0' && *b == '\0') return i;  // case-insensitive, as build.py reads it
  }
  TORCH_CHECK(false, "SSCL_GRAPH_CONV_MAX_ISA=", env,
              " is not one of generic, avx2, avx512: set one of them or unset it");
  return kGeneric;  // not reached
}

int active_isa() { return std::min({cpu_isa(), kCompiledIsa, env_max_isa()}); }

// Calls of the forward and backward kernels per variant (read by tests to see the path taken).
std::atomic<int64_t> g_calls[3];

template <typename T>
using AggregateFn = void (*)(const T*, int64_t, int64_t, T*, int64_t, int64_t, int64_t, int64_t,
                             int64_t, int64_t, const T*, bool);

template <typename T>
AggregateFn<T> aggregate_for(int isa) {
  g_calls[isa].fetch_add(1, std::memory_order_relaxed);
  switch (isa) {
#if SSCL_X86 && SSCL_GRAPH_CONV_MAX_ISA_BUILD >= 2
    case kAvx512: return &isa_avx512::aggregate<T>;
#endif
#if SSCL_X86 && SSCL_GRAPH_CONV_MAX_ISA_BUILD >= 1
    case kAvx2: return &isa_avx2::aggregate<T>;
#endif
    default: return &isa_generic::aggregate<T>;
  }
}

// ---- The tile GEMMs' backend ------------------------------------------------------------------
enum Gemm : int { kBlas = 0, kOnednn = 1 };
constexpr const char* kGemmNames[] = {"blas", "onednn"};
std::atomic<int64_t> g_gemm_calls[2];  // forward/backward calls per backend (tests read them)

// Empty when ATen's oneDNN matmul runs float32 here, else why not: it is tried once per process
// on a tiny product. Some torch releases, and CPUs without AVX-512 BW/VL/DQ (or with oneDNN
// capped below them, ONEDNN_MAX_CPU_ISA=AVX2), refuse it; the BLAS runs there.
const std::string& onednn_failure() {
  static const std::string failure = [] {
    if (!at::hasMKLDNN()) return std::string("this torch build has no oneDNN");
    try {
      const auto opt = at::TensorOptions().dtype(at::kFloat);
      at::Tensor o = at::empty({2, 2}, opt);
      at::native::mkldnn_matmul(at::ones({2, 3}, opt), at::ones({3, 2}, opt), o, 0.0f, 1.0f);
      if (!o.eq(3).all().item<bool>()) return std::string("a test product came out wrong");
    } catch (const std::exception& e) {
      const std::string what = e.what();
      return what.substr(0, what.find('\n'));
    }
    return std::string();
  }();
  return failure;
}

bool amd_cpu() {
#if SSCL_X86
  static const bool amd = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid(0, &a, &b, &c, &d) == 0) return false;
    return b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u;  // "AuthenticAMD"
  }();
  return amd;
#else
  return false;
#endif
}

// SSCL_GRAPH_CONV_GEMM at call time: -1 = auto (unset or "auto"), else kBlas / kOnednn.
int env_gemm() {
  const char* env = std::getenv("SSCL_GRAPH_CONV_GEMM");
  if (env == nullptr || *env == '\0') return -1;
  std::string v(env);
  for (char& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (v == "auto") return -1;
  if (v == "blas") return kBlas;
  if (v == "onednn") return kOnednn;
  TORCH_CHECK(false, "SSCL_GRAPH_CONV_GEMM=", env,
              " is not one of auto, blas, onednn: set one of them or unset it");
  return kBlas;  // not reached
}

// Narrower layers keep the BLAS under auto: their tile GEMMs are small enough for oneDNN's
// per-call cost to show (whole op, forward + backward, oneDNN against MKL on a Zen 5 EPYC:
// 0.83x at 16 -> 16 channels, 0.88x at 16 -> 32, 1.02x at 32 -> 32, 1.06x at 32 -> 64, 1.16-1.19x
// at 64 -> 64, 1.40x at 128, 1.64x at 256).
constexpr int64_t kOnednnMinChannels = 32;

// Which backend a float32 call's tile GEMMs use (float64 always runs the BLAS: oneDNN has no
// double matmul). A fixed rule, never a timing: auto takes oneDNN on AMD CPUs running the
// avx512 variant for layers of at least kOnednnMinChannels channels in and out (measured
// above); everywhere else the BLAS, which on Intel CPUs has its own AVX-512 code and under the
// AVX2 cap is as fast as oneDNN (90-106 against 86-103 GFLOP/s a core).
int gemm_backend(int isa, int64_t channels) {
  const int env = env_gemm();
  if (env == kBlas) return kBlas;
  if (env == kOnednn) return kOnednn;  // call_gemm_backend raises where it cannot run
  const bool wanted = isa == kAvx512 && amd_cpu() && channels >= kOnednnMinChannels;
  return wanted && onednn_failure().empty() ? kOnednn : kBlas;
}

// out = a @ b (accumulate: out += a @ b) for 2-D views of any strides.
template <typename T>
void gemm(at::Tensor out, const at::Tensor& a, const at::Tensor& b, bool accumulate,
          int backend) {
  if (std::is_same<T, float>::value && backend == kOnednn) {
    at::native::mkldnn_matmul(a, b, out, accumulate ? 1.0f : 0.0f, 1.0f);
  } else if (accumulate) {
    out.addmm_(a, b);
  } else {
    at::mm_out(out, a, b);
  }
}

// The backend for this call (counted), decided before the parallel region: an error there could
// not leave the OpenMP workers.
template <typename T>
int call_gemm_backend(int isa, int64_t channels) {
  const int backend = std::is_same<T, float>::value ? gemm_backend(isa, channels) : kBlas;
  if (backend == kOnednn) {
    TORCH_CHECK(onednn_failure().empty(), "SSCL_GRAPH_CONV_GEMM=onednn but this torch's oneDNN ",
                "matmul does not run float32 here (", onednn_failure(),
                "): unset it or set blas");
  }
  g_gemm_calls[backend].fetch_add(1, std::memory_order_relaxed);
  return backend;
}

// A strided set of rows, row (a, i) at ptr + a * so + i * si.
template <typename T>
struct Rows {
  T* ptr;
  int64_t so, si;
};

// Padded row width of the graph: whole 64-byte vectors (so whole vectors of every variant).
template <typename T>
int64_t padded(int64_t V) {
  constexpr int64_t L = 64 / sizeof(T);
  return (V + L - 1) / L * L;
}

// out[(a, i), :V] (+)= in[(a, i), :V] @ B for a < n_outer, i < n_inner (B: V x padded(V)).
template <typename T>
inline void aggregate(AggregateFn<T> fn, Rows<const T> in, Rows<T> out, int64_t n_outer,
                      int64_t n_inner, int64_t V, const T* B, bool accumulate) {
  fn(in.ptr, in.so, in.si, out.ptr, out.so, out.si, n_outer, n_inner, V, padded<T>(V), B,
     accumulate);
}

// (..., V, V) -> (..., V, VP) zero-padded copy, optionally transposing each V x V matrix.
at::Tensor pad_graph(const at::Tensor& A, bool transpose) {
  const int64_t V = A.size(-1);
  auto src = transpose ? A.transpose(-1, -2) : A;
  auto sizes = A.sizes().vec();
  sizes.back() = A.scalar_type() == at::kDouble ? padded<double>(V) : padded<float>(V);
  auto out = at::zeros(sizes, A.options());
  out.narrow(-1, 0, V).copy_(src);
  return out;
}

// A rows x cols matrix view of `base` starting at element `offset`, row stride ld.
at::Tensor mat(const at::Tensor& base, int64_t offset, int64_t rows, int64_t cols, int64_t ld) {
  return base.as_strided({rows, cols}, {ld, 1}, base.storage_offset() + offset);
}

// Frames per tile: the per-thread buffers (about K * max(C, C') * Tb * V elements) stay near
// L2-sized while the GEMM keeps at least ~256 columns; the frames are then spread evenly over
// the tiles (no short last tile). Override with SSCL_GRAPH_CONV_TILE_T.
int64_t tile_frames(int64_t K, int64_t C, int64_t T, int64_t V) {
  if (const char* env = std::getenv("SSCL_GRAPH_CONV_TILE_T")) {
    const int64_t tb = std::atoll(env);
    if (tb > 0) return std::min(tb, T);
  }
  const int64_t budget = 96 * 1024;  // elements
  int64_t tb = budget / std::max<int64_t>(1, K * C * V);
  tb = std::max<int64_t>(1, std::min(std::max<int64_t>(tb, (256 + V - 1) / V), T));
  const int64_t n_tiles = (T + tb - 1) / tb;
  return (T + n_tiles - 1) / n_tiles;
}

void check_inputs(const at::Tensor& x, const at::Tensor& W, const c10::optional<at::Tensor>& bias,
                  const at::Tensor& A) {
  sscl_checks::check_graph_conv_inputs(x, W, bias, A);
  TORCH_CHECK(x.device().is_cpu(), "x must be a CPU tensor for the CPU kernel, got ", x.device());
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), "x must be floating point, got ",
              x.scalar_type());
}

at::ScalarType compute_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

template <typename T>
void forward_impl(const at::Tensor& x, const at::Tensor& W, const c10::optional<at::Tensor>& bias,
                  const at::Tensor& A, at::Tensor& y) {
  const int64_t N = x.size(0), C = x.size(1), T_ = x.size(2), V = x.size(3);
  const int64_t K = W.size(0), O = W.size(1);
  const bool per_sample = A.dim() == 4;
  const int64_t VP = padded<T>(V);
  const bool aggregate_first = C <= O;  // aggregate the narrower side of the channel mixing
  const int64_t Tb = tile_frames(K, std::max(C, O), T_, V);
  const int64_t n_tb = (T_ + Tb - 1) / Tb;
  const int64_t TV = T_ * V;

  const int isa = active_isa();
  const AggregateFn<T> agg = aggregate_for<T>(isa);
  const int gemm_be = call_gemm_backend<T>(isa, std::min(C, O));
  const at::Tensor Ap = pad_graph(A, false);
  const T* Ap_ptr = Ap.data_ptr<T>();
  // aggregate-first mixes with W as (C', K*C); mix-first with W as (K*C', C).
  const at::Tensor Wmix = aggregate_first ? W.permute({1, 0, 2}).reshape({O, K * C}).contiguous()
                                          : W.reshape({K * O, C}).contiguous();
  const T* x_ptr = x.data_ptr<T>();
  T* y_ptr = y.data_ptr<T>();
  const T* b_ptr = bias.has_value() ? bias->data_ptr<T>() : nullptr;

  // OpenMP workers do not inherit the caller's dispatcher state (autograd already handled above
  // this kernel): carry it over so the tile GEMMs dispatch like a call from this thread.
  const at::ThreadLocalState tls;
  // Tiles are handed out one at a time (each writes only its own output), so a thread that is
  // descheduled on a busy machine holds back one tile, not a fixed share of them.
  const int64_t n_tiles = N * n_tb;
  std::atomic<int64_t> next_tile{0};
  at::parallel_for(0, std::min<int64_t>(at::get_num_threads(), n_tiles), 1, [&](int64_t, int64_t) {
    const at::ThreadLocalStateGuard tls_guard(tls);
    const SerialBlas serial_blas;
    at::Tensor buf = at::empty({K * std::max(C, O) * Tb * V}, x.options());
    T* buf_ptr = buf.data_ptr<T>();
    for (int64_t tile; (tile = next_tile.fetch_add(1, std::memory_order_relaxed)) < n_tiles;) {
      const int64_t n = tile / n_tb, t0 = (tile % n_tb) * Tb, tb = std::min(Tb, T_ - t0);
      const int64_t cols = tb * V;
      const int64_t x_off = n * C * TV + t0 * V, y_off = n * O * TV + t0 * V;
      const T* A_n = Ap_ptr + (per_sample ? n * K * V * VP : 0);
      if (aggregate_first) {
        for (int64_t k = 0; k < K; ++k) {
          aggregate<T>(agg, {x_ptr + x_off, TV, V}, {buf_ptr + k * C * cols, cols, V}, C, tb, V,
                       A_n + k * V * VP, false);
        }
        at::Tensor y_tile = mat(y, y_off, O, cols, TV);
        at::Tensor xa = mat(buf, 0, K * C, cols, cols);
        gemm<T>(y_tile, Wmix, xa, false, gemm_be);
      } else {
        at::Tensor z = mat(buf, 0, K * O, cols, cols);
        gemm<T>(z, Wmix, mat(x, x_off, C, cols, TV), false, gemm_be);
        for (int64_t k = 0; k < K; ++k) {
          aggregate<T>(agg, {buf_ptr + k * O * cols, cols, V}, {y_ptr + y_off, TV, V}, O, tb, V,
                       A_n + k * V * VP, k > 0);
        }
      }
      if (b_ptr != nullptr) {  // the tile is still in cache
        for (int64_t o = 0; o < O; ++o) {
          T* row = y_ptr + y_off + o * TV;
          for (int64_t j = 0; j < cols; ++j) row[j] += b_ptr[o];
        }
      }
    }
  });
}

at::Tensor graph_conv_fwd(const at::Tensor& x_in, const at::Tensor& W_in,
                          const c10::optional<at::Tensor>& bias_in, const at::Tensor& A_in) {
  check_inputs(x_in, W_in, bias_in, A_in);
  const auto ct = compute_type(x_in.scalar_type());
  const at::Tensor x = x_in.to(ct).contiguous();
  const at::Tensor W = W_in.to(ct).contiguous();
  const at::Tensor A = A_in.to(ct).contiguous();
  c10::optional<at::Tensor> bias;
  if (bias_in.has_value()) bias = bias_in->to(ct).contiguous();
  at::Tensor y = at::empty({x.size(0), W.size(1), x.size(2), x.size(3)}, x.options());
  if (y.numel() == 0) return y.to(x_in.scalar_type());
  if (ct == at::kDouble) {
    forward_impl<double>(x, W, bias, A, y);
  } else {
    forward_impl<float>(x, W, bias, A, y);
  }
  return y.to(x_in.scalar_type());
}

template <typename T>
void backward_impl(const at::Tensor& gy, const at::Tensor& x, const at::Tensor& W,
                   const at::Tensor& A, bool need_x, bool need_w, bool need_b, bool need_a,
                   at::Tensor& gx, at::Tensor& gw, at::Tensor& gb, at::Tensor& ga) {
  const int64_t N = x.size(0), C = x.size(1), T_ = x.size(2), V = x.size(3);
  const int64_t K = W.size(0), O = W.size(1);
  const bool per_sample = A.dim() == 4;
  const int64_t VP = padded<T>(V);
  const int64_t Tb = tile_frames(K, std::max(C, O), T_, V);
  const int64_t n_tb = (T_ + Tb - 1) / Tb;
  const int64_t TV = T_ * V;
  const int64_t n_threads = at::get_num_threads();

  const int isa = active_isa();
  const AggregateFn<T> agg = aggregate_for<T>(isa);
  const int gemm_be = call_gemm_backend<T>(isa, std::min(C, O));
  const at::Tensor Ap = pad_graph(A, false);   // for x (x) A, feeding grad_W
  const at::Tensor ApT = pad_graph(A, true);   // for M (x) A^T, giving grad_x
  const T* Ap_ptr = Ap.data_ptr<T>();
  const T* ApT_ptr = ApT.data_ptr<T>();
  // M_k = W_k^T grad_y for all k at once: W as (K*C, C').
  const at::Tensor Wt = W.transpose(1, 2).reshape({K * C, O}).contiguous();
  const T* x_ptr = x.data_ptr<T>();
  const T* gy_ptr = gy.data_ptr<T>();
  T* gx_ptr = need_x ? gx.data_ptr<T>() : nullptr;

  // The tiles form fixed groups of consecutive tiles, handed out one group at a time (as in
  // forward_impl, for busy machines). Each group sums its reductions over (n, t) into its own
  // partial, and the partials are added in group order at the end: the split depends on the
  // shape and the thread count only, so the gradients are the same on every run. About four
  // groups per thread, fewer where the grad_W partials would pass 16 MiB.
  const int64_t n_tiles = N * n_tb;
  const int64_t part_bytes = static_cast<int64_t>(sizeof(T)) * (O * K * C + A.numel() + O);
  const int64_t max_groups =
      std::max<int64_t>(n_threads, (int64_t{16} << 20) / std::max<int64_t>(1, part_bytes));
  const int64_t want_groups = std::min(4 * n_threads, max_groups);
  const int64_t per_group = (n_tiles + want_groups - 1) / want_groups;
  const int64_t n_groups = (n_tiles + per_group - 1) / per_group;
  at::Tensor gw_part = need_w ? at::zeros({n_groups, O, K * C}, x.options()) : at::Tensor();
  at::Tensor ga_part = need_a ? at::zeros({n_groups, A.numel()}, x.options()) : at::Tensor();
  at::Tensor gb_part = need_b ? at::zeros({n_groups, O}, x.options()) : at::Tensor();

  const at::ThreadLocalState tls;  // see forward_impl
  std::atomic<int64_t> next_group{0};
  at::parallel_for(0, std::min(n_threads, n_groups), 1, [&](int64_t, int64_t) {
    const at::ThreadLocalStateGuard tls_guard(tls);
    const SerialBlas serial_blas;
    at::Tensor m_buf = at::empty({K * C * Tb * V}, x.options());
    at::Tensor xa_buf = at::empty({K * C * Tb * V}, x.options());
    at::Tensor xc_buf = at::empty({C * Tb * V}, x.options());
    T* m_ptr = m_buf.data_ptr<T>();
    T* xa_ptr = xa_buf.data_ptr<T>();
    T* xc_ptr = xc_buf.data_ptr<T>();
    for (int64_t group; (group = next_group.fetch_add(1, std::memory_order_relaxed)) < n_groups;) {
      const int64_t first = group * per_group, last = std::min(n_tiles, first + per_group);
      for (int64_t tile = first; tile < last; ++tile) {
        const int64_t n = tile / n_tb, t0 = (tile % n_tb) * Tb, tb = std::min(Tb, T_ - t0);
        const int64_t cols = tb * V;
        const int64_t x_off = n * C * TV + t0 * V, y_off = n * O * TV + t0 * V;
        const int64_t a_off = per_sample ? n * K * V * VP : 0;
        at::Tensor gy_tile = mat(gy, y_off, O, cols, TV);
        if (need_x || need_a) {
          at::Tensor m = mat(m_buf, 0, K * C, cols, cols);
          gemm<T>(m, Wt, gy_tile, false, gemm_be);
          if (need_x) {
            for (int64_t k = 0; k < K; ++k) {
              aggregate<T>(agg, {m_ptr + k * C * cols, cols, V}, {gx_ptr + x_off, TV, V}, C, tb, V,
                           ApT_ptr + a_off + k * V * VP, k > 0);
            }
          }
          if (need_a) {
            // grad_A[k] += x_tile^T M_k over the C * tb rows (v, w): a V x V GEMM with a long
            // inner dimension, on a contiguous copy of the x tile.
            for (int64_t c = 0; c < C; ++c) {
              std::memcpy(xc_ptr + c * cols, x_ptr + x_off + c * TV, sizeof(T) * cols);
            }
            at::Tensor xc = mat(xc_buf, 0, C * tb, V, V);
            at::Tensor ga_t = ga_part[group];
            for (int64_t k = 0; k < K; ++k) {
              const int64_t g_off = ((per_sample ? n * K : 0) + k) * V * V;
              at::Tensor acc = mat(ga_t, g_off, V, V, V);
              gemm<T>(acc, xc.t(), mat(m_buf, k * C * cols, C * tb, V, V), true, gemm_be);
            }
          }
        }
        if (need_w) {
          const T* A_n = Ap_ptr + a_off;
          for (int64_t k = 0; k < K; ++k) {
            aggregate<T>(agg, {x_ptr + x_off, TV, V}, {xa_ptr + k * C * cols, cols, V}, C, tb, V,
                         A_n + k * V * VP, false);
          }
          at::Tensor acc = gw_part[group];
          gemm<T>(acc, gy_tile, mat(xa_buf, 0, K * C, cols, cols).t(), true, gemm_be);
        }
        if (need_b) {
          T* gb_t = gb_part.data_ptr<T>() + group * O;
          for (int64_t o = 0; o < O; ++o) {
            const T* row = gy_ptr + y_off + o * TV;
            T s = T(0);
            for (int64_t j = 0; j < cols; ++j) s += row[j];
            gb_t[o] += s;
          }
        }
      }
    }
  });
  if (need_w) gw.copy_(gw_part.sum(0).view({O, K, C}).permute({1, 0, 2}));
  if (need_a) ga.copy_(ga_part.sum(0).view(A.sizes()));
  if (need_b) gb.copy_(gb_part.sum(0));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> graph_conv_bwd(
    const at::Tensor& gy_in, const at::Tensor& x_in, const at::Tensor& W_in,
    const at::Tensor& A_in, bool need_x, bool need_w, bool need_b, bool need_a) {
  check_inputs(x_in, W_in, c10::nullopt, A_in);
  const int64_t N = x_in.size(0), T_ = x_in.size(2), V = x_in.size(3), O = W_in.size(1);
  TORCH_CHECK(gy_in.dim() == 4 && gy_in.size(0) == N && gy_in.size(1) == O &&
                  gy_in.size(2) == T_ && gy_in.size(3) == V,
              "grad_y must be (N, C', T, V) = (", N, ", ", O, ", ", T_, ", ", V, "), got ",
              gy_in.sizes());
  const auto ct = compute_type(x_in.scalar_type());
  const at::Tensor gy = gy_in.to(ct).contiguous();
  const at::Tensor x = x_in.to(ct).contiguous();
  const at::Tensor W = W_in.to(ct).contiguous();
  const at::Tensor A = A_in.to(ct).contiguous();
  const auto opt = x.options();
  at::Tensor gx = need_x ? at::empty(x.sizes(), opt) : at::empty({0}, opt);
  at::Tensor gw = need_w ? at::empty(W.sizes(), opt) : at::empty({0}, opt);
  at::Tensor gb = need_b ? at::empty({O}, opt) : at::empty({0}, opt);
  at::Tensor ga = need_a ? at::empty(A.sizes(), opt) : at::empty({0}, opt);
  if (x.numel() == 0 || gy.numel() == 0) {
    // Empty batch/frames/channels: every sum is empty.
    for (at::Tensor* g : {&gx, &gw, &gb, &ga}) g->zero_();
  } else if (ct == at::kDouble) {
    backward_impl<double>(gy, x, W, A, need_x, need_w, need_b, need_a, gx, gw, gb, ga);
  } else {
    backward_impl<float>(gy, x, W, A, need_x, need_w, need_b, need_a, gx, gw, gb, ga);
  }
  const auto out_t = x_in.scalar_type();
  return {gx.to(out_t), gw.to(out_t), gb.to(out_t), ga.to(out_t)};
}

// [variant in use, this CPU's highest variant, highest variant compiled in]
std::vector<std::string> graph_conv_isa() {
  return {kIsaNames[active_isa()], kIsaNames[cpu_isa()], kIsaNames[kCompiledIsa]};
}

// Forward and backward calls so far per variant: [generic, avx2, avx512].
std::vector<int64_t> graph_conv_calls() {
  return {g_calls[0].load(), g_calls[1].load(), g_calls[2].load()};
}

// [backend a float32 call whose narrower side has `channels` channels would use now, why
// oneDNN's float32 matmul cannot run here ("" if it can)]
std::vector<std::string> graph_conv_gemm(int64_t channels) {
  return {kGemmNames[gemm_backend(active_isa(), channels)], onednn_failure()};
}

// Forward and backward calls so far per tile-GEMM backend: [blas, onednn].
std::vector<int64_t> graph_conv_gemm_calls() {
  return {g_gemm_calls[0].load(), g_gemm_calls[1].load()};
}

}  // namespace

TORCH_LIBRARY(sscl_cpu, m) {
  m.def("graph_conv_isa() -> str[]", &graph_conv_isa);
  m.def("graph_conv_gemm(int channels) -> str[]", &graph_conv_gemm);
  m.def("graph_conv_gemm_calls() -> int[]", &graph_conv_gemm_calls);
  m.def("graph_conv_calls() -> int[]", &graph_conv_calls);
  m.def("graph_conv_fwd(Tensor x, Tensor weight, Tensor? bias, Tensor adjacency) -> Tensor");
  m.def(
      "graph_conv_bwd(Tensor grad_y, Tensor x, Tensor weight, Tensor adjacency, bool need_x, "
      "bool need_weight, bool need_bias, bool need_adjacency) -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(sscl_cpu, CPU, m) {
  m.impl("graph_conv_fwd", &graph_conv_fwd);
  m.impl("graph_conv_bwd", &graph_conv_bwd);
}

