#include "cuda/cuda_error.h"

#include <cctype>
#include <cstring>

namespace wideep {
namespace {

// Runtime names whose driver-API spelling users know better.
struct Alias {
  cudaError_t status;
  const char* code;
};
constexpr Alias kAliases[] = {
    {cudaErrorMemoryAllocation, "CUDA_ERROR_OUT_OF_MEMORY"},
    {cudaErrorNoKernelImageForDevice, "CUDA_ERROR_NO_BINARY_FOR_GPU"},
    {cudaErrorInitializationError, "CUDA_ERROR_NOT_INITIALIZED"},
    {cudaErrorInvalidResourceHandle, "CUDA_ERROR_INVALID_HANDLE"},
};

// "cudaErrorIllegalAddress" -> "CUDA_ERROR_ILLEGAL_ADDRESS".
std::string SnakeCase(const char* name) {
  const char* prefix = "cudaError";
  if (std::strncmp(name, prefix, std::strlen(prefix)) == 0) name += std::strlen(prefix);
  std::string out = "CUDA_ERROR_";
  for (size_t i = 0; name[i]; ++i) {
    unsigned char c = static_cast<unsigned char>(name[i]);
    if (i > 0 && std::isupper(c) && !std::isupper(static_cast<unsigned char>(name[i - 1]))) out += '_';
    out += static_cast<char>(std::toupper(c));
  }
  return out;
}

}  // namespace

std::string CudaErrorCode(cudaError_t status) {
  for (const Alias& a : kAliases) {
    if (a.status == status) return a.code;
  }
  return SnakeCase(cudaGetErrorName(status));
}

Failure CudaFailure(cudaError_t status, const std::string& what) {
  if (status == cudaSuccess) return {};
  return Failure{CudaErrorCode(status), what + " failed: " + cudaGetErrorString(status) + " (" +
                                            CudaErrorCode(status) + ")",
                 static_cast<int>(status)};
}

void CudaCheck(Napi::Env env, cudaError_t status, const char* what) {
  if (status == cudaSuccess) return;
  throw MakeError(env, CudaFailure(status, what));
}

}  // namespace wideep
