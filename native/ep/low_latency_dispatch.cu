// Low-latency dispatch (decode). No host synchronisation, fixed buffers,
// device-side sequence numbers (so CUDA-graph replays stay in step). One
// cooperative launch sends and receives, or, when a hook is asked for, two
// kernels, so that the hook can run the receive later while the SMs do other
// work.
//
// Each token goes ONCE per destination rank (not once per expert): its row,
// cast to fp8 with per-128-channel scales on the fly, lands in the
// destination's staging row [source][token], together with every source's
// top-k ids. The receive packs the rows expert-major, in (source rank, token)
// order.
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include "ep/low_latency_common.cuh"

namespace wideep::ep {
namespace {

constexpr float kFp8Max = 448.0f;
constexpr float kMinAmax = 1e-4f;  // keeps all-zero blocks finite

// Scale of a block with absolute maximum `amax`: amax/448, or that rounded up
// to a power of two (exact, from the float's bits) when roundScale is set.
__device__ __forceinline__ float fp8_scale(float amax, bool roundScale) {
  float s = amax / kFp8Max;
  if (!roundScale) return s;
  uint32_t b = __float_as_uint(s);
  if (b & 0x7fffffu) b = (b & 0xff800000u) + 0x800000u;
  return __uint_as_float(b);
}

__device__ __forceinline__ uint32_t pack_fp8x4(float a, float b, float c, float d) {
  __nv_fp8x2_storage_t lo = __nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, __NV_E4M3);
  __nv_fp8x2_storage_t hi = __nv_cvt_float2_to_fp8x2(make_float2(c, d), __NV_SATFINITE, __NV_E4M3);
  return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
}

// ------------------------------------------------------------------ dispatch

constexpr int kChunkVecs = kWarpSize;  // 16-byte vectors of a row a warp moves at a time: one per lane

__device__ __forceinline__ void dispatch_send(const LowLatencyArgs& a) {
  __shared__ int tokenMask[kTokensPerStep];
  const int tid = threadIdx.x, lane = tid % kWarpSize, warp = tid / kWarpSize;
  constexpr int kWarps = kSendThreads / kWarpSize;
  const int R = a.numRanks, me = a.rank, H = a.hidden, L = a.numLocalExperts;
  if (__syncthreads_or(has_error(a.status))) return;  // block-uniform: a fused kernel goes on to more barriers
  const int chunks = (H / 8 + kChunkVecs - 1) / kChunkVecs;

  for (int t0 = blockIdx.x * kTokensPerStep; t0 < a.numTokens; t0 += gridDim.x * kTokensPerStep) {
    const int n = min(kTokensPerStep, a.numTokens - t0);
    // The rows are read after the top-k ids: fetching them into L2 now makes
    // the two loads from memory overlap instead of following each other.
    if (tid < n) prefetch_l2(a.x + static_cast<size_t>(t0 + tid) * H, H * 2);
    // Destinations of each token; every destination gets the top-k rows too
    // (they tell it which tokens were sent).
    if (warp < n) {
      const int t = t0 + warp;
      const int64_t e = lane < a.topk ? load_idx(a.topkIdx, a.idx64, static_cast<size_t>(t) * a.topk + lane) : -1;
      const int mask = __reduce_or_sync(0xffffffffu, e >= 0 ? 1 << static_cast<int>(e / L) : 0);
      if (lane == 0) tokenMask[warp] = mask;
      if (lane < a.topk) {
        for (int r = 0; r < R; ++r) {
          reinterpret_cast<int32_t*>(a.peers.ptr[r] + a.regions.srcTopk)
              [(static_cast<size_t>(me) * a.maxTokens + t) * a.maxTopk + lane] = static_cast<int32_t>(e);
        }
      }
    }
    __syncthreads();
    for (int item = warp; item < n * chunks; item += kWarps) {
      const int t = t0 + item / chunks;
      const int mask = tokenMask[item / chunks];
      const int c = (item % chunks) * kChunkVecs + lane;  // 16-byte vector of the bf16 row
      const bool active = c < H / 8;
      const int4 v = active ? ld_nc_v4(reinterpret_cast<const int4*>(a.x + static_cast<size_t>(t) * H) + c)
                            : make_int4(0, 0, 0, 0);
      const size_t rowOffset =
          a.regions.staging + (static_cast<size_t>(me) * a.maxTokens + t) * a.regions.stagingStride;
      if (a.useFp8) {
        // Lanes 0-15 and 16-31 each hold one 128-channel scale block; H % 128
        // == 0, so idle lanes of a last, partial chunk form a whole half.
        const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
        float f[8];
        float amax = 0;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          float2 p = __bfloat1622float2(h[i]);
          f[2 * i] = p.x;
          f[2 * i + 1] = p.y;
          amax = fmaxf(amax, fmaxf(fabsf(p.x), fabsf(p.y)));
        }
#pragma unroll
        for (int o = 8; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
        amax = fmaxf(amax, kMinAmax);
        const float scale = fp8_scale(amax, a.roundScale);
        const float inv = a.roundScale ? 1.0f / scale : kFp8Max / amax;
        uint2 q;
        q.x = pack_fp8x4(f[0] * inv, f[1] * inv, f[2] * inv, f[3] * inv);
        q.y = pack_fp8x4(f[4] * inv, f[5] * inv, f[6] * inv, f[7] * inv);
        if (active) {
          for (int r = 0; r < R; ++r) {
            if (!((mask >> r) & 1)) continue;
            uint8_t* row = a.peers.ptr[r] + rowOffset;
            *reinterpret_cast<uint2*>(row + static_cast<size_t>(c) * 8) = q;
            if ((lane & 15) == 0) reinterpret_cast<float*>(row + H)[c / 16] = scale;
          }
        }
      } else if (active) {
        for (int r = 0; r < R; ++r) {
          if ((mask >> r) & 1) st_na_v4(reinterpret_cast<int4*>(a.peers.ptr[r] + rowOffset) + c, v);
        }
      }
    }
    __syncthreads();
  }

  // The block's rows and top-k ids are out (the loop ended on a barrier): it
  // adds its share of the call at every destination (block 0 first gives the
  // token count), with no grid-wide handshake before the signal.
  if (tid < R) {
    LowLatencyControl* peer = ll_control(a.peers.ptr[tid], a.half);
    if (blockIdx.x == 0) peer->srcTokens[me] = a.numTokens;
    red_add_release_sys(&peer->dispatchArrived[me], arrival_share());
  }
}

__global__ void __launch_bounds__(kSendThreads, 1) ll_dispatch_send(LowLatencyArgs a) { dispatch_send(a); }

// Up to kMaxRecvSplit blocks per local expert (as many as the SM budget
// allows in one wave): each waits for every source and packs
// the expert's slots in (source, token) order (the scan is cheap next to the
// copy, so every block of the expert does it), then copies its share of the
// rows, so that a hot expert's rows are spread over several SMs. The slot scan
// runs on all warps: each takes 32-token chunks, and a prefix over the chunks
// places them.
constexpr int kMaxScanChunks = kMaxRanks * 1024 / kWarpSize;
constexpr int kMaxRecvSplit = 4;

// Blocks per local expert for a grid of `blocks`. The receive-only launch
// sizes its grid as L * split, so the same formula gives it back from gridDim.
__host__ __device__ __forceinline__ int recv_split(int blocks, int numLocalExperts) {
  const int fit = blocks / (numLocalExperts > 0 ? numLocalExperts : 1);
  return fit < 1 ? 1 : (fit > kMaxRecvSplit ? kMaxRecvSplit : fit);
}

// Block `part` of the `split` that share local expert j copies every split-th
// group of rows; part 0 also publishes the expert's count and ranges.
__device__ __forceinline__ void dispatch_recv_expert(const LowLatencyArgs& a, int j, int part, int split, uint32_t seq,
                                                     uint64_t deadline) {
  extern __shared__ int32_t slotList[];  // [R*M]: (source << 16) | token
  __shared__ unsigned chunkBits[kMaxScanChunks];
  __shared__ int chunkStart[kMaxScanChunks + 1];
  __shared__ int srcChunk[kMaxRanks + 1];
  const int tid = threadIdx.x, lane = tid % kWarpSize, warp = tid / kWarpSize;
  constexpr int kWarps = kRecvThreads / kWarpSize;
  const int R = a.numRanks, me = a.rank, H = a.hidden, L = a.numLocalExperts, M = a.maxTokens;
  uint8_t* mine = a.peers.ptr[me];
  LowLatencyControl* ctrl = ll_control(mine, a.half);
  if (tid < R) wait_arrivals(&ctrl->dispatchArrived[tid], seq, deadline, a.status, kPhaseLowLatencyDispatch, tid);
  // Every source's shares were acquired by its waiting thread; the barrier makes
  // what they published visible to the whole block before anything reads it.
  __syncthreads();
  if (tid == 0) {
    srcChunk[0] = 0;
    for (int s = 0; s < R; ++s) srcChunk[s + 1] = srcChunk[s] + (ld_volatile(&ctrl->srcTokens[s]) + kWarpSize - 1) / kWarpSize;
  }
  const bool ok = !__syncthreads_or(has_error(a.status));  // block-uniform, as barriers follow

  const int64_t expert = static_cast<int64_t>(me) * L + j;
  const int32_t* srcTopk = reinterpret_cast<const int32_t*>(mine + a.regions.srcTopk);
  const int numChunks = srcChunk[R];
  if (ok) {
    for (int c = warp; c < numChunks; c += kWarps) {
      int s = 0;
      while (srcChunk[s + 1] <= c) ++s;
      const int t = (c - srcChunk[s]) * kWarpSize + lane;
      bool hit = false;
      if (t < ld_volatile(&ctrl->srcTokens[s])) {
        const int32_t* row = srcTopk + (static_cast<size_t>(s) * M + t) * a.maxTopk;
        for (int k = 0; k < a.topk; ++k) hit |= row[k] == expert;
      }
      const unsigned bits = __ballot_sync(0xffffffffu, hit);
      if (lane == 0) chunkBits[c] = bits;
    }
  }
  __syncthreads();
  if (ok && warp == 0) {
    int carry = 0;
    for (int base = 0; base < numChunks; base += kWarpSize) {
      const int n = base + lane < numChunks ? __popc(chunkBits[base + lane]) : 0;
      int incl = n;
#pragma unroll
      for (int o = 1; o < kWarpSize; o <<= 1) {
        const int up = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += up;
      }
      if (base + lane < numChunks) chunkStart[base + lane] = carry + incl - n;
      carry += __shfl_sync(0xffffffffu, incl, kWarpSize - 1);
    }
    if (lane == 0) chunkStart[numChunks] = carry;
  }
  __syncthreads();
  if (ok) {
    int32_t* layoutRange = reinterpret_cast<int32_t*>(mine + a.regions.layoutRange) + static_cast<size_t>(j) * R * 2;
    if (part == 0 && tid < R) {
      layoutRange[2 * tid] = chunkStart[srcChunk[tid]];
      layoutRange[2 * tid + 1] = chunkStart[srcChunk[tid + 1]] - chunkStart[srcChunk[tid]];
    }
    for (int c = warp; c < numChunks; c += kWarps) {
      int s = 0;
      while (srcChunk[s + 1] <= c) ++s;
      const unsigned bits = chunkBits[c];
      if ((bits >> lane) & 1) {
        const int t = (c - srcChunk[s]) * kWarpSize + lane;
        slotList[chunkStart[c] + __popc(bits & ((1u << lane) - 1))] = (s << 16) | t;
      }
    }
  }
  __syncthreads();
  if (ok) {
    const int n = chunkStart[numChunks];
    const int scaleCols = H / kScaleBlock;
    const int rowBytes = a.useFp8 ? H : H * 2;
    const size_t slots = static_cast<size_t>(R) * M;
    for (int p = part * kWarps + warp; p < n; p += split * kWarps) {
      const int s = slotList[p] >> 16, t = slotList[p] & 0xffff;
      const uint8_t* stage = mine + a.regions.staging + (static_cast<size_t>(s) * M + t) * a.regions.stagingStride;
      uint8_t* dst = mine + a.regions.recvX + (static_cast<size_t>(j) * slots + p) * rowBytes;
      warp_copy<8>(dst, stage, rowBytes, lane);
      if (a.useFp8) {
        float* sdst = reinterpret_cast<float*>(mine + a.regions.recvScales) + (static_cast<size_t>(j) * slots + p) * scaleCols;
        for (int c = lane; c < scaleCols; c += kWarpSize) sdst[c] = reinterpret_cast<const float*>(stage + H)[c];
      }
      if (lane == 0) {
        reinterpret_cast<int32_t*>(mine + a.regions.srcInfo)[static_cast<size_t>(j) * slots + p] = t;
        // The combine finds this slot from (source, token, top-k column).
        const size_t at = static_cast<size_t>(s) * M + t;
        reinterpret_cast<int32_t*>(mine + a.regions.slotOf)[at * a.maxTopk + first_slot_of(srcTopk + at * a.maxTopk, a.topk, expert)] = p;
      }
    }
    if (part == 0 && tid == 0) {
      reinterpret_cast<int32_t*>(mine + a.regions.recvCount)[j] = n;
      if (a.cumulativeStats) a.cumulativeStats[j] += n;
    }
  }
  // The next expert of this block reuses the shared arrays.
  __syncthreads();
}

// The receive half alone (for a hook): `split` blocks per local expert.
__global__ void __launch_bounds__(kRecvThreads, 1) ll_dispatch_recv(LowLatencyArgs a) {
  const SeqTicket ticket = ll_seq_arrive(a, /*combine=*/false);
  const int split = recv_split(gridDim.x, a.numLocalExperts);
  dispatch_recv_expert(a, blockIdx.x / split, blockIdx.x % split, split, ticket.seq, global_timer_ns() + a.timeoutNs);
  ll_seq_finish(ticket);
}

// Both halves in one launch when no hook is asked for: the send, then each
// block receives (expert, part) units blockIdx.x, blockIdx.x + gridDim.x, ... The
// grid is at most one block per SM, so every block that sends is resident
// while others wait for its share.
static_assert(kSendThreads == kRecvThreads, "the fused dispatch runs both halves with one block size");
__global__ void __launch_bounds__(kSendThreads, 1) ll_dispatch(LowLatencyArgs a) {
  const SeqTicket ticket = ll_seq_arrive(a, /*combine=*/false);
  const uint64_t deadline = global_timer_ns() + a.timeoutNs;
  dispatch_send(a);
  const int split = recv_split(gridDim.x, a.numLocalExperts), units = a.numLocalExperts * split;
  for (int u = blockIdx.x; u < units; u += gridDim.x) {
    dispatch_recv_expert(a, u / split, u % split, split, ticket.seq, deadline);
  }
  ll_seq_finish(ticket);
}

}  // namespace

