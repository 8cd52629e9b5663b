#include "cuda/graph.h"

#include "addon.h"
#include "common/args.h"
#include "cuda/cuda_error.h"
#include "cuda/device_guard.h"
#include "cuda/stream.h"

namespace wideep {
namespace {

constexpr napi_type_tag kGraphTag = {0x7769646565702d67ULL, 0x7261706800000006ULL};

struct Captured {
  int device;
  cudaGraph_t graph;
  cudaGraphExec_t exec;
};

}  // namespace

Napi::Function Graph::Define(Napi::Env env) {
  return DefineClass(env, "Graph",
                     {
                         StaticMethod<&Graph::BeginCapture>("beginCapture"),
                         StaticMethod<&Graph::EndCapture>("endCapture"),
                         InstanceMethod<&Graph::Launch>("launch"),
                         InstanceMethod<&Graph::Close>("close"),
                         InstanceAccessor<&Graph::GetClosed>("closed"),
                     });
}

Graph::Graph(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Graph>(info) {
  if (info.Length() < 1 || !info[0].IsExternal()) {
    ThrowInvalidArg(info.Env(), "Graph cannot be constructed directly; capture a stream");
  }
  Captured* c = info[0].As<Napi::External<Captured>>().Data();
  device_ = c->device;
  graph_ = c->graph;
  exec_ = c->exec;
  info.This().As<Napi::Object>().TypeTag(&kGraphTag);
}

Graph::~Graph() { Release(); }

void Graph::Release() {
  DeviceGuard guard(device_);
  if (exec_) cudaGraphExecDestroy(exec_);
  if (graph_) cudaGraphDestroy(graph_);
  exec_ = nullptr;
  graph_ = nullptr;
}

// beginCapture(stream): work queued on the stream is recorded, not run.
// Thread-local mode: only this thread's unsafe calls are refused meanwhile.
void Graph::BeginCapture(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = Stream::From(env, ArgAt(info, 0, "stream"), "stream");
  DeviceGuard guard(s->device);
  WIDEEP_CUDA_THROW(env, cudaStreamBeginCapture(s->stream, cudaStreamCaptureModeThreadLocal));
}

// endCapture(stream) -> Graph
Napi::Value Graph::EndCapture(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = Stream::From(env, ArgAt(info, 0, "stream"), "stream");
  DeviceGuard guard(s->device);
  Captured c{s->device, nullptr, nullptr};
  WIDEEP_CUDA_THROW(env, cudaStreamEndCapture(s->stream, &c.graph));
  cudaError_t st = cudaGraphInstantiate(&c.exec, c.graph, 0);
  if (st != cudaSuccess) {
    cudaGraphDestroy(c.graph);
    WIDEEP_CUDA_THROW(env, st);
  }
  return State(env).graphCtor.New({Napi::External<Captured>::New(env, &c)});
}

// launch(stream)
void Graph::Launch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!exec_) Throw(env, "ERR_CLOSED", "Graph is closed");
  auto s = Stream::From(env, ArgAt(info, 0, "stream"), "stream");
  if (s->device != device_) ThrowInvalidArg(env, "Graph.launch: the stream is on another device");
  DeviceGuard guard(device_);
  WIDEEP_CUDA_THROW(env, cudaGraphLaunch(exec_, s->stream));
}

void Graph::Close(const Napi::CallbackInfo&) { Release(); }

Napi::Value Graph::GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), exec_ == nullptr); }

}  // namespace wideep
