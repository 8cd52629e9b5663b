// Stream: one CUDA stream, owned through a shared_ptr so that work queued on
// worker threads keeps it alive after the JS object is closed.
#pragma once

#include <cuda_runtime_api.h>
#include <napi.h>

#include <memory>

namespace wideep {

struct StreamResource {
  int device = 0;
  cudaStream_t stream = nullptr;
  ~StreamResource();
};

class Stream : public Napi::ObjectWrap<Stream> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Stream(const Napi::CallbackInfo& info);

  // The live resource behind a JS Stream; throws ERR_INVALID_ARG for anything
  // that is not a Stream and ERR_CLOSED for a closed one.
  static std::shared_ptr<StreamResource> From(Napi::Env env, const Napi::Value& v, const char* what);

 private:
  Napi::Value Synchronize(const Napi::CallbackInfo& info);
  Napi::Value Query(const Napi::CallbackInfo& info);
  Napi::Value IsCapturing(const Napi::CallbackInfo& info);
  void WaitEvent(const Napi::CallbackInfo& info);
  void Close(const Napi::CallbackInfo& info);
  Napi::Value GetDevice(const Napi::CallbackInfo& info);
  Napi::Value GetHandle(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);

  const std::shared_ptr<StreamResource>& Live(Napi::Env env) const;

  std::shared_ptr<StreamResource> res_;
};

}  // namespace wideep
