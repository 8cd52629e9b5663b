// Row gather and scatter-add: the permute and un-permute steps of the NCCL
// all-to-all-v baseline that `wideep bench ep` measures beside our kernels
// (the same work PyTorch does with index_select and index_add).
#include <cuda_bf16.h>

#include "ep/device_utils.cuh"
#include "ep/ep_kernels.h"

namespace wideep::ep {
namespace {

constexpr int kThreads = 512;

// dst[i] = src[idx[i]], one warp per row.
__global__ void gather_rows(uint8_t* dst, const uint8_t* src, const int32_t* idx, int n, int rowBytes) {
  const int lane = threadIdx.x % kWarpSize;
  const int warps = gridDim.x * (kThreads / kWarpSize);
  for (int i = blockIdx.x * (kThreads / kWarpSize) + threadIdx.x / kWarpSize; i < n; i += warps) {
    warp_copy<4>(dst + static_cast<size_t>(i) * rowBytes, src + static_cast<size_t>(idx[i]) * rowBytes, rowBytes, lane);
  }
}

// out[idx[i]] += src[i] for bf16 rows (atomic, like index_add).
__global__ void scatter_add_bf16(__nv_bfloat16* out, const __nv_bfloat16* src, const int32_t* idx, int n, int hidden) {
  const int pairs = hidden / 2;
  const size_t total = static_cast<size_t>(n) * pairs;
  for (size_t e = blockIdx.x * static_cast<size_t>(kThreads) + threadIdx.x; e < total;
       e += static_cast<size_t>(gridDim.x) * kThreads) {
    const int i = static_cast<int>(e / pairs), p = static_cast<int>(e % pairs);
    const __nv_bfloat162 v = reinterpret_cast<const __nv_bfloat162*>(src + static_cast<size_t>(i) * hidden)[p];
    atomicAdd(reinterpret_cast<__nv_bfloat162*>(out + static_cast<size_t>(idx[i]) * hidden) + p, v);
  }
}

}  // namespace

cudaError_t LaunchGatherRows(void* dst, const void* src, const int32_t* idx, int n, int rowBytes, int numSms,
                             cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  gather_rows<<<numSms, kThreads, 0, stream>>>(static_cast<uint8_t*>(dst), static_cast<const uint8_t*>(src), idx, n,
                                               rowBytes);
  return cudaGetLastError();
}

cudaError_t LaunchScatterAddBf16(void* out, const void* src, const int32_t* idx, int n, int hidden, int numSms,
                                 cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  scatter_add_bf16<<<numSms, kThreads, 0, stream>>>(static_cast<__nv_bfloat16*>(out),
                                                    static_cast<const __nv_bfloat16*>(src), idx, n, hidden);
  return cudaGetLastError();
}

}  // namespace wideep::ep
