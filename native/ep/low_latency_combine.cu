// Low-latency combine (decode), the dispatch's way back (same halves,
// sequence numbers and signals; one launch or two with a hook). Each token's
// rows are reduced on every rank that owns some of its experts, which returns
// one bf16 partial per token; the origin adds the partials up.
#include <cuda_bf16.h>

#include "ep/bf16_vec.cuh"
#include "ep/low_latency_common.cuh"

namespace wideep::ep {
namespace {

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
      // An id outside [0, numExperts) goes nowhere (the dispatch reported it).
      const bool none = e < 0 || e >= a.numExperts;
      entry[u] = make_int2(none ? -1 : static_cast<int32_t>(e), __float_as_int(none ? 0.0f : w));
    }
#pragma unroll
    for (int u = 0; u < kPublishBatch; ++u) {
      const int q = base + u * blockDim.x;
      if (q < n) dst[static_cast<size_t>(q / k) * a.maxTopk + q % k] = entry[u];
    }
  }
  __syncthreads();
  if (tid == 0) {
    LowLatencyControl* peer = ll_control(a.peers.ptr[r], a.half);
    peer->combineError[me] = 0;
    peer->combineCall[me] = a.call;
    __threadfence_system();
    st_release_sys(&peer->weightsFlag[me], seq);
  }
}

