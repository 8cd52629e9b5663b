// Layout of the registered (IPC-mapped) EP buffer and the argument structs of
// the EP kernels. Shared by host code and kernels; offsets are computed in
// TypeScript (src/ep/cuda/buffer-layout.ts) and are identical on every rank.
#pragma once

#include <cstdint>

#include "ep/ep_status.h"

namespace wideep::ep {

constexpr int kMaxRanks = 8;             // one NVLink domain
constexpr int kMaxLocalExperts = 1024;
constexpr int kMaxTopk = 16;
constexpr int kMaxSlots = 64;            // normal-mode receive slots
constexpr int kScaleBlock = 128;         // channels per fp8 scale
constexpr int kControlBytes = 64 * 1024; // reserved for NormalControl + LowLatencyControl[2] + LocalState

// Written by peers into this rank's buffer during normal mode.
struct NormalControl {
  uint32_t notifySeq[kMaxRanks];                 // [src]: src published this dispatch's counts
  uint32_t notifyAck[kMaxRanks];                 // [src]: src has read what this rank's notify of that seq wrote
  uint32_t combineSeq[kMaxRanks];                // [src]: src entered this combine
  int32_t combineSignature[2][kMaxRanks];        // [seq & 1][src]: hidden and top-k of src's combine
  int32_t combineCall[2][kMaxRanks];             // [seq & 1][src]: the call number of src's combine
  int32_t notifyRows[kMaxRanks][kMaxRanks];      // [src][dst]: rows src sends to dst
  int32_t notifySignature[kMaxRanks];            // [src]: hidden/topk/dtype of src's call, must match ours
  int32_t notifyError[kMaxRanks];                // [src]: src's own error code for this call (0 = none)
  int32_t notifyCall[kMaxRanks];                 // [src]: the call number of src's dispatch, must match ours
  int32_t notifyWorst[kMaxRanks];                // [src]: src's numWorstTokens (0 = off)
  uint64_t dispatchArrived;                      // rows received by this dispatch
  int32_t notifyExpertRows[kMaxRanks][kMaxLocalExperts];  // [src][local expert]
};

// Written by peers into one half of the low-latency area.
// A source's sending blocks each add their share of kLlArrivalUnit to its
// arrival count here once their rows are out; a call is complete when the
// count reaches seq * kLlArrivalUnit (low_latency_common.cuh).
constexpr int kLlArrivalShift = 20;
constexpr uint64_t kLlArrivalUnit = 1ull << kLlArrivalShift;

struct LowLatencyControl {
  uint64_t dispatchArrived[kMaxRanks];  // [src]: shares of src's dispatch blocks that finished sending
  uint64_t combineArrived[kMaxRanks];   // [src]: shares of src's combine blocks that finished sending
  uint32_t weightsFlag[kMaxRanks];      // [src]: src published this combine's top-k ids and weights
  int32_t srcTokens[kMaxRanks];      // [src]: tokens src dispatched
  int32_t srcSignature[kMaxRanks];   // [src]: hidden, top-k and fp8 of src's dispatch, must match ours
  int32_t srcError[kMaxRanks];       // [src]: src's host refused this dispatch (its failure, 0 = none)
  int32_t srcCall[kMaxRanks];        // [src]: the call number of src's dispatch, must match ours
  int32_t combineError[kMaxRanks];   // [src]: src's host refused this combine (its failure, 0 = none)
  int32_t combineCall[kMaxRanks];    // [src]: the call number of src's combine, must match ours
};

// Only this rank touches it.
struct LocalState {
  EpStatus status;  // first error; the buffer is unusable once it is set
  uint32_t normalSeq;
  uint32_t combineSeq;
  uint32_t llDispatchSeq[2];
  uint32_t llCombineSeq[2];
  uint32_t finished[8];  // per-kernel block counters (last block to finish, or to start, acts)
  uint32_t combineNextToken;  // the normal combine's next token to reduce
  int32_t llBadEntry[2];      // a low-latency dispatch's top-k id outside [-1, E): token + 1 (0: none), id
  // Why the last dispatch into each slot (normal) or half (low-latency), or the
  // last combine of each half, failed on every rank (code 0: it did not). A
  // combine of a failed dispatch does nothing, on every rank alike.
  EpStatus dispatchAbort[kMaxSlots];
  EpStatus llDispatchAbort[2];
  EpStatus llCombineAbort[2];
};

enum FinishCounter : int {
  kFinishDispatch = 0,
  kFinishCombine = 1,
  // Low-latency, + half: blocks that read the half's sequence number. One per
  // half, as the halves' kernels may run at once on different streams.
  kArriveLlDispatch = 2,
  kArriveLlCombine = 4,
};

constexpr uint64_t kNormalControlOffset = 0;
constexpr uint64_t kLowLatencyControlOffset = 48 * 1024;  // LowLatencyControl[2]
constexpr uint64_t kLocalStateOffset = 60 * 1024;
static_assert(sizeof(NormalControl) <= kLowLatencyControlOffset, "NormalControl overflows its region");
static_assert(kLowLatencyControlOffset + 2 * sizeof(LowLatencyControl) <= kLocalStateOffset, "LL control overflow");
static_assert(kLocalStateOffset + sizeof(LocalState) <= kControlBytes, "LocalState overflow");

// Base address of every rank's registered buffer, as mapped in this process.
struct PeerBases {
  uint8_t* ptr[kMaxRanks];
};

// Normal-mode regions (byte offsets from a buffer base).
struct NormalRegions {
  uint64_t slab0;        // receive slot s starts at slab0 + s * slabStride
  uint64_t slabStride;
  uint64_t slabX;        // offsets inside a slot: rows, scales, topk ids, weights, source token ids
  uint64_t slabScales;
  uint64_t slabTopkIdx;
  uint64_t slabTopkWeights;
  uint64_t slabSrcIdx;
  uint64_t combineX;     // [R][maxTokens][H] bf16 rows returned by each rank
  uint64_t combineWeights;  // [R][maxTokens][k] f32
  uint64_t combineFlags;    // [R][maxTokens] u32: combine sequence number once row (r, token) has landed
};

// Per-dispatch routing, in device memory owned by the handle.
struct RoutingMeta {
  int32_t numRecv;                   // rows this rank received
  int32_t sendBase[kMaxRanks];       // where this rank's rows start in each destination's slot
  int32_t recvBase[kMaxRanks + 1];   // where each source's rows start in this rank's slot
  int32_t sentRows[kMaxRanks];       // rows this rank sent to each destination
};

// This rank's working memory for the notify kernel's blocks (zeroed with the
// buffer; every notify leaves it zeroed again, apart from the barrier count).
constexpr int kMaxNotifyBlocks = 32;
struct NotifyScratch {
  uint32_t arrived;                               // grid barrier: blocks that arrived
  uint32_t generation;                            // grid barrier: barriers completed
  int32_t blockRows[kMaxNotifyBlocks][kMaxRanks]; // [block][dst]: rows the block's tokens send to dst
  int32_t expertCount[1];                         // [numExperts]: distinct (token, expert) pairs
};
// src/ep/cuda/buffer-layout.ts sizes the region from these figures, plus 4 bytes per expert.
static_assert(sizeof(NotifyScratch) == 8 + kMaxNotifyBlocks * kMaxRanks * 4 + 4, "layout.ts notifyScratchBytes");

// Counts the host reads (pinned, mapped) after the notify kernel.
struct HostCounts {
  int32_t numRecv;
  int32_t perExpert[kMaxLocalExperts];  // aligned
};

// Each call's verdict (pinned, mapped): written by the call's kernels (a
// code of 0 when it went through), read by the host once the call's event
// completed (src/ep/cuda/backend.ts). One record per slot or half and kind,
// as the events are.
struct HostCalls {
  EpStatus dispatch[kMaxSlots];
  EpStatus combine[kMaxSlots];
  EpStatus llDispatch[2];
  EpStatus llCombine[2];
};

// Shape of one call, exchanged so that ranks that disagree fail loudly: by the
// notify (computed by the host, src/ep/cuda/backend.ts), the normal combine
// and the low-latency dispatch (computed by the kernels: constexpr serves both).
// Never negative, for sane sizes: the normal combine sends a negated error code instead.
constexpr int32_t CallSignature(int hidden, int topk, int elemBytes, int hasScales) {
  return (hidden << 8) ^ (topk << 3) ^ (elemBytes << 1) ^ hasScales;
}

struct NotifyArgs {
  PeerBases peers;
  int rank;
  int numRanks;
  int numTokens;
  int topk;
  int numExperts;
  int expertAlignment;
  int numWorstTokens;  // 0 = off
  int cached;          // 1: routing known, only synchronise
  int layoutOnly;      // 1: compute the layout outputs and positions, no exchange
  int32_t signature;
  int32_t call;         // the call's number (src/ep/calls.ts), compared with every peer's
  int localError;       // kLocalFailureBase + ...: this rank's host refused the call; it only takes part
  int slot;             // the receive slot, -1 for none (a layout, or a refused call)
  uint64_t timeoutNs;
  const void* topkIdx;  // [T][k], i32 or i64
  int idx64;
  int32_t* sendPos;     // [T][R] out: position of the token in each destination's list, -1 if not sent
  int32_t* numTokensPerRank;    // optional layout outputs
  int32_t* numTokensPerExpert;
  uint8_t* isTokenInRank;
  RoutingMeta* meta;
  HostCounts* host;     // null for a cached dispatch or numWorstTokens
  NotifyScratch* scratch;
  EpStatus* outcome;    // this dispatch's HostCalls record, or null
  ErrorSink status;
};

struct DispatchArgs {
  PeerBases peers;
  NormalRegions regions;
  int rank;
  int numRanks;
  int slot;
  int numTokens;
  int hidden;
  int elemBytes;         // 2 (bf16) or 1 (fp8)
  int hasScales;
  int topk;              // 0 for a cached dispatch (no top-k outputs)
  int idx64;
  int numLocalExperts;
  int numWorstTokens;
  uint64_t timeoutNs;
  const uint8_t* x;
  const float* xScales;
  const void* topkIdx;
  const float* topkWeights;
  const int32_t* sendPos;
  const RoutingMeta* meta;
  ErrorSink status;
};

struct CombineArgs {
  PeerBases peers;
  NormalRegions regions;
  int rank;
  int numRanks;
  int slot;
  int numTokens;   // T of this rank (origin side)
  int maxTokens;   // row capacity per source of the combine receive area
  int numRows;     // rows of x (N or numWorstTokens)
  int hidden;
  int topk;        // 0: no weights to reduce
  int sendBlocks;  // blocks that send (the rest reduce); set at launch
  int32_t call;    // the number of the dispatch it combines
  int localError;  // as in NotifyArgs: this rank only takes part
  uint64_t timeoutNs;
  const uint16_t* x;          // [numRows][H] bf16
  const float* topkWeights;   // [numRows][k]
  const uint16_t* bias0;      // [T][H] or null
  const uint16_t* bias1;
  uint16_t* out;              // [T][H]
  float* outWeights;          // [T][k]
  const int32_t* sendPos;
  const RoutingMeta* meta;
  EpStatus* outcome;          // this combine's HostCalls record, or null
  ErrorSink status;
};

}  // namespace wideep::ep

