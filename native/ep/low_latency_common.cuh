// What the low-latency dispatch and combine kernels share
// (low_latency_dispatch.cu, low_latency_combine.cu): block sizes, where the
// control words live, the per-half sequence numbers and the arrival counts
// that signal a finished send, and the resident (cooperative) launch of a
// fused kernel.
#pragma once

#include <cuda_runtime.h>

#include "ep/device_utils.cuh"
#include "ep/ep_kernels.h"

namespace wideep::ep {
namespace {

constexpr int kSendThreads = 512;
constexpr int kRecvThreads = 512;

// What every rank's low-latency dispatch must agree on: a receiver reads each
// source's rows, scales and top-k ids with its own hidden, fp8 and k.
__device__ __forceinline__ int32_t ll_signature(const LowLatencyArgs& a) {
  return CallSignature(a.hidden, a.topk, a.useFp8 ? 1 : 2, a.useFp8 ? 1 : 0);
}

__device__ __forceinline__ LowLatencyControl* ll_control(uint8_t* base, int half) {
  return reinterpret_cast<LowLatencyControl*>(base + kLowLatencyControlOffset) + half;
}

__device__ __forceinline__ int64_t load_idx(const void* p, int idx64, size_t i) {
  return idx64 ? static_cast<const int64_t*>(p)[i] : static_cast<const int32_t*>(p)[i];
}

// The half's sequence number for this call (of a.half's dispatches or
// combines). Every block reads it at its start and counts itself; the block
// that arrived last stores it back at its end (ll_seq_finish), when all have
// read it. Counting arrivals at the start rather than finishes at the end
// keeps a fence and an atomic round trip off the kernel's tail; `arrival`
// (thread 0's) is only looked at in ll_seq_finish.
struct SeqTicket {
  uint32_t seq;
  uint32_t arrival;
  uint32_t* stored;   // the half's sequence number
  uint32_t* arrived;  // its arrival counter (one per half: the halves' kernels may overlap)
};

__device__ __forceinline__ SeqTicket ll_seq_arrive(const LowLatencyArgs& a, bool combine) {
  LocalState* local = local_of(a.peers.ptr[a.rank]);
  SeqTicket t{0, 0, combine ? &local->llCombineSeq[a.half] : &local->llDispatchSeq[a.half],
              &local->finished[(combine ? kArriveLlCombine : kArriveLlDispatch) + a.half]};
  __shared__ uint32_t seq;
  if (threadIdx.x == 0) {
    seq = ld_acquire_gpu(t.stored) + 1;  // acquire: read before this block counts itself
    t.arrival = atomic_add_acq_rel_gpu(t.arrived, 1u);  // and the last arriver's store after every read
  }
  __syncthreads();
  t.seq = seq;
  return t;
}

__device__ __forceinline__ void ll_seq_finish(const SeqTicket& t) {
  if (threadIdx.x == 0 && t.arrival == gridDim.x - 1) {
    *t.arrived = 0;
    *t.stored = t.seq;
  }
}

// Whether the dispatch this half holds failed on every rank (a peer refused
// it): then no rank combines it, and a combine of it does nothing, on every
// rank alike (no ticket, no signal), its verdict being the dispatch's.
// Block-uniform: call it before any barrier.
__device__ __forceinline__ bool ll_dispatch_failed(const LowLatencyArgs& a) {
  const EpStatus* failed = &local_of(a.peers.ptr[a.rank])->llDispatchAbort[a.half];
  if (failed->code == 0) return false;
  if (blockIdx.x == 0 && threadIdx.x == 0 && a.outcome) *a.outcome = *failed;
  return true;
}

// This block's share of a call's kLlArrivalUnit: the shares of a grid add up to it.
__device__ __forceinline__ uint64_t arrival_share() {
  const uint64_t each = kLlArrivalUnit / gridDim.x;
  return blockIdx.x == 0 ? kLlArrivalUnit - each * (gridDim.x - 1) : each;
}

// Waits until every sending block of source `peer`'s call `seq` added its
// share, and no more: a count past it means this rank's sequence numbers
// drifted from the peer's, which must fail loudly (a timeout), never read
// another call's rows.
__device__ __forceinline__ bool wait_arrivals(const uint64_t* count, uint32_t seq, uint64_t deadline,
                                              const ErrorSink& sink, int phase, int peer) {
  return bounded_wait(
      count,
      [=](uint64_t v) { return static_cast<uint32_t>(v >> kLlArrivalShift) == seq && (v & (kLlArrivalUnit - 1)) == 0; },
      static_cast<uint64_t>(seq), deadline, sink, phase, peer);
}

// A fused kernel's receivers wait for senders of the same launch, so every
// block must be resident at once: a cooperative launch guarantees it (or
// fails) even while other streams' kernels hold some SMs.
inline cudaError_t LaunchResident(void (*kernel)(LowLatencyArgs), const LowLatencyArgs& a, int numSms, cudaStream_t stream) {
  LowLatencyArgs copy = a;
  void* params[] = {&copy};
  return cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(kernel), dim3(numSms), dim3(kSendThreads), params, 0, stream);
}

}  // namespace
}  // namespace wideep::ep
