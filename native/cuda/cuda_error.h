// Maps CUDA runtime statuses to the library's stable `CUDA_ERROR_*` codes.
#pragma once

#include <cuda_runtime_api.h>
#include <napi.h>

#include <string>

#include "common/errors.h"

namespace wideep {

std::string CudaErrorCode(cudaError_t status);

// A Failure describing `status` from the call `what`; ok() when status is cudaSuccess.
Failure CudaFailure(cudaError_t status, const std::string& what);

// Throws a JS error when `status` is not cudaSuccess.
void CudaCheck(Napi::Env env, cudaError_t status, const char* what);

}  // namespace wideep

#define WIDEEP_CUDA_THROW(env, call) ::wideep::CudaCheck((env), (call), #call)

// For code off the JS thread: return a Failure from the enclosing function.
#define WIDEEP_CUDA_RETURN(call)                                          \
  do {                                                                    \
    ::wideep::Failure f_ = ::wideep::CudaFailure((call), #call);          \
    if (!f_.ok()) return f_;                                              \
  } while (0)
