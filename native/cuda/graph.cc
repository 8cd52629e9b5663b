#include "cuda/graph.h"

#include <algorithm>
#include <vector>

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
                         InstanceMethod<&Graph::Describe>("describe"),
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

// describe() -> { nodes, byType: { kernel, memset, ... }, roots, maxDependencies, maxDependents }:
// what a launch has to submit. A straight line (one root, at most one edge in and out
// of every node) is the shape CUDA launches fastest.
Napi::Value Graph::Describe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!graph_) Throw(env, "ERR_CLOSED", "Graph is closed");
  DeviceGuard guard(device_);
  size_t n = 0;
  WIDEEP_CUDA_THROW(env, cudaGraphGetNodes(graph_, nullptr, &n));
  std::vector<cudaGraphNode_t> nodes(n);
  if (n > 0) WIDEEP_CUDA_THROW(env, cudaGraphGetNodes(graph_, nodes.data(), &n));
  static const char* const kTypeNames[] = {"kernel", "memcpy", "memset", "host", "graph", "empty", "waitEvent",
                                           "eventRecord", "extSemaphoreSignal", "extSemaphoreWait", "memAlloc",
                                           "memFree", "batchMemOp", "conditional"};
  constexpr size_t kNamed = sizeof(kTypeNames) / sizeof(kTypeNames[0]);
  std::vector<uint32_t> byType(kNamed + 1, 0);  // the last: types this build does not name
  size_t roots = 0, maxIn = 0, maxOut = 0;
  for (cudaGraphNode_t node : nodes) {
    cudaGraphNodeType type;
    WIDEEP_CUDA_THROW(env, cudaGraphNodeGetType(node, &type));
    byType[std::min(static_cast<size_t>(type), kNamed)]++;
    size_t in = 0, out = 0;
    WIDEEP_CUDA_THROW(env, cudaGraphNodeGetDependencies(node, nullptr, nullptr, &in));
    WIDEEP_CUDA_THROW(env, cudaGraphNodeGetDependentNodes(node, nullptr, nullptr, &out));
    if (in == 0) roots++;
    maxIn = std::max(maxIn, in);
    maxOut = std::max(maxOut, out);
  }
  Napi::Object types = Napi::Object::New(env);
  for (size_t i = 0; i <= kNamed; ++i) {
    if (byType[i] > 0) types.Set(i < kNamed ? kTypeNames[i] : "other", Napi::Number::New(env, byType[i]));
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("nodes", Napi::Number::New(env, static_cast<double>(n)));
  o.Set("byType", types);
  o.Set("roots", Napi::Number::New(env, static_cast<double>(roots)));
  o.Set("maxDependencies", Napi::Number::New(env, static_cast<double>(maxIn)));
  o.Set("maxDependents", Napi::Number::New(env, static_cast<double>(maxOut)));
  return o;
}

void Graph::Close(const Napi::CallbackInfo&) { Release(); }

Napi::Value Graph::GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), exec_ == nullptr); }

}  // namespace wideep
