#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include "common/counter_hash.cuh"
#include "tensor/tensor_fill.h"

namespace wideep {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 4096;

__device__ __forceinline__ void Store(void* ptr, int64_t i, FillType type, float v) {
  switch (type) {
    case FillType::kF32: static_cast<float*>(ptr)[i] = v; break;
    case FillType::kBf16: static_cast<__nv_bfloat16*>(ptr)[i] = __float2bfloat16_rn(v); break;
    case FillType::kF16: static_cast<__half*>(ptr)[i] = __float2half_rn(v); break;
    case FillType::kFp8E4m3:
      static_cast<uint8_t*>(ptr)[i] = static_cast<uint8_t>(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));
      break;
    case FillType::kI32: static_cast<int32_t*>(ptr)[i] = static_cast<int32_t>(v); break;
  }
}

__global__ void FillValueKernel(void* ptr, int64_t numel, FillType type, double value) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < numel; i += gridDim.x * static_cast<int64_t>(blockDim.x)) {
    if (type == FillType::kI32) static_cast<int32_t*>(ptr)[i] = static_cast<int32_t>(value);
    else Store(ptr, i, type, static_cast<float>(value));
  }
}

// 24 random bits of element i (stream s) as a float in [0, 1): exact in float32.
__device__ __forceinline__ float Uniform24(uint32_t seed, uint32_t i) {
  return static_cast<float>(CounterHash(seed, i) >> 8) * (1.0f / 16777216.0f);
}

__global__ void FillRandomKernel(void* ptr, int64_t numel, FillType type, FillDistribution dist, uint32_t seed, float a,
                                 float b) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < numel; i += gridDim.x * static_cast<int64_t>(blockDim.x)) {
    const uint32_t n = static_cast<uint32_t>(i);
    float v;
    if (dist == FillDistribution::kUniform) {
      v = __fadd_rn(a, __fmul_rn(__fsub_rn(b, a), Uniform24(seed, n)));
    } else {
      // Box-Muller from two independent hashes of the element.
      const float u1 = 1.0f - Uniform24(seed, 2 * n), u2 = Uniform24(seed, 2 * n + 1);
      v = a + b * sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
    }
    Store(ptr, i, type, v);
  }
}

int BlocksFor(int64_t numel) {
  const int64_t blocks = (numel + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

}  // namespace

cudaError_t LaunchFillValue(void* ptr, int64_t numel, FillType type, double value, cudaStream_t stream) {
  if (numel == 0) return cudaSuccess;
  FillValueKernel<<<BlocksFor(numel), kThreads, 0, stream>>>(ptr, numel, type, value);
  return cudaGetLastError();
}

cudaError_t LaunchFillRandom(void* ptr, int64_t numel, FillType type, FillDistribution dist, uint32_t seed, float a,
                             float b, cudaStream_t stream) {
  if (numel == 0) return cudaSuccess;
  FillRandomKernel<<<BlocksFor(numel), kThreads, 0, stream>>>(ptr, numel, type, dist, seed, a, b);
  return cudaGetLastError();
}

}  // namespace wideep
