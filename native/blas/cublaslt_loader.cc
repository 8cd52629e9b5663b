#include "blas/cublaslt_loader.h"

#include <memory>
#include <mutex>

namespace wideep::blas {
namespace {

// cuBLASLt 12.9 added the DeepSeek-style block scales (VEC128 / BLK128x128).
constexpr size_t kMinVersion = 120900;

std::mutex gMutex;
LibraryLoad gState;
Api gApi{};
std::unique_ptr<DynamicLibrary> gLibrary;

bool ResolveAll(const DynamicLibrary& lib, Api* api, std::string* missing) {
  SymbolResolver r(lib);
  r("cublasLtGetVersion", &api->GetVersion);
  r("cublasLtCreate", &api->Create);
  r("cublasLtDestroy", &api->Destroy);
  r("cublasLtMatmulDescCreate", &api->MatmulDescCreate);
  r("cublasLtMatmulDescDestroy", &api->MatmulDescDestroy);
  r("cublasLtMatmulDescSetAttribute", &api->MatmulDescSetAttribute);
  r("cublasLtMatrixLayoutCreate", &api->MatrixLayoutCreate);
  r("cublasLtMatrixLayoutDestroy", &api->MatrixLayoutDestroy);
  r("cublasLtMatrixLayoutSetAttribute", &api->MatrixLayoutSetAttribute);
  r("cublasLtMatmulPreferenceCreate", &api->MatmulPreferenceCreate);
  r("cublasLtMatmulPreferenceDestroy", &api->MatmulPreferenceDestroy);
  r("cublasLtMatmulPreferenceSetAttribute", &api->MatmulPreferenceSetAttribute);
  r("cublasLtMatmulAlgoGetHeuristic", &api->MatmulAlgoGetHeuristic);
  r("cublasLtMatmul", &api->Matmul);
  *missing = r.missing();
  return r.ok();
}

}  // namespace

const LibraryLoad& Load(const std::vector<std::string>& candidates) {
  std::lock_guard<std::mutex> lock(gMutex);
  if (gState.loaded) return gState;
  gState.attempts.clear();
  for (const std::string& candidate : candidates) {
    auto lib = DynamicLibrary::OpenFirst({candidate}, "cublasLtMatmul", &gState.attempts);
    if (!lib) continue;
    std::string missing;
    Api api{};
    if (!ResolveAll(*lib, &api, &missing)) {
      gState.attempts.push_back({lib->path(), "too old: the cuBLASLt API lacks " + missing});
      continue;
    }
    size_t version = api.GetVersion();
    if (version < kMinVersion) {
      gState.attempts.push_back({lib->path(), "version " + std::to_string(version) +
                                                  " is older than 12.9, which added 128-wide block scales"});
      continue;
    }
    gApi = api;
    gState.loaded = true;
    gState.version = static_cast<int>(version);
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
  return LibraryLoadToJs(info.Env(), Load(ArgStringList(info, 0, "blasLoad(candidates)")));
}

}  // namespace wideep::blas
