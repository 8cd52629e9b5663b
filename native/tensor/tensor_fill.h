// Device-side tensor initialisation: a constant, or reproducible random
// values from a counter-based hash (no generator state, so any element can be
// recomputed from (seed, index) on the host too).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace wideep {

// The element encodings the fills write (src/tensor/dtype.ts names them).
enum class FillType : int { kF32 = 0, kBf16 = 1, kF16 = 2, kFp8E4m3 = 3, kI32 = 4 };
enum class FillDistribution : int { kUniform = 0, kNormal = 1 };

cudaError_t LaunchFillValue(void* ptr, int64_t numel, FillType type, double value, cudaStream_t stream);

// uniform: a + (b - a) * u with u in [0, 1); normal: mean a, standard deviation b.
cudaError_t LaunchFillRandom(void* ptr, int64_t numel, FillType type, FillDistribution dist, uint32_t seed, float a,
                             float b, cudaStream_t stream);

}  // namespace wideep
