// One-time per-device configuration, done before the first stream is made.
#pragma once

#include <napi.h>

namespace wideep {

// Keeps freed memory in the default stream-ordered pool instead of returning it
// to the driver at every synchronization, so steady-state allocation is cheap.
void EnsureDeviceConfigured(Napi::Env env, int device);

}  // namespace wideep
