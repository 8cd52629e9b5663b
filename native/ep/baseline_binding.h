// JS entry points of the baseline kernels: gatherRows / scatterAddBf16.
#pragma once

#include <napi.h>

namespace wideep::ep {

// gatherRows(dst, src, idx, n, rowBytes, numSms, stream)
void GatherRows(const Napi::CallbackInfo& info);
// scatterAddBf16(out, src, idx, n, hidden, numSms, stream)
void ScatterAddBf16(const Napi::CallbackInfo& info);

}  // namespace wideep::ep
