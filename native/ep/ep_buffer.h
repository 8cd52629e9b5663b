// EpBuffer: this rank's registered buffer (cudaMalloc, exported through CUDA
// IPC), the peers' buffers mapped into this process, host-mapped status and
// counts, and the launches of every EP kernel.
#pragma once

#include <napi.h>

#include <memory>

#include "ep/ep_params.h"

namespace wideep::ep {

struct EpResources;

class EpBuffer : public Napi::ObjectWrap<EpBuffer> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit EpBuffer(const Napi::CallbackInfo& info);
  ~EpBuffer() override;

 private:
  static Napi::Value BatonLayout(const Napi::CallbackInfo& info);

  Napi::Value GetIpcHandle(const Napi::CallbackInfo& info);
  void OpenPeers(const Napi::CallbackInfo& info);
  void Configure(const Napi::CallbackInfo& info);
  void Notify(const Napi::CallbackInfo& info);
  void Dispatch(const Napi::CallbackInfo& info);
  void Combine(const Napi::CallbackInfo& info);
  Napi::Value LowLatencyDispatch(const Napi::CallbackInfo& info);
  Napi::Value LowLatencyDispatchSend(const Napi::CallbackInfo& info);
  Napi::Value LowLatencyDispatchRecv(const Napi::CallbackInfo& info);
  Napi::Value LowLatencyCombine(const Napi::CallbackInfo& info);
  Napi::Value LowLatencyCombineSend(const Napi::CallbackInfo& info);
  Napi::Value LowLatencyCombineRecv(const Napi::CallbackInfo& info);
  void CleanLowLatency(const Napi::CallbackInfo& info);
  Napi::Value ReadStatus(const Napi::CallbackInfo& info);
  Napi::Value ReadCounts(const Napi::CallbackInfo& info);
  Napi::Value ReadCallStatus(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value GetBase(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);

  EpResources& Live(Napi::Env env) const;
  EpResources& Ready(Napi::Env env) const;

  std::shared_ptr<EpResources> res_;
};

}  // namespace wideep::ep
