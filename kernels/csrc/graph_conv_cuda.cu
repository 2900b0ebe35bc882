// Fused spatial graph convolution on CUDA: forward and backward, tiled over (frames, channels).
//
//   y[n,o,t,w] = sum_k sum_c sum_v W[k,o,c] x[n,c,t,v] A[k,v,w] + bias[o]   (A[n,k,v,w] per sample)
//
// One block owns a tile of TB frames (TB * V = P <= 128 positions) of one sample. Per chunk of CB
// input channels it stages x and the graph A in shared memory, aggregates over v there
// (xa[k][c][t][w]) and mixes channels from shared memory into per-thread accumulators, so the
// K-fold (N, K, C', T, V) intermediate of the unfused formulation never reaches global memory.
// grad_x is the same kernel with W^T and A^T; grad_W and grad_A are block-level reductions over
// tiles with one atomicAdd per entry and block. All arithmetic is CUDA-core FMA with an fp32
// accumulator (fp64 for double), so float32 never goes through TF32 and fp16/bf16 only round
// at the final store.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "graph_conv_checks.h"

namespace {

// Forward block: P positions x 4 thread rows x 16 outputs each = 64 output channels, so the
// shared-memory aggregation (V multiply-adds per staged value) is amortised over 64 outputs.
constexpr int kOutPerThread = 16;  // output channels per thread in the forward kernel
constexpr int kChanChunk = 16;     // input channels staged per shared-memory round
constexpr int kOutGroups = 4;      // thread rows of the forward block
constexpr int kReduceThreads = 256;
constexpr int kMaxEntries = 8;     // register accumulators per thread in the grad_W kernel

__host__ __device__ inline int frames_per_tile(int V) { return V >= 128 ? 1 : 128 / V; }

// ---------------------------------------------------------------------------------------------
// Forward (also grad_x with W^T, A^T): grid (t-tiles, out-channel blocks, N),
// block (P, kOutGroups). Shared: A[K][V][V], xs[CB][P], xa[K][CB][P], ws[K][CB][OB].
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(128 * kOutGroups) graph_conv_fwd_kernel(const scalar_t* __restrict__ x,
                                      const scalar_t* __restrict__ W,
                                      const scalar_t* __restrict__ bias,
                                      const scalar_t* __restrict__ A, scalar_t* __restrict__ y,
                                      int C, int O, int T, int V, int K, bool per_sample) {
  extern __shared__ unsigned char smem_raw[];
  acc_t* As = reinterpret_cast<acc_t*>(smem_raw);
  const int TB = frames_per_tile(V), P = TB * V, CB = kChanChunk;
  const int OB = kOutGroups * kOutPerThread;
  acc_t* xs = As + K * V * V;
  acc_t* xa = xs + CB * P;
  acc_t* ws = xa + K * CB * P;

  const int n = blockIdx.z, t0 = blockIdx.x * TB, o0 = blockIdx.y * OB;
  const int tid = threadIdx.y * blockDim.x + threadIdx.x;
  const int nthreads = blockDim.x * blockDim.y;

  const scalar_t* A_n = A + (per_sample ? static_cast<int64_t>(n) * K * V * V : 0);
  for (int i = tid; i < K * V * V; i += nthreads) As[i] = static_cast<acc_t>(A_n[i]);

  acc_t acc[kOutPerThread];
#pragma unroll
  for (int j = 0; j < kOutPerThread; ++j) acc[j] = acc_t(0);

  const int p = threadIdx.x;
  const int og = threadIdx.y * kOutPerThread;
  for (int c0 = 0; c0 < C; c0 += CB) {
    const int cb = min(CB, C - c0);
    for (int i = tid; i < CB * P; i += nthreads) {
      const int c = i / P, q = i % P, t = t0 + q / V, v = q % V;
      xs[i] = (c < cb && t < T)
                  ? static_cast<acc_t>(x[((static_cast<int64_t>(n) * C + c0 + c) * T + t) * V + v])
                  : acc_t(0);
    }
    for (int i = tid; i < K * CB * OB; i += nthreads) {
      const int k = i / (CB * OB), r = i % (CB * OB), c = r / OB, o = r % OB;
      ws[i] = (c < cb && o0 + o < O)
                  ? static_cast<acc_t>(W[(static_cast<int64_t>(k) * O + o0 + o) * C + c0 + c])
                  : acc_t(0);
    }
    __syncthreads();
    for (int i = tid; i < K * CB * P; i += nthreads) {
      const int k = i / (CB * P), r = i % (CB * P), c = r / P, q = r % P;
      const int tl = q / V, w = q % V;
      const acc_t* xrow = xs + c * P + tl * V;
      const acc_t* acol = As + k * V * V + w;
      acc_t s = acc_t(0);
      for (int v = 0; v < V; ++v) s += xrow[v] * acol[v * V];
      xa[i] = s;
    }
    __syncthreads();
    if (p < P) {
      for (int k = 0; k < K; ++k) {
        for (int c = 0; c < cb; ++c) {
          const acc_t xv = xa[(k * CB + c) * P + p];
          const acc_t* wr = ws + (k * CB + c) * OB + og;
#pragma unroll
          for (int j = 0; j < kOutPerThread; ++j) acc[j] += wr[j] * xv;
        }
      }
    }
    __syncthreads();
  }
  if (p < P) {
    const int t = t0 + p / V, w = p % V;
    if (t < T) {
#pragma unroll
      for (int j = 0; j < kOutPerThread; ++j) {
        const int o = o0 + og + j;
        if (o < O) {
          acc_t out = acc[j];
          if (bias != nullptr) out += static_cast<acc_t>(bias[o]);
          y[((static_cast<int64_t>(n) * O + o) * T + t) * V + w] = static_cast<scalar_t>(out);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// grad_W[k,o,c] = sum_{n,t,w} gy[n,o,t,w] xa[n,k,c,t,w]: grid (out blocks, in blocks, splits),
// each block loops over its share of (n, t-tile) tiles, rebuilding xa in shared memory.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kReduceThreads) graph_conv_grad_w_kernel(const scalar_t* __restrict__ gy,
                                         const scalar_t* __restrict__ x,
                                         const scalar_t* __restrict__ A, acc_t* __restrict__ gw,
                                         int N, int C, int O, int T, int V, int K, int CB,
                                         bool per_sample) {
  extern __shared__ unsigned char smem_raw[];
  acc_t* As = reinterpret_cast<acc_t*>(smem_raw);
  const int TB = frames_per_tile(V), P = TB * V, OB = 32;
  acc_t* xs = As + K * V * V;
  acc_t* xa = xs + CB * P;
  acc_t* gys = xa + K * CB * P;

  const int o0 = blockIdx.x * OB, c0 = blockIdx.y * CB;
  const int cb = min(CB, C - c0), ob = min(OB, O - o0);
  const int tid = threadIdx.x, nthreads = blockDim.x;
  const int n_tiles_t = (T + TB - 1) / TB;
  const int entries = K * OB * CB;

  acc_t acc[kMaxEntries];
#pragma unroll
  for (int j = 0; j < kMaxEntries; ++j) acc[j] = acc_t(0);

  int loaded_n = -1;
  for (int s = blockIdx.z; s < N * n_tiles_t; s += gridDim.z) {
    const int n = s / n_tiles_t, t0 = (s % n_tiles_t) * TB;
    if (n != loaded_n && (per_sample || loaded_n < 0)) {
      const scalar_t* A_n = A + (per_sample ? static_cast<int64_t>(n) * K * V * V : 0);
      __syncthreads();
      for (int i = tid; i < K * V * V; i += nthreads) As[i] = static_cast<acc_t>(A_n[i]);
      loaded_n = n;
    }
    for (int i = tid; i < CB * P; i += nthreads) {
      const int c = i / P, q = i % P, t = t0 + q / V, v = q % V;
      xs[i] = (c < cb && t < T)
                  ? static_cast<acc_t>(x[((static_cast<int64_t>(n) * C + c0 + c) * T + t) * V + v])
                  : acc_t(0);
    }
    for (int i = tid; i < OB * P; i += nthreads) {
      const int o = i / P, q = i % P, t = t0 + q / V, v = q % V;
      gys[i] = (o < ob && t < T)
                   ? static_cast<acc_t>(gy[((static_cast<int64_t>(n) * O + o0 + o) * T + t) * V + v])
                   : acc_t(0);
    }
    __syncthreads();
    for (int i = tid; i < K * CB * P; i += nthreads) {
      const int k = i / (CB * P), r = i % (CB * P), c = r / P, q = r % P;
      const int tl = q / V, w = q % V;
      const acc_t* xrow = xs + c * P + tl * V;
      const acc_t* acol = As + k * V * V + w;
      acc_t sum = acc_t(0);
      for (int v = 0; v < V; ++v) sum += xrow[v] * acol[v * V];
      xa[i] = sum;
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kMaxEntries; ++j) {
      const int e = tid + j * nthreads;
      if (e < entries) {
        const int k = e / (OB * CB), r = e % (OB * CB), o = r / CB, c = r % CB;
        const acc_t* g = gys + o * P;
        const acc_t* a = xa + (k * CB + c) * P;
        acc_t sum = acc_t(0);
        for (int q = 0; q < P; ++q) sum += g[q] * a[q];
        acc[j] += sum;
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int j = 0; j < kMaxEntries; ++j) {
    const int e = tid + j * nthreads;
    if (e < entries) {
      const int k = e / (OB * CB), r = e % (OB * CB), o = r / CB, c = r % CB;
      if (o < ob && c < cb) atomicAdd(gw + (static_cast<int64_t>(k) * O + o0 + o) * C + c0 + c, acc[j]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// grad_A[(n),k,v,w] = sum_{c,t} x[n,c,t,v] M[n,k,c,t,w], M = W_k^T gy, per (n, t-tile) block;
// M is built in shared memory chunk by chunk, the K*V*V partial sums live in shared memory.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kReduceThreads) graph_conv_grad_a_kernel(const scalar_t* __restrict__ gy,
                                         const scalar_t* __restrict__ x,
                                         const scalar_t* __restrict__ W, acc_t* __restrict__ ga,
                                         int C, int O, int T, int V, int K, bool per_sample) {
  extern __shared__ unsigned char smem_raw[];
  acc_t* gas = reinterpret_cast<acc_t*>(smem_raw);
  const int TB = frames_per_tile(V), P = TB * V, CB = kChanChunk, OB = 32;
  acc_t* xs = gas + K * V * V;
  acc_t* M = xs + CB * P;
  acc_t* gys = M + K * CB * P;
  acc_t* ws = gys + OB * P;

  const int n = blockIdx.y, t0 = blockIdx.x * TB;
  const int tid = threadIdx.x, nthreads = blockDim.x;
  for (int i = tid; i < K * V * V; i += nthreads) gas[i] = acc_t(0);

  for (int c0 = 0; c0 < C; c0 += CB) {
    const int cb = min(CB, C - c0);
    for (int i = tid; i < CB * P; i += nthreads) {
      const int c = i / P, q = i % P, t = t0 + q / V, v = q % V;
      xs[i] = (c < cb && t < T)
                  ? static_cast<acc_t>(x[((static_cast<int64_t>(n) * C + c0 + c) * T + t) * V + v])
                  : acc_t(0);
    }
    for (int i = tid; i < K * CB * P; i += nthreads) M[i] = acc_t(0);
    for (int o0 = 0; o0 < O; o0 += OB) {
      const int ob = min(OB, O - o0);
      __syncthreads();
      for (int i = tid; i < OB * P; i += nthreads) {
        const int o = i / P, q = i % P, t = t0 + q / V, v = q % V;
        gys[i] = (o < ob && t < T)
                     ? static_cast<acc_t>(gy[((static_cast<int64_t>(n) * O + o0 + o) * T + t) * V + v])
                     : acc_t(0);
      }
      for (int i = tid; i < K * CB * OB; i += nthreads) {
        const int k = i / (CB * OB), r = i % (CB * OB), c = r / OB, o = r % OB;
        ws[i] = (c < cb && o < ob)
                    ? static_cast<acc_t>(W[(static_cast<int64_t>(k) * O + o0 + o) * C + c0 + c])
                    : acc_t(0);
      }
      __syncthreads();
      for (int i = tid; i < K * CB * P; i += nthreads) {
        const int k = i / (CB * P), r = i % (CB * P), c = r / P, q = r % P;
        const acc_t* wr = ws + (k * CB + c) * OB;
        acc_t sum = acc_t(0);
        for (int o = 0; o < OB; ++o) sum += wr[o] * gys[o * P + q];
        M[i] += sum;
      }
    }
    __syncthreads();
    for (int e = tid; e < K * V * V; e += nthreads) {
      const int k = e / (V * V), v = (e / V) % V, w = e % V;
      acc_t sum = acc_t(0);
      for (int c = 0; c < cb; ++c) {
        const acc_t* xr = xs + c * P;
        const acc_t* mr = M + (k * CB + c) * P;
        for (int tl = 0; tl < TB; ++tl) sum += xr[tl * V + v] * mr[tl * V + w];
      }
      gas[e] += sum;
    }
    __syncthreads();
  }
  acc_t* dst = ga + (per_sample ? static_cast<int64_t>(n) * K * V * V : 0);
  for (int e = tid; e < K * V * V; e += nthreads) atomicAdd(dst + e, gas[e]);
}

// ---------------------------------------------------------------------------------------------
void check_inputs(const at::Tensor& x, const at::Tensor& W, const c10::optional<at::Tensor>& bias,
                  const at::Tensor& A) {
  sscl_checks::check_graph_conv_inputs(x, W, bias, A);
  TORCH_CHECK(x.is_cuda(), "x must be a CUDA tensor for the CUDA kernel, got ", x.device());
  // A tile holds at most 128 positions (TB * V), so the forward block is at most 128 x 4 threads.
  TORCH_CHECK(x.size(3) <= 128, "x.shape[3] (V joints) must be <= 128 for the CUDA kernel, got ",
              x.size(3));
  TORCH_CHECK(W.size(0) <= 64, "weight.shape[0] (K subsets) must be <= 64 for the CUDA kernel, "
              "got ", W.size(0));
}

// Opts the kernel into more than 48 KiB of dynamic shared memory, or fails with the reason when
// the graph is too large for this device (the tiles hold K * V * V graph entries).
template <typename Kernel>
void allow_smem(Kernel kernel, size_t bytes, int64_t K, int64_t V) {
  int device = 0, limit = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  TORCH_CHECK(bytes <= static_cast<size_t>(limit), "graph_conv on CUDA needs ", bytes,
              " bytes of shared memory per block for K=", K, ", V=", V, " but the device allows ",
              limit, ": use fewer joints/subsets or the CPU path");
  if (bytes > 48 * 1024) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(bytes)));
  }
}

// y = graph_conv(x, W, bias, A) into a fresh tensor (also used for grad_x with W^T, A^T).
at::Tensor launch_forward(const at::Tensor& x, const at::Tensor& W,
                          const c10::optional<at::Tensor>& bias, const at::Tensor& A) {
  const int N = x.size(0), C = x.size(1), T = x.size(2), V = x.size(3);
  const int K = W.size(0), O = W.size(1);
  at::Tensor y = at::empty({N, O, T, V}, x.options());
  if (y.numel() == 0) return y;
  if (C == 0) return bias.has_value() ? y.copy_(bias->view({1, O, 1, 1}).expand_as(y)) : y.zero_();
  const int TB = frames_per_tile(V), P = TB * V, CB = kChanChunk;
  const int OB = kOutGroups * kOutPerThread;
  const dim3 grid((T + TB - 1) / TB, (O + OB - 1) / OB, N);
  const dim3 block(P, kOutGroups);
  const bool per_sample = A.dim() == 4;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "graph_conv_fwd", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const size_t smem = sizeof(acc_t) * (K * V * V + CB * P + K * CB * P + K * CB * OB);
    auto kernel = graph_conv_fwd_kernel<scalar_t, acc_t>;
    allow_smem(kernel, smem, K, V);
    kernel<<<grid, block, smem, stream>>>(
        x.data_ptr<scalar_t>(), W.data_ptr<scalar_t>(),
        bias.has_value() ? bias->data_ptr<scalar_t>() : nullptr, A.data_ptr<scalar_t>(),
        y.data_ptr<scalar_t>(), C, O, T, V, K, per_sample);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

at::Tensor graph_conv_fwd(const at::Tensor& x_in, const at::Tensor& W_in,
                          const c10::optional<at::Tensor>& bias_in, const at::Tensor& A_in) {
  check_inputs(x_in, W_in, bias_in, A_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  c10::optional<at::Tensor> bias;
  if (bias_in.has_value()) bias = bias_in->contiguous();
  return launch_forward(x_in.contiguous(), W_in.contiguous(), bias, A_in.contiguous());
}

int sm_count(const at::Tensor& t) {
  int count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, t.get_device()));
  return count;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> graph_conv_bwd(
    const at::Tensor& gy_in, const at::Tensor& x_in, const at::Tensor& W_in,
    const at::Tensor& A_in, bool need_x, bool need_w, bool need_b, bool need_a) {
  check_inputs(x_in, W_in, c10::nullopt, A_in);
  const int N = x_in.size(0), C = x_in.size(1), T = x_in.size(2), V = x_in.size(3);
  const int K = W_in.size(0), O = W_in.size(1);
  TORCH_CHECK(gy_in.dim() == 4 && gy_in.size(0) == N && gy_in.size(1) == O &&
                  gy_in.size(2) == T && gy_in.size(3) == V,
              "grad_y must be (N, C', T, V) = (", N, ", ", O, ", ", T, ", ", V, "), got ",
              gy_in.sizes());
  TORCH_CHECK(gy_in.scalar_type() == x_in.scalar_type() && gy_in.device() == x_in.device(),
              "grad_y must have x's dtype and device, got ", gy_in.scalar_type(), " on ",
              gy_in.device());
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor gy = gy_in.contiguous(), x = x_in.contiguous();
  const at::Tensor W = W_in.contiguous(), A = A_in.contiguous();
  const auto opt = x.options();
  const bool per_sample = A.dim() == 4;
  const auto acc_type = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const bool empty = x.numel() == 0 || gy.numel() == 0;

  at::Tensor gx = at::empty({0}, opt), gw = at::empty({0}, opt);
  at::Tensor gb = at::empty({0}, opt), ga = at::empty({0}, opt);
  if (need_x) {
    gx = empty ? at::zeros(x.sizes(), opt)
               : launch_forward(gy, W.transpose(1, 2).contiguous(), c10::nullopt,
                                A.transpose(-1, -2).contiguous());
  }
  if (need_b) gb = gy.sum({0, 2, 3}, false, acc_type).to(x.scalar_type());
  const int TB = frames_per_tile(V), P = TB * V, OB = 32;
  const int n_tiles_t = (T + TB - 1) / TB;
  auto stream = c10::cuda::getCurrentCUDAStream();
  if (need_w) {
    at::Tensor acc = at::zeros(W.sizes(), opt.dtype(acc_type));
    if (!empty) {
      const int CB = std::max(1, std::min(kChanChunk, kMaxEntries * kReduceThreads / (K * OB)));
      const int blocks_xy = ((O + OB - 1) / OB) * ((C + CB - 1) / CB);
      const int splits = std::max(1, std::min(N * n_tiles_t, 4 * sm_count(x) / blocks_xy));
      const dim3 grid((O + OB - 1) / OB, (C + CB - 1) / CB, splits);
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "graph_conv_grad_w", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const size_t smem = sizeof(acc_t) * (K * V * V + CB * P + K * CB * P + OB * P);
        auto kernel = graph_conv_grad_w_kernel<scalar_t, acc_t>;
        allow_smem(kernel, smem, K, V);
        kernel<<<grid, kReduceThreads, smem, stream>>>(
            gy.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), A.data_ptr<scalar_t>(),
            acc.data_ptr<acc_t>(), N, C, O, T, V, K, CB, per_sample);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    }
    gw = acc.to(x.scalar_type());
  }
  if (need_a) {
    at::Tensor acc = at::zeros(A.sizes(), opt.dtype(acc_type));
    if (!empty) {
      const int CB = kChanChunk;
      const dim3 grid(n_tiles_t, N);
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "graph_conv_grad_a", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const size_t smem =
            sizeof(acc_t) * (K * V * V + CB * P + K * CB * P + OB * P + K * CB * OB);
        auto kernel = graph_conv_grad_a_kernel<scalar_t, acc_t>;
        allow_smem(kernel, smem, K, V);
        kernel<<<grid, kReduceThreads, smem, stream>>>(
            gy.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), W.data_ptr<scalar_t>(),
            acc.data_ptr<acc_t>(), C, O, T, V, K, per_sample);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    }
    ga = acc.to(x.scalar_type());
  }
  return {gx, gw, gb, ga};
}

}  // namespace

TORCH_LIBRARY(sscl_cuda, m) {
  m.def("graph_conv_fwd(Tensor x, Tensor weight, Tensor? bias, Tensor adjacency) -> Tensor");
  m.def(
      "graph_conv_bwd(Tensor grad_y, Tensor x, Tensor weight, Tensor adjacency, bool need_x, "
      "bool need_weight, bool need_bias, bool need_adjacency) -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(sscl_cuda, CUDA, m) {
  m.impl("graph_conv_fwd", &graph_conv_fwd);
  m.impl("graph_conv_bwd", &graph_conv_bwd);
}
