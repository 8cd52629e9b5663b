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
//
// The sender also places its tokens in each expert's (source, token) order:
// for each column of a token it counts the source's earlier tokens naming
// the same expert (the token's rank there, srcRank), and for every expert
// the source's tokens naming it (srcCount, the blocks sharing the experts
// out). A receiving block then knows where any (source, token) row goes
// without scanning anyone's top-k: offset of the source in the expert (the
// counts of the sources before it) plus the rank. So the receive hands out
// (source, token) pairs, not experts, and a popular expert's rows are copied
// by every block instead of by the few that own the expert.

constexpr int kChunkVecs = kWarpSize;  // 16-byte vectors of a row a warp moves at a time: one per lane

// Up to this many experts are counted per pass over the tokens (one bit each).
constexpr int kMaxQueries = 32;

// Counts, for each query expert i < nq, the tokens naming it (once per
// token) into count[i]: for the first `cols` queries only the tokens before
// `before`, for the others every token. Each expert's queries are a bit mask in
// the shared table queriesOf (zero outside a pass), so a top-k entry costs one
// shared load and no loop over the queries: a loop there ran once per column
// that any lane of a warp matched, with the warp's other lanes waiting. count
// must be zero and the queries in place on entry (a barrier after filling
// them); a barrier follows the counts.
__device__ __forceinline__ void count_tokens_naming(const LowLatencyArgs& a, const int32_t* expert, int nq, int cols,
                                                    int before, int* count, uint32_t* queriesOf) {
  const int tid = threadIdx.x;
  if (tid < nq && expert[tid] >= 0) atomicOr(&queriesOf[expert[tid]], 1u << tid);
  __syncthreads();
  const uint32_t colQueries = (1u << cols) - 1;  // cols < kMaxQueries
  for (int base = 0; base < a.numTokens; base += blockDim.x) {
    const int t = base + tid;
    // All of a row's loads go out before the first is looked at.
    int64_t ids[kMaxTopk];
#pragma unroll
    for (int c = 0; c < kMaxTopk; ++c) {
      ids[c] = t < a.numTokens && c < a.topk ? load_idx(a.topkIdx, a.idx64, static_cast<size_t>(t) * a.topk + c) : -1;
    }
    uint32_t bits = 0;
#pragma unroll
    for (int c = 0; c < kMaxTopk; ++c) {
      if (ids[c] >= 0 && ids[c] < a.numExperts) bits |= queriesOf[ids[c]];  // the send reports bad ids
    }
    if (t >= before) bits &= ~colQueries;
    for (; bits; bits &= bits - 1) atomicAdd(&count[__ffs(bits) - 1], 1);
  }
  __syncthreads();
  if (tid < nq && expert[tid] >= 0) queriesOf[expert[tid]] = 0;  // clean for the next pass
}

// Casts (fp8) and stores one 16-byte vector `c` of token t's row into the
// staging row of every destination in `mask`.
__device__ __forceinline__ void send_row_vector(const LowLatencyArgs& a, int t, int mask, int c) {
  const int R = a.numRanks, H = a.hidden, lane = threadIdx.x % kWarpSize;
  const bool active = c < H / 8;
  const int4 v = active ? ld_nc_v4(reinterpret_cast<const int4*>(a.x + static_cast<size_t>(t) * H) + c)
                        : make_int4(0, 0, 0, 0);
  const size_t rowOffset = a.regions.staging + (static_cast<size_t>(a.rank) * a.maxTokens + t) * a.regions.stagingStride;
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
    if (!active) return;
    for (int r = 0; r < R; ++r) {
      if (!((mask >> r) & 1)) continue;
      uint8_t* row = a.peers.ptr[r] + rowOffset;
      *reinterpret_cast<uint2*>(row + static_cast<size_t>(c) * 8) = q;
      if ((lane & 15) == 0) reinterpret_cast<float*>(row + H)[c / 16] = scale;
    }
  } else if (active) {
    for (int r = 0; r < R; ++r) {
      if ((mask >> r) & 1) st_na_v4(reinterpret_cast<int4*>(a.peers.ptr[r] + rowOffset) + c, v);
    }
  }
}

