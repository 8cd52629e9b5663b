#include "nccl/comm_core.h"

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
  cudaSetDevice(device_);
  for (auto& p : pending_) {
    freeEvents_.push_back(p.start);
    freeEvents_.push_back(p.end);
  }
  for (cudaEvent_t e : freeEvents_) cudaEventDestroy(e);
}

void CommCore::AbortLocked(const Failure& why) {
  if (failure_.ok()) failure_ = why;
  if (comm_ && !hungAborted_.load()) api_->CommAbort(comm_);
  comm_ = nullptr;
  if (control_) api_->CommAbort(control_);
  control_ = nullptr;
}

void CommCore::AbortHungIssue() {
  const int64_t since = issuingSinceNs_.load();
  if (since == 0) return;
  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
  if (now - since < timeoutMs_ * 1000000) return;
  // The stuck call returns once its communicator is aborted; Enqueue then
  // records the failure and leaves that communicator alone.
  if (!hungAborted_.exchange(true)) api_->CommAbort(issuing_.load());
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
  Result async = kSuccess;
  api_->CommGetAsyncError(comm_, &async);
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
    Result async = kSuccess;
    api_->CommGetAsyncError(comm_, &async);
    r = async;
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
  Pending p{TakeEventLocked(&f), nullptr, what, false, {}};
  if (!f.ok()) return f;
  p.end = TakeEventLocked(&f);
  if (!f.ok()) return f;
  WIDEEP_CUDA_RETURN(cudaEventRecord(p.start, stream));
  issuing_.store(comm_);
  issuingSinceNs_.store(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count());
  f = Complete(issue(comm_), what);
  issuingSinceNs_.store(0);
  if (hungAborted_.load()) {
    f = Failure{"ERR_TIMEOUT",
                std::string("NCCL ") + what + " did not return within " + std::to_string(timeoutMs_) +
                    " ms (a peer is presumably dead); the communicator was aborted",
                std::nullopt};
  }
  if (!f.ok()) {
    freeEvents_.push_back(p.start);
    freeEvents_.push_back(p.end);
    // A bad argument leaves the communicator usable; anything else does not.
    if (f.status != kInvalidArgument && f.status != kInvalidUsage) AbortLocked(f);
    return f;
  }
  WIDEEP_CUDA_RETURN(cudaEventRecord(p.end, stream));
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
  while (comm_ && !pending_.empty()) {
    Pending& p = pending_.front();
    if (!p.started) {
      cudaError_t st = cudaEventQuery(p.start);
      if (st == cudaErrorNotReady) return;  // earlier work on the stream is still running
      p.started = true;
      p.startedAt = now;
    }
    cudaError_t st = cudaEventQuery(p.end);
    // A start is seen up to one watchdog period late, so an operation that
    // ends within a period of the limit is counted as having reached it. Such
    // an operation may have been released by a peer's abort rather than have
    // completed: its result cannot be trusted.
    const bool overdue = now - p.startedAt + kWatchdogPeriod > limit;
    if (st == cudaSuccess && !overdue) {
      freeEvents_.push_back(p.start);
      freeEvents_.push_back(p.end);
      pending_.pop_front();
      continue;
    }
    if (st != cudaSuccess && st != cudaErrorNotReady) {
      cudaGetLastError();
      AbortLocked(CudaFailure(st, std::string("NCCL ") + p.what));
    } else if (overdue && (st == cudaSuccess || now - p.startedAt > limit)) {
      AbortLocked(Failure{"ERR_TIMEOUT",
                          std::string("NCCL ") + p.what + " ran for more than " + std::to_string(timeoutMs_) +
                              " ms, so a peer is presumably dead; the communicator was aborted",
                          std::nullopt});
    }
    return;
  }
}

}  // namespace wideep::nccl
