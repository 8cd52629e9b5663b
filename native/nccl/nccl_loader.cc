#include "nccl/nccl_loader.h"

#include <memory>
#include <mutex>

namespace wideep::nccl {
namespace {

std::mutex gMutex;
LoadState gState;
Api gApi{};
std::unique_ptr<DynamicLibrary> gLibrary;

bool ResolveAll(const DynamicLibrary& lib, Api* api, std::string* missing) {
  SymbolResolver r(lib);
  r("ncclGetVersion", &api->GetVersion);
  r("ncclGetUniqueId", &api->GetUniqueId);
  r("ncclCommInitRankConfig", &api->CommInitRankConfig);
  r("ncclCommSplit", &api->CommSplit);
  r("ncclCommFinalize", &api->CommFinalize);
  r("ncclCommDestroy", &api->CommDestroy);
  r("ncclCommAbort", &api->CommAbort);
  r("ncclCommGetAsyncError", &api->CommGetAsyncError);
  r("ncclCommCount", &api->CommCount);
  r("ncclCommUserRank", &api->CommUserRank);
  r("ncclGetErrorString", &api->GetErrorString);
  r("ncclGetLastError", &api->GetLastError);
  r("ncclAllReduce", &api->AllReduce);
  r("ncclBroadcast", &api->Broadcast);
  r("ncclAllGather", &api->AllGather);
  r("ncclReduceScatter", &api->ReduceScatter);
  r("ncclSend", &api->Send);
  r("ncclRecv", &api->Recv);
  r("ncclGroupStart", &api->GroupStart);
  r("ncclGroupEnd", &api->GroupEnd);
  *missing = r.missing();
  return r.ok();
}

}  // namespace

const LoadState& Load(const std::vector<std::string>& candidates) {
  std::lock_guard<std::mutex> lock(gMutex);
  if (gState.loaded) return gState;
  auto check = [](const Api& api, int* version) {
    return api.GetVersion(version) == kSuccess ? std::string() : std::string("ncclGetVersion failed");
  };
  gLibrary = LoadFirstUsable(candidates, "ncclGetVersion", "NCCL", ResolveAll, check, &gState, &gApi);
  return gState;
}

const Api* LoadedApi() {
  std::lock_guard<std::mutex> lock(gMutex);
  return gState.loaded ? &gApi : nullptr;
}

Napi::Value LoadBinding(const Napi::CallbackInfo& info) {
  return LibraryLoadToJs(info.Env(), Load(ArgStringList(info, 0, "ncclLoad(candidates)")));
}

}  // namespace wideep::nccl
