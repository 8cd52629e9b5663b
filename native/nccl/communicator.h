// Communicator: one NCCL communicator. Creation and splits run on pool threads
// (they wait for peers); operations are enqueued on a Stream from the JS thread.
#pragma once

#include <napi.h>

#include <memory>

#include "nccl/comm_core.h"

namespace wideep::nccl {

class Communicator : public Napi::ObjectWrap<Communicator> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Communicator(const Napi::CallbackInfo& info);

  // Wraps a freshly initialised communicator in a JS object.
  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<CommCore> core, int rank, int size);

 private:
  static Napi::Value GetUniqueId(const Napi::CallbackInfo& info);
  static Napi::Value Init(const Napi::CallbackInfo& info);

  Napi::Value Split(const Napi::CallbackInfo& info);
  void AllReduce(const Napi::CallbackInfo& info);
  void Broadcast(const Napi::CallbackInfo& info);
  void AllGather(const Napi::CallbackInfo& info);
  void ReduceScatter(const Napi::CallbackInfo& info);
  void SendRecv(const Napi::CallbackInfo& info);
  Napi::Value Wait(const Napi::CallbackInfo& info);
  Napi::Value GetError(const Napi::CallbackInfo& info);
  void Close(const Napi::CallbackInfo& info);
  Napi::Value GetRank(const Napi::CallbackInfo& info);
  Napi::Value GetSize(const Napi::CallbackInfo& info);
  Napi::Value GetDevice(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);

  CommCore& Live(Napi::Env env) const;
  void Check(Napi::Env env, const Failure& f) const;

  std::shared_ptr<CommCore> core_;
  int rank_ = 0;
  int size_ = 0;
};

}  // namespace wideep::nccl