// Each block takes (source, token) pairs a step at a time: its threads find
// each pair's rows on this rank (one per top-k column whose expert is here)
// and the partial's place at the origin, then its warps reduce the rows
// (sum_rows) and write the partial to the origin. The first step's rows are
// looked up from the dispatch's routing while the combine's top-k comes in;
// once it is in, a column whose id is the dispatch's takes that row as is.
// Returns the rank whose host refused this call, if one did (no partials
// move then, on any rank); block 0 also keeps it for a hook's receive.
__device__ __forceinline__ Refusal combine_send(const LowLatencyArgs& a, uint32_t seq) {
  __shared__ const int4* rowPtr[kPairsPerStep][kMaxTopk];  // compacted to rowCount rows before the sums
  __shared__ float rowWeight[kPairsPerStep][kMaxTopk];
  __shared__ int rowCount[kPairsPerStep];
  __shared__ int owner[kPairsPerStep][kMaxTopk];
  __shared__ int4* rowDst[kPairsPerStep];
  __shared__ int32_t earlyId[kPairsPerStep][kMaxTopk];      // the first step's dispatch ids
  __shared__ const int4* earlyRow[kPairsPerStep][kMaxTopk];  // and their rows here (null: elsewhere)
  __shared__ int firstPair[kMaxRanks + 1];  // exclusive prefix of the sources' token counts
  __shared__ Refusal refusal;
  const int tid = threadIdx.x;
  const int R = a.numRanks, me = a.rank, H = a.hidden, L = a.numLocalExperts, M = a.maxTokens;
  uint8_t* mine = a.peers.ptr[me];
  LowLatencyControl* ctrl = ll_control(mine, a.half);
  if (__syncthreads_or(has_error(a.status))) return Refusal{-1, 0};  // block-uniform: a fused kernel goes on to more barriers
  if (blockIdx.x == 0 && tid == 0 && a.outcome) *a.outcome = EpStatus{0, 0, 0, 0};  // the receive gives the verdict
  const uint64_t deadline = global_timer_ns() + a.timeoutNs;
  for (int r = blockIdx.x; r < R; r += gridDim.x) publish_combine_topk(a, seq, r);
  if (tid == 0) {  // the dispatch's token counts
    refusal.peer = -1;
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
  // slot under the first column naming the expert. An expert the dispatch did
  // not send the token to (a combine whose ids are not its dispatch's, which
  // the API forbids) has no row.
  auto row_of = [&](size_t at, int32_t e) -> const int4* {
    const int col = first_slot_of(srcTopk + at * a.maxTopk, a.topk, static_cast<int64_t>(e));
    if (col < 0) return nullptr;
    const int p = slotOf[at * a.maxTopk + col];
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
  if (tid < R && wait_flag_eq(&ctrl->weightsFlag[tid], seq, deadline, a.status, kPhaseLowLatencyCombine, tid)) {
    const int32_t call = ld_volatile(&ctrl->combineCall[tid]);
    const int refused = ld_volatile(&ctrl->combineError[tid]);
    if (call != a.call) report_error(a.status, kEpErrProtocol, kPhaseLowLatencyCombine, tid, call);
    else if (refused) note_refusal(&refusal, tid, refused);
  }
  // Each source's flag was acquired by its waiting thread; the barrier shares that with the block.
  const bool ok = !__syncthreads_or(has_error(a.status)) && refusal.peer < 0;
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
      const size_t at = pair_at(i0, tid);
      const int s = static_cast<int>(at / M), t = static_cast<int>(at % M);
      int below = 0, m = 0;
      for (int c = 0; c < a.topk; ++c) {
        const int o = owner[tid][c];
        bool first = o >= 0 && o < me;
        for (int q = 0; first && q < c; ++q) first = owner[tid][q] != o;
        below += first;
        if (rowPtr[tid][c]) {  // compacted in place, in column order (m <= c)
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
  // the call goes to every origin, also when a rank refused the call (the
  // origins then skip their sums), but not after an error (the origins time
  // out instead of adding partials never written).
  if (tid < R && !has_error(a.status)) red_add_release_sys(&ll_control(a.peers.ptr[tid], a.half)->combineArrived[me], arrival_share());
  if (blockIdx.x == 0 && tid == 0) {
    local_of(mine)->llCombineAbort[a.half] = call_verdict(kPhaseLowLatencyCombine, refusal.peer, refusal.peer < 0 ? 0 : refusal.failure);
  }
  return refusal;
}

// Tokens a receiving block takes at a time (decode batches are small): it
// finds a token's partials once, in shared memory, and its warps then add the
// rows in parallel, with no lookup on any chunk's critical path.
constexpr int kTokensPerStep = 1;

// out[t] = the token's partials (one per owner rank of its experts, which sit
// in ascending rank order) added in float and rounded once. A block takes
// tokens a step at a time; its warps add them with sum_rows. Nothing is added
// when a rank refused the call (`refusal`, from the send); block 0 gives the
// host the verdict.
__device__ __forceinline__ void combine_recv(const LowLatencyArgs& a, uint32_t seq, Refusal refusal) {
  __shared__ int partials[kTokensPerStep];
  __shared__ const int4* partialRow[kTokensPerStep][kMaxTopk];
  __shared__ int4* outRow[kTokensPerStep];
  const int tid = threadIdx.x;
  const int R = a.numRanks, H = a.hidden, L = a.numLocalExperts;
  uint8_t* mine = a.peers.ptr[a.rank];
  LowLatencyControl* ctrl = ll_control(mine, a.half);
  const uint64_t deadline = global_timer_ns() + a.timeoutNs;
  if (tid < R) wait_arrivals(&ctrl->combineArrived[tid], seq, deadline, a.status, kPhaseLowLatencyCombine, tid);
  const bool ok = !__syncthreads_or(has_error(a.status)) && refusal.peer < 0;  // block-uniform, as barriers follow
  if (blockIdx.x == 0 && tid == 0 && a.outcome && !has_error(a.status)) {
    *a.outcome = call_verdict(kPhaseLowLatencyCombine, refusal.peer, refusal.peer < 0 ? 0 : refusal.failure);
  }
  const size_t rowBytes = static_cast<size_t>(H) * 2;
  for (int t0 = blockIdx.x * kTokensPerStep; ok && t0 < a.numTokens; t0 += gridDim.x * kTokensPerStep) {
    const int n = min(kTokensPerStep, a.numTokens - t0);
    if (tid < n) {
      const int t = t0 + tid;
      unsigned owners = 0;
      for (int c = 0; c < a.topk; ++c) {
        const int64_t e = load_idx(a.topkIdx, a.idx64, static_cast<size_t>(t) * a.topk + c);
        if (e >= 0 && e < a.numExperts) owners |= 1u << (e / L);
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
  if (ll_dispatch_failed(a)) return;
  combine_send(a, local_of(a.peers.ptr[a.rank])->llCombineSeq[a.half] + 1);
}

__global__ void __launch_bounds__(kRecvThreads, 1) ll_combine_recv(LowLatencyArgs a) {
  if (ll_dispatch_failed(a)) return;
  const SeqTicket ticket = ll_seq_arrive(a, /*combine=*/true);
  const EpStatus* verdict = &local_of(a.peers.ptr[a.rank])->llCombineAbort[a.half];  // the send's
  combine_recv(a, ticket.seq, Refusal{verdict->code ? verdict->peer : -1, verdict->value});
  ll_seq_finish(ticket);
}

// Both halves in one launch when no hook is asked for (same residency as ll_dispatch).
__global__ void __launch_bounds__(kSendThreads, 1) ll_combine(LowLatencyArgs a) {
  if (ll_dispatch_failed(a)) return;
  const SeqTicket ticket = ll_seq_arrive(a, /*combine=*/true);
  const Refusal refusal = combine_send(a, ticket.seq);
  combine_recv(a, ticket.seq, refusal);
  ll_seq_finish(ticket);
}

// This rank's part in a combine its host refused: its failure and call
// number where every rank looks for its top-k, its flag, and a whole call's
// arrival share, so that every rank skips this call's sums at once; its
// sequence number moves on as its receive would move it.
__global__ void __launch_bounds__(kSendThreads, 1) ll_combine_refused(LowLatencyArgs a) {
  if (ll_dispatch_failed(a)) return;
  const SeqTicket ticket = ll_seq_arrive(a, /*combine=*/true);
  if (threadIdx.x < a.numRanks) {
    LowLatencyControl* peer = ll_control(a.peers.ptr[threadIdx.x], a.half);
    peer->combineError[a.rank] = a.localError;
    peer->combineCall[a.rank] = a.call;
    __threadfence_system();
    st_release_sys(&peer->weightsFlag[a.rank], ticket.seq);
    red_add_release_sys(&peer->combineArrived[a.rank], arrival_share());
  }
  ll_seq_finish(ticket);
}

}  // namespace

cudaError_t LaunchLowLatencyCombineSend(const LowLatencyArgs& a, int numSms, cudaStream_t stream) {
  ll_combine_send<<<numSms, kSendThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t LaunchLowLatencyCombine(const LowLatencyArgs& a, int numSms, cudaStream_t stream) {
  if (a.localError) {
    ll_combine_refused<<<1, kSendThreads, 0, stream>>>(a);
    return cudaGetLastError();
  }
  return LaunchResident(ll_combine, a, numSms, stream);
}

cudaError_t LaunchLowLatencyCombineRecv(const LowLatencyArgs& a, int numSms, cudaStream_t stream) {
  ll_combine_recv<<<numSms, kRecvThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace wideep::ep
