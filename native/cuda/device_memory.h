// DeviceMemory: one stream-ordered allocation (cudaMallocAsync from the
// device's default pool), freed in stream order on close or by the GC backstop.
#pragma once

#include <cuda_runtime_api.h>
#include <napi.h>

#include <memory>

#include "cuda/stream.h"

namespace wideep {

class DeviceMemory : public Napi::ObjectWrap<DeviceMemory> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit DeviceMemory(const Napi::CallbackInfo& info);
  ~DeviceMemory() override;

 private:
  void Close(const Napi::CallbackInfo& info);
  Napi::Value GetPtr(const Napi::CallbackInfo& info);
  Napi::Value GetBytes(const Napi::CallbackInfo& info);
  Napi::Value GetDevice(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);

  void Free(cudaStream_t stream);

  int device_ = 0;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  bool closed_ = false;
  std::shared_ptr<StreamResource> stream_;  // allocation stream: frees are ordered after its work
};

}  // namespace wideep
