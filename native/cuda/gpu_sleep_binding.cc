#include "common/args.h"
#include "cuda/cuda_error.h"
#include "cuda/device_guard.h"
#include "cuda/gpu_sleep.h"
#include "cuda/gpu_sleep_binding.h"
#include "cuda/stream.h"

namespace wideep {

// sleep(ns, stream)
void GpuSleep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t ns = static_cast<uint64_t>(ArgInt(info, 0, "ns", 0, int64_t{60} * 1000 * 1000 * 1000));
  auto stream = Stream::From(env, ArgAt(info, 1, "stream"), "stream");
  DeviceGuard guard(stream->device);
  WIDEEP_CUDA_THROW(env, LaunchGpuSleep(ns, stream->stream));
}

}  // namespace wideep
