// probe(): driver/runtime versions, GPUs and the peer-access matrix.
// Never throws: a failed device query is reported in `error`.
#pragma once

#include <napi.h>

namespace wideep {

Napi::Value Probe(const Napi::CallbackInfo& info);

}  // namespace wideep
