// Copies and fills between host and device, queued in stream order.
#pragma once

#include <napi.h>

namespace wideep {

// copyHostToDevice(dstPtr, src, stream) -> Promise (resolves once the copy is done)
Napi::Value CopyHostToDevice(const Napi::CallbackInfo& info);
// copyDeviceToHost(dst, srcPtr, stream) -> Promise (resolves once `dst` holds the data)
Napi::Value CopyDeviceToHost(const Napi::CallbackInfo& info);
// copyDeviceToDevice(dstPtr, srcPtr, bytes, stream)
void CopyDeviceToDevice(const Napi::CallbackInfo& info);
// memset(ptr, byte, bytes, stream)
void Memset(const Napi::CallbackInfo& info);
// memGetInfo(device) -> {free, total}
Napi::Value MemGetInfo(const Napi::CallbackInfo& info);
// setDevice(device): makes `device` current for this thread (a rank's process
// works on one GPU; switching back and forth per call would cost time and
// create a context on every other GPU).
void SetDevice(const Napi::CallbackInfo& info);
// trimMemoryPool(device): returns the default pool's unused memory to the driver
// (memory whose stream-ordered free has not completed yet stays).
void TrimMemoryPool(const Napi::CallbackInfo& info);

}  // namespace wideep
