// Input checks of sscl::graph_conv shared by the CPU and CUDA implementations: shapes, dtypes
// and devices, each message naming the argument and the expected shape. Each implementation
// adds its own device and size limits after these.
#pragma once

#include <ATen/ATen.h>

namespace sscl_checks {

inline void check_graph_conv_inputs(const at::Tensor& x, const at::Tensor& W,
                                    const c10::optional<at::Tensor>& bias, const at::Tensor& A) {
  TORCH_CHECK(x.dim() == 4, "x must be (N, C, T, V), got ", x.sizes());
  const int64_t N = x.size(0), C = x.size(1), V = x.size(3);
  TORCH_CHECK(W.dim() == 3 && W.size(2) == C, "weight must be (K, C', C) with C=", C,
              " matching x.shape[1], got ", W.sizes());
  const int64_t K = W.size(0), O = W.size(1);
  const bool ok = (A.dim() == 3 && A.size(0) == K && A.size(1) == V && A.size(2) == V) ||
                  (A.dim() == 4 && A.size(0) == N && A.size(1) == K && A.size(2) == V &&
                   A.size(3) == V);
  TORCH_CHECK(ok, "adjacency must be (K, V, V) or (N, K, V, V) with K=", K, ", V=", V,
              " matching x.shape[3] and N=", N, ", got ", A.sizes());
  TORCH_CHECK(W.scalar_type() == x.scalar_type() && W.device() == x.device(),
              "weight must have x's dtype and device, got ", W.scalar_type(), " on ", W.device());
  TORCH_CHECK(A.scalar_type() == x.scalar_type() && A.device() == x.device(),
              "adjacency must have x's dtype and device, got ", A.scalar_type(), " on ",
              A.device());
  if (bias.has_value()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == O, "bias must be (C',) with C'=", O,
                ", got ", bias->sizes());
    TORCH_CHECK(bias->scalar_type() == x.scalar_type() && bias->device() == x.device(),
                "bias must have x's dtype and device, got ", bias->scalar_type(), " on ",
                bias->device());
  }
}

}  // namespace sscl_checks
