// QuantizeRows: bf16 rows [rows, hidden] to fp8 e4m3 [rows, hidden] with one
// f32 scale per 128 channels ([rows, hidden/128], row-major), the input a
// normal-mode fp8 dispatch takes. The cast is fp8_cast.cuh's, the one
// swiglu_quant.cu and src/ep/fp8-quant.ts use, so it matches the host bit for bit.
#include <cuda_runtime.h>

#include <algorithm>

#include "moe/fp8_cast.cuh"
#include "moe/moe_kernels.h"

namespace wideep::moe {
namespace {

constexpr int kBlockChannels = 128;  // one warp quantises one 128-channel block
constexpr int kPerLane = kBlockChannels / 32;
constexpr int kWarps = 8;
// Grid-stride past this many thread blocks (rows * hidden/128 warps of work can exceed any grid).
constexpr int64_t kMaxGrid = int64_t{1} << 20;

__global__ void QuantizeRowsKernel(QuantizeRowsArgs a) {
  const int lane = threadIdx.x % 32;
  const int64_t blocksPerRow = a.hidden / kBlockChannels;
  const int64_t total = static_cast<int64_t>(a.rows) * blocksPerRow;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarps;
  for (int64_t w = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32; w < total; w += stride) {
    // Block w of the flattened [rows, hidden/128] scale grid starts at channel w * 128 of the flattened rows.
    const size_t c = static_cast<size_t>(w) * kBlockChannels + lane * kPerLane;
    const uint2 v = *reinterpret_cast<const uint2*>(a.x + c);
    float h[kPerLane] = {__uint_as_float(v.x << 16), __uint_as_float(v.x & 0xffff0000u),
                         __uint_as_float(v.y << 16), __uint_as_float(v.y & 0xffff0000u)};
    float amax = 0;
    for (int i = 0; i < kPerLane; ++i) amax = fmaxf(amax, fabsf(h[i]));
    for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const Fp8Scale s = BlockScale(amax, a.roundScale);
    uint32_t packed = 0;
    for (int i = 0; i < kPerLane; ++i) packed |= static_cast<uint32_t>(ToFp8(__fmul_rn(h[i], s.scaleInv))) << (8 * i);
    *reinterpret_cast<uint32_t*>(a.out + c) = packed;
    if (lane == 0) a.scales[w] = s.scale;
  }
}

}  // namespace

cudaError_t LaunchQuantizeRows(const QuantizeRowsArgs& a, cudaStream_t stream) {
  if (a.rows == 0 || a.hidden == 0) return cudaSuccess;
  const int64_t total = static_cast<int64_t>(a.rows) * (a.hidden / kBlockChannels);
  const int64_t grid = std::min((total + kWarps - 1) / kWarps, kMaxGrid);
  QuantizeRowsKernel<<<static_cast<unsigned>(grid), kWarps * 32, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace wideep::moe
