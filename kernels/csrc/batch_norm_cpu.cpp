// Training batch statistics of a batch norm on CPU in one read of the input.
//
//   mean[c] = mean over (n, l) of x[n, c, l],  var[c] = biased variance over the same elements
//
// for x (N, C, *) contiguous (NCHW, as the models' (N, C, T, V) features lie). ATen's training
// batch norm on such an input spends most of its time collecting these statistics (about 2 ms
// of 2.4 at (64, 16, 100, 20) on the 2-core test machine, against 0.3 ms for the normalisation
// itself); here each thread takes whole channels, and each (n, c) plane, still in L1/L2 after
// its sum, gives its own mean and squared deviations, combined over n in float64 with the
// pairwise update of Chan, Golub and LeVeque (no E[x^2] - E[x]^2 cancellation).
// float32 and float64; the Python side (kernels/batch_norm.py) does the rest of the batch norm
// with ATen (normalisation with these statistics, running averages, backward).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <tuple>

namespace {

std::atomic<int64_t> g_stats_calls{0};

template <typename T>
void stats_impl(const T* x, int64_t N, int64_t C, int64_t L, T* mean_out, T* var_out) {
  at::parallel_for(0, C, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double count = 0.0, mean = 0.0, m2 = 0.0;
      for (int64_t n = 0; n < N; ++n) {
        const T* p = x + (n * C + c) * L;
        // Sums of x - p[0]: the shift keeps the plane mean exact to float rounding of the
        // spread, not of |x| (a mean of 1000 with a spread of 0.01 keeps its variance).
        const T shift = p[0];
        T sum = T(0);
#pragma omp simd reduction(+ : sum)
        for (int64_t i = 0; i < L; ++i) sum += p[i] - shift;
        const T shifted_mean = sum / static_cast<T>(L);
        T sq = T(0);
#pragma omp simd reduction(+ : sq)
        for (int64_t i = 0; i < L; ++i) {
          const T d = (p[i] - shift) - shifted_mean;
          sq += d * d;
        }
        const double plane_mean = static_cast<double>(shift) + static_cast<double>(shifted_mean);
        const double nb = static_cast<double>(L), total = count + nb;
        const double delta = plane_mean - mean;
        mean += delta * nb / total;
        m2 += static_cast<double>(sq) + delta * delta * count * nb / total;
        count = total;
      }
      mean_out[c] = static_cast<T>(mean);
      var_out[c] = static_cast<T>(m2 / count);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> batch_norm_stats(const at::Tensor& x) {
  TORCH_CHECK(x.dim() >= 2, "x must be (N, C, ...), got ", x.sizes());
  TORCH_CHECK(x.device().is_cpu(), "x must be a CPU tensor, got ", x.device());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "x must be float32 or float64, got ", x.scalar_type());
  const int64_t N = x.size(0), C = x.size(1);
  TORCH_CHECK(N > 0 && x.numel() / C > 1,
              "batch statistics need more than one value per channel, got ", x.sizes());
  const at::Tensor xc = x.contiguous();
  const int64_t L = xc.numel() / (N * C);
  at::Tensor mean = at::empty({C}, xc.options()), var = at::empty({C}, xc.options());
  g_stats_calls.fetch_add(1, std::memory_order_relaxed);
  if (xc.scalar_type() == at::kDouble) {
    stats_impl<double>(xc.data_ptr<double>(), N, C, L, mean.data_ptr<double>(),
                       var.data_ptr<double>());
  } else {
    stats_impl<float>(xc.data_ptr<float>(), N, C, L, mean.data_ptr<float>(),
                      var.data_ptr<float>());
  }
  return {mean, var};
}

int64_t batch_norm_stats_calls() { return g_stats_calls.load(); }

}  // namespace

TORCH_LIBRARY_FRAGMENT(sscl_cpu, m) {
  m.def("batch_norm_stats(Tensor x) -> (Tensor, Tensor)");
  m.def("batch_norm_stats_calls() -> int", &batch_norm_stats_calls);
}

TORCH_LIBRARY_IMPL(sscl_cpu, CPU, m) { m.impl("batch_norm_stats", &batch_norm_stats); }
