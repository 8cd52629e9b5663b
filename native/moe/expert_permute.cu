// Between a normal-mode dispatch (rows by source rank) and the grouped expert
// GEMMs (rows by expert): Permute copies each (row, local expert) pair into
// its expert's slots, Unpermute sums the experts' weighted outputs back into
// one row per received row, in top-k order.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "moe/moe_kernels.h"

namespace wideep::moe {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ int64_t IdAt(const void* idx, bool idx64, size_t i) {
  return idx64 ? static_cast<const int64_t*>(idx)[i] : static_cast<const int32_t*>(idx)[i];
}

// One warp per (row, j): slot from an atomic counter, then a 16-byte-wide copy.
// Slot order within an expert is arbitrary: each row's GEMM result does not
// depend on its slot, and Unpermute finds it through slotOf.
__global__ void PermuteKernel(PermuteArgs a) {
  const int warp = (blockIdx.x * kThreads + threadIdx.x) / 32, lane = threadIdx.x % 32;
  const int pairs = a.numRows * a.topk;
  if (warp >= pairs) return;
  const int row = warp / a.topk;
  const int64_t e = IdAt(a.topkIdx, a.idx64, warp);
  int slot = -1;
  if (lane == 0 && e >= 0 && e < a.numExperts) {
    slot = atomicAdd(a.counts + e, 1);
    if (slot >= a.cap) {
      *a.overflow = 1;
      slot = -1;
    }
    a.slotOf[warp] = slot;
  } else if (lane == 0) {
    a.slotOf[warp] = -1;
  }
  slot = __shfl_sync(0xffffffffu, slot, 0);
  if (slot < 0) return;
  const size_t dstRow = static_cast<size_t>(e) * a.cap + slot;
  const uint4* src = reinterpret_cast<const uint4*>(static_cast<const uint8_t*>(a.x) + static_cast<size_t>(row) * a.rowBytes);
  uint4* dst = reinterpret_cast<uint4*>(static_cast<uint8_t*>(a.out) + dstRow * a.rowBytes);
  for (int i = lane; i < a.rowBytes / 16; i += 32) dst[i] = src[i];
  if (a.outScales) {
    for (int blk = lane; blk < a.scaleBlocks; blk += 32) {
      a.outScales[(static_cast<size_t>(e) * a.scaleBlocks + blk) * a.cap + slot] =
          a.xScales[static_cast<size_t>(row) * a.scaleBlocks + blk];
    }
  }
}

// One block per row; each thread owns 8 channels (one 16-byte vector).
__global__ void UnpermuteKernel(UnpermuteArgs a) {
  const int row = blockIdx.x;
  for (int c = threadIdx.x * 8; c < a.hidden; c += blockDim.x * 8) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int j = 0; j < a.topk; ++j) {
      const size_t at = static_cast<size_t>(row) * a.topk + j;
      const int slot = a.slotOf[at];
      if (slot < 0) continue;
      const int64_t e = IdAt(a.topkIdx, a.idx64, at);
      const float w = a.weights[at];
      const uint4 v = *reinterpret_cast<const uint4*>(a.y + (static_cast<size_t>(e) * a.cap + slot) * a.hidden + c);
      const uint32_t words[4] = {v.x, v.y, v.z, v.w};
      for (int i = 0; i < 4; ++i) {
        // One rounding per term, as the cpu pipeline's float32 accumulator of exact products.
        acc[2 * i] = fmaf(w, __uint_as_float(words[i] << 16), acc[2 * i]);
        acc[2 * i + 1] = fmaf(w, __uint_as_float(words[i] & 0xffff0000u), acc[2 * i + 1]);
      }
    }
    uint32_t out[4];
    for (int i = 0; i < 4; ++i) {
      __nv_bfloat162 p = __floats2bfloat162_rn(acc[2 * i], acc[2 * i + 1]);
      out[i] = *reinterpret_cast<uint32_t*>(&p);
    }
    *reinterpret_cast<uint4*>(a.out + static_cast<size_t>(row) * a.hidden + c) = make_uint4(out[0], out[1], out[2], out[3]);
  }
}

__global__ void TransposeScalesKernel(const float* in, float* out, int rows, int blocks, int ldOut) {
  const int b = blockIdx.y;
  const int i = blockIdx.x * kThreads + threadIdx.x;  // over blocks * ldOut outputs
  if (i >= blocks * ldOut) return;
  const int blk = i / ldOut, row = i % ldOut;
  out[static_cast<size_t>(b) * blocks * ldOut + i] =
      row < rows ? in[(static_cast<size_t>(b) * rows + row) * blocks + blk] : 0.0f;
}

}  // namespace

cudaError_t LaunchPermute(const PermuteArgs& a, cudaStream_t stream) {
  cudaError_t err = cudaMemsetAsync(a.counts, 0, sizeof(int32_t) * a.numExperts, stream);
  if (err != cudaSuccess) return err;
  err = cudaMemsetAsync(a.overflow, 0, sizeof(int32_t), stream);
  if (err != cudaSuccess) return err;
  const long long warps = static_cast<long long>(a.numRows) * a.topk;
  if (warps == 0) return cudaSuccess;
  const int blocks = static_cast<int>((warps * 32 + kThreads - 1) / kThreads);
  PermuteKernel<<<blocks, kThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t LaunchUnpermute(const UnpermuteArgs& a, cudaStream_t stream) {
  if (a.numRows == 0) return cudaSuccess;
  const int threads = min(kThreads, ((a.hidden / 8 + 31) / 32) * 32);
  UnpermuteKernel<<<a.numRows, threads, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t LaunchTransposeScales(const float* in, float* out, int batch, int rows, int blocks, int ldOut,
                                  cudaStream_t stream) {
  if (batch == 0 || blocks == 0 || ldOut == 0) return cudaSuccess;
  const int total = blocks * ldOut;
  TransposeScalesKernel<<<dim3((total + kThreads - 1) / kThreads, batch), kThreads, 0, stream>>>(in, out, rows, blocks, ldOut);
  return cudaGetLastError();
}

}  // namespace wideep::moe
