// Normal-mode combine: each rank returns every received row to the rank it
// came from (NVLink writes into the origin's per-source area); the origin
// then reduces, per token and in rank order, the rows of all ranks that
// received it, reading its own rows straight from x. One kernel, no host sync:
//  1. handshake: every rank has entered this combine (its area is free);
//  2. send the rows and weights; count arrivals at each origin;
//  3. wait for this rank's expected rows, then reduce.
#include <cuda_bf16.h>

#include "ep/device_utils.cuh"
#include "ep/ep_kernels.h"
#include "ep/row_copy.cuh"

namespace wideep::ep {
namespace {

__device__ __forceinline__ NormalControl* control_of(uint8_t* base) {
  return reinterpret_cast<NormalControl*>(base + kNormalControlOffset);
}

__device__ __forceinline__ LocalState* local_of(uint8_t* base) {
  return reinterpret_cast<LocalState*>(base + kLocalStateOffset);
}

constexpr int kCombineThreads = 512;

__device__ __forceinline__ void accumulate_bf16x8(float (&acc)[8], const int4& v) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float2 f = __bfloat1622float2(h[i]);
    acc[2 * i] += f.x;
    acc[2 * i + 1] += f.y;
  }
}

__device__ __forceinline__ int4 pack_bf16x8(const float (&acc)[8]) {
  int4 out;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&out);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(acc[2 * i], acc[2 * i + 1]);
  return out;
}

