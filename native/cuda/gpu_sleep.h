// sleep(ns, stream): keeps a stream busy for a fixed time on the GPU. The
// benchmarks queue it before a timed operation so that the host's enqueue
// latency never shows up as GPU time.
#pragma once

#include <cuda_runtime_api.h>
#include <napi.h>

#include <cstdint>

namespace wideep {

cudaError_t LaunchGpuSleep(uint64_t ns, cudaStream_t stream);

void GpuSleep(const Napi::CallbackInfo& info);

}  // namespace wideep
