#include "cuda/stream.h"

#include "common/args.h"
#include "common/promise_worker.h"
#include "cuda/cuda_error.h"
#include "cuda/device_guard.h"
#include "cuda/device_setup.h"
#include "cuda/event.h"

namespace wideep {
namespace {

constexpr napi_type_tag kStreamTag = {0x7769646565702d73ULL, 0x747265616d000001ULL};

class StreamSyncWorker : public PromiseWorker {
 public:
  StreamSyncWorker(Napi::Env env, std::shared_ptr<StreamResource> res)
      : PromiseWorker(env, "wideep:stream.synchronize"), res_(std::move(res)) {}

 protected:
  Failure Run() override {
    WIDEEP_CUDA_RETURN(cudaSetDevice(res_->device));
    WIDEEP_CUDA_RETURN(cudaStreamSynchronize(res_->stream));
    return {};
  }

 private:
  std::shared_ptr<StreamResource> res_;
};

}  // namespace

StreamResource::~StreamResource() {
  if (stream) {
    DeviceGuard guard(device);
    cudaStreamDestroy(stream);
  }
}

Napi::Function Stream::Define(Napi::Env env) {
  return DefineClass(env, "Stream",
                     {
                         InstanceMethod<&Stream::Synchronize>("synchronize"),
                         InstanceMethod<&Stream::Query>("query"),
                         InstanceMethod<&Stream::IsCapturing>("isCapturing"),
                         InstanceMethod<&Stream::WaitEvent>("waitEvent"),
                         InstanceMethod<&Stream::Close>("close"),
                         InstanceAccessor<&Stream::GetDevice>("device"),
                         InstanceAccessor<&Stream::GetHandle>("handle"),
                         InstanceAccessor<&Stream::GetClosed>("closed"),
                     });
}

// new Stream(device, priority)
Stream::Stream(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Stream>(info) {
  Napi::Env env = info.Env();
  int device = static_cast<int>(ArgInt(info, 0, "device", 0, 1 << 16));
  int priority = info.Length() > 1 ? static_cast<int>(ArgInt(info, 1, "priority", -64, 64)) : 0;
  auto res = std::make_shared<StreamResource>();
  res->device = device;
  EnsureDeviceConfigured(env, device);
  DeviceGuard guard(device);
  WIDEEP_CUDA_THROW(env, cudaSetDevice(device));
  WIDEEP_CUDA_THROW(env, cudaStreamCreateWithPriority(&res->stream, cudaStreamNonBlocking, priority));
  res_ = std::move(res);
  info.This().As<Napi::Object>().TypeTag(&kStreamTag);
}

std::shared_ptr<StreamResource> Stream::From(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kStreamTag)) {
    ThrowInvalidArg(env, std::string(what) + " must be a Stream");
  }
  return Unwrap(v.As<Napi::Object>())->Live(env);
}

const std::shared_ptr<StreamResource>& Stream::Live(Napi::Env env) const {
  if (!res_) Throw(env, "ERR_CLOSED", "Stream is closed");
  return res_;
}

Napi::Value Stream::Synchronize(const Napi::CallbackInfo& info) {
  return (new StreamSyncWorker(info.Env(), Live(info.Env())))->Queue();
}

Napi::Value Stream::Query(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& res = Live(env);
  DeviceGuard guard(res->device);
  cudaError_t st = cudaStreamQuery(res->stream);
  if (st == cudaErrorNotReady) {
    cudaGetLastError();
    return Napi::Boolean::New(env, false);
  }
  WIDEEP_CUDA_THROW(env, st);
  return Napi::Boolean::New(env, true);
}

Napi::Value Stream::IsCapturing(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& res = Live(env);
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  DeviceGuard guard(res->device);
  WIDEEP_CUDA_THROW(env, cudaStreamIsCapturing(res->stream, &status));
  return Napi::Boolean::New(env, status == cudaStreamCaptureStatusActive);
}

void Stream::WaitEvent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& res = Live(env);
  auto ev = Event::From(env, ArgAt(info, 0, "event"), "event");
  DeviceGuard guard(res->device);
  WIDEEP_CUDA_THROW(env, cudaStreamWaitEvent(res->stream, ev->event, 0));
}

void Stream::Close(const Napi::CallbackInfo&) { res_.reset(); }

Napi::Value Stream::GetDevice(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), res_ ? res_->device : -1);
}

Napi::Value Stream::GetHandle(const Napi::CallbackInfo& info) {
  return PtrToJs(info.Env(), res_ ? res_->stream : nullptr);
}

Napi::Value Stream::GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !res_); }

}  // namespace wideep
