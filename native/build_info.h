// buildInfo(): how this binary was compiled. Needs no CUDA headers, so the
// CPU-only build reports itself too.
#pragma once

#include <napi.h>

namespace wideep {

Napi::Value BuildInfo(const Napi::CallbackInfo& info);

}  // namespace wideep
