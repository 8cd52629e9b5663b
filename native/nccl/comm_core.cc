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

CommCore::CommCore(const Api* api, Comm comm, int device, int64_t timeoutMs)
    : api_(api), comm_(comm), device_(device), timeoutMs_(timeoutMs) {
  watchdog_ = std::thread([this] { WatchdogLoop(); });
}

CommCore::~CommCore() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (comm_) AbortLocked(Failure{"ERR_CLOSED", "communicator is closed", std::nullopt});
  }
  cv_.notify_all();
  watchdog_.join();
  cudaSetDevice(device_);
  for (auto& p : pending_) {
    freeEvents_.push_back(p.start);
    freeEvents_.push_back(p.end);
  }
  for (cudaEvent_t e : freeEvents_) cudaEventDestroy(e);
}

void CommCore::AbortLocked(const Failure& why) {
  if (failure_.ok()) failure_ = why;
  if (comm_) {
    api_->CommAbort(comm_);
    comm_ = nullptr;
  }
}

void CommCore::Abort(const Failure& why) {
  std::lock_guard<std::mutex> lock(mu_);
  AbortLocked(why);
}

Failure CommCore::Status() {
  std::lock_guard<std::mutex> lock(mu_);
  return failure_;
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
  f = Complete(issue(comm_), what);
  if (!f.ok()) {
    freeEvents_.push_back(p.start);
    freeEvents_.push_back(p.end);
    // A bad argument leaves the communicator usable; anything else does not.
    if (f.status != kInvalidArgument && f.status != kInvalidUsage) AbortLocked(f);
    return f;
  }
  WIDEEP_CUDA_RETURN(cudaEventRecord(p.end, stream));
  pending_.push_back(p);
  cv_.notify_all();
  return {};
}

Failure CommCore::WithComm(const std::function<Failure(Comm)>& fn) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!failure_.ok()) return failure_;
  if (!comm_) return Failure{"ERR_CLOSED", "communicator is closed", std::nullopt};
  Failure f = fn(comm_);
  if (!f.ok() && f.code != "NCCL_INVALID_ARGUMENT" && f.code != "NCCL_INVALID_USAGE") AbortLocked(f);
  return f;
}

void CommCore::WatchdogLoop() {
  cudaSetDevice(device_);
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, kWatchdogPeriod);
    if (stopping_ || !comm_) continue;
    Result async = kSuccess;
    api_->CommGetAsyncError(comm_, &async);
    if (async != kSuccess && async != kInProgress) {
      AbortLocked(MakeFailure(api_, async, comm_, "NCCL asynchronous error"));
      continue;
    }
    auto now = Clock::now();
    while (!pending_.empty()) {
      Pending& p = pending_.front();
      if (!p.started) {
        cudaError_t st = cudaEventQuery(p.start);
        if (st == cudaErrorNotReady) break;  // earlier work on the stream is still running
        p.started = true;
        p.startedAt = now;
      }
      cudaError_t st = cudaEventQuery(p.end);
      if (st == cudaSuccess) {
        freeEvents_.push_back(p.start);
        freeEvents_.push_back(p.end);
        pending_.pop_front();
        continue;
      }
      if (st != cudaErrorNotReady) {
        cudaGetLastError();
        AbortLocked(CudaFailure(st, std::string("NCCL ") + p.what));
      } else if (now - p.startedAt > std::chrono::milliseconds(timeoutMs_)) {
        AbortLocked(Failure{"ERR_TIMEOUT",
                            std::string("NCCL ") + p.what + " ran for more than " + std::to_string(timeoutMs_) +
                                " ms, so a peer is presumably dead; the communicator was aborted",
                            std::nullopt});
      }
      break;
    }
  }
}

}  // namespace wideep::nccl
