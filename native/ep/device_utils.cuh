// Small device helpers shared by the EP kernels: memory-model primitives for
// cross-GPU signalling over NVLink, bounded spin-waits and vector copies. Each
// name says what it does.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "ep/ep_params.h"
#include "ep/ep_status.h"

namespace wideep::ep {

constexpr int kWarpSize = 32;

// Where a buffer keeps its rank's own state (sequence numbers, finish
// counters) and the normal mode's signals from peers.
__device__ __forceinline__ LocalState* local_of(uint8_t* base) {
  return reinterpret_cast<LocalState*>(base + kLocalStateOffset);
}

__device__ __forceinline__ NormalControl* control_of(uint8_t* base) {
  return reinterpret_cast<NormalControl*>(base + kNormalControlOffset);
}

// ---- memory model ---------------------------------------------------------

__device__ __forceinline__ uint32_t ld_acquire_sys(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ uint64_t ld_acquire_sys(const uint64_t* p) {
  uint64_t v;
  asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ void st_release_sys(uint32_t* p, uint32_t v) {
  asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

__device__ __forceinline__ uint32_t ld_acquire_gpu(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ uint32_t atomic_add_acq_rel_gpu(uint32_t* p, uint32_t v) {
  uint32_t old;
  asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], %2;" : "=r"(old) : "l"(p), "r"(v) : "memory");
  return old;
}

__device__ __forceinline__ int ld_volatile(const int* p) {
  int v;
  asm volatile("ld.volatile.global.s32 %0, [%1];" : "=r"(v) : "l"(p));
  return v;
}

__device__ __forceinline__ void red_add_release_sys(uint64_t* p, uint64_t v) {
  asm volatile("red.release.sys.global.add.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

__device__ __forceinline__ uint64_t global_timer_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// ---- errors and bounded waits ---------------------------------------------

// Records the first error in device memory (cheap to poll) and mirrors it to
// host-mapped memory (for the host to read after the launch).
__device__ __forceinline__ void report_error(const ErrorSink& sink, int code, int phase, int peer, int value) {
  if (atomicCAS(&sink.dev->code, 0, code) == 0) {
    sink.dev->phase = phase;
    sink.dev->peer = peer;
    sink.dev->value = value;
    sink.host->phase = phase;
    sink.host->peer = peer;
    sink.host->value = value;
    __threadfence_system();
    sink.host->code = code;
    __threadfence_system();
  }
}

__device__ __forceinline__ int error_code(const ErrorSink& sink) { return ld_volatile(&sink.dev->code); }
__device__ __forceinline__ bool has_error(const ErrorSink& sink) { return error_code(sink) != 0; }

// A peer's published error that its host raised before the call (ep_status.h):
// it fails this call alone, on every rank.
__device__ __forceinline__ bool is_local_failure(int code) { return code >= kLocalFailureBase; }

// A call's verdict for the host: `code` 0 when the call went through, else
// kEpErrPeerFailed naming the peer that refused it and that peer's failure.
__device__ __forceinline__ EpStatus call_verdict(int phase, int peer, int failure) {
  return failure ? EpStatus{kEpErrPeerFailed, phase, peer, failure} : EpStatus{0, 0, 0, 0};
}

// Keeps the first refusing peer a block's threads find (peer -1: none yet);
// read after a barrier.
struct Refusal {
  int peer;
  int failure;
};

__device__ __forceinline__ void note_refusal(Refusal* r, int peer, int failure) {
  if (atomicCAS(&r->peer, -1, peer) == -1) r->failure = failure;
}

// Spins until done(*word) holds (an acquire load each time). On timeout, or
// when another thread of this rank already failed, records/propagates the
// error (reporting `expected`) and returns false.
template <typename T, typename Done>
__device__ __forceinline__ bool bounded_wait(const T* word, Done done, T expected, uint64_t deadline,
                                             const ErrorSink& sink, int phase, int peer) {
  while (!done(ld_acquire_sys(word))) {
    if (global_timer_ns() > deadline) {
      report_error(sink, kEpErrTimeout, phase, peer, static_cast<int>(expected));
      return false;
    }
    if (has_error(sink)) return false;
  }
  return true;
}

__device__ __forceinline__ bool wait_flag_eq(const uint32_t* flag, uint32_t expected, uint64_t deadline,
                                             const ErrorSink& sink, int phase, int peer) {
  return bounded_wait(flag, [=](uint32_t v) { return v == expected; }, expected, deadline, sink, phase, peer);
}

// Waits until a sequence number has reached `expected` or gone past it (the
// peer may already be in a later round), comparing across wrap-around.
__device__ __forceinline__ bool wait_seq_reached(const uint32_t* seqWord, uint32_t expected, uint64_t deadline,
                                                 const ErrorSink& sink, int phase, int peer) {
  return bounded_wait(seqWord, [=](uint32_t v) { return static_cast<int32_t>(v - expected) >= 0; }, expected,
                      deadline, sink, phase, peer);
}

__device__ __forceinline__ bool wait_counter_ge(const uint64_t* counter, uint64_t expected, uint64_t deadline,
                                                const ErrorSink& sink, int phase, int peer) {
  return bounded_wait(counter, [=](uint64_t v) { return v >= expected; }, expected, deadline, sink, phase, peer);
}

// ---- vector copies ----------------------------------------------------------

// Global loads that bypass L1 (data is streamed once).
__device__ __forceinline__ int4 ld_nc_v4(const int4* p) {
  int4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.s32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// A coherent global load that skips L1: for data other GPUs may still be writing nearby.
__device__ __forceinline__ int4 ld_na_v4(const int4* p) {
  int4 v;
  asm volatile("ld.global.L1::no_allocate.v4.s32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p)
               : "memory");
  return v;
}

__device__ __forceinline__ void st_na_v4(int4* p, const int4& v) {
  asm volatile("st.global.L1::no_allocate.v4.s32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(v.x), "r"(v.y), "r"(v.z),
               "r"(v.w)
               : "memory");
}

// A warp copies `bytes` (a multiple of 16) from src to dst, keeping
// kUnroll 16-byte loads in flight per lane; the last step is predicated, so
// a row's tail does not become one load latency per vector.
template <int kUnroll>
__device__ __forceinline__ void warp_copy(void* dst, const void* src, int bytes, int lane) {
  const int n = bytes >> 4;
  const int4* s = static_cast<const int4*>(src);
  int4* d = static_cast<int4*>(dst);
  for (int i = lane; i < n; i += kUnroll * kWarpSize) {
    int4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (i + u * kWarpSize < n) v[u] = ld_nc_v4(s + i + u * kWarpSize);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (i + u * kWarpSize < n) st_na_v4(d + i + u * kWarpSize, v[u]);
    }
  }
}

// Asks L2 to fetch `bytes` (a multiple of 16, from a 16-byte aligned
// address) and goes on at once: a bulk (TMA) prefetch, one instruction per row.
__device__ __forceinline__ void prefetch_l2(const void* p, uint32_t bytes) {
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
}

// ---- top-k lookups ------------------------------------------------------------

// Index of the first k with topk[k] == expert, or -1.
template <typename IdxT>
__device__ __forceinline__ int first_slot_of(const IdxT* topk, int k, int64_t expert) {
  for (int i = 0; i < k; ++i) {
    if (static_cast<int64_t>(topk[i]) == expert) return i;
  }
  return -1;
}

}  // namespace wideep::ep
