// Graph: an instantiated CUDA graph captured from a Stream. Replays cost one
// launch and no host work per kernel.
#pragma once

#include <cuda_runtime_api.h>
#include <napi.h>

namespace wideep {

class Graph : public Napi::ObjectWrap<Graph> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Graph(const Napi::CallbackInfo& info);
  ~Graph() override;

  // Stream.beginCapture / endCapture live here, next to the object they make.
  static void BeginCapture(const Napi::CallbackInfo& info);
  static Napi::Value EndCapture(const Napi::CallbackInfo& info);

 private:
  void Launch(const Napi::CallbackInfo& info);
  Napi::Value Describe(const Napi::CallbackInfo& info);
  void Close(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);
  void Release();

  int device_ = 0;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace wideep
