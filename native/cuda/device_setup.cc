#include "cuda/device_setup.h"

#include <cuda_runtime_api.h>

#include <cstdint>
#include <mutex>
#include <set>

#include "cuda/cuda_error.h"
#include "cuda/device_guard.h"

namespace wideep {

void EnsureDeviceConfigured(Napi::Env env, int device) {
  static std::mutex mu;
  static std::set<int> configured;
  std::lock_guard<std::mutex> lock(mu);
  if (configured.count(device)) return;
  DeviceGuard guard(device);
  WIDEEP_CUDA_THROW(env, cudaSetDevice(device));
  cudaMemPool_t pool;
  WIDEEP_CUDA_THROW(env, cudaDeviceGetDefaultMemPool(&pool, device));
  uint64_t threshold = UINT64_MAX;
  WIDEEP_CUDA_THROW(env, cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  configured.insert(device);
}

}  // namespace wideep
