// Low-latency dispatch/combine (decode). No host synchronisation, fixed
// buffers, device-side sequence numbers (so CUDA-graph replays stay in step).
// Each operation has a send and a receive half: one cooperative launch runs
// both, or, when a hook is asked for, two kernels, so that the hook can run
// the receive later while the SMs do other work.
//
// Dispatch sends each token ONCE per destination rank (not once per expert):
// the token's row (cast to fp8 with per-128-channel scales on the fly) goes
// to the destination's staging row [source][token], together with every
// source's top-k ids. The receive kernel packs the rows expert-major, in
// (source rank, token) order. Combine reduces each token's rows on every
// rank that owns some of its experts and returns one bf16 partial per owner
// rank, which the origin adds up.
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include "ep/bf16_vec.cuh"
#include "ep/device_utils.cuh"
#include "ep/ep_kernels.h"

namespace wideep::ep {
namespace {

constexpr int kSendThreads = 512;
constexpr int kRecvThreads = 512;
constexpr float kFp8Max = 448.0f;
constexpr float kMinAmax = 1e-4f;  // keeps all-zero blocks finite

__device__ __forceinline__ LowLatencyControl* ll_control(uint8_t* base, int half) {
  return reinterpret_cast<LowLatencyControl*>(base + kLowLatencyControlOffset) + half;
}

__device__ __forceinline__ LocalState* local_of(uint8_t* base) {
  return reinterpret_cast<LocalState*>(base + kLocalStateOffset);
}

__device__ __forceinline__ int64_t load_idx(const void* p, int idx64, size_t i) {
  return idx64 ? static_cast<const int64_t*>(p)[i] : static_cast<const int32_t*>(p)[i];
}

// The half's sequence number for this call. Every block reads it at its
// start and counts itself; the block that arrived last stores it back at its
// end (ll_seq_finish), when all have read it. Counting arrivals at the start
// rather than finishes at the end keeps a fence and an atomic round trip off
// the kernel's tail; `arrival` (thread 0's) is only looked at in ll_seq_finish.
struct SeqTicket {
  uint32_t seq;
  uint32_t arrival;
};

__device__ __forceinline__ SeqTicket ll_seq_arrive(uint32_t* stored, uint32_t* arrived) {
  __shared__ uint32_t seq;
  uint32_t arrival = 0;
  if (threadIdx.x == 0) {
    seq = ld_acquire_gpu(stored) + 1;  // acquire: read before this block counts itself
    arrival = atomicAdd(arrived, 1);
  }
  __syncthreads();
  return {seq, arrival};
}

__device__ __forceinline__ void ll_seq_finish(const SeqTicket& t, uint32_t* stored, uint32_t* arrived) {
  if (threadIdx.x == 0 && t.arrival == gridDim.x - 1) {
    *arrived = 0;
    *stored = t.seq;
  }
}

// This block's share of a call's kLlArrivalUnit: the shares of a grid add up to it.
__device__ __forceinline__ uint64_t arrival_share() {
  const uint64_t each = kLlArrivalUnit / gridDim.x;
  return blockIdx.x == 0 ? kLlArrivalUnit - each * (gridDim.x - 1) : each;
}

// Waits until every sending block of source `peer`'s call `seq` added its
// share (or a later call's shares started coming in).
__device__ __forceinline__ bool wait_arrivals(const uint64_t* count, uint32_t seq, uint64_t deadline,
                                              const ErrorSink& sink, int phase, int peer) {
  return bounded_wait(
      count, [=](uint64_t v) { return static_cast<int32_t>(static_cast<uint32_t>(v >> kLlArrivalShift) - seq) >= 0; },
      static_cast<uint64_t>(seq), deadline, sink, phase, peer);
}

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

// Tokens are spread over blocks; a block works out a token's destinations
// (or a pair's rows) once, in shared memory, and its warps then move the
// row's 256-column chunks in parallel. Metadata lookups would otherwise sit on
// every chunk's critical path, and latency is what this mode is about.
constexpr int kTokensPerStep = 1;     // tokens a block handles at a time (decode batches are small)
constexpr int kChunkVecs = kWarpSize; // 16-byte vectors per chunk: one per lane

// ------------------------------------------------------------------ dispatch

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
  // Every source's flag was acquired by its waiting thread; the barrier makes
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
  LocalState* local = local_of(a.peers.ptr[a.rank]);
  const SeqTicket ticket = ll_seq_arrive(&local->llDispatchSeq[a.half], &local->finished[kArriveLlDispatch]);
  const int split = recv_split(gridDim.x, a.numLocalExperts);
  dispatch_recv_expert(a, blockIdx.x / split, blockIdx.x % split, split, ticket.seq, global_timer_ns() + a.timeoutNs);
  ll_seq_finish(ticket, &local->llDispatchSeq[a.half], &local->finished[kArriveLlDispatch]);
}

// Both halves in one launch when no hook is asked for: the send, then each
// block receives (expert, part) units blockIdx.x, blockIdx.x + gridDim.x, ... The
// grid is at most one block per SM, so every block that sends is resident
// while others wait for its flags.
static_assert(kSendThreads == kRecvThreads, "the fused dispatch runs both halves with one block size");
__global__ void __launch_bounds__(kSendThreads, 1) ll_dispatch(LowLatencyArgs a) {
  LocalState* local = local_of(a.peers.ptr[a.rank]);
  const SeqTicket ticket = ll_seq_arrive(&local->llDispatchSeq[a.half], &local->finished[kArriveLlDispatch]);
  const uint64_t deadline = global_timer_ns() + a.timeoutNs;
  dispatch_send(a);
  const int split = recv_split(gridDim.x, a.numLocalExperts), units = a.numLocalExperts * split;
  for (int u = blockIdx.x; u < units; u += gridDim.x) {
    dispatch_recv_expert(a, u / split, u % split, split, ticket.seq, deadline);
  }
  ll_seq_finish(ticket, &local->llDispatchSeq[a.half], &local->finished[kArriveLlDispatch]);
}

// ------------------------------------------------------------------- combine
//
// The expert side reduces first: every rank publishes its combine top-k (ids
// and weights) to every rank; then, for each (source, token) that chose any
// of this rank's experts, it sums w * y over those experts in top-k order (in
// float, one rounding per operation, as the cpu reference does), rounds once
// to bf16 and returns that single partial. The origin adds its token's
// partials, owner ranks ascending. A token crosses NVLink once per owner
// rank instead of once per expert: about 3.6 rows instead of 8 for top-8 of
// 256 experts on 4 ranks.

// (source, token) pairs a block reduces at a time: up to 4, fewer when there
// are too few pairs to give every block that many (at 1 or 2 ranks, 4 per
// step left most blocks idle while the busy ones reduced 4 pairs each).
constexpr int kPairsPerStep = 4;

// Row sums of one step, shared by both halves of the combine: set i of n adds
// count[i] rows rows[i][.] (times w[i][.] when weighted) into dst[i] (none
// when null), in row order, rounding once to bf16. Each lane takes kVecs
// 16-byte vectors of a set per item and loads kLoadsInFlight of them before
// the first add; with at most 4 rows per set (the usual case on several
// ranks), a lane takes 2 vectors, so that fewer rounds of loads follow each other.
constexpr int kLoadsInFlight = 8;

template <bool kWeighted, int kVecs>
__device__ __forceinline__ void sum_rows_by(int n, int4* const* dst, const int4* const (*rows)[kMaxTopk],
                                            const float (*w)[kMaxTopk], const int* count, int numVecs) {
  constexpr int kRows = kLoadsInFlight / kVecs;  // rows loaded per round
  constexpr int kItemVecs = kVecs * kWarpSize;
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize, warps = blockDim.x / kWarpSize;
  const int items = (numVecs + kItemVecs - 1) / kItemVecs;
  for (int item = warp; item < n * items; item += warps) {
    const int i = item / items, first = (item % items) * kItemVecs + lane, m = count[i];
    if (!dst[i]) continue;
    float acc[kVecs][8] = {};
    for (int g = 0; g < m; g += kRows) {
      int4 in[kVecs][kRows];
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
#pragma unroll
        for (int u = 0; u < kVecs; ++u) {
          if (g + r < m && first + u * kWarpSize < numVecs) in[u][r] = ld_nc_v4(rows[i][g + r] + first + u * kWarpSize);
        }
      }
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (g + r >= m) break;
#pragma unroll
        for (int u = 0; u < kVecs; ++u) {
          if constexpr (kWeighted) {
            accumulate_scaled_bf16x8(acc[u], w[i][g + r], in[u][r]);
          } else {
            accumulate_bf16x8(acc[u], in[u][r]);
          }
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kVecs; ++u) {
      if (first + u * kWarpSize < numVecs) st_na_v4(dst[i] + first + u * kWarpSize, pack_bf16x8(acc[u]));
    }
  }
}

template <bool kWeighted>
__device__ __forceinline__ void sum_rows(int n, int4* const* dst, const int4* const (*rows)[kMaxTopk],
                                         const float (*w)[kMaxTopk], const int* count, int numVecs) {
  int most = 0;
  for (int i = 0; i < n; ++i) most = max(most, count[i]);
  // Four vectors per lane would not fit the registers (the kernel would spill).
  if (most <= kLoadsInFlight / 2) {
    sum_rows_by<kWeighted, 2>(n, dst, rows, w, count, numVecs);
  } else {
    sum_rows_by<kWeighted, 1>(n, dst, rows, w, count, numVecs);
  }
}

// Block r (of the first R) writes this rank's {id, weight} columns into rank
// r's combineIn, then raises its weightsFlag there: each fence then waits for
// one rank's stores only, and each thread loads a batch of entries before it
// stores any, so the loads' latencies overlap (a store may alias a later load,
// so the compiler keeps them in order).
constexpr int kPublishBatch = 4;

__device__ __forceinline__ void publish_combine_topk(const LowLatencyArgs& a, uint32_t seq, int r) {
  const int tid = threadIdx.x, me = a.rank, k = a.topk, n = a.numTokens * k;
  int2* dst = reinterpret_cast<int2*>(a.peers.ptr[r] + a.regions.combineIn) + static_cast<size_t>(me) * a.maxTokens * a.maxTopk;
  for (int base = tid; base < n; base += kPublishBatch * blockDim.x) {
    int2 entry[kPublishBatch];
#pragma unroll
    for (int u = 0; u < kPublishBatch; ++u) {
      const int q = base + u * blockDim.x;
      if (q >= n) continue;
      const int64_t e = load_idx(a.topkIdx, a.idx64, static_cast<size_t>(q));
      const float w = a.topkWeights[q];
      entry[u] = make_int2(e < 0 ? -1 : static_cast<int32_t>(e), __float_as_int(e < 0 ? 0.0f : w));
    }
#pragma unroll
    for (int u = 0; u < kPublishBatch; ++u) {
      const int q = base + u * blockDim.x;
      if (q < n) dst[static_cast<size_t>(q / k) * a.maxTopk + q % k] = entry[u];
    }
  }
  __syncthreads();
  if (tid == 0) {
    __threadfence_system();
    st_release_sys(&ll_control(a.peers.ptr[r], a.half)->weightsFlag[me], seq);
  }
}

// Each block takes (source, token) pairs a step at a time: its threads find
// each pair's rows on this rank (one per top-k column whose expert is here)
// and the partial's place at the origin, then its warps reduce the rows
// (sum_rows) and write the partial to the origin. The first step's rows are
// looked up from the dispatch's routing while the combine's top-k comes in;
// once it is in, a column whose id is the dispatch's takes that row as is.
__device__ __forceinline__ void combine_send(const LowLatencyArgs& a, uint32_t seq) {
  __shared__ const int4* rowPtr[kPairsPerStep][kMaxTopk];  // compacted to rowCount rows before the sums
  __shared__ float rowWeight[kPairsPerStep][kMaxTopk];
  __shared__ int rowCount[kPairsPerStep];
  __shared__ int owner[kPairsPerStep][kMaxTopk];
  __shared__ int4* rowDst[kPairsPerStep];
  __shared__ int32_t earlyId[kPairsPerStep][kMaxTopk];      // the first step's dispatch ids
  __shared__ const int4* earlyRow[kPairsPerStep][kMaxTopk];  // and their rows here (null: elsewhere)
  __shared__ int firstPair[kMaxRanks + 1];  // exclusive prefix of the sources' token counts
  const int tid = threadIdx.x;
  const int R = a.numRanks, me = a.rank, H = a.hidden, L = a.numLocalExperts, M = a.maxTokens;
  uint8_t* mine = a.peers.ptr[me];
  LowLatencyControl* ctrl = ll_control(mine, a.half);
  if (__syncthreads_or(has_error(a.status))) return;  // block-uniform: a fused kernel goes on to more barriers
  const uint64_t deadline = global_timer_ns() + a.timeoutNs;
  for (int r = blockIdx.x; r < R; r += gridDim.x) publish_combine_topk(a, seq, r);
  if (tid == 0) {  // the dispatch's token counts
    firstPair[0] = 0;
    for (int s = 0; s < R; ++s) firstPair[s + 1] = firstPair[s] + ld_volatile(&ctrl->srcTokens[s]);
  }
  __syncthreads();

  const size_t slots = static_cast<size_t>(R) * M;
  const size_t rowBytes = static_cast<size_t>(H) * 2;
  const int32_t* srcTopk = reinterpret_cast<const int32_t*>(mine + a.regions.srcTopk);
  const int32_t* slotOf = reinterpret_cast<const int32_t*>(mine + a.regions.slotOf);
  const int2* combineIn = reinterpret_cast<const int2*>(mine + a.regions.combineIn);
  const int total = firstPair[R];
  const int step = max(1, min(kPairsPerStep, (total + gridDim.x - 1) / gridDim.x));
  // Pair `i` of the step at i0: its (source, token) index into the [R][M] regions.
  auto pair_at = [&](int i0, int i) {
    int s = 0;
    while (firstPair[s + 1] <= i0 + i) ++s;
    return static_cast<size_t>(s) * M + (i0 + i - firstPair[s]);
  };
  // The row of local expert e for the pair at `at`: the dispatch stored its
  // slot under the first column naming the expert.
  auto row_of = [&](size_t at, int32_t e) {
    const int p = slotOf[at * a.maxTopk + first_slot_of(srcTopk + at * a.maxTopk, a.topk, static_cast<int64_t>(e))];
    return reinterpret_cast<const int4*>(reinterpret_cast<const uint8_t*>(a.y) + (static_cast<size_t>(e - me * L) * slots + p) * rowBytes);
  };
  // While the combine's top-k comes in, the rows this block will reduce start
  // coming into L2; the dispatch's routing names them (a combine whose ids
  // differ from its dispatch's still reads the right rows, only later).
  for (int i0 = blockIdx.x * step; i0 < total; i0 += gridDim.x * step) {
    const int i = tid / kMaxTopk, c = tid % kMaxTopk;
    if (i >= min(step, total - i0) || c >= a.topk) continue;
    const size_t at = pair_at(i0, i);
    const int32_t e = srcTopk[at * a.maxTopk + c];
    const int4* row = e >= 0 && e / L == me ? row_of(at, e) : nullptr;
    if (row) prefetch_l2(row, static_cast<uint32_t>(rowBytes));
    if (i0 == static_cast<int>(blockIdx.x) * step) {
      earlyId[i][c] = e;
      earlyRow[i][c] = row;
    }
  }
  if (tid < R) wait_flag_eq(&ctrl->weightsFlag[tid], seq, deadline, a.status, kPhaseLowLatencyCombine, tid);
  // Each source's flag was acquired by its waiting thread; the barrier shares that with the block.
  const bool ok = !__syncthreads_or(has_error(a.status));
  for (int i0 = blockIdx.x * step; ok && i0 < total; i0 += gridDim.x * step) {
    const int n = min(step, total - i0);
    const bool early = i0 == static_cast<int>(blockIdx.x) * step;
    if (tid < n * kMaxTopk) {
      const int i = tid / kMaxTopk, c = tid % kMaxTopk;
      const size_t at = pair_at(i0, i);
      const int2 entry = c < a.topk ? combineIn[at * a.maxTopk + c] : make_int2(-1, 0);
      const int o = entry.x < 0 ? -1 : entry.x / L;
      const int4* row = nullptr;
      if (o == me) row = early && entry.x == earlyId[i][c] ? earlyRow[i][c] : row_of(at, entry.x);
      owner[i][c] = o;
      rowPtr[i][c] = row;
      rowWeight[i][c] = __int_as_float(entry.y);
    }
    __syncthreads();
    if (tid < n) {
      // The partial's row at the origin: its rank's place among the token's owners.
      int s = 0;
      while (firstPair[s + 1] <= i0 + tid) ++s;
      const int t = i0 + tid - firstPair[s];
      int below = 0, m = 0;
      for (int c = 0; c < a.topk; ++c) {
        const int o = owner[tid][c];
        bool first = o >= 0 && o < me;
        for (int q = 0; first && q < c; ++q) first = owner[tid][q] != o;
        below += first;
        if (o == me) {  // compacted in place, in column order (m <= c)
          rowPtr[tid][m] = rowPtr[tid][c];
          rowWeight[tid][m] = rowWeight[tid][c];
          ++m;
        }
      }
      rowCount[tid] = m;
      rowDst[tid] = m > 0 ? reinterpret_cast<int4*>(a.peers.ptr[s] + a.regions.combineRecv +
                                                    (static_cast<size_t>(t) * a.maxTopk + below) * rowBytes)
                          : nullptr;
    }
    __syncthreads();
    sum_rows<true>(n, rowDst, rowPtr, rowWeight, rowCount, H / 8);
    __syncthreads();
  }
  // The block's partials are out (the loop ended on a barrier): its share of
  // the call goes to every origin, unless something failed (the origins then
  // time out instead of adding partials never written).
  if (tid < R && !has_error(a.status)) red_add_release_sys(&ll_control(a.peers.ptr[tid], a.half)->combineArrived[me], arrival_share());
}

// out[t] = the token's partials (one per owner rank of its experts, which sit
// in ascending rank order) added in float and rounded once. A block takes
// tokens a step at a time; its warps add them with sum_rows.
__device__ __forceinline__ void combine_recv(const LowLatencyArgs& a, uint32_t seq) {
  __shared__ int partials[kTokensPerStep];
  __shared__ const int4* partialRow[kTokensPerStep][kMaxTopk];
  __shared__ int4* outRow[kTokensPerStep];
  const int tid = threadIdx.x;
  const int R = a.numRanks, H = a.hidden, L = a.numLocalExperts;
  uint8_t* mine = a.peers.ptr[a.rank];
  LowLatencyControl* ctrl = ll_control(mine, a.half);
  const uint64_t deadline = global_timer_ns() + a.timeoutNs;
  if (tid < R) wait_arrivals(&ctrl->combineArrived[tid], seq, deadline, a.status, kPhaseLowLatencyCombine, tid);
  const bool ok = !__syncthreads_or(has_error(a.status));  // block-uniform, as barriers follow
  const size_t rowBytes = static_cast<size_t>(H) * 2;
  for (int t0 = blockIdx.x * kTokensPerStep; ok && t0 < a.numTokens; t0 += gridDim.x * kTokensPerStep) {
    const int n = min(kTokensPerStep, a.numTokens - t0);
    if (tid < n) {
      const int t = t0 + tid;
      unsigned owners = 0;
      for (int c = 0; c < a.topk; ++c) {
        const int64_t e = load_idx(a.topkIdx, a.idx64, static_cast<size_t>(t) * a.topk + c);
        if (e >= 0) owners |= 1u << (e / L);
      }
      partials[tid] = __popc(owners);
      const uint8_t* rows = mine + a.regions.combineRecv + static_cast<size_t>(t) * a.maxTopk * rowBytes;
      for (int q = 0; q < partials[tid]; ++q) partialRow[tid][q] = reinterpret_cast<const int4*>(rows + q * rowBytes);
      outRow[tid] = reinterpret_cast<int4*>(a.out + static_cast<size_t>(t) * H);
    }
    __syncthreads();
    sum_rows<false>(n, outRow, partialRow, nullptr, partials, H / 8);
    __syncthreads();
  }
}

// A hook's sending kernel only reads the sequence number; its receiving kernel advances it.
__global__ void __launch_bounds__(kSendThreads, 1) ll_combine_send(LowLatencyArgs a) {
  combine_send(a, local_of(a.peers.ptr[a.rank])->llCombineSeq[a.half] + 1);
}

__global__ void __launch_bounds__(kRecvThreads, 1) ll_combine_recv(LowLatencyArgs a) {
  LocalState* local = local_of(a.peers.ptr[a.rank]);
  const SeqTicket ticket = ll_seq_arrive(&local->llCombineSeq[a.half], &local->finished[kArriveLlCombine]);
  combine_recv(a, ticket.seq);
  ll_seq_finish(ticket, &local->llCombineSeq[a.half], &local->finished[kArriveLlCombine]);
}

// Both halves in one launch when no hook is asked for (same residency as ll_dispatch).
__global__ void __launch_bounds__(kSendThreads, 1) ll_combine(LowLatencyArgs a) {
  LocalState* local = local_of(a.peers.ptr[a.rank]);
  const SeqTicket ticket = ll_seq_arrive(&local->llCombineSeq[a.half], &local->finished[kArriveLlCombine]);
  combine_send(a, ticket.seq);
  combine_recv(a, ticket.seq);
  ll_seq_finish(ticket, &local->llCombineSeq[a.half], &local->finished[kArriveLlCombine]);
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

// A fused kernel's receivers wait for senders of the same launch, so every
// block must be resident at once: a cooperative launch guarantees it (or
// fails) even while other streams' kernels hold some SMs.
cudaError_t LaunchResident(void (*kernel)(LowLatencyArgs), const LowLatencyArgs& a, int numSms, size_t smem,
                           cudaStream_t stream) {
  LowLatencyArgs copy = a;
  void* params[] = {&copy};
  return cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(kernel), dim3(numSms), dim3(kSendThreads), params, smem,
                                     stream);
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

cudaError_t LaunchLowLatencyCombineSend(const LowLatencyArgs& a, int numSms, cudaStream_t stream) {
  ll_combine_send<<<numSms, kSendThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t LaunchLowLatencyCombine(const LowLatencyArgs& a, int numSms, cudaStream_t stream) {
  return LaunchResident(ll_combine, a, numSms, 0, stream);
}

cudaError_t LaunchLowLatencyCombineRecv(const LowLatencyArgs& a, int numSms, cudaStream_t stream) {
  ll_combine_recv<<<numSms, kRecvThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace wideep::ep