namespace wideep::ep {

// One half of the low-latency area (byte offsets from a buffer base).
struct LowLatencyRegions {
  uint64_t staging;      // [R][M] rows as sent (fp8 row + scales, or bf16 row), stagingStride bytes each
  uint64_t stagingStride;
  uint64_t srcTopk;      // [R][M][maxTopk] i32: every source's top-k ids
  uint64_t srcRank;      // [R][M][maxTopk] i32: a token's rank among its source's tokens naming the column's expert
  uint64_t srcCount;     // [R][L] i32: each source's tokens per local expert
  uint64_t recvX;        // [L][R*M][H] packed expert-major rows
  uint64_t recvScales;   // [L][R*M][H/128] f32
  uint64_t srcInfo;      // [L][R*M] i32
  uint64_t layoutRange;  // [L][R][2] i32
  uint64_t recvCount;    // [L] i32
  uint64_t combineIn;    // [R][M][maxTopk] {i32 id, f32 weight}: every source's combine top-k
  uint64_t slotOf;       // [R][M][maxTopk] i32: slot in its expert of (source, token, first column naming it)
  uint64_t combineRecv;  // [M][maxTopk][H] bf16: per token, one partial per owner rank (ascending)
};

struct LowLatencyArgs {
  PeerBases peers;
  LowLatencyRegions regions;
  int rank;
  int numRanks;
  int half;            // 0 or 1
  int numTokens;       // T of this rank
  int maxTokens;       // M
  int hidden;
  int topk;
  int maxTopk;
  int numExperts;
  int numLocalExperts;
  int useFp8;
  int roundScale;
  int idx64;
  int32_t call;        // the dispatch's number (a combine's: its dispatch's)
  int localError;      // as in NotifyArgs: this rank only takes part
  uint64_t timeoutNs;
  const uint16_t* x;          // dispatch: [T][H] bf16
  const void* topkIdx;        // [T][k]
  const float* topkWeights;   // combine: [T][k]
  const uint16_t* y;          // combine: [L][R*M][H] bf16
  uint16_t* out;              // combine: [T][H] bf16
  int32_t* cumulativeStats;   // dispatch: [L] or null
  EpStatus* outcome;          // the call's HostCalls record, or null
  ErrorSink status;
};

}  // namespace wideep::ep
