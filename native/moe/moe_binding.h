// N-API entry points of the MoE kernels and the device tensor fills. Every
// launch takes a baton or plain numbers plus a Stream, enqueues, and returns.
#pragma once

#include <napi.h>

namespace wideep::moe {

// Adds moeFields, routerTopk, swiglu, permute, unpermute, transposeScales,
// fillValue and fillRandom to `cuda`.
void Register(Napi::Env env, Napi::Object cuda);

}  // namespace wideep::moe
