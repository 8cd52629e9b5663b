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
  auto check = [](const Api& api, int* version) {
    size_t v = api.GetVersion();
    *version = static_cast<int>(v);
    return v >= kMinVersion ? std::string()
                            : "version " + std::to_string(v) + " is older than 12.9, which added 128-wide block scales";
  };
  gLibrary = LoadFirstUsable(candidates, "cublasLtMatmul", "cuBLASLt", ResolveAll, check, &gState, &gApi);
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