__global__ void __launch_bounds__(kCombineThreads, 1) combine_kernel(CombineArgs a) {
  __shared__ int rowsTo[kMaxRanks];
  __shared__ uint32_t seq;
  __shared__ bool last;
  constexpr int kThreads = kCombineThreads;
  constexpr int kWarps = kThreads / kWarpSize;
  const int tid = threadIdx.x, lane = tid % kWarpSize, warp = tid / kWarpSize;
  const int R = a.numRanks, me = a.rank, H = a.hidden;
  uint8_t* mine = a.peers.ptr[me];
  NormalControl* ctrl = control_of(mine);
  const RoutingMeta& meta = *a.meta;
  const uint64_t deadline = global_timer_ns() + a.timeoutNs;
  const size_t rowBytes = static_cast<size_t>(H) * 2;

  // 1. Handshake.
  if (tid == 0) seq = local_of(mine)->combineSeq + 1;
  if (tid < kMaxRanks) rowsTo[tid] = 0;
  __syncthreads();
  if (blockIdx.x == 0 && tid == 0) {
    ctrl->combineArrived = 0;
    __threadfence_system();
    for (int r = 0; r < R; ++r) st_release_sys(&control_of(a.peers.ptr[r])->combineSeq[me], seq);
  }
  if (tid < R) wait_flag_eq(&ctrl->combineSeq[tid], seq, deadline, a.status, kPhaseCombine, tid);
  __syncthreads();
  if (has_error(a.status)) return;

  // 2. Send every remote row back to its origin, into slot (me, token).
  const int selfBegin = meta.recvBase[me], selfEnd = meta.recvBase[me + 1];
  const int remoteRows = meta.numRecv - (selfEnd - selfBegin);
  const int32_t* srcIdx = reinterpret_cast<const int32_t*>(
      mine + a.regions.slab0 + static_cast<uint64_t>(a.slot) * a.regions.slabStride + a.regions.slabSrcIdx);
  auto row_of = [&](int i) { return i < selfBegin ? i : i + (selfEnd - selfBegin); };
  auto source_of = [&](int j) {
    int s = 0;
    while (s + 1 < R && meta.recvBase[s + 1] <= j) ++s;
    return s;
  };
  auto job = [&](int i) {
    const int j = row_of(i);
    const int s = source_of(j);
    RowJob r;
    r.src = reinterpret_cast<const uint8_t*>(a.x) + static_cast<size_t>(j) * rowBytes;
    r.dst[0] = a.peers.ptr[s] + a.regions.combineX +
               (static_cast<size_t>(me) * a.maxTokens + srcIdx[j]) * rowBytes;
    r.numDst = 1;
    return r;
  };
  copy_rows(blockIdx.x * kWarps + warp, gridDim.x * kWarps, remoteRows, static_cast<int>(rowBytes), lane, job);
  for (int i = blockIdx.x * kThreads + tid; i < remoteRows; i += gridDim.x * kThreads) {
    const int j = row_of(i);
    const int s = source_of(j);
    atomicAdd(&rowsTo[s], 1);
    if (a.topk > 0) {
      float* dst = reinterpret_cast<float*>(a.peers.ptr[s] + a.regions.combineWeights) +
                   (static_cast<size_t>(me) * a.maxTokens + srcIdx[j]) * a.topk;
      for (int k = 0; k < a.topk; ++k) dst[k] = a.topkWeights[static_cast<size_t>(j) * a.topk + k];
    }
  }
  __syncthreads();
  if (tid < R && rowsTo[tid] > 0) {
    __threadfence_system();
    red_add_release_sys(&control_of(a.peers.ptr[tid])->combineArrived, static_cast<uint64_t>(rowsTo[tid]));
  }

  // 3. Wait for the rows of this rank's tokens, then reduce.
  uint64_t expected = 0;
  for (int r = 0; r < R; ++r) expected += r == me ? 0 : meta.sentRows[r];
  if (tid == 0) wait_counter_ge(&ctrl->combineArrived, expected, deadline, a.status, kPhaseCombine, -1);
  __syncthreads();
  if (has_error(a.status)) return;

  const int vecs = H / 8;
  const int globalWarp = blockIdx.x * kWarps + warp;
  for (int t = globalWarp; t < a.numTokens; t += gridDim.x * kWarps) {
    const int32_t* pos = a.sendPos + static_cast<size_t>(t) * R;
    for (int v = lane; v < vecs; v += kWarpSize) {
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int r = 0; r < R; ++r) {
        if (pos[r] < 0) continue;
        const int4* src = r == me
            ? reinterpret_cast<const int4*>(a.x + static_cast<size_t>(selfBegin + pos[r]) * H)
            : reinterpret_cast<const int4*>(mine + a.regions.combineX +
                                            (static_cast<size_t>(r) * a.maxTokens + t) * rowBytes);
        accumulate_bf16x8(acc, ld_nc_v4(src + v));
      }
      if (a.bias0) accumulate_bf16x8(acc, ld_nc_v4(reinterpret_cast<const int4*>(a.bias0 + static_cast<size_t>(t) * H) + v));
      if (a.bias1) accumulate_bf16x8(acc, ld_nc_v4(reinterpret_cast<const int4*>(a.bias1 + static_cast<size_t>(t) * H) + v));
      reinterpret_cast<int4*>(a.out + static_cast<size_t>(t) * H)[v] = pack_bf16x8(acc);
    }
    if (a.topk > 0 && lane < a.topk) {
      float w = 0;
      for (int r = 0; r < R; ++r) {
        if (pos[r] < 0) continue;
        w += r == me ? a.topkWeights[static_cast<size_t>(selfBegin + pos[r]) * a.topk + lane]
                     : reinterpret_cast<const float*>(mine + a.regions.combineWeights)
                           [(static_cast<size_t>(r) * a.maxTokens + t) * a.topk + lane];
      }
      a.outWeights[static_cast<size_t>(t) * a.topk + lane] = w;
    }
  }

  // The last block moves the sequence on for the next combine.
  __syncthreads();
  if (tid == 0) {
    uint32_t* fin = &local_of(mine)->finished[kFinishCombine];
    last = atomicAdd(fin, 1) == gridDim.x - 1;
    if (last) {
      *fin = 0;
      local_of(mine)->combineSeq = seq;
    }
  }
}

}  // namespace

cudaError_t LaunchCombine(const CombineArgs& a, int numSms, cudaStream_t stream) {
  combine_kernel<<<numSms, kCombineThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace wideep::ep