// Block b sends tokens b, b + G, ... and counts the tokens naming experts b,
// b + G, ... (its share of srcCount). Each pass over the tokens counts a
// token's ranks and as many of the block's experts as fit beside them.
__device__ __forceinline__ void dispatch_send(const LowLatencyArgs& a) {
  __shared__ int tokenMask;
  __shared__ int32_t queryExpert[kMaxQueries];
  __shared__ int queryCount[kMaxQueries];
  __shared__ uint32_t queriesOf[kMaxRanks * kMaxLocalExperts];
  const int tid = threadIdx.x, lane = tid % kWarpSize, warp = tid / kWarpSize;
  constexpr int kWarps = kSendThreads / kWarpSize;
  const int R = a.numRanks, me = a.rank, H = a.hidden, L = a.numLocalExperts, G = gridDim.x;
  for (int i = tid; i < a.numExperts; i += blockDim.x) queriesOf[i] = 0;
  if (__syncthreads_or(has_error(a.status))) return;  // block-uniform: a fused kernel goes on to more barriers
  if (blockIdx.x == 0 && tid == 0 && a.outcome) *a.outcome = EpStatus{0, 0, 0, 0};  // the receive gives the verdict
  const int chunks = (H / 8 + kChunkVecs - 1) / kChunkVecs;
  const int myExperts = static_cast<int>(blockIdx.x) < a.numExperts ? (a.numExperts - 1 - blockIdx.x) / G + 1 : 0;
  const size_t at0 = static_cast<size_t>(me) * a.maxTokens;
  // Every block reads all of the top-k ids in its counting passes (a bulk
  // prefetch takes whole, aligned 16-byte units).
  const uint32_t idsBytes = static_cast<uint32_t>(a.numTokens * a.topk * (a.idx64 ? 8 : 4)) & ~15u;
  if (tid == 0 && idsBytes > 0 && (reinterpret_cast<uintptr_t>(a.topkIdx) & 15) == 0) prefetch_l2(a.topkIdx, idsBytes);

  int counted = 0;  // of myExperts
  for (int t = blockIdx.x; t < a.numTokens || counted < myExperts; t += G) {
    const bool hasToken = t < a.numTokens;
    const int cols = hasToken ? a.topk : 0;
    const int more = min(kMaxQueries - cols, myExperts - counted);
    if (hasToken) {
      // The row is read after the top-k ids: fetching it into L2 now makes
      // the two loads from memory overlap instead of following each other.
      if (tid == 0) prefetch_l2(a.x + static_cast<size_t>(t) * H, H * 2);
      // Destinations of the token; every destination gets its top-k ids too
      // (they tell it which tokens were sent). A column repeating an earlier
      // column's expert gets no rank (the token goes to the expert once).
      if (warp == 0) {
        int64_t e = lane < a.topk ? load_idx(a.topkIdx, a.idx64, static_cast<size_t>(t) * a.topk + lane) : -1;
        if (e < -1 || e >= a.numExperts) {
          // The host cannot read device ids before the launch: the token goes
          // without that entry. The error waits for this rank's receive, which
          // runs once every block has signalled: reported now, it would stop
          // blocks that have not sent yet, and peers would wait for them.
          int32_t* bad = local_of(a.peers.ptr[me])->llBadEntry;
          bad[1] = static_cast<int32_t>(e);
          bad[0] = t + 1;
          e = -1;
        }
        const int mask = __reduce_or_sync(0xffffffffu, e >= 0 ? 1 << static_cast<int>(e / L) : 0);
        const bool repeat = (__match_any_sync(0xffffffffu, e) & ((1u << lane) - 1)) != 0;
        if (lane == 0) tokenMask = mask;
        if (lane < a.topk) {
          for (int r = 0; r < R; ++r) {
            reinterpret_cast<int32_t*>(a.peers.ptr[r] + a.regions.srcTopk)[(at0 + t) * a.maxTopk + lane] = static_cast<int32_t>(e);
          }
          queryExpert[lane] = e < 0 || repeat ? -1 : static_cast<int32_t>(e);
          queryCount[lane] = 0;
        }
      }
    }
    if (tid < more) {
      queryExpert[cols + tid] = static_cast<int32_t>(blockIdx.x + (counted + tid) * G);
      queryCount[cols + tid] = 0;
    }
    __syncthreads();
    if (hasToken) {
      for (int item = warp; item < chunks; item += kWarps) send_row_vector(a, t, tokenMask, item * kChunkVecs + lane);
    }
    count_tokens_naming(a, queryExpert, cols + more, cols, t, queryCount, queriesOf);
    if (tid < cols + more && queryExpert[tid] >= 0) {
      const int32_t e = queryExpert[tid];
      uint8_t* owner = a.peers.ptr[e / L];
      if (tid < cols) {
        reinterpret_cast<int32_t*>(owner + a.regions.srcRank)[(at0 + t) * a.maxTopk + tid] = queryCount[tid];
      } else {
        reinterpret_cast<int32_t*>(owner + a.regions.srcCount)[static_cast<size_t>(me) * L + e % L] = queryCount[tid];
      }
    }
    counted += more;
    __syncthreads();  // the queries are refilled next
  }

  // The block's rows, top-k ids, ranks and counts are out (the loop ended on
  // a barrier): it adds its share of the call at every destination (block 0
  // first gives the token count), with no grid-wide handshake before the signal.
  if (tid < R) {
    LowLatencyControl* peer = ll_control(a.peers.ptr[tid], a.half);
    if (blockIdx.x == 0) {
      peer->srcTokens[me] = a.numTokens;
      peer->srcSignature[me] = ll_signature(a);
      peer->srcError[me] = 0;
      peer->srcCall[me] = a.call;
    }
    red_add_release_sys(&peer->dispatchArrived[me], arrival_share());
  }
}

