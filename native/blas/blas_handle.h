// BlasHandle: one cuBLASLt handle per GPU with its cache of prepared matmuls.
// JS gives every launch its own workspace (one per stream), so two streams
// never share scratch memory.
#pragma once

#include <napi.h>

#include <map>
#include <memory>

#include "blas/cublaslt_api.h"
#include "blas/matmul_plan.h"

namespace wideep::blas {

class BlasHandle : public Napi::ObjectWrap<BlasHandle> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit BlasHandle(const Napi::CallbackInfo& info);
  ~BlasHandle() override;

 private:
  static Napi::Value Fields(const Napi::CallbackInfo& info);
  void Matmul(const Napi::CallbackInfo& info);
  void Close(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);
  void Release();

  int device_ = 0;
  LtHandle lt_ = nullptr;
  const Api* api_ = nullptr;
  std::map<PlanKey, std::unique_ptr<MatmulPlan>> plans_;
};

}  // namespace wideep::blas
