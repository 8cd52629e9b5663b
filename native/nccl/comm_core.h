// The state of one NCCL communicator, shared by the JS object, worker threads
// and a watchdog thread. The watchdog aborts the communicator when NCCL reports
// an asynchronous error or an operation runs past the timeout (a dead peer).
//
// Two NCCL communicators over the same ranks back it: a nonblocking "control"
// one, whose init and splits are bounded by the timeout, and a blocking one
// split from it for the operations, since NCCL enqueues on a nonblocking
// communicator through a helper thread per call, which costs about 140 us per
// operation. A blocking call can only stall on a peer that is alive but not
// taking part (a dead peer's sockets close, and NCCL returns an error); such a
// call is aborted from the watchdog once it passes the timeout, a last resort
// that NCCL does not promise to survive.
#pragma once

#include <cuda_runtime_api.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "common/errors.h"
#include "nccl/nccl_api.h"

namespace wideep::nccl {

// The state of a communicator's last nonblocking call (ncclCommGetAsyncError),
// or the failure to ask for it.
Result AsyncState(const Api* api, Comm comm);

class CommCore {
 public:
  using Clock = std::chrono::steady_clock;

  CommCore(const Api* api, Comm control, Comm ops, int device, int64_t timeoutMs);
  ~CommCore();
  CommCore(const CommCore&) = delete;
  CommCore& operator=(const CommCore&) = delete;

  // Issues NCCL calls for one operation on `stream`, under the lock, and
  // tracks the operation for the watchdog. Returns a Failure instead of throwing.
  Failure Enqueue(const char* what, cudaStream_t stream, const std::function<Result(Comm)>& issue);

  // The outcome of an operation's NCCL calls. The blocking communicator gives
  // final results; should NCCL still answer ncclInProgress, it is polled to
  // the end, bounded by the timeout.
  Failure Complete(Result r, const char* what);

  // Aborts (idempotent) and records `why` as the error every later call reports.
  void Abort(const Failure& why);

  // The recorded failure, or ok() while healthy.
  Failure Status();
  // Status() after asking NCCL for an asynchronous error and checking the
  // operations that finished (either can abort).
  Failure Poll();

  // For a split: runs `fn` with the control communicator while no operation is issued.
  Failure WithComm(const std::function<Failure(Comm)>& fn);

  const Api* api() const { return api_; }
  int device() const { return device_; }
  int64_t timeoutMs() const { return timeoutMs_; }

 private:
  struct Pending {
    cudaEvent_t start;
    cudaEvent_t end;
    const char* what;
    bool started = false;
    Clock::time_point startedAt;
    Clock::time_point lastSeenRunning;  // the latest look that found it unfinished
  };

  void AbortLocked(const Failure& why);
  void CheckAsyncErrorLocked();
  // Retires finished operations; aborts on a failed or overdue one.
  void ScanPendingLocked();
  // How close to the timeout a finished operation may have run and still count as completed.
  Clock::duration OverdueMargin() const;
  // Called when the watchdog cannot take the lock: aborts an operation
  // whose blocking NCCL call has not returned within the timeout.
  void AbortHungIssue();
  // Enqueue's side of that hand-off: opens and closes the window in which
  // the watchdog may abort; Close returns whether it did.
  void OpenIssueWindow();
  bool CloseIssueWindow();
  void WatchdogLoop();
  cudaEvent_t TakeEventLocked(Failure* f);

  const Api* api_;
  Comm control_;
  Comm comm_;  // the operations' communicator
  int device_;
  int64_t timeoutMs_;

  std::mutex mu_;
  // The watchdog sleeps on its own lock, so that it can still look while an
  // operation's NCCL call holds mu_.
  std::mutex sleepMu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  // Guards the hand-off between a blocking call and the watchdog's abort.
  std::mutex issueMu_;
  Clock::time_point issuingSince_{};
  bool issuing_ = false;
  bool hungAborted_ = false;
  Failure failure_;
  std::deque<Pending> pending_;
  std::vector<cudaEvent_t> freeEvents_;
  std::thread watchdog_;
};

}  // namespace wideep::nccl
