// The error record EP kernels write into host-mapped memory, so that a dead
// peer or a bad input becomes a JS error instead of a hang or silent garbage.
#pragma once

namespace wideep::ep {

enum EpErrorCode : int {
  kEpOk = 0,
  kEpErrTimeout = 1,         // a peer never arrived (peer = its rank)
  kEpErrBadExpert = 2,       // a top-k index outside [-1, numExperts) (value = index, peer = token)
  kEpErrWorstTokens = 3,     // more rows arrived than numWorstTokens (value = rows)
  kEpErrShapeMismatch = 4,   // a peer called with another hidden/topk/dtype (peer = its rank)
  kEpErrPeerFailed = 5,      // a peer reported an error of its own (peer = its rank, value = its code)
  kEpErrProtocol = 6,        // a peer is in another call of the buffer (peer = its rank, value = its call number)
};

// A call that a rank's host refused before it communicated (a bad argument,
// no free slot) still runs a small kernel that says so, with kLocalFailureBase
// + the error's index (src/ep/calls.ts) where its peers expect its signature.
// Every rank then fails that call alone, with kEpErrPeerFailed and that value,
// and nothing moves: such an error is kept per call (HostCalls in ep_params.h),
// not in the buffer's status, and the buffer stays usable. Every other error
// stays in the status and ends the buffer.
constexpr int kLocalFailureBase = 100;

enum EpPhase : int {
  kPhaseNotify = 1,
  kPhaseDispatchData = 2,
  kPhaseCombine = 3,
  kPhaseLowLatencyDispatch = 4,
  kPhaseLowLatencyCombine = 5,
  kPhaseLayout = 6,
};

struct EpStatus {
  int code;
  int phase;
  int peer;
  int value;
};

// Where kernels report errors: a device copy they poll, a host-mapped mirror the host reads.
struct ErrorSink {
  EpStatus* dev;
  EpStatus* host;
};

}  // namespace wideep::ep
