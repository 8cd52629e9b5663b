// Runs a kernel launch on the Stream passed as a binding's argument, with the
// stream's device current, and throws the launch's CUDA error: the tail every
// launch binding shares.
#pragma once

#include <napi.h>

#include "common/args.h"
#include "cuda/cuda_error.h"
#include "cuda/device_guard.h"
#include "cuda/stream.h"

namespace wideep {

// `launch(cudaStream_t) -> cudaError_t` on the stream at argument `i`; `what` names it in errors.
template <class Launch>
void OnStream(const Napi::CallbackInfo& info, size_t i, const char* what, Launch launch) {
  Napi::Env env = info.Env();
  auto stream = Stream::From(env, ArgAt(info, i, "stream"), "stream");
  DeviceGuard guard(stream->device);
  CudaCheck(env, launch(stream->stream), what);
}

}  // namespace wideep