cudaError_t LaunchLowLatencyDispatchSend(const LowLatencyArgs& a, int numSms, cudaStream_t stream) {
  ll_dispatch_send<<<numSms, kSendThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

namespace {

// The receive's dynamic shared memory (its slot list), allowed past 48 KiB where needed.
template <class Kernel>
cudaError_t RecvSharedMemory(Kernel kernel, const LowLatencyArgs& a, size_t* smem) {
  *smem = static_cast<size_t>(a.numRanks) * a.maxTokens * sizeof(int32_t);
  if (*smem <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(*smem));
}

}  // namespace

cudaError_t LaunchLowLatencyDispatchRecv(const LowLatencyArgs& a, int numSms, cudaStream_t stream) {
  size_t smem = 0;
  if (cudaError_t e = RecvSharedMemory(ll_dispatch_recv, a, &smem); e != cudaSuccess) return e;
  ll_dispatch_recv<<<a.numLocalExperts * recv_split(numSms, a.numLocalExperts), kRecvThreads, smem, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t LaunchLowLatencyDispatch(const LowLatencyArgs& a, int numSms, cudaStream_t stream) {
  size_t smem = 0;
  if (cudaError_t e = RecvSharedMemory(ll_dispatch, a, &smem); e != cudaSuccess) return e;
  return LaunchResident(ll_dispatch, a, numSms, smem, stream);
}

}  // namespace wideep::ep
