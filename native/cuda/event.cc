#include "cuda/event.h"

#include "common/args.h"
#include "common/promise_worker.h"
#include "cuda/cuda_error.h"
#include "cuda/device_guard.h"
#include "cuda/stream.h"

namespace wideep {
namespace {

constexpr napi_type_tag kEventTag = {0x7769646565702d65ULL, 0x76656e7400000002ULL};

class EventSyncWorker : public PromiseWorker {
 public:
  EventSyncWorker(Napi::Env env, std::shared_ptr<EventResource> res)
      : PromiseWorker(env, "wideep:event.synchronize"), res_(std::move(res)) {}

 protected:
  Failure Run() override {
    WIDEEP_CUDA_RETURN(cudaSetDevice(res_->device));
    WIDEEP_CUDA_RETURN(cudaEventSynchronize(res_->event));
    return {};
  }

 private:
  std::shared_ptr<EventResource> res_;
};

}  // namespace

EventResource::~EventResource() {
  if (event) {
    DeviceGuard guard(device);
    cudaEventDestroy(event);
  }
}

std::shared_ptr<EventResource> CreateEvent(Napi::Env env, int device, bool timing) {
  auto res = std::make_shared<EventResource>();
  res->device = device;
  res->timing = timing;
  DeviceGuard guard(device);
  WIDEEP_CUDA_THROW(env, cudaSetDevice(device));
  // Blocking sync: a waiting pool thread sleeps instead of spinning a core.
  unsigned flags = cudaEventBlockingSync | (timing ? 0 : cudaEventDisableTiming);
  WIDEEP_CUDA_THROW(env, cudaEventCreateWithFlags(&res->event, flags));
  return res;
}

Napi::Function Event::Define(Napi::Env env) {
  return DefineClass(env, "Event",
                     {
                         InstanceMethod<&Event::Record>("record"),
                         InstanceMethod<&Event::Query>("query"),
                         InstanceMethod<&Event::Synchronize>("synchronize"),
                         InstanceMethod<&Event::ElapsedMs>("elapsedMs"),
                         InstanceMethod<&Event::Close>("close"),
                         InstanceAccessor<&Event::GetClosed>("closed"),
                         InstanceAccessor<&Event::GetDevice>("device"),
                     });
}

// new Event(device, timing)
Event::Event(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Event>(info) {
  Napi::Env env = info.Env();
  int device = static_cast<int>(ArgInt(info, 0, "device", 0, 1 << 16));
  bool timing = info.Length() > 1 && info[1].ToBoolean().Value();
  res_ = CreateEvent(env, device, timing);
  info.This().As<Napi::Object>().TypeTag(&kEventTag);
}

std::shared_ptr<EventResource> Event::From(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kEventTag)) {
    ThrowInvalidArg(env, std::string(what) + " must be an Event");
  }
  return Unwrap(v.As<Napi::Object>())->Live(env);
}

const std::shared_ptr<EventResource>& Event::Live(Napi::Env env) const {
  if (!res_) Throw(env, "ERR_CLOSED", "Event is closed");
  return res_;
}

void Event::Record(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& res = Live(env);
  auto stream = Stream::From(env, ArgAt(info, 0, "stream"), "stream");
  if (stream->device != res->device) {
    ThrowInvalidArg(env, "event on cuda:" + std::to_string(res->device) + " cannot be recorded on a stream of cuda:" +
                             std::to_string(stream->device));
  }
  DeviceGuard guard(res->device);
  WIDEEP_CUDA_THROW(env, cudaEventRecord(res->event, stream->stream));
}

Napi::Value Event::Query(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& res = Live(env);
  DeviceGuard guard(res->device);
  cudaError_t st = cudaEventQuery(res->event);
  if (st == cudaErrorNotReady) {
    cudaGetLastError();
    return Napi::Boolean::New(env, false);
  }
  WIDEEP_CUDA_THROW(env, st);
  return Napi::Boolean::New(env, true);
}

Napi::Value Event::Synchronize(const Napi::CallbackInfo& info) {
  return (new EventSyncWorker(info.Env(), Live(info.Env())))->Queue();
}

// start.elapsedMs(end): milliseconds between two completed timing events.
Napi::Value Event::ElapsedMs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& start = Live(env);
  auto end = From(env, ArgAt(info, 0, "end"), "end");
  if (!start->timing || !end->timing) ThrowInvalidArg(env, "elapsedMs needs two events created with timing: true");
  float ms = 0;
  DeviceGuard guard(start->device);
  WIDEEP_CUDA_THROW(env, cudaEventElapsedTime(&ms, start->event, end->event));
  return Napi::Number::New(env, ms);
}

void Event::Close(const Napi::CallbackInfo&) { res_.reset(); }

Napi::Value Event::GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !res_); }

Napi::Value Event::GetDevice(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), res_ ? res_->device : -1);
}

}  // namespace wideep
