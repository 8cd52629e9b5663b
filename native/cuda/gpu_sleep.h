// A kernel that keeps a stream busy for a fixed time on the GPU. The
// benchmarks queue it before a timed operation so that the host's enqueue
// latency never shows up as GPU time. (No Node headers: nvcc compiles this.)
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace wideep {

cudaError_t LaunchGpuSleep(uint64_t ns, cudaStream_t stream);

}  // namespace wideep
