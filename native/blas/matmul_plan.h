// A cuBLASLt matmul prepared once per shape: descriptors, layouts and the
// algorithm the heuristic picked. Launches with the same shape, types and
// pointer alignments reuse it, so a call costs one cublasLtMatmul.
#pragma once

#include <napi.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>

#include "blas/cublaslt_api.h"
#include "blas/matmul_fields.h"
#include "common/baton.h"

namespace wideep::blas {

using MatmulBaton = Baton<MatmulField>;

// Everything but the pointers and alpha/beta, plus each operand's alignment.
using PlanKey = std::array<int64_t, 26>;

PlanKey KeyOf(const MatmulBaton& b);

class MatmulPlan {
 public:
  // Throws CUBLAS_STATUS_NOT_SUPPORTED (with the shape) when no algorithm fits.
  MatmulPlan(Napi::Env env, const Api& api, LtHandle lt, const MatmulBaton& b);
  ~MatmulPlan();
  MatmulPlan(const MatmulPlan&) = delete;
  MatmulPlan& operator=(const MatmulPlan&) = delete;

  void Launch(Napi::Env env, LtHandle lt, const MatmulBaton& b, cudaStream_t stream) const;

 private:
  void Prepare(Napi::Env env, LtHandle lt, const MatmulBaton& b);
  void Destroy();

  const Api& api_;
  MatmulDesc desc_ = nullptr;
  MatrixLayout a_ = nullptr, b_ = nullptr, c_ = nullptr, d_ = nullptr;
  MatmulAlgo algo_{};
  bool scaled_ = false;
};

}  // namespace wideep::blas