__global__ void __launch_bounds__(kSendThreads, 1) ll_dispatch_send(LowLatencyArgs a) { dispatch_send(a); }

// Pairs (source, token) a receiving block takes at a time, and the copies
// (pair, local expert) they can give it.
constexpr int kRecvPairsPerStep = 4;
constexpr int kMaxCopies = kRecvPairsPerStep * kMaxTopk;

struct RowCopy {
  const uint8_t* src;  // staging row
  int expert;          // local
  int slot;
};

// Every block waits for every source, then: experts j = b, b + G, ... get
// their count, per-source ranges and statistics; and (source, token) pairs
// are handed out a step at a time: each pair's rows go to their experts'
// slots (offset of the source + the token's rank), the block's warps copying
// all of the step's rows at once, a row cut into pieces when the rows are fewer
// than the warps.
__device__ __forceinline__ void dispatch_recv(const LowLatencyArgs& a, uint32_t seq, uint64_t deadline) {
  __shared__ int firstPair[kMaxRanks + 1];
  __shared__ RowCopy copies[kMaxCopies];
  // Step k lists its copies in numCopies[k & 1] while thread 0 clears the other
  // (one counter would need a barrier between its reset and the next step's adds).
  __shared__ int numCopies[2];
  __shared__ Refusal refusal;
  const int tid = threadIdx.x, lane = tid % kWarpSize, warp = tid / kWarpSize;
  constexpr int kWarps = kRecvThreads / kWarpSize;
  const int R = a.numRanks, me = a.rank, H = a.hidden, L = a.numLocalExperts, M = a.maxTokens, G = gridDim.x;
  uint8_t* mine = a.peers.ptr[me];
  LowLatencyControl* ctrl = ll_control(mine, a.half);
  if (tid == 0) refusal.peer = -1;  // the barrier after the waits orders it
  if (tid < R) wait_arrivals(&ctrl->dispatchArrived[tid], seq, deadline, a.status, kPhaseLowLatencyDispatch, tid);
  // Every source's shares were acquired by its waiting thread; the barrier makes
  // what they published visible to the whole block before anything reads it.
  __syncthreads();
  if (tid == 0) {
    firstPair[0] = 0;
    for (int s = 0; s < R; ++s) firstPair[s + 1] = firstPair[s] + ld_volatile(&ctrl->srcTokens[s]);
    numCopies[0] = numCopies[1] = 0;
  }
  // This rank's own blocks' arrivals were acquired too: a bad id one of them met is visible.
  if (tid == 0) {
    const int32_t* bad = local_of(mine)->llBadEntry;
    if (ld_volatile(&bad[0]) != 0) report_error(a.status, kEpErrBadExpert, kPhaseLowLatencyDispatch, ld_volatile(&bad[0]) - 1, ld_volatile(&bad[1]));
  }
  if (tid < R) {
    const int32_t call = ld_volatile(&ctrl->srcCall[tid]);
    const int refused = ld_volatile(&ctrl->srcError[tid]);
    if (call != a.call) report_error(a.status, kEpErrProtocol, kPhaseLowLatencyDispatch, tid, call);
    else if (refused) note_refusal(&refusal, tid, refused);
    else if (ld_volatile(&ctrl->srcSignature[tid]) != ll_signature(a)) {
      report_error(a.status, kEpErrShapeMismatch, kPhaseLowLatencyDispatch, tid, ld_volatile(&ctrl->srcSignature[tid]));
    }
  }
  if (__syncthreads_or(has_error(a.status))) return;  // block-uniform, as barriers follow
  // A source whose host refused the call fails it on every rank: nothing is
  // copied, and its combine does nothing (ll_dispatch_failed).
  if (blockIdx.x == 0 && tid == 0) {
    const EpStatus verdict = call_verdict(kPhaseLowLatencyDispatch, refusal.peer, refusal.peer < 0 ? 0 : refusal.failure);
    local_of(mine)->llDispatchAbort[a.half] = verdict;
    if (a.outcome) *a.outcome = verdict;
  }
  if (refusal.peer >= 0) return;

  const int32_t* srcTopk = reinterpret_cast<const int32_t*>(mine + a.regions.srcTopk);
  const int32_t* srcRank = reinterpret_cast<const int32_t*>(mine + a.regions.srcRank);
  const int32_t* srcCount = reinterpret_cast<const int32_t*>(mine + a.regions.srcCount);
  const size_t slots = static_cast<size_t>(R) * M;
  // The experts' counts and ranges: one warp per expert, one lane per source.
  for (int j = blockIdx.x + warp * G; j < L; j += kWarps * G) {
    const int n = lane < R ? srcCount[static_cast<size_t>(lane) * L + j] : 0;
    int incl = n;
#pragma unroll
    for (int o = 1; o < kMaxRanks; o <<= 1) {
      const int up = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane >= o) incl += up;
    }
    int32_t* range = reinterpret_cast<int32_t*>(mine + a.regions.layoutRange) + static_cast<size_t>(j) * R * 2;
    if (lane < R) {
      range[2 * lane] = incl - n;
      range[2 * lane + 1] = n;
    }
    if (lane == R - 1) {
      reinterpret_cast<int32_t*>(mine + a.regions.recvCount)[j] = incl;
      if (a.cumulativeStats) a.cumulativeStats[j] += incl;
    }
  }

  const int total = firstPair[R];
  const int rowBytes = a.useFp8 ? H : H * 2;
  const int rowVecs = rowBytes / 16, scaleCols = H / kScaleBlock;
  const int step = max(1, min(kRecvPairsPerStep, (total + G - 1) / G));
  for (int i0 = blockIdx.x * step, k = 0; i0 < total; i0 += G * step, k ^= 1) {
    const int n = min(step, total - i0);
    if (tid == 0) numCopies[k ^ 1] = 0;  // the last step read it before its closing barrier
    // One thread per (pair, column), a pair's columns in one warp: a column
    // naming a local expert, and no earlier column naming it, becomes a copy.
    if (warp < (n * kMaxTopk + kWarpSize - 1) / kWarpSize) {
      const int i = tid / kMaxTopk, c = tid % kMaxTopk;
      int s = 0;
      while (s < R - 1 && firstPair[s + 1] <= i0 + i) ++s;
      const int t = i0 + i - firstPair[s];
      const size_t at = static_cast<size_t>(s) * M + t;
      const int32_t e = i < n && c < a.topk ? srcTopk[at * a.maxTopk + c] : -1;
      const unsigned same = __match_any_sync(0xffffffffu, (static_cast<uint64_t>(i) << 32) | static_cast<uint32_t>(e));
      if (e >= 0 && e / L == me && (same & ((1u << lane) - 1)) == 0) {
        const int j = e - me * L;
        int offset[kMaxRanks];  // the sources before s: loaded together
#pragma unroll
        for (int q = 0; q < kMaxRanks; ++q) offset[q] = q < s ? srcCount[static_cast<size_t>(q) * L + j] : 0;
        int p = srcRank[at * a.maxTopk + c];
#pragma unroll
        for (int q = 0; q < kMaxRanks; ++q) p += offset[q];
        copies[atomicAdd(&numCopies[k], 1)] = RowCopy{mine + a.regions.staging + at * a.regions.stagingStride, j, p};
        reinterpret_cast<int32_t*>(mine + a.regions.srcInfo)[static_cast<size_t>(j) * slots + p] = t;
        // The combine finds this slot from (source, token, top-k column).
        reinterpret_cast<int32_t*>(mine + a.regions.slotOf)[at * a.maxTopk + c] = p;
      }
    }
    __syncthreads();
    const int rows = numCopies[k];
    const int pieces = max(1, kWarps / max(rows, 1));
    const int pieceVecs = (rowVecs + pieces - 1) / pieces;
    for (int item = warp; item < rows * pieces; item += kWarps) {
      const RowCopy cp = copies[item / pieces];
      const int piece = item % pieces;
      const int v0 = piece * pieceVecs, nv = min(pieceVecs, rowVecs - v0);
      const size_t slot = static_cast<size_t>(cp.expert) * slots + cp.slot;
      if (nv > 0) warp_copy<8>(mine + a.regions.recvX + slot * rowBytes + v0 * 16, cp.src + v0 * 16, nv * 16, lane);
      if (a.useFp8 && piece == pieces - 1) {
        float* sdst = reinterpret_cast<float*>(mine + a.regions.recvScales) + slot * scaleCols;
        for (int c = lane; c < scaleCols; c += kWarpSize) sdst[c] = reinterpret_cast<const float*>(cp.src + H)[c];
      }
    }
    __syncthreads();  // the next step lists into copies
  }
}

