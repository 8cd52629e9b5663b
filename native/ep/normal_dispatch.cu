// Normal-mode dispatch (prefill): every (token, destination rank) pair is
// written once, straight into its final row of the destination's receive slot
// over NVLink. Two kernels:
//  1. notify (a few blocks, one per 512 tokens): per-token destinations and
//     positions, then (block 0) the count exchange with every peer and the
//     receive layout. The host reads the counts after it while the data
//     kernel already runs.
//  2. data (numSms blocks): copies the rows and their metadata, then the last
//     block waits until every expected row has arrived.
// All copies are 16-byte vector loads and stores by whole warps, several per
// lane in flight (a bulk-copy/TMA variant measured no faster and was dropped).
#include <cuda_bf16.h>

#include "ep/device_utils.cuh"
#include "ep/ep_kernels.h"

namespace wideep::ep {
namespace {

constexpr int kNotifyThreads = 512;
constexpr int kNotifyWarps = kNotifyThreads / kWarpSize;

__device__ __forceinline__ int64_t load_idx(const void* p, int idx64, int i) {
  return idx64 ? static_cast<const int64_t*>(p)[i] : static_cast<const int32_t*>(p)[i];
}

// Bitmask of destination ranks of token t; counts its distinct experts into
// expertCount (shared) and validates every index. The row is loaded into
// registers once (k <= kMaxTopk), so the duplicate check costs no memory traffic.
__device__ int token_rank_mask(const NotifyArgs& a, int t, int* expertCount, int expertsPerRank) {
  int64_t ids[kMaxTopk];
#pragma unroll
  for (int k = 0; k < kMaxTopk; ++k) ids[k] = k < a.topk ? load_idx(a.topkIdx, a.idx64, t * a.topk + k) : -1;
  int mask = 0;
#pragma unroll
  for (int k = 0; k < kMaxTopk; ++k) {
    const int64_t e = ids[k];
    if (e == -1) continue;
    if (e < -1 || e >= a.numExperts) {
      report_error(a.status, kEpErrBadExpert, kPhaseLayout, t, static_cast<int>(e));
      continue;
    }
    bool seen = false;
#pragma unroll
    for (int p = 0; p < k; ++p) seen |= ids[p] == e;
    if (!seen && expertCount) atomicAdd(&expertCount[e], 1);
    mask |= 1 << static_cast<int>(e / expertsPerRank);
  }
  return mask;
}

// Every block of the notify grid arrives before any goes on (the grid is
// co-resident: a cooperative launch). False on timeout.
__device__ bool notify_grid_barrier(NotifyScratch* s, uint64_t deadline, const ErrorSink& sink) {
  __shared__ bool ok;
  __syncthreads();
  if (threadIdx.x == 0) {
    ok = true;
    // Stable until this block arrives: the barrier completes only after that.
    const uint32_t generation = ld_acquire_sys(&s->generation);
    __threadfence();
    if (atomicAdd(&s->arrived, 1) == gridDim.x - 1) {
      s->arrived = 0;
      __threadfence();
      atomicAdd(&s->generation, 1);
    } else {
      while (ld_acquire_sys(&s->generation) == generation) {
        if (global_timer_ns() > deadline) {
          report_error(sink, kEpErrTimeout, kPhaseNotify, -1, 0);
          ok = false;
          break;
        }
      }
    }
  }
  __syncthreads();
  return ok;
}

// Block b takes a contiguous share of the tokens. Phase 1 counts, per block,
// the rows for each destination and (into the scratch) the rows per expert;
// after a grid barrier, phase 2 places every token in each destination's list
// (an exclusive scan over the token order) from the counts of the blocks
// before. Block 0 then publishes the counts and waits for every peer's.
__global__ void __launch_bounds__(kNotifyThreads, 1) notify_kernel(NotifyArgs a) {
  extern __shared__ int expertCount[];  // [numExperts]: this block's, then (block 0) everyone's
  __shared__ int warpTotals[kNotifyWarps][kMaxRanks];
  __shared__ int running[kMaxRanks];
  __shared__ int total[kMaxRanks];
  __shared__ uint32_t seq;
  __shared__ Refusal refusal;
  const int tid = threadIdx.x, lane = tid % kWarpSize, warp = tid / kWarpSize;
  const int R = a.numRanks, me = a.rank;
  const int expertsPerRank = a.numExperts / R;
  uint8_t* mine = a.peers.ptr[me];
  NormalControl* ctrl = control_of(mine);
  NotifyScratch* scratch = a.scratch;
  const uint64_t deadline = global_timer_ns() + a.timeoutNs;
  const int per = (a.numTokens + gridDim.x - 1) / gridDim.x;
  const int first = min(a.numTokens, static_cast<int>(blockIdx.x) * per), end = min(a.numTokens, first + per);

  if (tid == 0) {
    seq = local_of(mine)->normalSeq + 1;
    refusal.peer = -1;
  }
  if (tid < kMaxRanks) running[tid] = total[tid] = 0;
  if (!a.cached) {
    for (int e = tid; e < a.numExperts; e += kNotifyThreads) expertCount[e] = 0;
  }
  __syncthreads();

  if (!a.cached) {
    // 1. Count.
    for (int base = first; base < end; base += kNotifyThreads) {
      const int t = base + tid;
      const int mask = t < end ? token_rank_mask(a, t, expertCount, expertsPerRank) : 0;
      for (int r = 0; r < R; ++r) {
        const unsigned bits = __ballot_sync(0xffffffffu, (mask >> r) & 1);
        if (lane == 0 && bits) atomicAdd(&running[r], __popc(bits));
      }
    }
    __syncthreads();
    if (gridDim.x > 1) {
      for (int e = tid; e < a.numExperts; e += kNotifyThreads) {
        if (expertCount[e]) atomicAdd(&scratch->expertCount[e], expertCount[e]);
      }
      if (tid < R) scratch->blockRows[blockIdx.x][tid] = running[tid];
      const bool ok = notify_grid_barrier(scratch, deadline, a.status);
      // After a timeout only block 0 goes on (with no counts), so that its
      // error still reaches the peers and stops them early.
      if (!ok && blockIdx.x != 0) return;  // block-uniform
      if (ok && tid < R) {
        int before = 0, all = 0;
        for (int b = 0; b < static_cast<int>(gridDim.x); ++b) {
          const int n = ld_volatile(&scratch->blockRows[b][tid]);
          before += b < static_cast<int>(blockIdx.x) ? n : 0;
          all += n;
        }
        running[tid] = before;
        total[tid] = all;
      }
    } else if (tid < R) {
      // One block (a layout, or a few tokens) has every count itself and
      // leaves the scratch alone: a layout may run beside a dispatch.
      total[tid] = running[tid];
      running[tid] = 0;
    }
    __syncthreads();
    // 2. Positions.
    for (int base = first; base < end; base += kNotifyThreads) {
      const int t = base + tid;
      const int mask = t < end ? token_rank_mask(a, t, nullptr, expertsPerRank) : 0;
      int before[kMaxRanks];
      for (int r = 0; r < R; ++r) {
        const unsigned bits = __ballot_sync(0xffffffffu, (mask >> r) & 1);
        before[r] = __popc(bits & ((1u << lane) - 1));
        if (lane == 0) warpTotals[warp][r] = __popc(bits);
      }
      __syncthreads();
      if (t < end) {
        for (int r = 0; r < R; ++r) {
          int offset = running[r];
          for (int w = 0; w < warp; ++w) offset += warpTotals[w][r];
          a.sendPos[t * R + r] = (mask >> r) & 1 ? offset + before[r] : -1;
          if (a.isTokenInRank) a.isTokenInRank[t * R + r] = (mask >> r) & 1;
        }
      }
      __syncthreads();
      if (tid < R) {
        for (int w = 0; w < kNotifyWarps; ++w) running[tid] += warpTotals[w][tid];
      }
      __syncthreads();
    }
    if (blockIdx.x != 0) return;
    if (gridDim.x > 1) {
      // Block 0 takes everyone's expert counts and leaves the scratch zeroed.
      for (int e = tid; e < a.numExperts; e += kNotifyThreads) {
        expertCount[e] = ld_volatile(&scratch->expertCount[e]);
        scratch->expertCount[e] = 0;
      }
    }
    if (tid < R) running[tid] = total[tid];
    __syncthreads();
    if (a.numTokensPerRank && tid < R) a.numTokensPerRank[tid] = running[tid];
    if (a.numTokensPerExpert) {
      for (int e = tid; e < a.numExperts; e += kNotifyThreads) a.numTokensPerExpert[e] = expertCount[e];
    }
    if (tid < R && a.meta) a.meta->sentRows[tid] = running[tid];
  }
  if (a.layoutOnly) return;

  // A peer reads what our previous notify wrote into its control (counts,
  // signature, flag) only once every rank has published: we write over it
  // only after the peer said it has read it (notifyAck). Otherwise a peer one
  // dispatch behind, still waiting for a third rank, could read our next
  // counts as the previous ones.
  if (tid < R) wait_seq_reached(&ctrl->notifyAck[tid], seq - 1, deadline, a.status, kPhaseNotify, tid);
  // Publish: reset our arrival counter first, so that no sender can add to it
  // before it is zero (they wait for our flag below).
  if (tid == 0) {
    ctrl->dispatchArrived = 0;
    __threadfence_system();
  }
  __syncthreads();
  // A call our host refused (localError) publishes no counts (cached is set):
  // only its failure, so that every rank stops this call.
  const bool refused = a.localError != 0;
  if (!a.cached) {
    for (int i = tid; i < R * R; i += kNotifyThreads) {
      const int dst = i / R, col = i % R;
      control_of(a.peers.ptr[dst])->notifyRows[me][col] = running[col];
    }
    for (int i = tid; i < R * expertsPerRank; i += kNotifyThreads) {
      const int dst = i / expertsPerRank, j = i % expertsPerRank;
      control_of(a.peers.ptr[dst])->notifyExpertRows[me][j] = expertCount[dst * expertsPerRank + j];
    }
  }
  if (tid < R) {
    NormalControl* peer = control_of(a.peers.ptr[tid]);
    peer->notifySignature[me] = a.signature;
    peer->notifyError[me] = refused ? a.localError : error_code(a.status);
    peer->notifyCall[me] = a.call;
    peer->notifyWorst[me] = a.numWorstTokens;
  }
  __syncthreads();
  if (tid < R) {
    __threadfence_system();
    st_release_sys(&control_of(a.peers.ptr[tid])->notifySeq[me], seq);
  }
  if (tid < R) wait_flag_eq(&ctrl->notifySeq[tid], seq, deadline, a.status, kPhaseNotify, tid);
  __syncthreads();
  // Every rank stops before the data phase on any rank's failure: one its
  // host raised stops this call only (refusal), any other ends the buffer.
  // A refused call only takes part: it judges nothing.
  if (!refused && tid < R) {
    const int err = ld_volatile(&ctrl->notifyError[tid]);
    const int32_t call = ld_volatile(&ctrl->notifyCall[tid]);
    if (call != a.call) report_error(a.status, kEpErrProtocol, kPhaseNotify, tid, call);
    else if (is_local_failure(err)) note_refusal(&refusal, tid, err);
    else if (err != 0 && tid != me) report_error(a.status, kEpErrPeerFailed, kPhaseNotify, tid, err);
    else if (ld_volatile(&ctrl->notifySignature[tid]) != a.signature) {
      report_error(a.status, kEpErrShapeMismatch, kPhaseNotify, tid, ld_volatile(&ctrl->notifySignature[tid]));
    }
  }
  __syncthreads();
  const bool go = !refused && refusal.peer < 0 && !has_error(a.status);
  // Every rank has every rank's counts: each finds an overflow of any rank's
  // numWorstTokens, and all stop, naming that rank, before any row moves.
  if (go && !a.cached && tid < R) {
    const int worst = ld_volatile(&ctrl->notifyWorst[tid]);
    int rows = 0;
    for (int src = 0; src < R; ++src) rows += ld_volatile(&ctrl->notifyRows[src][tid]);
    if (worst > 0 && rows > worst) report_error(a.status, kEpErrWorstTokens, kPhaseNotify, tid, rows);
  }
  __syncthreads();

  if (go && !a.cached && tid == 0 && !has_error(a.status)) {
    int recv = 0;
    for (int s = 0; s < R; ++s) {
      a.meta->recvBase[s] = recv;
      recv += ld_volatile(&ctrl->notifyRows[s][me]);
    }
    a.meta->recvBase[R] = recv;
    a.meta->numRecv = recv;
    for (int d = 0; d < R; ++d) {
      int base = 0;
      for (int s = 0; s < me; ++s) base += ld_volatile(&ctrl->notifyRows[s][d]);
      a.meta->sendBase[d] = base;
    }
    if (a.host) a.host->numRecv = recv;
  }
  if (go && !a.cached && a.host) {
    for (int j = tid; j < expertsPerRank; j += kNotifyThreads) {
      int n = 0;
      for (int s = 0; s < R; ++s) n += ld_volatile(&ctrl->notifyExpertRows[s][j]);
      const int align = a.expertAlignment;
      a.host->perExpert[j] = (n + align - 1) / align * align;
    }
  }
  // The slot's verdict: the data kernel and the combine of this dispatch do
  // nothing after a refusal (on every rank alike), and the host reports it.
  if (tid == 0 && a.slot >= 0) {
    const EpStatus verdict = call_verdict(kPhaseNotify, refusal.peer, refusal.peer < 0 ? 0 : refusal.failure);
    local_of(mine)->dispatchAbort[a.slot] = verdict;
    if (a.outcome) *a.outcome = verdict;
  }
  // Everything the peers wrote for this notify has been read: they may write the next.
  __syncthreads();
  if (tid < R) {
    __threadfence_system();
    st_release_sys(&control_of(a.peers.ptr[tid])->notifyAck[me], seq);
  }
  if (tid == 0) local_of(mine)->normalSeq = seq;
}

// --------------------------------------------------------------------------

constexpr int kDispatchThreads = 512;
constexpr int kDispatchWarps = kDispatchThreads / kWarpSize;
// 16-byte vectors each lane keeps in flight per step: enough outstanding
// loads per SM to cover HBM latency with a couple of dozen SMs.
constexpr int kDispatchUnroll = 4;

// One warp per token: the row is read once and written to every destination
// rank's slot, then the lanes write its scales, local top-k ids, weights and
// source index in parallel. The last block to finish waits for this rank's
// incoming rows.
__global__ void __launch_bounds__(kDispatchThreads, 1) dispatch_kernel(DispatchArgs a) {
  __shared__ int rowsTo[kMaxRanks];
  __shared__ bool last;
  const int tid = threadIdx.x, lane = tid % kWarpSize, warp = tid / kWarpSize;
  const int R = a.numRanks, me = a.rank;
  const uint64_t deadline = global_timer_ns() + a.timeoutNs;
  // The notify failed: every rank skips the data phase.
  if (has_error(a.status) || local_of(a.peers.ptr[me])->dispatchAbort[a.slot].code != 0) return;

  const int rowBytes = a.hidden * a.elemBytes;
  const int vecs = rowBytes / 16;
  const int scaleCols = a.hasScales ? a.hidden / kScaleBlock : 0;
  const bool scaleVectors = scaleCols % 4 == 0;
  const int idxBytes = a.idx64 ? 8 : 4;
  const uint64_t slotOffset = a.regions.slab0 + static_cast<uint64_t>(a.slot) * a.regions.slabStride;
  const RoutingMeta& meta = *a.meta;
  if (tid < kMaxRanks) rowsTo[tid] = 0;
  __syncthreads();

  for (int t = blockIdx.x * kDispatchWarps + warp; t < a.numTokens; t += gridDim.x * kDispatchWarps) {
    // Lane r holds the token's row on rank r (-1: not sent there).
    int row = -1;
    if (lane < R) {
      const int p = a.sendPos[t * R + lane];
      row = p < 0 ? -1 : meta.sendBase[lane] + p;
    }
    const unsigned mask = __ballot_sync(0xffffffffu, row >= 0);
    uint8_t* slot[kMaxRanks];
    int rows[kMaxRanks];
#pragma unroll
    for (int r = 0; r < kMaxRanks; ++r) {
      rows[r] = __shfl_sync(0xffffffffu, row, r);
      slot[r] = r < R ? a.peers.ptr[r] + slotOffset : nullptr;
    }

    const int4* src = reinterpret_cast<const int4*>(a.x + static_cast<size_t>(t) * rowBytes);
    for (int v = lane; v < vecs; v += kWarpSize * kDispatchUnroll) {
      int4 buf[kDispatchUnroll];
#pragma unroll
      for (int u = 0; u < kDispatchUnroll; ++u) {
        if (v + u * kWarpSize < vecs) buf[u] = ld_nc_v4(src + v + u * kWarpSize);
      }
#pragma unroll
      for (int r = 0; r < kMaxRanks; ++r) {
        if (!((mask >> r) & 1)) continue;
        int4* dst = reinterpret_cast<int4*>(slot[r] + a.regions.slabX + static_cast<size_t>(rows[r]) * rowBytes);
#pragma unroll
        for (int u = 0; u < kDispatchUnroll; ++u) {
          if (v + u * kWarpSize < vecs) st_na_v4(dst + v + u * kWarpSize, buf[u]);
        }
      }
    }

    // Per-row metadata, spread over the lanes.
    const float* scaleSrc = a.xScales + static_cast<size_t>(t) * scaleCols;
    const int64_t e = lane < a.topk ? load_idx(a.topkIdx, a.idx64, t * a.topk + lane) : -1;
    const float w = lane < a.topk ? a.topkWeights[t * a.topk + lane] : 0.0f;
#pragma unroll
    for (int r = 0; r < kMaxRanks; ++r) {
      if (!((mask >> r) & 1)) continue;
      const size_t dr = static_cast<size_t>(rows[r]);
      float* scaleDst = reinterpret_cast<float*>(slot[r] + a.regions.slabScales) + dr * scaleCols;
      if (scaleVectors) {
        for (int c = lane; c < scaleCols / 4; c += kWarpSize) {
          reinterpret_cast<float4*>(scaleDst)[c] = reinterpret_cast<const float4*>(scaleSrc)[c];
        }
      } else {
        for (int c = lane; c < scaleCols; c += kWarpSize) scaleDst[c] = scaleSrc[c];
      }
      if (lane < a.topk) {
        const int lo = r * a.numLocalExperts;
        const bool local = e >= lo && e < lo + a.numLocalExperts;
        const int64_t le = local ? e - lo : -1;
        uint8_t* idxDst = slot[r] + a.regions.slabTopkIdx + (dr * a.topk + lane) * idxBytes;
        if (a.idx64) *reinterpret_cast<int64_t*>(idxDst) = le;
        else *reinterpret_cast<int32_t*>(idxDst) = static_cast<int32_t>(le);
        reinterpret_cast<float*>(slot[r] + a.regions.slabTopkWeights)[dr * a.topk + lane] = local ? w : 0.0f;
      }
      if (lane == 0) {
        reinterpret_cast<int32_t*>(slot[r] + a.regions.slabSrcIdx)[dr] = t;
        atomicAdd(&rowsTo[r], 1);
      }
    }
  }

  // Padding rows of a numWorstTokens dispatch: no expert, zero weight.
  if (a.numWorstTokens > 0 && a.topk > 0) {
    uint8_t* slot = a.peers.ptr[me] + slotOffset;
    const int begin = meta.numRecv * a.topk, end = a.numWorstTokens * a.topk;
    for (int i = begin + blockIdx.x * kDispatchThreads + tid; i < end; i += gridDim.x * kDispatchThreads) {
      uint8_t* idxDst = slot + a.regions.slabTopkIdx + static_cast<size_t>(i) * idxBytes;
      if (a.idx64) *reinterpret_cast<int64_t*>(idxDst) = -1;
      else *reinterpret_cast<int32_t*>(idxDst) = -1;
      reinterpret_cast<float*>(slot + a.regions.slabTopkWeights)[i] = 0.0f;
    }
  }

  // Publish this block's rows, then let the last block wait for all arrivals.
  __syncthreads();
  if (tid < R && rowsTo[tid] > 0) {
    __threadfence_system();
    red_add_release_sys(&control_of(a.peers.ptr[tid])->dispatchArrived, static_cast<uint64_t>(rowsTo[tid]));
  }
  __syncthreads();
  if (tid == 0) {
    __threadfence();
    uint32_t* fin = &local_of(a.peers.ptr[me])->finished[kFinishDispatch];
    last = atomicAdd(fin, 1) == gridDim.x - 1;
    if (last) *fin = 0;
  }
  __syncthreads();
  if (last && tid == 0) {
    wait_counter_ge(&control_of(a.peers.ptr[me])->dispatchArrived, static_cast<uint64_t>(meta.numRecv), deadline,
                    a.status, kPhaseDispatchData, -1);
  }
}

}  // namespace

cudaError_t LaunchNotify(const NotifyArgs& a, cudaStream_t stream) {
  const size_t smem = a.cached ? 0 : static_cast<size_t>(a.numExperts) * sizeof(int);
  if (smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(notify_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(smem));
    if (e != cudaSuccess) return e;
  }
  // One block per kNotifyThreads tokens, up to kMaxNotifyBlocks and one per
  // SM (a block fills an SM's registers), all resident at once since they
  // meet at a grid barrier. A layout gets one block: it may run on another
  // stream beside a dispatch, and only one notify at a time may use the scratch.
  int device = 0, sms = 1;
  if (cudaError_t e = cudaGetDevice(&device); e != cudaSuccess) return e;
  if (cudaError_t e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device); e != cudaSuccess) return e;
  const int wanted = (a.numTokens + kNotifyThreads - 1) / kNotifyThreads;
  const int blocks = a.cached || a.layoutOnly ? 1 : max(1, min(min(kMaxNotifyBlocks, sms), wanted));
  NotifyArgs copy = a;
  void* params[] = {&copy};
  return cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(notify_kernel), dim3(blocks), dim3(kNotifyThreads),
                                     params, smem, stream);
}

cudaError_t LaunchDispatch(const DispatchArgs& a, int numSms, cudaStream_t stream) {
  dispatch_kernel<<<numSms, kDispatchThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace wideep::ep
