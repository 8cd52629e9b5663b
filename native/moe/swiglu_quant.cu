// SwiGLU between the expert projections: h = silu(gate) * up in float32,
// written as bf16, or as fp8 with one scale per 128 channels for the fp8
// down projection. Rows past a batch entry's count are left alone.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "moe/fp8_cast.cuh"
#include "moe/moe_kernels.h"

namespace wideep::moe {
namespace {

constexpr int kBlockChannels = 128;  // one warp quantises one 128-channel block
constexpr int kPerLane = kBlockChannels / 32;
constexpr int kWarps = 4;

__device__ __forceinline__ float Silu(float g) { return g / (1.0f + expf(-g)); }

__device__ __forceinline__ void LoadBf16x4(const uint16_t* p, float* out) {
  const uint2 v = *reinterpret_cast<const uint2*>(p);
  out[0] = __uint_as_float(v.x << 16);
  out[1] = __uint_as_float(v.x & 0xffff0000u);
  out[2] = __uint_as_float(v.y << 16);
  out[3] = __uint_as_float(v.y & 0xffff0000u);
}

__global__ void SwigluKernel(SwigluArgs a) {
  const int row = blockIdx.x, b = blockIdx.y;
  if (a.counts && row >= a.counts[b]) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const size_t r = static_cast<size_t>(b) * a.rows + row;
  const uint16_t* gate = a.x + r * 2 * a.inter;
  const uint16_t* up = gate + a.inter;
  const int numBlocks = a.inter / kBlockChannels;
  for (int blk = warp; blk < numBlocks; blk += kWarps) {
    const int c = blk * kBlockChannels + lane * kPerLane;
    float g[kPerLane], u[kPerLane], h[kPerLane];
    LoadBf16x4(gate + c, g);
    LoadBf16x4(up + c, u);
    float amax = 0;
    for (int i = 0; i < kPerLane; ++i) {
      h[i] = Silu(g[i]) * u[i];
      amax = fmaxf(amax, fabsf(h[i]));
    }
    if (!a.fp8) {
      __nv_bfloat162 lo = __floats2bfloat162_rn(h[0], h[1]), hi = __floats2bfloat162_rn(h[2], h[3]);
      uint2 v{*reinterpret_cast<uint32_t*>(&lo), *reinterpret_cast<uint32_t*>(&hi)};
      *reinterpret_cast<uint2*>(static_cast<uint16_t*>(a.out) + r * a.inter + c) = v;
      continue;
    }
    for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const Fp8Scale s = BlockScale(amax, a.roundScale);
    uint32_t packed = 0;
    for (int i = 0; i < kPerLane; ++i) packed |= static_cast<uint32_t>(ToFp8(h[i] * s.scaleInv)) << (8 * i);
    *reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(a.out) + r * a.inter + c) = packed;
    if (lane == 0) {
      const size_t at = a.kMajorScales ? (static_cast<size_t>(b) * numBlocks + blk) * a.rows + row
                                       : r * numBlocks + blk;
      a.scales[at] = s.scale;
    }
  }
}

}  // namespace

cudaError_t LaunchSwiglu(const SwigluArgs& a, cudaStream_t stream) {
  if (a.batch == 0 || a.rows == 0) return cudaSuccess;
  SwigluKernel<<<dim3(a.rows, a.batch), kWarps * 32, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace wideep::moe
