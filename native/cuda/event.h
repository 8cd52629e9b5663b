// Event: one CUDA event. Completion is awaited on a libuv pool thread.
#pragma once

#include <cuda_runtime_api.h>
#include <napi.h>

#include <memory>

namespace wideep {

struct EventResource {
  int device = 0;
  cudaEvent_t event = nullptr;
  bool timing = false;
  ~EventResource();
};

// Creates a resource on `device`; `timing` events can measure elapsed time.
std::shared_ptr<EventResource> CreateEvent(Napi::Env env, int device, bool timing);

class Event : public Napi::ObjectWrap<Event> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Event(const Napi::CallbackInfo& info);

  static std::shared_ptr<EventResource> From(Napi::Env env, const Napi::Value& v, const char* what);

 private:
  void Record(const Napi::CallbackInfo& info);
  Napi::Value Query(const Napi::CallbackInfo& info);
  Napi::Value Synchronize(const Napi::CallbackInfo& info);
  Napi::Value ElapsedMs(const Napi::CallbackInfo& info);
  void Close(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);
  Napi::Value GetDevice(const Napi::CallbackInfo& info);

  const std::shared_ptr<EventResource>& Live(Napi::Env env) const;

  std::shared_ptr<EventResource> res_;
};

}  // namespace wideep
