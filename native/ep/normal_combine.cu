// Normal-mode combine: each rank returns every received row to the rank it
// came from (NVLink writes into the origin's per-source area) and flags each
// row as it lands; the origin reduces, per token and in rank order, the rows
// of all ranks that received it, reading its own rows straight from x. One
// kernel, no host sync, and the two halves overlap:
//  1. handshake: every rank has entered this combine (its area is free);
//  2. sender blocks push rows, every origin's tokens in increasing order,
//     each row followed by its flag (this combine's sequence number);
//  3. meanwhile reducer blocks take this rank's tokens in increasing order
//     from a shared counter, wait for their rows' flags and reduce them;
//     sender blocks join them once their rows are out.
// Whole blocks take one role: a block's remote stores, waiting for NVLink
// credits, would stall its reducers' loads in the SM's shared memory pipeline.
#include <algorithm>

#include "ep/bf16_vec.cuh"
#include "ep/device_utils.cuh"
#include "ep/ep_kernels.h"

namespace wideep::ep {
namespace {

constexpr int kCombineThreads = 512;
constexpr int kCombineWarps = kCombineThreads / kWarpSize;
// A grid of one block splits its warps instead: 10 send, the rest reduce.
constexpr int kSendWarps = 10;
// A sender keeps kSendUnroll vectors per lane in flight, and pushes
// kRowsPerFence rows before one system fence covers them (a fence waits for
// the peer's acknowledgements, about a microsecond).
constexpr int kSendUnroll = 8;
constexpr int kRowsPerFence = 4;
// The reduction keeps kRankGroup ranks x kReduceUnroll vectors of loads in
// flight per lane, so a couple of dozen SMs cover HBM latency.
constexpr int kRankGroup = 4;
constexpr int kReduceUnroll = 4;

// A reducer warp takes this rank's tokens in increasing order from a shared
// counter (so that warps done sending join in), waits for the flag of every
// remote row a token has, then sums its rows in rank order (bias last) and its
// weights. Nothing when `moves` is false (a peer refused the call; tested in
// the loop's condition, which keeps the kernel's registers as they were).
__device__ __forceinline__ void reduce_tokens(const CombineArgs& a, bool moves, uint32_t seq, uint64_t deadline, int selfBegin,
                                              uint32_t* nextToken, int lane) {
  const int R = a.numRanks, me = a.rank, H = a.hidden;
  uint8_t* mine = a.peers.ptr[me];
  const size_t rowBytes = static_cast<size_t>(H) * 2;
  const uint32_t* flags = reinterpret_cast<const uint32_t*>(mine + a.regions.combineFlags);
  const int vecs = H / 8;
  auto grab = [&] {
    int t = 0;
    if (lane == 0) t = static_cast<int>(atomicAdd(nextToken, 1u));
    return __shfl_sync(0xffffffffu, t, 0);
  };
  for (int t = grab(); moves && t < a.numTokens;) {
    // The next token's atomic is in flight while this one is reduced.
    const int next = grab();
    const int p = lane < R ? a.sendPos[static_cast<size_t>(t) * R + lane] : -1;
    if (lane < R && lane != me && p >= 0) {
      wait_flag_eq(flags + static_cast<size_t>(lane) * a.maxTokens + t, seq, deadline, a.status, kPhaseCombine, lane);
    }
    // Lane r acquired rank r's flag; the warp barrier orders that for every lane.
    __syncwarp();
    if (__any_sync(0xffffffffu, lane < R && has_error(a.status))) return;
    const int4* src[kMaxRanks];
    int pos[kMaxRanks];  // the token's row on each rank, known to every lane
#pragma unroll
    for (int r = 0; r < kMaxRanks; ++r) {
      const int pr = __shfl_sync(0xffffffffu, p, r);
      pos[r] = pr;
      src[r] = pr < 0 || r >= R ? nullptr
               : r == me ? reinterpret_cast<const int4*>(a.x + static_cast<size_t>(selfBegin + pr) * H)
                         : reinterpret_cast<const int4*>(mine + a.regions.combineX +
                                                         (static_cast<size_t>(r) * a.maxTokens + t) * rowBytes);
    }
    const int4* b0 = a.bias0 ? reinterpret_cast<const int4*>(a.bias0 + static_cast<size_t>(t) * H) : nullptr;
    const int4* b1 = a.bias1 ? reinterpret_cast<const int4*>(a.bias1 + static_cast<size_t>(t) * H) : nullptr;
    int4* out = reinterpret_cast<int4*>(a.out + static_cast<size_t>(t) * H);
    for (int v0 = lane; v0 < vecs; v0 += kWarpSize * kReduceUnroll) {
      float acc[kReduceUnroll][8];
#pragma unroll
      for (int u = 0; u < kReduceUnroll; ++u) {
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[u][i] = 0.0f;
      }
#pragma unroll
      for (int g = 0; g < kMaxRanks; g += kRankGroup) {
        if (g >= R) break;
        int4 buf[kRankGroup][kReduceUnroll];
#pragma unroll
        for (int i = 0; i < kRankGroup; ++i) {
#pragma unroll
          for (int u = 0; u < kReduceUnroll; ++u) {
            const int v = v0 + u * kWarpSize;
            // Peers' rows land while other tokens are reduced: coherent loads for them.
            if (src[g + i] && v < vecs) buf[i][u] = g + i == me ? ld_nc_v4(src[g + i] + v) : ld_na_v4(src[g + i] + v);
          }
        }
#pragma unroll
        for (int i = 0; i < kRankGroup; ++i) {
          if (!src[g + i]) continue;
#pragma unroll
          for (int u = 0; u < kReduceUnroll; ++u) {
            if (v0 + u * kWarpSize < vecs) accumulate_bf16x8(acc[u], buf[i][u]);
          }
        }
      }
#pragma unroll
      for (int u = 0; u < kReduceUnroll; ++u) {
        const int v = v0 + u * kWarpSize;
        if (v >= vecs) continue;
        if (b0) accumulate_bf16x8(acc[u], ld_nc_v4(b0 + v));
        if (b1) accumulate_bf16x8(acc[u], ld_nc_v4(b1 + v));
        out[v] = pack_bf16x8(acc[u]);
      }
    }
    if (a.topk > 0 && lane < a.topk) {
      // No shuffles here: only some lanes take this branch.
      float w = 0;
#pragma unroll
      for (int r = 0; r < kMaxRanks; ++r) {
        const int pr = pos[r];
        if (r >= R || pr < 0) continue;
        w += r == me ? a.topkWeights[static_cast<size_t>(selfBegin + pr) * a.topk + lane]
                     : reinterpret_cast<const float*>(mine + a.regions.combineWeights)
                           [(static_cast<size_t>(r) * a.maxTokens + t) * a.topk + lane];
      }
      a.outWeights[static_cast<size_t>(t) * a.topk + lane] = w;
    }
    t = next;
  }
}

// Whether the dispatch this combine belongs to failed on every rank (a peer
// refused it): then no rank combines it, and this combine does nothing either.
__device__ __forceinline__ bool dispatch_failed(const CombineArgs& a) {
  return a.slot >= 0 && local_of(a.peers.ptr[a.rank])->dispatchAbort[a.slot].code != 0;
}

// Thread 0's entry into a combine: in every rank's control, in the half of
// the entries this combine's parity owns (a peer is at most one combine
// ahead), what it sends (`signature`, or an error code negated) and its call
// number; then its sequence number.
__device__ __forceinline__ void enter_combine(const CombineArgs& a, uint32_t seq, int32_t signature) {
  for (int r = 0; r < a.numRanks; ++r) {
    NormalControl* peer = control_of(a.peers.ptr[r]);
    peer->combineSignature[seq & 1][a.rank] = signature;
    peer->combineCall[seq & 1][a.rank] = a.call;
  }
  __threadfence_system();
  for (int r = 0; r < a.numRanks; ++r) st_release_sys(&control_of(a.peers.ptr[r])->combineSeq[a.rank], seq);
}

__global__ void __launch_bounds__(kCombineThreads, 1) combine_kernel(CombineArgs a) {
  __shared__ uint32_t seq;
  __shared__ bool last;
  __shared__ Refusal refusal;
  const int tid = threadIdx.x, lane = tid % kWarpSize, warp = tid / kWarpSize;
  const int R = a.numRanks, me = a.rank, H = a.hidden;
  uint8_t* mine = a.peers.ptr[me];
  NormalControl* ctrl = control_of(mine);
  const uint64_t deadline = global_timer_ns() + a.timeoutNs;
  const size_t rowBytes = static_cast<size_t>(H) * 2;

  // A combine of a dispatch that failed on every rank does nothing, on every
  // rank alike: no handshake, no sequence number (block-uniform).
  if (dispatch_failed(a)) {
    if (blockIdx.x == 0 && tid == 0 && a.outcome) *a.outcome = local_of(mine)->dispatchAbort[a.slot];
    return;
  }

  // 1. Handshake.
  if (tid == 0) {
    seq = local_of(mine)->combineSeq + 1;
    refusal.peer = -1;
  }
  __syncthreads();
  // Every rank's rows must have this rank's width and weights, and belong to
  // the same dispatch: each says what it sends, and its call number. A rank
  // that has already failed sends nothing and says so (its error code,
  // negated), so that its peers stop now rather than time out; a rank whose
  // host refused the call says so the same way (combine_refused).
  const int32_t signature = CallSignature(H, a.topk, /*elemBytes=*/2, /*hasScales=*/0);
  if (blockIdx.x == 0 && tid == 0) enter_combine(a, seq, has_error(a.status) ? -error_code(a.status) : signature);
  // At least seq, not exactly: a block that starts late (its SM was busy)
  // may find a peer already in the next combine, since peers wait only for
  // this rank's sender blocks.
  if (tid < R && wait_seq_reached(&ctrl->combineSeq[tid], seq, deadline, a.status, kPhaseCombine, tid)) {
    const int32_t theirs = ld_volatile(&ctrl->combineSignature[seq & 1][tid]);
    const int32_t call = ld_volatile(&ctrl->combineCall[seq & 1][tid]);
    if (call != a.call) report_error(a.status, kEpErrProtocol, kPhaseCombine, tid, call);
    else if (theirs < 0 && is_local_failure(-theirs)) note_refusal(&refusal, tid, -theirs);
    else if (theirs < 0) report_error(a.status, kEpErrPeerFailed, kPhaseCombine, tid, -theirs);
    else if (theirs != signature) report_error(a.status, kEpErrShapeMismatch, kPhaseCombine, tid, theirs);
  }
  __syncthreads();
  if (has_error(a.status)) return;
  // A call some rank refused moves no rows on any rank; its sequence number still moves on.
  {
    const RoutingMeta& meta = *a.meta;
    const int selfBegin = meta.recvBase[me];
    const bool oneBlock = gridDim.x == 1;
    const bool sends = refusal.peer < 0 && (oneBlock ? warp < kSendWarps : static_cast<int>(blockIdx.x) < a.sendBlocks);
    if (sends) {
      // 2. Send every remote row back to its origin, into slot (me, token), then
      // flag it. Rows go round-robin over the other ranks, each origin's in
      // token order (a source's rows sit in token order), so every origin's
      // reducers find their tokens arriving from the start.
      int maxRows = 0;
      for (int s = 0; s < R; ++s) maxRows = max(maxRows, s == me ? 0 : meta.recvBase[s + 1] - meta.recvBase[s]);
      const int32_t* srcIdx = reinterpret_cast<const int32_t*>(
          mine + a.regions.slab0 + static_cast<uint64_t>(a.slot) * a.regions.slabStride + a.regions.slabSrcIdx);
      const int sender = oneBlock ? warp : blockIdx.x * kCombineWarps + warp;
      const int numSenders = oneBlock ? kSendWarps : a.sendBlocks * kCombineWarps;
      const int others = R - 1;
      const int total = maxRows * others;
      for (int i0 = sender; i0 < total; i0 += numSenders * kRowsPerFence) {
        uint32_t* flag[kRowsPerFence];
#pragma unroll
        for (int b = 0; b < kRowsPerFence; ++b) {
          const int i = i0 + b * numSenders;
          flag[b] = nullptr;
          if (i >= total) continue;
          const int o = i % others, p = i / others;
          const int s = o < me ? o : o + 1;
          if (p >= meta.recvBase[s + 1] - meta.recvBase[s]) continue;
          const int j = meta.recvBase[s] + p;
          const size_t slotRow = static_cast<size_t>(me) * a.maxTokens + srcIdx[j];
          uint8_t* origin = a.peers.ptr[s];
          warp_copy<kSendUnroll>(origin + a.regions.combineX + slotRow * rowBytes,
                                 reinterpret_cast<const uint8_t*>(a.x) + static_cast<size_t>(j) * rowBytes,
                                 static_cast<int>(rowBytes), lane);
          if (lane < a.topk) {
            reinterpret_cast<float*>(origin + a.regions.combineWeights)[slotRow * a.topk + lane] =
                a.topkWeights[static_cast<size_t>(j) * a.topk + lane];
          }
          flag[b] = reinterpret_cast<uint32_t*>(origin + a.regions.combineFlags) + slotRow;
        }
        __syncwarp();
        if (lane == 0) {
          __threadfence_system();  // the whole warp's rows before their flags
#pragma unroll
          for (int b = 0; b < kRowsPerFence; ++b) {
            if (flag[b]) st_release_sys(flag[b], seq);
          }
        }
      }
    }
    // 3. Reduce this rank's tokens as their rows land; senders join once their
    // rows are out, so the split need not match the two halves' work exactly.
    reduce_tokens(a, refusal.peer < 0, seq, deadline, selfBegin, &local_of(mine)->combineNextToken, lane);
  }

  // The last block moves the sequence on for the next combine and gives the host the verdict.
  __syncthreads();
  if (tid == 0) {
    __threadfence();  // this block's counter grabs before its count, which the last block's reset follows
    uint32_t* fin = &local_of(mine)->finished[kFinishCombine];
    last = atomicAdd(fin, 1) == gridDim.x - 1;
    if (last) {
      *fin = 0;
      local_of(mine)->combineNextToken = 0;
      local_of(mine)->combineSeq = seq;
      if (a.outcome) *a.outcome = call_verdict(kPhaseCombine, refusal.peer, refusal.peer < 0 ? 0 : refusal.failure);
    }
  }
}

// This rank's part in a combine its host refused: the entry alone, its
// failure in place of its signature, so that every rank skips this combine's
// rows at once. It waits for every peer's entry, as a combine does, so that no
// rank gets two combines ahead of another; then its sequence number moves on.
__global__ void __launch_bounds__(kWarpSize, 1) combine_refused(CombineArgs a) {
  if (dispatch_failed(a)) return;
  uint8_t* mine = a.peers.ptr[a.rank];
  const uint32_t seq = local_of(mine)->combineSeq + 1;
  const uint64_t deadline = global_timer_ns() + a.timeoutNs;
  if (threadIdx.x == 0) enter_combine(a, seq, -a.localError);
  if (threadIdx.x < a.numRanks) {
    wait_seq_reached(&control_of(mine)->combineSeq[threadIdx.x], seq, deadline, a.status, kPhaseCombine, threadIdx.x);
  }
  __syncwarp();
  if (threadIdx.x == 0) local_of(mine)->combineSeq = seq;
}

// How many blocks send (the rest reduce, and the senders join them once
// their rows are out). A rank pushes the remote (R-1)/R of the rows it
// received, and one SM pushes only ~24 GB/s over NVLink, so senders get that
// share of the blocks, at most two thirds. At 2 ranks (24 SMs, 2xH200) a half
// measured best: 303 us against 322 with two thirds; without the joining, a
// third had been best (324 us) and two thirds far worse (553).
// `requested` (numSendSms, 0 for the default) overrides the share.
int combine_send_blocks(int numSms, int R, int requested) {
  if (R == 1 || numSms == 1) return 0;
  const int n = requested > 0 ? requested : std::min(numSms * (R - 1) / R, numSms * 2 / 3);
  return std::clamp(n, 1, numSms - 1);
}

}  // namespace

cudaError_t LaunchCombine(const CombineArgs& args, int numSms, int numSendSms, cudaStream_t stream) {
  if (args.localError) {
    combine_refused<<<1, kWarpSize, 0, stream>>>(args);
    return cudaGetLastError();
  }
  CombineArgs a = args;
  a.sendBlocks = combine_send_blocks(numSms, a.numRanks, numSendSms);
  combine_kernel<<<numSms, kCombineThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace wideep::ep
