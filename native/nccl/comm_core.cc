#include "nccl/comm_core.h"

#include <algorithm>

#include "cuda/cuda_error.h"
#include "cuda/device_guard.h"
#include "nccl/nccl_error.h"

namespace wideep::nccl {
namespace {

// How often the watchdog looks at the communicator when nothing wakes it.
constexpr auto kWatchdogPeriod = std::chrono::milliseconds(20);
// Polling a nonblocking NCCL call: spin (yielding) this long first, since
// most calls finish within microseconds, then back off to short sleeps.
constexpr auto kSpinFor = std::chrono::microseconds(500);
constexpr auto kPollPause = std::chrono::microseconds(20);

}  // namespace

Result AsyncState(const Api* api, Comm comm) {
  Result state = kInProgress;
  const Result asked = api->CommGetAsyncError(comm, &state);
  return asked == kSuccess ? state : asked;
}

CommCore::CommCore(const Api* api, Comm control, Comm ops, int device, int64_t timeoutMs)
    : api_(api), control_(control), comm_(ops), device_(device), timeoutMs_(timeoutMs) {
  watchdog_ = std::thread([this] { WatchdogLoop(); });
}

CommCore::~CommCore() {
  {
    std::lock_guard<std::mutex> sleep(sleepMu_);
    stopping_ = true;
  }
  cv_.notify_all();
  watchdog_.join();
  std::lock_guard<std::mutex> lock(mu_);
  AbortLocked(Failure{"ERR_CLOSED", "communicator is closed", std::nullopt});
  DeviceGuard guard(device_);
  for (auto& p : pending_) {
    freeEvents_.push_back(p.start);
    freeEvents_.push_back(p.end);
  }
  for (cudaEvent_t e : freeEvents_) cudaEventDestroy(e);
}

void CommCore::AbortLocked(const Failure& why) {
  if (failure_.ok()) failure_ = why;
  bool opsAborted;
  {
    std::lock_guard<std::mutex> issue(issueMu_);
    opsAborted = hungAborted_;
  }
  if (comm_ && !opsAborted) api_->CommAbort(comm_);
  comm_ = nullptr;
  if (control_) api_->CommAbort(control_);
  control_ = nullptr;
}

void CommCore::OpenIssueWindow() {
  std::lock_guard<std::mutex> issue(issueMu_);
  issuing_ = true;
  issuingSince_ = Clock::now();
}

bool CommCore::CloseIssueWindow() {
  std::lock_guard<std::mutex> issue(issueMu_);
  issuing_ = false;
  return hungAborted_;
}

void CommCore::AbortHungIssue() {
  // Holding issueMu_ through the abort: the stuck call, once released,
  // learns in CloseIssueWindow that its communicator is gone.
  std::lock_guard<std::mutex> issue(issueMu_);
  if (!issuing_ || hungAborted_ || Clock::now() - issuingSince_ < std::chrono::milliseconds(timeoutMs_)) return;
  hungAborted_ = true;
  api_->CommAbort(comm_);  // comm_ only changes under mu_, which the stuck Enqueue holds
}

void CommCore::Abort(const Failure& why) {
  std::lock_guard<std::mutex> lock(mu_);
  AbortLocked(why);
}

Failure CommCore::Status() {
  std::lock_guard<std::mutex> lock(mu_);
  return failure_;
}

Failure CommCore::Poll() {
  std::lock_guard<std::mutex> lock(mu_);
  CheckAsyncErrorLocked();
  ScanPendingLocked();
  return failure_;
}

void CommCore::CheckAsyncErrorLocked() {
  if (!comm_) return;
  const Result async = AsyncState(api_, comm_);
  if (async != kSuccess && async != kInProgress) AbortLocked(MakeFailure(api_, async, comm_, "NCCL asynchronous error"));
}

cudaEvent_t CommCore::TakeEventLocked(Failure* f) {
  if (!freeEvents_.empty()) {
    cudaEvent_t e = freeEvents_.back();
    freeEvents_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  *f = CudaFailure(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
  return e;
}

Failure CommCore::Complete(Result r, const char* what) {
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::milliseconds(timeoutMs_);
  while (r == kInProgress) {
    const auto now = Clock::now();
    if (now > deadline) {
      return Failure{"ERR_TIMEOUT",
                     std::string(what) + " did not complete within " + std::to_string(timeoutMs_) +
                         " ms (a peer may be missing)",
                     std::nullopt};
    }
    if (now - start < kSpinFor) std::this_thread::yield();
    else std::this_thread::sleep_for(kPollPause);
    r = AsyncState(api_, comm_);
  }
  return MakeFailure(api_, r, comm_, what);
}

Failure CommCore::Enqueue(const char* what, cudaStream_t stream, const std::function<Result(Comm)>& issue) {
  // The pooled events must belong to the communicator's device, whatever the caller's current device is.
  DeviceGuard guard(device_);
  std::lock_guard<std::mutex> lock(mu_);
  if (!failure_.ok()) return failure_;
  if (!comm_) return Failure{"ERR_CLOSED", "communicator is closed", std::nullopt};
  Failure f;
  Pending p{TakeEventLocked(&f), nullptr, what, false, {}, {}};
  if (!f.ok()) return f;
  p.end = TakeEventLocked(&f);
  if (!f.ok()) {
    freeEvents_.push_back(p.start);
    return f;
  }
  // Every call from here may block behind a stalled peer, so all of them sit
  // inside the window in which the watchdog may abort.
  OpenIssueWindow();
  f = CudaFailure(cudaEventRecord(p.start, stream), "cudaEventRecord");
  const bool issued = f.ok();
  if (issued) f = Complete(issue(comm_), what);
  if (f.ok()) f = CudaFailure(cudaEventRecord(p.end, stream), "cudaEventRecord");
  if (CloseIssueWindow()) {
    f = Failure{"ERR_TIMEOUT",
                std::string("NCCL ") + what + " did not return within " + std::to_string(timeoutMs_) +
                    " ms (a peer is presumably stalled); the communicator was aborted",
                std::nullopt};
  }
  if (!f.ok()) {
    freeEvents_.push_back(p.start);
    freeEvents_.push_back(p.end);
    // A bad argument leaves the communicator usable; anything after the NCCL
    // call was issued (or a failed call) does not.
    const bool harmless = !issued || f.code == "NCCL_INVALID_ARGUMENT" || f.code == "NCCL_INVALID_USAGE";
    if (!harmless) AbortLocked(f);
    return f;
  }
  // No wake-up for the watchdog: its periodic look is soon enough for
  // timeouts of seconds, and waking a thread per operation costs the enqueue.
  pending_.push_back(p);
  return {};
}

Failure CommCore::WithComm(const std::function<Failure(Comm)>& fn) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!failure_.ok()) return failure_;
  if (!control_) return Failure{"ERR_CLOSED", "communicator is closed", std::nullopt};
  Failure f = fn(control_);
  if (!f.ok() && f.code != "NCCL_INVALID_ARGUMENT" && f.code != "NCCL_INVALID_USAGE") AbortLocked(f);
  return f;
}

void CommCore::WatchdogLoop() {
  cudaSetDevice(device_);
  for (;;) {
    {
      std::unique_lock<std::mutex> sleep(sleepMu_);
      if (cv_.wait_for(sleep, kWatchdogPeriod, [this] { return stopping_; })) return;
    }
    std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
    if (!lock.owns_lock()) {
      AbortHungIssue();
      continue;
    }
    CheckAsyncErrorLocked();
    ScanPendingLocked();
  }
}

void CommCore::ScanPendingLocked() {
  const auto now = Clock::now();
  const auto limit = std::chrono::milliseconds(timeoutMs_);
  const auto overdue = [this](const Pending& p) {
    return Failure{"ERR_TIMEOUT",
                   std::string("NCCL ") + p.what + " ran for more than " + std::to_string(timeoutMs_) +
                       " ms, so a peer is presumably dead; the communicator was aborted",
                   std::nullopt};
  };
  while (comm_ && !pending_.empty()) {
    Pending& p = pending_.front();
    if (!p.started) {
      if (cudaEventQuery(p.start) == cudaErrorNotReady) return;  // earlier work on the stream is still running
      p.started = true;
      p.startedAt = p.lastSeenRunning = now;
    }
    const cudaError_t st = cudaEventQuery(p.end);
    if (st == cudaErrorNotReady) {
      p.lastSeenRunning = now;
      if (now - p.startedAt > limit) AbortLocked(overdue(p));
      return;
    }
    if (st != cudaSuccess) {
      cudaGetLastError();
      AbortLocked(CudaFailure(st, std::string("NCCL ") + p.what));
      return;
    }
    // Finished. A peer that hit the limit aborts its communicator, which can
    // release this operation's kernels just before this rank's own limit: an
    // operation seen running within the margin of the limit is counted as
    // having reached it, since its result cannot be trusted. (A heuristic:
    // the times are the watchdog's looks, not the GPU's.)
    const auto ran = p.lastSeenRunning - p.startedAt;
    if (ran > Clock::duration::zero() && ran + OverdueMargin() > limit) {
      AbortLocked(overdue(p));
      return;
    }
    freeEvents_.push_back(p.start);
    freeEvents_.push_back(p.end);
    pending_.pop_front();
  }
}

CommCore::Clock::duration CommCore::OverdueMargin() const {
  return std::max<Clock::duration>(4 * kWatchdogPeriod, std::chrono::milliseconds(timeoutMs_) / 10);
}

}  // namespace wideep::nccl