// The receive half alone (for a hook).
__global__ void __launch_bounds__(kRecvThreads, 1) ll_dispatch_recv(LowLatencyArgs a) {
  const SeqTicket ticket = ll_seq_arrive(a, /*combine=*/false);
  dispatch_recv(a, ticket.seq, global_timer_ns() + a.timeoutNs);
  ll_seq_finish(ticket);
}

// Both halves in one launch when no hook is asked for. The grid is at most
// one block per SM, so every block that sends is resident while others wait
// for its shares.
static_assert(kSendThreads == kRecvThreads, "the fused dispatch runs both halves with one block size");
__global__ void __launch_bounds__(kSendThreads, 1) ll_dispatch(LowLatencyArgs a) {
  const SeqTicket ticket = ll_seq_arrive(a, /*combine=*/false);
  const uint64_t deadline = global_timer_ns() + a.timeoutNs;
  dispatch_send(a);
  dispatch_recv(a, ticket.seq, deadline);
  ll_seq_finish(ticket);
}

// This rank's part in a dispatch its host refused: no rows, its failure and
// call number where the receivers look for its signature, and a whole call's
// arrival share at every rank, so that every receive completes at once and
// fails the call; its sequence number moves on as its receive would move it.
__global__ void __launch_bounds__(kSendThreads, 1) ll_dispatch_refused(LowLatencyArgs a) {
  const SeqTicket ticket = ll_seq_arrive(a, /*combine=*/false);
  if (threadIdx.x < a.numRanks) {
    LowLatencyControl* peer = ll_control(a.peers.ptr[threadIdx.x], a.half);
    peer->srcTokens[a.rank] = 0;
    peer->srcError[a.rank] = a.localError;
    peer->srcCall[a.rank] = a.call;
    __threadfence_system();
    red_add_release_sys(&peer->dispatchArrived[a.rank], arrival_share());
  }
  ll_seq_finish(ticket);
}

}  // namespace

cudaError_t LaunchLowLatencyDispatchSend(const LowLatencyArgs& a, int numSms, cudaStream_t stream) {
  ll_dispatch_send<<<numSms, kSendThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t LaunchLowLatencyDispatchRecv(const LowLatencyArgs& a, int numSms, cudaStream_t stream) {
  ll_dispatch_recv<<<numSms, kRecvThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t LaunchLowLatencyDispatch(const LowLatencyArgs& a, int numSms, cudaStream_t stream) {
  if (a.localError) {
    ll_dispatch_refused<<<1, kSendThreads, 0, stream>>>(a);
    return cudaGetLastError();
  }
  return LaunchResident(ll_dispatch, a, numSms, stream);
}

}  // namespace wideep::ep
