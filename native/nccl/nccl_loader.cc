#include "nccl/nccl_loader.h"

#include <memory>
#include <mutex>

#include "common/args.h"

namespace wideep::nccl {
namespace {

std::mutex gMutex;
LoadState gState;
Api gApi{};
std::unique_ptr<DynamicLibrary> gLibrary;

template <class Fn>
bool Resolve(const DynamicLibrary& lib, const char* name, Fn* slot, std::string* missing) {
  std::string err;
  *slot = reinterpret_cast<Fn>(lib.Symbol(name, &err));
  if (!*slot) {
    if (!missing->empty()) *missing += ", ";
    *missing += name;
  }
  return *slot != nullptr;
}

bool ResolveAll(const DynamicLibrary& lib, Api* api, std::string* missing) {
  bool ok = true;
  ok &= Resolve(lib, "ncclGetVersion", &api->GetVersion, missing);
  ok &= Resolve(lib, "ncclGetUniqueId", &api->GetUniqueId, missing);
  ok &= Resolve(lib, "ncclCommInitRankConfig", &api->CommInitRankConfig, missing);
  ok &= Resolve(lib, "ncclCommSplit", &api->CommSplit, missing);
  ok &= Resolve(lib, "ncclCommFinalize", &api->CommFinalize, missing);
  ok &= Resolve(lib, "ncclCommDestroy", &api->CommDestroy, missing);
  ok &= Resolve(lib, "ncclCommAbort", &api->CommAbort, missing);
  ok &= Resolve(lib, "ncclCommGetAsyncError", &api->CommGetAsyncError, missing);
  ok &= Resolve(lib, "ncclCommCount", &api->CommCount, missing);
  ok &= Resolve(lib, "ncclCommUserRank", &api->CommUserRank, missing);
  ok &= Resolve(lib, "ncclGetErrorString", &api->GetErrorString, missing);
  ok &= Resolve(lib, "ncclGetLastError", &api->GetLastError, missing);
  ok &= Resolve(lib, "ncclAllReduce", &api->AllReduce, missing);
  ok &= Resolve(lib, "ncclBroadcast", &api->Broadcast, missing);
  ok &= Resolve(lib, "ncclAllGather", &api->AllGather, missing);
  ok &= Resolve(lib, "ncclReduceScatter", &api->ReduceScatter, missing);
  ok &= Resolve(lib, "ncclSend", &api->Send, missing);
  ok &= Resolve(lib, "ncclRecv", &api->Recv, missing);
  ok &= Resolve(lib, "ncclGroupStart", &api->GroupStart, missing);
  ok &= Resolve(lib, "ncclGroupEnd", &api->GroupEnd, missing);
  return ok;
}

}  // namespace

const LoadState& Load(const std::vector<std::string>& candidates) {
  std::lock_guard<std::mutex> lock(gMutex);
  if (gState.loaded) return gState;
  gState.attempts.clear();
  for (const std::string& candidate : candidates) {
    auto lib = DynamicLibrary::OpenFirst({candidate}, "ncclGetVersion", &gState.attempts);
    if (!lib) continue;
    std::string missing;
    Api api{};
    if (!ResolveAll(*lib, &api, &missing)) {
      gState.attempts.push_back({lib->path(), "too old: the NCCL API lacks " + missing});
      continue;
    }
    if (api.GetVersion(&gState.version) != kSuccess) {
      gState.attempts.push_back({lib->path(), "ncclGetVersion failed"});
      continue;
    }
    gApi = api;
    gState.loaded = true;
    gState.path = lib->path();
    gLibrary = std::move(lib);
    break;
  }
  return gState;
}

const Api* LoadedApi() {
  std::lock_guard<std::mutex> lock(gMutex);
  return gState.loaded ? &gApi : nullptr;
}

Napi::Value LoadBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Value arg = ArgAt(info, 0, "candidates");
  if (!arg.IsArray()) ThrowInvalidArg(env, "ncclLoad(candidates): expected an array of paths");
  Napi::Array arr = arg.As<Napi::Array>();
  std::vector<std::string> candidates;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value v = arr.Get(i);
    if (!v.IsString()) ThrowInvalidArg(env, "ncclLoad(candidates): every candidate must be a string");
    candidates.push_back(v.As<Napi::String>().Utf8Value());
  }
  const LoadState& s = Load(candidates);
  Napi::Object out = Napi::Object::New(env);
  out.Set("loaded", s.loaded);
  if (s.loaded) {
    out.Set("path", s.path);
    out.Set("version", s.version);
  }
  Napi::Array attempts = Napi::Array::New(env);
  for (size_t i = 0; i < s.attempts.size(); ++i) {
    Napi::Object a = Napi::Object::New(env);
    a.Set("path", s.attempts[i].path);
    a.Set("error", s.attempts[i].error);
    attempts.Set(static_cast<uint32_t>(i), a);
  }
  out.Set("attempts", attempts);
  return out;
}

}  // namespace wideep::nccl
