#include "build_info.h"

#include <sstream>

#ifdef WIDEEP_WITH_CUDA
#include <cuda_runtime_api.h>  // CUDART_VERSION
#endif
#include <string>

namespace wideep {
namespace {

std::string CompilerName() {
  std::ostringstream s;
#if defined(__clang__)
  s << "clang " << __clang_major__ << "." << __clang_minor__;
#elif defined(__GNUC__)
  s << "gcc " << __GNUC__ << "." << __GNUC_MINOR__;
#else
  s << "unknown";
#endif
  return s.str();
}

}  // namespace

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  Napi::Array archs = Napi::Array::New(env);
#ifdef WIDEEP_WITH_CUDA
  out.Set("cuda", true);
  std::string list = WIDEEP_CUDA_ARCHS;
  size_t start = 0;
  uint32_t i = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    if (comma > start) archs.Set(i++, list.substr(start, comma - start));
    start = comma + 1;
  }
  out.Set("cudaRuntimeCompiled", CUDART_VERSION);
#else
  out.Set("cuda", false);
  out.Set("cudaRuntimeCompiled", 0);
#endif
  out.Set("cudaArchs", archs);
  out.Set("napiVersion", NAPI_VERSION);
  out.Set("compiler", CompilerName());
  return out;
}

}  // namespace wideep
